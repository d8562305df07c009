#!/usr/bin/perl
# Parameter sweep reducer: each `r<TAB>exponent` with its regime. A positive Lyapunov exponent
# means chaos; a negative one, that the orbit settles (on a fixed point or a cycle).
use strict;
use warnings;

while (my $line = <STDIN>) {
    chomp $line;
    my ($r, $lambda) = split /\t/, $line;
    printf "%s\t%s\t%s\n", $r, $lambda, $lambda > 0.001 ? 'chaotic' : 'periodic';
}
