#!/bin/sh
# Step 3 mapper: `first second<TAB>n` becomes `first<TAB>second<TAB>n`, keyed by the first word.
exec awk '{ sub(/ /, "\t"); print }'
