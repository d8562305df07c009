#!/usr/bin/env python3
"""Identity mapper that counts its lines with reporter:counter and reports status.

With `fail-first`, attempt 0 of every task fails after counting (its counters must not count)."""
import os
import sys

n = 0
for line in sys.stdin:
    sys.stdout.write(line)
    sys.stderr.write("reporter:counter:UserCounters,InputLines,1\n")
    n += 1
sys.stderr.write(f"reporter:status:read {n} lines\n")
sys.stderr.write("an ordinary stderr line\n")
if "fail-first" in sys.argv[1:] and os.environ.get("mapreduce_task_attempt_id", "").endswith("_0"):
    sys.exit(3)
