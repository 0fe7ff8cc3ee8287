"""Tests of hlmm.hetlmm against dense n x n references, finite differences and a generic optimiser."""

import numdifftools as nd
import numpy as np
import pytest
from dense import dense_gls, dense_loglik
from scipy.optimize import minimize

from hlmm import _optimize, hetlmm


@pytest.fixture(scope="module")
def sim():
    return hetlmm.simulate(300, 30, np.array([1.0, 0.5]), np.array([0.2, -0.4]), 0.8, seed=5)


def full_F(m, theta):
    """-2 L - n log 2 pi of the full likelihood from the dense reference."""
    c, v = m.n_fixed_mean, m.n_fixed_variance
    a, b, h2 = theta[:c], theta[c : c + v], theta[c + v]
    return -2 * dense_loglik(m.y, m.X, m.V, a, b, m.G, h2) - m.n * np.log(2 * np.pi)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_likelihood__matches_dense_logpdf(sim, seed):
    rng = np.random.default_rng(seed)
    beta, h2 = 0.3 * rng.standard_normal(2), rng.uniform(0.1, 2)
    alpha = dense_gls(sim.y, sim.X, sim.V, beta, sim.G, h2)
    L = dense_loglik(sim.y, sim.X, sim.V, alpha, beta, sim.G, h2)
    assert sim.likelihood(beta, h2) == pytest.approx(L, rel=1e-11)
    assert sim.likelihood(beta, h2, negative=True) == pytest.approx(
        -2 * L / sim.n - np.log(2 * np.pi), rel=1e-11
    )
    assert sim.likelihood_and_gradient(beta, h2, return_grad=False) == pytest.approx(
        sim.likelihood(beta, h2, negative=True), rel=1e-14
    )


def test_likelihood__at_h2_zero_matches_hetlm(sim):
    from hlmm import hetlm

    beta = np.array([0.1, 0.2])
    hlm = hetlm.model(sim.y, sim.X, sim.V)
    assert sim.likelihood(beta, 0.0) == pytest.approx(hlm.likelihood(beta, hlm.alpha_mle(beta)), rel=1e-12)


@pytest.mark.parametrize("h2", [0.0, 0.5, 3.0])
def test_alpha_mle__matches_dense_gls(sim, h2):
    beta = np.array([0.3, -0.2])
    np.testing.assert_allclose(
        sim.alpha_mle(beta, h2), dense_gls(sim.y, sim.X, sim.V, beta, sim.G, h2), rtol=1e-9
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_profile_gradient__matches_numdifftools(sim, seed):
    rng = np.random.default_rng(seed)
    theta = np.append(0.3 * rng.standard_normal(2), rng.uniform(0.2, 2))
    f = lambda th: sim.likelihood_and_gradient(th[:2], th[2], return_grad=False)  # noqa: E731
    num = nd.Gradient(f, step=1e-4)(theta)
    _, grad = sim.likelihood_and_gradient(theta[:2], theta[2])
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_gradient__matches_numdifftools_on_dense_likelihood(sim, seed):
    rng = np.random.default_rng(seed)
    theta = np.concatenate([rng.standard_normal(2), 0.3 * rng.standard_normal(2), [rng.uniform(0.2, 2)]])
    num = nd.Gradient(lambda th: full_F(sim, th), step=1e-4)(theta)
    np.testing.assert_allclose(sim._full_grad(theta), num, rtol=1e-6, atol=1e-6)


def test_optimize_model__matches_generic_optimizer_on_dense_likelihood(sim):
    fit = sim.optimize_model(0.05)
    assert fit["success"] and fit["warnflag"] == 0
    res = minimize(
        lambda p: full_F(sim, p) / sim.n,
        np.array([0, 0, 0, 0, 0.5]),
        method="L-BFGS-B",
        bounds=[(None, None)] * 4 + [(0, None)],
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000},
    )
    L_dense = -0.5 * sim.n * (res.fun + np.log(2 * np.pi))
    assert fit["likelihood"] >= L_dense - 1e-8
    assert fit["likelihood"] == pytest.approx(L_dense, rel=1e-9)
    p_hat = np.concatenate([fit["alpha"], fit["beta"], [fit["h2"]]])
    np.testing.assert_allclose(p_hat, res.x, atol=1e-5)


def test_optimize_model__likelihood_is_profile_likelihood_at_mle(sim):
    fit = sim.optimize_model(0.05)
    assert fit["likelihood"] == pytest.approx(sim.likelihood(fit["beta"], fit["h2"]), rel=1e-13)
    _, grad = sim.likelihood_and_gradient(fit["beta"], fit["h2"])
    assert np.max(np.abs(grad)) < 1e-9


def test_standard_errors__equal_inverse_observed_information(sim):
    fit = sim.optimize_model(0.05)
    p_hat = np.concatenate([fit["alpha"], fit["beta"], [fit["h2"]]])
    H = nd.Hessian(lambda th: full_F(sim, th), step=1e-4)(p_hat)
    cov = np.linalg.inv(H / 2)
    np.testing.assert_allclose(fit["par_cov"], cov, rtol=1e-4, atol=1e-4 * np.max(np.abs(cov)))
    se = np.concatenate([fit["alpha_se"], fit["beta_se"], [fit["h2_se"]]])
    np.testing.assert_allclose(se, np.sqrt(np.diag(cov)), rtol=1e-4)


def test_optimize_model__without_ses(sim):
    fit = sim.optimize_model(0.05, SEs=False)
    assert "par_cov" not in fit and fit["success"]


def test_optimize_model__recovers_simulated_parameters():
    alpha, beta, h2 = np.array([1.0, -0.5]), np.array([0.3, 0.4]), 0.6
    m = hetlmm.simulate(4000, 200, alpha, beta, h2, seed=17)
    fit = m.optimize_model(0.05)
    assert fit["success"]
    assert np.all(np.abs(fit["alpha"] - alpha) < 4 * fit["alpha_se"])
    assert np.all(np.abs(fit["beta"] - beta) < 4 * fit["beta_se"])
    assert abs(fit["h2"] - h2) < 4 * fit["h2_se"]


def test_standard_errors__calibrated_over_200_replicates():
    alpha, beta, h2 = np.array([0.5, 0.2]), np.array([0.1, 0.3]), 1.0
    z = []
    for seed in range(200):
        m = hetlmm.simulate(400, 60, alpha, beta, h2, seed=5000 + seed)
        fit = m.optimize_model(0.5)
        assert fit["success"], fit["message"]
        est = np.concatenate([fit["alpha"], fit["beta"], [fit["h2"]]])
        se = np.concatenate([fit["alpha_se"], fit["beta_se"], [fit["h2_se"]]])
        z.append((est - np.concatenate([alpha, beta, [h2]])) / se)
    sd = np.std(z, axis=0)
    assert np.all(np.abs(sd[:4] - 1) < 0.10), sd
    assert abs(sd[4] - 1) < 0.20, sd


def test_more_random_effects_than_observations():
    m = hetlmm.simulate(80, 150, np.array([1.0]), np.array([0.0]), 0.5, seed=2)
    fit = m.optimize_model(0.1)
    assert fit["success"]
    beta, h2 = fit["beta"], fit["h2"]
    L = dense_loglik(m.y, m.X, m.V, fit["alpha"], beta, m.G, h2)
    assert fit["likelihood"] == pytest.approx(L, rel=1e-10)


def test_single_random_effect_column_as_1d():
    rng = np.random.default_rng(4)
    n = 500
    g = rng.standard_normal(n)
    y = 1.0 + 0.8 * g * rng.standard_normal() + rng.standard_normal(n)
    m = hetlmm.model(y, np.ones(n), np.ones(n), g)
    assert m.l == 1 and m.X.shape == (n, 1)
    fit = m.optimize_model(0.1)
    assert fit["success"]
    theta = np.array([fit["alpha"][0], fit["beta"][0], fit["h2"]])
    assert fit["likelihood"] == pytest.approx(-0.5 * (full_F(m, theta) + n * np.log(2 * np.pi)), rel=1e-12)


def test_strong_heteroskedasticity():
    m = hetlmm.simulate(1500, 50, np.array([0.0]), np.array([3.0]), 0.5, seed=6)
    fit = m.optimize_model(0.05)
    assert fit["success"]
    assert abs(fit["beta"][0] - 3.0) < 4 * fit["beta_se"][0]
    assert np.all(np.isfinite(fit["par_cov"]))


def test_h2_at_lower_bound__handled():
    # no random effect in truth: the MLE often sits at h2 = 0
    at_bound = 0
    for seed in range(10):
        m = hetlmm.simulate(300, 20, np.array([0.5]), np.array([0.2]), 0.0, seed=100 + seed)
        fit = m.optimize_model(0.05)
        assert fit["success"], fit["message"]
        assert fit["h2"] >= 0
        _, grad = m.likelihood_and_gradient(fit["beta"], fit["h2"])
        if fit["h2"] == 0:
            at_bound += 1
            assert grad[-1] >= 0  # the bound is active: F increases into the domain
            assert np.isfinite(fit["h2_se"])
        else:
            assert abs(grad[-1]) < 1e-8
        assert np.max(np.abs(grad[:-1])) < 1e-8
    assert at_bound >= 2


def test_optimize_model__bad_start_still_converges(sim):
    ref = sim.optimize_model(0.05)
    for h2_init in (0.0, 1e4):
        fit = sim.optimize_model(h2_init)
        assert fit["success"]
        assert fit["likelihood"] == pytest.approx(ref["likelihood"], rel=1e-12)


def test_optimizer_failure__reported_not_raised(sim, monkeypatch):
    monkeypatch.setattr(_optimize, "DECREMENT_RTOL", -1.0)  # never satisfied
    monkeypatch.setattr(_optimize, "STALL_RTOL", -1.0)
    fit = sim.optimize_model(0.05)
    assert fit["success"] is False
    assert fit["warnflag"] != 0 and fit["message"]


def test_simulate__shapes_and_scaling():
    m = hetlmm.simulate(1000, 40, np.array([1.0, 2.0]), np.array([0.1]), 0.3, seed=1)
    assert m.X.shape == (1000, 2) and m.V.shape == (1000, 1) and m.G.shape == (1000, 40)
    np.testing.assert_allclose(m.G.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose((m.G**2).sum(axis=0), 1000 / 40, rtol=1e-10)
    a, b = (hetlmm.simulate(50, 5, [1.0], [0.0], 0.1, seed=3) for _ in range(2))
    assert np.array_equal(a.y, b.y)


def test_invalid_inputs__raise_value_error_with_numbers():
    rng = np.random.default_rng(0)
    n = 40
    y, X, V, G = rng.standard_normal(n), np.ones(n), np.ones(n), rng.standard_normal((n, 5))
    with pytest.raises(ValueError, match="G has 39 rows but y has 40"):
        hetlmm.model(y, X, V, G[:39])
    with pytest.raises(ValueError, match="G contains 5 NaN"):
        hetlmm.model(y, X, V, np.where(np.arange(n)[:, None] == 0, np.nan, G))
    with pytest.raises(ValueError, match="V has 2 columns but rank 1"):
        hetlmm.model(y, X, np.column_stack([V, V]), G)
    with pytest.raises(ValueError, match="non-negative, got -0.1"):
        hetlmm.model(y, X, V, G).optimize_model(-0.1)


@pytest.mark.parametrize("h2", [0.3, 1.5])
def test_full_hessian__matches_numdifftools_on_dense_likelihood(sim, h2):
    rng = np.random.default_rng(7)
    theta = np.concatenate([rng.standard_normal(2), 0.3 * rng.standard_normal(2), [h2]])
    _, H = sim._full(theta, hessian=True)
    num = nd.Hessian(lambda th: full_F(sim, th), step=1e-4)(theta)
    np.testing.assert_allclose(H, num, rtol=1e-5, atol=1e-5 * np.max(np.abs(num)))


def test_profile_hessian__matches_numdifftools_of_profile_gradient(sim):
    theta = np.array([0.1, -0.3, 0.9])
    num = nd.Jacobian(lambda th: sim._profile_fg(th)[1], step=1e-5)(theta)
    np.testing.assert_allclose(sim._profile_hessian(theta), 0.5 * (num + num.T), rtol=1e-6)


def test_parameter_covariance__analytic_equals_differenced(sim):
    fit = sim.optimize_model(0.05)
    fd = sim.parameter_covariance(fit["alpha"], fit["beta"], fit["h2"], dx=1e-6)
    np.testing.assert_allclose(fit["par_cov"], fd, rtol=1e-5, atol=1e-10)
