#!/usr/bin/perl
# Step 1 (map-only): lower case, letters only, words separated by single spaces; empty lines go.
use strict;
use warnings;

while (my $line = <STDIN>) {
    $line = lc $line;
    $line =~ s/[^a-z]+/ /g;
    $line =~ s/^ | $//g;
    print "$line\n" if length $line;
}
