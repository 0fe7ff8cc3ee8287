"""Threaded reading of .bgen blocks (hlmm.io.bgen.BgenSource.threads) gives the one-thread bytes.

The files are written here by a small BGEN v1.2/v1.3 layout-2 writer (so that they have 100+
variants, several bit depths and compressions, haploid males on chrX, phased and unphased
variants, missing calls, ploidy 0 and multi-allelic variants); its dosages are first checked
against the probabilities it wrote. The committed fixtures of tests/data/formats are read too.
Reads are also compared with a copy of the one-thread decoder as it was before the threads (the
decoder now sums in its output row instead of in temporaries). These files have a few hundred
samples, so the tests lower ``MIN_PARALLEL_SAMPLES`` to let them be read by threads.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from hlmm.io import InputError
from hlmm.io import bgen as bgen_module
from hlmm.io.bgen import BgenSource, default_threads, open_bgen

DATA = Path(__file__).parent / "data" / "formats"
N, M = 257, 131
MULTI = {5, 64, 130}  # tri-allelic variants
TIMEOUT = 60  # seconds before a hung read counts as a deadlock


@pytest.fixture(autouse=True)
def threads_for_small_files(monkeypatch):
    """These files are small: let them be read by threads (real files need 20,000 samples)."""
    monkeypatch.setattr(bgen_module, "MIN_PARALLEL_SAMPLES", 0)


def _has_zstd() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# A BGEN writer (layout 2) and the dosages it wrote
# ----------------------------------------------------------------------------------------------
def _pack(values: np.ndarray, bits: int) -> bytes:
    """Unsigned integers of ``bits`` bits packed LSB-first."""
    v = np.asarray(values, dtype=np.uint64)
    flat = ((v[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8).ravel()
    return np.packbits(flat, bitorder="little").tobytes()


def _variant(rng, j: int, bits: int) -> tuple[str, np.ndarray, int, np.ndarray | None, bytes]:
    """(chrom, ploidy bytes, phased, dosages of allele 2 or None, probability block) of variant j."""
    top = (1 << bits) - 1
    if j in MULTI:  # 3 alleles, unphased diploid: 5 stored values per sample
        ploidy = np.full(N, 2, np.uint8)
        probs = np.zeros((N, 5), np.int64)
        probs[np.arange(N), rng.integers(0, 5, N)] = top
        data = struct.pack("<IHBB", N, 3, 2, 2) + ploidy.tobytes() + bytes([0, bits]) + _pack(probs.ravel(), bits)
        return "1", ploidy, 0, None, data
    chrom = "X" if j % 5 == 2 else "1"
    phased = int(j % 7 == 3)
    z = np.full(N, 2, np.int64)
    if chrom == "X":
        z[1::2] = 1  # males
        if j % 10 == 7:
            z[11] = 0  # a sample with no chromosomes: NaN
    missing = rng.random(N) < 0.05
    values, dos = [], np.empty(N)
    for i in range(N):
        if missing[i] or z[i] == 0:
            values.append(np.zeros(z[i], np.int64))
            dos[i] = np.nan
        elif phased or z[i] == 1:  # P(allele 1) per haplotype
            p = rng.integers(0, top + 1, z[i])
            values.append(p)
            dos[i] = (z[i] * top - p.sum()) * (2 if z[i] == 1 else 1) / top
        else:  # unphased diploid: P(11), P(12)
            a = rng.integers(0, top + 1)
            b = rng.integers(0, top - a + 1)
            values.append(np.array([a, b]))
            dos[i] = (2 * top - 2 * a - b) / top
    ploidy = (z | np.where(missing, 0x80, 0)).astype(np.uint8)
    flat = np.concatenate(values)
    data = struct.pack("<IHBB", N, 2, int(z.min()), int(z.max())) + ploidy.tobytes() + bytes([phased, bits])
    return chrom, ploidy, phased, dos, data + _pack(flat, bits)


def write_bgen(path: Path, bits: int, compression: str, seed: int = 0) -> np.ndarray:
    """Write an N x M .bgen (embedded sample IDs ``s0``...); return its dosages (M, N) of allele 2."""
    rng = np.random.default_rng(seed)
    code = {"none": 0, "zlib": 1, "zstd": 2}[compression]
    if code == 2:
        import zstandard

        compress = zstandard.ZstdCompressor().compress
    else:
        compress = zlib.compress
    ids = b"".join(struct.pack("<H", len(s)) + s for s in (f"s{i}".encode() for i in range(N)))
    samples = struct.pack("<II", 8 + len(ids), N) + ids
    header = struct.pack("<IIII", 20, M, N, 0)[:12] + b"bgen" + struct.pack("<I", code | (2 << 2) | (1 << 31))
    truth = np.full((M, N), np.nan)
    body = []
    for j in range(M):
        chrom, _, _, dos, data = _variant(rng, j, bits)
        if dos is not None:
            truth[j] = dos
        alleles = [b"A", b"C", b"G"] if j in MULTI else [b"A", b"C"]
        head = (struct.pack("<H", len(f"snp{j}")) + f"snp{j}".encode() + struct.pack("<H", len(f"rs{j}"))
                + f"rs{j}".encode() + struct.pack("<H", len(chrom)) + chrom.encode()
                + struct.pack("<IH", 1000 + j, len(alleles)) + b"".join(struct.pack("<I", 1) + a for a in alleles))
        if code == 0:
            block = struct.pack("<I", len(data)) + data
        else:
            comp = compress(data)
            block = struct.pack("<II", len(comp) + 4, len(data)) + comp
        body.append(head + block)
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(header) + len(samples)) + header + samples + b"".join(body))
    return truth


CASES = [(8, "zlib"), (16, "zlib"), (10, "zlib"), (32, "zlib"), (8, "none"), (8, "zstd"), (16, "zstd")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{b}bit-{c}" for b, c in CASES])
def written(request, tmp_path_factory):
    bits, compression = request.param
    if compression == "zstd" and not _has_zstd():
        pytest.skip("zstandard is not installed")
    path = tmp_path_factory.mktemp("bgen") / f"b{bits}_{compression}.bgen"
    truth = write_bgen(path, bits, compression, seed=bits)
    return str(path), truth


@pytest.fixture(scope="module")
def zlib8(tmp_path_factory):
    """The 8-bit zlib case alone, for tests of the threading that do not depend on the format."""
    path = tmp_path_factory.mktemp("bgen") / "b8_zlib.bgen"
    return str(path), write_bgen(path, 8, "zlib", seed=8)


def _rows_sets(n: int) -> dict:
    rng = np.random.default_rng(5)
    return {"all": np.arange(n, dtype=np.int64),
            "half": np.sort(rng.choice(n, n // 2, replace=False)).astype(np.int64),
            "males": np.arange(1, n, 2, dtype=np.int64),
            "one": np.array([n - 1], dtype=np.int64),
            "none": np.arange(0, dtype=np.int64)}


def _serial(path: str, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    with open_bgen(path, threads=1) as src:
        return src.read_dosages(rows, start, stop)


def _equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)  # NaNs in the same places count as equal
    assert a.tobytes() == b.tobytes()  # and bit for bit (the NaNs too)


# ----------------------------------------------------------------------------------------------
# The one-thread decoder as it was before the threaded reader (copied verbatim from hlmm/io/bgen.py,
# ``BgenSource._dosage_row``): today's dosages, threaded or not, must be its bytes
# ----------------------------------------------------------------------------------------------
def _reference_row(self, j: int, rows: np.ndarray | None, out: np.ndarray) -> None:
    """Fill ``out`` (shape (k,)) with the dosages of the second allele of bi-allelic variant j."""
    data = self._probabilities(j)
    n = self._n
    if len(data) < 10 + n:
        raise InputError(f"genotype file {self.path}: variant {j + 1}: probability block of {len(data)} bytes "
                         f"is too short for {n} samples")
    n_stored, k, pmin, pmax = struct.unpack_from("<IHBB", data, 0)
    if n_stored != n or k != 2:
        raise InputError(f"genotype file {self.path}: variant {j + 1}: probability block is for {n_stored} samples "
                         f"and {k} alleles, expected {n} and 2 (corrupt)")
    ploidy = np.frombuffer(data, dtype=np.uint8, count=n, offset=8)
    phased, bits = data[8 + n], data[9 + n]
    if not 1 <= bits <= 32:
        raise InputError(f"genotype file {self.path}: variant {j + 1}: {bits} bits per probability (corrupt)")
    top = (1 << bits) - 1
    if pmin == pmax == 2:
        need = (2 * n * bits + 7) // 8
        if len(data) < 10 + n + need:
            raise InputError(f"genotype file {self.path}: variant {j + 1}: probability block is truncated")
        wide = np.int64 if bits > 16 else np.int32
        if bits in (8, 16, 32):
            if rows is None:
                v = np.frombuffer(data, dtype=f"<u{bits // 8}", count=2 * n, offset=10 + n).reshape(n, 2)
                a, b = v[:, 0].astype(wide), v[:, 1].astype(wide)
            else:  # gather both values of a sample as one integer: a 1-D gather is much faster
                pair = np.frombuffer(data, dtype=f"<u{bits // 4}", count=n, offset=10 + n)[rows]
                a, b = (pair & np.uint64(top)).astype(wide), (pair >> np.uint64(bits)).astype(wide)
        else:
            v = bgen_module._unpack_bits(data, 10 + n, 2 * n, bits).reshape(n, 2)
            if rows is not None:
                v = v[rows]
            a, b = v[:, 0].astype(wide), v[:, 1].astype(wide)
        if rows is not None:
            ploidy = ploidy[rows]
        # unphased: stored P(11), P(12); phased: P(allele 1) on each haplotype
        k_units = 2 * top - (2 * a + b if not phased else a + b)
        np.divide(k_units, top, out=out)
        missing = np.flatnonzero(ploidy & 0x80)
        if len(missing):
            out[missing] = np.nan
        return
    # other ploidies (chrX with haploid males): Z values per sample, unphased P(0..Z-1 copies of
    # allele 2) weighted Z-j, or phased P(allele 1) per haplotype weighted 1
    z = (ploidy & 0x3F).astype(np.int64)
    total = int(z.sum())
    if len(data) < 10 + n + (total * bits + 7) // 8:
        raise InputError(f"genotype file {self.path}: variant {j + 1}: probability block is truncated")
    v = bgen_module._unpack_bits(data, 10 + n, total, bits).astype(np.int64)
    starts = np.cumsum(z) - z
    w = 1 if phased else np.repeat(z, z) - (np.arange(total) - np.repeat(starts, z))
    cumulative = np.concatenate(([0], np.cumsum(w * v)))
    weighted = cumulative[starts + z] - cumulative[starts]
    # haploid samples count 0..2, as plink2 codes them (a haploid call is stored as homozygous)
    k_units = np.where(z == 1, 2 * (top - weighted), 2 * top - weighted)
    dos = k_units / top
    dos[(ploidy >= 0x80) | (z == 0) | (z > 2)] = np.nan
    out[:] = dos if rows is None else dos[rows]


def _reference(path: str, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    with open_bgen(path, threads=1) as src:
        rows = np.asarray(rows)
        sub = None if len(rows) == len(src.samples) else rows
        out = np.empty((stop - start, len(rows)), dtype=np.float64)
        for i, j in enumerate(range(start, stop)):
            if src.variants.n_alleles[j] != 2:
                out[i] = np.nan
            elif len(rows):
                _reference_row(src, j, sub, out[i])
        return out


# ----------------------------------------------------------------------------------------------
# Same bytes as one thread
# ----------------------------------------------------------------------------------------------
def test_writer_dosages_are_what_the_reader_reads(written):
    """The written file reads as the probabilities it was written with (so the cases below cover
    haploid males, ploidy 0, phased and missing calls, and multi-allelic rows)."""
    path, truth = written
    src = open_bgen(path, threads=3)
    d = src.read_dosages(np.arange(N), 0, M)
    np.testing.assert_array_equal(d, truth)
    x = np.flatnonzero(src.variants.chrom == "X")
    assert len(x) > 20 and (~np.isnan(d[x][:, 1::2])).mean() > 0.9  # haploid males
    assert np.isnan(d[x[x % 10 == 7], 11]).all()  # ploidy 0
    assert np.isnan(d[sorted(MULTI)]).all() and src.variants.n_alleles[sorted(MULTI)].tolist() == [3, 3, 3]
    assert 0.02 < np.isnan(np.delete(d, sorted(MULTI), axis=0)).mean() < 0.1
    src.close()


@pytest.mark.parametrize("threads", [1, 3])
def test_dosages_equal_the_decoder_before_threading(written, threads):
    path, _ = written
    src = open_bgen(path, threads=threads)
    for rows in _rows_sets(N).values():
        _equal(src.read_dosages(rows, 0, M), _reference(path, rows, 0, M))
    src.close()


@pytest.mark.parametrize("threads", [2, 3, 8])
@pytest.mark.parametrize("rows_name", ["all", "half", "males", "one", "none"])
def test_threaded_blocks_equal_one_thread(written, threads, rows_name):
    path, _ = written
    rows = _rows_sets(N)[rows_name]
    src = open_bgen(path, threads=threads)
    assert src.threads == threads
    blocks = [(0, 1), (40, 41), (3, 10), (0, 7), (0, 8), (1, 10), (2, 11), (5, 106), (0, M), (17, M), (M, M)]
    blocks += [(j, min(M, j + 37)) for j in range(0, M, 37)]  # a pass in blocks of 37
    for start, stop in blocks:
        _equal(src.read_dosages(rows, start, stop), _serial(path, rows, start, stop))
        _equal(src.read_codes(rows, start, stop), open_bgen(path, threads=1).read_codes(rows, start, stop))
    if len(rows):
        assert src._pool is not None and src._pool_size == threads - 1
    src.close()
    assert src._pool is None


@pytest.mark.parametrize("name", ["dos.bgen", "dos10.bgen", "dos16.bgen", "hard.bgen", "hard13.bgen",
                                  "hard_multi.bgen", "phased.bgen"])
def test_committed_fixtures(name):
    if name in ("dos16.bgen", "hard13.bgen") and not _has_zstd():
        pytest.skip("zstandard is not installed")
    path = str(DATA / name)
    one, many = open_bgen(path, threads=1), open_bgen(path, threads=4)
    m, n = len(one.variants), len(one.samples)
    for rows in _rows_sets(n).values():
        for start, stop in [(0, m), (1, m - 1), (0, 7), (2, 11)]:
            stop = min(stop, m)
            _equal(many.read_dosages(rows, start, stop), one.read_dosages(rows, start, stop))
            _equal(one.read_dosages(rows, start, stop), _reference(path, rows, start, stop))
    one.close()
    many.close()


def test_small_blocks_stay_in_the_calling_thread(written):
    path, _ = written
    src = open_bgen(path, threads=4)
    for start in range(0, 20, 3):
        src.read_dosages(np.arange(N), start, start + bgen_module.MIN_PARALLEL_VARIANTS - 1)
    assert src._pool is None  # no pool was started
    src.read_dosages(np.arange(N), 0, bgen_module.MIN_PARALLEL_VARIANTS)
    assert src._pool is not None
    src.close()


def test_files_of_few_samples_stay_in_the_calling_thread(zlib8, monkeypatch):
    path, _ = zlib8
    monkeypatch.setattr(bgen_module, "MIN_PARALLEL_SAMPLES", N + 1)
    src = open_bgen(path, threads=4)
    _equal(src.read_dosages(np.arange(N), 0, M), _serial(path, np.arange(N), 0, M))
    assert src._pool is None
    monkeypatch.setattr(bgen_module, "MIN_PARALLEL_SAMPLES", N)
    _equal(src.read_dosages(np.arange(N), 0, M), _serial(path, np.arange(N), 0, M))
    assert src._pool is not None
    src.close()


def test_helper_threads_do_read_rows(zlib8, monkeypatch):
    """With a slowed decoder the helpers certainly take part; rows are then still in place."""
    path, _ = zlib8
    src = open_bgen(path, threads=3)
    readers: dict = {}
    real = BgenSource._read_row

    def slow(self, j, rows, out):
        time.sleep(0.002)
        readers[j] = threading.current_thread().name
        real(self, j, rows, out)

    monkeypatch.setattr(BgenSource, "_read_row", slow)
    rows = _rows_sets(N)["half"]
    got = src.read_dosages(rows, 3, 100)
    monkeypatch.setattr(BgenSource, "_read_row", real)
    _equal(got, _serial(path, rows, 3, 100))
    assert sorted(readers) == list(range(3, 100))
    names = set(readers.values())  # the caller and (unless the machine starves them) both helpers
    assert threading.current_thread().name in names and any(x.startswith("hlmm-bgen") for x in names), names
    assert len(names) <= 3
    src.close()


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
def _corrupt(path: str, tmp_path: Path, variants: list[int], how: str) -> str:
    data = bytearray(Path(path).read_bytes())
    with open_bgen(path, threads=1) as src:
        blocks = [int(src._block[j]) for j in variants]
    for pos in blocks:
        if how == "stream":  # garbage in the compressed bytes
            data[pos + 8 : pos + 16] = b"\xff\x00\xfe\x01\xfd\x02\xfc\x03"
        else:  # the uncompressed length field
            (d,) = struct.unpack_from("<I", data, pos + 4)
            struct.pack_into("<I", data, pos + 4, d + 3)
    bad = tmp_path / f"bad_{how}_{'_'.join(map(str, variants))}.bgen"
    bad.write_bytes(bytes(data))
    return str(bad)


@pytest.mark.parametrize("how,variants", [("stream", [40]), ("stream", [90, 41]), ("length", [77]),
                                          ("length", [100, 12, 60])])
@pytest.mark.parametrize("threads", [2, 3, 8])
def test_corrupt_variant_raises_the_serial_error(tmp_path, how, variants, threads):
    path = str(tmp_path / "ok.bgen")
    write_bgen(Path(path), 8, "zlib")
    bad = _corrupt(path, tmp_path, variants, how)
    first = min(variants)
    rows = np.arange(N)
    with pytest.raises(InputError) as serial:
        open_bgen(bad, threads=1).read_dosages(rows, 0, M)
    assert f"genotype file {bad}: variant {first + 1} " in str(serial.value)
    src = open_bgen(bad, threads=threads)
    for start, stop in [(0, M), (first - 9, first + 30), (first, first + 8)]:
        with pytest.raises(InputError) as threaded:
            src.read_dosages(rows, start, stop)
        assert type(threaded.value) is type(serial.value) and str(threaded.value) == str(serial.value)
    assert src._pool is not None
    # the source reads on after the error (the pool is not broken)
    good = max(variants) + 1
    _equal(src.read_dosages(rows, good, M), _serial(path, rows, good, M))
    src.close()


def test_the_first_failing_variant_wins_when_a_later_one_fails_first(zlib8, monkeypatch):
    """Variant 21 fails late (its thread is slow), 61 at once in another thread: the error raised
    is variant 21's, as in a one-thread read."""
    path, _ = zlib8
    src = open_bgen(path, threads=2)
    real = BgenSource._read_row

    def failing(self, j, rows, out):
        if j == 20:
            time.sleep(0.3)
        if j in (20, 60):
            raise InputError(f"genotype file {self.path}: variant {j + 1}: made up")
        real(self, j, rows, out)

    monkeypatch.setattr(BgenSource, "_read_row", failing)
    for threads in (1, 2, 3):
        src.threads = threads
        with pytest.raises(InputError, match="variant 21: made up"):
            src.read_dosages(np.arange(N), 0, M)
    src.close()


def test_error_raised_in_a_helper_thread_reaches_the_caller(zlib8, monkeypatch):
    path, _ = zlib8
    src = open_bgen(path, threads=2)
    real = BgenSource._read_row

    def failing(self, j, rows, out):  # the caller is slow, so that the helper surely takes some rows
        if not threading.current_thread().name.startswith("hlmm-bgen"):
            time.sleep(0.01)
        else:
            raise InputError(f"genotype file {self.path}: variant {j + 1}: made up in a helper")
        real(self, j, rows, out)

    monkeypatch.setattr(BgenSource, "_read_row", failing)
    with pytest.raises(InputError, match=r"variant \d+: made up in a helper"):
        src.read_dosages(np.arange(N), 0, 60)
    monkeypatch.setattr(BgenSource, "_read_row", real)
    _equal(src.read_dosages(np.arange(N), 0, 60), _serial(path, np.arange(N), 0, 60))
    src.close()


# ----------------------------------------------------------------------------------------------
# Threads calling in, pools, pickling, forking
# ----------------------------------------------------------------------------------------------
def _in_thread(fn, timeout: float = TIMEOUT):
    """fn() in a new thread; its result, or a failure if it does not end in ``timeout`` seconds."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 (re-raised in the test's thread)
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "deadlock: the read did not end"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_concurrent_callers_get_the_serial_results(written):
    path, _ = written
    sets = _rows_sets(N)
    jobs = [(sets["all"], 0, M), (sets["half"], 3, 120), (sets["males"], 10, 97), (sets["half"], 0, 9),
            (sets["all"], 50, 81), (sets["one"], 0, M)]
    expected = [_serial(path, *job) for job in jobs]
    src = open_bgen(path, threads=2)
    barrier = threading.Barrier(2)
    results: dict = {}

    def caller(k: int) -> None:
        barrier.wait()
        for rep in range(5):
            for i in range(len(jobs)):
                i = (i + k) % len(jobs)
                results[k, rep, i] = src.read_dosages(*jobs[i])

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert len(results) == 2 * 5 * len(jobs)
    for (_, _, i), got in results.items():
        _equal(got, expected[i])
    src.close()


def test_read_from_a_pool_thread_does_not_deadlock(zlib8):
    path, _ = zlib8
    src = open_bgen(path, threads=2)
    rows = np.arange(N)
    want = _serial(path, rows, 0, M)
    src.read_dosages(rows, 0, M)  # starts the pool (one helper)
    fut = src._helpers(1).submit(src.read_dosages, rows, 0, M)  # the only helper reads a block
    _equal(fut.result(timeout=TIMEOUT), want)
    src.close()


def test_busy_helpers_do_not_block_a_read(zlib8):
    """A helper that cannot start (its pool is busy) is not waited for: the caller reads alone."""
    path, _ = zlib8
    src = open_bgen(path, threads=2)
    rows = np.arange(N)
    want = _serial(path, rows, 0, M)
    release = threading.Event()
    busy = src._helpers(1).submit(release.wait, TIMEOUT)
    try:
        _equal(_in_thread(lambda: src.read_dosages(rows, 0, M)), want)
    finally:
        release.set()
    assert busy.result(timeout=TIMEOUT)
    _equal(src.read_dosages(rows, 0, M), want)
    src.close()


def test_more_threads_restarts_the_pool_and_close_stops_it(zlib8):
    path, _ = zlib8
    src = open_bgen(path, threads=2)
    rows = np.arange(N)
    want = _serial(path, rows, 0, M)
    _equal(src.read_dosages(rows, 0, M), want)
    first = src._pool
    src.threads = 4
    _equal(src.read_dosages(rows, 0, M), want)
    assert src._pool is not first and src._pool_size == 3
    src.threads = 2  # fewer: the bigger pool is kept
    _equal(src.read_dosages(rows, 0, M), want)
    assert src._pool_size == 3
    workers = list(src._pool._threads)
    assert workers and all(t.is_alive() for t in workers)
    src.close()
    assert src._pool is None and not any(t.is_alive() for t in workers)
    src.close()  # idempotent
    # a read after close fails as a one-thread read does, and starts no threads
    one = open_bgen(path, threads=1)
    one.close()
    with pytest.raises(Exception) as serial:
        one.read_dosages(rows, 0, M)
    with pytest.raises(type(serial.value), match="^" + re.escape(str(serial.value)) + "$"):
        src.read_dosages(rows, 0, M)
    assert src._pool is None


def test_threads_setting():
    path = str(DATA / "dos.bgen")
    expected = max(1, min(8, len(os.sched_getaffinity(0))))
    assert default_threads() == expected
    src = open_bgen(path)
    assert src.threads == expected
    assert BgenSource(path, None, "genotype file", 3).threads == 3
    src.threads = 5
    assert src.threads == 5
    src.threads = None
    assert src.threads == expected
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            src.threads = bad
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            open_bgen(path, threads=bad)
    src.threads = np.int64(2)
    assert src.threads == 2 and type(src.threads) is int
    src.close()


def test_pickling_a_source_that_used_its_pool(written):
    path, _ = written
    rows = _rows_sets(N)["half"]
    want = _serial(path, rows, 0, M)
    src = open_bgen(path, threads=3)
    _equal(src.read_dosages(rows, 0, M), want)
    assert src._pool is not None
    copy = pickle.loads(pickle.dumps(src))
    assert copy.threads == 3 and copy._pool is None and copy.samples == src.samples
    _equal(copy.read_dosages(rows, 0, M), want)
    assert copy._pool is not None and copy._pool is not src._pool
    _equal(src.read_dosages(rows, 0, M), want)  # the original is untouched
    copy.close()
    src.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_starts_its_own_pool(zlib8):
    """A child forked after the parent's pool started has no helper threads: it makes new ones."""
    path, _ = zlib8
    rows = np.arange(N)
    want = _serial(path, rows, 0, M)
    src = open_bgen(path, threads=2)
    src.read_dosages(rows, 0, M)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 if the read is right and done by a new pool
        code = 1
        try:
            old = src._pool
            got = src.read_dosages(rows, 0, M)
            code = 0 if (got.tobytes() == want.tobytes() and src._pool is not old) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish its read")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    _equal(src.read_dosages(rows, 0, M), want)
    src.close()
