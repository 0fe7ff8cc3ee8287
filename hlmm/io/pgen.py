"""PLINK 2 ``.pgen`` + ``.pvar`` + ``.psam`` genotype source, read with pgenlib.

The counted allele is ALT (for a multi-allelic variant, ALT1; such variants read as NaN).
``plink2 --bfile X --make-pgen`` turns the .bim's A1 (column 5) into ALT and A2 into REF, so a
converted .bed gives the same counts here as the .bed gives for A1.

Sample IDs come from the ``.psam`` (``#FID IID ...`` or ``#IID ...``; without a FID column the
FID is ``"0"``, as in plink2) or, failing that, a PLINK 1 ``.fam``. Variants come from the
``.pvar`` (``#CHROM POS ID REF ALT ...``, optionally zstd-compressed as ``.pvar.zst``; a pvar
without a ``#CHROM`` header has .bim columns) or a ``.bim``.

Dosages in a .pgen are stored in units of 1/16384; pgenlib returns them as exactly those
multiples (``d * 16384`` is an integer, exactly, in float64). Hard calls are returned as 0/1/2.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hlmm.io._base import (
    GenotypeSource,
    InputError,
    VariantTable,
    checked_request,
    hard_calls_of,
    kept_rows,
    same_rows,
    sex_code,
)
from hlmm.io._kernels import negative_to_nan, pack_codes_into

__all__ = ["PgenSource", "open_pgen", "DOSAGE_UNIT"]

#: pgen dosages are integer multiples of this
DOSAGE_UNIT = 1.0 / 16384.0

_PGEN_MAGIC = b"\x6c\x1b"
_VBLOCK = 1 << 16  # variants per pgen "vblock"
#: A thread decodes dosages this many values at a time (2 MB of float32, 5 variants at n = 100,000)
#: and makes the missing ones (pgenlib's -9) NaN while they are in its cache. Reading 4,000 variants
#: of ``dos.pgen`` in parts of 41 on two threads (n = 100,000, medians of 5) took 0.062-0.067 ms per
#: variant, against 0.069-0.070 with one numba pass over each part after its decoding; 2^18 to
#: 2^22 values at a time measured 0.065-0.070 (a script in /tmp, not kept).
_HOT_VALUES = 1 << 19


# ----------------------------------------------------------------------------------------------
# Text companions
# ----------------------------------------------------------------------------------------------
def _open_text(path: str) -> io.TextIOBase:
    """Open a plain or zstd-compressed (``.zst``) text file."""
    if path.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise InputError(f"variant file {path}: is zstd-compressed; install the 'zstandard' package") from None
        raw = open(path, "rb")
        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), encoding="utf-8")
    return open(path, encoding="utf-8")


def _read_pvar(path: str) -> VariantTable:
    """Parse a .pvar (or .bim) file into a :class:`VariantTable` counting ALT (ALT1)."""
    ids, chroms, poss, refs, alts = [], [], [], [], []
    cols = None  # (chrom, pos, id, ref, alt) column indices
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith("##") or not line.strip():
                continue
            fields = line.split()
            if cols is None:
                if fields[0] == "#CHROM":
                    names = [c.upper() for c in fields]
                    missing = [c for c in ("#CHROM", "POS", "ID", "REF", "ALT") if c not in names]
                    if missing:
                        raise InputError(f"variant file {path}: header line {lineno} lacks {', '.join(missing)}")
                    cols = tuple(names.index(c) for c in ("#CHROM", "POS", "ID", "REF", "ALT"))
                    continue
                if fields[0].startswith("#"):
                    raise InputError(f"variant file {path}: line {lineno} is a header that does not start with #CHROM")
                # headerless: .bim column order CHROM ID CM POS ALT(A1) REF(A2); plink2 also allows 5 columns
                cols = (0, 3, 1, 5, 4) if len(fields) >= 6 else (0, 2, 1, 4, 3)
            if len(fields) <= max(cols):
                raise InputError(f"variant file {path}: line {lineno} has {len(fields)} columns, needs {max(cols) + 1}")
            chroms.append(fields[cols[0]])
            poss.append(fields[cols[1]])
            ids.append(fields[cols[2]])
            refs.append(fields[cols[3]])
            alts.append(fields[cols[4]])
    try:
        pos = np.array(poss, dtype=np.int64)
    except ValueError:
        bad = next(p for p in poss if not p.lstrip("-").isdigit())
        raise InputError(f"variant file {path}: position {bad!r} is not an integer") from None
    alt_lists = [a.split(",") for a in alts]
    n_alleles = np.array([1 + len(a) for a in alt_lists], dtype=np.int64)
    a1 = np.array([a[0] for a in alt_lists], dtype=object)
    a2 = np.array([",".join([r] + a[1:]) if len(a) > 1 else r for r, a in zip(refs, alt_lists)], dtype=object)
    return VariantTable(
        id=np.array(ids, dtype=object),
        chrom=np.array(chroms, dtype=object),
        pos=pos,
        a1=a1,
        a2=a2,
        n_alleles=n_alleles,
    )


def _read_psam(path: str) -> tuple[list[tuple[str, str]], np.ndarray | None]:
    """(FID, IID) per sample of a .psam or .fam file (FID ``"0"`` where the .psam has none), and the
    samples' sex codes (None for a .psam without a SEX column)."""
    samples: list[tuple[str, str]] = []
    sex: list[int] = []
    fid_col, iid_col, sex_col = 0, 1, 4  # .fam / headerless .psam
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields or line.startswith("##"):
                continue
            if fields[0].startswith("#"):
                if samples:
                    raise InputError(f"sample file {path}: header on line {lineno} after data lines")
                names = [c.upper() for c in fields]
                names[0] = names[0][1:]
                if "IID" not in names:
                    raise InputError(f"sample file {path}: header line {lineno} has no IID column")
                iid_col = names.index("IID")
                fid_col = names.index("FID") if "FID" in names else None
                sex_col = names.index("SEX") if "SEX" in names else None
                continue
            if len(fields) <= max(iid_col, fid_col or 0):
                raise InputError(f"sample file {path}: line {lineno} has {len(fields)} columns")
            samples.append(("0" if fid_col is None else fields[fid_col], fields[iid_col]))
            if sex_col is not None:
                sex.append(sex_code(fields[sex_col]) if len(fields) > sex_col else 0)
    return samples, (np.array(sex, dtype=np.int8) if sex_col is not None and len(sex) == len(samples) else None)


# ----------------------------------------------------------------------------------------------
# .pgen header
# ----------------------------------------------------------------------------------------------
def _pgen_header(path: str, size: int) -> dict:
    """Read what the .pgen header says about counts, dosages and the expected file size.

    Returns a dict with ``mode`` (int), ``n_variants`` and ``n_samples`` (None for mode 0x01,
    which stores no counts), ``has_dosages`` (bool; True when unknown) and ``expected_size``
    (int, or None when it cannot be derived cheaply).
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 3 or head[:2] != _PGEN_MAGIC:
            raise InputError(f"genotype file {path}: not a .pgen file (bad magic bytes)")
        mode = head[2]
        if mode == 0x01:  # PLINK 1 variant-major .bed payload
            return {"mode": mode, "n_variants": None, "n_samples": None, "has_dosages": False, "expected_size": None}
        if len(head) < 12:
            raise InputError(f"genotype file {path}: truncated: {size} bytes, shorter than the 12-byte .pgen header")
        n_variants, n_samples, ctrl = struct.unpack_from("<IIB", head, 3)
        info = {"mode": mode, "n_variants": n_variants, "n_samples": n_samples, "has_dosages": True,
                "expected_size": None}
        if mode == 0x02:
            info["has_dosages"] = False
            return info
        if mode not in (0x10, 0x11) or (ctrl & 15) > 7:
            return info  # fixed-width dosage modes or an unknown layout: let pgenlib judge
        n_blocks = (n_variants + _VBLOCK - 1) // _VBLOCK
        fpos = np.frombuffer(f.read(8 * n_blocks), dtype="<u8")
        if len(fpos) < n_blocks:
            raise InputError(f"genotype file {path}: truncated: {size} bytes, the header lists {n_blocks} blocks")
        vrtype_bits = 4 if (ctrl & 15) < 4 else 8
        len_bytes = (ctrl & 3) + 1
        allele_ct_bytes = (ctrl >> 4) & 3
        nonref_stored = (ctrl >> 6) == 3
        any_dosage = False
        last_len = 0
        for b in range(n_blocks):
            k = min(_VBLOCK, n_variants - b * _VBLOCK)
            n_type_bytes = k if vrtype_bits == 8 else (k + 1) // 2
            types = f.read(n_type_bytes)
            lens = f.read(k * len_bytes)
            if len(types) < n_type_bytes or len(lens) < k * len_bytes:
                raise InputError(f"genotype file {path}: truncated: {size} bytes, ends inside its header")
            if vrtype_bits == 8 and np.any(np.frombuffer(types, dtype=np.uint8) & 0x60):
                any_dosage = True
            f.seek(k * allele_ct_bytes + ((k + 7) // 8 if nonref_stored else 0), os.SEEK_CUR)
            if b == n_blocks - 1:
                padded = np.frombuffer(lens, dtype=np.uint8).reshape(k, len_bytes)
                last_len = int((padded.astype(np.int64) << (8 * np.arange(len_bytes))).sum())
        info["has_dosages"] = any_dosage
        if n_blocks and f.tell() == int(fpos[0]):  # the layout was understood
            info["expected_size"] = int(fpos[-1]) + last_len
        return info


# ----------------------------------------------------------------------------------------------
# The source
# ----------------------------------------------------------------------------------------------
def _companion(prefix: str, exts: tuple[str, ...]) -> str | None:
    for ext in exts:
        if os.path.exists(prefix + ext):
            return prefix + ext
    return None


class PgenSource(GenotypeSource):
    """Genotypes of a PLINK 2 fileset, read block by block.

    Parameters
    ----------
    path : str
        The ``.pgen`` file (or its prefix). ``.pvar``/``.pvar.zst``/``.bim`` and ``.psam``/``.fam``
        with the same prefix must exist.

    Attributes
    ----------
    format : str
        ``"pgen"``.
    path : str
        The .pgen path.
    samples : list of (str, str)
        (FID, IID) per sample in file order, length n.
    variants : VariantTable
        m variants; ``a1`` is ALT (ALT1), ``a2`` is REF (followed by ALT2, ... if any).
    has_dosages : bool
        True if any variant stores dosages (then :meth:`read_codes` rounds the dosages).
    threads : int
        Threads that decode a block (pgenlib releases the GIL): the calling thread and
        ``threads - 1`` helpers, each with a reader of its own, on consecutive parts of the block.
        Default: the CPUs this process may use, at most 8 (as :class:`~hlmm.io.BgenSource`); the
        runner gives each worker process its share. The genotypes do not depend on it.
    """

    format = "pgen"

    dosage_denominator = 16384

    def __init__(self, path: str, what: str = "genotype file") -> None:
        prefix = path[:-5] if path.endswith(".pgen") else path
        path = prefix + ".pgen"
        if not os.path.isfile(path):
            raise InputError(f"genotype file {path}: not found")
        self.path = path
        self.pvar_path = _companion(prefix, (".pvar", ".pvar.zst", ".bim"))
        if self.pvar_path is None:
            raise InputError(f"genotype file {path}: variant file {prefix}.pvar not found (nor .pvar.zst, .bim)")
        self.psam_path = _companion(prefix, (".psam", ".fam"))
        if self.psam_path is None:
            raise InputError(f"genotype file {path}: sample file {prefix}.psam not found (nor .fam)")

        self.samples, self.sex = _read_psam(self.psam_path)
        self.variants = _read_pvar(self.pvar_path)
        n, m = len(self.samples), len(self.variants)
        if n == 0:
            raise InputError(f"sample file {self.psam_path}: lists no samples")

        size = os.path.getsize(path)
        head = _pgen_header(path, size)
        if head["mode"] == 0x01:
            expected = 3 + m * ((n + 3) // 4)
            if size != expected:
                raise InputError(f"genotype file {path}: {size} bytes, expected {expected} for {m} variants "
                                 f"({self.pvar_path}) x {n} samples ({self.psam_path})")
        else:
            if head["n_samples"] != n:
                raise InputError(f"genotype file {path}: {head['n_samples']} samples but {self.psam_path} lists {n}")
            if head["n_variants"] != m:
                raise InputError(f"genotype file {path}: {head['n_variants']} variants but {self.pvar_path} lists {m}")
            if head["expected_size"] is not None and size < head["expected_size"]:
                raise InputError(f"genotype file {path}: truncated: {size} bytes, its header implies "
                                 f"{head['expected_size']}")
        self.has_dosages = bool(head["has_dosages"])
        self._multi = self.variants.n_alleles > 2
        offsets = None
        if self._multi.any():
            offsets = np.zeros(m + 1, dtype=np.uintp)
            offsets[1:] = np.cumsum(self.variants.n_alleles)
        self._offsets = offsets
        self._init_readers()
        self._reader()  # checks that pgenlib accepts the file

    def _init_readers(self) -> None:
        # A pgenlib reader is stateful (its sample subset, its buffers): one per thread, so that the
        # threads of a Dask worker sharing this source cannot mix their blocks.
        self._threads = threading.local()
        self._open_readers: list = []
        self._lock = threading.Lock()
        self._pool, self._pool_size, self._pool_pid = None, 0, 0  # helper threads of a block's decoding
        if not hasattr(self, "threads"):
            from hlmm.io.bgen import default_threads

            self.threads = default_threads()

    def _parts(self, start: int, stop: int, n_rows: int, read) -> None:
        """``read(s, e)`` over consecutive parts of variants start..stop-1: the first on this thread,
        the others on helper threads (each with its own reader; ``read`` selects the rows on it).
        One part for fewer than 16 variants or 20,000 rows (the .bgen reader's threshold, where
        handing over cost more than it saved; not measured for .pgen)."""
        parts = min(self.threads, (stop - start) // 8)
        if parts < 2 or n_rows < 20_000:
            read(start, stop)
            return
        bounds = [start + (stop - start) * t // parts for t in range(parts + 1)]
        with self._lock:
            # a forked child's copy of the pool has no threads: a new one
            if self._pool is None or self._pool_size < parts - 1 or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=parts - 1, thread_name_prefix="hlmm-pgen")
                self._pool_size, self._pool_pid = parts - 1, os.getpid()
            pool = self._pool
        futures = [pool.submit(read, bounds[t], bounds[t + 1]) for t in range(1, parts)]
        try:
            read(bounds[0], bounds[1])
        except BaseException:
            for f in futures:  # finish the helpers' parts, but raise this thread's error, the first part's
                f.exception()
            raise
        for f in futures:
            f.result()

    def _reader(self):
        """This thread's reader, opened on first use."""
        local = self._threads
        if getattr(local, "reader", None) is None:
            import pgenlib

            try:
                local.reader = pgenlib.PgenReader(self.path.encode(), raw_sample_ct=len(self.samples),
                                                  variant_ct=len(self.variants), allele_idx_offsets=self._offsets)
            except Exception as e:  # pgenlib raises RuntimeError with a multi-line text
                msg = " ".join(str(e).split())
                raise InputError(f"genotype file {self.path}: pgenlib cannot open it: {msg}") from None
            local.rows = None  # the reader's current sample subset (None = all)
            local.given = None  # the rows it was made from (kept_rows)
            with self._lock:
                self._open_readers.append(local.reader)
        return local.reader

    def __getstate__(self) -> dict:
        """Picklable (for worker processes): readers are opened where it is unpickled."""
        state = dict(self.__dict__)
        for key in ("_threads", "_open_readers", "_lock", "_pool", "_pool_size", "_pool_pid"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_readers()

    # ------------------------------------------------------------------------------------------
    def files(self) -> list[str]:
        """Every file that defines the data: the .pgen, the variant file and the sample file."""
        return [self.path, self.pvar_path, self.psam_path]

    def _select(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Validate arguments and point this thread's reader at the sample subset ``rows``."""
        rows = checked_request(self.path, rows, start, stop, len(self.samples), len(self.variants))
        self._point(rows)
        return rows

    def _point(self, rows: np.ndarray) -> None:
        """Point this thread's reader at the (valid) sample subset ``rows``."""
        reader, local = self._reader(), self._threads
        full = len(rows) == len(self.samples)
        if full:
            want = None
        elif local.rows is not None and same_rows(local.given, rows):
            want = local.rows
        else:
            want = rows.astype(np.uint32)
            local.given = kept_rows(rows)
        if len(rows) and (want is not local.rows):
            reader.change_sample_subset(want)
            local.rows = want

    def read_dosages(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Expected counts of ALT for a block of variants.

        Parameters
        ----------
        rows : ndarray of int64, shape (k,)
            Strictly increasing sample indices into :attr:`samples`.
        start, stop : int
            Variants ``start .. stop-1`` in file order.

        Returns
        -------
        ndarray of float64, shape (stop - start, k)
            Dosages in [0, 2], multiples of 1/16384 (exactly 0/1/2 for hard calls); NaN where
            missing and for whole rows of multi-allelic variants.
        """
        return self._dosages(rows, start, stop, np.float64)

    def _block_dosages(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        # Blocks for the scans hold float32: pgenlib decodes into it about twice as fast as into
        # float64, and a .pgen dosage (a multiple of 1/16384 in [0, 2]) is exact in float32.
        return self._dosages(rows, start, stop, np.float32)

    def _dosages(self, rows: np.ndarray, start: int, stop: int, dtype) -> np.ndarray:
        rows = self._select(rows, start, stop)
        out = np.empty((stop - start, len(rows)), dtype=dtype)
        if out.size == 0:
            return out

        step = max(1, _HOT_VALUES // len(rows))

        def read(s, e):
            self._point(rows)  # this thread's reader, on the same rows
            reader = self._threads.reader
            for a in range(s, e, step):  # a few variants at a time, each part's -9 (missing) made NaN
                part = out[a - start:min(a + step, e) - start]  # while it is in this thread's cache
                reader.read_dosages_range(a, min(a + step, e), part)
                negative_to_nan(part)

        self._parts(start, stop, len(rows), read)
        out[self._multi[start:stop]] = np.nan
        return out

    def read_codes(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Hard calls (copies of ALT) for a block of variants.

        Parameters
        ----------
        rows : ndarray of int64, shape (k,)
            Strictly increasing sample indices into :attr:`samples`.
        start, stop : int
            Variants ``start .. stop-1`` in file order.

        Returns
        -------
        ndarray of int8, shape (stop - start, k)
            0/1/2, or -1 where missing and for multi-allelic variants. When the file stores
            dosages these are the dosages rounded to the nearest integer (0.5 and 1.5 round up),
            not plink2's stored hard calls (which are missing for dosages far from an integer).
        """
        if self.has_dosages:
            return hard_calls_of(self.read_dosages(rows, start, stop))
        rows = self._select(rows, start, stop)
        out = np.empty((stop - start, len(rows)), dtype=np.int8)
        if out.size == 0:
            return out

        def read(s, e):
            self._point(rows)
            self._threads.reader.read_range(s, e, out[s - start:e - start])

        self._parts(start, stop, len(rows), read)
        np.maximum(out, -1, out=out)  # pgenlib's -9 (in place: no mask of the block)
        out[self._multi[start:stop]] = -1
        return out

    def _block_packed(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        # Hard calls decoded a few variants at a time into a buffer of each thread's and packed
        # from it while it is in cache, without a block of int8 calls in memory (read_codes's)
        if self.has_dosages:
            return super()._block_packed(rows, start, stop)
        rows = self._select(rows, start, stop)
        out = np.empty((stop - start, (len(self.samples) + 3) // 4), dtype=np.uint8)
        if not len(rows):
            out[:] = 0xFF  # no samples: no calls, as pack_codes packs them
            return out
        step = max(1, _HOT_VALUES // len(rows))
        multi = self._multi

        def read(s, e):
            self._point(rows)
            reader = self._threads.reader
            buf = np.empty((min(step, e - s), len(rows)), dtype=np.int8)
            for a in range(s, e, step):
                z = min(a + step, e)
                part = buf[:z - a]
                reader.read_range(a, z, part)
                part[multi[a:z]] = -1  # multi-allelic: missing (pgenlib's -9 packs as missing too)
                pack_codes_into(part, rows, out[a - start:z - start])

        self._parts(start, stop, len(rows), read)
        return out

    def close(self) -> None:
        """Release the pgenlib readers of every thread (idempotent)."""
        with self._lock:
            readers, self._open_readers = self._open_readers, []
            pool, self._pool, self._pool_size = self._pool, None, 0
        if pool is not None:
            pool.shutdown(wait=True)
        for reader in readers:
            reader.close()
        self._threads = threading.local()

    def __enter__(self) -> PgenSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PgenSource({self.path!r}, n={len(self.samples)}, m={len(self.variants)})"


def open_pgen(path: str, what: str = "genotype file") -> PgenSource:
    """Open a PLINK 2 ``.pgen`` fileset; see :class:`PgenSource`.

    Parameters
    ----------
    path : str
        The .pgen path or its prefix.

    Returns
    -------
    PgenSource

    Raises
    ------
    InputError
        One line naming the file: a missing companion file, counts that disagree between
        .pgen, .pvar and .psam, a truncated .pgen or one that pgenlib rejects.
    """
    return PgenSource(path, what)
