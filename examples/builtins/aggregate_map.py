#!/usr/bin/env python3
"""Mapper for `-reducer aggregate`: each line names the aggregation its key wants,
`Function:key<TAB>value`, and Hadoop's aggregate package does the rest (no reducer to write).
Per region: units sold (LongValueSum), the largest order in cents (LongValueMax), distinct
customers (UniqValueCount)."""
import sys

for line in sys.stdin:
    _, region, _, customer, quantity, cents = line.rstrip("\n").split("\t")
    print(f"LongValueSum:units {region}\t{quantity}")
    print(f"LongValueMax:largest order {region}\t{int(quantity) * int(cents)}")
    print(f"UniqValueCount:customers {region}\t{customer}")
