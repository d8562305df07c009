#!/usr/bin/perl
# Two seeded datasets to join (same bytes on every machine: a fixed linear congruential
# generator, not Perl's rand): customers.tsv (`id<TAB>name<TAB>country`) and orders.tsv
# (`order<TAB>customer id<TAB>amount`). Some customers have no orders; some orders name a
# customer who is not in customers.tsv.   Usage: gen_data.pl DIR
use strict;
use warnings;

my $dir = shift or die "usage: gen_data.pl DIR\n";
mkdir $dir unless -d $dir;
my @names = qw(Ada Alan Barbara Claude Donald Edsger Frances Grace John Ken Leslie Margaret
               Niklaus Radia Shafi Tony);
my @countries = qw(CH DE FR GB IN JP NL US);
my $state = 7;
sub pick {    # a number in [0, n)
    my ($n) = @_;
    $state = (1103515245 * $state + 12345) % 2147483648;
    return int($state / 65536) % $n;
}
open my $customers, '>', "$dir/customers.tsv" or die "$dir/customers.tsv: $!\n";
printf $customers "c%04d\t%s %s.\t%s\n", $_, $names[pick(16)], chr(65 + $_ % 26),
    $countries[pick(8)] for 1 .. 40;
close $customers or die;
open my $orders, '>', "$dir/orders.tsv" or die "$dir/orders.tsv: $!\n";
printf $orders "o%05d\tc%04d\t%d.%02d\n", $_, 1 + pick(45), pick(500), pick(100)
    for 1 .. 300;    # customers 41..45 are unknown
close $orders or die;
