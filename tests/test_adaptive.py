"""The adaptive variance test (hlmm.adaptive): its score family against finite differences, every
engine's columns against a dense computation written here from the formulas, calibration and power
by simulation, and mean-only variants on a skewed trait."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hlmm.adaptive import GRID, AdaptiveScore, score_family
from hlmm.pipeline import ScanOptions, scan_arrays
from hlmm.scan import ScanSettings


def noise(rng, n, dist):
    z = rng.standard_normal(n)
    e = {"normal": z, "t5": rng.standard_t(5, n), "chi2_3": rng.chisquare(3, n), "lognormal": np.exp(z),
         "uniform": rng.uniform(-1, 1, n)}[dist]
    return (e - e.mean()) / e.std()


def dense_adaptive(z, G, add, shift=1.0):
    """var_adapt and var_se_adapt of the columns of G (NaN: missing) from the module docstring's
    formulas, written independently of hlmm.adaptive: f_c = c - c^2 / (c + z^2)."""
    s2 = np.mean(z**2)
    z = z / np.sqrt(s2)
    best, best_c = None, None
    for c in GRID:
        if np.isinf(c):
            f, f1, f2 = z**2, 2 * z, 2 + 0 * z
        else:
            w = c + z**2
            f, f1, f2 = c - c * c / w, 2 * c * c * z / w**2, 2 * c * c / w**2 - 8 * c * c * z**2 / w**3
        h = f - f1.mean() * z
        h = h - h.mean()
        s = 0.5 * np.mean(z * f1)
        eff = s**2 / np.var(h)
        if best is None or eff > best[0] * (1.01 if np.isinf(best_c) else 1.0):
            best, best_c = (eff, h, s, 0.5 * np.mean(f2)), c
    _, h, s, curv = best
    est, se = [], []
    for j in range(G.shape[1]):
        called = ~np.isnan(G[:, j])
        gc = G[called, j] - G[called, j].mean()
        sgg = np.sum(gc**2)
        d = add[j] * shift / np.sqrt(s2)
        est.append((np.sum(gc * h[called]) - curv * d * d * np.sum(gc**3)) / (s * sgg))
        se.append(np.std(h) / (s * np.sqrt(sgg)))
    return np.array(est), np.array(se)


@pytest.mark.parametrize("c", [np.inf, 8.0, 1.0, 0.25])
def test_score_family__derivatives_are_finite_differences(c):
    z = np.linspace(-6, 6, 97)
    f, f1, f2 = score_family(z, c)
    eps = 1e-5
    fp, f1p, _ = score_family(z + eps, c)
    fm, f1m, _ = score_family(z - eps, c)
    np.testing.assert_allclose(f1, (fp - fm) / (2 * eps), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(f2, (f1p - f1m) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_choice__squares_for_normal_bounded_scores_for_heavy_tails():
    rng = np.random.default_rng(1)
    normal = AdaptiveScore.from_residuals(rng.standard_normal(100_000))
    t5 = AdaptiveScore.from_residuals(rng.standard_t(5, 100_000))
    assert np.isinf(normal.c) and normal.efficacy == normal.efficacy_squares
    # the t5 scale score is z^2 / (3 + z^2) on the standardised scale: c = 3
    assert 2 <= t5.c <= 4 and t5.efficacy / t5.efficacy_squares > 1.5
    # squared residuals: s = mean z^2 = 1, v = kurtosis - 1 (m4 of hlmm.robust)
    sq = AdaptiveScore.from_residuals(rng.standard_normal(1000), grid=(np.inf,))
    assert sq.slope == pytest.approx(1.0) and sq.curvature == pytest.approx(1.0)
    with pytest.raises(ValueError):
        AdaptiveScore.from_residuals(np.zeros(10))
    with pytest.raises(ValueError):
        AdaptiveScore.from_residuals([1.0, np.nan])


def test_permutation_variance__is_the_pooled_one():
    """Given the trait's values, T = sum g h over random permutations of the individuals has
    variance v sum g^2 (times n / (n - 1)): what var_se_adapt uses."""
    rng = np.random.default_rng(2)
    n = 500
    a = AdaptiveScore.from_residuals(noise(rng, n, "chi2_3"))
    g = rng.binomial(2, 0.3, n).astype(float)
    gc = g - g.mean()
    T = np.array([gc @ a.h[rng.permutation(n)] for _ in range(20_000)])
    expected = a.sd**2 * np.sum(gc**2) * n / (n - 1)
    assert T.var() == pytest.approx(expected, rel=0.04)


def _scan(y, G, **kw):
    return scan_arrays(y, G, options=ScanOptions(settings=ScanSettings(min_maf=0.0, **kw)))


@pytest.mark.parametrize("settings", [{}, {"test": "score"}, {"engine": "reference"}, {"robust": True},
                                      {"test": "score", "robust": True}])
@pytest.mark.parametrize("dist", ["t5", "uniform"])
def test_engines__equal_the_dense_formula(settings, dist):
    """Hard calls with missing calls, through each HLM engine: var_adapt and var_se_adapt equal
    the dense computation on the null model's standardised residuals (no covariates: (y - mean) / sd).
    With uniform noise the score is z^2 (c = inf), whose class sums the engines take from those of
    y and y^2 rather than summing it again."""
    rng = np.random.default_rng(3)
    n, m = 1500, 30
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    G[rng.random((n, m)) < 0.02] = np.nan
    y = 0.3 * np.nan_to_num(G[:, 0]) + noise(rng, n, dist) * np.exp(0.2 * np.nan_to_num(G[:, 1]))
    cols, fit = _scan(y, G, **settings)
    z = (y - y.mean()) / y.std()
    assert np.isinf(AdaptiveScore.from_residuals(z).c) == (dist == "uniform")
    est, se = dense_adaptive(z, G, cols["add"])
    np.testing.assert_allclose(cols["var_se_adapt"], se, rtol=1e-9)
    np.testing.assert_allclose(cols["var_adapt"], est, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("test", ["wald", "score"])
@pytest.mark.parametrize("dist", ["chi2_3", "uniform"])
def test_dosages__equal_the_dense_formula(test, dist):
    """Dosages (distinct values per variant, missing calls, blocks of several variants)."""
    rng = np.random.default_rng(4)
    n, m = 1200, 12
    G = np.clip(rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)) + rng.normal(0, 0.2, (n, m)), 0, 2)
    G = np.round(G * 100) / 100
    G[rng.random((n, m)) < 0.01] = np.nan
    y = noise(rng, n, dist) * np.exp(0.2 * np.nan_to_num(G[:, 2]))
    cols, _ = _scan(y, G, test=test)
    z = (y - y.mean()) / y.std()
    est, se = dense_adaptive(z, G, cols["add"])
    np.testing.assert_allclose(cols["var_se_adapt"], se, rtol=1e-9)
    np.testing.assert_allclose(cols["var_adapt"], est, rtol=1e-8, atol=1e-12)


def test_covariates__the_same_formula_on_their_residuals():
    """Default mode with covariates (z: the null HLM's standardised residuals): the same numbers;
    --fit_covariates: h residualised on the variance covariates, shift from the null. (The G×E
    engine: tests/test_gxe.py, against the reference engine.)"""
    from hlmm import hetlm

    rng = np.random.default_rng(5)
    n, m = 1500, 10
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    C = rng.standard_normal((n, 2))
    y = C @ [0.5, -0.3] + noise(rng, n, "t5") * np.exp(0.3 * C[:, 0])
    X = np.column_stack([np.ones(n), C])
    fit = hetlm.model(y, X, X).optimize_model()
    z = (y - X @ fit["alpha"]) * np.exp(-0.5 * X @ fit["beta"])
    cols, _ = scan_arrays(y, G, mean_covar=C, var_covar=C, options=ScanOptions(settings=ScanSettings(min_maf=0.0)))
    est, se = dense_adaptive(z, G, cols["add"])
    np.testing.assert_allclose(cols["var_se_adapt"], se, rtol=1e-6)
    np.testing.assert_allclose(cols["var_adapt"], est, rtol=1e-6, atol=1e-10)
    # --fit_covariates: the same statistic of h residualised on [1, C]
    fc, _ = scan_arrays(y, G, mean_covar=C, var_covar=C,
                        options=ScanOptions(settings=ScanSettings(min_maf=0.0), fit_covariates=True))
    a = AdaptiveScore.from_residuals(z, float(np.mean(np.exp(-0.5 * X @ fit["beta"]))), X)
    gc = G - G.mean(0)
    np.testing.assert_allclose(a.h @ X, 0, atol=1e-8)
    np.testing.assert_allclose(fc["var_se_adapt"], a.sd / (a.slope * np.sqrt((gc**2).sum(0))), rtol=1e-9)


def test_mixed_model__score_and_wald_engines_agree():
    """With random effects: the score screen and the exact fits use the same h (the null mixed
    model's e_i / sqrt(P_ii)), so their var_se_adapt agree and var_adapt differs only through add."""
    rng = np.random.default_rng(6)
    n, m, l = 800, 6, 40
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    R = rng.binomial(2, 0.3, (n, l)).astype(float)
    y = R @ rng.normal(0, 0.1, l) + noise(rng, n, "t5")
    wald, _ = scan_arrays(y, G, random=R, options=ScanOptions(settings=ScanSettings(min_maf=0.0)))
    score, _ = scan_arrays(y, G, random=R, options=ScanOptions(settings=ScanSettings(min_maf=0.0, test="score")))
    assert np.isfinite(wald["var_adapt"]).all()
    np.testing.assert_allclose(wald["var_se_adapt"], score["var_se_adapt"], rtol=1e-9)
    np.testing.assert_allclose(wald["var_adapt"], score["var_adapt"], atol=0.02 * np.max(wald["var_se_adapt"]))


@pytest.mark.parametrize("dist", ["t5", "chi2_3", "lognormal"])
def test_calibration__null_variants_of_non_normal_traits(dist):
    """n = 4,000, 3,000 null variants (lambda's 3-se interval [0.87, 1.13], as in test_robust)."""
    rng = np.random.default_rng(11)
    n, m = 4000, 3000
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    cols, _ = _scan(noise(rng, n, dist), G)
    chi2 = stats.chi2.isf(10.0 ** -cols["var_pval_adapt"], 1)
    lam = np.nanmedian(chi2) / stats.chi2.median(1)
    assert 0.87 < lam < 1.13, lam
    assert np.mean(cols["var_pval_adapt"] >= 3) < 0.004


def test_power_and_estimates__heavy_tails():
    """t5 noise, variance effect 0.15 per copy: var_adapt estimates it (mean over variants within 3
    standard errors), with at least 1.4 times the mean chi-square of the robust column."""
    rng = np.random.default_rng(12)
    n, m, b = 10_000, 60, 0.15
    G = rng.binomial(2, rng.uniform(0.2, 0.5, m), (n, m)).astype(float)
    y = noise(rng, n, "t5") * np.exp(0.5 * b * G.sum(1))
    cols, _ = _scan(y, G)
    chi_adapt = np.mean((cols["var_adapt"] / cols["var_se_adapt"]) ** 2)
    chi_robust = np.mean((cols["var"] / cols["var_se_robust"]) ** 2)
    assert chi_adapt > 1.4 * chi_robust, (chi_adapt, chi_robust)
    assert abs(np.mean(cols["var_adapt"]) - b) < 3 * np.mean(cols["var_se_adapt"]) / np.sqrt(m)


def test_mean_only_variants__not_variance_effects_on_a_skewed_trait():
    """chi^2_3 noise, 60 variants with mean effects (0.3 and 0.5 SD per copy) and no variance
    effect: their adaptive variance chi-squares average about 1 (the first- and second-order
    corrections of hlmm.adaptive; without the second, the strongest would average about 3)."""
    rng = np.random.default_rng(13)
    n, m = 20_000, 60
    G = rng.binomial(2, rng.uniform(0.2, 0.5, m), (n, m)).astype(float)
    a = np.where(np.arange(m) < 30, 0.3, 0.5)
    y = G @ a / np.sqrt(m) * 4 + noise(rng, n, "chi2_3")
    cols, _ = _scan(y, G)
    chi2 = (cols["var_adapt"] / cols["var_se_adapt"]) ** 2
    assert np.mean(chi2) < 1.5, np.mean(chi2)
    assert np.max(cols["var_pval_adapt"]) < 4
