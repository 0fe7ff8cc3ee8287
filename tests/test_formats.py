"""Biobank inputs through hlmm_chr (issue 12): .bed, .pgen and .bgen of the same genotypes,
dosages, sample and variant selections, several phenotypes in one pass, bad files.

The genotype files are the committed fixtures of tests/data/formats, made by plink2 from one
.bed (make_fixtures.sh records the commands); these tests do not need plink2.
"""

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import write_table

from hlmm.cli import hlmm_chr
from hlmm.io import open_genotypes, write_bed
from hlmm.results import read_models

DATA = Path(__file__).parent / "data" / "formats"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pheno(tmp_path_factory):
    """Three phenotypes for the 300 samples of hard.*, the third with missing values."""
    d = tmp_path_factory.mktemp("formats")
    src = open_genotypes(str(DATA / "hard.bed"))
    rng = np.random.default_rng(5)
    g = src.read_dosages(np.arange(src.n_samples), 0, src.n_variants).T
    gi = np.nan_to_num(g, nan=1.0)
    Y = np.column_stack([0.5 * gi[:, 0] + rng.standard_normal(300) * np.exp(0.3 * gi[:, 1]),
                         rng.standard_normal(300), 0.4 * gi[:, 2] + rng.standard_normal(300)])
    Y[rng.random(300) < 0.1, 2] = np.nan
    write_table(d / "pheno.txt", src.samples, Y, header=["bmi", "ldl", "crp"])
    write_table(d / "covar.txt", src.samples, rng.standard_normal((300, 1)), header=["age"])
    dos = open_genotypes(str(DATA / "dos.pgen"))
    write_table(d / "dpheno.txt", dos.samples, rng.standard_normal(dos.n_samples))
    return d


def run(geno, pheno_path, out, *extra):
    assert hlmm_chr.main([str(geno), "0", "40", str(pheno_path), str(out), "--quiet", "--min_maf", "0.01",
                          *map(str, extra)]) == 0
    return read_models(f"{out}.models.gz")


def rows(path) -> bytes:
    return gzip.decompress(Path(path).read_bytes())


@pytest.mark.parametrize("mode", [[], ["--mean_covar", "COVAR", "--fit_covariates"], ["--test", "score"],
                                  ["--random_gts", "RANDOM", "--test", "score"]])
def test_bed_pgen_bgen__identical_rows(pheno, tmp_path, mode):
    mode = [str(pheno / "covar.txt") if m == "COVAR" else str(DATA / "hard.bed") if m == "RANDOM" else m for m in mode]
    outs = {}
    for geno in ("hard.bed", "hard.pgen", "hard.bgen"):
        run(DATA / geno, pheno / "pheno.txt", tmp_path / geno, *mode,
            *(["--sample", DATA / "hard.sample"] if geno.endswith("bgen") else []))
        outs[geno] = rows(tmp_path / f"{geno}.models.gz")
    assert outs["hard.bed"] == outs["hard.pgen"] == outs["hard.bgen"]


def test_bgen_hard_calls__mixed_model_rows_identical_to_bed(pheno, tmp_path):
    # a .bgen holds probabilities; whole-number dosages take the genotype-class engine like hard calls
    random = ["--random_gts", DATA / "hard.bed"]
    run(DATA / "hard.bed", pheno / "pheno.txt", tmp_path / "b", *random, "--block_size", 40)
    run(DATA / "hard.bgen", pheno / "pheno.txt", tmp_path / "g", *random, "--block_size", 40)
    assert rows(tmp_path / "b.models.gz") == rows(tmp_path / "g.models.gz")


def test_bgen_with_ref_last__counts_the_other_allele_and_says_so(pheno, tmp_path):
    a = run(DATA / "hard.bgen", pheno / "pheno.txt", tmp_path / "first")
    b = run(DATA / "hard_reflast.bgen", pheno / "pheno.txt", tmp_path / "last", "--sample", DATA / "hard.sample")
    np.testing.assert_array_equal(a["A1"], b["A2"])
    np.testing.assert_array_equal(a["A2"], b["A1"])
    ok = np.isfinite(a["add"])
    np.testing.assert_allclose(b["add"][ok], -a["add"][ok], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(b["var"][ok], -a["var"][ok], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b["A1_frequency"], 1 - a["A1_frequency"], rtol=1e-9)
    np.testing.assert_allclose(b["frequency"], a["frequency"], rtol=1e-12)


@pytest.mark.parametrize("geno", ["dos.pgen", "dos.bgen"])
@pytest.mark.parametrize("mode", [[], ["--random_gts", "RANDOM"]])
def test_dosages__rows_equal_per_snp_optimize_model(pheno, tmp_path, geno, mode):
    mode = [str(DATA / "dos.pgen") if m == "RANDOM" else m for m in mode]
    fast = run(DATA / geno, pheno / "dpheno.txt", tmp_path / "f", "--max_missing", 50, *mode)
    ref = run(DATA / geno, pheno / "dpheno.txt", tmp_path / "r", "--max_missing", 50, "--engine", "reference", *mode)
    ok = np.isfinite(ref["add"])
    assert ok.sum() >= 15 and np.array_equal(ok, np.isfinite(fast["add"]))
    for col in ("likelihood", "add", "add_se", "var", "var_se", "A1_frequency"):
        np.testing.assert_allclose(fast[col][ok], ref[col][ok], rtol=2e-6, atol=1e-9, err_msg=col)
    # the dosages are continuous: A1_frequency is their mean over 2, not a count of hard calls
    src = open_genotypes(str(DATA / geno))
    d = src.read_dosages(np.arange(src.n_samples), 0, src.n_variants)
    np.testing.assert_allclose(fast["A1_frequency"], np.nanmean(d, axis=1) / 2, rtol=1e-9)


def test_hard_calls_option__rounds_dosages(pheno, tmp_path):
    out = run(DATA / "dos.pgen", pheno / "dpheno.txt", tmp_path / "h", "--max_missing", 50, "--hard_calls")
    src = open_genotypes(str(DATA / "dos.pgen"))
    codes = src.read_codes(np.arange(src.n_samples), 0, src.n_variants)
    write_bed(str(tmp_path / "rounded"), np.where(codes < 0, np.nan, codes).T, ids=src.samples)
    ref = run(tmp_path / "rounded.bed", pheno / "dpheno.txt", tmp_path / "rb", "--max_missing", 50)
    for col in ("add", "add_se", "var", "var_se", "frequency"):
        np.testing.assert_array_equal(out[col], ref[col])


def test_keep_and_extract__rows_of_a_run_on_the_subset_file(pheno, tmp_path):
    src = open_genotypes(str(DATA / "hard.bed"))
    rng = np.random.default_rng(8)
    keep = np.sort(rng.choice(300, 200, replace=False))
    variants = np.sort(rng.choice(40, 15, replace=False))
    (tmp_path / "keep.txt").write_text("#FID IID\n" + "".join(f"{a} {b}\n" for a, b in (src.samples[i] for i in keep)))
    (tmp_path / "extract.txt").write_text("".join(f"{src.variants.id[j]}\n" for j in variants))
    run(DATA / "hard.bed", pheno / "pheno.txt", tmp_path / "sel", "--keep", tmp_path / "keep.txt",
              "--extract", tmp_path / "extract.txt")
    g = src.read_dosages(keep, 0, 40)[variants].T
    v = src.variants
    write_bed(str(tmp_path / "subset"), g, ids=[src.samples[i] for i in keep], snp=list(v.id[variants]),
              chrom=list(v.chrom[variants]), pos=list(v.pos[variants]), A1=list(v.a1[variants]),
              A2=list(v.a2[variants]))
    run(tmp_path / "subset.bed", pheno / "pheno.txt", tmp_path / "sub")
    assert rows(tmp_path / "sel.models.gz") == rows(tmp_path / "sub.models.gz")


def test_selections__remove_chr_and_bp_range(pheno, tmp_path, capsys):
    src = open_genotypes(str(DATA / "hard.bed"))
    v = src.variants
    chrom = v.chrom[-1]
    lo, hi = int(np.sort(v.pos[v.chrom == chrom])[1]), int(np.sort(v.pos[v.chrom == chrom])[-2])
    (tmp_path / "remove.txt").write_text("".join(f"{a} {b}\n" for a, b in src.samples[:30]))
    assert hlmm_chr.main([str(DATA / "hard.bed"), "0", "40", str(pheno / "pheno.txt"), str(tmp_path / "o"),
                          "--remove", str(tmp_path / "remove.txt"), "--chr", chrom, "--from_bp", str(lo),
                          "--to_bp", str(hi)]) == 0
    res = read_models(str(tmp_path / "o.models.gz"))
    expected = (v.chrom == chrom) & (v.pos >= lo) & (v.pos <= hi)
    assert list(res["SNP"]) == list(v.id[expected])
    assert (res["n"] <= 270).all()
    err = capsys.readouterr().err
    assert "--remove" in err and "removed 30" in err and f"{expected.sum()} of variants 0..39 kept by" in err


def test_several_phenotypes__equal_separate_runs(pheno, tmp_path):
    assert hlmm_chr.main([str(DATA / "hard.bed"), "0", "40", str(pheno / "pheno.txt"), str(tmp_path / "all"),
                          "--all_phenotypes", "--quiet"]) == 0
    assert hlmm_chr.main([str(DATA / "hard.bed"), "0", "40", str(pheno / "pheno.txt"), str(tmp_path / "two"),
                          "--phen_index", "1,3", "--quiet"]) == 0
    for k, name in enumerate(["bmi", "ldl", "crp"], start=1):
        assert hlmm_chr.main([str(DATA / "hard.bed"), "0", "40", str(pheno / "pheno.txt"), str(tmp_path / name),
                              "--phen_index", str(k), "--quiet"]) == 0
        assert rows(tmp_path / f"all.{name}.models.gz") == rows(tmp_path / f"{name}.models.gz")
    assert rows(tmp_path / "two.crp.models.gz") == rows(tmp_path / "crp.models.gz")
    assert not (tmp_path / "two.ldl.models.gz").exists()
    # the phenotype with missing values uses fewer individuals, the others all of them
    assert read_models(str(tmp_path / "crp.models.gz"))["n"].max() < read_models(str(tmp_path / "bmi.models.gz"))[
        "n"].max()


def _copy(names, d):
    for name in names:
        shutil.copy(DATA / name, d / name)


@pytest.mark.parametrize("case", ["missing psam", "sample count", "truncated bgen", "empty selection"])
def test_bad_files__one_line_errors(pheno, tmp_path, case):
    extra = []
    if case == "missing psam":
        _copy(["hard.pgen", "hard.pvar"], tmp_path)
        geno, expected = tmp_path / "hard.pgen", "hard.psam not found"
    elif case == "sample count":
        _copy(["hard.bgen"], tmp_path)
        lines = (DATA / "hard.sample").read_text().splitlines()
        (tmp_path / "hard.sample").write_text("\n".join(lines[:-1]) + "\n")
        geno, expected = tmp_path / "hard.bgen", "299"
        extra = ["--sample", tmp_path / "hard.sample"]
    elif case == "truncated bgen":
        data = (DATA / "hard.bgen").read_bytes()
        (tmp_path / "hard.bgen").write_bytes(data[: len(data) - 500])
        geno, expected = tmp_path / "hard.bgen", "truncated"
    else:
        (tmp_path / "none.txt").write_text("rs_not_there\n")
        geno, expected = DATA / "hard.bed", "no variants"
        extra = ["--extract", tmp_path / "none.txt"]
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(geno), "0", "40",
                        str(pheno / "pheno.txt"), str(out / "o"), *map(str, extra)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("hlmm_chr: error: ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert expected in lines[0], lines[0]
    assert list(out.iterdir()) == []


def test_bgen_with_embedded_fid_iid__matched_by_itself_and_with_id_delim(pheno, tmp_path, capsys):
    """plink2's id-paste=fid,iid .bgen (no .sample) embeds FID_IID: matched with the phenotype file's
    FID and IID as the .sample-described .bgen is, with a log line; --id_delim _ says it explicitly."""
    ref = run(DATA / "hard.bgen", pheno / "pheno.txt", tmp_path / "ref")
    hlmm_chr.main([str(DATA / "hard_fidiid.bgen"), "0", "40", str(pheno / "pheno.txt"), str(tmp_path / "auto"),
                   "--min_maf", "0.01"])
    assert "FID_IID tokens" in capsys.readouterr().err
    explicit = run(DATA / "hard_fidiid.bgen", pheno / "pheno.txt", tmp_path / "explicit", "--id_delim", "_")
    for out in (read_models(f"{tmp_path / 'auto'}.models.gz"), explicit):
        for c in ("n", "add", "var", "var_se"):
            np.testing.assert_array_equal(out[c], ref[c])
    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(DATA / "hard_fidiid.bgen"), "0", "40",
                        str(pheno / "pheno.txt"), str(tmp_path / "bad"), "--id_delim", "-"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "no individuals in common" in r.stderr.splitlines()[-1]
