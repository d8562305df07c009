#!/usr/bin/env python3
"""Stands in for org.apache.hadoop.streaming.FailApp (TestStreamingExitStatus).

Copies all of stdin to stdout, then fails (non-zero exit, as the Java RuntimeException does)
unless its first argument is `false`.
"""
import sys

fail = not (len(sys.argv) > 1 and sys.argv[1] == "false")
for line in sys.stdin.buffer:  # consume all input first, as FailApp does
    sys.stdout.buffer.write(line.rstrip(b"\n").rstrip(b"\r") + b"\n")
sys.stdout.flush()
if fail:
    sys.stderr.write("java.lang.RuntimeException: Intentionally failing task\n")
    sys.exit(1)
