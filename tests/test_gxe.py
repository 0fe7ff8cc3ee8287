"""G×E and G×G in the heteroskedastic model (--interaction, --interaction_snp): against nlme's ML fits
of the same model (tests/data/r_reference/gxe_fits.tsv, made by make_gxe_reference.R; these tests do
not need R), plink2 --glm interaction on a homoskedastic trait, the reference engine, and broken
inputs as real processes."""

import csv
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import write_table

from hlmm.cli import hlmm_chr
from hlmm.columns import interaction_columns, names
from hlmm.results import read_models

REF = Path(__file__).resolve().parent / "data" / "r_reference"
REPO = Path(__file__).resolve().parents[1]


def nlme_fits(name: str) -> dict:
    with open(REF / name) as f:
        rows = list(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"))
    return {(r["variant"], r.get("exposure", "")): r for r in rows}


COLUMNS = ["FID", "IID", "x1", "sex", "E", "B", "E2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Covariate files: the variance's x1 and sex; the mean's x1, sex and the exposures of each model of
    the R fits (E; B; E and E2)."""
    d = tmp_path_factory.mktemp("gxe")
    covar = [line.split() for line in (REF / "gxe_covar.txt").read_text().splitlines()]

    def write(name, cols):
        (d / name).write_text("".join(" ".join(row[COLUMNS.index(c)] for c in cols) + "\n" for row in covar))

    write("var.txt", ["FID", "IID", "x1", "sex"])
    for exposures in (["E"], ["B"], ["E", "E2"]):
        write(f"mean_{'_'.join(exposures)}.txt", ["FID", "IID", "x1", "sex", *exposures])
    write("mean.txt", ["FID", "IID", "x1", "sex", "E"])
    return d


def scan(tmp_path, files, name, *extra, mean="mean.txt"):
    argv = [str(REF / "gxe.bed"), "0", "6", str(REF / "gxe_pheno.txt"), str(tmp_path / name), "--quiet",
            "--min_maf", "0.01", "--mean_covar", str(files / mean), "--var_covar", str(files / "var.txt"),
            *map(str, extra)]
    assert hlmm_chr.main(argv) == 0
    return read_models(f"{tmp_path / name}.models.gz")


@pytest.mark.parametrize("exposure", ["E", "B"])
def test_fit_covariates__rows_equal_nlme_gls_ml(tmp_path, files, exposure):
    """nlme::gls(method = "ML", weights = varComb(varExp(~x1), varExp(~sex), varExp(~E), varExp(~g))) of
    y ~ x1 + sex + E + g + g*E (and with B for E): estimates within 1e-4
    of their SEs, SEs (the expected information, nlme's vcov without its N/(N - p)) within 1e-4
    relative, maximised log-likelihoods within 1e-9 relative."""
    ref = nlme_fits("gxe_fits.tsv")
    res = scan(tmp_path, files, exposure, "--interaction", exposure, "--fit_covariates", mean=f"mean_{exposure}.txt")
    for j, snp in enumerate(res["SNP"]):
        r = ref.get((snp, exposure))
        if r is None:  # the R fits have the covariates of the exposure in use only
            continue
        assert int(r["n"]) == res["n"][j]
        for ours, key in (("add", "mean_g"), ("gxe", "mean_gxe"), ("var", "var_g")):
            se = float(r[f"{key}_se_exp"])
            assert abs(res[ours][j] - float(r[key])) < 1e-4 * se, (snp, ours, res[ours][j], r[key])
            assert res[f"{ours}_se"][j] == pytest.approx(se, rel=1e-4), (snp, ours)
        assert res["likelihood"][j] == pytest.approx(float(r["loglik"]), rel=1e-9)


def test_two_exposures__rows_equal_nlme_and_joint_tests(tmp_path, files):
    ref = nlme_fits("gxe2_fits.tsv")
    res = scan(tmp_path, files, "two", "--interaction", "E,E2", "--fit_covariates", mean="mean_E_E2.txt")
    assert names(interaction_columns(["E", "E2"])) == [c for c in res if c.startswith(("gxe", "joint"))]
    for j, snp in enumerate(res["SNP"]):
        r = ref.get((snp, ""))
        if r is None:
            continue
        for ours, key in (("gxe_E", "mean_gxe1"), ("gxe_E2", "mean_gxe2"), ("add", "mean_g")):
            assert abs(res[ours][j] - float(r[key])) < 1e-4 * float(r[f"{key}_se_exp"]), (snp, ours)
    # the K-df and joint tests are Wald tests with the estimates' covariance: >= each 1-df test's chi^2
    from scipy import stats

    chi2 = stats.chi2.isf(10.0 ** -res["gxe_pval"], 2)
    assert np.all(chi2 >= np.fmax(res["gxe_E_t"] ** 2, res["gxe_E2_t"] ** 2) - 1e-6)


def test_default_mode__class_engine_equals_reference_engine(tmp_path, files):
    fast = scan(tmp_path, files, "fast", "--interaction", "E")
    ref = scan(tmp_path, files, "ref", "--interaction", "E", "--engine", "reference")
    for c in ("n", "add", "add_se", "var", "var_se", "gxe", "gxe_se", "gxe_pval", "joint_pval", "likelihood"):
        np.testing.assert_allclose(fast[c], ref[c], rtol=1e-7, err_msg=c)


def test_homoskedastic_trait__gxe_agrees_with_plink2_least_squares(tmp_path, files):
    """plink2 --glm omit-ref interaction on y_flat (simulated without variance effects): the HLM's g*E
    estimate is least squares' up to the weights of its fitted variance effects, which are noise
    here: within 0.25 of its SE (measured 0.04-0.17 SE, the largest for the variant whose estimated
    variance effect has |t| 1.2), and its SE within 5% of plink2's (measured 0.96-1.03)."""
    with open(REF / "gxe_plink2.tsv") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    head = rows[0]
    plink = {r[head.index("ID")]: (float(r[head.index("BETA")]), float(r[head.index("SE")])) for r in rows[1:]
             if r[head.index("TEST")] == "ADDxE"}
    covar = (REF / "gxe_covar.txt").read_text().splitlines()
    (tmp_path / "mean.txt").write_text("".join(" ".join(line.split()[:5]) + "\n" for line in covar))
    argv = [str(REF / "gxe.bed"), "0", "6", str(REF / "gxe_pheno.txt"), str(tmp_path / "flat"), "--quiet",
            "--min_maf", "0.01", "--mean_covar", str(tmp_path / "mean.txt"), "--phen_index", "2", "--interaction", "E",
            "--fit_covariates"]
    assert hlmm_chr.main(argv) == 0
    res = read_models(f"{tmp_path / 'flat'}.models.gz")
    for j, snp in enumerate(res["SNP"]):
        beta, se = plink[snp]
        assert abs(res["gxe"][j] - beta) < 0.25 * res["gxe_se"][j], (snp, res["gxe"][j], beta)
        assert res["gxe_se"][j] == pytest.approx(se, rel=0.05), (snp, res["gxe_se"][j], se)


def test_interaction_snp__equals_its_genotype_as_an_exposure_column(tmp_path, files):
    """G×G: --interaction_snp g2 gives the rows of --interaction with g2's genotype as a covariate column
    (the individuals without a call at g2 left out)."""
    from hlmm.io import open_bed

    src = open_bed(str(REF / "gxe.bed"))
    g2 = src.read_dosages(np.arange(src.n_samples), 1, 2)[0]
    mean = np.loadtxt(files / "mean.txt", skiprows=1, usecols=(2, 3, 4))
    write_table(tmp_path / "m2.txt", src.samples, np.column_stack([mean, g2]), header=["x1", "sex", "E", "G2"])
    a = scan(tmp_path, files, "gxg", "--interaction_snp", "g2")
    argv = [str(REF / "gxe.bed"), "0", "6", str(REF / "gxe_pheno.txt"), str(tmp_path / "byhand"), "--quiet",
            "--min_maf", "0.01", "--mean_covar", str(tmp_path / "m2.txt"), "--var_covar", str(files / "var.txt"),
            "--interaction", "G2"]
    assert hlmm_chr.main(argv) == 0
    b = read_models(f"{tmp_path / 'byhand'}.models.gz")
    for c in ("add", "gxe", "gxe_se", "var"):
        np.testing.assert_allclose(a[c], b[c], rtol=1e-10, equal_nan=True, err_msg=c)


def _cli(*argv):
    return subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), *map(str, argv)], capture_output=True,
                          text=True)


def test_bad_interaction_inputs__one_line_exit_2_nothing_written(tmp_path, files):
    covar = (REF / "gxe_covar.txt").read_text().splitlines()
    const = [covar[0] + " C"] + [line + " 1.0" for line in covar[1:]]
    (tmp_path / "const.txt").write_text("\n".join(const) + "\n")
    na = [covar[0] + " N"] + [line + " NA" for line in covar[1:]]
    (tmp_path / "na.txt").write_text("\n".join(na) + "\n")
    dup = [covar[0] + " E_copy"] + [line + " " + line.split()[4] for line in covar[1:]]
    (tmp_path / "dup.txt").write_text("\n".join(dup) + "\n")
    base = [REF / "gxe.bed", 0, 6, REF / "gxe_pheno.txt"]
    cases = {
        "absent": (["--mean_covar", files / "mean.txt", "--interaction", "Z"], "not a column"),
        "no_covar": (["--interaction", "E"], "no mean covariate file"),
        "constant": (["--mean_covar", tmp_path / "const.txt", "--interaction", "C"], "constant"),
        "missing": (["--mean_covar", tmp_path / "na.txt", "--interaction", "N"], "missing for every"),
        "collinear": (["--mean_covar", tmp_path / "dup.txt", "--interaction", "E"], "collinear"),
        "no_snp": (["--interaction_snp", "rs999"], "no variants"),
        "score": (["--mean_covar", files / "mean.txt", "--interaction", "E", "--test", "score"], "score"),
    }
    for name, (extra, expected) in cases.items():
        r = _cli(*base, tmp_path / f"o_{name}", *extra)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and "Traceback" not in r.stderr, (name, r.stderr)
        assert err[-1].startswith("hlmm_chr: error:") and expected in err[-1], (name, err[-1])
        assert not list(tmp_path.glob(f"o_{name}*")), name
    # a K the sample cannot support: 30 individuals, 6 exposures
    small = ["FID IID y y_flat"] + (REF / "gxe_pheno.txt").read_text().splitlines()[1:31]
    (tmp_path / "small.txt").write_text("\n".join(small) + "\n")
    r = _cli(REF / "gxe.bed", 0, 6, tmp_path / "small.txt", tmp_path / "o_k", "--mean_covar", REF / "gxe_covar.txt",
             "--interaction", "x1,sex,E,B,E2", "--fit_covariates", "--min_maf", "0.01")
    assert r.returncode == 2 and "can support" in r.stderr.splitlines()[-1], r.stderr


def test_gxe_columns__written_after_the_others_and_in_the_header(tmp_path, files):
    scan(tmp_path, files, "cols", "--interaction", "E")
    header = gzip.decompress((tmp_path / "cols.models.gz").read_bytes()).decode().split("\n", 1)[0].split("\t")
    assert header[-5:] == names(interaction_columns(["E"]))
