#!/bin/sh
# Reduce-side join reducer: `id<TAB>name<TAB>country<TAB>order<TAB>amount` for every order of a
# known customer. Each id's customer record (tag 0) arrives before its orders (tag 1); an order
# whose customer is unknown is dropped (an inner join).
exec awk -F '\t' -v OFS='\t' '
  $2 == "0" { id = $1; name = $3; country = $4; next }
  $1 == id  { print id, name, country, $3, $4 }'
