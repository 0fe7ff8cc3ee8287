"""hlmm.covariates: standardised designs, effects back in the covariates' units, random-effect designs."""

import numpy as np
import pytest

from hlmm import hetlm
from hlmm.covariates import is_constant, make_design, random_effects_design


def test_make_design__effects_in_original_units_equal_a_fit_on_raw_covariates():
    rng = np.random.default_rng(4)
    n = 3000
    raw = np.column_stack([rng.normal(50, 10, n), rng.integers(0, 2, n)])
    y = 2 + 0.03 * raw[:, 0] - 0.5 * raw[:, 1] + rng.standard_normal(n) * np.exp(0.01 * raw[:, 0])
    d = make_design(raw, ["age", "sex"], n)
    fit = hetlm.model(y, d.matrix, d.matrix).optimize_model()
    direct = hetlm.model(y, np.column_stack([np.ones(n), raw]), np.column_stack([np.ones(n), raw])).optimize_model()
    est, se = d.to_original_units(fit["alpha"], fit["alpha_cov"])
    np.testing.assert_allclose(est, direct["alpha"], rtol=1e-7)
    np.testing.assert_allclose(se, direct["alpha_se"], rtol=1e-7)
    est, se = d.to_original_units(fit["beta"], fit["beta_cov"])
    np.testing.assert_allclose(est, direct["beta"], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("scale", [1e-13, 1.0, 1e12])
def test_make_design__constant_and_collinear_checks_are_scale_free(scale):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100) * scale
    make_design(x[:, None], ["x"], 100)  # any units
    assert is_constant(np.full(100, 0.1 * scale)) and not is_constant(x)
    with pytest.raises(ValueError, match="constant"):
        make_design(np.full((100, 1), 3.0 * scale), ["c"], 100)
    with pytest.raises(ValueError, match="collinear"):
        make_design(np.column_stack([x, 2 * x]), ["x", "x2"], 100)


def test_random_effects_design__imputes_drops_and_scales():
    rng = np.random.default_rng(2)
    raw = rng.binomial(2, 0.3, (500, 6)).astype(float)
    raw[:10, 1] = np.nan
    raw[:, 4] = 1.0  # no variance
    raw[:, 5] = np.nan  # no calls
    G, kept, center, scale = random_effects_design(raw, return_scaling=True)
    assert list(kept) == [True, True, True, True, False, False] and G.shape == (500, 4)
    imputed = np.where(np.isnan(raw[:, :4]), np.nanmean(raw[:, :4], 0), raw[:, :4])
    np.testing.assert_allclose(G, (imputed - imputed.mean(0)) / imputed.std(0) / 2.0, atol=1e-12)
    np.testing.assert_allclose(G, (imputed - center) / scale, atol=1e-12)
