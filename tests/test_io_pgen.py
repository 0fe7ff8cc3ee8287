"""Tests of hlmm.io.pgen on the committed fixtures in tests/data/formats (no plink2 needed).

The .pgen of ``hard`` was made from ``hard.bed`` by plink2; its counts of ALT must equal the
.bed's counts of A1, which these tests decode from the .bed bytes with numpy. The dosages of
``dos.pgen`` are checked against ``dos_pgen.traw``, plink2's own export of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hlmm.io import InputError
from hlmm.io.pgen import open_pgen

DATA = Path(__file__).parent / "data" / "formats"


# ----------------------------------------------------------------------------------------------
# Independent readings of the fixtures
# ----------------------------------------------------------------------------------------------
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


def read_traw_alt(path: Path, ref: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Dosages of ALT (float64 (m, n), NaN missing) from a plink2 ``--export Av`` file."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in f]
    counted = np.array([r[4] for r in rows])
    values = np.array([[np.nan if x == "NA" else float(x) for x in r[6:]] for r in rows])
    assert np.array_equal(counted, ref)  # --export Av counts REF
    return 2.0 - values, header[6:]


@pytest.fixture(scope="module")
def bed():
    return read_bed(DATA / "hard")


@pytest.fixture(scope="module")
def hard():
    src = open_pgen(str(DATA / "hard.pgen"))
    yield src
    src.close()


@pytest.fixture(scope="module")
def dos():
    src = open_pgen(str(DATA / "dos.pgen"))
    yield src
    src.close()


# ----------------------------------------------------------------------------------------------
# Hard calls
# ----------------------------------------------------------------------------------------------
def test_hard_calls_equal_bed_counts_of_a1(hard, bed):
    counts, _, _ = bed
    n, m = counts.shape[1], counts.shape[0]
    rows = np.arange(n, dtype=np.int64)
    codes = hard.read_codes(rows, 0, m)
    assert codes.dtype == np.int8 and codes.shape == (m, n)
    np.testing.assert_array_equal(codes, counts)
    d = hard.read_dosages(rows, 0, m)
    assert d.dtype == np.float64 and d.shape == (m, n)
    np.testing.assert_array_equal(np.isnan(d), counts < 0)
    np.testing.assert_array_equal(d[counts >= 0], counts[counts >= 0])
    assert (counts < 0).sum() > 100  # the fixture does exercise missing calls
    assert not hard.has_dosages


def test_hard_metadata(hard, bed):
    _, fam, bim = bed
    assert hard.format == "pgen"
    assert hard.path == str(DATA / "hard.pgen")
    assert hard.samples == fam
    assert any(f != i for f, i in fam) and any(f == i for f, i in fam)
    v = hard.variants
    assert len(v) == len(bim)
    assert list(v.id) == [b[1] for b in bim]
    assert list(v.chrom) == [b[0] for b in bim]
    assert v.pos.dtype == np.int64 and v.pos.tolist() == [int(b[3]) for b in bim]
    assert list(v.a1) == [b[4] for b in bim]  # A1 became ALT, the counted allele
    assert list(v.a2) == [b[5] for b in bim]
    assert v.n_alleles.tolist() == [2] * len(bim)
    assert hard.files() == [str(DATA / f"hard.{e}") for e in ("pgen", "pvar", "psam")]


def test_row_subsets_and_blocks(hard, bed):
    counts, _, _ = bed
    m, n = counts.shape
    rng = np.random.default_rng(1)
    half = np.sort(rng.choice(n, n // 2, replace=False)).astype(np.int64)
    cases = [(half, 0, m), (half, 7, 23), (np.array([0]), 3, 9), (np.array([n - 1]), 0, 2),
             (np.arange(n), 30, 40), (half[::3], 39, 40), (half, 11, 11), (np.arange(0), 0, 5)]
    for rows, start, stop in cases:  # alternating subsets also exercises the cached pgenlib subset
        got = hard.read_codes(rows, start, stop)
        assert got.shape == (stop - start, len(rows))
        np.testing.assert_array_equal(got, counts[start:stop][:, rows])
        d = hard.read_dosages(rows, start, stop)
        np.testing.assert_array_equal(np.nan_to_num(d, nan=-1.0), counts[start:stop][:, rows])


def test_bad_rows_and_ranges(hard):
    with pytest.raises(ValueError):
        hard.read_dosages(np.array([3, 2]), 0, 1)
    with pytest.raises(ValueError):
        hard.read_dosages(np.array([0, 300]), 0, 1)
    with pytest.raises(IndexError):
        hard.read_codes(np.arange(3), 39, 41)


def test_rows_checked_again_unless_read_only_and_the_same(hard, bed, monkeypatch):
    """A scan's read-only rows are checked once per thread; other rows are compared by value with
    the last rows found valid, and checked (and a subset pointed at) again if they differ, so that
    rows changed in place are never taken for the ones before."""
    from hlmm.io import _base

    counts, _, _ = bed
    n = counts.shape[1]
    calls = []
    diff = np.diff
    monkeypatch.setattr(_base.np, "diff", lambda a, *k: (calls.append(len(a)), diff(a, *k))[1])
    fixed = np.arange(0, n, 2, dtype=np.int64)
    fixed.flags.writeable = False
    for start in (0, 5, 9):
        np.testing.assert_array_equal(hard.read_codes(fixed, start, start + 3), counts[start:start + 3][:, fixed])
    assert len(calls) == 1
    rows = np.arange(0, n, 2, dtype=np.int64)  # writeable, the same values: known valid by value
    np.testing.assert_array_equal(hard.read_codes(rows, 0, 2), counts[0:2][:, rows])
    assert len(calls) == 1
    rows[:] = np.arange(1, n, 2)[: len(rows)]  # changed in place: checked, and read as the new rows
    np.testing.assert_array_equal(hard.read_codes(rows, 0, 4), counts[0:4][:, rows])
    assert len(calls) == 2
    rows[1] = rows[0]  # and checked as the new rows
    with pytest.raises(ValueError, match="strictly increasing"):
        hard.read_codes(rows, 0, 1)
    base = np.arange(0, n, 3, dtype=np.int64)  # a read-only view of a writeable array: by value
    view = base[:]
    view.flags.writeable = False
    hard.read_codes(view, 0, 1)
    base[2] = base[1]
    with pytest.raises(ValueError, match="strictly increasing"):
        hard.read_codes(view, 0, 1)


# ----------------------------------------------------------------------------------------------
# Dosages
# ----------------------------------------------------------------------------------------------
def test_dosages_equal_plink2_export(dos):
    truth, ids = read_traw_alt(DATA / "dos_pgen.traw", dos.variants.a2)
    m, n = truth.shape
    d = dos.read_dosages(np.arange(n), 0, m)
    np.testing.assert_array_equal(np.isnan(d), np.isnan(truth))
    assert np.isnan(truth).sum() > 50
    # plink2 prints the shortest decimal that identifies the stored multiple of 1/16384
    ok = ~np.isnan(truth)
    np.testing.assert_array_equal(d[ok] * 16384, np.round(truth[ok] * 16384))
    np.testing.assert_allclose(d, truth, rtol=0, atol=0.5 / 16384)
    assert dos.has_dosages
    assert len(np.unique(d[~np.isnan(d)])) > 1000  # genuinely fractional


def test_dosages_lie_exactly_on_the_1_16384_grid(dos):
    d = dos.read_dosages(np.arange(len(dos.samples)), 0, len(dos.variants))
    ok = d[~np.isnan(d)]
    scaled = ok * 16384
    np.testing.assert_array_equal(scaled, np.round(scaled))
    assert ok.min() >= 0 and ok.max() <= 2


def test_dosage_samples_and_variants(dos):
    _, ids = read_traw_alt(DATA / "dos_pgen.traw", dos.variants.a2)
    assert dos.samples == [tuple(i.split("_")) for i in ids]  # imported with --id-delim _
    assert dos.samples[0] == ("s000", "s000") and dos.samples[1] == ("fam000", "ind001")
    assert list(dos.variants.chrom[:1]) == ["1"] and dos.variants.chrom[-1] == "22"


def test_codes_of_dosages_are_rounded_dosages(dos):
    rows = np.arange(0, len(dos.samples), 2)
    d = dos.read_dosages(rows, 2, 20)
    codes = dos.read_codes(rows, 2, 20)
    want = np.where(np.isnan(d), -1, np.floor(d + 0.5)).astype(np.int8)
    np.testing.assert_array_equal(codes, want)
    full = dos.read_dosages(np.arange(len(dos.samples)), 0, len(dos.variants))
    full_codes = dos.read_codes(np.arange(len(dos.samples)), 0, len(dos.variants))
    assert (full_codes[full == 0.5] == 1).all() and (full_codes[full == 1.5] == 2).all()
    assert (full == 0.5).any() and (full == 1.5).any()


def test_multiallelic_variant_reads_as_missing():
    src = open_pgen(str(DATA / "multi"))  # a prefix works too
    v = src.variants
    assert v.n_alleles.tolist() == [2, 3, 2, 2]
    assert (v.a1[1], v.a2[1]) == ("A", "C,T")
    rows = np.arange(len(src.samples))
    d = src.read_dosages(rows, 0, 4)
    c = src.read_codes(rows, 0, 4)
    assert np.isnan(d[1]).all() and (c[1] == -1).all()
    bi = [0, 2, 3]
    assert np.isin(c[bi], [-1, 0, 1, 2]).all() and (c[bi] >= 0).sum() >= 3 * (len(rows) - 1)
    np.testing.assert_array_equal(np.nan_to_num(d[bi], nan=-1), c[bi])
    src.close()


def test_phased_and_haploid_chrx_equal_plink2():
    src = open_pgen(str(DATA / "phased.pgen"))
    truth, _ = read_traw_alt(DATA / "phased.traw", src.variants.a2)
    d = src.read_dosages(np.arange(len(src.samples)), 0, len(src.variants))
    np.testing.assert_array_equal(np.isnan(d), np.isnan(truth))
    np.testing.assert_array_equal(d[~np.isnan(d)], truth[~np.isnan(truth)])
    src.close()


def test_bim_fam_and_zstd_pvar_companions(tmp_path, bed):
    counts, fam, bim = bed
    shutil.copy(DATA / "hard.pgen", tmp_path / "b.pgen")  # .pgen + .bim + .fam (plink2 --make-bpgen)
    shutil.copy(DATA / "hard.bim", tmp_path / "b.bim")
    shutil.copy(DATA / "hard.fam", tmp_path / "b.fam")
    src = open_pgen(str(tmp_path / "b.pgen"))
    assert src.samples == fam and list(src.variants.a1) == [b[4] for b in bim]
    assert src.files() == [str(tmp_path / f"b.{e}") for e in ("pgen", "bim", "fam")]
    np.testing.assert_array_equal(src.read_codes(np.arange(len(fam)), 0, len(bim)), counts)
    src.close()
    zstandard = pytest.importorskip("zstandard")
    _copy(tmp_path)
    pvar = tmp_path / "x.pvar"
    (tmp_path / "x.pvar.zst").write_bytes(zstandard.ZstdCompressor().compress(pvar.read_bytes()))
    pvar.unlink()
    src = open_pgen(str(tmp_path / "x.pgen"))
    assert list(src.variants.id) == [b[1] for b in bim] and src.pvar_path.endswith(".pvar.zst")
    src.close()


# ----------------------------------------------------------------------------------------------
# Bad files: one-line InputError naming the file
# ----------------------------------------------------------------------------------------------
def _copy(tmp_path: Path, stem: str = "hard") -> Path:
    for ext in ("pgen", "pvar", "psam"):
        shutil.copy(DATA / f"{stem}.{ext}", tmp_path / f"x.{ext}")
    return tmp_path / "x.pgen"


def _raises(path: str, *words: str) -> str:
    with pytest.raises(InputError) as err:
        open_pgen(path)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_missing_companions(tmp_path):
    pgen = _copy(tmp_path)
    (tmp_path / "x.pvar").unlink()
    _raises(str(pgen), str(pgen), "x.pvar")
    pgen = _copy(tmp_path)
    (tmp_path / "x.psam").unlink()
    _raises(str(pgen), str(pgen), "x.psam")
    _raises(str(tmp_path / "nothere.pgen"), "nothere.pgen", "not found")


def test_sample_count_mismatch(tmp_path):
    pgen = _copy(tmp_path)
    lines = (tmp_path / "x.psam").read_text().splitlines(keepends=True)
    (tmp_path / "x.psam").write_text("".join(lines[:-1]))
    _raises(str(pgen), str(pgen), "300 samples", "299", "x.psam")


def test_variant_count_mismatch(tmp_path):
    pgen = _copy(tmp_path)
    lines = (tmp_path / "x.pvar").read_text().splitlines(keepends=True)
    (tmp_path / "x.pvar").write_text("".join(lines + lines[-1:]))
    _raises(str(pgen), str(pgen), "40 variants", "41")


def test_truncated_pgen(tmp_path):
    for stem in ("hard", "dos"):
        pgen = _copy(tmp_path, stem)
        data = pgen.read_bytes()
        pgen.write_bytes(data[:-100])
        _raises(str(pgen), str(pgen), "truncated")
        pgen.write_bytes(data[:20])
        _raises(str(pgen), str(pgen))


def test_not_a_pgen(tmp_path):
    pgen = _copy(tmp_path)
    pgen.write_bytes(b"this is not a pgen file at all")
    _raises(str(pgen), str(pgen), "not a .pgen")


def test_psam_without_fid_column_gives_fid_0(tmp_path):
    pgen = _copy(tmp_path)
    rows = [line.split("\t") for line in (tmp_path / "x.psam").read_text().splitlines()]
    (tmp_path / "x.psam").write_text("".join("\t".join(r[1:]) + "\n" for r in [["#FID", "#IID", "SEX"]] + rows[1:]))
    src = open_pgen(str(pgen))
    assert src.samples[:2] == [("0", "s000"), ("0", "ind001")]
    src.close()


def test_scan_blocks_hold_float32_dosages_equal_to_read_dosages():
    """The scans' blocks of a .pgen hold float32 (pgenlib decodes into it faster): exactly the
    float64 values of read_dosages, NaN for missing calls, over any subset."""
    src = open_pgen(str(DATA / "dos.pgen"))
    n, m = len(src.samples), src.n_variants
    for rows in (np.arange(n), np.arange(0, n, 3)):
        blk = src.read_block(rows, np.arange(m))
        assert blk.dosages.dtype == np.float32
        want = src.read_dosages(rows, 0, m)
        np.testing.assert_array_equal(blk.dosages.astype(np.float64), want)
        assert np.isnan(want).any()
        np.testing.assert_array_equal(blk.values(), want.T)
    src.close()


def test_negative_to_nan__equals_numpy():
    from hlmm.io._kernels import negative_to_nan

    a = np.random.default_rng(1).normal(size=(7, 301)).astype(np.float32)
    a[2, 5] = -9
    want = np.where(a < 0, np.nan, a)
    negative_to_nan(a)
    np.testing.assert_array_equal(a, want)


def test_threads__decode_parts_of_a_block_in_parallel_with_the_same_genotypes(tmp_path):
    """A block of 40 variants x 30,003 samples (dosages with missing calls, and hard calls) read by
    1, 2 and 3 threads, all samples and a subset of 25,000: the same dosages and codes, also at part
    boundaries (parts of 13-14 variants); each helper thread opens a reader of its own, and
    close() releases them all."""
    import pgenlib

    rng = np.random.default_rng(4)
    n, m = 30_003, 40
    g = rng.binomial(2, 0.3, (m, n)).astype(np.float32)
    dos = np.clip(g + rng.normal(0, 0.1, (m, n)) * (rng.random((m, n)) < 0.3), 0, 2).astype(np.float32)
    dos[rng.random((m, n)) < 0.01] = -9  # missing
    for name, dosages in (("d", True), ("h", False)):
        w = pgenlib.PgenWriter(str(tmp_path / f"{name}.pgen").encode(), n, m, False, dosage_present=dosages)
        for j in range(m):
            if dosages:
                w.append_dosages(dos[j])
            else:
                w.append_biallelic(np.where(dos[j] < 0, -9, np.rint(np.maximum(dos[j], 0))).astype(np.int8))
        w.close()
        (tmp_path / f"{name}.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n" + "".join(
            f"1\t{j + 1}\tv{j}\tG\tA\n" for j in range(m)))
        (tmp_path / f"{name}.psam").write_text("#FID\tIID\n" + "".join(f"f{i}\ti{i}\n" for i in range(n)))
        subset = np.sort(rng.choice(n, 25_000, replace=False))
        for rows in (np.arange(n), subset):
            results = []
            for threads in (1, 2, 3):
                src = open_pgen(str(tmp_path / f"{name}.pgen"))
                src.threads = threads
                got = (src.read_dosages(rows, 0, m), src.read_codes(rows, 0, m), src.read_dosages(rows, 5, 33))
                assert len(src._open_readers) == threads
                src.close()
                assert src._open_readers == [] and src._pool is None
                results.append(got)
            for got in results[1:]:
                for a, b in zip(results[0], got):
                    np.testing.assert_array_equal(a, b)
            want = np.where(dos[:, rows] < 0, np.nan, dos[:, rows]) if dosages else \
                np.where(dos[:, rows] < 0, np.nan, np.rint(np.maximum(dos[:, rows], 0)))
            np.testing.assert_allclose(results[0][0], want, rtol=0, atol=1 / 16384)


def _numpy_packed(codes: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """.bed bytes over n places of hard calls (b, len(rows)), negative missing, the places not in
    rows as no copy: 2 copies 0b00, missing 0b01, 1 copy 0b10, 0 copies 0b11."""
    bits = np.full((codes.shape[0], 4 * ((n + 3) // 4)), 3, np.uint8)
    bits[:, rows] = np.select([codes == 2, codes < 0, codes == 1], [0, 1, 2], 3)
    return (bits[:, 0::4] | bits[:, 1::4] << 2 | bits[:, 2::4] << 4 | bits[:, 3::4] << 6).astype(np.uint8)


def test_block_packed__hard_calls_packed_while_decoded(tmp_path, monkeypatch):
    """A scan's block of hard calls of a .pgen is decoded a few variants at a time and packed by
    each decoding thread (PgenSource._block_packed): the bytes of a numpy packing of the calls
    written, with missing calls, n not a multiple of 4, all samples and a subset, 1 to 3 threads,
    ranges that do not start at 0, three variants per step (so that steps and parts split the
    block at different places); the block's calls decode back to read_codes's; and a multi-allelic
    variant packs as missing."""
    import pgenlib

    import hlmm.io.pgen as pgen_module

    rng = np.random.default_rng(8)
    n, m = 30_003, 40
    calls = rng.binomial(2, 0.3, (m, n)).astype(np.int8)
    calls[rng.random((m, n)) < 0.01] = -9
    w = pgenlib.PgenWriter(str(tmp_path / "h.pgen").encode(), n, m, False)
    for j in range(m):
        w.append_biallelic(calls[j])
    w.close()
    (tmp_path / "h.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n" + "".join(
        f"1\t{j + 1}\tv{j}\tG\tA\n" for j in range(m)))
    (tmp_path / "h.psam").write_text("#FID\tIID\n" + "".join(f"f{i}\ti{i}\n" for i in range(n)))
    monkeypatch.setattr(pgen_module, "_HOT_VALUES", 3 * n)
    subset = np.sort(rng.choice(n, 25_000, replace=False))
    for rows in (np.arange(n), subset):
        for threads in (1, 2, 3):
            src = open_pgen(str(tmp_path / "h.pgen"))
            src.threads = threads
            for start, stop in ((0, m), (5, 33), (7, 8)):
                got = src._block_packed(rows, start, stop)
                np.testing.assert_array_equal(got, _numpy_packed(calls[start:stop][:, rows], rows, n))
            block = src.read_block(rows, np.arange(3, 30))
            assert block.codes is None
            np.testing.assert_array_equal(block.get_codes(), src.read_codes(rows, 3, 30))
            src.close()
    src = open_pgen(str(DATA / "multi"))
    rows = np.arange(len(src.samples))
    block = src.read_block(rows, np.arange(4))
    np.testing.assert_array_equal(block.get_codes(), src.read_codes(rows, 0, 4))
    assert (block.get_codes()[1] == -1).all()
    src.close()
