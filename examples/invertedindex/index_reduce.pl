#!/usr/bin/perl
# Inverted index reducer: `word<TAB>count<TAB>file,file,...`, each file once, in order.
# Input is sorted, so the lines of one word are adjacent.
use strict;
use warnings;

my ($word, %files);
sub flush {
    return unless defined $word;
    my @names = sort keys %files;
    printf "%s\t%d\t%s\n", $word, scalar @names, join(',', @names);
}
while (my $line = <STDIN>) {
    chomp $line;
    my ($w, $file) = split /\t/, $line, 2;
    if (!defined $word || $w ne $word) {
        flush();
        ($word, %files) = ($w);
    }
    $files{$file} = 1;
}
flush();
