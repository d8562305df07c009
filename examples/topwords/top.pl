#!/usr/bin/perl
# Top words, job 2 reducer: the first N lines (default 10). It reads its input to the end, as a
# reducer must: one that stops early breaks the pipe it is fed through.
use strict;
use warnings;

my $n = shift // 10;
while (my $line = <STDIN>) {
    print $line if $. <= $n;
}
