#!/usr/bin/awk -f
# Step 2 combiner and reducer: `key<TAB>total` for each run of equal keys (compared as strings).
BEGIN { FS = "\t" }
NR > 1 && $1 "" != key "" { print key "\t" total; total = 0 }
{ key = $1; total += $2 }
END { if (NR > 0) print key "\t" total }
