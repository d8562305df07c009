#!/bin/sh
# Top words, job 1 mapper: one `word<TAB>1` line per word, lower-cased, punctuation dropped.
tr -cs 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | awk 'NF { print $0 "\t1" }'
