"""BGEN v1.2/v1.3 genotype source (layout 2), decoded with numpy and one compiled pass (numba).

The counted allele is the *second* allele of each variant, as in regenie and in UK Biobank
files (allele 1 = REF, allele 2 = ALT). plink2 writes REF second by default; a .bed/.pgen
exported with ``plink2 ... --export bgen-1.2 ref-first`` puts REF (the .bim's A2) first and ALT
(A1) second, and then gives here the same counts as the .bed gives for A1.

Sample IDs: with a ``.sample`` file (``ID_1 ID_2 ...`` header and ``0 0 ...`` type line), FID is
ID_1 and IID is ID_2, which is how plink2 writes them; a QCTOOL v2 ``.sample`` (single ``ID``
column, plink2's ``sample-v2``) and the identifiers embedded in the .bgen give IID with FID
``"0"``, which is what plink2 does with them. A .bgen without embedded identifiers needs a
``.sample`` file (plink2 refuses it too).

Probabilities stored with B bits are integers ``v`` in 0..2^B-1, so every dosage is an integer
``k`` over ``2^B - 1``; it is computed as the integer ``k`` and one division, so the float64
returned is the double nearest to ``k / (2^B - 1)`` (for 8-bit files, ``round(d * 255)`` is
``k``). Diploid samples' pairs take one compiled pass
(:func:`hlmm.io._kernels.bgen_pair_dosages`), other ploidies numpy's. Zlib (v1.2) blocks are
inflated by ``isal`` if it is installed, else by the standard library; zstd (v1.3) blocks need
``zstandard``.

Phased and unphased probabilities, any B from 1 to 32 and ploidy 1 or 2 are read; haploid
samples (males on chrX, as plink2 writes them) count 0..2 like plink2's coding of haploid calls.
Multi-allelic variants read as NaN. Layout 1 (BGEN v1.1) is refused.

A block of variants is inflated and decoded by several threads (zlib, isal and zstd release the
GIL, and so do the compiled pass and numpy on arrays this long): the calling thread and the helper threads of a pool
kept by each :class:`BgenSource` take the variants a few at a time, each writing its own rows of
the block, so the dosages are those of a one-thread read bit for bit. See ``threads`` there.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as _wait_all

import numpy as np

from hlmm.io._base import GenotypeSource, InputError, VariantTable, checked_request, hard_calls_of, sex_code
from hlmm.io._kernels import bgen_pair_dosages

__all__ = ["BgenSource", "open_bgen", "read_sample_file"]

try:  # ISA-L's inflate is about 1.5x faster than zlib's on these blocks; optional
    from isal.isal_zlib import decompress as _inflate
except ImportError:
    _inflate = zlib.decompress

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

#: Most threads :attr:`BgenSource.threads` defaults to (beyond this, memory bandwidth and the
#: GIL-held part of each variant's decoding stop the gains).
MAX_DEFAULT_THREADS = 8
#: Blocks of fewer variants are read by the calling thread alone.
MIN_PARALLEL_VARIANTS = 8
#: Files of fewer samples are read by the calling thread alone: a variant's inflate and numpy
#: calls are then too short for the threads' handing over of the GIL to pay (measured on 2 cores
#: with isal: 0.5x the one-thread speed at 5,000 samples, 1.0x at 10,000-15,000, 1.2x at 20,000,
#: 1.6x at 100,000).
MIN_PARALLEL_SAMPLES = 20_000
# Variants taken at a time by a thread: up to this many, and small enough that each thread gets
# about 4 turns of a block, so the block's end is not left to one thread.
_MAX_STEP = 16

_ALL = np.zeros(0, dtype=np.int64)  # bgen_pair_dosages's rows for every sample, in order
_pool_worker = threading.local()  # .active in the helper threads of every BgenSource's pool


def _mark_pool_worker() -> None:
    _pool_worker.active = True


def default_threads() -> int:
    """Threads a :class:`BgenSource` reads with by default: the CPUs this process may run on
    (``os.sched_getaffinity``), at most :data:`MAX_DEFAULT_THREADS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, cpus))


def read_sample_file(path: str) -> list[tuple[str, str]]:
    """(FID, IID) per line of an Oxford ``.sample`` file (:func:`read_sample_sex` gives the sex).

    Parameters
    ----------
    path : str
        A v1 file (``ID_1 ID_2 ...`` then ``0 0 ...``: FID = ID_1, IID = ID_2) or a QCTOOL v2
        file (``ID ...`` then ``0 ...``: IID = ID, FID = ``"0"``).

    Returns
    -------
    list of (str, str)

    Raises
    ------
    InputError
        If the file is missing, its two header lines are not as above, or a line is short.
    """
    if not os.path.isfile(path):
        raise InputError(f"sample file {path}: not found")
    with open(path, encoding="utf-8") as f:
        lines = [line.split() for line in f]
    lines = [fields for fields in lines if fields]
    if len(lines) < 2:
        raise InputError(f"sample file {path}: bad header: needs a column-name line and a column-type line")
    names, types = [c.upper() for c in lines[0]], lines[1]
    if names[:2] == ["ID_1", "ID_2"] and types[:2] == ["0", "0"]:
        short = next((i for i, fields in enumerate(lines[2:], 3) if len(fields) < 2), None)
        if short is not None:
            raise InputError(f"sample file {path}: data line {short} has fewer than 2 columns")
        return [(fields[0], fields[1]) for fields in lines[2:]]
    if names[:1] == ["ID"] and types[:1] == ["0"]:
        return [("0", fields[0]) for fields in lines[2:]]
    shown = " ".join(lines[0][:3]) + " / " + " ".join(lines[1][:3])
    raise InputError(f"sample file {path}: bad header: expected 'ID_1 ID_2 ...' / '0 0 ...' (or 'ID ...' / '0 ...'), "
                     f"found '{shown}'")


def read_sample_sex(path: str) -> np.ndarray | None:
    """Sex codes (1 male, 2 female, 0 unknown) of the samples of a ``.sample`` file that has a ``sex``
    column (any case; values 1/2, M/F or male/female), else None."""
    with open(path, encoding="utf-8") as f:
        lines = [line.split() for line in f]
    lines = [fields for fields in lines if fields]
    names = [c.upper() for c in lines[0]]
    if "SEX" not in names:
        return None
    k = names.index("SEX")
    return np.array([sex_code(fields[k]) if len(fields) > k else 0 for fields in lines[2:]], dtype=np.int8)


def _zstd_decompressor():
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard.ZstdDecompressor()


class BgenSource(GenotypeSource):
    """Genotype probabilities of a BGEN v1.2/v1.3 file, read block by block as dosages.

    Parameters
    ----------
    path : str
        The ``.bgen`` file.
    sample : str, optional
        An Oxford ``.sample`` file with the sample IDs (required if the .bgen has none; used in
        preference to the embedded IDs otherwise).
    what : str
        How error messages name the file.
    threads : int, optional
        Threads that inflate and decode a block of variants in :meth:`read_dosages` (the calling
        thread and ``threads - 1`` helpers of a pool this source keeps, started on first use and
        stopped by :meth:`close`). Default :func:`default_threads`: the CPUs this process may
        use, at most 8. 1 reads in the calling thread only, as do blocks of fewer than
        :data:`MIN_PARALLEL_VARIANTS` variants and files of fewer than
        :data:`MIN_PARALLEL_SAMPLES` samples, where threads are slower. The dosages do not depend
        on it. Several threads may call :meth:`read_dosages` at once (they share the helpers),
        including a helper thread of a pool (which then reads alone).

    Attributes
    ----------
    format : str
        ``"bgen"``.
    path : str
    sample_path : str or None
    samples : list of (str, str)
        (FID, IID) per sample in file order, length n.
    variants : VariantTable
        m variants; ``id`` is the rsid field (the SNP id field where rsid is empty), ``a1`` is the
        second allele, ``a2`` the first (then the third, ... for multi-allelic variants).
    has_dosages : bool
        Always True: BGEN stores probabilities.
    threads : int
        As the parameter (None sets the default again); may be changed between reads.
    """

    format = "bgen"
    has_dosages = True

    def __init__(self, path: str, sample: str | None = None, what: str = "genotype file",
                 threads: int | None = None) -> None:
        if not os.path.isfile(path):
            raise InputError(f"{what} {path}: not found")
        self.path = path
        self.sample_path = sample
        self.threads = threads
        self._inflate = _inflate
        self._open()
        try:
            self._parse(self._size)
            self.dosage_denominator = self._first_denominator()
        except BaseException:
            self.close()
            raise

    @property
    def threads(self) -> int:
        return self._n_threads

    @threads.setter
    def threads(self, value: int | None) -> None:
        if value is None:
            value = default_threads()
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"threads must be a positive integer, got {value!r}")
        self._n_threads = int(value)

    def _open(self) -> None:
        self._threads = threading.local()  # per-thread decompressors (the map itself is shared, read-only)
        self._pool, self._pool_size, self._pool_pid = None, 0, 0  # helper threads, started on first use
        self._pool_lock = threading.Lock()
        self._size = os.path.getsize(self.path)
        self._file = open(self.path, "rb")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if self._size else b""

    def _first_denominator(self) -> int:
        """``2^B - 1`` for the B bits of the first bi-allelic variant's probabilities (dosages are
        multiples of its inverse if every variant has the same B, as writers do; the scan checks)."""
        for j in np.flatnonzero(self.variants.n_alleles == 2)[:1]:
            data = self._probabilities(int(j))
            if len(data) > 9 + self._n:
                return (1 << data[9 + self._n]) - 1
        return 0

    def __getstate__(self) -> dict:
        """Picklable (for worker processes): the file is mapped again where it is unpickled."""
        state = dict(self.__dict__)
        state["_file"], state["_mm"], state["_threads"] = None, None, None
        state["_pool"], state["_pool_lock"] = None, None  # threads and locks stay here; _open makes new ones
        state["_inflate"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._inflate = _inflate
        self._open()

    # ------------------------------------------------------------------------------------------
    def _parse(self, size: int) -> None:
        path, buf = self.path, self._mm
        if size < 24:
            raise InputError(f"genotype file {path}: {size} bytes, too short for a BGEN header")
        offset, lh, m, n = struct.unpack_from("<IIII", buf, 0)
        magic = bytes(buf[16:20])
        if magic not in (b"bgen", b"\0\0\0\0") or lh < 20 or offset < lh:
            raise InputError(f"genotype file {path}: not a BGEN file (bad header)")
        if 4 + offset > size:
            raise InputError(f"genotype file {path}: truncated: {size} bytes, the header says variants start at "
                             f"byte {4 + offset}")
        (flags,) = _U32.unpack_from(buf, lh)
        self._compression = flags & 3
        layout = (flags >> 2) & 15
        if layout != 2:
            raise InputError(f"genotype file {path}: BGEN layout {layout} (v1.1 or older) is not supported; "
                             f"convert it with plink2 --export bgen-1.2")
        if self._compression == 3:
            raise InputError(f"genotype file {path}: unknown compression code 3 in the header flags")
        if self._compression == 2:
            if _zstd_decompressor() is None:
                raise InputError(f"genotype file {path}: zstd-compressed (BGEN v1.3) needs the 'zstandard' package")
        if n == 0:
            raise InputError(f"genotype file {path}: has no samples")

        embedded = None
        if flags >> 31:
            lsi, n_ids = struct.unpack_from("<II", buf, 4 + lh)
            if n_ids != n:
                raise InputError(f"genotype file {path}: header says {n} samples but its sample block lists {n_ids}")
            if lh + lsi > offset:
                raise InputError(f"genotype file {path}: sample block overlaps the variant data (corrupt header)")
            if self.sample_path is None:
                embedded = self._embedded_ids(4 + lh + 8, n)
        if self.sample_path is not None:
            self.samples = read_sample_file(self.sample_path)
            self.sex = read_sample_sex(self.sample_path)
            if len(self.samples) != n:
                raise InputError(f"genotype file {path}: {n} samples but {self.sample_path} lists {len(self.samples)}")
        elif embedded is not None:
            self.samples = [("0", iid) for iid in embedded]
        else:
            raise InputError(f"genotype file {path}: contains no sample IDs; give its .sample file (--sample)")
        self._n = n
        self._index_variants(4 + offset, m, size)

    def _embedded_ids(self, pos: int, n: int) -> list[str]:
        buf, ids = self._mm, []
        for _ in range(n):
            (length,) = _U16.unpack_from(buf, pos)
            ids.append(bytes(buf[pos + 2 : pos + 2 + length]).decode())
            pos += 2 + length
        return ids

    def _index_variants(self, pos: int, m: int, size: int) -> None:
        """Walk the m variant headers from byte ``pos``; record annotation and block offsets."""
        buf, path = self._mm, self.path
        u16, u32 = _U16.unpack_from, _U32.unpack_from
        ids, chroms, a1s, a2s = [None] * m, [None] * m, [None] * m, [None] * m
        pos_arr = np.empty(m, dtype=np.int64)
        n_alleles = np.empty(m, dtype=np.int64)
        block = np.empty(m, dtype=np.int64)  # byte offset of each genotype block (its length field)
        i = 0
        try:
            for i in range(m):
                (ln,) = u16(buf, pos)
                snpid = buf[pos + 2 : pos + 2 + ln]
                pos += 2 + ln
                (ln,) = u16(buf, pos)
                rsid = buf[pos + 2 : pos + 2 + ln]
                pos += 2 + ln
                (ln,) = u16(buf, pos)
                chroms[i] = buf[pos + 2 : pos + 2 + ln].decode()
                pos += 2 + ln
                pos_arr[i], k = struct.unpack_from("<IH", buf, pos)
                pos += 6
                alleles = []
                for _ in range(k):
                    (ln,) = u32(buf, pos)
                    alleles.append(buf[pos + 4 : pos + 4 + ln].decode())
                    pos += 4 + ln
                (c,) = u32(buf, pos)
                block[i] = pos
                pos += 4 + c
                ids[i] = (rsid or snpid).decode()
                n_alleles[i] = k
                if k >= 2:
                    a1s[i] = alleles[1]
                    a2s[i] = ",".join([alleles[0]] + alleles[2:])
                else:
                    a1s[i], a2s[i] = "", ",".join(alleles)
                if pos > size:
                    raise struct.error
        except (struct.error, IndexError):
            raise InputError(f"genotype file {path}: truncated: {size} bytes, variant {i + 1} of {m} "
                             f"runs past the end") from None
        except UnicodeDecodeError:
            raise InputError(f"genotype file {path}: variant {i + 1} has a name that is not UTF-8 (corrupt)") from None
        self._block = block
        self.variants = VariantTable(
            id=np.array(ids, dtype=object),
            chrom=np.array(chroms, dtype=object),
            pos=pos_arr,
            a1=np.array(a1s, dtype=str),
            a2=np.array(a2s, dtype=str),
            n_alleles=n_alleles,
        )

    # ------------------------------------------------------------------------------------------
    def files(self) -> list[str]:
        """Every file that defines the data: the .bgen and, if given, the .sample."""
        return [self.path] + ([self.sample_path] if self.sample_path else [])

    def _probabilities(self, j: int) -> bytes:
        """Uncompressed genotype block of variant j."""
        buf, pos = self._mm, int(self._block[j])
        (c,) = _U32.unpack_from(buf, pos)
        if self._compression == 0:
            return buf[pos + 4 : pos + 4 + c]
        (d,) = _U32.unpack_from(buf, pos + 4)
        data = buf[pos + 8 : pos + 4 + c]
        try:
            if self._compression == 1:
                out = self._inflate(data, bufsize=d)
            else:  # a ZstdDecompressor is not thread-safe: one per thread
                local = self._threads
                if not hasattr(local, "zstd"):
                    local.zstd = _zstd_decompressor()
                out = local.zstd.decompress(data, max_output_size=d)
        except Exception as e:
            raise InputError(f"genotype file {self.path}: variant {j + 1} cannot be decompressed ({e})") from None
        if len(out) != d:
            raise InputError(f"genotype file {self.path}: variant {j + 1} decompresses to {len(out)} bytes, "
                             f"its header says {d}")
        return out

    def _dosage_row(self, j: int, rows: np.ndarray | None, out: np.ndarray) -> None:
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
            if bits in (8, 16, 32):
                v = np.frombuffer(data, dtype=f"<u{bits // 8}", count=2 * n, offset=10 + n).reshape(n, 2)
            else:
                v = _unpack_bits(data, 10 + n, 2 * n, bits).reshape(n, 2)
            # unphased: stored P(11), P(12), k = 2 top - (2 P(11) + P(12)); phased: P(allele 1) on
            # each haplotype, k = 2 top - (P1 + P2); in float64, where these integers (< 2^34) are
            # exact, then divided once: the double nearest to k / top (one compiled pass)
            bgen_pair_dosages(v, _ALL if rows is None else rows, ploidy, -1.0 if phased else -2.0, top, out)
            return
        # other ploidies (chrX with haploid males): Z values per sample, unphased P(0..Z-1 copies of
        # allele 2) weighted Z-j, or phased P(allele 1) per haplotype weighted 1
        z = (ploidy & 0x3F).astype(np.int64)
        total = int(z.sum())
        if len(data) < 10 + n + (total * bits + 7) // 8:
            raise InputError(f"genotype file {self.path}: variant {j + 1}: probability block is truncated")
        v = _unpack_bits(data, 10 + n, total, bits).astype(np.int64)
        starts = np.cumsum(z) - z
        w = 1 if phased else np.repeat(z, z) - (np.arange(total) - np.repeat(starts, z))
        cumulative = np.concatenate(([0], np.cumsum(w * v)))
        weighted = cumulative[starts + z] - cumulative[starts]
        # haploid samples count 0..2, as plink2 codes them (a haploid call is stored as homozygous)
        k_units = np.where(z == 1, 2 * (top - weighted), 2 * top - weighted)
        dos = k_units / top
        dos[(ploidy >= 0x80) | (z == 0) | (z > 2)] = np.nan
        out[:] = dos if rows is None else dos[rows]

    def read_dosages(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Expected counts of the second allele for a block of variants.

        Parameters
        ----------
        rows : ndarray of int64, shape (k,)
            Strictly increasing sample indices into :attr:`samples`.
        start, stop : int
            Variants ``start .. stop-1`` in file order.

        Returns
        -------
        ndarray of float64, shape (stop - start, k)
            Dosages in [0, 2], each the double nearest to an integer over ``2^B - 1``; NaN where
            missing, for samples of ploidy 0 or above 2, and for whole rows of multi-allelic
            variants. Haploid samples (males on chrX) count twice the expected count of their
            one allele, as plink2 codes haploid calls (0/2).
        """
        rows, sub = self._check(rows, start, stop)
        out = np.empty((stop - start, len(rows)), dtype=np.float64)
        threads = min(self._n_threads, stop - start)
        if threads < 2 or stop - start < MIN_PARALLEL_VARIANTS or self._n < MIN_PARALLEL_SAMPLES or not len(rows) \
                or getattr(_pool_worker, "active", False):
            for j in range(start, stop):
                self._read_row(j, sub, out[j - start])
        else:
            self._read_parallel(sub, start, stop, out, threads)
        return out

    def _read_row(self, j: int, rows: np.ndarray | None, out: np.ndarray) -> None:
        """Fill ``out`` (shape (k,)) with the dosages of variant j (NaN if multi-allelic)."""
        if self.variants.n_alleles[j] != 2:
            out[:] = np.nan
        elif len(out):
            self._dosage_row(j, rows, out)

    def _helpers(self, k: int) -> ThreadPoolExecutor:
        """This source's pool of at least ``k`` helper threads (started on first use, or again in a
        forked child, whose copy of the pool has no threads)."""
        with self._pool_lock:
            if self._file is None:  # closed: no new threads (the read fails as a one-thread read does)
                raise RuntimeError("closed")
            pool, pid = self._pool, os.getpid()
            if pool is None or self._pool_pid != pid or self._pool_size < k:
                if pool is not None and self._pool_pid == pid:
                    pool.shutdown(wait=False)  # its running tasks finish; they hand out no more work
                pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix="hlmm-bgen",
                                          initializer=_mark_pool_worker)
                self._pool, self._pool_size, self._pool_pid = pool, k, pid
            return pool

    def _read_parallel(self, rows: np.ndarray | None, start: int, stop: int, out: np.ndarray, threads: int) -> None:
        """:meth:`_read_row` for variants start..stop-1 into ``out``, by the calling thread and
        ``threads - 1`` helpers, each taking the next few variants until none are left.

        An error stops the handing out; the variants already taken are finished, so the error of
        the first failing variant (the one a one-thread read raises) is among those recorded and
        is raised here. The caller never waits on a helper that has not started (it cancels it:
        the caller has by then done the work itself), so a pool too busy to start one, or this
        very call made from a pool thread, cannot deadlock.
        """
        step = max(1, min(_MAX_STEP, (stop - start) // (4 * threads)))
        lock = threading.Lock()
        state = {"next": start, "stopped": False}
        errors: list[tuple[int, BaseException]] = []

        def work() -> None:
            while True:
                with lock:
                    j0 = state["next"]
                    if state["stopped"] or j0 >= stop:
                        return
                    state["next"] = j1 = min(j0 + step, stop)
                j = j0
                try:
                    for j in range(j0, j1):
                        self._read_row(j, rows, out[j - start])
                except Exception as e:
                    with lock:
                        errors.append((j, e))
                        state["stopped"] = True
                    return

        futures = []
        try:
            pool = self._helpers(threads - 1)
            for _ in range(threads - 1):
                futures.append(pool.submit(work))
        except RuntimeError:  # closed, or the pool shut down by close() in another thread: read on alone
            pass
        try:
            work()
        finally:
            with lock:
                state["stopped"] = True  # (already so, unless the caller was interrupted)
            running = [f for f in futures if not f.cancel()]
            _wait_all(running)
        for f in running:
            f.result()  # a BaseException that escaped a helper (not an Exception: those are in errors)
        if errors:
            raise min(errors, key=lambda e: e[0])[1]

    def read_codes(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Nearest hard calls (copies of the second allele) for a block of variants.

        Parameters
        ----------
        rows : ndarray of int64, shape (k,)
            Strictly increasing sample indices into :attr:`samples`.
        start, stop : int
            Variants ``start .. stop-1`` in file order.

        Returns
        -------
        ndarray of int8, shape (stop - start, k)
            Dosages rounded to the nearest integer (halves round up); -1 where missing and for
            multi-allelic variants.
        """
        return hard_calls_of(self.read_dosages(rows, start, stop))

    def _check(self, rows: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        rows = checked_request(self.path, rows, start, stop, self._n, len(self.variants))
        return rows, (None if len(rows) == self._n else rows)

    def close(self) -> None:
        """Stop the helper threads; release the memory map and the file (idempotent)."""
        lock = getattr(self, "_pool_lock", None)
        if lock is not None:
            with lock:
                pool, self._pool, self._pool_size = self._pool, None, 0
            if pool is not None and self._pool_pid == os.getpid():
                pool.shutdown(wait=True)
        mm = getattr(self, "_mm", None)
        if isinstance(mm, mmap.mmap):
            mm.close()
        self._mm = b""
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()
            self._file = None

    def __enter__(self) -> BgenSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BgenSource({self.path!r}, n={len(self.samples)}, m={len(self.variants)})"


def _unpack_bits(data: bytes, offset: int, count: int, bits: int) -> np.ndarray:
    """``count`` unsigned integers of ``bits`` bits packed LSB-first from byte ``offset``.

    Returns
    -------
    ndarray of uint64, shape (count,)
    """
    n_bytes = (count * bits + 7) // 8
    raw = np.frombuffer(data, dtype=np.uint8, count=n_bytes, offset=offset)
    flat = np.unpackbits(raw, bitorder="little")[: count * bits].reshape(count, bits)
    return flat.astype(np.uint64) @ (np.uint64(1) << np.arange(bits, dtype=np.uint64))


def open_bgen(path: str, sample: str | None = None, what: str = "genotype file",
              threads: int | None = None) -> BgenSource:
    """Open a BGEN v1.2/v1.3 file; see :class:`BgenSource`.

    Parameters
    ----------
    path : str
        The .bgen file.
    sample : str, optional
        Its Oxford ``.sample`` file. Without it the IDs embedded in the .bgen are used as IIDs
        with FID ``"0"`` (as plink2 does); a .bgen without embedded IDs then raises.
    what : str
        How error messages name the file.
    threads : int, optional
        Threads that read a block of variants (see :class:`BgenSource`).

    Returns
    -------
    BgenSource

    Raises
    ------
    InputError
        One line naming the file: not a BGEN v1.2/1.3 file, a truncated file, a .sample with a
        bad header or a different number of samples, or no sample IDs at all.
    """
    return BgenSource(path, sample, what, threads)
