"""Simulate the tutorial's phenotype (the Gamma model) and write test_phenotype.fam.

Every SNP of test.bed and random.bed has an effect on the mean of a Gamma-distributed trait and,
through the Gamma mean-variance relation, on its variance; the first SNP of test.bed also has a
dispersion effect, an effect on the variance that the mean-variance relation does not explain.
The mean effects explain 10% of the variance of the untransformed trait. The trait is then
inverse-normal transformed. Run in examples/ after simulate_genotypes.py.
"""

import argparse

import numpy as np
from scipy.stats import norm, rankdata

from hlmm.io import open_bed


def simulate_gamma_phenotype(g: np.ndarray, h2: float, v: float, rng) -> np.ndarray:
    """The Gamma model of the hlmm paper's simulations.

    Parameters
    ----------
    g : ndarray, shape (n, m)
        Genotypes; column 0 is the SNP with a dispersion effect.
    h2 : float
        Fraction of the trait's variance explained by the mean effects.
    v : float
        Dispersion effect (log-variance scale) of the first SNP.
    """
    add = g[:, 1:] @ rng.standard_normal(g.shape[1] - 1)
    add = np.sqrt(0.995) * (add - add.mean()) / add.std(ddof=1)
    add = add + np.sqrt(2 * 0.005) * g[:, 0]
    gamma_mean = np.ceil(abs(add.min()))
    s = (1 - h2) / (gamma_mean * h2)
    g1 = g[:, 0] - g[:, 0].mean()
    shape = np.exp(-v * g1) * (gamma_mean + add) / s
    return rng.gamma(np.maximum(shape, 1e-12), s * np.exp(v * g1))


def inverse_normal(y: np.ndarray) -> np.ndarray:
    """qnorm(ecdf(y)(y) * n / (n + 1)), as the tutorial's R script."""
    n = len(y)
    return norm.ppf(rankdata(y, method="max") / (n + 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=2, help="random seed (default 2)")
    p.add_argument("--h2", type=float, default=0.10, help="variance explained by mean effects (default 0.10)")
    p.add_argument("--dispersion", type=float, default=0.05, help="dispersion effect of the first SNP (default 0.05)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    test, random = open_bed("test.bed"), open_bed("random.bed")
    rows = np.arange(test.n_samples)
    g = np.hstack([test.read_dosages(rows, 0, test.n_variants).T, random.read_dosages(rows, 0, random.n_variants).T])
    y = inverse_normal(simulate_gamma_phenotype(g, args.h2, args.dispersion, rng))
    with open("test_phenotype.fam", "w") as f:
        f.write("".join(f"{fid} {iid} {val:.10g}\n" for (fid, iid), val in zip(test.samples, y)))
    print(f"wrote test_phenotype.fam: {len(y)} individuals")


if __name__ == "__main__":
    main()
