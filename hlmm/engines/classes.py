"""Genotype-class statistics of a block: per variant, sums of per-individual columns over the
individuals of each genotype class (0, 1, 2 copies of A1, or each distinct dosage), from one
compiled pass over the block (:mod:`hlmm.engines._kernels_classes`).

The class engines fit from these sums, the score engine computes its statistics from them, and
every engine reads calls, allele frequencies and filters from them. :class:`ClassStatistics`
belongs to one scanner and keeps, per thread, the per-individual columns it built for the last
blocks (scanners pass the same phenotype arrays for every block; building the columns once saves
more than the compiled pass over a block of 10 phenotypes costs per variant).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hlmm.engines import _kernels_classes
from hlmm.io import GenotypeBlock
from hlmm.io._base import kept_rows, same_rows

__all__ = ["ClassMoments", "ClassSums", "ClassStatistics", "column_basis", "extra_centred_sums", "padded_width"]


class _Layout:
    """Per-class arrays of a block: padded (b, K, ...) for hard calls, or ragged (K_total, ...)
    with variant j's classes in rows ``offsets[j]:offsets[j + 1]`` for dosages. Subclasses hold
    ``offsets`` (None when padded) and ``values`` (None for hard calls)."""

    @property
    def ragged(self) -> bool:
        return self.offsets is not None

    def reduce(self, x: np.ndarray) -> np.ndarray:
        """Per-variant sums over the classes of ``x`` ((b, K[, q]) padded or (K[, q]) ragged)."""
        if not self.ragged:
            return x.sum(axis=1)
        two = np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float64)
        out = _kernels_classes.segment_sums(self.offsets, two)
        return out[:, 0] if x.ndim == 1 else out

    def class_values(self) -> np.ndarray:
        """Genotype value of each class: (b, K) padded, (K,) ragged."""
        if self.values is not None:
            return self.values
        return np.broadcast_to(np.arange(3.0), self._shape())

    def per_class(self, per_variant: np.ndarray) -> np.ndarray:
        """A per-variant value repeated for each of its classes."""
        if not self.ragged:
            return per_variant[:, None]
        return np.repeat(per_variant, np.diff(self.offsets))

    def centred_sums(self, counts: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``sum g h``, ``sum g^2`` and ``sum g^3`` per variant over the individuals with a call, ``g``
        centred over them, from the class ``counts`` and the class sums of ``h`` (same layout)."""
        if self.ragged:  # thousands of classes per variant: one compiled pass
            # (columns of the sums as they are, strided or not: a copy cost more than the pass)
            out = _kernels_classes.centred_segment_sums(self.offsets, np.asarray(self.values, np.float64),
                                                        np.asarray(counts, np.float64), np.asarray(sums, np.float64))
            return out[:, 0], out[:, 1], out[:, 2]
        values = self.class_values()
        n = self.reduce(counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            gbar = self.reduce(counts * values) / n
        g = np.where(counts > 0, values - self.per_class(gbar), 0.0)
        g2 = counts * g * g
        return self.reduce(g * sums), self.reduce(g2), self.reduce(g2 * g)


@dataclass
class ClassMoments(_Layout):
    """Per-SNP genotype-class statistics of one phenotype.

    Attributes
    ----------
    counts : ndarray, shape (b, K) or (K_total,)
        Individuals per class.
    sums : ndarray, shape (b, K, powers) or (K_total, powers)
        Sums of y, y^2, ... per class.
    values : ndarray, shape (b, K) or (K_total,), or None
        Genotype value of each class; None for hard calls (classes 0, 1, 2).
    n_missing : ndarray, shape (b,)
    offsets : ndarray, shape (b + 1,), or None
        The ragged layout of dosages (see :class:`_Layout`).
    extra : ndarray, shape (b, K) or (K_total,), or None
        Sums of one more per-individual column per class (the adaptive variance score).
    combination : tuple of (ndarray, ndarray), or None
        Ragged, instead of ``extra``: ``(S, coef)``, the extra column's class sums being the
        combination ``S[:, :len(coef)] @ coef`` of the pass's sums ``S`` (whose column 0 is
        ``counts``), left for :meth:`extra_centred_sums` to compute in its pass.
    same_counts : ClassMoments or None
        Moments of the same pass whose ``counts`` and ``values`` are these (the same column of
        the pass: phenotypes of the same individuals), whose per-variant calls are then these.
    """

    counts: np.ndarray
    sums: np.ndarray
    values: np.ndarray | None
    n_missing: np.ndarray
    offsets: np.ndarray | None = None
    extra: np.ndarray | None = None
    combination: tuple | None = None
    same_counts: ClassMoments | None = None

    def _shape(self):
        return self.counts.shape

    @property
    def n_called(self) -> np.ndarray:
        if self.ragged:
            return np.rint(self._count_sums[:, 0]).astype(np.int64)
        return np.rint(self.reduce(self.counts)).astype(np.int64)

    @property
    def a1_copies(self) -> np.ndarray:
        if self.values is None:
            return self.counts[:, 1] + 2 * self.counts[:, 2]
        if self.ragged:
            return self._count_sums[:, 1]
        return self.reduce(self.counts * self.values)

    @property
    def counts_root(self) -> ClassMoments:
        """The moments whose counts these are, to the last bit: ``same_counts``, or these."""
        return self.same_counts if self.same_counts is not None else self

    @cached_property
    def _count_sums(self) -> np.ndarray:
        """Ragged: per variant, the sums of the counts and of counts times values in one compiled
        pass, added as :meth:`reduce` adds them (once for the phenotypes of ``same_counts``: 0.35
        of 5.7 ms per variant for 10 phenotypes on the 1/16384 grid, each alone)."""
        if self.same_counts is not None:
            return self.same_counts._count_sums
        return _kernels_classes.segment_count_sums(self.offsets, self.counts, self.values)

    def extra_centred_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """:meth:`centred_sums` of the extra column (``extra`` or ``combination``), or None."""
        if self.extra is not None:
            return self.centred_sums(self.counts, self.extra)
        if self.combination is None:
            return None
        S, coef = self.combination
        out = _kernels_classes.centred_combinations_sums(self.offsets, np.asarray(self.values, np.float64), (S,),
                                                         (np.ascontiguousarray(coef, dtype=np.float64),),
                                                         self._count_sums)[0]
        return out[:, 0], out[:, 1], out[:, 2]


@dataclass
class ClassSums(_Layout):
    """Per-SNP sums of per-individual columns over the individuals of each genotype class.

    Attributes
    ----------
    sums : ndarray, shape (b, K, q) or (K_total, q)
        Column sums per class (K = 3 classes 0, 1, 2 copies of A1 for hard calls; the distinct
        dosages of each variant for dosages, in the ragged layout of :class:`_Layout`).
    values : ndarray, shape (b, K) or (K_total,), or None
        Genotype value of each class; None for hard calls.
    missing : ndarray, shape (b, q)
        Column sums over the individuals without a call.
    offsets : ndarray, shape (b + 1,), or None
    """

    sums: np.ndarray
    values: np.ndarray | None
    missing: np.ndarray
    offsets: np.ndarray | None = None
    #: Ragged: the column of the pass's design whose sums are column 0 here (parts with the same
    #: one have the same column 0 to the last bit), or None.
    column0: int | None = None

    def _shape(self):
        return self.sums.shape[:-1]


class _IdentityCache:
    """The last few values computed from given objects, found again by identity (``is``).

    The objects are kept alive with the value, so that their ids cannot be reused. Scanners pass
    the same phenotype arrays for every block; building the per-individual columns once saves
    more than the compiled pass over a block of 10 phenotypes costs per variant."""

    def __init__(self, size: int = 4) -> None:
        self.size, self.entries = size, []

    def get(self, objects: tuple, check, make):
        for k, (objs, value) in enumerate(self.entries):
            if len(objs) == len(objects) and all(a is b for a, b in zip(objs, objects)) and check(value):
                self.entries.insert(0, self.entries.pop(k))
                return value
        value = make()
        self.entries = [(objects, value)] + self.entries[: self.size - 1]
        return value


def padded_width(q: int) -> int:
    """Columns of a per-individual design for ``q`` quantities: a multiple of 4, so that each row
    is whole 32-byte vectors, which the compiled sums add with whole vector instructions (zero
    columns are added, and their sums ignored; each column's sum is unchanged to the last bit).
    Measured at n = 100,000 (docs/performance.rst): the default HLM scan of hard calls 0.81 times
    the time with 3 columns, the score screen 0.80, 10 phenotypes (21 columns, padded to 24) 0.92;
    the score test's power sums of dosages 0.78 (``benchmarks/bench_kernels.py``). Not for the class
    sums of dosages, which scatter into thousands of classes per variant: 4 columns took 1.07 times
    as long as 3 there, 24 columns 1.12 times as long as 21."""
    return -(-q // 4) * 4


def _design(cache: _IdentityCache, block: GenotypeBlock, parts: list) -> tuple[np.ndarray, list]:
    """The matrix of every part's columns over the file's rows (packed .bed blocks) or the block's
    rows, and each part's columns in it."""
    packed = block.packed is not None
    # packed hard calls (a .bed's, or other files' packed when read) with the compiled kernel: its
    # column-major layout (packed_design), unpadded; other hard calls, and designs of dosages of at
    # most COMPILED_DOSAGE_COLUMNS (which the compiled kernel takes four columns at a time): rows
    # padded to whole vectors (padded_width); wider designs of dosages: not (when numba's kernel
    # summed them, wider rows measured 7-12% slower on fine grids; the compiled kernel adds any
    # columns past the last whole vector one by one, or, on fine grids, takes them eight at a time
    # from its own copy, zero-padded: see _kernels_classes)
    columnwise = packed and _kernels_classes.COMPILED
    width = padded_width(sum(cols.shape[1] for _, cols in parts))  # (at most: shared columns of ones count once)
    pad = not columnwise and (block.dosages is None or (_kernels_classes.COMPILED
                                                        and width <= _kernels_classes.COMPILED_DOSAGE_COLUMNS))

    def make():
        n_rows = block.n_file if packed else len(block.rows)
        # A column of ones over the same individuals (the counts) is summed once for all parts.
        columns, index, ones = [], [], []
        for subset, cols in parts:
            r = block.rows[subset] if block.packed is not None else subset
            idx = []
            for c in range(cols.shape[1]):
                if np.all(cols[:, c] == 1.0):
                    same = next((k for rr, k in ones if rr is r or np.array_equal(rr, r)), None)
                    if same is not None:
                        idx.append(same)
                        continue
                    ones.append((r, len(columns)))
                idx.append(len(columns))
                columns.append((r, cols[:, c]))
            # a run of consecutive columns is taken as a view
            contiguous = idx == list(range(idx[0], idx[0] + len(idx))) if idx else True
            index.append(slice(idx[0], idx[0] + len(idx)) if contiguous and idx else np.array(idx, dtype=np.intp))
        if columnwise:
            Yc = _kernels_classes.packed_design(n_rows, len(columns))
        else:
            Yc = np.zeros((n_rows, padded_width(len(columns)) if pad else len(columns)))
        for k, (r, col) in enumerate(columns):
            Yc[r, k] = col
        return packed, n_rows, kept_rows(block.rows), Yc, index, pad

    objects = tuple(a for part in parts for a in part)
    value = cache.get(objects, lambda v: v[0] == packed and v[5] == pad
                      and v[1] == (block.n_file if packed else len(block.rows)) and same_rows(v[2], block.rows),
                      make)
    return value[3], value[4]


class ClassStatistics:
    """Class sums and moments of blocks, with the caches of one scanner.

    The caches are per thread: the threads of a Dask worker share the worker's copy of a scanner
    and compute blocks at once. A pickled (sent) scanner starts with empty caches.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _caches(self) -> tuple[_IdentityCache, _IdentityCache]:
        local = self._local
        if not hasattr(local, "designs"):
            local.designs, local.parts = _IdentityCache(), _IdentityCache()
        return local.designs, local.parts

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._local = threading.local()

    def sums(self, block: GenotypeBlock, parts: list) -> list:
        """Sums of per-individual columns over each genotype class of every variant of a block.

        One compiled pass over the block serves every part (phenotype).

        Parameters
        ----------
        block : GenotypeBlock
        parts : list of (subset, columns)
            Positions within ``block.rows`` and a matrix (len(subset), q) of per-individual values.

        Returns
        -------
        list of ClassSums
        """
        Yc, index = _design(self._caches()[0], block, parts)
        if block.packed is not None:
            mom = _kernels_classes.class_moments_packed(block.packed, Yc)
        elif block.dosages is None:
            mom = _kernels_classes.class_moments_codes(block.codes, Yc, block.rows)
        else:
            cols = [np.arange(Yc.shape[1])[idx] for idx in index]
            seg, values, sums, missing = _kernels_classes.dosage_classes(block.dosages, Yc, block.denominator or 0,
                                                                         cols)
            return [ClassSums(s, values, m, seg, int(c[0]) if len(c) else None) for s, m, c in zip(sums, missing, cols)]
        return [ClassSums(mom[:, :3][:, :, idx], None, mom[:, 3][:, idx]) for idx in index]

    def moments(self, block: GenotypeBlock, models: list, powers: int, extra: list | None = None) -> list:
        """Genotype-class counts and sums of powers of y of every variant of a block, for each model.

        Parameters
        ----------
        block : GenotypeBlock
        models : list of (subset, y)
            Positions within ``block.rows`` and the response of each phenotype.
        powers : int
            Highest power of y summed (0 for counts alone).
        extra : list of ndarray or None, optional
            Per model, one more per-individual column summed in the same pass (``ClassMoments.extra``).

        Returns
        -------
        list of ClassMoments
        """
        extra = list(extra) if extra is not None else [None] * len(models)
        key = tuple(a for m in models for a in m) + tuple(extra) + (powers,)

        def make():
            # an extra column that is a combination of the powers of y (the adaptive score of a
            # normal trait: z^2 and z) is not summed again: its sums are that combination's
            parts, combos = [], []
            for (subset, y), e in zip(models, extra):
                P = np.column_stack([y**k for k in range(powers + 1)])
                coef = None
                if e is not None:
                    A = np.column_stack([P, e])
                    basis, combination = column_basis(A)
                    if basis.shape == P.shape and np.array_equal(basis, P):
                        coef = combination[:, -1]
                    else:
                        P = A
                parts.append((subset, P))
                combos.append(coef)
            return parts, combos

        parts, combos = self._caches()[1].get(key, lambda v: True, make)
        out, first = [], {}
        for c, e, coef in zip(self.sums(block, parts), extra, combos):
            summed = e is not None and coef is None
            last = c.sums.shape[-1] - summed
            later = e is not None and not summed and c.ragged  # (extra_centred_sums, in one pass)
            ex = None if e is None or later else c.sums[..., last] if summed else _combination(c.sums, coef)
            mom = ClassMoments(c.sums[..., 0], c.sums[..., 1:last], c.values, c.missing[:, 0], c.offsets, ex,
                               (c.sums, coef) if later else None, first.get(c.column0))
            if c.column0 is not None:
                first.setdefault(c.column0, mom)
            out.append(mom)
        return out


def extra_centred_sums(moms: list) -> list:
    """``[m.extra_centred_sums() for m in moms]``, the moments with the same counts
    (``same_counts``) and combinations of as many columns (``combination``) in one compiled pass,
    with their counts' sums (``_count_sums``, once for them all): the same numbers to the last bit."""
    out = [None] * len(moms)
    groups: dict = {}
    for i, m in enumerate(moms):
        if m.extra is None and m.combination is not None and m.combination[0].flags.c_contiguous:
            groups.setdefault((id(m.counts_root), m.combination[0].shape[1], len(m.combination[1])), []).append(i)
        else:
            out[i] = m.extra_centred_sums()
    for members in groups.values():
        first = moms[members[0]]
        sums = _kernels_classes.centred_combinations_sums(
            first.offsets, np.asarray(first.values, np.float64), tuple(moms[i].combination[0] for i in members),
            tuple(np.ascontiguousarray(moms[i].combination[1], dtype=np.float64) for i in members),
            first._count_sums)
        for i, s in zip(members, sums):
            out[i] = (s[:, 0], s[:, 1], s[:, 2])
    return out


def _combination(sums: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``sums[..., :len(coef)] @ coef``, term by term in order: the same to the last bit wherever
    ``sums`` lies in memory (a BLAS product's last bits depend on its operands' alignment).
    Ragged (2-D) sums in one compiled pass, the same operations in the same order."""
    if sums.ndim == 2:
        return _kernels_classes.combine_columns(sums, np.ascontiguousarray(coef, dtype=np.float64))
    out = sums[..., 0] * coef[0]
    for k in range(1, len(coef)):
        out = out + sums[..., k] * coef[k]
    return out


def column_basis(A: np.ndarray, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``A`` that span the others, and the coefficients that give them back.

    Greedy in column order (so the first column is always kept): a column is kept when its
    residual after projection on the kept columns exceeds ``tol`` times its norm.

    Returns
    -------
    basis : ndarray, shape (n, r)
        The kept columns of ``A``, unchanged.
    coef : ndarray, shape (r, q)
        ``A = basis @ coef`` to rounding: unit vectors for the kept columns, least-squares
        coefficients for the others. If the others are not reproduced to 1e-12 of their size,
        every column is kept.
    """
    A = np.asarray(A, dtype=np.float64)
    n, q = A.shape
    keep, k = [], 0
    Qt = np.empty((q, n))  # the orthonormal directions so far, as rows (filled, never re-stacked)
    for j in range(q):
        a = A[:, j]
        Q = Qt[:k]
        r = a - Q.T @ (Q @ a)
        r -= Q.T @ (Q @ r)
        norm_a, norm_r = np.linalg.norm(a), np.linalg.norm(r)
        if not keep or norm_r > tol * norm_a:
            keep.append(j)
            if norm_r > 0:
                np.divide(r, norm_r, out=Qt[k])
                k += 1
    basis = A[:, keep]
    coef = np.linalg.lstsq(basis, A, rcond=None)[0]
    coef[:, keep] = np.eye(len(keep))
    scale = np.maximum(np.abs(A).max(axis=0), np.finfo(float).tiny)
    if np.max(np.abs(basis @ coef - A) / scale) > 1e-12:
        return A.copy(), np.eye(q)
    return np.ascontiguousarray(basis), coef
