#!/usr/bin/env python3
"""Stands in for org.apache.hadoop.streaming.OutputOnlyApp (TestUnconsumedInput).

`output_only_app.py NUMRECORDS`: writes NUMRECORDS lines `key<TAB>value` without reading any
of its input.
"""
import sys

if len(sys.argv) < 2:
    sys.stderr.write("Usage: OutputOnlyApp NUMRECORDS\n")
    sys.exit(0)
sys.stdout.write("key\tvalue\n" * int(sys.argv[1]))
