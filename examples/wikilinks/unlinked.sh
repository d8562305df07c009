#!/bin/sh
# The report: pages that no page links to. Usage: unlinked.sh PAGES.XML LINKS.TXT
# (LINKS.TXT is the job's output: `page<TAB>count<TAB>linking pages`).
pages=$1 links=$2
sed -n 's:.*<title>\(.*\)</title>.*:\1:p' "$pages" | awk -F'\t' '
  NR == FNR { titles[$0] = 1; next }
  { linked[$1] = 1 }
  END { for (t in titles) if (!(t in linked)) print t }' - "$links" | LC_ALL=C sort
