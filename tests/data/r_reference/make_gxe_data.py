"""Write the inputs of the G×E reference fits (seeded numpy).

Run from anywhere (with the repo's venv, for :func:`hlmm.io.write_bed`); writes next to this file::

    .venv/bin/python tests/data/r_reference/make_gxe_data.py

Files
-----
gxe_data.tsv
    Tab-separated, header ``FID IID y y_flat x1 sex E B E2 g1 ... g6``, ``NA`` for a missing
    call; what make_gxe_reference.R reads. g1..g6 are copies of A1 (the .bim's 5th column, ``T``).
gxe.bed/.bim/.fam
    g1..g6 (A1 = T, A2 = C, chromosome 1), written by :func:`hlmm.io.write_bed`, same individuals
    in the same order as gxe_data.tsv.
gxe_pheno.txt
    ``FID IID y y_flat`` (space-separated, header line).
gxe_covar.txt
    ``FID IID x1 sex E B E2`` (space-separated, header line).

Simulation (n = 600)
--------------------
x1 ~ N(0, 1); sex ~ Bernoulli(0.5); E ~ N(0, 1); B ~ Bernoulli(0.3); E2 ~ N(0, 1);
g_j ~ Binomial(2, f_j), f = (0.2, 0.3, 0.4, 0.5, 0.25, 0.35); then about 2% of each g_j set to
missing (the phenotypes are simulated from the complete, uncentred genotypes).

    y      = 0.2 x1 + 0.3 sex + 0.4 E + 0.3 g1 + 0.25 g1 E + 0.2 g2 B
             + N(0, 1) * exp((0.3 E + 0.2 g3 + 0.2 sex) / 2)
    y_flat = 0.2 x1 + 0.3 sex + 0.4 E + 0.3 g4 E + N(0, 1)          (homoskedastic)

g5 and g6 have no effect. y and the covariates have no missing values.
"""

from pathlib import Path

import numpy as np

from hlmm.io import write_bed

HERE = Path(__file__).resolve().parent
SEED = 20240917
N = 600
FREQ = np.array([0.2, 0.3, 0.4, 0.5, 0.25, 0.35])
MISSING_RATE = 0.02


def fmt(v: float) -> str:
    return "NA" if np.isnan(v) else repr(float(v))


def write_table(path: Path, ids: list, columns: dict, sep: str) -> None:
    names = list(columns)
    values = np.column_stack([columns[k] for k in names])
    with open(path, "w") as f:
        f.write(sep.join(["FID", "IID"] + names) + "\n")
        for (fid, iid), row in zip(ids, values):
            f.write(sep.join([fid, iid] + [fmt(v) for v in row]) + "\n")


def main() -> None:
    rng = np.random.default_rng(SEED)
    ids = [(f"fam{i}", f"ind{i}") for i in range(N)]
    m = len(FREQ)

    x1 = rng.standard_normal(N)
    sex = (rng.random(N) < 0.5).astype(float)
    E = rng.standard_normal(N)
    B = (rng.random(N) < 0.3).astype(float)
    E2 = rng.standard_normal(N)
    g_full = rng.binomial(2, FREQ, (N, m)).astype(float)
    g = g_full.copy()
    g[rng.random((N, m)) < MISSING_RATE] = np.nan

    gf = g_full
    noise = rng.standard_normal(N)
    y = (0.2 * x1 + 0.3 * sex + 0.4 * E + 0.3 * gf[:, 0] + 0.25 * gf[:, 0] * E + 0.2 * gf[:, 1] * B
         + noise * np.exp((0.3 * E + 0.2 * gf[:, 2] + 0.2 * sex) / 2))
    y_flat = 0.2 * x1 + 0.3 * sex + 0.4 * E + 0.3 * gf[:, 3] * E + rng.standard_normal(N)

    cols = {"y": y, "y_flat": y_flat, "x1": x1, "sex": sex, "E": E, "B": B, "E2": E2}
    cols.update({f"g{j + 1}": g[:, j] for j in range(m)})
    write_table(HERE / "gxe_data.tsv", ids, cols, "\t")
    write_table(HERE / "gxe_pheno.txt", ids, {"y": y, "y_flat": y_flat}, " ")
    write_table(HERE / "gxe_covar.txt", ids, {k: cols[k] for k in ("x1", "sex", "E", "B", "E2")}, " ")
    write_bed(str(HERE / "gxe"), g, ids=ids, snp=[f"g{j + 1}" for j in range(m)], chrom=["1"] * m,
              pos=[1000 * (j + 1) for j in range(m)], A1=["T"] * m, A2=["C"] * m)
    print("missing calls per variant:", np.isnan(g).sum(0).tolist())
    print("A1 frequencies:", np.round(np.nanmean(g, 0) / 2, 3).tolist())


if __name__ == "__main__":
    main()
