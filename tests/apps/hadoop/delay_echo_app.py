#!/usr/bin/env python3
"""Stands in for org.apache.hadoop.streaming.DelayEchoApp (TestStreamingBackground).

`delay_echo_app.py [SECONDS]`: echoes each stdin line to stdout after waiting SECONDS
(default 5; a value that is not a number also means 5).
"""
import sys
import time

try:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
except ValueError:
    seconds = 5
for line in sys.stdin.buffer:
    time.sleep(seconds)
    sys.stdout.buffer.write(line.rstrip(b"\n").rstrip(b"\r") + b"\n")
    sys.stdout.flush()
