#!/usr/bin/env python3
"""Step 3 reducer: for each word, the word that most often follows it (ties: the first in byte
order) and how often: `word<TAB>next<TAB>n`."""
import sys

word, best, most = None, "", 0
for line in sys.stdin:
    w, nxt, n = line.rstrip("\n").split("\t")
    if w != word:
        if word is not None:
            print(f"{word}\t{best}\t{most}")
        word, best, most = w, nxt, int(n)
    elif int(n) > most:
        best, most = nxt, int(n)
if word is not None:
    print(f"{word}\t{best}\t{most}")
