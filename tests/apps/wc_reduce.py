#!/usr/bin/env python3
"""Word count reducer: sums adjacent equal keys."""
import sys

current, total = None, 0
for line in sys.stdin:
    key, _, value = line.rstrip("\n").partition("\t")
    if key != current:
        if current is not None:
            print(f"{current}\t{total}")
        current, total = key, 0
    total += int(value or 0)
if current is not None:
    print(f"{current}\t{total}")
