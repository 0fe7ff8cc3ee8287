"""Genotypes held in memory, as a genotype source, for library users and tests."""

from __future__ import annotations

import numpy as np

from hlmm.io._base import GenotypeSource, VariantTable, hard_calls_of

__all__ = ["ArraySource"]


class ArraySource(GenotypeSource):
    """An in-memory genotype matrix behind the genotype-source interface.

    Parameters
    ----------
    genotypes : array_like, shape (n, m)
        Copies of the counted allele (hard calls or dosages in [0, 2]), NaN for missing.
    samples : list of (str, str), optional
        Default ``("0", "i{k}")``.
    variant_ids : sequence of str, optional
        Default ``"v{j}"``.

    Examples
    --------
    >>> import numpy as np
    >>> src = ArraySource(np.array([[0.0, 1.5], [2.0, np.nan]]))
    >>> src.has_dosages, src.read_dosages(np.array([0, 1]), 0, 2).shape
    (True, (2, 2))
    """

    format = "array"

    def __init__(self, genotypes, samples: list | None = None, variant_ids=None) -> None:
        g = np.asarray(genotypes, dtype=np.float64)
        if g.ndim != 2:
            raise ValueError(f"genotypes must be 2-D (individuals x variants), got shape {g.shape}")
        called = g[~np.isnan(g)]
        if called.size and (called.min() < 0 or called.max() > 2):
            raise ValueError("genotypes must lie in [0, 2] (copies of the counted allele) or be NaN")
        n, m = g.shape
        self.path = "<array>"
        self._g = g
        self.samples = samples if samples is not None else [("0", f"i{k}") for k in range(n)]
        ids = np.array(variant_ids if variant_ids is not None else [f"v{j}" for j in range(m)], dtype=str)
        self.variants = VariantTable(ids, np.full(m, "NA"), np.arange(1, m + 1, dtype=np.int64), np.full(m, "A1"),
                                     np.full(m, "A2"), np.full(m, 2, dtype=np.int64))
        self.has_dosages = bool(np.any(called != np.rint(called)))
        self.dosage_denominator = 0 if self.has_dosages else 1

    def files(self) -> list:
        return []

    def read_dosages(self, rows, start, stop) -> np.ndarray:
        return np.ascontiguousarray(self._g[np.asarray(rows)][:, start:stop].T)

    def read_codes(self, rows, start, stop) -> np.ndarray:
        return hard_calls_of(self.read_dosages(rows, start, stop))
