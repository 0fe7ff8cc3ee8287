"""Tests of hlmm.io.bgen on the committed fixtures in tests/data/formats (no plink2 needed).

``hard.bgen`` was exported by plink2 from ``hard.bed`` with ``ref-first``, so its second allele
is the .bed's A1 and its dosages must equal the .bed's counts of A1, which these tests decode
from the .bed bytes with numpy. The dosages of ``dos*.bgen`` are checked against plink2's own
exports (``dos_bgen.traw``, ``dos_pgen.traw``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hlmm.io import InputError
from hlmm.io.bgen import open_bgen

DATA = Path(__file__).parent / "data" / "formats"
HARD_SAMPLE = str(DATA / "hard.sample")
DOS_SAMPLE = str(DATA / "dos.sample")


def read_bed(prefix: Path) -> tuple[np.ndarray, list[tuple[str, str]], list[list[str]]]:
    """Counts of A1 (int8, (m, n), -1 missing), (FID, IID) from the .fam, .bim rows."""
    fam = [tuple(line.split()[:2]) for line in open(f"{prefix}.fam")]
    bim = [line.split() for line in open(f"{prefix}.bim")]
    n, m = len(fam), len(bim)
    raw = np.fromfile(f"{prefix}.bed", dtype=np.uint8)
    assert raw[:3].tolist() == [0x6C, 0x1B, 0x01]
    packed = raw[3:].reshape(m, (n + 3) // 4)
    two_bit = np.stack([(packed >> (2 * k)) & 3 for k in range(4)], axis=2).reshape(m, -1)[:, :n]
    counts = np.array([2, -1, 1, 0], dtype=np.int8)[two_bit]  # 00 hom A1, 01 missing, 10 het, 11 hom A2
    return counts, fam, bim


def read_traw_alt(path: Path) -> np.ndarray:
    """Dosages of ALT (float64 (m, n), NaN missing) from a plink2 ``--export Av`` file (counts REF)."""
    with open(path) as f:
        f.readline()
        rows = [line.rstrip("\n").split("\t") for line in f]
    return 2.0 - np.array([[np.nan if x == "NA" else float(x) for x in r[6:]] for r in rows])


@pytest.fixture(scope="module")
def bed():
    return read_bed(DATA / "hard")


def _all(src) -> np.ndarray:
    return np.arange(len(src.samples), dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Hard calls exported from the .bed
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["hard.bgen", "hard13.bgen", "hard_noids.bgen"])
def test_second_allele_counts_equal_bed_counts_of_a1(name, bed):
    if name == "hard13.bgen":
        pytest.importorskip("zstandard")
    counts, fam, bim = bed
    src = open_bgen(str(DATA / name), HARD_SAMPLE)
    m, n = counts.shape
    d = src.read_dosages(_all(src), 0, m)
    assert d.dtype == np.float64 and d.shape == (m, n)
    np.testing.assert_array_equal(np.isnan(d), counts < 0)
    np.testing.assert_array_equal(d[counts >= 0], counts[counts >= 0])
    codes = src.read_codes(_all(src), 0, m)
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, counts)
    assert src.samples == fam
    assert src.has_dosages and src.format == "bgen"
    src.close()


def test_variant_table(bed):
    _, _, bim = bed
    src = open_bgen(str(DATA / "hard.bgen"), HARD_SAMPLE)
    v = src.variants
    assert list(v.id) == [b[1] for b in bim]
    assert list(v.chrom) == [b[0] for b in bim]
    assert v.pos.dtype == np.int64 and v.pos.tolist() == [int(b[3]) for b in bim]
    assert list(v.a1) == [b[4] for b in bim]
    assert list(v.a2) == [b[5] for b in bim]
    assert v.n_alleles.tolist() == [2] * len(bim)
    assert src.files() == [str(DATA / "hard.bgen"), HARD_SAMPLE]
    src.close()


def test_plink2_default_order_puts_ref_second(bed):
    """Without ``ref-first`` plink2 writes A1 first: the counted (second) allele is then A2."""
    counts, _, bim = bed
    src = open_bgen(str(DATA / "hard_reflast.bgen"), HARD_SAMPLE)
    assert list(src.variants.a1) == [b[5] for b in bim]
    d = src.read_dosages(_all(src), 0, len(bim))
    np.testing.assert_array_equal(d[counts >= 0], 2 - counts[counts >= 0])
    src.close()


def test_row_subsets_and_blocks(bed):
    counts, _, _ = bed
    m, n = counts.shape
    src = open_bgen(str(DATA / "hard.bgen"), HARD_SAMPLE)
    rng = np.random.default_rng(2)
    half = np.sort(rng.choice(n, n // 2, replace=False)).astype(np.int64)
    for rows, start, stop in [(half, 0, m), (half, 5, 17), (np.array([0]), 0, 3), (np.array([n - 1]), 38, 40),
                              (half[::7], 20, 21), (half, 9, 9), (np.arange(0), 0, 4)]:
        got = src.read_codes(rows, start, stop)
        assert got.shape == (stop - start, len(rows))
        np.testing.assert_array_equal(got, counts[start:stop][:, rows])
        d = src.read_dosages(rows, start, stop)
        np.testing.assert_array_equal(np.nan_to_num(d, nan=-1), counts[start:stop][:, rows])
    with pytest.raises(ValueError):
        src.read_dosages(np.array([5, 5]), 0, 1)
    with pytest.raises(IndexError):
        src.read_dosages(half, 0, m + 1)
    src.close()


# ----------------------------------------------------------------------------------------------
# Sample IDs
# ----------------------------------------------------------------------------------------------
def test_embedded_ids_are_iids_with_fid_0(bed):
    """As plink2 does without --sample: the embedded ID (plink2 writes FID_IID) is the IID, FID is 0."""
    _, fam, _ = bed
    src = open_bgen(str(DATA / "hard.bgen"))
    assert src.samples == [("0", f"{f}_{i}") for f, i in fam]
    assert src.files() == [str(DATA / "hard.bgen")]
    src.close()


def test_qctool_v2_sample_file(tmp_path, bed):
    _, fam, _ = bed
    sample = tmp_path / "v2.sample"
    sample.write_text("ID missing\n0 0\n" + "".join(f"{i} 0\n" for _, i in fam))
    src = open_bgen(str(DATA / "hard.bgen"), str(sample))
    assert src.samples == [("0", i) for _, i in fam]
    src.close()


# ----------------------------------------------------------------------------------------------
# Dosages
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("inflate", ["installed", "zlib"])
def test_8bit_dosages_equal_plink2_reading(monkeypatch, inflate):
    """(With the inflate the module found, ISA-L's if installed, and with zlib's.)"""
    if inflate == "zlib":
        import zlib

        from hlmm.io import bgen

        monkeypatch.setattr(bgen, "_inflate", zlib.decompress)
    src = open_bgen(str(DATA / "dos.bgen"), DOS_SAMPLE)
    truth = read_traw_alt(DATA / "dos_bgen.traw")
    m, n = truth.shape
    d = src.read_dosages(_all(src), 0, m)
    np.testing.assert_array_equal(np.isnan(d), np.isnan(truth))
    assert np.isnan(d).sum() > 50
    # plink2 holds what it reads in units of 1/16384
    np.testing.assert_allclose(d, truth, rtol=0, atol=1 / 16384)
    src.close()


@pytest.mark.parametrize("name,top", [("dos.bgen", 255), ("dos10.bgen", 1023), ("dos16.bgen", 65535)])
def test_dosages_on_the_grid_and_near_the_pgen(name, top):
    """B-bit dosages are k / (2^B - 1) exactly, within half a unit of the .pgen they came from."""
    if name == "dos16.bgen":
        pytest.importorskip("zstandard")
    src = open_bgen(str(DATA / name), DOS_SAMPLE)
    truth = read_traw_alt(DATA / "dos_pgen.traw")
    m, n = truth.shape
    d = src.read_dosages(_all(src), 0, m)
    np.testing.assert_array_equal(np.isnan(d), np.isnan(truth))
    ok = ~np.isnan(d)
    k = np.round(d[ok] * top)
    np.testing.assert_array_equal(d[ok], k / top)
    np.testing.assert_array_equal(d[ok] * top, k)
    np.testing.assert_allclose(d, truth, rtol=0, atol=0.5 / top + 0.5 / 16384)
    assert len(np.unique(k)) > min(top, 500) // 2
    src.close()


@pytest.mark.parametrize("bits", [8, 16, 32])
@pytest.mark.parametrize("phased", [False, True])
def test_pair_dosages_kernel_equals_numpy(bits, phased):
    """The compiled pass from stored pairs to dosages gives numpy's float64 formula to the last bit:
    all samples and a subset, samples missing (ploidy byte 0x80 set), and pairs above ``top`` (a
    corrupt block reads as numpy read it: below 0)."""
    from hlmm.io._kernels import bgen_pair_dosages

    rng = np.random.default_rng(bits + phased)
    n, top = 1001, (1 << bits) - 1
    v = (rng.random((n, 2)) * 0.5 * top).astype(f"<u{bits // 8}")
    v[::97] = top  # pairs summing above top (unphased)
    ploidy = np.full(n, 2, np.uint8)
    gone = rng.choice(n, 25, replace=False)
    ploidy[gone] |= 0x80
    ploidy[gone[:5]] = 0x80  # (missing, of ploidy 0)
    multiplier = -1.0 if phased else -2.0
    expect = ((v[:, 0].astype(np.float64) * multiplier - v[:, 1]) + 2.0 * top) / float(top)
    expect[ploidy >= 0x80] = np.nan
    assert ((expect < 0).any() or phased) and np.isnan(expect).sum() == 25
    out = np.empty(n)
    bgen_pair_dosages(v, np.zeros(0, np.int64), ploidy, multiplier, top, out)
    np.testing.assert_array_equal(out, expect)
    rows = np.sort(rng.choice(n, 300, replace=False)).astype(np.int64)
    sub = np.empty(len(rows))
    bgen_pair_dosages(v, rows, ploidy, multiplier, top, sub)
    np.testing.assert_array_equal(sub, expect[rows])
    one = np.full(n, 2, np.uint8)
    one[rows[7]] = 0x80  # one sample missing, of ploidy 0
    bgen_pair_dosages(v, rows, one, multiplier, top, sub)
    assert np.isnan(sub).sum() == 1 and np.isnan(sub[7])


def test_dosage_samples_and_codes():
    src = open_bgen(str(DATA / "dos.bgen"), DOS_SAMPLE)
    with open(DATA / "dos_pgen.traw") as f:
        ids = f.readline().rstrip("\n").split("\t")[6:]
    assert src.samples == [tuple(i.split("_")) for i in ids]
    rows = np.arange(1, len(src.samples), 3)
    d = src.read_dosages(rows, 4, 19)
    np.testing.assert_array_equal(src.read_codes(rows, 4, 19), np.where(np.isnan(d), -1, np.floor(d + 0.5)))
    src.close()


def test_multiallelic_variant_reads_as_missing(bed):
    counts, _, _ = bed
    src = open_bgen(str(DATA / "hard_multi.bgen"), HARD_SAMPLE)
    v = src.variants
    assert len(v) == counts.shape[0] + 1
    assert (v.id[1], v.n_alleles[1], v.a1[1], v.a2[1]) == ("multi3", 3, "C", "A,G")
    d = src.read_dosages(_all(src), 0, len(v))
    assert np.isnan(d[1]).all()
    assert (src.read_codes(_all(src), 0, 3)[1] == -1).all()
    others = np.delete(d, 1, axis=0)
    np.testing.assert_array_equal(np.nan_to_num(others, nan=-1), counts)
    src.close()


# ----------------------------------------------------------------------------------------------
# Bad files: one-line InputError naming the file
# ----------------------------------------------------------------------------------------------
def _raises(path: str, sample: str | None, *words: str) -> str:
    with pytest.raises(InputError) as err:
        open_bgen(path, sample)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_no_sample_ids_and_no_sample_file():
    path = str(DATA / "hard_noids.bgen")
    _raises(path, None, path, "no sample IDs", ".sample")


def test_truncated_bgen(tmp_path):
    data = (DATA / "hard.bgen").read_bytes()
    bad = tmp_path / "cut.bgen"
    for keep in (len(data) - 1, len(data) // 2, 30, 10):
        bad.write_bytes(data[:keep])
        _raises(str(bad), HARD_SAMPLE, str(bad))
    bad.write_bytes(data[: len(data) // 2])
    _raises(str(bad), HARD_SAMPLE, "truncated")


def test_not_a_bgen(tmp_path):
    bad = tmp_path / "x.bgen"
    bad.write_bytes(b"\x00" * 64)
    _raises(str(bad), None, str(bad))
    _raises(str(tmp_path / "missing.bgen"), None, "missing.bgen", "not found")


def test_sample_file_count_differs(tmp_path):
    lines = Path(HARD_SAMPLE).read_text().splitlines(keepends=True)
    short = tmp_path / "short.sample"
    short.write_text("".join(lines[:-1]))
    path = str(DATA / "hard.bgen")
    _raises(path, str(short), f"genotype file {path}: 300 samples but {short} lists 299")


def test_sample_file_bad_header(tmp_path):
    lines = Path(HARD_SAMPLE).read_text().splitlines(keepends=True)
    for header in (["FID IID missing sex\n", lines[1]], [lines[0], "1 1 0 D\n"], []):
        bad = tmp_path / "bad.sample"
        bad.write_text("".join(header + lines[2:]) if header else "")
        _raises(str(DATA / "hard.bgen"), str(bad), str(bad), "header")
    _raises(str(DATA / "hard.bgen"), str(tmp_path / "none.sample"), "none.sample", "not found")


def test_phased_and_haploid_chrx_equal_plink2():
    """Phased probabilities (chromosome 1) and haploid males on chrX, counted 0/2 as plink2 does."""
    src = open_bgen(str(DATA / "phased.bgen"), str(DATA / "phased.sample"))
    truth = read_traw_alt(DATA / "phased.traw")
    d = src.read_dosages(_all(src), 0, len(src.variants))
    np.testing.assert_array_equal(np.isnan(d), np.isnan(truth))
    np.testing.assert_array_equal(d[~np.isnan(d)], truth[~np.isnan(truth)])
    males = np.arange(1, len(src.samples), 2)
    x = d[src.variants.chrom == "X"][:, males]
    assert np.isin(x[~np.isnan(x)], [0.0, 2.0]).all() and (x == 2).any()
    sub = males[::2]
    np.testing.assert_array_equal(src.read_dosages(sub, 2, 6), d[2:6][:, sub])
    src.close()
