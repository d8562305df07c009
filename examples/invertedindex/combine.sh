#!/bin/sh
# Inverted index combiner: a map task's sorted output holds `word<TAB>file` once per line the
# word is on; the reducer needs each pair once, so drop the repeats before the shuffle.
exec uniq
