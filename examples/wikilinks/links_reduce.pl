#!/usr/bin/perl
# What links here, reducer: `page<TAB>number of pages linking to it<TAB>those pages`.
# Input is sorted, so the lines of one target are adjacent (and its linking pages in order).
use strict;
use warnings;

my ($target, @from);
sub flush {
    printf "%s\t%d\t%s\n", $target, scalar @from, join('; ', @from) if defined $target;
}
while (my $line = <STDIN>) {
    chomp $line;
    my ($t, $title) = split /\t/, $line, 2;
    if (!defined $target || $t ne $target) {
        flush();
        ($target, @from) = ($t);
    }
    push @from, $title;
}
flush();
