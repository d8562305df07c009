#!/usr/bin/perl
# Word count mapper in Perl: one `word<TAB>1` line per whitespace-separated word.
use strict;
use warnings;

while (my $line = <STDIN>) {
    print "$_\t1\n" for split ' ', $line;
}
