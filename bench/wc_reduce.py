#!/usr/bin/env python3
"""Word count reducer, written as a user would: input is sorted, equal words are adjacent."""
import sys

current = None
count = 0
for line in sys.stdin:
    word, _, value = line.rstrip("\n").partition("\t")
    if word == current:
        count += int(value)
    else:
        if current is not None:
            print(f"{current}\t{count}")
        current = word
        count = int(value)
if current is not None:
    print(f"{current}\t{count}")
