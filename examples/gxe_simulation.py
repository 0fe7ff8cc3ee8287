"""Simulate the tutorial's G×E data: an exposure E and a trait with a G×E effect, for test.bed.

Writes ``exposure.txt`` (FID IID E) and ``gxe_phenotype.txt`` (FID IID y). The trait has small mean
effects of the first 20 SNPs of test.bed, an exposure E ~ N(0, 1) that raises its mean and its
variance (log-variance 0.3 per unit of E), and a G×E effect of SNP test_5: its additive effect
changes by 0.25 per copy and unit of E. The G×E effect makes test_5 a variance QTL, which the first
stage of the two-stage workflow finds; the second tests it (and the other picks) against E. Run in
examples/ after simulate_genotypes.py.
"""

import argparse

import numpy as np

from hlmm.io import open_bed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=3, help="random seed (default 3)")
    p.add_argument("--gxe", type=float, default=0.25, help="G×E effect of test_5 (default 0.25)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    src = open_bed("test.bed")
    n = src.n_samples
    g = np.nan_to_num(src.read_dosages(np.arange(n), 0, 20).T, nan=0.0)  # copies of A1
    E = rng.standard_normal(n)
    # each copy of A1 of test_5 adds gxe * E: the trait's variance grows with the copies (a vQTL)
    y = g @ rng.normal(0, 0.02, 20) + 0.3 * E + args.gxe * g[:, 5] * E + rng.standard_normal(n) * np.exp(0.15 * E)
    ids = src.samples
    with open("exposure.txt", "w") as f:
        f.write("FID IID E\n" + "".join(f"{a} {b} {e:.8g}\n" for (a, b), e in zip(ids, E)))
    with open("gxe_phenotype.txt", "w") as f:
        f.write("FID IID y\n" + "".join(f"{a} {b} {v:.8g}\n" for (a, b), v in zip(ids, y)))
    print(f"wrote exposure.txt and gxe_phenotype.txt: {n} individuals, G×E effect {args.gxe} on test_5")


if __name__ == "__main__":
    main()
