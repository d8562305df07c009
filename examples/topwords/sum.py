#!/usr/bin/env python3
"""Top words, job 1 combiner and reducer: `key<TAB>total` for each run of equal keys."""
import sys

key, total = None, 0
for line in sys.stdin:
    k, _, v = line.rstrip("\n").partition("\t")
    if k != key:
        if key is not None:
            print(f"{key}\t{total}")
        key, total = k, 0
    total += int(v)
if key is not None:
    print(f"{key}\t{total}")
