"""End-to-end tests of hlmm_chr and fit_hlmm_model on small BED files written by the tests."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import make_dataset, write_table

from hlmm import hetlm, hetlmm
from hlmm.cli import fit_hlmm_model, hlmm_chr
from hlmm.columns import DOCUMENTED, MODELS, names
from hlmm.io import write_bed
from hlmm.results import read_models

COLUMNS, DOCUMENTED_COLUMNS = names(MODELS), DOCUMENTED

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def run_chr(*argv):
    return hlmm_chr.main([str(a) for a in argv] + ["--quiet"])


def zscore(A):
    return (A - A.mean(axis=0)) / A.std(axis=0)


def complete_rows(ds):
    return ~np.isnan(ds.y) & ~np.isnan(ds.covariates).any(axis=1)


def read_effects(path):
    rows = [line.rstrip("\n").split("\t") for line in open(path)]
    return [r[0] for r in rows], np.array([[float(r[1]), float(r[2])] for r in rows])


def direct_snp_fit(y, X, V, g, G=None, h2=None):
    called = ~np.isnan(g)
    gc = g[called] - g[called].mean()
    Xl, Vl = np.column_stack([X[called], gc]), np.column_stack([V[called], gc])
    if G is None:
        return hetlm.model(y[called], Xl, Vl).optimize_model()
    return hetlmm.model(y[called], Xl, Vl, G[called]).optimize_model(h2)


def assert_row_matches(res, j, fit, n):
    assert res["n"][j] == n
    np.testing.assert_allclose(res["likelihood"][j], fit["likelihood"], rtol=1e-8)
    np.testing.assert_allclose(
        [res["add"][j], res["add_se"][j], res["var"][j], res["var_se"][j]],
        [fit["alpha"][-1], fit["alpha_se"][-1], fit["beta"][-1], fit["beta_se"][-1]],
        rtol=1e-7, atol=1e-9,
    )


# ----------------------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------------------
def test_default_mode__matches_direct_fit_of_standardised_phenotype(ds, tmp_path):
    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 12, ds.pheno, out, "--mean_covar", ds.covar, "--var_covar", ds.covar) == 0
    res = read_models(f"{out}.models.gz")
    keep = complete_rows(ds)
    y, C, g = ds.y[keep], ds.covariates[keep], ds.genotypes[keep]
    X = np.column_stack([np.ones(len(y)), zscore(C)])
    null = hetlm.model(y, X, X).optimize_model()
    y_std = (y - X @ null["alpha"]) * np.exp(-X @ null["beta"] / 2)
    one = np.ones(len(y))
    for j in range(9):  # SNPs 9..11 are filtered
        fit = direct_snp_fit(y_std, one, one, g[:, j])
        assert_row_matches(res, j, fit, int((~np.isnan(g[:, j])).sum()))


def test_fit_covariates__matches_direct_fit_with_covariates(ds, tmp_path):
    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 4, ds.pheno, out, "--mean_covar", ds.covar, "--var_covar", ds.covar,
                   "--fit_covariates") == 0
    res = read_models(f"{out}.models.gz")
    keep = complete_rows(ds)
    y, g = ds.y[keep], ds.genotypes[keep]
    X = np.column_stack([np.ones(len(y)), zscore(ds.covariates[keep])])
    for j in range(4):
        fit = direct_snp_fit(y, X, X, g[:, j])
        assert_row_matches(res, j, fit, int((~np.isnan(g[:, j])).sum()))


def test_random_gts__follows_1_2_0a1_pipeline_and_writes_null_h2(ds, tmp_path):
    # 1.2.0a1: null HLM (no random effects) -> y* = (y - X alpha) exp(-V beta / 2) -> null HLMM on y*
    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 3, ds.pheno, out, "--random_gts", ds.random) == 0
    res = read_models(f"{out}.models.gz")
    keep = ~np.isnan(ds.y)
    y, g, r = ds.y[keep], ds.genotypes[keep], ds.random_genotypes[keep]
    r = np.where(np.isnan(r), np.nanmean(r, axis=0), r)
    G = zscore(r) / np.sqrt(r.shape[1])
    one = np.ones(len(y))
    hlm = hetlm.model(y, one, one).optimize_model()
    y_std = (y - hlm["alpha"][0]) * np.exp(-hlm["beta"][0] / 2)
    null = hetlmm.model(y_std, one, one, G).optimize_model(0.05)
    names, h2 = read_effects(f"{out}.null_h2.txt")
    assert names == ["h2"]
    np.testing.assert_allclose(h2[0], [null["h2"], null["h2_se"]], rtol=1e-6)
    for j in range(3):
        fit = direct_snp_fit(y_std, one, one, g[:, j], G, null["h2"])
        assert_row_matches(res, j, fit, int((~np.isnan(g[:, j])).sum()))


def test_random_gts_txt__same_as_bed(ds, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_chr(ds.bed, 0, 2, ds.pheno, a, "--random_gts", ds.random) == 0
    assert run_chr(ds.bed, 0, 2, ds.pheno, b, "--random_gts", ds.random_txt, "--random_gts_txt") == 0
    assert gzip.open(f"{a}.models.gz").read() == gzip.open(f"{b}.models.gz").read()


def test_null_covariate_effects__in_original_units(ds, tmp_path):
    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 1, ds.pheno, out, "--mean_covar", ds.covar, "--var_covar", ds.covar) == 0
    keep = complete_rows(ds)
    X = np.column_stack([np.ones(keep.sum()), ds.covariates[keep]])  # raw units, no z-scoring
    fit = hetlm.model(ds.y[keep], X, X).optimize_model()
    names, mean = read_effects(f"{out}.null_mean_effects.txt")
    assert names == ["Intercept", "age", "sex"]
    np.testing.assert_allclose(mean, np.column_stack([fit["alpha"], fit["alpha_se"]]), rtol=1e-6)
    names, var = read_effects(f"{out}.null_variance_effects.txt")
    assert names == ["Intercept", "age", "sex"]
    np.testing.assert_allclose(var, np.column_stack([fit["beta"], fit["beta_se"]]), rtol=1e-6)


def test_variance_covariates_use_their_own_scale(ds, tmp_path):
    # one mean covariate (age) and a different variance covariate (sex): 1.2.0a1 rescaled
    # variance effects with the mean covariates' count; check against a raw-unit fit
    d = Path(tmp_path)
    keep = complete_rows(ds)
    ids = [(f"F{i}", f"I{i}") for i in range(len(ds.y))]
    write_table(d / "m.txt", ids, ds.covariates[:, [0]], header=["age"])
    write_table(d / "v.txt", ids, ds.covariates[:, [1]] * 5.0, header=["sex5"])
    assert fit_hlmm_model.main([ds.pheno, str(d / "fit"), "--mean_covar", str(d / "m.txt"),
                                "--var_covar", str(d / "v.txt"), "--quiet"]) == 0
    X = np.column_stack([np.ones(keep.sum()), ds.covariates[keep, 0]])
    V = np.column_stack([np.ones(keep.sum()), 5.0 * ds.covariates[keep, 1]])
    fit = hetlm.model(ds.y[keep], X, V).optimize_model()
    _, mean = read_effects(d / "fit.mean_effects.txt")
    _, var = read_effects(d / "fit.variance_effects.txt")
    np.testing.assert_allclose(mean, np.column_stack([fit["alpha"], fit["alpha_se"]]), rtol=1e-6)
    np.testing.assert_allclose(var, np.column_stack([fit["beta"], fit["beta_se"]]), rtol=1e-6)


def test_fit_hlmm_model__matches_direct_hetlmm(ds, tmp_path):
    out = tmp_path / "fit"
    assert fit_hlmm_model.main([ds.pheno, str(out), "--mean_covar", ds.covar, "--random_gts", ds.random,
                                "--quiet"]) == 0
    keep = complete_rows(ds)
    r = ds.random_genotypes[keep]
    r = np.where(np.isnan(r), np.nanmean(r, axis=0), r)
    G = zscore(r) / np.sqrt(r.shape[1])
    X = np.column_stack([np.ones(keep.sum()), ds.covariates[keep]])
    fit = hetlmm.model(ds.y[keep], X, np.ones(keep.sum()), G).optimize_model(0.05)
    _, mean = read_effects(f"{out}.mean_effects.txt")
    np.testing.assert_allclose(mean, np.column_stack([fit["alpha"], fit["alpha_se"]]), rtol=1e-5)
    names, var = read_effects(f"{out}.variance_effects.txt")
    assert names == ["Intercept"]
    np.testing.assert_allclose(var[0], [fit["beta"][0], fit["beta_se"][0]], rtol=1e-5)
    _, h2 = read_effects(f"{out}.h2.txt")
    np.testing.assert_allclose(h2[0], [fit["h2"], fit["h2_se"]], rtol=1e-5)


def test_fit_hlmm_model__requires_a_model_term(ds, tmp_path, capsys):
    assert fit_hlmm_model.main([ds.pheno, str(tmp_path / "x")]) == 2
    assert "at least one of --mean_covar" in capsys.readouterr().err


def test_a1_counting__effects_count_the_bim_fifth_column(tmp_path):
    rng = np.random.default_rng(1)
    n = 1000
    g = rng.binomial(2, 0.4, (n, 1)).astype(float)
    y = 0.5 * g[:, 0] + rng.standard_normal(n)
    write_table(tmp_path / "p.txt", [(f"f{i}", f"i{i}") for i in range(n)], y)
    write_bed(str(tmp_path / "t"), g, A1=["T"], A2=["C"])
    write_bed(str(tmp_path / "s"), 2 - g, A1=["C"], A2=["T"])  # the same data, alleles swapped
    assert run_chr(tmp_path / "t.bed", 0, 1, tmp_path / "p.txt", tmp_path / "o") == 0
    assert run_chr(tmp_path / "s.bed", 0, 1, tmp_path / "p.txt", tmp_path / "os") == 0
    t, s = read_models(str(tmp_path / "o.models.gz")), read_models(str(tmp_path / "os.models.gz"))
    assert t["A1"][0] == "T" and t["A2"][0] == "C" and s["A1"][0] == "C"
    assert t["add_t"][0] > 10  # y increases with copies of T
    np.testing.assert_allclose(s["add"], -t["add"], rtol=1e-9)
    np.testing.assert_allclose(s["var"], -t["var"], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(s["frequency"], t["frequency"], rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Output format and options
# ----------------------------------------------------------------------------------------------
def test_output__real_gzip_with_documented_columns_then_location(ds, tmp_path):
    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 12, ds.pheno, out) == 0
    with open(f"{out}.models.gz", "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    header = gzip.open(f"{out}.models.gz", "rt").readline().rstrip("\n").split("\t")
    assert header[:13] == DOCUMENTED_COLUMNS and header == COLUMNS
    res = read_models(f"{out}.models.gz")
    assert list(res["SNP"]) == [f"rs{j}" for j in range(12)]
    assert list(res["chr"]) == ["3"] * 12 and res["pos"][1] == 110
    assert "b'" not in gzip.open(f"{out}.models.gz", "rt").read()


def test_filters__rows_kept_with_n_and_frequency_and_nan_estimates(ds, tmp_path):
    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 12, ds.pheno, out) == 0
    res = read_models(f"{out}.models.gz")
    keep = ~np.isnan(ds.y)
    g = ds.genotypes[keep]
    for j in (9, 10, 11):  # MAF ~0.01, 10% missing, monomorphic
        called = ~np.isnan(g[:, j])
        p = g[called, j].mean() / 2
        assert res["n"][j] == called.sum()
        np.testing.assert_allclose(res["frequency"][j], min(p, 1 - p), rtol=1e-9)
        for col in ("likelihood", "add", "add_se", "var", "var_pval", "av_pval"):
            assert np.isnan(res[col][j])
    assert np.all(np.isfinite(res["add"][:9]))
    # with looser filters SNPs 9 and 10 are fitted; the monomorphic SNP still is not
    assert run_chr(ds.bed, 9, 12, ds.pheno, out, "--min_maf", 0.001, "--max_missing", 20) == 0
    res = read_models(f"{out}.models.gz")
    assert np.all(np.isfinite(res["add"][:2])) and np.isnan(res["add"][2])
    assert run_chr(ds.bed, 11, 12, ds.pheno, out, "--min_maf", 0) == 0
    assert np.isnan(read_models(f"{out}.models.gz")["add"][0])


def test_pvalues_and_t_statistics_columns(ds, tmp_path):
    from scipy.stats import chi2

    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 3, ds.pheno, out) == 0
    r = read_models(f"{out}.models.gz")
    np.testing.assert_allclose(r["add_t"], r["add"] / r["add_se"], rtol=1e-8)
    np.testing.assert_allclose(r["add_pval"], -np.log10(chi2.sf(r["add_t"] ** 2, 1)), rtol=1e-7)
    np.testing.assert_allclose(r["var_pval"], -np.log10(chi2.sf(r["var_t"] ** 2, 1)), rtol=1e-7)
    np.testing.assert_allclose(r["av_pval"], -np.log10(chi2.sf(r["add_t"] ** 2 + r["var_t"] ** 2, 2)), rtol=1e-7)


def test_start_end_whole_chr_and_clipping(ds, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_chr(ds.bed, 2, 5, ds.pheno, out) == 0
    assert list(read_models(f"{out}.models.gz")["SNP"]) == ["rs2", "rs3", "rs4"]
    assert hlmm_chr.main([ds.bed, "10", "99", ds.pheno, str(out)]) == 0
    assert "clipped to 12" in capsys.readouterr().err
    assert list(read_models(f"{out}.models.gz")["SNP"]) == ["rs10", "rs11"]
    assert run_chr(ds.bed, 0, 1, ds.pheno, out, "--whole_chr") == 0
    assert len(read_models(f"{out}.models.gz")["SNP"]) == 12


def test_append__adds_rows_without_header(ds, tmp_path):
    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 2, ds.pheno, out) == 0
    assert run_chr(ds.bed, 2, 4, ds.pheno, out, "--append") == 0
    text = gzip.open(f"{out}.models.gz", "rt").read()
    assert text.count("SNP\t") == 1
    assert list(read_models(f"{out}.models.gz")["SNP"]) == ["rs0", "rs1", "rs2", "rs3"]
    whole = tmp_path / "whole"
    assert run_chr(ds.bed, 0, 4, ds.pheno, whole) == 0
    assert gzip.open(f"{whole}.models.gz").read() == gzip.open(f"{out}.models.gz").read()


def test_phen_index__selects_the_phenotype(ds, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_chr(ds.bed, 0, 2, ds.pheno, a, "--phen_index", 2) == 0
    keep = np.ones(len(ds.y), dtype=bool)
    res = read_models(f"{a}.models.gz")
    assert res["n"][0] == (~np.isnan(ds.genotypes[keep, 0])).sum()  # phenotype 2 has no missing values
    assert run_chr(ds.bed, 0, 2, ds.pheno, b) == 0
    assert not np.allclose(res["add"], read_models(f"{b}.models.gz")["add"])


def test_no_covariate_estimates_and_no_h2_estimate(ds, tmp_path):
    out = tmp_path / "out"
    assert run_chr(ds.bed, 0, 1, ds.pheno, out, "--mean_covar", ds.covar, "--random_gts", ds.random,
                   "--no_covariate_estimates", "--no_h2_estimate", "--h2_init", 0.2) == 0
    assert os.path.exists(f"{out}.models.gz")
    assert not os.path.exists(f"{out}.null_mean_effects.txt")
    assert not os.path.exists(f"{out}.null_h2.txt")


def test_missing_char_and_headerless_numbered_covariates(ds, tmp_path):
    n = len(ds.y)
    ids = [(f"F{i}", f"I{i}") for i in range(n)]
    write_table(tmp_path / "p.txt", ids, ds.y, missing="-9")
    write_table(tmp_path / "c.txt", ids, ds.covariates, missing="-9")
    out = tmp_path / "o"
    assert run_chr(ds.bed, 0, 2, tmp_path / "p.txt", out, "--mean_covar", tmp_path / "c.txt",
                   "--missing_char", "-9") == 0
    names, _ = read_effects(f"{out}.null_mean_effects.txt")
    assert names == ["Intercept", "1", "2"]
    ref = tmp_path / "ref"
    assert run_chr(ds.bed, 0, 2, ds.pheno, ref, "--mean_covar", ds.covar) == 0
    assert gzip.open(f"{ref}.models.gz").read() == gzip.open(f"{out}.models.gz").read()


def test_log__reports_individuals_read_matched_and_dropped(ds, tmp_path, capsys):
    assert hlmm_chr.main([ds.bed, "0", "1", ds.pheno, str(tmp_path / "o"), "--mean_covar", ds.covar]) == 0
    err = capsys.readouterr().err
    assert "600 individuals read from phenotype file" in err
    assert "dropped 2 individuals with missing values in phenotype file" in err
    assert "dropped 1 individuals with missing values in mean covariate file" in err
    assert "597 individuals used" in err


def test_failed_fit__keeps_row_with_nan_and_run_goes_on(ds, tmp_path, monkeypatch, capsys):
    from hlmm.engines import reference

    real = reference.reference_fit
    calls = {"k": 0}

    def flaky(*a, **k):
        calls["k"] += 1
        return (None, "forced failure") if calls["k"] == 2 else real(*a, **k)

    monkeypatch.setattr(reference, "reference_fit", flaky)
    assert hlmm_chr.main([ds.bed, "0", "3", ds.pheno, str(tmp_path / "o"), "--engine", "reference"]) == 0
    res = read_models(str(tmp_path / "o.models.gz"))
    assert np.isfinite(res["add"][0]) and np.isnan(res["add"][1]) and np.isfinite(res["add"][2])
    assert res["n"][1] > 0
    assert "variant rs1 (trait): fit failed (forced failure)" in capsys.readouterr().err


def test_interrupted_run__keeps_completed_blocks(ds, tmp_path, monkeypatch):
    from hlmm import runner

    real = runner.compute_block
    calls = {"k": 0}

    def interrupt(*a, **k):
        calls["k"] += 1
        if calls["k"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "compute_block", interrupt)
    out = tmp_path / "o"
    assert run_chr(ds.bed, 0, 12, ds.pheno, out, "--block_size", 2, "--engine", "reference") == 130
    # the results file appears only when complete; the partial file holds the completed blocks
    assert not os.path.exists(f"{out}.models.gz")
    assert list(read_models(f"{out}.models.gz.partial")["SNP"]) == ["rs0", "rs1", "rs2", "rs3"]
    monkeypatch.setattr(runner, "compute_block", real)
    assert run_chr(ds.bed, 0, 12, ds.pheno, out, "--block_size", 2, "--engine", "reference", "--resume") == 0
    assert list(read_models(f"{out}.models.gz")["SNP"]) == [f"rs{j}" for j in range(12)]
    assert not os.path.exists(f"{out}.models.gz.partial")


def test_progress__terminal_shows_a_tqdm_bar(capsys):
    from hlmm.cli._common import Progress

    p = Progress(enabled=True, tty=True)
    p.start(10)
    for _ in range(10):
        p.update(1)
    p.close()
    err = capsys.readouterr().err
    assert "10/10" in err and "variants/s" in err and "\r" in err


def test_progress__stderr_to_a_file_gets_timestamped_progress_lines(ds, tmp_path):
    import re

    log_path = tmp_path / "chr.log"
    with open(log_path, "w") as f:
        r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), ds.bed, "0", "12", ds.pheno,
                            str(tmp_path / "o"), "--block_size", "1", "--mean_covar", ds.covar], stderr=f)
    assert r.returncode == 0
    lines = log_path.read_text().splitlines()
    assert "\r" not in log_path.read_text()
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} ")
    assert lines and all(stamp.match(line) for line in lines), lines
    progress = [line for line in lines if " progress: " in line]
    # every 5% of 12 variants is every variant: one line per block, each with rate and ETA
    assert len(progress) == 12 and "12/12 variants (100%)" in progress[-1]
    assert all("variants/s, ETA " in line for line in progress)
    assert any("null mean effects (trait): Intercept" in line and "age" in line for line in lines)
    end = [line for line in lines if "Wrote 12 rows" in line][0]
    assert "failed fits" in end and "by MAF" in end and "by missingness" in end and " s (" in end


def test_console_commands_installed(ds, tmp_path):
    bindir = Path(sys.executable).parent
    for cmd in ("hlmm_chr", "fit_hlmm_model"):
        r = subprocess.run([str(bindir / cmd), "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage" in r.stdout


# ----------------------------------------------------------------------------------------------
# Bad input: one line naming the file, exit status 2, no traceback, no output file
# ----------------------------------------------------------------------------------------------
def _copy_bed(ds, d, name="g"):
    for ext in ("bed", "bim", "fam"):
        Path(d, f"{name}.{ext}").write_bytes(Path(ds.bed[:-4] + "." + ext).read_bytes())
    return str(Path(d, f"{name}.bed"))


def _bad_cases(ds, d):
    d = Path(d)
    cases = {}
    cases["missing bed"] = ([str(d / "nope.bed"), "0", "2", ds.pheno], "does not exist")
    g = _copy_bed(ds, d, "nobim")
    os.remove(d / "nobim.bim")
    cases["missing bim"] = ([g, "0", "2", ds.pheno], "nobim.bim does not exist")
    g = _copy_bed(ds, d, "trunc")
    Path(g).write_bytes(Path(g).read_bytes()[:-7])
    cases["truncated bed"] = ([g, "0", "2", ds.pheno], "truncated or inconsistent")
    g = _copy_bed(ds, d, "extrafam")
    with open(d / "extrafam.fam", "a") as f:
        f.write("X Y 0 0 0 -9\n")
    cases["inconsistent fam"] = ([g, "0", "2", ds.pheno], "does not match")
    g = _copy_bed(ds, d, "magic")
    b = bytearray(Path(g).read_bytes())
    b[0] = 0
    Path(g).write_bytes(bytes(b))
    cases["bad magic"] = ([g, "0", "2", ds.pheno], "magic")
    g = _copy_bed(ds, d, "shortbim")
    Path(d / "shortbim.bim").write_text(Path(d / "shortbim.bim").read_text().replace("\t0\t110", "\t110", 1))
    cases["ragged bim"] = ([g, "0", "2", ds.pheno], "line 2 has 5 columns")
    cases["missing phenotype"] = ([ds.bed, "0", "2", str(d / "nope.txt")], "phenotype file")
    (d / "empty.txt").write_text("")
    cases["empty phenotype"] = ([ds.bed, "0", "2", str(d / "empty.txt")], "empty")
    (d / "text.txt").write_text("F0 I0 1.5\nF1 I1 abc\n")
    cases["non-numeric"] = ([ds.bed, "0", "2", str(d / "text.txt")], "non-numeric value 'abc'")
    (d / "dup.txt").write_text("F0 I0 1.5\nF1 I1 2\nF0 I0 3\n")
    cases["duplicated ids"] = ([ds.bed, "0", "2", str(d / "dup.txt")], "appears more than once")
    (d / "other.txt").write_text("A B 1.5\nC D 2\n")
    cases["no common ids"] = ([ds.bed, "0", "2", str(d / "other.txt")], "no individuals in common")
    write_table(d / "const.txt", [(f"F{i}", f"I{i}") for i in range(600)], np.ones(600))
    cases["constant phenotype"] = ([ds.bed, "0", "2", str(d / "const.txt")], "is constant")
    write_table(d / "coll.txt", [(f"F{i}", f"I{i}") for i in range(600)],
                np.column_stack([ds.covariates[:, 0], 2 * ds.covariates[:, 0]]))
    cases["collinear covariates"] = ([ds.bed, "0", "2", ds.pheno, "--mean_covar", str(d / "coll.txt")], "collinear")
    write_table(d / "cc.txt", [(f"F{i}", f"I{i}") for i in range(600)], np.full(600, 3.0))
    cases["constant covariate"] = ([ds.bed, "0", "2", ds.pheno, "--var_covar", str(d / "cc.txt")], "constant")
    cases["start past end of file"] = ([ds.bed, "12", "20", ds.pheno], "past the last variant")
    cases["start after end"] = ([ds.bed, "5", "3", ds.pheno], "not before end")
    cases["phen_index out of range"] = ([ds.bed, "0", "2", ds.pheno, "--phen_index", "3"], "out of range")
    cases["random effects missing"] = ([ds.bed, "0", "2", ds.pheno, "--random_gts", str(d / "nope.bed")],
                                       "random effects file")
    return cases


def test_bad_input__one_line_error_exit_2_no_output(ds, tmp_path):
    cases = _bad_cases(ds, tmp_path)
    for name, (argv, expected) in cases.items():
        outdir = tmp_path / f"out_{name.replace(' ', '_')}"
        outdir.mkdir()
        r = subprocess.run([sys.executable, "-m", "hlmm.cli.hlmm_chr", *argv[:3], argv[3], str(outdir / "o"),
                            *argv[4:]], capture_output=True, text=True)
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert lines and lines[-1].startswith("hlmm_chr: error: "), (name, r.stderr)
        assert expected in lines[-1], (name, lines[-1])
        assert "Traceback" not in r.stderr, name
        assert list(outdir.iterdir()) == [], (name, list(outdir.iterdir()))


def test_bad_output_directory(ds, tmp_path, capsys):
    assert hlmm_chr.main([ds.bed, "0", "2", ds.pheno, str(tmp_path / "no" / "such" / "dir" / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root can write anywhere
            assert hlmm_chr.main([ds.bed, "0", "2", ds.pheno, str(ro / "o")]) == 2
            assert "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_fit_hlmm_model__bad_input(ds, tmp_path, capsys):
    (tmp_path / "text.txt").write_text("F0 I0 1.5\nF1 I1 abc\n")
    assert fit_hlmm_model.main([str(tmp_path / "text.txt"), str(tmp_path / "o"), "--mean_covar", ds.covar]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fit_hlmm_model: error: phenotype file") and "abc" in err[-1]
    assert not any(p.name.startswith("o.") for p in tmp_path.iterdir())


def test_kurtosis_warning__for_a_t5_phenotype_not_for_a_normal_one(tmp_path):
    rng = np.random.default_rng(21)
    n = 3000
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    write_bed(str(tmp_path / "g"), rng.binomial(2, 0.3, (n, 3)).astype(float), ids=ids)
    for name, y in (("normal", rng.standard_normal(n)), ("t5", rng.standard_t(5, n))):
        write_table(tmp_path / f"{name}.txt", ids, y)
        r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(tmp_path / "g.bed"), "0", "3",
                            str(tmp_path / f"{name}.txt"), str(tmp_path / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        warned = [line for line in r.stderr.splitlines() if "WARNING" in line and "excess kurtosis" in line]
        if name == "normal":
            assert warned == []
        else:
            assert len(warned) == 1 and "--robust" in warned[0] and "inverse-normal" in warned[0]
        r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(tmp_path / "g.bed"), "0", "3",
                            str(tmp_path / f"{name}.txt"), str(tmp_path / f"{name}_r"), "--robust"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "excess kurtosis" not in r.stderr


def test_robust__options_that_cannot_be_valid_are_refused_and_merge_keeps_se_kinds_apart(ds, tmp_path):
    from hlmm.cli import hlmm_merge

    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), ds.bed, "0", "2", ds.pheno,
                        str(tmp_path / "o"), "--random_gts", ds.random, "--robust"], capture_output=True, text=True)
    assert r.returncode == 2 and "--test score" in r.stderr and "Traceback" not in r.stderr
    assert fit_hlmm_model.main([ds.pheno, str(tmp_path / "f"), "--random_gts", ds.random, "--robust"]) == 2
    assert run_chr(ds.bed, 0, 6, ds.pheno, tmp_path / "a") == 0
    assert run_chr(ds.bed, 6, 12, ds.pheno, tmp_path / "b", "--robust") == 0
    assert json.loads(Path(f"{tmp_path / 'b'}.models.json").read_text())["se"] == "robust"
    assert hlmm_merge.main([f"{tmp_path / 'a'}.models.gz", f"{tmp_path / 'b'}.models.gz", "-o",
                            str(tmp_path / "m.models.gz")]) == 2
    assert not (tmp_path / "m.models.gz").exists()


def test_fit_hlmm_model__robust_standard_errors_are_the_sandwich(ds, tmp_path):
    from hlmm.robust import hlm_sandwich

    out = tmp_path / "f"
    assert fit_hlmm_model.main([ds.pheno, str(out), "--mean_covar", ds.covar, "--var_covar", ds.covar, "--robust",
                                "--quiet"]) == 0
    keep = complete_rows(ds)
    X = np.column_stack([np.ones(keep.sum()), ds.covariates[keep]])
    fit = hetlm.model(ds.y[keep], X, X).optimize_model()
    cov = hlm_sandwich(ds.y[keep], X, X, fit["alpha"], fit["beta"])
    _, mean = read_effects(f"{out}.mean_effects.txt")
    _, var = read_effects(f"{out}.variance_effects.txt")
    np.testing.assert_allclose(mean[:, 1], np.sqrt(np.diag(cov)[:3]), rtol=1e-5)
    np.testing.assert_allclose(var[:, 1], np.sqrt(np.diag(cov)[3:]), rtol=1e-5)
