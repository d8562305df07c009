#!/bin/sh
# The sweep's grid: one growth rate r per line, from 2.5 to 4.0 in steps of 0.05.
awk 'BEGIN { for (i = 0; i <= 30; i++) printf "%.2f\n", 2.5 + i * 0.05 }'
