#!/usr/bin/perl
# Bytes per client, mapper: `address<TAB>bytes` for each request (a `-` size, as for a 304,
# counts as 0).
use strict;
use warnings;

while (my $line = <STDIN>) {
    my ($client, $bytes) = $line =~ /^(\S+) \S+ \S+ \[[^\]]*\] "[^"]*" \d{3} (\S+)/ or next;
    printf "%s\t%d\n", $client, $bytes eq '-' ? 0 : $bytes;
}
