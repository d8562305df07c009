#!/usr/bin/perl
# Seeded sales records (same bytes on every machine: a fixed linear congruential generator,
# not Perl's rand). One line per order:
#   date<TAB>region<TAB>product<TAB>customer<TAB>quantity<TAB>price in cents
# Usage: gen_sales.pl LINES > sales.tsv
use strict;
use warnings;

my $lines = shift // 2000;
my @regions = qw(north south east west);
my @products = qw(anvil bolt cog drill easel funnel gasket);
my $state = 42;
sub pick {    # a number in [0, n)
    my ($n) = @_;
    $state = (1103515245 * $state + 12345) % 2147483648;
    return int($state / 65536) % $n;
}
for my $i (1 .. $lines) {
    printf "2024-%02d-%02d\t%s\t%s\tcust%03d\t%d\t%d\n", 1 + pick(12), 1 + pick(28),
        $regions[pick(4)], $products[pick(7)], pick(150), 1 + pick(20), 99 + pick(9900);
}
