"""Per-chromosome null models (hlmm.pipeline's variant groups): regenie's LOCO predictions (--pred,
--pred_offset) and chrX with sex. Each is checked against the same scan done by hand (the LOCO
prediction or sex given as an ordinary covariate to the variants of its chromosome), the broken
inputs against real processes."""

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import write_table

from hlmm.cli import hlmm_chr
from hlmm.io import write_bed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """600 individuals (FIDs and IIDs with '_'), 8 variants on chromosome 1, 8 on 2 and 8 on X (males
    haploid, coded 0/2 as PLINK stores them), sex in the .fam (some unknown), a phenotype whose SD
    is 1.5 in males, and LOCO predictions for it on lines 1-23."""
    d = tmp_path_factory.mktemp("groups")
    rng = np.random.default_rng(17)
    n = 600
    ids = [(f"fam_{i // 3}", f"fam_{i // 3}_sib_{i % 3}") for i in range(n)]
    sex = rng.choice([1, 2], n)
    sex[rng.random(n) < 0.03] = 0
    g = rng.binomial(2, rng.uniform(0.15, 0.5, 24), (n, 24)).astype(float)
    male = sex == 1
    g[male, 16:] = 2 * rng.binomial(1, 0.3, (male.sum(), 8))  # haploid X in males: 0 or 2
    g[rng.random((n, 24)) < 0.01] = np.nan
    write_bed(str(d / "g"), g, ids=ids, chrom=["1"] * 8 + ["2"] * 8 + ["X"] * 8,
              pos=list(range(100, 900, 100)) * 3, A1=["A"] * 24, A2=["G"] * 24)
    fam = (d / "g.fam").read_text().splitlines()
    (d / "g.fam").write_text("".join(" ".join(line.split()[:4] + [str(s), "-9"]) + "\n" for line, s in zip(fam, sex)))
    gi = np.nan_to_num(g, nan=1.0)
    y = 0.2 * gi[:, 0] + 0.2 * gi[:, 9] + rng.standard_normal(n) * np.where(male, 1.5, 1.0) + 0.3 * male
    write_table(d / "pheno.txt", ids, y, header=["y"])
    loco = rng.normal(0, 0.3, (23, n))
    loco[:, 5] = np.nan  # regenie writes NA for an individual without a prediction
    token = [f"{f}_{i}" for f, i in ids]
    order = rng.permutation(n)  # the file's order differs from the .fam's
    (d / "y.loco").write_text("FID_IID " + " ".join(token[i] for i in order) + "\n" + "".join(
        f"{c + 1} " + " ".join("NA" if np.isnan(loco[c, i]) else f"{loco[c, i]:.6g}" for i in order) + " \n"
        for c in range(23)))
    (d / "pred.list").write_text(f"y {d / 'y.loco'}\n")
    return dict(dir=d, ids=ids, sex=sex, y=y, loco=np.array([[float(f"{v:.6g}") for v in row] for row in loco]),
                n=n)


def rows(prefix) -> list:
    return gzip.decompress(Path(f"{prefix}.models.gz").read_bytes()).decode().splitlines()


def run(*argv) -> None:
    assert hlmm_chr.main([*map(str, argv), "--quiet", "--min_maf", "0.01"]) == 0


@pytest.mark.parametrize("extra", [[], ["--fit_covariates"], ["--test", "score"], ["--robust"]])
def test_pred__rows_equal_the_prediction_as_a_covariate_of_its_chromosome(data, tmp_path, extra):
    d = data["dir"]
    run(d / "g.bed", 0, 16, d / "pheno.txt", tmp_path / "pred", "--pred", d / "pred.list", "--no_x_sex", *extra)
    got = rows(tmp_path / "pred")
    keep = ~np.isnan(data["loco"][0])
    for c in (1, 2):
        write_table(tmp_path / f"loco{c}.txt", data["ids"], data["loco"][c - 1], header=["LOCO"])
        (tmp_path / "keep.txt").write_text("".join(f"{f} {i}\n" for (f, i), k in zip(data["ids"], keep) if k))
        run(d / "g.bed", 0, 16, d / "pheno.txt", tmp_path / f"hand{c}", "--chr", c, "--mean_covar",
            tmp_path / f"loco{c}.txt", "--keep", tmp_path / "keep.txt", *extra)
        hand = rows(tmp_path / f"hand{c}")
        assert got[0] == hand[0]
        assert got[1 + 8 * (c - 1): 1 + 8 * c] == hand[1:], c
    # the null-effect file is the first chromosome's
    assert (tmp_path / "pred.null_mean_effects.txt").exists() is False  # no covariate file: none written


def test_pred_offset__rows_equal_the_trait_minus_the_prediction(data, tmp_path):
    d = data["dir"]
    run(d / "g.bed", 0, 8, d / "pheno.txt", tmp_path / "off", "--pred", d / "pred.list", "--pred_offset")
    y = data["y"] - np.nan_to_num(data["loco"][0], nan=0.0)
    y[np.isnan(data["loco"][0])] = np.nan
    write_table(tmp_path / "p1.txt", data["ids"], y, header=["y"])
    run(d / "g.bed", 0, 8, tmp_path / "p1.txt", tmp_path / "hand")
    assert rows(tmp_path / "off") == rows(tmp_path / "hand")


@pytest.mark.parametrize("extra", [[], ["--test", "score"], ["--fit_covariates"]])
def test_chrx__sex_in_mean_and_variance_and_unknown_sex_left_out_as_by_hand(data, tmp_path, extra):
    d = data["dir"]
    run(d / "g.bed", 0, 24, d / "pheno.txt", tmp_path / "x", *extra)
    got = rows(tmp_path / "x")
    known = data["sex"] > 0
    write_table(tmp_path / "sex.txt", data["ids"], (data["sex"] == 1).astype(float), header=["sex"])
    (tmp_path / "known.txt").write_text("".join(f"{f} {i}\n" for (f, i), k in zip(data["ids"], known) if k))
    run(d / "g.bed", 16, 24, d / "pheno.txt", tmp_path / "hand", "--mean_covar", tmp_path / "sex.txt", "--var_covar",
        tmp_path / "sex.txt", "--keep", tmp_path / "known.txt", "--no_x_sex", *extra)
    assert got[17:] == rows(tmp_path / "hand")[1:]
    run(d / "g.bed", 0, 16, d / "pheno.txt", tmp_path / "auto", *extra)
    assert got[1:17] == rows(tmp_path / "auto")[1:]  # autosomes as without chrX
    run(d / "g.bed", 0, 24, d / "pheno.txt", tmp_path / "nosex", "--no_x_sex", *extra)
    run(d / "g.bed", 16, 24, d / "pheno.txt", tmp_path / "plain", "--chr", "X", "--no_x_sex", *extra)
    assert rows(tmp_path / "nosex")[17:] == rows(tmp_path / "plain")[1:]


def test_chrx__sex_already_a_covariate_is_not_added_twice(data, tmp_path):
    d = data["dir"]
    write_table(tmp_path / "sex.txt", data["ids"], (data["sex"] == 1).astype(float), header=["sex"])
    run(d / "g.bed", 16, 24, d / "pheno.txt", tmp_path / "a", "--mean_covar", tmp_path / "sex.txt")
    run(d / "g.bed", 16, 24, d / "pheno.txt", tmp_path / "b")
    assert len(rows(tmp_path / "a")) == 9


def test_sex_file__overrides_the_fam(data, tmp_path):
    d = data["dir"]
    flipped = np.where(data["sex"] == 1, 2, np.where(data["sex"] == 2, 1, 0))
    (tmp_path / "sex.txt").write_text("FID IID sex\n" + "".join(
        f"{f} {i} {'M' if s == 1 else 'F' if s == 2 else 'NA'}\n" for (f, i), s in zip(data["ids"], flipped)))
    run(d / "g.bed", 16, 24, d / "pheno.txt", tmp_path / "a", "--sex", tmp_path / "sex.txt")
    run(d / "g.bed", 16, 24, d / "pheno.txt", tmp_path / "b")
    # the sex indicator's coding flips, not the model: every row's estimates are the same
    assert [r.split("\t")[:13] for r in rows(tmp_path / "a")] == [r.split("\t")[:13] for r in rows(tmp_path / "b")]


def _cli(*argv):
    return subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), *map(str, argv)], capture_output=True,
                          text=True)


def test_broken_prediction_inputs__one_line_exit_2_nothing_written(data, tmp_path):
    d = data["dir"]
    good = (d / "y.loco").read_text().splitlines()
    cases = {
        "missing_file": (f"y {tmp_path / 'none.loco'}\n", None, "does not exist"),
        "no_trait": (f"z {d / 'y.loco'}\n", None, "no prediction for phenotype 'y'"),
        "no_line_2": (None, "\n".join(good[:2] + good[3:]) + "\n", "chromosome 2"),
        "short_line": (None, "\n".join(good[:1] + [good[1].rsplit(" ", 2)[0]] + good[2:]) + "\n", "line 2"),
        "not_numeric": (None, "\n".join(good[:1] + [good[1].replace(" ", " abc ", 1)] + good[2:]) + "\n", "abc"),
        "duplicate_id": (None, "\n".join([good[0] + " " + good[0].split()[1]] + good[1:]) + "\n", "appears"),
        "bad_gzip": (None, b"\x1f\x8b\x08\x00 not really gzip", "gzip"),
    }
    for name, (listing, loco, expected) in cases.items():
        if loco is not None:
            path = tmp_path / f"{name}.loco"
            path.write_bytes(loco if isinstance(loco, bytes) else loco.encode())
            listing = f"y {path}\n"
        (tmp_path / f"{name}.list").write_text(listing)
        r = _cli(d / "g.bed", 0, 16, d / "pheno.txt", tmp_path / f"out_{name}", "--pred", tmp_path / f"{name}.list")
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and "Traceback" not in r.stderr, (name, r.stderr)
        assert err[-1].startswith("hlmm_chr: error:") and expected in err[-1], (name, err[-1])
        assert not list(tmp_path.glob(f"out_{name}*")), name
    r = _cli(d / "g.bed", 0, 16, d / "pheno.txt", tmp_path / "o", "--pred_offset")
    assert r.returncode == 2 and "--pred_offset" in r.stderr.splitlines()[-1]


def test_resume__sees_a_changed_prediction_file(data, tmp_path):
    d = data["dir"]
    loco = tmp_path / "y.loco"
    loco.write_text((d / "y.loco").read_text())
    (tmp_path / "pred.list").write_text(f"y {loco}\n")
    run(d / "g.bed", 0, 16, d / "pheno.txt", tmp_path / "o", "--pred", tmp_path / "pred.list")
    loco.write_text(loco.read_text().replace(" 0.", " 0.1", 1))
    r = _cli(d / "g.bed", 0, 16, d / "pheno.txt", tmp_path / "o", "--pred", tmp_path / "pred.list", "--resume")
    assert r.returncode == 2 and "pred" in r.stderr.splitlines()[-1], r.stderr


def test_regenie_example_bgen__fid_iid_tokens_match_the_phenotype_file(tmp_path):
    """regenie's own example data (tests/data/regenie_example, copied from its repository): its .bgen
    embeds FID_IID tokens and its phenotype file has FID IID. Every individual is matched (1.2.0a1-era
    matching found none), and the rows equal those of the same genotypes in its .bed, with A1 and A2
    swapped (plink2 wrote the .bgen with the other allele first)."""
    from hlmm.results import read_models

    ex = REPO / "tests" / "data" / "regenie_example"
    r = _cli(ex / "example.bgen", 0, 40, ex / "phenotype.txt", tmp_path / "bgen", "--phen_index", "2")
    assert r.returncode == 0, r.stderr
    assert "FID_IID tokens" in r.stderr and "500 in common" in r.stderr
    run(ex / "example.bed", 0, 40, ex / "phenotype.txt", tmp_path / "bed", "--phen_index", "2")
    a, b = read_models(tmp_path / "bgen.models.gz"), read_models(tmp_path / "bed.models.gz")
    assert list(a["SNP"]) == list(b["SNP"]) and (a["n"] == 500).all()
    assert list(a["A1"]) == list(b["A2"]) and list(a["A2"]) == list(b["A1"])
    for col, sign in (("add", -1), ("var", -1), ("add_se", 1), ("var_se", 1), ("likelihood", 1),
                      ("var_pval_robust", 1)):
        np.testing.assert_allclose(a[col], sign * b[col], rtol=1e-7, atol=1e-10, err_msg=col)


def test_pred__log_names_each_chromosomes_adaptive_score(data, tmp_path, capfd):
    """The log's adaptive-score line of each null model names its chromosome (one line per
    phenotype and chromosome, not the same line repeated)."""
    d = data["dir"]
    argv = [d / "g.bed", 0, 16, d / "pheno.txt", tmp_path / "pred", "--pred", d / "pred.list", "--no_x_sex",
            "--min_maf", "0.01"]
    assert hlmm_chr.main([str(a) for a in argv]) == 0
    err = capfd.readouterr().err
    for c in (1, 2):
        assert err.count(f"phenotype 'y', chromosome {c}: adaptive variance score: ") == 1, err
