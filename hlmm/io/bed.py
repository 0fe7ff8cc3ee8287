"""PLINK 1 binary filesets (.bed/.bim/.fam): reading, and writing for simulations and tests.

Genotypes count copies of A1, the .bim's 5th column, as PLINK does. The scan engines read the
packed 2-bit bytes directly (:mod:`hlmm.io._kernels`); decoding them to counts is a short compiled
loop, so no third-party reader is needed for this fixed, simple format.
"""

from __future__ import annotations

import os

import numpy as np

from hlmm.io._base import (
    GenotypeBlock,
    GenotypeSource,
    InputError,
    VariantTable,
    contiguous_runs,
    os_reason,
    sex_code,
)
from hlmm.io.text import check_unique, read_lines

__all__ = ["BedSource", "open_bed", "BedWriter", "write_bed", "BED_MAGIC"]

BED_MAGIC = bytes([0x6C, 0x1B, 0x01])


class BedSource(GenotypeSource):
    """A validated PLINK .bed/.bim/.fam fileset.

    Use :func:`open_bed` (or :func:`hlmm.io.open_genotypes`) to create one.
    """

    format = "bed"
    has_dosages = False
    dosage_denominator = 1

    def __init__(self, path: str, samples: list, variants: VariantTable, sex: np.ndarray | None = None) -> None:
        self.path, self.samples, self.variants, self.sex = path, samples, variants, sex
        self.prefix = path[:-4]
        self.n_bytes = (len(samples) + 3) // 4

    def files(self) -> list:
        return [self.path, self.prefix + ".bim", self.prefix + ".fam"]

    def read_packed(self, start: int, stop: int) -> np.ndarray:
        """Packed bytes of variants ``start:stop``, shape (stop - start, ceil(n / 4))."""
        try:
            with open(self.path, "rb") as f:
                f.seek(3 + start * self.n_bytes)
                raw = f.read((stop - start) * self.n_bytes)
        except OSError as e:
            raise InputError(f"genotype file {self.path}: cannot read: {os_reason(e)}") from None
        if len(raw) != (stop - start) * self.n_bytes:
            raise InputError(f"genotype file {self.path}: truncated while reading variants {start}..{stop - 1}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(stop - start, self.n_bytes)

    def read_codes(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        from hlmm.io._kernels import decode_packed

        return decode_packed(self.read_packed(start, stop), np.ascontiguousarray(rows, dtype=np.int64), self.n_samples)

    def read_dosages(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        c = self.read_codes(rows, start, stop)
        return np.where(c < 0, np.nan, c).astype(np.float64)

    def read_block(self, rows: np.ndarray, index: np.ndarray, hard_calls: bool = False) -> GenotypeBlock:
        index = np.asarray(index, dtype=np.int64)
        parts = [self.read_packed(a, b) for a, b in contiguous_runs(index)]
        packed = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return GenotypeBlock(index, np.asarray(rows, dtype=np.int64), packed=packed, n_file=self.n_samples)


def open_bed(path: str, what: str = "genotype file") -> BedSource:
    """Open and validate a PLINK fileset given the .bed path (or its prefix).

    Checks that the three files exist, the .bim and .fam are well formed, and the .bed starts
    with the SNP-major magic bytes and has exactly the size implied by the .bim and .fam.

    Raises
    ------
    InputError
    """
    prefix = path[:-4] if path.endswith(".bed") else path
    bed, bim, fam = prefix + ".bed", prefix + ".bim", prefix + ".fam"
    for p in (bed, bim, fam):
        if not os.path.isfile(p):
            raise InputError(f"{what} {bed}: {p} does not exist")
    ids, sex = [], []
    for lineno, tok in read_lines(fam, what):
        if len(tok) != 6:
            raise InputError(f"{what} {fam}: line {lineno} has {len(tok)} columns, expected 6")
        ids.append((tok[0], tok[1]))
        sex.append(sex_code(tok[4]))
    if not ids:
        raise InputError(f"{what} {fam}: file is empty")
    check_unique(ids, what, fam)
    snp, chrom, pos, a1, a2 = [], [], [], [], []
    for lineno, tok in read_lines(bim, what):
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
        raise InputError(f"{what} {bed}: cannot read: {os_reason(e)}") from None
    if magic != BED_MAGIC:
        raise InputError(f"{what} {bed}: not a SNP-major PLINK .bed file (bad magic bytes)")
    if size != expected:
        raise InputError(
            f"{what} {bed}: size {size} bytes does not match {m} variants in the .bim and {n} individuals"
            f" in the .fam (expected {expected} bytes; truncated or inconsistent fileset)"
        )
    variants = VariantTable(np.array(snp, dtype=str), np.array(chrom, dtype=str), np.array(pos, dtype=np.int64),
                            np.array(a1, dtype=str), np.array(a2, dtype=str), np.full(m, 2, dtype=np.int64))
    return BedSource(bed, ids, variants, np.array(sex, dtype=np.int8))


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
    >>> open_bed(os.path.join(d, "x.bed")).n_variants
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


def write_bed(prefix: str, genotypes: np.ndarray, ids: list | None = None, snp: list | None = None,
              chrom=None, pos=None, A1=None, A2=None) -> None:
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
