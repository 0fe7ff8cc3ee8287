"""Stand-ins shared by the genotype readers until they move into ``hlmm.io``.

:class:`InputError` and :class:`VariantTable` are what :mod:`hlmm.io.pgen` and :mod:`hlmm.io.bgen`
raise and return; the package ``hlmm.io`` is expected to re-export (or replace) them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["InputError", "VariantTable"]


class InputError(ValueError):
    """A problem with an input file or argument, described in one line that names the file."""


@dataclass
class VariantTable:
    """Per-variant annotation of a genotype file, in file order.

    Attributes
    ----------
    id : ndarray of str, shape (m,)
        Variant identifiers as stored in the file (may be ``"."`` or empty).
    chrom : ndarray of str, shape (m,)
        Chromosome codes as stored in the file.
    pos : ndarray of int64, shape (m,)
        Base-pair positions.
    a1 : ndarray of str, shape (m,)
        The counted allele: the dosages and codes the readers return count copies of it.
    a2 : ndarray of str, shape (m,)
        The other allele; for multi-allelic variants, all other alleles joined by ``","``
        in file order.
    n_alleles : ndarray of int64, shape (m,)
        Number of alleles (2 for bi-allelic variants).
    """

    id: np.ndarray
    chrom: np.ndarray
    pos: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    n_alleles: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.pos)
        for name in ("id", "chrom", "a1", "a2", "n_alleles"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"VariantTable: column {name} has {len(getattr(self, name))} entries, pos has {m}")

    def __len__(self) -> int:
        return len(self.pos)
