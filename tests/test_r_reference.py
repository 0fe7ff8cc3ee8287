"""hlmm against R: nlme's maximum likelihood fits of the same models, and MASS::rlm.

The reference numbers are in ``tests/data/r_reference/*.tsv``, made by ``make_reference.R`` from
the inputs that ``make_data.py`` writes (both in that directory; the tests do not need R). They
are nlme's fits, never our output:

* HLM: ``gls(y ~ x, weights = varComb(varExp(~ v1), ...), method = "ML")``;
  ``beta = (log sigma^2, 2 theta_1, ...)``.
* HLMM: ``lme(..., random = list(grp = pdIdent(~ G1 + ... + Gl - 1)), method = "ML")`` with one
  group; ``h2 = sigma^2 psi``.
* Default mode of hlmm_chr as in hlmm 1.2.0a1: null HLM with the covariates, then
  ``y* = (y - X alpha) exp(-V beta / 2)``, a null HLMM on ``y*`` for h2, and per SNP
  ``X = V = [1, g]`` on ``y*``.

Tolerances
----------
nlme's optimiser (nlminb, finite-difference gradient) was run with rel.tol 1e-15; from each fitted
point, one Newton step with the exact dense score and observed information (computed in R) moves
every parameter by at most 4.3e-8 (column ``max_newton_step``). Our estimates are maxima to
near machine precision, so estimates must agree to ``1e-7`` absolute plus ``1e-7`` relative,
standard errors (smooth functions of the estimates) to 1e-6 relative, and maximised
log-likelihoods to 1e-9 relative; where we fit the same data, our maximum must not be lower than
nlme's by more than 1e-9 relative. :func:`test_reference__is_within_the_stated_tolerance_of_the_mle`
holds the reference files to this.

Standard errors are compared where the conventions match: for HLM, ``add_se`` is
``(X' W X)^-1`` at the MLE, which is nlme's ``vcov`` times ``(N - p) / N`` (checked in R), and
``var_se`` the expected information ``2 (V'V)^-1``; for HLMM, every SE is from the observed
information, which R computes exactly from the dense n x n covariance (nlme's own ``apVar`` is a
numerical Hessian and agrees with it only to ~1%, so it is recorded but not used).

The HLMM default-mode tests encode 1.2.0a1's pipeline (issue 9): they fail while hlmm_chr adjusts
the phenotype with a null HLMM instead of the null HLM.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from hlmm import hetlm, hetlmm

REF = Path(__file__).resolve().parent / "data" / "r_reference"

EST_ATOL = 1e-7
EST_RTOL = 1e-7
SE_RTOL = 1e-6
LOGLIK_RTOL = 1e-9
H2_INIT = 0.05
NAMES = ["Intercept", "age", "batch"]  # covariate effects, as in the effects files
MEAN = [f"mean:{k}" for k in NAMES]
VAR = [f"var:{k}" for k in NAMES]


# ----------------------------------------------------------------------------------------------
# Reading the reference and the inputs
# ----------------------------------------------------------------------------------------------
def read_tsv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def num(x: str) -> float:
    return float("nan") if x == "NA" else float(x)


def read_columns(path, skip: int, sep=None) -> np.ndarray:
    """Numeric columns after the first ``skip`` of a table with a header, NA as NaN."""
    rows = [line.split(sep) for line in open(path).read().splitlines()[1:]]
    return np.array([[num(v) for v in r[skip:]] for r in rows])


@pytest.fixture(scope="module")
def data():
    y = read_columns(REF / "pheno.txt", 2)[:, 0]
    covariates = read_columns(REF / "covar.txt", 2)
    genotypes = read_columns(REF / "genotypes.tsv", 2, "\t")
    r = read_columns(REF / "random.tsv", 2, "\t")
    r = np.where(np.isnan(r), np.nanmean(r, axis=0), r)
    G = (r - r.mean(axis=0)) / r.std(axis=0) / np.sqrt(r.shape[1])
    X = np.column_stack([np.ones(len(y)), covariates])  # raw units, as R fitted them
    return {"y": y, "X": X, "genotypes": genotypes, "G": G}


@pytest.fixture(scope="module")
def snp_ref() -> dict:
    """{analysis: [row per SNP]} of snp_fits.tsv."""
    out: dict = {}
    for row in read_tsv(REF / "snp_fits.tsv"):
        out.setdefault(row["analysis"], []).append(row)
    return out


@pytest.fixture(scope="module")
def null_ref() -> dict:
    """{analysis: {parameter: row}} of null_fits.tsv."""
    out: dict = {}
    for row in read_tsv(REF / "null_fits.tsv"):
        out.setdefault(row["analysis"], {})[row["parameter"]] = row
    return out


def standardised_phenotype(data, null_ref) -> np.ndarray:
    """1.2.0a1's default-mode phenotype, from nlme's null HLM (raw covariate units)."""
    ref = null_ref["hlm_covariates"]
    alpha = np.array([num(ref[k]["estimate"]) for k in MEAN])
    beta = np.array([num(ref[k]["estimate"]) for k in VAR])
    X = data["X"]
    return (data["y"] - X @ alpha) * np.exp(-0.5 * (X @ beta))


# ----------------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------------
def assert_estimate(ours, ref, what):
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    np.testing.assert_allclose(ours, ref, rtol=EST_RTOL, atol=EST_ATOL, err_msg=what)


def assert_se(ours, ref, what):
    np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(ref, dtype=float), rtol=SE_RTOL, err_msg=what)


def assert_loglik(ours, ref, what, same_data=True):
    np.testing.assert_allclose(ours, ref, rtol=LOGLIK_RTOL, err_msg=what)
    if same_data:
        assert ours >= ref - LOGLIK_RTOL * abs(ref), f"{what}: our maximum {ours!r} is below nlme's {ref!r}"


def assert_row(ours: dict, ref: dict, what: str, mixed: bool, same_data=True):
    """``ours`` has add, add_se, var, var_se, likelihood (and h2, h2_se) of one SNP."""
    assert_estimate([ours["add"], ours["var"]], [num(ref["add"]), num(ref["var"])], f"{what}: add, var")
    assert_se([ours["add_se"], ours["var_se"]], [num(ref["add_se"]), num(ref["var_se"])], f"{what}: add_se, var_se")
    assert_loglik(ours["likelihood"], num(ref["loglik"]), f"{what}: log-likelihood", same_data)
    if mixed and "h2" in ours:
        assert_estimate(ours["h2"], num(ref["h2"]), f"{what}: h2")
        assert_se(ours["h2_se"], num(ref["h2_se"]), f"{what}: h2_se")


def snp_design(data, j: int, y: np.ndarray, with_covariates: bool):
    g = data["genotypes"][:, j]
    called = ~np.isnan(g)
    gc = g[called] - g[called].mean()
    base = data["X"][called] if with_covariates else np.ones((called.sum(), 1))
    X = np.column_stack([base, gc])
    return y[called], X, data["G"][called], int(called.sum())


def library_fit(y, X, G=None) -> dict:
    fit = hetlm.model(y, X, X).optimize_model() if G is None else hetlmm.model(y, X, X, G).optimize_model(H2_INIT)
    assert fit["success"]
    out = {"add": fit["alpha"][-1], "add_se": fit["alpha_se"][-1], "var": fit["beta"][-1],
           "var_se": fit["beta_se"][-1], "likelihood": fit["likelihood"]}
    if G is not None:
        out.update(h2=fit["h2"], h2_se=fit["h2_se"])
    return out


# ----------------------------------------------------------------------------------------------
# The reference itself
# ----------------------------------------------------------------------------------------------
def test_reference__is_within_the_stated_tolerance_of_the_mle(snp_ref, null_ref):
    steps = [num(r["max_newton_step"]) for rows in snp_ref.values() for r in rows]
    steps += [num(r["max_newton_step"]) for rows in null_ref.values() for r in rows.values()]
    assert len(steps) == 4 * 6 + 16
    assert max(steps) < EST_ATOL / 2
    for rows in snp_ref.values():
        for r in rows:
            assert abs(num(r["loglik"]) - num(r["loglik_dense"])) < 1e-10 * abs(num(r["loglik"]))


# ----------------------------------------------------------------------------------------------
# Library: hetlm and hetlmm on the data R fitted
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("analysis", ["hlm_fit_covariates", "hlm_default"])
def test_hetlm_snp_fits__match_nlme_gls_ml(data, snp_ref, null_ref, analysis):
    default = analysis.endswith("default")
    y = standardised_phenotype(data, null_ref) if default else data["y"]
    for j, ref in enumerate(snp_ref[analysis]):
        ys, X, _, n = snp_design(data, j, y, with_covariates=not default)
        assert n == int(ref["n"])
        assert_row(library_fit(ys, X), ref, f"{analysis} {ref['SNP']}", mixed=False)


@pytest.mark.parametrize("analysis", ["hlmm_fit_covariates", "hlmm_default"])
def test_hetlmm_snp_fits__match_nlme_lme_ml(data, snp_ref, null_ref, analysis):
    default = analysis.endswith("default")
    y = standardised_phenotype(data, null_ref) if default else data["y"]
    for j, ref in enumerate(snp_ref[analysis]):
        ys, X, G, n = snp_design(data, j, y, with_covariates=not default)
        assert n == int(ref["n"])
        assert_row(library_fit(ys, X, G), ref, f"{analysis} {ref['SNP']}", mixed=True)


def null_reference(ref: dict, names: list):
    est = np.array([num(ref[k]["estimate"]) for k in names])
    se = np.array([num(ref[k]["se"]) for k in names])
    return est, se, num(next(iter(ref.values()))["loglik"])


def test_hetlm_null_with_covariates__matches_nlme_gls_ml(data, null_ref):
    X = data["X"]
    fit = hetlm.model(data["y"], X, X).optimize_model()
    est, se, ll = null_reference(null_ref["hlm_covariates"], MEAN + VAR)
    assert_estimate(np.r_[fit["alpha"], fit["beta"]], est, "alpha, beta")
    assert_se(np.r_[fit["alpha_se"], fit["beta_se"]], se, "alpha_se, beta_se")
    assert_loglik(fit["likelihood"], ll, "log-likelihood")


def test_hetlmm_null_with_covariates__matches_nlme_lme_ml(data, null_ref):
    X = data["X"]
    fit = hetlmm.model(data["y"], X, X, data["G"]).optimize_model(H2_INIT)
    est, se, ll = null_reference(null_ref["hlmm_covariates"], MEAN + VAR + ["h2"])
    assert_estimate(np.r_[fit["alpha"], fit["beta"], fit["h2"]], est, "alpha, beta, h2")
    assert_se(np.r_[fit["alpha_se"], fit["beta_se"], fit["h2_se"]], se, "SEs")
    assert_loglik(fit["likelihood"], ll, "log-likelihood")


def test_hetlmm_null_of_standardised_phenotype__matches_nlme_lme_ml(data, null_ref):
    y = standardised_phenotype(data, null_ref)
    one = np.ones((len(y), 1))
    fit = hetlmm.model(y, one, one, data["G"]).optimize_model(H2_INIT)
    est, se, ll = null_reference(null_ref["hlmm_default_standardised"], ["mean:Intercept", "var:Intercept", "h2"])
    assert_estimate(np.r_[fit["alpha"], fit["beta"], fit["h2"]], est, "alpha, beta, h2")
    assert_se(np.r_[fit["alpha_se"], fit["beta_se"], fit["h2_se"]], se, "SEs")
    assert_loglik(fit["likelihood"], ll, "log-likelihood")


# ----------------------------------------------------------------------------------------------
# Command-line programs on the committed .bed/.txt files
# ----------------------------------------------------------------------------------------------
def run_hlmm_chr(out: Path, *options) -> dict:
    from hlmm.cli import hlmm_chr

    argv = [str(REF / "test.bed"), "0", "6", str(REF / "pheno.txt"), str(out), *map(str, options), "--quiet"]
    assert hlmm_chr.main(argv) == 0
    with gzip.open(f"{out}.models.gz", "rt") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    text = ("SNP", "chr", "A1", "A2", "test")
    return {r["SNP"]: {k: (v if k in text else num(v)) for k, v in r.items()} for r in rows}


def run_fit_hlmm_model(out: Path, *options) -> None:
    from hlmm.cli import fit_hlmm_model

    assert fit_hlmm_model.main([str(REF / "pheno.txt"), str(out), *map(str, options), "--quiet"]) == 0


def read_effects(path) -> tuple[list, np.ndarray, np.ndarray]:
    rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
    return [r[0] for r in rows], np.array([float(r[1]) for r in rows]), np.array([float(r[2]) for r in rows])


COVARIATES = ("--mean_covar", REF / "covar.txt", "--var_covar", REF / "covar.txt")
RANDOM = ("--random_gts", REF / "random.bed")


def assert_models(res: dict, refs: list, analysis: str, mixed: bool, same_data=True):
    assert list(res) == [r["SNP"] for r in refs]
    for ref in refs:
        row = res[ref["SNP"]]
        assert row["n"] == int(ref["n"])
        assert (row["A1"], row["A2"]) == ("T", "C")
        assert_row(row, ref, f"{analysis} {ref['SNP']}", mixed=mixed, same_data=same_data)


def assert_effects_file(path, ref: dict, names: list, file_names: list):
    got_names, est, se = read_effects(path)
    assert got_names == file_names
    ref_est, ref_se, _ = null_reference(ref, names)
    assert_estimate(est, ref_est, str(path))
    assert_se(se, ref_se, str(path))


def test_hlm_scan__fit_covariates__matches_nlme_gls_ml(tmp_path, snp_ref):
    res = run_hlmm_chr(tmp_path / "out", *COVARIATES, "--fit_covariates")
    assert_models(res, snp_ref["hlm_fit_covariates"], "hlm_fit_covariates", mixed=False)


def test_hlm_scan__default_mode__matches_nlme_gls_ml_on_standardised_phenotype(tmp_path, snp_ref, null_ref):
    out = tmp_path / "out"
    res = run_hlmm_chr(out, *COVARIATES)
    # y* comes from our null fit, R's from nlme's: the same to ~4e-8, so no ">=" on the likelihoods
    assert_models(res, snp_ref["hlm_default"], "hlm_default", mixed=False, same_data=False)
    assert_effects_file(f"{out}.null_mean_effects.txt", null_ref["hlm_covariates"], MEAN, NAMES)
    assert_effects_file(f"{out}.null_variance_effects.txt", null_ref["hlm_covariates"], VAR, NAMES)


def test_hlmm_scan__fit_covariates__matches_nlme_lme_ml(tmp_path, snp_ref, null_ref):
    out = tmp_path / "out"
    res = run_hlmm_chr(out, *COVARIATES, *RANDOM, "--fit_covariates")
    assert_models(res, snp_ref["hlmm_fit_covariates"], "hlmm_fit_covariates", mixed=True)
    assert_effects_file(f"{out}.null_h2.txt", null_ref["hlmm_covariates"], ["h2"], ["h2"])


def test_hlmm_scan__default_mode__matches_nlme_lme_ml_on_standardised_phenotype(tmp_path, snp_ref, null_ref):
    """1.2.0a1's default mode: y standardised by the null HLM, null h2 from an HLMM on it (issue 9)."""
    out = tmp_path / "out"
    res = run_hlmm_chr(out, *COVARIATES, *RANDOM)
    assert_effects_file(f"{out}.null_h2.txt", null_ref["hlmm_default_standardised"], ["h2"], ["h2"])
    assert_models(res, snp_ref["hlmm_default"], "hlmm_default", mixed=True, same_data=False)


@pytest.mark.parametrize("mode", [(), ("--fit_covariates",)], ids=["default_mode", "fit_covariates"])
def test_hlmm_scan__null_covariate_effects_are_the_null_hlm_as_in_1_2_0a1(tmp_path, null_ref, mode):
    """1.2.0a1 writes null_*_effects.txt from the null HLM (no random effects) even with --random_gts."""
    out = tmp_path / "out"
    run_hlmm_chr(out, *COVARIATES, *RANDOM, *mode)
    assert_effects_file(f"{out}.null_mean_effects.txt", null_ref["hlm_covariates"], MEAN, NAMES)
    assert_effects_file(f"{out}.null_variance_effects.txt", null_ref["hlm_covariates"], VAR, NAMES)


def test_fit_hlmm_model__hlm__matches_nlme_gls_ml(tmp_path, null_ref):
    out = tmp_path / "fit"
    run_fit_hlmm_model(out, *COVARIATES)
    ref = null_ref["hlm_covariates"]
    assert_effects_file(f"{out}.mean_effects.txt", ref, MEAN, NAMES)
    assert_effects_file(f"{out}.variance_effects.txt", ref, VAR, NAMES)


def test_fit_hlmm_model__hlmm__matches_nlme_lme_ml(tmp_path, null_ref):
    out = tmp_path / "fit"
    run_fit_hlmm_model(out, *COVARIATES, *RANDOM)
    ref = null_ref["hlmm_covariates"]
    assert_effects_file(f"{out}.mean_effects.txt", ref, MEAN, NAMES)
    assert_effects_file(f"{out}.variance_effects.txt", ref, VAR, NAMES)
    assert_effects_file(f"{out}.h2.txt", ref, ["h2"], ["h2"])


# ----------------------------------------------------------------------------------------------
# Dispersion: the robust mean-variance slope against MASS::rlm
# ----------------------------------------------------------------------------------------------
# MASS::rlm scales the MAD by 1/0.6745, statsmodels by 1/qnorm(0.75) = 1/0.6744897502, which moves
# the Huber fixed point by ~5e-7 (relative) here; MASS's default stopping rule (acc = 1e-4) by a
# further ~6e-6, so the reference is rlm(..., acc = 1e-14).
RLM_RTOL = 2e-6


def rlm_reference():
    vec = read_columns(REF / "rlm_vectors.tsv", 0, "\t")
    slopes = {r["fit"]: (num(r["slope"]), num(r["scale"])) for r in read_tsv(REF / "rlm_slope.tsv")}
    return vec[:, 0], vec[:, 1], vec[:, 2], slopes


def test_mean_variance_slope__matches_mass_rlm_huber_mad():
    from hlmm.dispersion import mean_variance_slope

    add, add_se, var, slopes = rlm_reference()
    _, slope, _ = mean_variance_slope(add, add_se, var)
    np.testing.assert_allclose(slope, slopes["rlm_tight"][0], rtol=RLM_RTOL)


def test_mass_rlm_reference__differs_from_statsmodels_only_by_the_mad_constant():
    # Huber psi_k(r / (a s)) = psi_{k a}(r / s) / a: MASS's fixed point is statsmodels' with k scaled
    # by a = qnorm(0.75) / 0.6745. This justifies RLM_RTOL above.
    import statsmodels.api as sm

    add, _, var, slopes = rlm_reference()
    a = norm.ppf(0.75) / 0.6745
    fit = sm.RLM(var, add[:, None], M=sm.robust.norms.HuberT(t=1.345 * a)).fit(tol=1e-14, maxiter=1000)
    np.testing.assert_allclose(fit.params[0], slopes["rlm_tight"][0], rtol=1e-10)
    np.testing.assert_allclose(fit.scale * a, slopes["rlm_tight"][1], rtol=1e-10)
    plain = sm.RLM(var, add[:, None], M=sm.robust.norms.HuberT()).fit(tol=1e-14, maxiter=1000)
    assert 1e-8 < abs(plain.params[0] / slopes["rlm_tight"][0] - 1) < RLM_RTOL / 2
