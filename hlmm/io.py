"""Reading inputs: PLINK BED filesets, phenotype and covariate tables, and ID matching.

Every problem with an input file raises :class:`InputError`, a ``ValueError`` whose message is
one line naming the file and the problem. Nothing here fits models or writes results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "InputError",
    "Table",
    "read_table",
    "BedFileset",
    "open_bed",
    "match_individuals",
    "read_random_effects_bed",
    "write_bed",
    "BedWriter",
]

BED_MAGIC = bytes([0x6C, 0x1B, 0x01])


class InputError(ValueError):
    """A problem with an input file or argument, described in one line."""


# ----------------------------------------------------------------------------------------------
# Phenotype and covariate tables
# ----------------------------------------------------------------------------------------------
@dataclass
class Table:
    """A table of ``FID IID v1 v2 ...``.

    Attributes
    ----------
    path : str
    ids : list of (str, str)
        (FID, IID) per row.
    names : list of str
        Column names, from the header or numbered 1, 2, ... if there is none.
    values : ndarray, shape (n_rows, n_columns)
        Values with missing entries as NaN.
    """

    path: str
    ids: list
    names: list
    values: np.ndarray
    index: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {iid: i for i, iid in enumerate(self.ids)}


def read_table(path: str, missing: str = "NA", what: str = "file") -> Table:
    """Read a whitespace-separated ``FID IID v1 v2 ...`` table.

    The first line is a header if any of its value columns is not numeric (and not the missing
    value string). Values equal to ``missing`` become NaN.

    Parameters
    ----------
    path : str
    missing : str
        Missing-value string.
    what : str
        What the file is, for error messages ("phenotype file", ...).

    Raises
    ------
    InputError
        Unreadable or empty file, ragged rows, non-numeric values, duplicated IDs.
    """
    try:
        with open(path) as f:
            lines = [(i + 1, line.split()) for i, line in enumerate(f)]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{what} {path}: cannot read: {_reason(e)}") from None
    lines = [(k, t) for k, t in lines if t]
    if not lines:
        raise InputError(f"{what} {path}: file is empty")
    ncol = len(lines[0][1])
    if ncol < 3:
        raise InputError(
            f"{what} {path}: line {lines[0][0]} has {ncol} columns; expected FID, IID and at least one value"
        )
    first = lines[0][1][2:]
    if any(not _is_number(x) and x != missing for x in first):
        names = first
        lines = lines[1:]
        if not lines:
            raise InputError(f"{what} {path}: file has a header but no data")
    else:
        names = [str(j + 1) for j in range(ncol - 2)]
    ids, values = [], np.empty((len(lines), ncol - 2))
    for row, (lineno, tok) in enumerate(lines):
        if len(tok) != ncol:
            raise InputError(f"{what} {path}: line {lineno} has {len(tok)} columns, expected {ncol}")
        ids.append((tok[0], tok[1]))
        for j, x in enumerate(tok[2:]):
            if x == missing:
                values[row, j] = np.nan
                continue
            try:
                val = float(x)
            except ValueError:
                raise InputError(
                    f"{what} {path}: line {lineno}, column {j + 3}: non-numeric value '{x}'"
                    f" (missing values must be written as '{missing}')"
                ) from None
            if not np.isfinite(val):
                raise InputError(f"{what} {path}: line {lineno}, column {j + 3}: value '{x}' is not finite")
            values[row, j] = val
    _check_unique(ids, what, path)
    return Table(path, ids, list(names), values)


def _is_number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def _check_unique(ids, what: str, path: str) -> None:
    seen = set()
    for fid_iid in ids:
        if fid_iid in seen:
            raise InputError(f"{what} {path}: individual FID={fid_iid[0]} IID={fid_iid[1]} appears more than once")
        seen.add(fid_iid)


def _reason(e: Exception) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    if isinstance(e, UnicodeDecodeError):
        return "not a text file"
    return e.strerror or str(e)


# ----------------------------------------------------------------------------------------------
# BED filesets
# ----------------------------------------------------------------------------------------------
@dataclass
class BedFileset:
    """A validated PLINK .bed/.bim/.fam fileset.

    Genotypes count copies of A1 (the .bim's 5th column), as PLINK does.

    Attributes
    ----------
    path : str
        The .bed path.
    ids : list of (str, str)
        (FID, IID) per individual, from the .fam.
    snp, chrom, A1, A2 : ndarray of str, shape (m,)
    pos : ndarray of int, shape (m,)
    """

    path: str
    ids: list
    snp: np.ndarray
    chrom: np.ndarray
    pos: np.ndarray
    A1: np.ndarray
    A2: np.ndarray

    @property
    def n_individuals(self) -> int:
        return len(self.ids)

    @property
    def n_snps(self) -> int:
        return len(self.snp)

    def read(self, rows: np.ndarray, start: int, stop: int, dtype=np.float64, order: str = "F") -> np.ndarray:
        """Genotypes of individuals ``rows`` at SNPs ``start:stop``, NaN for missing calls.

        Returns
        -------
        ndarray, shape (len(rows), stop - start)
            Copies of A1 (0, 1, 2) or NaN.
        """
        from pysnptools.snpreader import Bed

        bed = Bed(self.path, count_A1=True, iid=np.array(self.ids, dtype=str), sid=self.snp,
                  pos=np.zeros((self.n_snps, 3)), skip_format_check=True)
        try:
            return bed[rows, start:stop].read(dtype=dtype, order=order, view_ok=True).val
        except Exception as e:  # pysnptools raises a variety of errors on corrupt files
            raise InputError(f"genotype file {self.path}: cannot read SNPs {start}..{stop - 1}: {e}") from None


def open_bed(path: str, what: str = "genotype file") -> BedFileset:
    """Open and validate a PLINK fileset given the .bed path (or its prefix).

    Checks that the three files exist, the .bim and .fam are well formed, the .bed starts with
    the SNP-major magic bytes and has exactly the size implied by the .bim and .fam.

    Raises
    ------
    InputError
    """
    prefix = path[:-4] if path.endswith(".bed") else path
    bed, bim, fam = prefix + ".bed", prefix + ".bim", prefix + ".fam"
    for p in (bed, bim, fam):
        if not os.path.isfile(p):
            raise InputError(f"{what} {bed}: {p} does not exist")
    ids = []
    for lineno, tok in _lines(fam, what):
        if len(tok) != 6:
            raise InputError(f"{what} {fam}: line {lineno} has {len(tok)} columns, expected 6")
        ids.append((tok[0], tok[1]))
    if not ids:
        raise InputError(f"{what} {fam}: file is empty")
    _check_unique(ids, what, fam)
    snp, chrom, pos, a1, a2 = [], [], [], [], []
    for lineno, tok in _lines(bim, what):
        if len(tok) != 6:
            raise InputError(f"{what} {bim}: line {lineno} has {len(tok)} columns, expected 6")
        try:
            p = int(float(tok[3]))
        except ValueError:
            raise InputError(f"{what} {bim}: line {lineno}: position '{tok[3]}' is not a number") from None
        chrom.append(tok[0])
        snp.append(tok[1])
        pos.append(p)
        a1.append(tok[4])
        a2.append(tok[5])
    if not snp:
        raise InputError(f"{what} {bim}: file is empty")
    n, m = len(ids), len(snp)
    expected = 3 + ((n + 3) // 4) * m
    try:
        with open(bed, "rb") as f:
            magic = f.read(3)
        size = os.path.getsize(bed)
    except OSError as e:
        raise InputError(f"{what} {bed}: cannot read: {_reason(e)}") from None
    if magic != BED_MAGIC:
        raise InputError(f"{what} {bed}: not a SNP-major PLINK .bed file (bad magic bytes)")
    if size != expected:
        raise InputError(
            f"{what} {bed}: size {size} bytes does not match {m} SNPs in the .bim and {n} individuals"
            f" in the .fam (expected {expected} bytes; truncated or inconsistent fileset)"
        )
    return BedFileset(
        bed, ids, np.array(snp, dtype=str), np.array(chrom, dtype=str), np.array(pos, dtype=np.int64),
        np.array(a1, dtype=str), np.array(a2, dtype=str),
    )


def _lines(path: str, what: str):
    try:
        with open(path) as f:
            for i, line in enumerate(f):
                tok = line.split()
                if tok:
                    yield i + 1, tok
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{what} {path}: cannot read: {_reason(e)}") from None


# ----------------------------------------------------------------------------------------------
# Matching individuals across files
# ----------------------------------------------------------------------------------------------
@dataclass
class Matched:
    """The individuals used, in .fam order, and their data."""

    rows: np.ndarray  # indices into the reference (e.g. .fam) order
    ids: list
    columns: list  # one 2-D array per table, rows matched
    log: list  # human-readable lines describing what was read, matched and dropped


def match_individuals(reference_ids: list, reference_what: str, tables: list) -> Matched:
    """Keep the individuals of ``reference_ids`` present with complete data in every table.

    Parameters
    ----------
    reference_ids : list of (str, str)
        IDs defining the order (e.g. the .fam).
    reference_what : str
        Description of the reference, for messages.
    tables : list of (Table, str)
        Each table with its description; values may be NaN (missing).

    Returns
    -------
    Matched

    Raises
    ------
    InputError
        If no individual is in common with complete data.
    """
    n_ref = len(reference_ids)
    keep = np.ones(n_ref, dtype=bool)
    log = [f"{n_ref} individuals in {reference_what}"]
    idx_per_table = []
    for table, what in tables:
        idx = np.array([table.index.get(i, -1) for i in reference_ids], dtype=np.int64)
        present = idx >= 0
        n_common = int(present.sum())
        log.append(f"{len(table.ids)} individuals read from {what} {table.path}; {n_common} in common with {reference_what}")
        if n_common == 0:
            raise InputError(
                f"{what} {table.path}: no individuals in common with {reference_what} ({n_ref} individuals)"
            )
        newly_absent = int((keep & ~present).sum())
        if newly_absent:
            log.append(f"dropped {newly_absent} individuals not in {what}")
        keep &= present
        complete = np.zeros(n_ref, dtype=bool)
        complete[present] = ~np.isnan(table.values[idx[present]]).any(axis=1)
        dropped = int((keep & ~complete).sum())
        if dropped:
            log.append(f"dropped {dropped} individuals with missing values in {what}")
        keep &= complete
        idx_per_table.append(idx)
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        names = ", ".join(f"{w} {t.path}" for t, w in tables)
        raise InputError(f"no individuals with complete data in common between {reference_what} and {names}")
    log.append(f"{rows.size} individuals used")
    columns = [t.values[idx[rows]] for (t, _), idx in zip(tables, idx_per_table)]
    return Matched(rows, [reference_ids[i] for i in rows], columns, log)


def read_random_effects_bed(fileset: BedFileset, ids: list) -> tuple[np.ndarray, np.ndarray]:
    """Genotypes of a random-effects fileset for the individuals ``ids``.

    Returns
    -------
    values : ndarray, shape (len(ids), l)
        With NaN for missing calls.
    present : ndarray of bool, shape (len(ids),)
        Whether each individual is in the fileset (rows of absent individuals are NaN).
    """
    index = {iid: i for i, iid in enumerate(fileset.ids)}
    pos = np.array([index.get(i, -1) for i in ids], dtype=np.int64)
    present = pos >= 0
    if present.all():
        return fileset.read(pos, 0, fileset.n_snps, order="C"), present
    out = np.full((len(ids), fileset.n_snps), np.nan)
    if present.any():
        out[present] = fileset.read(pos[present], 0, fileset.n_snps, order="C")
    return out, present


# PLINK 2-bit codes for 2, 1, 0 copies of A1 and a missing call
_CODE = {2: 0b00, 1: 0b10, 0: 0b11}
_MISSING_CODE = 0b01


class BedWriter:
    """Write a SNP-major PLINK fileset block by block, so that memory does not grow with SNPs.

    Parameters
    ----------
    prefix : str
        Output path without extension.
    ids : list of (str, str)
        (FID, IID) per individual.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with BedWriter(os.path.join(d, "x"), [("f0", "i0"), ("f1", "i1")]) as w:
    ...     w.write(np.array([[0.0, 2.0], [np.nan, 1.0]]))
    >>> open_bed(os.path.join(d, "x.bed")).n_snps
    2
    """

    def __init__(self, prefix: str, ids: list) -> None:
        self.prefix, self.n = prefix, len(ids)
        self.n_snps = 0
        with open(prefix + ".fam", "w") as f:
            f.write("".join(f"{fid} {iid} 0 0 0 -9\n" for fid, iid in ids))
        self._bed = open(prefix + ".bed", "wb")
        self._bed.write(BED_MAGIC)
        self._bim = open(prefix + ".bim", "w")

    def write(self, genotypes: np.ndarray, snp=None, chrom=None, pos=None, A1=None, A2=None) -> None:
        """Append SNPs: ``genotypes`` of shape (n, b), copies of A1 or NaN; .bim columns optional."""
        g = np.asarray(genotypes, dtype=float)
        if g.ndim != 2 or g.shape[0] != self.n:
            raise ValueError(f"genotypes must have shape ({self.n}, b), got {g.shape}")
        b, j0 = g.shape[1], self.n_snps
        snp = snp if snp is not None else [f"rs{j0 + j}" for j in range(b)]
        chrom = chrom if chrom is not None else ["1"] * b
        pos = pos if pos is not None else [1000 * (j0 + j + 1) for j in range(b)]
        A1 = A1 if A1 is not None else ["A"] * b
        A2 = A2 if A2 is not None else ["G"] * b
        self._bim.write("".join(f"{c}\t{s}\t0\t{p}\t{a}\t{z}\n" for c, s, p, a, z in zip(chrom, snp, pos, A1, A2)))
        missing = np.isnan(g)
        if np.any((g[~missing] != 0) & (g[~missing] != 1) & (g[~missing] != 2)):
            raise ValueError("genotypes must be 0, 1, 2 or NaN")
        lookup = np.array([_CODE[0], _CODE[1], _CODE[2], _MISSING_CODE], dtype=np.uint8)
        idx = np.where(missing, 3, np.nan_to_num(g, nan=0.0)).astype(np.intp)
        n_pad = (self.n + 3) // 4 * 4
        codes = np.zeros((b, n_pad), dtype=np.uint8)
        codes[:, : self.n] = lookup[idx].T
        c = codes.reshape(b, n_pad // 4, 4)
        packed = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
        self._bed.write(packed.astype(np.uint8).tobytes())
        self.n_snps += b

    def close(self) -> None:
        self._bed.close()
        self._bim.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_bed(
    prefix: str,
    genotypes: np.ndarray,
    ids: list | None = None,
    snp: list | None = None,
    chrom=None,
    pos=None,
    A1=None,
    A2=None,
) -> None:
    """Write a SNP-major PLINK .bed/.bim/.fam fileset.

    Parameters
    ----------
    prefix : str
        Output path without extension.
    genotypes : ndarray, shape (n, m)
        Copies of A1 (0, 1, 2), NaN for a missing call.
    ids : list of (str, str), optional
        (FID, IID) per individual; default ``("f{i}", "i{i}")``.
    snp, chrom, pos, A1, A2 : sequences of length m, optional
        .bim columns; defaults ``rs{j}``, 1, ``1000 * (j + 1)``, ``A``, ``G``.
    """
    genotypes = np.asarray(genotypes)
    n = genotypes.shape[0]
    ids = ids if ids is not None else [(f"f{i}", f"i{i}") for i in range(n)]
    with BedWriter(prefix, ids) as w:
        w.write(genotypes, snp, chrom, pos, A1, A2)
