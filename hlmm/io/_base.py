"""What every genotype source shares: errors, the variant table, blocks and the source interface.

A genotype source is one file format behind one interface (:class:`GenotypeSource`): the samples'
IDs, a variant table, reading a block of variants for given samples, and the files that identify
it. Nothing outside :mod:`hlmm.io` knows file formats.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["InputError", "OutputError", "VariantTable", "GenotypeBlock", "GenotypeSource", "os_reason", "hard_calls_of",
           "sex_code", "MALE", "FEMALE", "UNKNOWN_SEX"]


class InputError(ValueError):
    """A problem with an input file or argument, described in one line."""


class OutputError(InputError):
    """A problem writing an output file (disk full, a directory in the way, ...), in one line."""


def os_reason(e: BaseException) -> str:
    """A short human description of an OS error."""
    if isinstance(e, FileNotFoundError):
        return "no such file or directory"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    if isinstance(e, NotADirectoryError):
        return "a component of the path is not a directory"
    if isinstance(e, UnicodeDecodeError):
        return "not a UTF-8 text file"
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return "no space left on device"
    if isinstance(e, OSError) and e.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return getattr(e, "strerror", None) or str(e)


@dataclass
class VariantTable:
    """Variants of a genotype file, in file order.

    Attributes
    ----------
    id, chrom : ndarray of str, shape (m,)
    pos : ndarray of int64, shape (m,)
    a1 : ndarray of str, shape (m,)
        The counted allele: the .bim's 5th column for .bed, ALT for .pgen, the second allele for .bgen.
    a2 : ndarray of str, shape (m,)
        The other allele (alleles, comma-separated, for multi-allelic variants).
    n_alleles : ndarray of int, shape (m,)
    """

    id: np.ndarray
    chrom: np.ndarray
    pos: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    n_alleles: np.ndarray

    def __len__(self) -> int:
        return len(self.id)

    def take(self, index: np.ndarray) -> "VariantTable":
        """The rows ``index`` of the table."""
        return VariantTable(*(getattr(self, f)[index] for f in ("id", "chrom", "pos", "a1", "a2", "n_alleles")))


@dataclass
class GenotypeBlock:
    """Genotypes of a block of variants for a set of samples.

    Attributes
    ----------
    index : ndarray of int64, shape (b,)
        Variant indices into the source's variant table.
    rows : ndarray of int64, shape (n,)
        Sample indices into the source's samples (sorted).
    codes : ndarray of int8, shape (b, n) or None
        Hard calls: copies of the counted allele, -1 for a missing call. None when ``dosages``.
    dosages : ndarray of float64 or float32, shape (b, n) or None
        Expected copies of the counted allele, NaN where missing; None for hard calls. float32
        only where exact (.pgen dosages, multiples of 1/16384); engines compute in float64.
    denominator : int
        Dosages are multiples of ``1 / denominator`` (1 for hard calls).
    packed : ndarray of uint8, shape (b, ceil(n_file / 4)) or None
        For hard calls: the packed 2-bit genotypes of all samples of the file, as a .bed's bytes
        (a .bed's own; for other files ``codes`` packed, with the samples not in ``rows`` as no
        copy), which the class engines read directly.
    n_file : int
        Number of samples in the file (for ``packed``).
    multiallelic : ndarray of bool, shape (b,)
        Variants with more than two alleles; their genotypes are all missing.
    """

    index: np.ndarray
    rows: np.ndarray
    codes: np.ndarray | None = None
    dosages: np.ndarray | None = None
    denominator: int = 1
    packed: np.ndarray | None = None
    n_file: int = 0
    multiallelic: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.multiallelic is None:
            self.multiallelic = np.zeros(len(self.index), dtype=bool)

    @property
    def n_variants(self) -> int:
        return len(self.index)

    def values(self, subset: np.ndarray | None = None) -> np.ndarray:
        """Genotypes as float64, shape (n, b) (or (len(subset), b)), NaN for missing calls."""
        if self.dosages is not None:
            d = self.dosages if subset is None else self.dosages[:, subset]
            return np.ascontiguousarray(d.T, dtype=np.float64)
        c = self.get_codes() if subset is None else self.get_codes()[:, subset]
        return np.where(c < 0, np.nan, c).T.astype(np.float64)

    def integral_rows(self) -> np.ndarray:
        """Whether each variant's genotypes are all whole numbers (hard calls, or dosages of a
        file of hard calls such as a .bgen made from a .bed)."""
        if self.dosages is None:
            return np.ones(self.n_variants, dtype=bool)
        d = self.dosages
        with np.errstate(invalid="ignore"):
            return np.all(np.isnan(d) | (d == np.rint(d)), axis=1)

    def hard_codes(self, which: np.ndarray | None = None) -> np.ndarray:
        """Hard calls of the variants ``which`` (all by default), which must be whole numbers."""
        if self.dosages is None:
            c = self.get_codes()
            return c if which is None else c[which]
        d = self.dosages if which is None else self.dosages[which]
        return np.where(np.isnan(d), -1, np.nan_to_num(d)).astype(np.int8)

    def take(self, which: np.ndarray) -> "GenotypeBlock":
        """The block of the variants at positions ``which`` (within this block)."""
        def sub(a):
            return None if a is None else a[which]

        return GenotypeBlock(self.index[which], self.rows, sub(self.codes), sub(self.dosages), self.denominator,
                             sub(self.packed), self.n_file, self.multiallelic[which])

    def get_codes(self) -> np.ndarray:
        """Hard calls (int8, (b, n), -1 missing), decoding packed bytes if needed."""
        if self.codes is None:
            if self.packed is None:
                raise ValueError("a block of dosages has no hard calls; read it with hard_calls=True")
            from hlmm.io._kernels import decode_packed

            self.codes = decode_packed(self.packed, np.ascontiguousarray(self.rows, dtype=np.int64), self.n_file)
        return self.codes


class GenotypeSource:
    """Interface of a genotype file; one subclass per format.

    Attributes
    ----------
    format : str
        ``"bed"``, ``"pgen"`` or ``"bgen"``.
    path : str
        The genotype file (``.bed``, ``.pgen``, ``.bgen``).
    samples : list of (str, str)
        (FID, IID) per sample, in file order.
    variants : VariantTable
    has_dosages : bool
        Whether genotypes may be non-integer dosages.
    dosage_denominator : int
        Dosages are multiples of ``1 / dosage_denominator`` (0 if unknown).
    sex : ndarray of int8, shape (n,), or None
        Sex of each sample (:data:`MALE`, :data:`FEMALE`, :data:`UNKNOWN_SEX`), from the .fam's
        5th column, the .psam's ``SEX`` column or the .sample's ``sex`` column; None if the file
        says nothing of sex.
    """

    format: str = ""
    path: str = ""
    samples: list
    variants: VariantTable
    has_dosages: bool = False
    dosage_denominator: int = 1
    sex: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def n_variants(self) -> int:
        return len(self.variants)

    def files(self) -> list:
        """Every file that defines the genotypes (for run fingerprints)."""
        raise NotImplementedError

    def read_codes(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Hard calls of variants ``start:stop`` for samples ``rows``: int8 (b, n), -1 missing."""
        raise NotImplementedError

    def read_dosages(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Dosages of variants ``start:stop`` for samples ``rows``: float64 (b, n), NaN missing."""
        raise NotImplementedError

    def read_block(self, rows: np.ndarray, index: np.ndarray, hard_calls: bool = False) -> GenotypeBlock:
        """Genotypes of variants ``index`` (sorted) for samples ``rows`` (sorted).

        Dosages if the file has them (unless ``hard_calls``, which rounds them to the nearest
        genotype), hard calls otherwise.
        """
        index = np.asarray(index, dtype=np.int64)
        rows = np.asarray(rows, dtype=np.int64)
        dosages = self.has_dosages and not hard_calls
        # hard calls packed as a .bed's bytes, so that the class sums take the same compiled kernel
        # as a .bed's (and give the same sums to the last bit: both add by each individual's place);
        # the block decodes them again if asked for its calls (GenotypeBlock.get_codes)
        read = self._block_dosages if dosages else self._block_packed
        parts = [read(rows, int(a), int(b)) for a, b in contiguous_runs(index)]
        data = np.concatenate(parts, axis=0) if len(parts) != 1 else parts[0]
        multi = self.variants.n_alleles[index] > 2
        if dosages:
            return GenotypeBlock(index, rows, dosages=data, denominator=self.dosage_denominator, multiallelic=multi)
        return GenotypeBlock(index, rows, multiallelic=multi, packed=data, n_file=self.n_samples)

    def _block_packed(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Hard calls for :meth:`read_block`: :meth:`read_codes` packed as a .bed's bytes over all
        the file's samples, those not in ``rows`` as no copy (:func:`hlmm.io._kernels.pack_codes`)."""
        from hlmm.io._kernels import pack_codes

        return pack_codes(self.read_codes(rows, start, stop), rows, self.n_samples)

    def _block_dosages(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Dosages for :meth:`read_block`: :meth:`read_dosages`, or a faster exact form (float32 for
        .pgen) that every engine reads as it reads float64."""
        return self.read_dosages(rows, start, stop)

    def close(self) -> None:
        """Release open file handles."""


#: Sex codes of :attr:`GenotypeSource.sex`, as PLINK's: 1 male, 2 female, 0 unknown.
MALE, FEMALE, UNKNOWN_SEX = 1, 2, 0
_SEX_WORDS = {"1": MALE, "M": MALE, "MALE": MALE, "2": FEMALE, "F": FEMALE, "FEMALE": FEMALE}


def sex_code(token: str) -> int:
    """PLINK's sex code of a field: 1/M/male, 2/F/female (any case); anything else (0, -9, NA) unknown.

    Examples
    --------
    >>> [sex_code(t) for t in ("1", "2", "F", "male", "0", "NA", "-9")]
    [1, 2, 2, 1, 0, 0, 0]
    """
    return _SEX_WORDS.get(token.upper(), UNKNOWN_SEX)


def hard_calls_of(dosages: np.ndarray) -> np.ndarray:
    """Dosages rounded to the nearest genotype (0.5 and 1.5 round up, as plink2's hard-call
    threshold does), -1 where missing: the one rounding of ``--hard_calls`` for every format.

    Examples
    --------
    >>> hard_calls_of(np.array([[0.5, 1.49, 1.5, np.nan]])).tolist()
    [[1, 1, 2, -1]]
    """
    codes = np.floor(dosages + 0.5)
    codes[np.isnan(codes)] = -1
    return codes.astype(np.int8)


def _fixed(rows: np.ndarray) -> bool:
    """A read-only array that owns its values (not a view of another array, which could change)."""
    return not rows.flags.writeable and rows.base is None


def same_rows(kept: np.ndarray | None, rows: np.ndarray) -> bool:
    """Whether ``rows`` holds the values of ``kept``: by identity for a fixed array (read-only and
    owning its values: a scan's rows, :class:`hlmm.runner.ScanJob`, passed with every part of every
    block), else by value."""
    if kept is None:
        return False
    return (kept is rows and _fixed(rows)) or np.array_equal(kept, rows)


def kept_rows(rows: np.ndarray) -> np.ndarray:
    """What to keep of ``rows`` for :func:`same_rows`: a fixed array itself, else a copy."""
    return rows if _fixed(rows) else rows.copy()


_checked = threading.local()  # per thread: (n, rows) last found valid by checked_request


def checked_request(path: str, rows, start: int, stop: int, n: int, m: int) -> np.ndarray:
    """``rows`` as an array, after checking a reader's request for variants ``start:stop`` of
    ``m`` and sample rows ``rows`` of ``n``: IndexError for a range outside the file, ValueError
    unless ``rows`` are one-dimensional, strictly increasing sample indices in 0..n-1. A scan's
    read-only rows, found valid once, are not checked again on this thread (:func:`same_rows`;
    every part of every block passes them)."""
    rows = np.asarray(rows)
    if not 0 <= start <= stop <= m:
        raise IndexError(f"{path}: variant range {start}:{stop} outside 0:{m}")
    if rows.ndim != 1:
        raise ValueError("rows must be one-dimensional")
    if not len(rows):
        return rows
    last = getattr(_checked, "rows", None)
    if last is not None and last[0] == n and same_rows(last[1], rows):
        return rows
    if rows[0] < 0 or rows[-1] >= n or np.any(np.diff(rows) <= 0):
        raise ValueError(f"rows must be strictly increasing sample indices in 0..{n - 1}")
    _checked.rows = (n, kept_rows(rows))
    return rows


def contiguous_runs(index: np.ndarray) -> list:
    """Split sorted indices into ``(start, stop)`` runs of consecutive values."""
    if len(index) == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(index)]])
    return [(int(index[a]), int(index[b - 1]) + 1) for a, b in zip(starts, stops)]
