#!/usr/bin/env python3
"""Parameter sweep mapper: for each growth rate r, the Lyapunov exponent of the logistic map
x -> r x (1 - x), a stand-in for an expensive simulation. Prints `r<TAB>exponent`.

NLineInputFormat hands the mapper `offset<TAB>line`; the serial pipeline hands it `line`:
everything up to the last TAB is dropped, so the same script runs in both."""
import math
import sys

for line in sys.stdin:
    r = float(line.rstrip("\n").rpartition("\t")[2])
    x, total, steps = 0.2, 0.0, 20000
    for _ in range(1000):  # let the transient die out
        x = r * x * (1 - x)
    for _ in range(steps):
        x = r * x * (1 - x)
        total += math.log(max(abs(r * (1 - 2 * x)), 1e-300))
    print(f"{r:.2f}\t{total / steps:.4f}")
