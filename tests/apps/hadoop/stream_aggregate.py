#!/usr/bin/env python3
"""Stands in for org.apache.hadoop.streaming.StreamAggregate (TestStreamAggregate).

For each word of each input line (split on single spaces, as Java's String.split(" ")),
writes `LongValueSum:<word>\\t1`, the input of the `aggregate` reducer.
"""
import sys

for line in sys.stdin.buffer:
    words = line.rstrip(b"\n").rstrip(b"\r").split(b" ")
    while len(words) > 1 and words[-1] == b"":  # Java's split drops trailing empty strings
        words.pop()
    for word in words:
        sys.stdout.buffer.write(b"LongValueSum:" + word.strip() + b"\t1\n")
