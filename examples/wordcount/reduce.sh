#!/bin/sh
# Word count reducer: input is sorted by word, so equal words are adjacent. Words are compared
# as strings ("" appended): awk compares two number-like fields as numbers, and 10, 10., +10,
# 10.0 and 1e1 would count as one word.
exec awk -F '\t' '
  { key = $1 "" }
  NR == 1 || key != word { if (NR > 1) print word "\t" count; word = key; count = 0 }
  { count += $2 }
  END { if (NR > 0) print word "\t" count }'
