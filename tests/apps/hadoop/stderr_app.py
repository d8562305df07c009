#!/usr/bin/env python3
"""Stands in for org.apache.hadoop.streaming.StderrApp (TestStreamingStderr).

`stderr_app.py PREWRITE SLEEP POSTWRITE [STATUS]`: writes PREWRITE lines to stderr, sleeping
SLEEP ms after each, then copies stdin to stdout, then writes POSTWRITE lines to stderr. With
STATUS `true`, it first writes `reporter:status:starting echo`.
"""
import sys
import time

if len(sys.argv) < 4:
    sys.stderr.write("Usage: StderrApp PREWRITE SLEEP POSTWRITE [STATUS]\n")
    sys.exit(0)
pre, sleep, post = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
status = len(sys.argv) > 4 and sys.argv[4].lower() == "true"  # Boolean.parseBoolean
if status:
    sys.stderr.write("reporter:status:starting echo\n")
    sys.stderr.flush()
while pre > 0:
    pre -= 1
    sys.stderr.write(f"some stderr output before reading input, {pre} lines remaining, "
                     f"sleeping {sleep}\n")
    sys.stderr.flush()
    time.sleep(sleep / 1000)
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(line.rstrip(b"\n").rstrip(b"\r") + b"\n")
sys.stdout.flush()
while post > 0:
    post -= 1
    sys.stderr.write(f"some stderr output after reading input, lines remaining {post}\n")
sys.stderr.flush()
