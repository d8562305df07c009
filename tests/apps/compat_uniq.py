#!/usr/bin/env python3
"""Hadoop's UniqApp (TestStreaming): each distinct line once, with a prefix."""
import sys

prefix = sys.argv[1] if len(sys.argv) > 1 else ""
last = None
for line in sys.stdin:
    if line != last:
        sys.stdout.write(prefix + line)
        last = line
