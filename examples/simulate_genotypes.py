"""Simulate the tutorial's genotypes: test.bed and random.bed (with .bim and .fam).

Replaces ``plink --simulate test.sim``: each file holds genotypes of ``--n`` individuals (default
100,000) at ``--snps`` SNPs (default 500), in Hardy-Weinberg equilibrium with allele frequencies
drawn uniformly from 0.05 to 0.95. Run in examples/.
"""

import argparse

import numpy as np

from hlmm.io import BedWriter


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=100_000, help="individuals (default 100,000)")
    p.add_argument("--snps", type=int, default=500, help="SNPs in each file (default 500)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    ids = [(f"per{i}", f"per{i}") for i in range(args.n)]
    for name in ("test", "random"):
        with BedWriter(name, ids) as w:
            for j0 in range(0, args.snps, 100):
                b = min(100, args.snps - j0)
                freq = rng.uniform(0.05, 0.95, b)
                w.write(rng.binomial(2, freq, (args.n, b)).astype(float),
                        snp=[f"{name}_{j0 + j}" for j in range(b)],
                        chrom=["1" if name == "test" else "2"] * b,
                        pos=[1000 * (j0 + j + 1) for j in range(b)],
                        A1=["A"] * b, A2=["B"] * b)
        print(f"wrote {name}.bed: {args.n} individuals x {args.snps} SNPs")


if __name__ == "__main__":
    main()
