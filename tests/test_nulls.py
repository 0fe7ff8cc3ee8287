"""Issue 9: hlmm_chr's mixed-model rows are on 1.2.0a1's scale.

Everything here is recomputed with a generic optimiser (scipy L-BFGS-B, Nelder-Mead polish) on
dense likelihoods (scipy.stats.multivariate_normal on the n x n covariance), not with hlmm's
models: the null HLM that standardises the phenotype, the null HLMM that gives h2, and each
SNP's HLMM. A pipeline on another scale (as round 1's, which adjusted y with the null HLMM)
fails by far more than the tolerances.
"""

import numpy as np
import pytest
from datasets import write_table
from scipy.optimize import minimize
from scipy.stats import norm

from hlmm.cli import hlmm_chr
from hlmm.io import write_bed
from hlmm.results import read_models


def dense_nll(y, mean, S):
    """-log N(y; mean, S) from the Cholesky factor of the dense n x n covariance."""
    c = np.linalg.cholesky(S)
    z = np.linalg.solve(c, y - mean)
    return 0.5 * (len(y) * np.log(2 * np.pi) + z @ z) + np.log(np.diag(c)).sum()


def _fit(fun, x0, bounds=None):
    res = minimize(fun, x0, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000})
    res = minimize(fun, res.x, method="Nelder-Mead" if bounds is None else "L-BFGS-B", bounds=bounds,
                   options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000} if bounds is None else
                   {"ftol": 1e-16, "gtol": 1e-12, "maxiter": 5000})
    return res


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("null")
    rng = np.random.default_rng(42)
    n, l, m = 220, 12, 2  # noqa: E741
    ids = [(f"F{i}", f"I{i}") for i in range(n)]
    R = rng.binomial(2, 0.4, (n, l)).astype(float)
    g = rng.binomial(2, 0.3, (n, m)).astype(float)
    age = rng.normal(50, 10, n)
    G = (R - R.mean(0)) / R.std(0) / np.sqrt(l)
    y = 3 + 0.05 * age + 0.4 * g[:, 0] + G @ rng.normal(0, 1.2, l) + rng.standard_normal(n) * np.exp(
        0.5 * (0.02 * (age - 50) + 0.3 * g[:, 1]))
    write_bed(str(d / "test"), g, ids=ids)
    write_bed(str(d / "random"), R, ids=ids)
    write_table(d / "pheno.txt", ids, y)
    write_table(d / "covar.txt", ids, age[:, None], header=["age"])
    return dict(dir=d, y=y, age=age, g=g, G=G, n=n)


def test_default_mode_hlmm__rows_and_null_h2_match_dense_generic_optimiser(data, tmp_path):
    out = tmp_path / "o"
    d = data["dir"]
    assert hlmm_chr.main([str(d / "test.bed"), "0", "2", str(d / "pheno.txt"), str(out), "--random_gts",
                          str(d / "random.bed"), "--mean_covar", str(d / "covar.txt"), "--var_covar",
                          str(d / "covar.txt"), "--quiet"]) == 0
    y, n, G = data["y"], data["n"], data["G"]
    GG = G @ G.T
    z = (data["age"] - data["age"].mean()) / data["age"].std()
    X = np.column_stack([np.ones(n), z])

    # 1. null HLM by a generic optimiser on the independent-normal likelihood
    def hlm_nll(p):
        return -norm.logpdf(y, X @ p[:2], np.exp(0.5 * (X @ p[2:]))).sum()

    p = _fit(hlm_nll, np.array([y.mean(), 0, np.log(y.var()), 0])).x
    y_std = (y - X @ p[:2]) * np.exp(-0.5 * (X @ p[2:]))

    # 2. null HLMM on the standardised phenotype, X = V = 1
    def null_nll(q):
        S = q[2] * GG + np.exp(q[1]) * np.eye(n)
        return dense_nll(y_std, np.full(n, q[0]), S)

    q = _fit(null_nll, np.array([0.0, 0.0, 0.1]), bounds=[(None, None), (None, None), (0, None)]).x
    h2 = float(open(f"{out}.null_h2.txt").read().split()[1])
    assert h2 == pytest.approx(q[2], rel=2e-4, abs=1e-6)

    # 3. each SNP's HLMM on the standardised phenotype
    res = read_models(f"{out}.models.gz")
    for j in range(2):
        gc = data["g"][:, j] - data["g"][:, j].mean()

        def snp_nll(t, gc=gc):
            S = t[4] * GG + np.diag(np.exp(t[2] + t[3] * gc))
            return dense_nll(y_std, t[0] + t[1] * gc, S)

        t = _fit(snp_nll, np.array([q[0], 0, q[1], 0, q[2]]), bounds=[(None, None)] * 4 + [(0, None)])
        assert res["likelihood"][j] >= -t.fun - 1e-6 * abs(t.fun)  # ours is at least as high
        assert res["likelihood"][j] == pytest.approx(-t.fun, abs=1e-5)
        assert res["add"][j] == pytest.approx(t.x[1], abs=2e-4 * res["add_se"][j] + 1e-7)
        assert res["var"][j] == pytest.approx(t.x[3], abs=2e-4 * res["var_se"][j] + 1e-7)
