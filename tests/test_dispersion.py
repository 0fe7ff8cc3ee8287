"""Dispersion effects: the method on data with a known dispersion effect, and the command."""

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

from hlmm.cli import hlmm_dispersion
from hlmm.columns import DISPERSION, MODELS, names
from hlmm.dispersion import estimate_dispersion, ks_test, mean_variance_slope
from hlmm.results import read_models

COLUMNS, DISPERSION_COLUMNS = names(MODELS), names(DISPERSION)

REPO = Path(__file__).resolve().parents[1]


def simulated_effects(m=2000, r=-0.6, seed=0, dispersion_first=0.5):
    """True additive effects a, variance effects r*a (+ a dispersion effect on SNP 0), noise."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.05, m)
    v = r * a
    v[0] += dispersion_first
    add_se = np.full(m, 0.02)
    var_se = np.full(m, 0.03)
    add = a + add_se * rng.standard_normal(m)
    var = v + var_se * rng.standard_normal(m)
    return add, add_se, var, var_se


def test_slope__recovers_mean_variance_relation_despite_noise_in_add():
    add, add_se, var, var_se = simulated_effects()
    r, slope, adj = mean_variance_slope(add, add_se, var)
    # the robust slope is attenuated by the noise in add; the adjustment undoes it
    assert abs(slope) < abs(r)
    assert adj == pytest.approx(1 + 0.02**2 / (np.var(add, ddof=1) - 0.02**2), rel=1e-12)
    assert r == pytest.approx(-0.6, abs=0.03)


def test_slope__is_statsmodels_huber_through_origin():
    add, add_se, var, _ = simulated_effects(seed=3)
    fit = sm.RLM(var, add[:, None], M=sm.robust.norms.HuberT(t=1.345)).fit()
    _, slope, _ = mean_variance_slope(add, add_se, var)
    assert slope == pytest.approx(fit.params[0], rel=1e-12)


def test_dispersion__detects_known_effect_and_calibrated_elsewhere():
    add, add_se, var, var_se = simulated_effects(seed=1)
    out = estimate_dispersion(add, add_se, var, var_se)
    assert out["dispersion"][0] == pytest.approx(0.5, abs=0.1)
    assert out["dispersion_pval"][0] > 10
    np.testing.assert_allclose(out["dispersion_se"], np.sqrt(var_se**2 + out["r"] ** 2 * add_se**2))
    np.testing.assert_allclose(out["dispersion_t"], out["dispersion"] / out["dispersion_se"])
    # the other SNPs have no dispersion effect: their t^2 follow chi-square(1)
    t = out["dispersion_t"][1:]
    assert abs(np.std(t) - 1) < 0.1
    assert ks_test(t)[1] > 0.01
    # while the variance effects alone are strongly inflated
    assert ks_test((var / var_se)[1:])[1] < 1e-6


def test_dispersion__nan_rows_stay_nan():
    add, add_se, var, var_se = simulated_effects(m=200, seed=2)
    add[5] = add_se[5] = var[5] = var_se[5] = np.nan
    out = estimate_dispersion(add, add_se, var, var_se)
    assert np.isnan(out["dispersion"][5]) and np.isnan(out["dispersion_pval"][5])
    assert np.isfinite(out["dispersion"][np.arange(200) != 5]).all()


def _write_models(path, add, add_se, var, var_se):
    m = len(add)
    rows = ["\t".join(COLUMNS)]
    for j in range(m):
        t_a, t_v = add[j] / add_se[j], var[j] / var_se[j]
        rows.append("\t".join(map(str, [f"rs{j}", 1000, 0.3, -100.0, add[j], add_se[j], t_a, 1.0, var[j],
                                         var_se[j], t_v, 1.0, 1.0, 1, 100 * j, "A", "G", 0.3, "wald"])))
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")


def test_command__writes_table_summary_and_plots(tmp_path, capsys):
    add, add_se, var, var_se = simulated_effects(m=300, seed=4)
    _write_models(tmp_path / "x.models.gz", add, add_se, var, var_se)
    assert hlmm_dispersion.main([str(tmp_path / "x.models.gz"), "--plot"]) == 0
    res = read_models(str(tmp_path / "x.dispersion.gz"))
    assert list(res) == COLUMNS + DISPERSION_COLUMNS
    ref = estimate_dispersion(add, add_se, var, var_se)
    np.testing.assert_allclose(res["dispersion"], ref["dispersion"], rtol=1e-8)
    err = capsys.readouterr().err
    assert "median add_t^2" in err and "KS test" in err and "first SNP rs0" in err
    for name in ("add_var", "qq", "manhattan"):
        png = tmp_path / f"x.{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_command__bad_file_is_one_line_error(tmp_path):
    (tmp_path / "bad.models.gz").write_text("not gzip")
    for path in (tmp_path / "bad.models.gz", tmp_path / "none.models.gz"):
        r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_dispersion.py"), str(path)],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("hlmm_dispersion: error: results file")
    assert not (tmp_path / "bad.dispersion.gz").exists()
