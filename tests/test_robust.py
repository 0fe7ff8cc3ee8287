"""Tests of hlmm.robust: sandwich covariance against numdifftools, the class engine and simulations."""

import numdifftools as nd
import numpy as np
import pytest

from hlmm import hetlm, robust
from hlmm.engines import _hlm_fits


def simulate(n, seed, covariates=True, dist="normal"):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal(n)]) if covariates else np.ones((n, 1))
    V = np.column_stack([np.ones(n), rng.standard_normal(n)]) if covariates else np.ones((n, 1))
    eps = rng.standard_normal(n) if dist == "normal" else rng.standard_t(5, n) / np.sqrt(5 / 3)
    g = rng.binomial(2, 0.3, n).astype(float)
    g -= g.mean()
    Xg, Vg = np.column_stack([X, g]), np.column_stack([V, g])
    y = Xg @ rng.normal(0, 0.3, Xg.shape[1]) + eps * np.exp(Vg @ rng.normal(0, 0.2, Vg.shape[1]) / 2)
    return y, Xg, Vg


@pytest.mark.parametrize("covariates", [False, True])
def test_hlm_sandwich__matches_numdifftools_scores_and_information(covariates):
    """A^-1 B A^-1 with B from numdifftools per-individual scores and A = -Hessian of the
    expected log-likelihood by numdifftools, at the MLE of a t5 trait (where sandwich != model)."""
    y, X, V = simulate(300, seed=1, covariates=covariates, dist="t5")
    fit = hetlm.model(y, X, V).optimize_model()
    c = X.shape[1]
    theta = np.concatenate([fit["alpha"], fit["beta"]])

    def loglik_i(th):
        mu, lv = X @ th[:c], V @ th[c:]
        return -0.5 * (np.log(2 * np.pi) + lv + (y - mu) ** 2 * np.exp(-lv))

    mu0, d0 = X @ fit["alpha"], np.exp(V @ fit["beta"])

    def expected_loglik(th):  # E over y_i ~ N(mu0_i, d0_i) of the log-likelihood
        mu, lv = X @ th[:c], V @ th[c:]
        return -0.5 * np.sum(lv + (d0 + (mu - mu0) ** 2) * np.exp(-lv))

    s = nd.Jacobian(loglik_i)(theta)  # (n, c + v)
    A = -nd.Hessian(expected_loglik)(theta)
    ref = np.linalg.solve(A, np.linalg.solve(A, s.T @ s).T)
    cov = robust.hlm_sandwich(y, X, V, fit["alpha"], fit["beta"])
    np.testing.assert_allclose(cov, ref, rtol=1e-6, atol=1e-10 * np.max(np.abs(ref)))
    # the information is hetlm's: its inverse blocks are hetlm's covariances
    Ainv = np.linalg.inv(A)
    np.testing.assert_allclose(Ainv[:c, :c], fit["alpha_cov"], rtol=1e-6, atol=1e-9 * np.max(Ainv))
    np.testing.assert_allclose(Ainv[c:, c:], fit["beta_cov"], rtol=1e-6, atol=1e-9 * np.max(Ainv))


def class_power_sums(y, G):
    """(B, 3, 5) power sums of y over genotype classes 0, 1, 2 (NaN calls in no class)."""
    out = np.zeros((G.shape[1], 3, 5))
    for k in range(3):
        mask = (G == k).astype(float)
        for p in range(5):
            out[:, k, p] = mask.T @ y**p
    return out


def test_hlm_sandwich_classes__equals_per_individual_version():
    rng = np.random.default_rng(2)
    n, m = 500, 12
    y = rng.standard_t(5, n) * 0.8 + 0.3
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    G[rng.random((n, m)) < 0.05] = np.nan
    gbar = np.nanmean(G, axis=0)
    alpha = rng.normal(0, 0.2, (m, 2))
    beta = rng.normal(0, 0.2, (m, 2))
    cov = robust.hlm_sandwich_classes(np.arange(3.0)[None, :] - gbar[:, None], class_power_sums(y, G), alpha, beta)
    for j in range(m):
        called = ~np.isnan(G[:, j])
        Z = np.column_stack([np.ones(called.sum()), G[called, j] - gbar[j]])
        ref = robust.hlm_sandwich(y[called], Z, Z, alpha[j], beta[j])
        np.testing.assert_allclose(cov[j], ref, rtol=1e-9, atol=1e-12)


def test_hlm_sandwich_classes__nan_for_snps_with_one_class_or_bad_estimates():
    y = np.linspace(-1, 1, 30)
    G = np.column_stack([np.zeros(30), np.r_[np.zeros(15), np.ones(15)], np.r_[np.zeros(15), np.full(15, 2.0)]])
    alpha = np.array([[0.0, 0.0], [0.0, 0.1], [0.0, np.nan]])
    cov = robust.hlm_sandwich_classes(np.arange(3.0), class_power_sums(y, G), alpha, np.zeros((3, 2)))
    assert np.all(np.isnan(cov[0])) and np.all(np.isfinite(cov[1])) and np.all(np.isnan(cov[2]))


def test_hlm_sandwich_classes__shape_errors():
    with pytest.raises(ValueError, match=r"\(B, K, 5\)"):
        robust.hlm_sandwich_classes(np.arange(3.0), np.zeros((2, 3, 4)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="alpha has 1 and beta 2 rows but power_sums has 2 SNPs"):
        robust.hlm_sandwich_classes(np.arange(3.0), np.zeros((2, 3, 5)), np.zeros((1, 2)), np.zeros((2, 2)))


def fit_snps(y, G):
    """Full-model MLEs and model-based SEs of many SNPs by the class engine, with sandwich covariances."""
    counts = np.stack([(G == k).sum(0) for k in range(3)], -1).astype(float)
    ps = class_power_sums(y, G)
    fit = _hlm_fits.fit_classes(counts, ps[..., 1], ps[..., 2])
    gbar = (counts[:, 1] + 2 * counts[:, 2]) / counts.sum(1)
    alpha = np.column_stack([np.full(G.shape[1], np.nan), fit["add"]])
    # the class engine reports the SNP effects; recover the intercepts from the class sums
    g = np.arange(3.0)[None, :] - gbar[:, None]
    w = np.exp(-(fit["beta"][:, :1] + fit["beta"][:, 1:] * g))
    alpha[:, 0] = ((w * (ps[..., 1] - counts * fit["add"][:, None] * g)).sum(1)) / (w * counts).sum(1)
    cov = robust.hlm_sandwich_classes(g, ps, alpha, fit["beta"])
    return fit, cov


@pytest.mark.parametrize("seed", [3, 4])
def test_hlm_sandwich__agrees_with_model_se_for_normal_data(seed):
    """n = 5,000, 300 null SNPs, normal y; robust / model SE ratios of the SNP effects.

    Mean: ratio^2 - 1 ~= sum g~^2 (r^2 - 1) / sum g~^2 (unit variance), sd sqrt(2 kurt(g) / n) / 2
    for the ratio, at most 1.7 / sqrt(n) for allele frequencies >= 0.1 (kurt(g) <= 5.6); no part
    common to all SNPs, since sum (r^2 - 1) = 0 at the MLE. Variance: ratio^2 - 1 ~=
    sum g^2 ((r^2 - 1)^2 - 2) / (2 sum g^2), with Var((r^2 - 1)^2) = 56 for normal r: sd of the
    ratio sqrt(56 kurt(g) / n) / 4, at most 4.4 / sqrt(n), of which a part common to all SNPs (the
    phenotype's realised kurtosis) has sd sqrt(56 / n) / 4 = 1.9 / sqrt(n). Bounds: median ratio
    within 1 +- 3 / sqrt(n) (mean; the median of 300 SNPs has sd ~0.1 / sqrt(n)) and
    1 +- 6 / sqrt(n) (variance; 3 sd of the common part), and 95% of SNPs within 1 +- 12 / sqrt(n)
    (at least 2.7 sd for each SNP). Measured over 10 seeds: sd of the ratios 0.7 and 2.0 / sqrt(n)
    (smaller than the bounds because the full-model MLE makes sum (1, g)(r^2/d - 1) = 0), median
    deviations within 0.1 and 2.9 / sqrt(n).
    """
    n, m = 5000, 300
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(n)
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    fit, cov = fit_snps(y, G)
    assert np.all(fit["success"])
    ratio_add = np.sqrt(cov[:, 1, 1]) / fit["add_se"]
    ratio_var = np.sqrt(cov[:, 3, 3]) / fit["var_se"]
    assert abs(np.median(ratio_add) - 1) < 3 / np.sqrt(n)
    assert abs(np.median(ratio_var) - 1) < 6 / np.sqrt(n)
    for r in (ratio_add, ratio_var):
        assert np.mean(np.abs(r - 1) < 12 / np.sqrt(n)) > 0.95


def test_hlm_sandwich__corrects_variance_se_for_heavy_tails():
    """For t5 residuals (kurtosis 6) Var(r^2 / d - 1) = 8 instead of 2: the sandwich var SE is about
    twice the model SE (less in a sample, whose realised kurtosis is usually below 6: measured 1.59;
    required 1.3-2.5), and its Wald statistics are calibrated where the
    model's are not (lambda_GC of var / se over 300 null SNPs)."""
    n, m = 5000, 300
    rng = np.random.default_rng(5)
    y = rng.standard_t(5, n)
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    fit, cov = fit_snps(y, G)
    ratio = np.sqrt(cov[:, 3, 3]) / fit["var_se"]
    assert 1.3 < np.median(ratio) < 2.5
    lam_model = np.median((fit["var"] / fit["var_se"]) ** 2) / 0.4549
    lam_robust = np.median(fit["var"] ** 2 / cov[:, 3, 3]) / 0.4549
    assert lam_model > 2.0
    assert 0.7 < lam_robust < 1.35


# ------------------------------------------------------------------------------------------------
# Pooled residual moments: the robust columns of every scan
# ------------------------------------------------------------------------------------------------
def noise(rng, n, dist):
    z = rng.standard_normal(n)
    if dist == "normal":
        return z
    if dist == "t5":
        return rng.standard_t(5, n)
    if dist == "chi2_3":
        return rng.chisquare(3, n)
    if dist == "lognormal":
        return np.exp(z)
    return np.exp(0.3 * z)  # expscale


def test_residual_moments__are_the_sample_moments_of_scaled_residuals():
    rng = np.random.default_rng(3)
    z = 2.5 * rng.chisquare(3, 5000)
    mom = robust.ResidualMoments.from_residuals(z)
    u = z / np.sqrt(np.mean(z**2))
    assert mom.n == 5000
    assert mom.m3 == pytest.approx(np.mean(u**3 - u), rel=1e-12)
    assert mom.m4 == pytest.approx(np.mean((u**2 - 1) ** 2), rel=1e-12)
    assert mom.var_factor == pytest.approx(np.sqrt(mom.m4 / 2), rel=1e-12)
    assert mom.add_var_cor == pytest.approx(mom.m3 / np.sqrt(mom.m4), rel=1e-12)
    with pytest.raises(ValueError):
        robust.ResidualMoments.from_residuals([0.0, 0.0])
    with pytest.raises(ValueError):
        robust.ResidualMoments.from_residuals([1.0, np.nan])


def test_robust_statistics__joint_test_is_the_wald_form_with_the_correlation():
    mom = robust.ResidualMoments(1000, 0.8, 5.0)
    add, add_se, var, var_se = np.array([0.3, -0.1]), np.array([0.1, 0.1]), np.array([0.2, 0.4]), np.array([0.1, 0.2])
    out = robust.robust_statistics(add, add_se, var, var_se, mom)
    se = var_se * np.sqrt(2.5)
    rho = 0.8 / np.sqrt(5.0)
    for j in range(2):
        cov = np.array([[add_se[j] ** 2, rho * add_se[j] * se[j]], [rho * add_se[j] * se[j], se[j] ** 2]])
        x = np.array([add[j], var[j]])
        assert out["av_chi2_robust"][j] == pytest.approx(x @ np.linalg.solve(cov, x), rel=1e-12)
    np.testing.assert_allclose(out["var_chi2_robust"], (var / se) ** 2, rtol=1e-12)


def _scan_null(dist, n, m, seed, **kw):
    from hlmm.pipeline import ScanOptions, scan_arrays
    from hlmm.scan import ScanSettings

    rng = np.random.default_rng(seed)
    g = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    y = noise(rng, n, dist)
    cols, fit = scan_arrays(y, g, options=ScanOptions(settings=ScanSettings(min_maf=0.0, **kw)))
    return cols, fit


@pytest.mark.parametrize("dist", ["t5", "chi2_3", "expscale"])
def test_robust_columns__calibrated_on_non_normal_null_traits(dist):
    """Null SNPs of a non-normal trait through the default scan (HLM class engine): the model-based
    variance test is inflated (by about m4 / 2: t5 and chi^2_3 above 2, expscale 1.8) and the
    robust column is not. (A log-normal exp(z) trait needs a larger n, where one individual's
    squared residual no longer dominates the test: lambda 1.31 at n = 4,000, 1.00-1.08 at
    n = 20,000 and 1.03 at 100,000; benchmarks/calibration.py.) n = 4,000, 3,000 SNPs: lambda's standard error is about
    0.032 * sqrt(20000 / 3000) / 1.96 = 0.043, so [0.87, 1.13] is 3 se; measured 0.95-1.05 at
    this size. The empirical correlation of (add_t, var_t) over the null SNPs is add_var_cor
    (within 0.1, about 5 se of a correlation from 3,000 pairs; measured within 0.03)."""
    from scipy import stats

    cols, fit = _scan_null(dist, 4000, 3000, seed=11)
    chi2 = stats.chi2.isf(10.0 ** -cols["var_pval_robust"], 1)
    lam_robust = np.nanmedian(chi2) / stats.chi2.median(1)
    lam_model = np.nanmedian(cols["var_t"] ** 2) / stats.chi2.median(1)
    assert 0.87 < lam_robust < 1.13, lam_robust
    assert lam_model > 1.5 * lam_robust
    np.testing.assert_allclose(cols["var_se_robust"], cols["var_se"] * fit.moments.var_factor, rtol=1e-12)
    ok = np.isfinite(cols["var_t"])
    emp = np.corrcoef(cols["add_t"][ok], cols["var"][ok] / cols["var_se_robust"][ok])[0, 1]
    assert abs(emp - fit.moments.add_var_cor) < 0.1, (emp, fit.moments.add_var_cor)
    assert np.mean(cols["var_pval_robust"][ok] >= 3) < 0.004  # p < 1e-3: expected 0.001


def test_robust_columns__equal_the_model_columns_for_a_normal_trait():
    cols, fit = _scan_null("normal", 3000, 200, seed=12)
    assert abs(fit.moments.var_factor - 1) < 0.05 and abs(fit.moments.add_var_cor) < 0.05
    np.testing.assert_allclose(cols["var_pval_robust"], cols["var_pval"], rtol=0.12)


@pytest.mark.parametrize("settings", [{"robust": True}, {"test": "score"}, {"test": "score", "robust": True}])
def test_robust_columns__start_from_the_model_based_standard_errors_in_every_engine(settings):
    """With --robust (sandwich var_se) and with score tests, the robust columns are the model-based
    standard error times the pooled factor: the same numbers as the default Wald run's for score
    rows' model-based SEs (1 / sqrt(I_b), equal to the Wald fit's at the null to first order)."""
    cols, fit = _scan_null("t5", 3000, 40, seed=13, **settings)
    plain, _ = _scan_null("t5", 3000, 40, seed=13, **({"test": "score"} if "test" in settings else {}))
    if settings.get("robust"):
        assert not np.allclose(cols["var_se"], plain["var_se"])  # sandwich
    np.testing.assert_allclose(cols["var_se_robust"], plain["var_se"] * fit.moments.var_factor, rtol=1e-10)
    np.testing.assert_allclose(cols["var_pval_robust"], plain["var_pval_robust"], rtol=1e-10)
