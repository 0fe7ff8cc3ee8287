"""Small data sets written to disk for the end-to-end tests."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hlmm.io import write_bed


@dataclass
class Dataset:
    dir: Path
    bed: str
    pheno: str
    covar: str
    random: str
    random_txt: str
    genotypes: np.ndarray  # n x m, NaN missing, .fam order
    y: np.ndarray  # first phenotype, .fam order (NaN where missing)
    covariates: np.ndarray  # n x 2, .fam order (NaN where missing)
    random_genotypes: np.ndarray


def write_table(path, ids, values, header=None, missing="NA", order=None):
    order = np.arange(len(ids)) if order is None else order
    with open(path, "w") as f:
        if header:
            f.write(" ".join(["FID", "IID"] + header) + "\n")
        for i in order:
            vals = [missing if np.isnan(v) else repr(float(v)) for v in np.atleast_1d(values[i])]
            f.write(" ".join([ids[i][0], ids[i][1]] + vals) + "\n")


def make_dataset(tmp_path, n=600, m=12, l=15, seed=0, missing_rate=0.01) -> Dataset:
    rng = np.random.default_rng(seed)
    tmp_path = Path(tmp_path)
    ids = [(f"F{i}", f"I{i}") for i in range(n)]
    freq = rng.uniform(0.1, 0.5, m)
    g = rng.binomial(2, freq, (n, m)).astype(float)
    g[rng.random((n, m)) < missing_rate] = np.nan
    g[:, m - 1] = 0.0  # monomorphic
    g[: n // 10, m - 2] = np.nan  # 10% missing
    g[:, m - 3] = (rng.random(n) < 0.02).astype(float)  # MAF ~ 0.01
    write_bed(str(tmp_path / "test"), g, ids=ids, A1=["T"] * m, A2=["C"] * m,
              chrom=["3"] * m, pos=list(range(100, 100 + 10 * m, 10)))
    r = rng.binomial(2, 0.3, (n, l)).astype(float)
    r[rng.random((n, l)) < 0.02] = np.nan
    write_bed(str(tmp_path / "random"), r, ids=ids)
    covar = np.column_stack([10 + 3 * rng.standard_normal(n), rng.integers(0, 2, n).astype(float)])
    gi = np.nan_to_num(g, nan=0.0)
    eta = 0.3 * gi[:, 0] + 0.1 * covar[:, 0]
    logv = 0.25 * gi[:, 1] + 0.3 * covar[:, 1]
    u = rng.standard_normal(l) * 0.3
    ri = np.nan_to_num(r, nan=0.6)
    y = eta + (ri - 0.6) @ u + rng.standard_normal(n) * np.exp(logv / 2)
    y2 = rng.standard_normal(n)
    y[[3, 17]] = np.nan
    covar[[5], 1] = np.nan
    order = rng.permutation(n)  # files in a different order than the .fam
    write_table(tmp_path / "pheno.txt", ids, np.column_stack([y, y2]), header=["trait", "other"], order=order)
    write_table(tmp_path / "covar.txt", ids, covar, header=["age", "sex"], order=order[::-1])
    write_table(tmp_path / "random.txt", ids, r)
    return Dataset(tmp_path, str(tmp_path / "test.bed"), str(tmp_path / "pheno.txt"),
                   str(tmp_path / "covar.txt"), str(tmp_path / "random.bed"), str(tmp_path / "random.txt"),
                   g, y, covar, r)
