#!/usr/bin/awk -f
# What `-reducer aggregate` computes, written out for the serial pipeline that checks it:
# reads sorted `Function:key<TAB>value` lines, prints `key<TAB>result`.
BEGIN { FS = "\t" }
function flush() {
    if (key == "") return
    if (fn == "UniqValueCount") { n = 0; for (v in seen) n++; result = n }
    print name "\t" result
    delete seen
}
{
    if ($1 != key) {
        flush()
        key = $1; fn = substr(key, 1, index(key, ":") - 1); name = substr(key, index(key, ":") + 1)
        result = (fn == "LongValueSum") ? 0 : $2
    }
    if (fn == "LongValueSum") result += $2
    else if (fn == "LongValueMax" && $2 + 0 > result + 0) result = $2
    else if (fn == "UniqValueCount") seen[$2] = 1
}
END { flush() }
