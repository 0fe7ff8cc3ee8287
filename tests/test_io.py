"""hlmm.io: the .bed source against pysnptools, text tables, ID lists, matching by role."""

import numpy as np
import pytest

from hlmm.io import (
    ArraySource,
    IdRole,
    InputError,
    match_samples,
    open_bed,
    open_genotypes,
    read_sample_list,
    read_table,
    read_variant_list,
    write_bed,
)
from hlmm.io._base import contiguous_runs


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    rng = np.random.default_rng(0)
    n, m = 203, 17  # n not a multiple of 4
    g = rng.binomial(2, 0.4, (n, m)).astype(float)
    g[rng.random((n, m)) < 0.05] = np.nan
    prefix = tmp_path_factory.mktemp("io") / "k"
    write_bed(str(prefix), g, A1=[f"A{j}" for j in range(m)], A2=[f"B{j}" for j in range(m)])
    return str(prefix) + ".bed", g


def test_bed_source__counts_of_a1_equal_pysnptools_count_a1(bed):
    from pysnptools.snpreader import Bed

    path, g = bed
    src = open_bed(path)
    rows = np.sort(np.random.default_rng(1).permutation(src.n_samples)[:150])
    ours = src.read_dosages(rows, 0, src.n_variants).T
    theirs = Bed(path, count_A1=True)[rows, :].read().val
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, g[rows])
    codes = src.read_codes(rows, 3, 9)
    np.testing.assert_array_equal(np.where(codes < 0, np.nan, codes).T, g[rows][:, 3:9])
    assert src.variants.a1[2] == "A2" and src.variants.a2[2] == "B2"


def test_bed_source__blocks_of_scattered_variants_and_pickling(bed):
    import pickle

    path, g = bed
    src = pickle.loads(pickle.dumps(open_genotypes(path)))
    rows = np.arange(0, 203, 2)
    idx = np.array([0, 1, 2, 7, 8, 15])
    assert contiguous_runs(idx) == [(0, 3), (7, 9), (15, 16)]
    blk = src.read_block(rows, idx)
    assert blk.packed is not None
    np.testing.assert_array_equal(blk.values(), g[rows][:, idx])
    assert src.files() == [path, path[:-4] + ".bim", path[:-4] + ".fam"]


def test_array_source__dosages_or_hard_calls():
    hard = ArraySource(np.array([[0.0, 1.0], [2.0, np.nan]]))
    assert not hard.has_dosages and hard.read_codes(np.array([0, 1]), 0, 2).tolist() == [[0, 2], [1, -1]]
    dos = ArraySource(np.array([[0.5, 1.0], [2.0, np.nan]]))
    assert dos.has_dosages and dos.dosage_denominator == 0
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        ArraySource(np.array([[3.0]]))


def test_open_genotypes__unknown_extension_and_sample_for_non_bgen(bed, tmp_path):
    with pytest.raises(InputError, match="unknown format"):
        open_genotypes(str(tmp_path / "x.vcf"))
    with pytest.raises(InputError, match="only a .bgen"):
        open_genotypes(bed[0], sample="x.sample")


def test_read_table__header_missing_values_bom_and_errors(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("\ufeffFID IID a b\nf1 i1 1.5 NA\nf2 i2 -3 4e-13\n".encode())
    t = read_table(str(p), what="phenotype file")
    assert t.names == ["a", "b"] and t.ids == [("f1", "i1"), ("f2", "i2")]
    np.testing.assert_array_equal(t.values, [[1.5, np.nan], [-3, 4e-13]])
    cases = {
        "f1,i1,1.5\nf2,i2,2\n": "comma-separated",
        "f1 i1 1\nf1 i1 2\n": "appears more than once",
        "f1 i1 1\nf2 i2\n": "line 2 has 2 columns",
        "f1 i1 x1\nf2 i2 y\n": "non-numeric value 'y'",
        "f1 i1 inf\n": "not finite",
        "": "empty",
    }
    for text, expected in cases.items():
        p.write_text(text)
        with pytest.raises(InputError, match=expected):
            read_table(str(p), what="phenotype file")
    p.write_bytes(b"f1 i1 1\nf2 i2 \xe9\n")
    with pytest.raises(InputError, match="line 2: byte 0xe9"):
        read_table(str(p))


def test_id_and_variant_lists(tmp_path):
    (tmp_path / "k.txt").write_text("#FID IID\nf1 i1\nf2 i2\n")
    assert read_sample_list(str(tmp_path / "k.txt"), "--keep file") == {("f1", "i1"), ("f2", "i2")}
    (tmp_path / "bad.txt").write_text("f1\n")
    with pytest.raises(InputError, match="expected FID and IID"):
        read_sample_list(str(tmp_path / "bad.txt"), "--keep file")
    (tmp_path / "v.txt").write_text("rs1\nrs2 extra\n\n")
    assert read_variant_list(str(tmp_path / "v.txt"), "--extract file") == {"rs1", "rs2"}


def test_match_samples__by_role_in_reference_order_with_keep_and_remove():
    ref = [(f"f{i}", f"i{i}") for i in range(6)]
    pheno = IdRole([ref[i] for i in (5, 4, 3, 2, 1)], "phenotype file p", np.array([True, True, False, True, True]))
    covar = IdRole([ref[i] for i in (0, 1, 2, 4, 5)], "mean covariate file c")
    m = match_samples(ref, "genotype file g", {"phenotype": pheno, "mean_covar": covar}, remove={ref[1]})
    assert list(m.rows) == [2, 4, 5]  # 0 not in the phenotype, 1 removed, 3 missing its phenotype
    assert [pheno.ids[i] for i in m.index["phenotype"]] == [ref[i] for i in (2, 4, 5)]
    assert [covar.ids[i] for i in m.index["mean_covar"]] == [ref[i] for i in (2, 4, 5)]
    assert any("dropped 1 individuals with missing values in phenotype file p" in line for line in m.log)
    with pytest.raises(InputError, match="--keep: none of its 1 individuals"):
        match_samples(ref, "genotype file g", {"phenotype": pheno}, keep={("x", "y")})
    with pytest.raises(InputError, match="no individuals in common"):
        match_samples(ref, "genotype file g", {"phenotype": IdRole([("a", "b")], "phenotype file p")})


def test_match_samples__joined_fid_iid_tokens_are_matched_whole_never_split():
    """The reference's IIDs as FID_IID tokens (a .bgen's embedded IDs), IIDs containing '_' too."""
    from hlmm.io import id_scheme

    pairs = [("fam_1", "fam_1_sib_1"), ("fam_1", "fam_1_sib_2"), ("f2", "i2")]
    ref = [("0", f"{f}_{i}") for f, i in reversed(pairs)]
    pheno = IdRole(pairs, "phenotype file p")
    assert id_scheme(ref, pairs) == "_"
    m = match_samples(ref, "genotype file g", {"phenotype": pheno}, join="_", remove={("f2", "i2")})
    assert m.rows.tolist() == [1, 2] and m.index["phenotype"].tolist() == [1, 0]
    # two pairs joining to the same token: ambiguous, so not matched that way by itself
    assert id_scheme([("0", "a_b_c")], [("a_b", "c"), ("a", "b_c")]) is None


def test_match_samples__no_match_error_says_what_would_match():
    ref = [("0", "f1_i1"), ("0", "f2_i2")]
    with pytest.raises(InputError, match="give --id_delim _"):
        match_samples(ref, "genotype file g", {"phenotype": IdRole([("f1", "i1")], "phenotype file p")})
    with pytest.raises(InputError, match="2 IIDs match but their FIDs differ"):
        match_samples([("a", "i1"), ("b", "i2")], "genotype file g",
                      {"phenotype": IdRole([("x", "i1"), ("y", "i2")], "phenotype file p")})


def test_read_random_effects__int8_codes_equal_the_float_read(tmp_path):
    """Random effects of a hard-call file are read as int8 codes (-1 missing): the float read's values
    exactly, NaN as -1, for any row subset and chunk boundaries."""
    from hlmm.io import BedWriter, open_bed, read_random_effects

    rng = np.random.default_rng(3)
    g = rng.binomial(2, 0.3, (57, 70)).astype(float)
    g[rng.random(g.shape) < 0.05] = np.nan
    with BedWriter(str(tmp_path / "r"), [(f"f{i}", f"i{i}") for i in range(57)]) as w:
        w.write(g)
    src = open_bed(str(tmp_path / "r.bed"))
    for rows in (np.arange(57), np.arange(3, 57, 4)):
        values = read_random_effects(src, rows, chunk=16)
        codes = read_random_effects(src, rows, chunk=16, codes=True)
        assert codes.dtype == np.int8
        np.testing.assert_array_equal(codes, np.where(np.isnan(values), -1, values))
        np.testing.assert_array_equal(values, g[rows])
