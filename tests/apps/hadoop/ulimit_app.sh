#!/bin/sh
# Stands in for org.apache.hadoop.streaming.UlimitApp (TestUlimit): discards its input, then
# prints the output of `ulimit -v` (run by bash, as the Java class does).
cat > /dev/null
exec bash -c 'ulimit -v'
