#!/bin/sh
# Status codes per hour, mapper: `hour<TAB>status<TAB>1` for each request. In the combined log
# format field 4 is `[dd/Mon/yyyy:HH:MM:SS` and field 9 the status.
exec awk '{ split($4, t, ":"); print t[2] "\t" $9 "\t1" }'
