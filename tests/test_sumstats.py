"""hlmm_sumstats: GWAS-SSF files as pandas, the GWAS Catalog and LDSC read them."""

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import make_dataset

from hlmm import results
from hlmm.cli import hlmm_chr, hlmm_sumstats
from hlmm.columns import MODELS, names
from hlmm.io import write_bed
from hlmm.sumstats import gwas_ssf_table, ssf_chromosome

REPO = Path(__file__).resolve().parents[1]

# GWAS-SSF v1.0 (gwas-ssf_v1.0.2.tex, Table 1): the mandatory columns, in this order.
MANDATORY = ["chromosome", "base_pair_location", "effect_allele", "other_allele", "beta", "standard_error",
             "effect_allele_frequency", "p_value"]

# LDSC's munge_sumstats.py (github.com/bulik/ldsc): the default column names it recognises, after
# clean_header() (upper case, '-' and '.' to '_'), and the strings it reads as missing.
LDSC_NAMES = {
    "SNP": "SNP", "MARKERNAME": "SNP", "SNPID": "SNP", "RS": "SNP", "RSID": "SNP", "RS_NUMBER": "SNP",
    "RS_NUMBERS": "SNP", "NSTUDY": "NSTUDY", "N_STUDY": "NSTUDY", "NSTUDIES": "NSTUDY", "N_STUDIES": "NSTUDY",
    "P": "P", "PVALUE": "P", "P_VALUE": "P", "PVAL": "P", "P_VAL": "P", "GC_PVALUE": "P", "A1": "A1",
    "ALLELE1": "A1", "ALLELE_1": "A1", "EFFECT_ALLELE": "A1", "REFERENCE_ALLELE": "A1", "INC_ALLELE": "A1",
    "EA": "A1", "A2": "A2", "ALLELE2": "A2", "ALLELE_2": "A2", "OTHER_ALLELE": "A2", "NON_EFFECT_ALLELE": "A2",
    "DEC_ALLELE": "A2", "NEA": "A2", "N": "N", "NCASE": "N_CAS", "CASES_N": "N_CAS", "N_CASE": "N_CAS",
    "N_CASES": "N_CAS", "N_CONTROLS": "N_CON", "N_CAS": "N_CAS", "N_CON": "N_CON", "NCONTROL": "N_CON",
    "CONTROLS_N": "N_CON", "N_CONTROL": "N_CON", "WEIGHT": "N", "ZSCORE": "Z", "Z-SCORE": "Z", "GC_ZSCORE": "Z",
    "Z": "Z", "OR": "OR", "B": "BETA", "BETA": "BETA", "LOG_ODDS": "LOG_ODDS", "EFFECTS": "BETA", "EFFECT": "BETA",
    "SIGNED_SUMSTAT": "SIGNED_SUMSTAT", "INFO": "INFO", "EAF": "FRQ", "FRQ": "FRQ", "MAF": "FRQ", "FRQ_U": "FRQ",
    "F_U": "FRQ",
}
LDSC_NA = [".", "NA"]


def table(chrom, pos, add_pval=None, **extra):
    """A results table with rows at the given chromosomes and positions; effects from a seeded rng."""
    m = len(chrom)
    rng = np.random.default_rng(m)
    add, var = rng.normal(0, 0.05, m), rng.normal(0, 0.05, m)
    add_se, var_se = np.full(m, 0.02), np.full(m, 0.03)
    cols = {"SNP": np.array([f"rs{100 + j}" for j in range(m)]), "n": np.arange(1000, 1000 + m),
            "frequency": np.full(m, 0.3), "likelihood": np.full(m, -100.0), "add": add, "add_se": add_se,
            "add_t": add / add_se, "add_pval": results.neglog10_pval((add / add_se) ** 2, 1), "var": var,
            "var_se": var_se, "var_t": var / var_se, "var_pval": results.neglog10_pval((var / var_se) ** 2, 1),
            "av_pval": np.ones(m), "chr": np.array(chrom), "pos": np.array(pos), "A1": np.array(["A"] * m),
            "A2": np.array(["G"] * m)}
    if add_pval is not None:
        cols["add_pval"] = np.asarray(add_pval, dtype=float)
    cols.update(extra)
    return cols


def write(path, cols):
    extra = [c for c in cols if c not in names(MODELS)]
    results.write_table(str(path), cols, [c for c in names(MODELS) if c in cols] + extra)
    return str(path)


def run(args):
    return hlmm_sumstats.main([str(a) for a in args])


def read(path, **kw):
    return pd.read_csv(path, sep="\t", **kw)


def test_columns__mandatory_first_in_spec_order_then_optional_with_types(tmp_path):
    inp = write(tmp_path / "x.models.gz", table(["1", "1", "2"], [10, 20, 5], A1_frequency=np.array([0.1, 0.2, 0.9])))
    assert run([inp, "-o", tmp_path / "x.tsv.gz", "--effect", "add"]) == 0
    df = read(tmp_path / "x.tsv.gz")
    assert list(df.columns[:8]) == MANDATORY
    assert list(df.columns[8:]) == ["neg_log_10_p_value", "rsid", "n", "snp_id"]
    for col in ("chromosome", "base_pair_location", "n"):
        assert df[col].dtype == np.int64, col
    for col in ("beta", "standard_error", "effect_allele_frequency", "p_value", "neg_log_10_p_value"):
        assert df[col].dtype == np.float64, col
    assert df["effect_allele"].tolist() == ["A"] * 3 and df["other_allele"].tolist() == ["G"] * 3
    np.testing.assert_allclose(df["effect_allele_frequency"], [0.1, 0.2, 0.9])
    with gzip.open(tmp_path / "x.tsv.gz", "rt") as f:
        assert all(line.count("\t") == 11 for line in f)


def test_effects__beta_se_and_p_are_the_chosen_effects_columns(tmp_path):
    cols = table(["1", "1", "1"], [1, 2, 3], test=np.array(["wald", "score", "wald"]))
    disp = {"dispersion": np.array([0.1, -0.2, 0.3]), "dispersion_se": np.array([0.05, 0.05, 0.1]),
            "dispersion_pval": np.array([1.5, 2.5, 3.5])}
    inp = write(tmp_path / "x.dispersion.gz", {**cols, **disp})
    for effect, (est, se, pval) in {"add": ("add", "add_se", "add_pval"), "var": ("var", "var_se", "var_pval"),
                                    "dispersion": ("dispersion", "dispersion_se", "dispersion_pval")}.items():
        out = tmp_path / f"{effect}.tsv"
        assert run([inp, "-o", out, "--effect", effect]) == 0
        df = read(out)
        source = {**cols, **disp}
        np.testing.assert_allclose(df["beta"], source[est], rtol=1e-9)
        np.testing.assert_allclose(df["standard_error"], source[se], rtol=1e-9)
        np.testing.assert_allclose(df["neg_log_10_p_value"], source[pval], rtol=1e-9)
        assert df["test"].tolist() == ["wald", "score", "wald"]


def test_effect_allele__beta_follows_the_counted_allele_when_alleles_are_swapped(tmp_path):
    # SNP 0 of make_dataset raises the trait by 0.3 per copy of the .bim's A1 (T)
    d = make_dataset(tmp_path)
    ids = [(f"F{i}", f"I{i}") for i in range(len(d.y))]
    m = d.genotypes.shape[1]
    pos = list(range(100, 100 + 10 * m, 10))
    write_bed(str(tmp_path / "swapped"), 2 - d.genotypes, ids=ids, A1=["C"] * m, A2=["T"] * m, chrom=["3"] * m,
              pos=pos)
    for bed, prefix in ((d.bed, "orig"), (str(tmp_path / "swapped.bed"), "swap")):
        assert hlmm_chr.main([bed, "0", str(m), d.pheno, str(tmp_path / prefix), "--quiet"]) == 0
        assert run([tmp_path / f"{prefix}.models.gz", "-o", tmp_path / f"{prefix}.tsv", "--effect", "add"]) == 0
    orig, swap = read(tmp_path / "orig.tsv"), read(tmp_path / "swap.tsv")
    first = orig.iloc[0]
    assert (first.effect_allele, first.other_allele) == ("T", "C")
    assert first.beta == pytest.approx(0.3, abs=0.1)
    assert (swap.iloc[0].effect_allele, swap.iloc[0].other_allele) == ("C", "T")
    assert swap.iloc[0].beta == pytest.approx(-0.3, abs=0.1)
    merged = orig.merge(swap, on="snp_id", suffixes=("", "_swap"))
    assert len(merged) == len(orig) >= 8
    assert (merged.effect_allele == merged.other_allele_swap).all()
    np.testing.assert_allclose(merged.beta, -merged.beta_swap, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(merged.neg_log_10_p_value, merged.neg_log_10_p_value_swap, rtol=1e-5)


def test_p_value__is_ten_to_minus_neglog10_and_never_zero(tmp_path):
    neglog10 = np.array([0.0, 0.5, 3.0, 7.30103, 50.0, 299.5, 320.25, 400.0, 12345.678])
    m = len(neglog10)
    inp = write(tmp_path / "x.models.gz", table(["1"] * m, np.arange(1, m + 1), add_pval=neglog10))
    assert run([inp, "-o", tmp_path / "x.tsv.gz", "--effect", "add"]) == 0
    df = read(tmp_path / "x.tsv.gz", dtype={"p_value": str})
    np.testing.assert_allclose(df["neg_log_10_p_value"], neglog10, rtol=1e-9)
    representable = neglog10 < 300
    np.testing.assert_allclose(df["p_value"][representable].astype(float), 10.0 ** -neglog10[representable],
                               rtol=1e-5)
    for text, L in zip(df["p_value"][~representable], neglog10[~representable]):
        mantissa, exponent = text.lower().split("e")
        assert 1 <= float(mantissa) < 10
        assert np.log10(float(mantissa)) + int(exponent) == pytest.approx(-L, abs=1e-5)
    row = df[df["neg_log_10_p_value"] == 400].iloc[0]
    assert row["p_value"] == "1e-400"


def test_missing_estimates__left_out_or_na_with_keep_missing(tmp_path, caplog):
    cols = table(["1", "1", "1"], [1, 2, 3])
    for c in ("add", "add_se", "add_t", "add_pval"):
        cols[c][1] = np.nan
    inp = write(tmp_path / "x.models.gz", cols)
    assert run([inp, "-o", tmp_path / "x.tsv", "--effect", "add"]) == 0
    assert read(tmp_path / "x.tsv")["snp_id"].tolist() == ["rs100", "rs102"]
    assert run([inp, "-o", tmp_path / "all.tsv", "--effect", "add", "--keep_missing"]) == 0
    df = read(tmp_path / "all.tsv", keep_default_na=False, dtype=str)
    assert df["snp_id"].tolist() == ["rs100", "rs101", "rs102"]
    for col in ("beta", "standard_error", "p_value", "neg_log_10_p_value", "effect_allele_frequency"):
        assert df[col][1] == "NA", col
    assert df["effect_allele_frequency"].tolist() == ["NA"] * 3  # no A1_frequency column
    parsed = read(tmp_path / "all.tsv", na_values=LDSC_NA, keep_default_na=False)
    assert parsed["beta"].isna().tolist() == [False, True, False]


def test_missing_a1_frequency__one_warning(tmp_path):
    inp = write(tmp_path / "x.models.gz", table(["1", "2"], [1, 2]))
    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_sumstats.py"), inp, "-o", str(tmp_path / "x.tsv"),
                        "--effect", "var", "--se", "model"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "A1_frequency" in warnings[0]


def test_rows__in_genomic_order_chromosomes_2_10_x(tmp_path):
    chrom = ["X", "10", "2", "X", "2", "10", "chr2"]
    pos = [500, 300, 900, 100, 200, 100, 50]
    inp = write(tmp_path / "x.models.gz", table(chrom, pos))
    assert run([inp, "-o", tmp_path / "x.tsv", "--effect", "add"]) == 0
    df = read(tmp_path / "x.tsv")
    assert df["chromosome"].tolist() == [2, 2, 2, 10, 10, 23, 23]
    assert df["base_pair_location"].tolist() == [50, 200, 900, 100, 300, 100, 500]
    assert df["snp_id"].tolist() == ["rs106", "rs104", "rs102", "rs105", "rs101", "rs103", "rs100"]


def test_chromosomes__ssf_codes_and_unplaced_rows_left_out():
    assert ssf_chromosome(["22", "X", "Y", "MT", "chrX", "XY", "23", "24", "25", "26", "0", "6_ctg"]).tolist() == \
        [22, 23, 24, 25, 23, 23, 23, 24, 23, 25, 0, 0]
    res = table(["1", "0", "1", "Un"], [5, 6, 0, 7])
    out, notes = gwas_ssf_table(res, "add")
    assert out["snp_id"].tolist() == ["rs100"]
    assert any("0, Un" in note for note in notes) and any("position below 1" in note for note in notes)


def test_rsid__only_rs_ids_and_the_original_id_kept(tmp_path):
    cols = table(["1", "1", "1"], [1, 2, 3])
    cols["SNP"] = np.array(["rs123", "1:2_A_G", "rs12x"])
    inp = write(tmp_path / "x.models.gz", cols)
    assert run([inp, "-o", tmp_path / "x.tsv", "--effect", "add"]) == 0
    df = read(tmp_path / "x.tsv", keep_default_na=False)
    assert df["rsid"].tolist() == ["rs123", "NA", "NA"]
    assert df["snp_id"].tolist() == ["rs123", "1:2_A_G", "rs12x"]


def test_metadata__yaml_names_the_file_with_its_md5(tmp_path):
    yaml = pytest.importorskip("yaml")
    inp = write(tmp_path / "x.models.gz", table(["1", "2"], [1, 2]))
    out = tmp_path / "trait.tsv.gz"
    assert run([inp, "-o", out, "--effect", "var", "--genome_assembly", "GRCh38", "--trait", "height: 'adult'"]) == 0
    meta = yaml.safe_load((tmp_path / "trait.tsv.gz-meta.yaml").read_text())
    assert meta["data_file_name"] == "trait.tsv.gz"
    assert meta["data_file_md5sum"] == hashlib.md5(out.read_bytes()).hexdigest()
    assert meta["file_type"] == "GWAS-SSF v1.0"
    assert meta["genome_assembly"] == "GRCh38" and meta["trait_description"] == ["height: 'adult'"]
    assert meta["samples"][0]["sample_size"] == 1001 and meta["samples"][0]["sample_ancestry_category"] == ["NR"]
    assert meta["is_sorted"] is True and meta["is_harmonised"] is False
    assert meta["coordinate_system"] == "1-based"
    assert "variance" in meta["author_notes"]


def test_ldsc_munge_sumstats__finds_one_column_for_each_field(tmp_path):
    inp = write(tmp_path / "x.models.gz", table(["1", "2"], [1, 2]))
    assert run([inp, "-o", tmp_path / "x.tsv.gz", "--effect", "add"]) == 0
    with gzip.open(tmp_path / "x.tsv.gz", "rt") as f:
        header = f.readline().split()
    mapped = [LDSC_NAMES[h.upper().replace("-", "_").replace(".", "_")] for h in header
              if h.upper().replace("-", "_").replace(".", "_") in LDSC_NAMES]
    assert sorted(mapped) == ["A1", "A2", "BETA", "N", "P", "SNP"]
    df = pd.read_csv(tmp_path / "x.tsv.gz", sep=r"\s+", na_values=LDSC_NA, keep_default_na=False)
    assert df["p_value"].dtype == np.float64 and df["beta"].dtype == np.float64


def run_script(*args):
    return subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_sumstats.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_bad_input__one_line_exit_2(tmp_path):
    models = write(tmp_path / "x.models.gz", table(["1", "2"], [1, 2]))
    (tmp_path / "notes.txt").write_text("not a results file\n")
    with gzip.open(tmp_path / "other.tsv.gz", "wt") as f:
        f.write("a\tb\n1\t2\n")
    cases = {
        "missing": ([tmp_path / "none.models.gz", "--effect", "add"], "results file"),
        "not gzip": ([tmp_path / "notes.txt", "--effect", "add"], "results file"),
        "not a results table": ([tmp_path / "other.tsv.gz", "--effect", "add"], "missing columns"),
        "dispersion of a .models.gz": ([models, "--effect", "dispersion"], "no dispersion columns"),
    }
    for what, (args, expected) in cases.items():
        out = tmp_path / "out.tsv.gz"
        r = run_script(args[0], "-o", out, *args[1:])
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (what, r.stderr)
        assert lines[0].startswith("hlmm_sumstats: error:") and expected in lines[0], (what, lines[0])
        assert not out.exists() and not (tmp_path / "out.tsv.gz-meta.yaml").exists()
    r = run_script(models, "-o", tmp_path / "nodir" / "x.tsv.gz", "--effect", "add")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nodir" in r.stderr
    r = run_script(models, "-o", tmp_path / "x.txt", "--effect", "add")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and ".tsv" in r.stderr


def test_docs__every_column_and_option_is_documented():
    import re

    from hlmm.sumstats import COLUMNS

    text = (REPO / "docs" / "hlmm_sumstats.rst").read_text()
    assert all(f"\n{c.name} " in text for c in COLUMNS), [c.name for c in COLUMNS if f"\n{c.name} " not in text]
    documented = set(re.findall(r"``(--\w+)", text.split("\nLDSC\n")[0]))  # LDSC's own options come after
    options = set(re.findall(r"--\w+", hlmm_sumstats.build_parser().format_help()))
    assert {"--effect", "--keep_missing", "--genome_assembly"} <= documented <= options


def test_var_effects__adaptive_by_default_robust_or_model_on_request_and_fallback(tmp_path, capsys):
    """--effect var: the adaptive test's three columns by default (named in the metadata), the
    robust or model-based ones with --se; a file without the adaptive columns falls back to the
    robust ones, and one without those to the model-based ones, each with a warning."""
    cols = table(["1", "1", "1"], [1, 2, 3])
    rob = {"var_se_robust": np.array([0.05, 0.06, 0.07]), "var_pval_robust": np.array([0.5, 1.5, 2.5])}
    ada = {"var_adapt": np.array([0.01, -0.02, 0.03]), "var_se_adapt": np.array([0.04, 0.04, 0.05]),
           "var_pval_adapt": np.array([0.7, 1.7, 2.7])}
    full = write(tmp_path / "full.models.gz", {**cols, **rob, **ada})
    cases = {(): ("var_adapt", "var_se_adapt", "var_pval_adapt"), ("--se", "robust"): ("var", "var_se_robust",
             "var_pval_robust"), ("--se", "model"): ("var", "var_se", "var_pval")}
    source = {**cols, **rob, **ada}
    for extra, (est, se, pval) in cases.items():
        out = tmp_path / f"var{len(extra)}{extra[-1] if extra else ''}.tsv"
        assert run([full, "-o", out, "--effect", "var", *extra]) == 0
        df = read(out)
        np.testing.assert_allclose(df["beta"], source[est], rtol=1e-9)
        np.testing.assert_allclose(df["standard_error"], source[se], rtol=1e-9)
        np.testing.assert_allclose(df["neg_log_10_p_value"], source[pval], rtol=1e-9)
        meta = Path(f"{out}-meta.yaml").read_text()
        assert f"results columns {se} and {pval}" in meta
        assert ("beta is the results column var_adapt" in meta) == (est == "var_adapt")
    for name, extra, want in (("older", rob, "var_se_robust"), ("oldest", {}, "var_se")):
        inp = write(tmp_path / f"{name}.models.gz", {**cols, **extra})
        capsys.readouterr()
        assert run([inp, "-o", tmp_path / f"{name}.tsv", "--effect", "var"]) == 0
        df = read(tmp_path / f"{name}.tsv")
        np.testing.assert_allclose(df["standard_error"], source[want], rtol=1e-9)
        assert "no var_se_adapt column" in capsys.readouterr().err
