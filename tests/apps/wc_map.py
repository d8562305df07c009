#!/usr/bin/env python3
"""Word count mapper, as a user writes it."""
import sys

for line in sys.stdin:
    for word in line.split():
        print(f"{word}\t1")
