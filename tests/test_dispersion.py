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
from hlmm.dispersion import estimate_dispersion, ks_test, mean_variance_slope, moment_slope
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


def test_dispersion_1_2_0a1__detects_known_effect_and_calibrated_elsewhere():
    add, add_se, var, var_se = simulated_effects(seed=1)
    out = estimate_dispersion(add, add_se, var, var_se, method="1.2.0a1")
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


@pytest.mark.parametrize("method", ["moment", "1.2.0a1"])
def test_dispersion__nan_rows_stay_nan(method):
    add, add_se, var, var_se = simulated_effects(m=200, seed=2)
    add[5] = add_se[5] = var[5] = var_se[5] = np.nan
    out = estimate_dispersion(add, add_se, var, var_se, method=method)
    assert np.isnan(out["dispersion"][5]) and np.isnan(out["dispersion_pval"][5])
    assert np.isfinite(out["dispersion"][np.arange(200) != 5]).all()


def _write_models(path, add, add_se, var, var_se, chrom="1", first=0, test=None, cor=0.0, earlier=False):
    """A results table; its robust columns as for a normal trait (``var_se_robust = var_se``) with the
    correlation ``cor``, or, with ``earlier``, without them (an earlier version's 19 columns)."""
    m = len(add)
    columns = COLUMNS[:19] if earlier else COLUMNS
    rows = ["\t".join(columns)]
    for j in range(m):
        t_a, t_v = add[j] / add_se[j], var[j] / var_se[j]
        values = [f"rs{first + j}", 1000, 0.3, -100.0, add[j], add_se[j], t_a, 1.0, var[j], var_se[j], t_v, 1.0, 1.0,
                  chrom, 100 * j + 1, "A", "G", 0.3, test[j] if test is not None else "wald"]
        if not earlier:
            values += [var_se[j], 1.0, 1.0, cor, var[j], var_se[j], 1.0]
        rows.append("\t".join(map(str, values)))
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    return str(path)


def test_command__writes_table_summary_and_plots(tmp_path, capsys):
    add, add_se, var, var_se = simulated_effects(m=300, seed=4)
    _write_models(tmp_path / "x.models.gz", add, add_se, var, var_se)
    assert hlmm_dispersion.main([str(tmp_path / "x.models.gz"), "--plot", "--report", "rs0"]) == 0
    res = read_models(str(tmp_path / "x.dispersion.gz"))
    assert list(res) == COLUMNS + DISPERSION_COLUMNS
    ref = estimate_dispersion(add, add_se, var, var_se)
    np.testing.assert_allclose(res["dispersion"], ref["dispersion"], rtol=1e-8)
    err = capsys.readouterr().err
    assert "median add_t^2" in err and "KS test" in err and "rs0: dispersion" in err
    assert "first SNP" not in err
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


def _two_files(tmp_path, test=None):
    add, add_se, var, var_se = simulated_effects(m=400, seed=5)
    halves = (slice(0, 150), slice(150, 400))
    paths = [_write_models(tmp_path / f"chr{c}.models.gz", add[h], add_se[h], var[h], var_se[h], chrom=c,
                           first=h.start, test=None if test is None else test[h])
             for c, h in zip(("2", "10"), halves)]
    return paths, (add, add_se, var, var_se)


def test_several_files__same_as_their_concatenation(tmp_path):
    paths, (add, add_se, var, var_se) = _two_files(tmp_path)
    out = tmp_path / "all.dispersion.gz"
    assert hlmm_dispersion.main(paths + ["-o", str(out)]) == 0
    whole = _write_models(tmp_path / "whole.models.gz", add, add_se, var, var_se)
    assert hlmm_dispersion.main([whole]) == 0
    combined, single = read_models(str(out)), read_models(str(tmp_path / "whole.dispersion.gz"))
    assert list(combined) == list(single) == COLUMNS + DISPERSION_COLUMNS
    assert combined["SNP"].tolist() == [f"rs{j}" for j in range(400)]  # in the order of the inputs
    assert combined["chr"].tolist() == ["2"] * 150 + ["10"] * 250
    for c in ("add", "var") + tuple(DISPERSION_COLUMNS):
        np.testing.assert_array_equal(combined[c], single[c])
    # each file alone gives another slope: the fit really pooled them
    assert hlmm_dispersion.main([paths[0]]) == 0
    alone = read_models(str(tmp_path / "chr2.dispersion.gz"))
    assert not np.allclose(alone["dispersion"], combined["dispersion"][:150])


def _log_numbers(err, pattern):
    import re

    match = re.search(pattern, err)
    assert match, (pattern, err)
    return [float(x) for x in match.groups()]


def test_summary__medians_lambdas_slopes_and_ks_as_measured(tmp_path, capsys):
    from scipy import stats

    paths, (add, add_se, var, var_se) = _two_files(tmp_path)
    assert hlmm_dispersion.main(paths + ["-o", str(tmp_path / "all.dispersion.gz"), "--method", "1.2.0a1"]) == 0
    err = capsys.readouterr().err
    null_median = stats.chi2.ppf(0.5, 1)
    med_add, lam_add, med_var, lam_var = _log_numbers(
        err, r"median add_t\^2 = ([\d.e+-]+) \(lambda_GC ([\d.e+-]+)\), median \(var / var_se\)\^2 = ([\d.e+-]+) "
             r"\(lambda_GC ([\d.e+-]+)\)")
    t_add, t_var = add / add_se, var / var_se
    assert med_add == pytest.approx(np.median(t_add**2), rel=1e-3)
    assert lam_add == pytest.approx(np.median(t_add**2) / null_median, rel=1e-3)
    assert med_var == pytest.approx(np.median(t_var**2), rel=1e-3)
    assert lam_var == pytest.approx(np.median(t_var**2) / null_median, rel=1e-3)
    slope, robust, adjustment = _log_numbers(
        err, r"mean-variance slope \(1.2.0a1\) = ([\d.e+-]+): robust regression slope ([\d.e+-]+) times ([\d.e+-]+)")
    import statsmodels.api as sm

    huber = sm.RLM(var, add[:, None], M=sm.robust.norms.HuberT()).fit().params[0]
    expected_adjustment = 1 + np.mean(add_se**2) / (np.var(add, ddof=1) - np.mean(add_se**2))
    assert robust == pytest.approx(huber, rel=1e-3)
    assert adjustment == pytest.approx(expected_adjustment, rel=1e-3)
    assert slope == pytest.approx(huber * expected_adjustment, rel=1e-3)
    assert " r " not in err and "r =" not in err
    d, p = _log_numbers(err, r"over all 400 SNPs with estimates: D = ([\d.e+-]+), p = ([\d.e+-]+)")
    t = (var - slope * add) / np.sqrt(var_se**2 + slope**2 * add_se**2)
    ks = stats.kstest(t**2, "chi2", args=(1,))
    assert d == pytest.approx(ks.statistic, rel=2e-3) and p == pytest.approx(ks.pvalue, rel=5e-3)
    assert "400 SNPs from 2 files, 400 with estimates" in err


def test_report__prints_the_snps_dispersion_effect(tmp_path, capsys):
    paths, _ = _two_files(tmp_path)
    out = tmp_path / "all.dispersion.gz"
    assert hlmm_dispersion.main(paths + ["-o", str(out), "--report", "rs0", "--report", "rs399"]) == 0
    err = capsys.readouterr().err
    res = read_models(str(out))
    for j in (0, 399):
        d, se, p = _log_numbers(err, rf"rs{j}: dispersion = ([\d.e+-]+) \(SE ([\d.e+-]+)\), -log10 p = ([\d.e+-]+)")
        assert d == pytest.approx(res["dispersion"][j], rel=1e-3)
        assert se == pytest.approx(res["dispersion_se"][j], rel=1e-2)
        assert p == pytest.approx(res["dispersion_pval"][j], abs=1e-3)
    assert "rs1: dispersion" not in err


def test_score_rows__used_in_the_slope_and_said_so(tmp_path, capsys):
    test = np.where(np.arange(400) % 3 == 0, "score", "wald")
    paths, (add, add_se, var, var_se) = _two_files(tmp_path, test=test)
    out = tmp_path / "all.dispersion.gz"
    assert hlmm_dispersion.main(paths + ["-o", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "score-test" in line]
    assert len(lines) == 1 and f"{(test == 'score').sum()} of the 400" in lines[0] and "slope fit" in lines[0]
    res = read_models(str(out))
    assert res["test"].tolist() == test.tolist()
    np.testing.assert_allclose(res["dispersion"], estimate_dispersion(add, add_se, var, var_se)["dispersion"],
                               rtol=1e-8)  # the table holds 10 significant digits


def run_script(*args):
    return subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_dispersion.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_command__output_and_report_problems_are_one_line_errors(tmp_path):
    paths, _ = _two_files(tmp_path)
    cases = [
        ([*paths, "-o", tmp_path / "nodir" / "all.dispersion.gz"], "nodir"),
        ([*paths], "-o"),
        ([paths[0], "--report", "rs999"], "rs999"),
        ([paths[0], "-o", paths[0]], "also an input"),
    ]
    for args, expected in cases:
        r = run_script(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith("hlmm_dispersion: error:") and expected in lines[0], lines[0]
    assert not (tmp_path / "chr2.dispersion.gz").exists()
    other = tmp_path / "other.models.gz"
    with gzip.open(other, "wt") as f:
        f.write("\t".join(COLUMNS[:-2]) + "\n")
    r = run_script(paths[0], other, "-o", tmp_path / "all.dispersion.gz")
    assert r.returncode == 2 and "columns differ" in r.stderr


def test_docs__documented_options_exist():
    import re

    text = (REPO / "docs" / "dispersion.rst").read_text()
    documented = set(re.findall(r"``(--\w+)", text))
    options = set(re.findall(r"--\w+", hlmm_dispersion.build_parser().format_help()))
    assert {"--report", "--plot", "--gw_threshold"} <= documented <= options


# ------------------------------------------------------------------------------------------------
# The moment method: correlated errors, few or many SNPs with additive effects, none
# ------------------------------------------------------------------------------------------------
def correlated_effects(m=4000, k=20, a=0.1, r=0.65, rho=0.5, seed=0, s_a=0.01, s_b=0.02):
    """k SNPs with additive effect a and variance effect r*a (no dispersion effect), m - k without
    effects; errors of (add, var) with sds (s_a, s_b) and correlation rho, as on a skewed trait."""
    rng = np.random.default_rng(seed)
    true_a = np.where(np.arange(m) < k, a, 0.0)
    e1, e2 = rng.standard_normal(m), rng.standard_normal(m)
    add = true_a + s_a * e1
    var = r * true_a + s_b * (rho * e1 + np.sqrt(1 - rho**2) * e2)
    return add, np.full(m, s_a), var, np.full(m, s_b), np.full(m, rho)


def test_moment_slope__consistent_with_correlated_errors_where_1_2_0a1_is_not():
    """200 replicates of 4,000 SNPs, 20 with additive effects (t = 10) on the line var = 0.65 add, errors
    correlated 0.5 with s_b = 2 s_a (null SNPs alone lie along a line of slope 1): the moment slope's
    mean is within 3 of its standard errors of 0.65 and its reported SE matches its spread (within
    20%, the spread of an SD from 200 draws is 5%); 1.2.0a1's slope is far off (measured about 2.7)."""
    moment, old, ses = [], [], []
    for seed in range(200):
        add, add_se, var, var_se, cor = correlated_effects(seed=seed)
        fit = moment_slope(add, add_se, var, var_se, cor)
        moment.append(fit.r)
        ses.append(fit.se)
        if seed < 20:
            old.append(mean_variance_slope(add, add_se, var)[0])
    moment = np.array(moment)
    assert abs(moment.mean() - 0.65) < 3 * moment.std() / np.sqrt(200)
    assert np.std(moment) == pytest.approx(np.mean(ses), rel=0.2)
    assert np.mean(old) > 1.0


@pytest.mark.parametrize("k", [20, 400])
def test_moment_dispersion__no_mean_only_snp_flagged_variance_snps_found(k):
    """Few (20) or many (400) SNPs with additive effects on the mean-variance line, 20 with a pure
    variance (dispersion) effect, correlated errors: the mean-only SNPs reach p < 1e-4 at the null
    rate (expected 0.002 and 0.04 SNPs; at most 1 allowed, P(2 or more) < 1e-3) and their dispersion
    t^2 are null-like; the variance SNPs are found (t = 8); the null SNPs' dispersion t^2 have
    lambda in [0.9, 1.1] (3,580 SNPs: se 0.04)."""
    a = 0.1 if k == 20 else 0.04
    add, add_se, var, var_se, cor = correlated_effects(m=4000, k=k, a=a, seed=k)
    dispersion_snps = np.arange(k, k + 20)
    var[dispersion_snps] += 0.16
    out = estimate_dispersion(add, add_se, var, var_se, add_var_cor=cor)
    t2 = out["dispersion_t"] ** 2
    cut = 15.137  # chi-square(1) at p = 1e-4
    assert np.sum(t2[:k] > cut) <= 1
    assert np.mean(t2[:k]) < 1.5  # 1 under the null; about 2.6 se for k = 20
    assert np.sum(t2[dispersion_snps] > cut) >= 15
    null = t2[k + 20:]
    assert 0.9 < np.median(null) / 0.4549 < 1.1
    assert out["slope"].estimated and abs(out["r"] - 0.65) < 4 * out["slope"].se
    # 1.2.0a1's procedure does not hold the mean-only SNPs at the null (measured: mean t^2 36 and 20 of
    # 20 flagged for k = 20; 1.9 for k = 400)
    old = estimate_dispersion(add, add_se, var, var_se, method="1.2.0a1")
    assert np.mean(old["dispersion_t"][:k] ** 2) > 1.5


def test_moment_dispersion__without_additive_effects_is_the_variance_effect():
    add, add_se, var, var_se, cor = correlated_effects(k=0, seed=3)
    var[:10] += 0.1
    out = estimate_dispersion(add, add_se, var, var_se, add_var_cor=cor)
    assert not out["slope"].estimated and out["r"] == 0.0
    np.testing.assert_array_equal(out["dispersion"], var)
    np.testing.assert_allclose(out["dispersion_se"], var_se, rtol=1e-15)


def test_moment_slope__cluster_standard_error_sums_within_clusters():
    add, add_se, var, var_se, cor = correlated_effects(m=600, k=40, seed=4)
    clusters = np.repeat(np.arange(60), 10)
    fit = moment_slope(add, add_se, var, var_se, cor, clusters)
    t = add / add_se
    phi, tdphi = t**4 / (t**4 + 625), 4 * t**4 * 625 / (t**4 + 625) ** 2
    D = add_se**2 * (phi * (t * t - 1) - tdphi)
    N = phi * add * var - cor * add_se * var_se * (phi + tdphi)
    r = N.sum() / D.sum()
    assert fit.r == pytest.approx(r, rel=1e-12) and fit.clusters == 60
    per = np.bincount(clusters, weights=N - r * D)
    assert fit.se == pytest.approx(np.sqrt(np.sum(per**2)) / D.sum(), rel=1e-12)
    few = moment_slope(add, add_se, var, var_se, cor, np.repeat(np.arange(6), 100))  # < 30: single SNPs
    assert few.clusters == 0 and few.se == pytest.approx(np.sqrt(np.sum((N - r * D) ** 2)) / D.sum(), rel=1e-12)


def test_scan_then_moment_method__exp_scale_trait_mean_only_snps_not_flagged():
    """End to end on individuals: y = exp(0.3 (z + 0.25 g_1 + ... + 0.25 g_20)) at n = 6,000 with 1,500
    null SNPs, scanned by the default engine (robust columns from the pooled moments). The variance
    differences of the 20 SNPs follow from their mean differences: the default method flags none at
    p < 1e-4 and estimates a slope near the truth; 1.2.0a1's procedure (on the same rows) flags most
    of them (measured: 13 of 20; the estimated slope 0.66 with SE 0.05, against 0.76 from the
    approximation below)."""
    from hlmm.pipeline import scan_arrays

    rng = np.random.default_rng(8)
    n, m, k = 6000, 1520, 20
    g = rng.binomial(2, rng.uniform(0.2, 0.5, m), (n, m)).astype(float)
    y = np.exp(0.3 * (rng.standard_normal(n) + (g[:, :k] - g[:, :k].mean(0)) @ np.full(k, 0.25)))
    cols, fit = scan_arrays(y, g)
    assert fit.moments.add_var_cor > 0.3  # skewed: the errors of add and var are correlated
    new = estimate_dispersion(cols["add"], cols["add_se"], cols["var"], cols["var_se_robust"],
                              add_var_cor=cols["add_var_cor"])
    old = estimate_dispersion(cols["add"], cols["add_se"], cols["var"], cols["var_se"], method="1.2.0a1")
    cut = 4.0  # -log10 p
    assert np.sum(new["dispersion_pval"][:k] >= cut) == 0
    assert np.sum(old["dispersion_pval"][:k] >= cut) >= 10
    # true slope: log-variance effect 0.6 * 0.25 per allele over an additive effect of about
    # 0.3 * 0.25 / CV(y) in SDs of y, i.e. 0.6 CV(y) / 0.3 = 2 CV(y)
    assert abs(new["r"] - 2 * np.std(y) / np.mean(y)) < 4 * new["slope"].se
    null = new["dispersion_t"][k:] ** 2
    assert 0.85 < np.nanmedian(null) / 0.4549 < 1.15
