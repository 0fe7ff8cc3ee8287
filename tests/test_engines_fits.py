"""Unit tests of the fast engines' pieces against dense computations and the reference models."""

import numdifftools as nd
import numpy as np
import pytest

from hlmm import hetlm, hetlmm
from hlmm.engines import _hlm_fits, _hlmm_fits


def class_sums_dense(G, y):
    return [np.stack([[(y * (G[:, j] == k)).sum() if p == 1 else ((y**2) * (G[:, j] == k)).sum() if p == 2
                       else (G[:, j] == k).sum() for k in range(3)] for j in range(G.shape[1])]) for p in range(3)]


def test_hlm_fits__matches_hetlm_on_many_snps():
    rng = np.random.default_rng(5)
    n, b = 2000, 40
    freqs = np.concatenate([[0.003, 0.5], rng.uniform(0.01, 0.5, b - 2)])
    G = rng.binomial(2, freqs, (n, b)).astype(float)
    G[:, 0] = 0.0
    G[:3, 0] = 1.0  # 3 carriers
    y = 0.2 * G[:, 1] + rng.standard_normal(n) * np.exp(0.3 * G[:, 2])
    cnt, s1, s2 = class_sums_dense(G, y)
    fit = _hlm_fits.fit_classes(cnt, s1, s2)
    for j in range(b):
        gc = G[:, j] - G[:, j].mean()
        X = np.column_stack([np.ones(n), gc])
        ref = hetlm.model(y, X, X).optimize_model()
        assert fit["success"][j] == ref["success"]
        np.testing.assert_allclose(
            [fit[k][j] for k in ("likelihood", "add", "add_se", "var", "var_se")],
            [ref["likelihood"], ref["alpha"][1], ref["alpha_se"][1], ref["beta"][1], ref["beta_se"][1]],
            rtol=1e-7, atol=1e-9)


def test_hlm_fits__one_class_is_not_fitted():
    fit = _hlm_fits.fit_classes(np.array([[100.0, 0, 0]]), np.array([[3.0, 0, 0]]), np.array([[110.0, 0, 0]]))
    assert not fit["success"][0] and np.isnan(fit["add"][0])


@pytest.fixture(scope="module")
def snp_case():
    rng = np.random.default_rng(3)
    n, l = 900, 30  # noqa: E741
    G = rng.standard_normal((n, l)) / np.sqrt(l)
    g = rng.binomial(2, 0.35, n).astype(float)
    g[rng.random(n) < 0.03] = np.nan
    gi = np.nan_to_num(g)
    y = 0.2 * gi + G @ rng.standard_normal(l) * 0.6 + rng.standard_normal(n) * np.exp(0.15 * gi)
    called = ~np.isnan(g)
    gc = g[called] - g[called].mean()
    X = np.column_stack([np.ones(called.sum()), gc])
    ref = hetlmm.model(y[called], X, X, G[called])
    codes = np.where(np.isnan(g), -1, g).astype(np.int8)
    cs = _hlmm_fits.class_stats(_hlmm_fits.totals(y, G), codes)
    return ref, cs


def test_hlmm_fits__class_stats_match_dense_sums(snp_case):
    ref, cs = snp_case
    gc = ref.X[:, 1]
    for k in range(3):
        sel = np.isclose(gc, cs.g[k])
        np.testing.assert_allclose(cs.GG[k], ref.G[sel].T @ ref.G[sel], atol=1e-10)
        np.testing.assert_allclose(cs.Gy[k], ref.G[sel].T @ ref.y[sel], atol=1e-10)
        assert cs.n[k] == sel.sum()


@pytest.mark.parametrize("theta", [[0.1, -0.2, 0.4], [-0.3, 0.25, 0.0], [0.0, 0.0, 2.0]])
def test_hlmm_fits__likelihood_gradient_hessian_match_reference(snp_case, theta):
    ref, cs = snp_case
    theta = np.array(theta)
    cm = _hlmm_fits.ClassModel(cs)
    F, grad = cm.fun_grad(theta)
    F_ref, grad_ref = ref.likelihood_and_gradient(theta[:2], theta[2])
    assert F == pytest.approx(F_ref * ref.n, rel=1e-12)
    np.testing.assert_allclose(grad, grad_ref * ref.n, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(cm.profile_hessian(theta), ref._profile_hessian(theta), rtol=1e-8, atol=1e-7)
    # the full Hessian against finite differences of the class-algebra gradient
    alpha = ref.alpha_mle(theta[:2], theta[2])
    full = np.concatenate([alpha, theta])
    _, _, H = cm.derivatives(theta, hessian=True)
    if theta[2] > 0:
        num = nd.Jacobian(lambda p: cm.derivatives(p[2:], False, alpha=p[:2])[1], step=1e-6)(full)
        np.testing.assert_allclose(H, 0.5 * (num + num.T), rtol=1e-5, atol=1e-5)


def test_hlmm_fits__fit_matches_reference_optimize_model(snp_case):
    ref, cs = snp_case
    r = ref.optimize_model(0.2)
    start = hetlm.model(ref.y, ref.X, ref.V).optimize_model()["beta"]
    est, why = _hlmm_fits.fit_snp(cs, start, 0.2)
    assert why is None
    np.testing.assert_allclose(
        [est[k] for k in ("likelihood", "add", "add_se", "var", "var_se")],
        [r["likelihood"], r["alpha"][1], r["alpha_se"][1], r["beta"][1], r["beta_se"][1]], rtol=1e-7)


def test_fast_covariates__matches_hetlm_and_same_nan_snps():
    rng = np.random.default_rng(2)
    n, b = 1500, 12
    C = rng.standard_normal((n, 2))
    Xc = np.column_stack([np.ones(n), C])
    Vc = np.column_stack([np.ones(n), C[:, :1]])
    G = rng.binomial(2, rng.uniform(0.05, 0.5, b), (n, b)).astype(float)
    G[rng.random((n, b)) < 0.02] = np.nan
    G[:, 3] = 0.0  # monomorphic: collinear with the intercept
    y = Xc @ [1, 0.5, -0.3] + 0.2 * np.nan_to_num(G[:, 0]) + rng.standard_normal(n) * np.exp(
        0.5 * (0.2 * C[:, 0] + 0.3 * np.nan_to_num(G[:, 1])))
    null = hetlm.model(y, Xc, Vc).optimize_model()
    fits = [_hlm_fits.fit_covariate_snp(y, Xc, Vc, np.ascontiguousarray(G[:, j]), null["beta"])[0] for j in range(b)]
    keys = ("likelihood", "add", "add_se", "var", "var_se")
    fit = {k: np.array([f[k] if f else np.nan for f in fits]) for k in keys}
    fit["success"] = np.array([f is not None for f in fits])
    for j in range(b):
        m = ~np.isnan(G[:, j])
        g = G[m, j] - G[m, j].mean()
        try:
            ref = hetlm.model(y[m], np.column_stack([Xc[m], g]), np.column_stack([Vc[m], g])).optimize_model()
        except ValueError:
            assert not fit["success"][j] and np.isnan(fit["add"][j])
            continue
        np.testing.assert_allclose(
            [fit[k][j] for k in ("likelihood", "add", "add_se", "var", "var_se")],
            [ref["likelihood"], ref["alpha"][-1], ref["alpha_se"][-1], ref["beta"][-1], ref["beta_se"][-1]],
            rtol=1e-7, atol=1e-9)
    assert fit["success"].sum() == b - 1


def test_integer_totals__match_float_totals_and_fall_back_for_non_integers():
    from hlmm.covariates import random_effects_design

    rng = np.random.default_rng(11)
    n, l = 3000, 40  # noqa: E741
    raw = rng.binomial(2, rng.uniform(0.05, 0.95, l), (n, l)).astype(float)
    raw[rng.random((n, l)) < 0.01] = np.nan
    raw[:, 0] = np.where(np.arange(n) % 2 == 0, 0.0, 2.0)  # mean exactly 1: an integer mean
    raw[5, 0] = np.nan
    G, kept, center, scale = random_effects_design(raw, return_scaling=True)
    np.testing.assert_allclose(G, (np.where(np.isnan(raw), center, raw) - center) / scale, atol=1e-12)
    y = rng.standard_normal(n)
    ti, tf = _hlmm_fits.totals(y, G, center, scale), _hlmm_fits.totals(y, G)
    assert ti.R is not None and tf.R is None
    np.testing.assert_allclose(ti.G, G, atol=1e-12)
    for freq in (0.05, 0.3, 0.5):
        codes = rng.binomial(2, freq, n).astype(np.int8)
        codes[rng.random(n) < 0.02] = -1
        a, b = _hlmm_fits.class_stats(ti, codes), _hlmm_fits.class_stats(tf, codes)
        for field in ("n", "S1", "S2", "G1", "Gy", "GG"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-10, atol=1e-9)
    # non-integer random effects (e.g. from a text file) use the float64 form
    noisy = raw + rng.normal(0, 0.01, raw.shape)
    G2, _, c2, s2 = random_effects_design(noisy, return_scaling=True)
    assert _hlmm_fits.totals(y, G2, c2, s2).R is None
