"""Tests of hlmm.hetlm against dense references, finite differences and a generic optimiser."""

import numdifftools as nd
import numpy as np
import pytest
from dense import dense_gls, dense_loglik
from scipy.optimize import minimize

from hlmm import hetlm


def simulate_hlm(n, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, len(alpha) - 1))])
    V = np.column_stack([np.ones(n), rng.standard_normal((n, len(beta) - 1))])
    y = X @ alpha + rng.standard_normal(n) * np.exp(V @ beta / 2)
    return y, X, V


@pytest.fixture
def small():
    return simulate_hlm(200, np.array([1.0, 0.5, -0.3]), np.array([0.2, 0.4, -0.2]), seed=11)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_likelihood__matches_dense_logpdf(small, seed):
    y, X, V = small
    rng = np.random.default_rng(seed)
    alpha, beta = rng.standard_normal(3), 0.5 * rng.standard_normal(3)
    m = hetlm.model(y, X, V)
    L = dense_loglik(y, X, V, alpha, beta)
    assert m.likelihood(beta, alpha) == pytest.approx(L, rel=1e-12)
    assert m.likelihood(beta, alpha, negative=True) == pytest.approx(
        -2 * L / len(y) - np.log(2 * np.pi), rel=1e-12
    )


def test_alpha_mle__matches_dense_gls(small):
    y, X, V = small
    beta = np.array([0.1, -0.5, 0.7])
    np.testing.assert_allclose(hetlm.model(y, X, V).alpha_mle(beta), dense_gls(y, X, V, beta), rtol=1e-10)


def test_alpha_ols__matches_lstsq(small):
    y, X, V = small
    np.testing.assert_allclose(hetlm.model(y, X, V).alpha_ols(), np.linalg.lstsq(X, y, rcond=None)[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grad_beta__matches_numdifftools(small, seed):
    y, X, V = small
    m = hetlm.model(y, X, V)
    rng = np.random.default_rng(seed)
    alpha, beta = rng.standard_normal(3), 0.5 * rng.standard_normal(3)
    num = nd.Gradient(lambda b: m.likelihood(b, alpha, negative=True))(beta)
    np.testing.assert_allclose(m.grad_beta(beta, alpha), num, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_profile_gradient_and_hessian__match_numdifftools(small, seed):
    y, X, V = small
    m = hetlm.model(y, X, V)
    beta = 0.5 * np.random.default_rng(seed).standard_normal(3)
    F, g, H = m._profile(beta, hessian=True)
    profile = lambda b: m.likelihood(b, m.alpha_mle(b), negative=True) * len(y)  # noqa: E731
    np.testing.assert_allclose(g, nd.Gradient(profile)(beta), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(H, nd.Hessian(profile)(beta), rtol=1e-6, atol=1e-6)
    # the profile gradient equals grad_beta at alpha_mle (envelope theorem)
    np.testing.assert_allclose(g / len(y), m.grad_beta(beta, m.alpha_mle(beta)), rtol=1e-10)


def test_optimize_model__matches_generic_optimizer_on_dense_likelihood(small):
    y, X, V = small
    fit = hetlm.model(y, X, V).optimize_model()
    assert fit["success"]
    res = minimize(
        lambda p: -dense_loglik(y, X, V, p[:3], p[3:]),
        np.zeros(6),
        method="BFGS",
        options={"gtol": 1e-9},
    )
    assert fit["likelihood"] >= -res.fun - 1e-9
    assert fit["likelihood"] == pytest.approx(-res.fun, rel=1e-10)
    np.testing.assert_allclose(fit["alpha"], res.x[:3], atol=2e-6)
    np.testing.assert_allclose(fit["beta"], res.x[3:], atol=2e-6)


def test_optimize_model__reaches_stationary_point():
    # the original's L-BFGS-B defaults stopped up to 6e-4 short in beta at n = 2,000
    y, X, V = simulate_hlm(2000, np.array([0.0, 0.3]), np.array([0.0, 0.5, 0.2]), seed=4)
    m = hetlm.model(y, X, V)
    fit = m.optimize_model()
    assert np.max(np.abs(m.grad_beta(fit["beta"], fit["alpha"]))) < 1e-9
    # one more exact Newton step moves beta by less than 1e-9
    _, g, H = m._profile(fit["beta"], hessian=True)
    assert np.max(np.abs(np.linalg.solve(H, g))) < 1e-9


def test_optimize_model__keys_and_expected_information(small):
    y, X, V = small
    m = hetlm.model(y, X, V)
    fit = m.optimize_model()
    assert {"alpha", "beta", "alpha_se", "beta_se", "alpha_cov", "beta_cov", "likelihood", "success"} <= set(fit)
    D_inv = np.exp(-V @ fit["beta"])
    np.testing.assert_allclose(fit["alpha_cov"], np.linalg.inv(X.T @ (D_inv[:, None] * X)), rtol=1e-10)
    np.testing.assert_allclose(fit["beta_cov"], 2 * np.linalg.inv(V.T @ V), rtol=1e-10)
    np.testing.assert_allclose(fit["alpha_se"], np.sqrt(np.diag(fit["alpha_cov"])))
    assert fit["likelihood"] == pytest.approx(m.likelihood(fit["beta"], fit["alpha"]), rel=1e-13)


def test_standard_errors__agree_with_inverse_finite_difference_hessian():
    # expected-information SEs approach the inverse observed information in large samples
    y, X, V = simulate_hlm(20000, np.array([1.0, 0.5]), np.array([0.0, 0.3]), seed=8)
    fit = hetlm.model(y, X, V).optimize_model()
    p_hat = np.concatenate([fit["alpha"], fit["beta"]])
    H = nd.Hessian(lambda p: -dense_loglik_diag(y, X, V, p[:2], p[2:]), step=1e-4)(p_hat)
    se_obs = np.sqrt(np.diag(np.linalg.inv(H)))
    np.testing.assert_allclose(np.concatenate([fit["alpha_se"], fit["beta_se"]]), se_obs, rtol=0.03)


def dense_loglik_diag(y, X, V, alpha, beta):
    # diagonal covariance: the dense logpdf factorises, computed elementwise for large n
    Vb = V @ beta
    return -0.5 * np.sum(np.log(2 * np.pi) + Vb + (y - X @ alpha) ** 2 * np.exp(-Vb))


def test_optimize_model__recovers_simulated_parameters():
    alpha, beta = np.array([1.0, -0.5, 0.25]), np.array([0.5, 0.3, -0.4])
    y, X, V = simulate_hlm(20000, alpha, beta, seed=21)
    fit = hetlm.model(y, X, V).optimize_model()
    assert np.all(np.abs(fit["alpha"] - alpha) < 4 * fit["alpha_se"])
    assert np.all(np.abs(fit["beta"] - beta) < 4 * fit["beta_se"])


def test_standard_errors__calibrated_over_200_replicates():
    alpha, beta = np.array([0.5, 0.2]), np.array([0.1, 0.4])
    z_alpha, z_beta = [], []
    for seed in range(200):
        y, X, V = simulate_hlm(500, alpha, beta, seed=1000 + seed)
        fit = hetlm.model(y, X, V).optimize_model()
        assert fit["success"]
        z_alpha.append((fit["alpha"] - alpha) / fit["alpha_se"])
        z_beta.append((fit["beta"] - beta) / fit["beta_se"])
    assert np.all(np.abs(np.std(z_alpha, axis=0) - 1) < 0.10)
    assert np.all(np.abs(np.std(z_beta, axis=0) - 1) < 0.10)


def test_single_column_designs_accepted_as_1d():
    rng = np.random.default_rng(3)
    y = 2.0 + rng.standard_normal(300) * 1.5
    m = hetlm.model(y, np.ones(300), np.ones(300))
    fit = m.optimize_model()
    assert fit["success"]
    assert fit["alpha"][0] == pytest.approx(y.mean(), rel=1e-10)
    assert fit["beta"][0] == pytest.approx(np.log(np.var(y)), rel=1e-10)


def test_strong_heteroskedasticity__fits_without_overflow():
    # variances spanning e^-12 .. e^12
    y, X, V = simulate_hlm(3000, np.array([0.0, 1.0]), np.array([0.0, 4.0]), seed=5)
    fit = hetlm.model(y, X, V).optimize_model()
    assert fit["success"]
    assert abs(fit["beta"][1] - 4.0) < 4 * fit["beta_se"][1]


def test_extreme_scale_data__no_nan():
    # biobank-like: large n, large offset and scale, a covariate with large values
    rng = np.random.default_rng(9)
    n = 50000
    x = rng.standard_normal(n) * 100
    X = np.column_stack([np.ones(n), x])
    V = np.column_stack([np.ones(n), x])
    y = 1e6 + 3 * x + 1e4 * rng.standard_normal(n) * np.exp(0.004 * x)
    fit = hetlm.model(y, X, V).optimize_model()
    assert fit["success"], fit["message"]
    for key in ("alpha", "beta", "alpha_se", "beta_se"):
        assert np.all(np.isfinite(fit[key]))
    assert fit["beta"][0] == pytest.approx(2 * np.log(1e4), abs=0.05)
    assert fit["beta"][1] == pytest.approx(0.008, abs=5e-4)


def test_invalid_inputs__raise_value_error_with_numbers():
    rng = np.random.default_rng(0)
    y, X, V = rng.standard_normal(50), np.ones((50, 1)), np.ones((50, 1))
    with pytest.raises(ValueError, match="49 rows but y has 50"):
        hetlm.model(y, X[:49], V)
    with pytest.raises(ValueError, match="1 NaN"):
        hetlm.model(np.where(np.arange(50) == 3, np.nan, y), X, V)
    with pytest.raises(ValueError, match="infinite"):
        hetlm.model(y, X, np.where(np.arange(50)[:, None] == 2, np.inf, V))
    with pytest.raises(ValueError, match="2 columns but rank 1"):
        hetlm.model(y, np.column_stack([X, 2 * X]), V)
    with pytest.raises(ValueError, match="beta has 2 elements"):
        hetlm.model(y, X, V).likelihood(np.zeros(2), np.zeros(1))
