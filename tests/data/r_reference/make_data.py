"""Write the inputs of the R reference fits (seeded numpy; no hlmm code is used).

Run from anywhere; writes next to this file::

    python tests/data/r_reference/make_data.py

Files
-----
test.bed/.bim/.fam
    n = 500 individuals, 6 test SNPs (SNP 3 has 2% missing calls).
random.bed/.bim/.fam
    The same individuals, l = 15 SNPs for random effects (1% missing calls).
genotypes.tsv, random.tsv
    The same genotypes as text (copies of A1, the .bim's 5th column; ``NA`` for a missing call),
    which is what make_reference.R reads.
pheno.txt, covar.txt
    ``FID IID trait`` and ``FID IID age batch`` with headers.
rlm_vectors.tsv
    A pair ``add``, ``var`` (300 values, a few outliers) for the robust mean-variance slope.

The .bed files are written here byte by byte (SNP-major, 2 bits per genotype, 00 = two copies of
A1, 10 = one, 11 = none, 01 = missing), independently of :mod:`hlmm.io`.
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20240611
N, M, L = 500, 6, 15


def write_bed(prefix: Path, genotypes: np.ndarray, ids: list, snp_prefix: str) -> None:
    """SNP-major PLINK fileset from copies of A1 (NaN missing)."""
    n, m = genotypes.shape
    code = {2.0: 0b00, 1.0: 0b10, 0.0: 0b11}
    out = bytearray(b"\x6c\x1b\x01")
    for j in range(m):
        row = bytearray((n + 3) // 4)
        for i in range(n):
            g = genotypes[i, j]
            c = 0b01 if np.isnan(g) else code[float(g)]
            row[i // 4] |= c << (2 * (i % 4))
        out += row
    prefix.with_suffix(".bed").write_bytes(bytes(out))
    prefix.with_suffix(".fam").write_text("".join(f"{f} {i} 0 0 0 -9\n" for f, i in ids))
    prefix.with_suffix(".bim").write_text(
        "".join(f"2\t{snp_prefix}{j}\t0\t{1000 * (j + 1)}\tT\tC\n" for j in range(m)))


def write_tsv(path: Path, ids: list, values: np.ndarray, names: list) -> None:
    with open(path, "w") as f:
        f.write("\t".join(["FID", "IID"] + names) + "\n")
        for (fid, iid), row in zip(ids, values):
            f.write("\t".join([fid, iid] + ["NA" if np.isnan(v) else repr(float(v)) for v in row]) + "\n")


def main() -> None:
    rng = np.random.default_rng(SEED)
    ids = [(f"fam{i}", f"ind{i}") for i in range(N)]

    freq = np.array([0.15, 0.25, 0.35, 0.45, 0.3, 0.2])
    g = rng.binomial(2, freq, (N, M)).astype(float)
    g[rng.choice(N, 10, replace=False), 3] = np.nan
    r = rng.binomial(2, rng.uniform(0.1, 0.5, L), (N, L)).astype(float)
    r[rng.random((N, L)) < 0.01] = np.nan

    age = 10.0 + 3.0 * rng.standard_normal(N)
    batch = rng.integers(0, 2, N).astype(float)

    # random effects of the standardised random SNPs, h2 = 0.6 on the residual scale
    ri = np.where(np.isnan(r), np.nanmean(r, axis=0), r)
    Z = (ri - ri.mean(0)) / ri.std(0) / np.sqrt(L)
    u = rng.standard_normal(L) * np.sqrt(0.6)
    gi = np.where(np.isnan(g), np.nanmean(g, axis=0), g)
    mean = 2.0 + 0.08 * age - 0.3 * batch + 0.25 * gi[:, 0] + 0.1 * gi[:, 2]
    log_var = -0.2 + 0.04 * (age - 10.0) + 0.35 * batch + 0.2 * gi[:, 1] - 0.15 * gi[:, 2]
    y = mean + Z @ u + rng.standard_normal(N) * np.exp(log_var / 2)

    write_bed(HERE / "test", g, ids, "snp")
    write_bed(HERE / "random", r, ids, "rnd")
    write_tsv(HERE / "genotypes.tsv", ids, g, [f"snp{j}" for j in range(M)])
    write_tsv(HERE / "random.tsv", ids, r, [f"rnd{j}" for j in range(L)])
    with open(HERE / "pheno.txt", "w") as f:
        f.write("FID IID trait\n")
        f.writelines(f"{fid} {iid} {v!r}\n" for (fid, iid), v in zip(ids, y.tolist()))
    with open(HERE / "covar.txt", "w") as f:
        f.write("FID IID age batch\n")
        f.writelines(f"{fid} {iid} {a!r} {b!r}\n" for (fid, iid), a, b in zip(ids, age.tolist(), batch.tolist()))

    k = 300
    add = rng.normal(0.0, 0.05, k)
    var = 0.6 * add + rng.normal(0.0, 0.02, k)
    out = rng.choice(k, 12, replace=False)
    var[out] += rng.choice([-1.0, 1.0], 12) * rng.uniform(0.1, 0.3, 12)
    with open(HERE / "rlm_vectors.tsv", "w") as f:
        f.write("add\tadd_se\tvar\n")
        f.writelines(f"{a!r}\t{0.01!r}\t{v!r}\n" for a, v in zip(add.tolist(), var.tolist()))


if __name__ == "__main__":
    main()
