#!/usr/bin/env python3
"""Combiner and reducer: the last TAB-separated field summed over each run of lines whose
other fields (the key, however many fields it has) are equal."""
import sys

key, total = None, 0
for line in sys.stdin:
    k, _, v = line.rstrip("\n").rpartition("\t")
    if k != key:
        if key is not None:
            print(f"{key}\t{total}")
        key, total = k, 0
    total += int(v)
if key is not None:
    print(f"{key}\t{total}")
