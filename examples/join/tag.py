#!/usr/bin/env python3
"""Reduce-side join mapper: key every record by customer id, tagged with its dataset.

`id<TAB>0<TAB>name<TAB>country` for a customer, `id<TAB>1<TAB>order<TAB>amount` for an
order. With the key being (id, tag), the secondary sort hands the reducer each customer's
record before that customer's orders. Which dataset a line is from: mapreduce_map_input_file."""
import os
import sys

customers = os.path.basename(os.environ["mapreduce_map_input_file"]).startswith("customers")
for line in sys.stdin:
    fields = line.rstrip("\n").split("\t")
    if customers:
        cid, name, country = fields
        print(f"{cid}\t0\t{name}\t{country}")
    else:
        order, cid, amount = fields
        print(f"{cid}\t1\t{order}\t{amount}")
