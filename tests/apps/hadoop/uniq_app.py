#!/usr/bin/env python3
"""Stands in for org.apache.hadoop.streaming.UniqApp (Hadoop's streaming tests).

`uniq_app.py [HEADER]`: like /usr/bin/uniq, writes each line that differs from the one
before it, with HEADER (default empty) prepended.
"""
import sys

header = sys.argv[1].encode() if len(sys.argv) > 1 else b""
previous = None
for line in sys.stdin.buffer:
    line = line.rstrip(b"\n").rstrip(b"\r")  # Java's readLine
    if line != previous:
        sys.stdout.buffer.write(header + line + b"\n")
    previous = line
