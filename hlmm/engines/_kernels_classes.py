"""Compiled per-genotype-class sums over the individuals of a block (numba): what the class engines
and the score engine read of the genotypes.

Packed PLINK .bed bytes are SNP-major, 2 bits per genotype: 0b00 two copies of A1, 0b01
missing, 0b10 one copy, 0b11 no copy; the first individual of a byte is in its lowest two bits.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import os
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange


def _load_library():
    """The library built from ``_classsums.c`` by setup.py, or None if it was not built (it is
    optional: the numba kernels give the same sums), or if this machine or build has no 256-bit
    vectors for it (its code then measured slower than numba's)."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_classsums{suffix}"
        if path.is_file():
            try:
                lib = ctypes.CDLL(str(path))
                if not lib.hlmm_classsums_fast():  # no 256-bit vectors here: numba's kernel is faster
                    return None
            except (OSError, AttributeError):
                return None
            lib.hlmm_classsums_init()
            p, i64 = ctypes.c_void_p, ctypes.c_int64
            lib.hlmm_class_sums.argtypes = [p, i64, p, i64, i64, p, i64, i64]
            lib.hlmm_class_sums.restype = None
            lib.hlmm_class_counts.argtypes = [p, i64, p, i64, i64, p, i64, i64]
            lib.hlmm_class_counts.restype = None
            for f in (lib.hlmm_power_sums_float, lib.hlmm_power_sums_double):
                f.argtypes = [p, i64, p, i64, p, i64, i64, i64, p, p, p, p, i64, i64, i64]
                f.restype = ctypes.c_int
            for f in (lib.hlmm_dosage_keys_float, lib.hlmm_dosage_keys_double):
                f.argtypes = [p, i64, i64, i64, p, p, p, i64, i64]
                f.restype = ctypes.c_int
            lib.hlmm_dosage_sums.argtypes = [i64, i64, p, i64, p, p, i64, p, p, p, p, i64, p, i64, p, p, p, p, i64, i64]
            lib.hlmm_dosage_sums.restype = ctypes.c_int
            lib.hlmm_dosage_cache.argtypes = []
            lib.hlmm_dosage_cache.restype = i64
            lib.hlmm_dosage_chunk.argtypes = []
            lib.hlmm_dosage_chunk.restype = i64
            lib.hlmm_fit_dosage_classes.argtypes = [p] * 5 + [i64] * 9 + [ctypes.c_double] * 4 + [p, p]
            lib.hlmm_fit_dosage_classes.restype = None
            lib.hlmm_fit_scratch_size.argtypes = [p, i64, i64]
            lib.hlmm_fit_scratch_size.restype = i64
            lib.hlmm_exp.argtypes = [p, p, i64, i64]
            lib.hlmm_exp.restype = None
            lib.hlmm_fit_weights.argtypes = [ctypes.c_double] * 3 + [p, i64, i64, p]
            lib.hlmm_fit_weights.restype = ctypes.c_int
            lib.hlmm_lanes.argtypes = []
            lib.hlmm_lanes.restype = ctypes.c_int
            lib.hlmm_centred_combinations.argtypes = [p] * 6 + [i64, p, i64, i64, i64, p]
            lib.hlmm_centred_combinations.restype = None
            lib.hlmm_free.argtypes = [p]
            lib.hlmm_free.restype = None
            return lib
    return None


#: A numba kernel over variants given less work than this (classes, or values, that it reads) runs
#: on the calling thread alone (:func:`threads_by_work`). Waking numba's threads for a parallel
#: loop costs 80-150 microseconds a call on 2 cores (OpenMP layer), more than such a kernel's
#: work: over the 10,500 classes of 41 variants of 8-bit dosages, ``centred_segment_sums`` took 26
#: against 160 microseconds, ``segment_count_sums`` 8 against 140.
PARALLEL_WORK = 100_000


def threads_by_work(work):
    """Decorator of a parallel numba kernel whose loop over variants computes each variant alone
    (no reduction across them, so the same numbers on any number of threads): called with
    ``work(*args)`` below :data:`PARALLEL_WORK`, it runs on one thread (``numba.set_num_threads``
    is per calling thread, and restored after). The kernel itself is ``.kernel``."""

    def wrap(kernel):
        @functools.wraps(getattr(kernel, "py_func", kernel))  # (not the dispatcher's internals)
        def call(*args):
            threads = numba.get_num_threads()
            if threads == 1 or work(*args) >= PARALLEL_WORK:
                return kernel(*args)
            numba.set_num_threads(1)
            try:
                return kernel(*args)
            finally:
                numba.set_num_threads(threads)

        call.kernel = kernel
        return call

    return wrap


#: The compiled kernels' library (``_classsums.c``), or None; ``HLMM_NO_COMPILED=1`` in the
#: environment leaves it unused (the numba kernels then give the same sums).
LIBRARY = None if os.environ.get("HLMM_NO_COMPILED") else _load_library()
_compiled = LIBRARY.hlmm_class_sums if LIBRARY is not None else None
#: Whether the hard-call class sums of packed .bed bytes, the score test's power sums of dosages
#: and the class sums of dosages (see :func:`dosage_classes` for which designs) use the
#: compiled kernels (built, and with AVX2 or more on this machine).
COMPILED = LIBRARY is not None

#: The vectors of the compiled Newton fits over dosage classes and of the score test's power sums
#: on this machine: 8 lanes (one 512-bit vector, with AVX-512) or 4 (two 256-bit halves of the same
#: eight lanes); the two give the same bits (``hlmm_lanes`` in ``_classsums.c``). None without the
#: library.
VECTOR_LANES = None if LIBRARY is None else int(LIBRARY.hlmm_lanes())

#: The compiled dosage class kernels' first phase by dtype of the dosages (see
#: :func:`dosage_classes`), or None.
_dosage_classes_c = None if LIBRARY is None else {np.dtype(np.float32): LIBRARY.hlmm_dosage_keys_float,
                                                  np.dtype(np.float64): LIBRARY.hlmm_dosage_keys_double}

#: Designs of dosages of at most this many columns (one or two phenotypes) are padded to whole
#: vectors of 4 (:func:`hlmm.engines.classes.padded_width`) and summed by the compiled kernel as
#: they are; wider ones, on fine grids, eight columns at a time (:func:`_column_chunks`).
COMPILED_DOSAGE_COLUMNS = 8

LANES = 8  # partial sums per class: by each individual's row in its file, modulo 8


def packed_design(n_file: int, q: int) -> np.ndarray:
    """A zero design for :func:`class_moments_packed` of ``q`` columns over the ``n_file`` rows of a
    .bed: column-major (Fortran order) with rows up to a multiple of 8, which the compiled kernel
    reads a column at a time, if it was built; otherwise C order, ``n_file`` rows."""
    if COMPILED:
        return np.zeros((-(-n_file // LANES) * LANES, q), order="F")
    return np.zeros((n_file, q))


def class_moments_packed(packed, Yc):
    """Per variant and genotype class: column sums of ``Yc`` over the individuals of the class.

    Parameters
    ----------
    packed : ndarray of uint8, shape (b, n_bytes)
        Packed genotypes of b variants.
    Yc : ndarray of float64, shape (n_rows, q)
        Per individual of the file, the quantities to sum (e.g. an inclusion indicator, y and
        y^2 for each phenotype; zero rows for individuals not included); rows past the file's
        ``4 * n_bytes`` individuals, if any, must be zero. :func:`packed_design` makes one in the
        layout the compiled kernel reads.

    Returns
    -------
    ndarray of float64, shape (b, 4, q)
        ``[variant, copies of A1 (0, 1, 2) or 3 for missing, column of Yc]``.

    Notes
    -----
    Each class sum is eight partial sums (lanes), over the individuals ``i`` (rows of the file)
    with ``i % 8`` equal to 0, ..., 7, each added in increasing ``i`` and combined as
    ``((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))``: one running sum per class made a chain
    of dependent additions. :func:`class_moments_codes` adds in the same order, by each
    individual's place in the file, so that a .bed and a .pgen of the same calls give the same
    sums to the last bit.

    The compiled kernel (``_classsums.c``, if built; :data:`COMPILED`) holds the eight lanes in
    vectors and picks each class's rows with bitwise masks from a table of the 256 bytes, four
    columns at a time and eight variants over each chunk of 1,024 individuals, and skips the
    missing class of a variant without missing calls. Columns of zeros and ones (the inclusion
    indicator: the counts) it counts by set bits instead (``hlmm_class_counts``), 32 individuals
    per step: whole numbers, the same to the last bit. At n = 100,000, 512 variants, 2 threads
    (``benchmarks/bench_kernels.py --compare``; docs/performance.rst) it took 0.036 ms per variant
    on the 3 columns of one trait, 0.33 times the time of the last stop's numba kernel and 0.38
    times the numba kernel's on 4 padded columns. It gives the same sums as the numba kernels
    below, which are used without it: one variant at a time with few columns, and
    with more than 8 columns in groups of 8 variants over chunks of individuals whose rows fit in
    cache, so that each chunk is read from memory once per group rather than once per variant.
    """
    b = packed.shape[0]
    q = Yc.shape[1]
    if _compiled is not None and b and q:
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        n8 = -(-(4 * packed.shape[1]) // LANES) * LANES
        Yt = Yc.T
        if not Yt.flags.c_contiguous or Yt.shape[1] != n8 or Yt.dtype != np.float64:
            rows = min(Yc.shape[0], n8)
            Yt = np.zeros((q, n8))
            Yt[:, :rows] = Yc[:rows].T
        return _sums_compiled(packed, Yt)
    Yc = np.ascontiguousarray(Yc[: 4 * packed.shape[1]])
    if q > 8:
        return _class_moments_tiled(packed, Yc)
    return _class_moments_plain(packed, Yc)


class _Threads:
    """A pool of threads for the compiled kernel's other ranges, made on first use and grown when
    more threads are asked for; a forked child starts without one (it has none of its parent's
    threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool: ThreadPoolExecutor | None = None
        self.size = 0

    def get(self, size: int) -> ThreadPoolExecutor:
        with self.lock:
            if self.pool is None or self.size < size:
                self.pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="hlmm-classsums")
                self.size = size
            return self.pool

    def forget(self) -> None:
        self.lock = threading.Lock()
        self.pool, self.size = None, 0


_threads = _Threads()
os.register_at_fork(after_in_child=_threads.forget)


def thread_pool(size: int) -> ThreadPoolExecutor:
    """The kernels' pool of threads, with at least ``size`` of them (made on first use)."""
    return _threads.get(size)


def range_bounds(b: int, minimum: int = 8) -> list:
    """Bounds of the ranges that the variants 0 .. b - 1 are split into for the compiled kernels:
    as many as numba has threads (``numba.set_num_threads``, as the runner sets it per worker), of
    at least ``minimum`` variants."""
    threads = max(1, min(numba.get_num_threads(), b // minimum or 1))
    return [b * t // threads for t in range(threads + 1)]


def run_ranges(f, b: int, *args, minimum: int = 8) -> None:
    """``f(*args, j0, j1)`` over the variants 0 .. b - 1, split into as many ranges as numba has
    threads (``numba.set_num_threads``, as the runner sets it per worker; ranges of at least
    ``minimum`` variants), one on this thread and the others on a pool: ctypes releases the GIL
    for each call."""
    bounds = range_bounds(b, minimum)
    threads = len(bounds) - 1
    futures = []
    if threads > 1:
        pool = _threads.get(threads - 1)
        futures = [pool.submit(f, *args, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    f(*args, bounds[0], bounds[1])
    for fut in futures:
        fut.result()


def _sums_compiled(packed, Yt):
    """The compiled class sums over the variants of ``packed``: the columns of ``Yt`` that hold only
    zeros and ones (such as the inclusion indicator, whose sums are the counts) by a count of set
    bits (``hlmm_class_counts``: whole numbers, the same to the last bit as any order of adding
    them), the others by ``hlmm_class_sums``, in one call per range of variants."""
    b, n_bytes = packed.shape
    q, n8 = Yt.shape
    out = np.zeros((b, 4, q))
    counted = [c for c in range(q) if _zeros_and_ones(Yt[c])]
    summed = [c for c in range(q) if c not in counted]
    Ys = Yt if not counted else np.ascontiguousarray(Yt[summed])
    sums = out if not counted else np.zeros((b, 4, len(summed)))
    bits = [_indicator_bytes(Yt[c], n_bytes) for c in counted]

    def each(j0, j1):
        if summed:
            _compiled(packed.ctypes.data, n_bytes, Ys.ctypes.data, len(summed), n8, sums.ctypes.data, j0, j1)
        for c, bc in zip(counted, bits):
            LIBRARY.hlmm_class_counts(packed.ctypes.data, n_bytes, bc.ctypes.data, q, c, out.ctypes.data, j0, j1)

    run_ranges(each, b)
    if counted and summed:
        out[:, :, summed] = sums
    return out


def _zeros_and_ones(x: np.ndarray) -> bool:
    """Whether every value of ``x`` is 0 or 1."""
    return bool(np.all((x == 0.0) | (x == 1.0)))


def _indicator_bytes(x: np.ndarray, n_bytes: int) -> np.ndarray:
    """A column of zeros and ones over the individuals as ``n_bytes`` bytes laid out as a .bed's:
    individual ``4 b + p``'s value at bit ``2 p`` of byte ``b`` (zero past the column's end)."""
    v = np.zeros(4 * n_bytes, dtype=np.uint8)
    m = min(len(x), 4 * n_bytes)
    v[:m] = x[:m]
    v = v.reshape(n_bytes, 4)
    return np.ascontiguousarray(v[:, 0] | (v[:, 1] << 2) | (v[:, 2] << 4) | (v[:, 3] << 6))


@njit(cache=True, parallel=True)
def _class_moments_plain(packed, Yc):
    b, n_bytes = packed.shape
    n, q = Yc.shape
    out = np.zeros((b, 4, q))
    # class index by 2-bit code: 00 -> 2 copies, 01 -> missing (3), 10 -> 1 copy, 11 -> 0 copies
    slot = np.array([2, 3, 1, 0])
    full = n // 4  # bytes holding 4 individuals
    for j in prange(b):
        acc = np.zeros((8, 4, q))  # [i % 8, class, column]
        for byte in range(full):
            v = packed[j, byte]
            base = 4 * byte
            lane = 4 * (byte & 1)
            for p in range(4):
                k = slot[(v >> (2 * p)) & 3]
                for c in range(q):
                    acc[lane + p, k, c] += Yc[base + p, c]
        for i in range(4 * full, n):  # the last, partly filled byte
            v = packed[j, full]
            p = i - 4 * full
            k = slot[(v >> (2 * p)) & 3]
            for c in range(q):
                acc[i & 7, k, c] += Yc[i, c]
        # the combination is written out in each kernel: a compiled helper for it, although outside
        # the loop over individuals, made all three kernels 1.03-1.68 times slower (bench_kernels)
        for k in range(4):
            for c in range(q):
                out[j, k, c] = (((acc[0, k, c] + acc[1, k, c]) + (acc[2, k, c] + acc[3, k, c]))
                                + ((acc[4, k, c] + acc[5, k, c]) + (acc[6, k, c] + acc[7, k, c])))
    return out


@njit(cache=True, parallel=True)
def _class_moments_tiled(packed, Yc):
    b, n_bytes = packed.shape
    n, q = Yc.shape
    out = np.zeros((b, 4, q))
    slot = np.array([2, 3, 1, 0])
    group = 8
    chunk = max(16, 16384 // max(q, 1)) // 2 * 2  # bytes (even: lanes by i % 8): 4 * chunk rows of Yc, ~512 KB
    full = n // 4  # bytes holding 4 individuals
    for grp in prange((b + group - 1) // group):
        j0 = grp * group
        j1 = min(j0 + group, b)
        acc = np.zeros((j1 - j0, 8, 4, q))  # [variant, i % 8, class, column], indexed whole (views were slower)
        for c0 in range(0, full, chunk):
            c1 = min(c0 + chunk, full)
            for j in range(j0, j1):
                for byte in range(c0, c1):
                    v = packed[j, byte]
                    base = 4 * byte
                    lane = 4 * (byte & 1)
                    for p in range(4):
                        k = slot[(v >> (2 * p)) & 3]
                        for c in range(q):
                            acc[j - j0, lane + p, k, c] += Yc[base + p, c]
        for j in range(j0, j1):
            for i in range(4 * full, n):  # the last, partly filled byte
                p = i - 4 * full
                k = slot[(packed[j, full] >> (2 * p)) & 3]
                for c in range(q):
                    acc[j - j0, i & 7, k, c] += Yc[i, c]
            for k in range(4):
                for c in range(q):
                    out[j, k, c] = (((acc[j - j0, 0, k, c] + acc[j - j0, 1, k, c])
                                     + (acc[j - j0, 2, k, c] + acc[j - j0, 3, k, c]))
                                    + ((acc[j - j0, 4, k, c] + acc[j - j0, 5, k, c])
                                       + (acc[j - j0, 6, k, c] + acc[j - j0, 7, k, c])))
    return out


@njit(cache=True, parallel=True)
def class_moments_codes(codes, Yc, positions):
    """Like :func:`class_moments_packed`, from decoded hard calls ``codes`` (b, n), -1 missing,
    with ``Yc`` of shape (n, q) over the same individuals, whose places in their file are
    ``positions`` (n,): the partial sums go by ``positions % 8``, as the packed kernels' go by
    each individual's place in the file, so that both give the same sums to the last bit."""
    b, n = codes.shape
    q = Yc.shape[1]
    out = np.zeros((b, 4, q))
    group = 8
    chunk = max(64, 65536 // max(q, 1))
    for grp in prange((b + group - 1) // group):
        j0 = grp * group
        j1 = min(j0 + group, b)
        acc = np.zeros((j1 - j0, 8, 4, q))  # [variant, i % 8, class, column]
        for i0 in range(0, n, chunk):
            i1 = min(i0 + chunk, n)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    k = codes[j, i]
                    if k < 0:
                        k = 3
                    r = positions[i] & 7
                    for c in range(q):
                        acc[j - j0, r, k, c] += Yc[i, c]
        for j in range(j0, j1):
            for k in range(4):
                for c in range(q):
                    out[j, k, c] = (((acc[j - j0, 0, k, c] + acc[j - j0, 1, k, c])
                                     + (acc[j - j0, 2, k, c] + acc[j - j0, 3, k, c]))
                                    + ((acc[j - j0, 4, k, c] + acc[j - j0, 5, k, c])
                                       + (acc[j - j0, 6, k, c] + acc[j - j0, 7, k, c])))
    return out


@njit(cache=True)
def _distinct_sorted(row):
    """Distinct called values of ``row`` (not NaN, not negative) in increasing order."""
    n = row.shape[0]
    vals = np.empty(n)
    m = 0
    for i in range(n):
        if row[i] >= 0:  # False for NaN
            vals[m] = row[i]
            m += 1
    vals = np.sort(vals[:m])
    out = np.empty(m)
    k = 0
    for t in range(m):
        if t == 0 or vals[t] != vals[t - 1]:
            out[k] = vals[t]
            k += 1
    return out[:k]


def dosage_classes(dosages, Yc, denominator, parts=None):
    """Column sums of ``Yc`` over the individuals sharing each distinct dosage of each variant.

    Ragged: variant j's classes are rows ``offsets[j]:offsets[j + 1]`` of ``values`` and
    ``sums``, so that variants with many distinct dosages (fine .pgen grids) do not pad the
    others. A variant whose dosages all lie on the grid ``k / denominator`` (to within 1e-6 of a
    grid unit; ``denominator`` at most 65536) is binned by k; otherwise (or with ``denominator``
    0) its distinct values are found by sorting. Both give the same classes for dosages on the
    grid. Negative dosages count as missing, like NaN.

    Each class's rows are added in increasing individual, one running sum per class and column.
    With the compiled library (:data:`COMPILED`), ``denominator`` at most 32767, a C-contiguous
    ``Yc`` and C-contiguous rows of float32 or float64 dosages, the variants on the grid are summed
    by the C kernel (``_classsums.c``; see docs/performance.rst, "Dosages: the Wald's class sums in
    C"), the others by numba's; both add in the same order, so the sums are the same to the last
    bit. The C kernel takes two passes over ranges of variants on threads: the first finds each
    variant's classes, so that the second writes the sums straight to their places.

    Parameters
    ----------
    dosages : ndarray, shape (b, n)
    Yc : ndarray of float64, shape (n, q)
    denominator : int
    parts : list of sequences of int, optional
        Columns of ``Yc`` wanted together (a column may be in several parts): the sums are then
        returned per part, each a C-contiguous array of its own. Reading a few columns of one
        wide array of sums costs a pass over all of it (about 5 ms per phenotype for 41 variants
        of 9,000 classes and 21 columns at n = 100,000); arrays per part cost nothing more.

    Returns
    -------
    offsets : ndarray of int64, shape (b + 1,)
    values : ndarray, shape (K,)
        Distinct dosages of each variant, increasing.
    sums : ndarray, shape (K, q), or list of ndarray of shape (K, len(part))
    missing : ndarray, shape (b, q), or list of ndarray of shape (b, len(part))
    """
    whole = parts is None
    if whole:
        parts = [range(Yc.shape[1])]
    cols = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
    starts = np.zeros(len(parts) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(p) for p in parts])
    b = dosages.shape[0]
    compiled = (_dosage_classes_c is not None and 0 < denominator <= 32767 and b > 0
                and dosages.dtype in _dosage_classes_c and dosages.ndim == 2
                and dosages.strides[1] == dosages.itemsize and Yc.flags.c_contiguous and Yc.dtype == np.float64)
    if compiled:
        on_grid = np.zeros(b, dtype=np.uint8)
        counts = np.zeros(b, dtype=np.int64)
        bounds = _classes_compiled(dosages, denominator, on_grid, counts)
    else:
        on_grid, counts = _grid_counts(dosages, denominator)
    # numba's parallel loops over the variants took 0.5-0.8 ms a call even with nothing to do
    off_grid = not on_grid.all()
    if off_grid:
        _distinct_counts(dosages, on_grid.view(np.bool_), counts)
    offsets = np.zeros(b + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    K = int(offsets[b])
    # part p's array starts at element first[p], a multiple of 8 (64 bytes into the buffer), so that
    # every part has the buffer's alignment whatever K is: the last bits of a BLAS product (the G×E
    # class engine multiplies these sums) can depend on its operands' alignment
    first = np.zeros(len(parts) + 1, dtype=np.int64)
    first[1:] = np.cumsum([(K * len(p) + 7) // 8 * 8 for p in parts])
    # every element that the returned views hold is written below (by the C kernel for the variants
    # on the grid, by _fill_classes for the others): zeroing them first took 0.03 ms per variant of
    # CPU on the 1/16384 grid, 300 KB per variant for one phenotype
    values = np.empty(K)
    flat = _sums_buffer(int(first[-1]))
    flat_missing = np.empty(b * len(cols))
    if compiled:
        # chunks of a wide design only if four variants' sums of all its columns may not fit in a
        # group (fine grids; at n = 500,000 the chunks of 21 columns are 96 MB; chunks of squares,
        # where its columns include squares of others, half that for 10 phenotypes)
        q = Yc.shape[1]
        wide = q > COMPILED_DOSAGE_COLUMNS and on_grid.any()
        Yt = place = None
        if wide and 4 * (counts[on_grid.view(np.bool_)].max() + 1) * q * 8 > LIBRARY.hlmm_dosage_cache():
            Yt, place = _square_chunks(Yc) or (_column_chunks(Yc), None)
        _each_range(bounds, dosages.shape, lambda address, j0, j1: LIBRARY.hlmm_dosage_sums(
            dosages.shape[1], denominator, Yc.ctypes.data, q, None if Yt is None else Yt.ctypes.data,
            None if place is None else place.ctypes.data, 0 if Yt is None else Yt.shape[0], on_grid.ctypes.data,
            offsets.ctypes.data, cols.ctypes.data, starts.ctypes.data, len(parts), first.ctypes.data,
            b, values.ctypes.data, flat.ctypes.data, flat_missing.ctypes.data, address, j0, j1))
        on_grid = on_grid.view(np.bool_)
    if off_grid or not compiled:
        _fill_classes(dosages, Yc, denominator, cols, starts, first, offsets, on_grid, not compiled, values, flat,
                      flat_missing)
    sums = [flat[first[p] : first[p] + K * len(parts[p])].reshape(K, -1) for p in range(len(parts))]
    missing = [flat_missing[b * starts[p] : b * starts[p + 1]].reshape(b, -1) for p in range(len(parts))]
    return (offsets, values, sums[0], missing[0]) if whole else (offsets, values, sums, missing)


_outputs = threading.local()


def _unused_references() -> int:
    """``sys.getrefcount`` of an array that only a thread's attribute refers to, seen as
    :func:`_sums_buffer` sees its own (3 in CPython 3.11: the attribute, the local name and the
    call's argument), measured by the same steps rather than assumed."""
    probe = threading.local()
    probe.flat = np.empty(1)
    held = getattr(probe, "flat", None)
    return sys.getrefcount(held)


_UNUSED_REFERENCES = _unused_references()


def _sums_buffer(size: int) -> np.ndarray:
    """An uninitialised float64 array of ``size`` elements for :func:`dosage_classes`'s sums: the
    calling thread's last one while nothing else refers to it (every view of the sums it last held
    is gone), so that its pages are not faulted in and zeroed again for every block (2.2 MB per
    variant for 10 phenotypes on the 1/16384 grid: ``clear_page_erms`` took 7.5% of a 10-phenotype
    scan's samples under perf); a new one, kept in its place, otherwise."""
    held = getattr(_outputs, "flat", None)
    if held is not None and held.size >= size and sys.getrefcount(held) == _UNUSED_REFERENCES:
        return held[:size]
    flat = np.empty(size)
    _outputs.flat = flat
    return flat


_chunks, _squares = threading.local(), threading.local()


def _made_once(local: threading.local, Yc: np.ndarray, make):
    """``make(Yc)``, made once for the calling thread's last two designs (kept in ``local``: the
    scanners pass the same design for every block)."""
    cache = local.__dict__.setdefault("entries", [])
    for ref, made in cache:
        if ref() is Yc:
            return made
    made = make(Yc)
    cache.insert(0, (weakref.ref(Yc), made))
    del cache[2:]
    return made


def _column_chunks(Yc: np.ndarray) -> np.ndarray:
    """``Yc``'s columns ``w`` at a time (``w`` = ``hlmm_dosage_chunk()`` of the compiled library, 8),
    each ``w`` a C-contiguous (n, w) array, zeros past the last: ((q + w - 1) // w, n, w), for the
    compiled class sums of designs wider than ``COMPILED_DOSAGE_COLUMNS``. Made once for the calling
    thread's last few designs (:func:`_made_once`)."""

    def make(Yc):
        n, q = Yc.shape
        w = int(LIBRARY.hlmm_dosage_chunk())
        Yt = np.zeros(((q + w - 1) // w, n, w))
        for c in range(0, q, w):
            Yt[c // w, :, : min(w, q - c)] = Yc[:, c : c + w]
        return Yt

    return _made_once(_chunks, Yc, make)


def _square_chunks(Yc: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``Yc``'s columns as chunks of four columns and their squares, for the compiled class sums
    of designs wider than ``COMPILED_DOSAGE_COLUMNS`` whose columns include squares of others (a
    phenotype's 1, y and y ** 2): ``(Yt, place)``, ``Yt`` of shape (chunks, n, 4) holding the
    columns that are not squares of earlier ones (zeros past the last), column ``c`` of ``Yc`` at
    ``place[c]`` of the chunks' rows of 8 (chunk ``place[c] // 8``; the squares of a chunk's four
    columns at 4 to 7, which the kernel makes as ``y * y``). A column is taken as a square only if
    it equals ``y * y`` of its column to the last bit (no -0.0), so that the sums are the same.
    None if that does not take fewer bytes in as many passes as :func:`_column_chunks` (no squares,
    or too few). Made once for the calling thread's last few designs (:func:`_made_once`)."""

    def make(Yc):
        n, q = Yc.shape
        w = int(LIBRARY.hlmm_dosage_chunk())
        kept, place = [], np.zeros(q, dtype=np.int64)
        head = Yc[:64]
        for c in range(q):
            square = next((k for k, a in enumerate(kept)
                           if np.array_equal(head[:, a] * head[:, a], head[:, c])
                           and np.array_equal(Yc[:, a] * Yc[:, a], Yc[:, c])
                           and not np.signbit(Yc[:, c]).any()), None)
            if square is None:
                kept.append(c)
                k = len(kept) - 1
                place[c] = k // 4 * w + k % 4
            else:
                place[c] = square // 4 * w + 4 + square % 4
        chunks = -(-len(kept) // 4)
        if len(kept) == q or chunks > -(-q // w):
            return None
        Yt = np.zeros((chunks, n, 4))
        for k, a in enumerate(kept):
            Yt[k // 4, :, k % 4] = Yc[:, a]
        return Yt, place

    return _made_once(_squares, Yc, make)


def _each_range(bounds: list, shape: tuple, call) -> None:
    """``call(address, j0, j1)``, a pass of the compiled dosage class kernel returning 0 (or nonzero
    if out of memory), over the ranges of variants ``bounds`` on threads (:func:`run_ranges`, which
    splits at the same bounds), each with the address of its state in this (calling) thread's
    :class:`_KeptBuffers`; MemoryError if a range ran out of memory."""
    state = _kept_buffers().ranges(len(bounds) - 1)
    status = [0] * (len(bounds) - 1)

    def run(j0, j1):
        t = bounds.index(j0)
        status[t] = call(state[t:].ctypes.data, j0, j1)

    run_ranges(run, bounds[-1], minimum=4)
    if any(status):
        raise MemoryError(f"out of memory for the class sums of {shape[0]} variants of {shape[1]} dosages")


def _classes_compiled(dosages, denominator, on_grid, counts) -> list:
    """The first pass of the compiled dosage class kernel (``hlmm_dosage_keys_*``: on the grid or
    not, classes, and each range's class indices and grid values present in its work area) over
    ranges of variants on threads. Returns the ranges' bounds, for the second pass.

    The work areas are this (calling) thread's, kept for its next blocks: allocated afresh for each
    block they were paged in afresh, which cost more than the sums."""
    b, n = dosages.shape
    bounds = range_bounds(b, minimum=4)
    f = _dosage_classes_c[dosages.dtype]
    stride = dosages.strides[0] // dosages.itemsize
    _each_range(bounds, dosages.shape, lambda address, j0, j1: f(
        dosages.ctypes.data, stride, n, denominator, on_grid.ctypes.data, counts.ctypes.data, address, j0, j1))
    return bounds


class _KeptBuffers:
    """One calling thread's work areas of the compiled dosage class kernel: ``state[t]`` is range
    t's three (address, bytes), allocated and grown by the kernel (``kept`` in ``_classsums.c``),
    all freed with this object (when its thread ends, and the thread's local values with it)."""

    def __init__(self) -> None:
        self.state = np.zeros((0, 6), dtype=np.int64)

    def ranges(self, count: int) -> np.ndarray:
        """The state of at least ``count`` ranges (the work areas so far kept)."""
        if self.state.shape[0] < count:
            state = np.zeros((count, 6), dtype=np.int64)
            state[: self.state.shape[0]] = self.state
            self.state = state
        return self.state

    def __del__(self) -> None:
        free = _free
        if free is None:
            return
        for address in self.state[:, [0, 2, 4]].ravel():
            if address:
                free(int(address))
        self.state = self.state[:0]


#: Per calling thread, its :class:`_KeptBuffers` (attribute ``kept``).
_buffers = threading.local()
_free = None if LIBRARY is None else LIBRARY.hlmm_free


def _kept_buffers() -> _KeptBuffers:
    """This thread's :class:`_KeptBuffers`."""
    if not hasattr(_buffers, "kept"):
        _buffers.kept = _KeptBuffers()
    return _buffers.kept


@njit(cache=True, parallel=True)
def _grid_counts(dosages, denominator):
    """Per variant, whether its called dosages all lie on the grid ``k / denominator`` (see
    :func:`dosage_classes`), and if so its number of distinct called dosages (else 0:
    :func:`_distinct_counts` counts those)."""
    b, n = dosages.shape
    grid = 0 < denominator <= 65536
    width = 2 * denominator + 1 if grid else 1
    on_grid = np.zeros(b, dtype=np.bool_)
    counts = np.zeros(b, dtype=np.int64)
    for j in prange(b):
        ok = grid
        if grid:
            present = np.zeros(width, dtype=np.int32)
            row = dosages[j]
            for i in range(n):
                d = row[i]
                if d >= 0:  # False for NaN
                    x = d * denominator
                    k = int(x + 0.5)
                    if abs(x - k) > 1e-6 or k >= width:
                        ok = False
                        break
                    present[k] = 1
            if ok:
                c = 0
                for v in range(width):
                    c += present[v]
                counts[j] = c
        on_grid[j] = ok
    return on_grid, counts


@njit(cache=True, parallel=True)
def _distinct_counts(dosages, on_grid, counts):
    """``counts[j]``: the number of distinct called dosages of each variant off the grid."""
    for j in prange(dosages.shape[0]):
        if not on_grid[j]:
            counts[j] = _distinct_sorted(dosages[j]).shape[0]


@njit(cache=True, parallel=True)
def _fill_classes(dosages, Yc, denominator, cols, starts, first, offsets, on_grid, grid_too, values, sums, missing):
    """The class values and sums of :func:`dosage_classes` of the variants off the grid, and of
    those on it if ``grid_too``; part p's columns ``cols[starts[p]:starts[p + 1]]`` (r of them)
    are a C-contiguous (K, r) array from element ``first[p]`` of ``sums`` and from element
    ``b starts[p]`` of ``missing``."""
    b, n = dosages.shape
    q = Yc.shape[1]
    width = 2 * denominator + 1 if 0 < denominator <= 65536 else 1
    P = starts.shape[0] - 1
    # Scratch arrays are each variant's own (allocated in its loop), not rows of block-wide
    # arrays: at n = 100,000 this took 0.42 against 0.70 ms per variant (64 variants, 3 columns,
    # an in-process timing script not kept; ``benchmarks/bench_kernels.py --b 64 --widths 3`` times
    # this kernel),
    # the block-wide ones being paged in afresh for every block. Within a class the rows are
    # added in the order of the individuals, as before, so the sums are the same to the last bit.
    for j in prange(b):
        if on_grid[j] and not grid_too:
            continue
        o = offsets[j]
        if on_grid[j]:
            # class of each individual first (-1: missing), then the sums in a local array:
            # measured 35-50% faster than adding into ``sums`` while looking the classes up
            slot = np.zeros(width, dtype=np.int32)
            keys = np.empty(n, dtype=np.int32)
            row = dosages[j]
            for i in range(n):
                d = row[i]
                if d >= 0:
                    v = int(d * denominator + 0.5)
                    keys[i] = v
                    slot[v] = 1
                else:
                    keys[i] = -1
            k = 0
            for v in range(width):
                if slot[v]:
                    slot[v] = k
                    values[o + k] = v / denominator
                    k += 1
            acc = np.zeros((k + 1, q))
            for i in range(n):
                r = keys[i]
                r = slot[r] if r >= 0 else k
                for c in range(q):
                    acc[r, c] += Yc[i, c]
        else:
            vals = _distinct_sorted(dosages[j])
            k = vals.shape[0]
            values[o : o + k] = vals
            acc = np.zeros((k + 1, q))
            for i in range(n):
                d = dosages[j, i]
                r = np.searchsorted(vals, d) if d >= 0 else k
                for c in range(q):
                    acc[r, c] += Yc[i, c]
        # each part's columns into its own array
        for p in range(P):
            r_p = starts[p + 1] - starts[p]
            base = first[p] + o * r_p
            for r in range(k):
                for jj in range(r_p):
                    sums[base + r * r_p + jj] = acc[r, cols[starts[p] + jj]]
            for jj in range(r_p):
                missing[b * starts[p] + j * r_p + jj] = acc[k, cols[starts[p] + jj]]


@threads_by_work(lambda offsets, x: x.size)
@njit(cache=True, parallel=True)
def segment_sums(offsets, x):
    """Sums of the rows ``offsets[j]:offsets[j + 1]`` of ``x`` (K, q) for each j: (b, q)."""
    b = offsets.shape[0] - 1
    out = np.zeros((b, x.shape[1]))
    for j in prange(b):
        for k in range(offsets[j], offsets[j + 1]):
            for c in range(x.shape[1]):
                out[j, c] += x[k, c]
    return out


@njit(cache=True)
def _count_sums(counts, values, k0, k1):
    """The sum of ``counts[k0:k1]`` and of ``counts * values`` over them, added in class order."""
    n = 0.0
    s = 0.0
    for k in range(k0, k1):
        n += counts[k]
        s += counts[k] * values[k]
    return n, s


@threads_by_work(lambda offsets, counts, values: counts.shape[0])
@njit(cache=True, parallel=True)
def segment_count_sums(offsets, counts, values):
    """Per variant j, over its classes ``offsets[j]:offsets[j + 1]``: the sum of ``counts`` and the
    sum of ``counts * values``, each added in class order: (b, 2)."""
    b = offsets.shape[0] - 1
    out = np.zeros((b, 2))
    for j in prange(b):
        out[j, 0], out[j, 1] = _count_sums(counts, values, offsets[j], offsets[j + 1])
    return out


@njit(cache=True)
def _combined(S, coef, k):
    """``S[k, :len(coef)] @ coef``, term by term in column order."""
    x = S[k, 0] * coef[0]
    for t in range(1, coef.shape[0]):
        x = x + S[k, t] * coef[t]
    return x


@threads_by_work(lambda S, coef: S.shape[0] * coef.shape[0])
@njit(cache=True, parallel=True)
def combine_columns(S, coef):
    """``S[:, :len(coef)] @ coef`` term by term in column order, for each row of ``S`` (K, r)."""
    K = S.shape[0]
    out = np.empty(K)
    for k in prange(K):
        out[k] = _combined(S, coef, k)
    return out


@threads_by_work(lambda offsets, values, counts, hsums: 2 * counts.shape[0])
@njit(cache=True, parallel=True)
def centred_segment_sums(offsets, values, counts, hsums):
    """Per variant j, over its classes ``offsets[j]:offsets[j + 1]``: ``sum g h``, ``sum g^2`` and
    ``sum g^3`` over the individuals, with ``g = value - mean`` centred over them, from the classes'
    ``values``, ``counts`` and sums ``hsums`` of ``h``: (b, 3). NaN for a variant without calls."""
    b = offsets.shape[0] - 1
    out = np.zeros((b, 3))
    for j in prange(b):
        n, s = _count_sums(counts, values, offsets[j], offsets[j + 1])
        if not n > 0:
            out[j, 0] = out[j, 1] = out[j, 2] = np.nan
            continue
        mean = s / n
        a = 0.0
        q2 = 0.0
        q3 = 0.0
        for k in range(offsets[j], offsets[j + 1]):
            if counts[k] > 0:
                g = values[k] - mean
                a += g * hsums[k]
                w = counts[k] * g * g
                q2 += w
                q3 += w * g
        out[j, 0] = a
        out[j, 1] = q2
        out[j, 2] = q3
    return out


def centred_combinations_sums(offsets, values, Ss, coefs, ns):
    """:func:`centred_combinations_sums_numba` by the compiled library's
    ``hlmm_centred_combinations`` where it is built (the same operations in the same order, so the
    same bits; over ranges of variants on threads, up to four phenotypes side by side): numba's
    loop, each phenotype's terms from a tuple of arrays in turn, took 0.59 against 0.21 ms of CPU
    per variant for 10 phenotypes of dos.pgen (docs/performance.rst). Its ``Ss`` may differ in
    layout (strided rows, as the scanners pass them), numba's not."""
    b, T = offsets.shape[0] - 1, len(Ss)
    if LIBRARY is None or b == 0 or T == 0:
        return centred_combinations_sums_numba(offsets, values, Ss, coefs, ns)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    ns = np.ascontiguousarray(ns, dtype=np.float64)
    Ss = [S if S.dtype == np.float64 and S.strides[1] == 8 and S.strides[0] % 8 == 0 else
          np.ascontiguousarray(S, dtype=np.float64) for S in Ss]
    coefs = [np.ascontiguousarray(c, dtype=np.float64) for c in coefs]
    if any(c.shape[0] < 1 or c.shape[0] > S.shape[1] for S, c in zip(Ss, coefs)):
        raise ValueError("each combination needs from 1 to as many terms as its sums have columns")
    S_at = np.array([S.ctypes.data for S in Ss], dtype=np.uintp)
    c_at = np.array([c.ctypes.data for c in coefs], dtype=np.uintp)
    rows = np.array([S.strides[0] // 8 for S in Ss], dtype=np.int64)
    r = np.array([c.shape[0] for c in coefs], dtype=np.int64)
    out = np.empty((T, b, 3))
    run_ranges(lambda j0, j1: LIBRARY.hlmm_centred_combinations(
        offsets.ctypes.data, values.ctypes.data, S_at.ctypes.data, rows.ctypes.data, c_at.ctypes.data,
        r.ctypes.data, T, ns.ctypes.data, j0, j1, b, out.ctypes.data), b, minimum=4)
    return out


@threads_by_work(lambda offsets, values, Ss, coefs, ns: Ss[0].shape[0] * len(Ss) * coefs[0].shape[0])
@njit(cache=True, parallel=True)
def centred_combinations_sums_numba(offsets, values, Ss, coefs, ns):
    """:func:`centred_segment_sums` of one or more phenotypes whose counts are the same
    (``Ss[t][:, 0]``, every t: the phenotypes of the same individuals, whose sums come from the
    same pass), with h's class sums the combination ``Ss[t][:, :len(coefs[t])] @ coefs[t]``
    (:func:`combine_columns`): ``Ss`` and ``coefs`` are tuples of one array per phenotype, and
    ``out[t]`` the same numbers to the last bit as ``centred_segment_sums(offsets, values,
    Ss[t][:, 0], combine_columns(Ss[t], coefs[t]))``, in one pass. ``ns`` (b, 2) are the counts'
    :func:`segment_count_sums`, which the scanners have computed already (for the calls and
    frequencies): passed, they are not added again (a pass over the classes, 0.02 ms per variant
    of the 1/16384 grid on the scan's own thread). Written out and read back, the combinations had
    taken 8% of a Wald scan of 10 phenotypes on the 1/16384 grid; and each phenotype's sum of g h
    waited for its last addition, class after class, where the phenotypes' sums side by side do not
    wait for each other (the pass per phenotype took 0.43-0.46 ms per variant in all)."""
    b = offsets.shape[0] - 1
    T = len(Ss)
    out = np.zeros((T, b, 3))
    counts = Ss[0][:, 0]
    for j in prange(b):
        n = ns[j, 0]
        if not n > 0:
            out[:, j, :] = np.nan
            continue
        mean = ns[j, 1] / n
        a = np.zeros(T)
        q2 = 0.0
        q3 = 0.0
        for k in range(offsets[j], offsets[j + 1]):
            if counts[k] > 0:
                g = values[k] - mean
                for t in range(T):
                    a[t] += g * _combined(Ss[t], coefs[t], k)
                w = counts[k] * g * g
                q2 += w
                q3 += w * g
        for t in range(T):
            out[t, j, 0] = a[t]
            out[t, j, 1] = q2
            out[t, j, 2] = q3
    return out
