#!/usr/bin/env python3
"""Inverted index mapper: `word<TAB>file` for each word of each line.

The file name comes from the environment: hstream (like Hadoop) sets mapreduce_map_input_file
to the path of the file the task's split belongs to."""
import os
import re
import sys

source = os.path.basename(os.environ.get("mapreduce_map_input_file", "stdin"))
for line in sys.stdin:
    for word in sorted(set(re.findall(r"[a-z]+(?:'[a-z]+)?", line.lower()))):
        print(f"{word}\t{source}")
