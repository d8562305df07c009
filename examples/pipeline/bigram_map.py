#!/usr/bin/env python3
"""Step 2 mapper: `first second<TAB>1` for each pair of adjacent words on a line."""
import sys

for line in sys.stdin:
    words = line.split()
    for first, second in zip(words, words[1:]):
        print(f"{first} {second}\t1")
