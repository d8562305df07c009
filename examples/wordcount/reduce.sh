#!/bin/sh
# Word count reducer: input is sorted by word, so equal words are adjacent.
exec awk -F '\t' '
  $1 != word { if (NR > 1) print word "\t" count; word = $1; count = 0 }
  { count += $2 }
  END { if (NR > 0) print word "\t" count }'
