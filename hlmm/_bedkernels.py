"""Compiled kernels over packed PLINK .bed bytes (SNP-major, 2 bits per genotype).

Codes: 0b00 two copies of A1, 0b01 missing, 0b10 one copy, 0b11 no copy. The first individual
of a byte is in its lowest two bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: copies of A1 for each 2-bit code; -1 marks a missing call
CODE_TO_COPIES = np.array([2, -1, 1, 0], dtype=np.int8)


@njit(cache=True, parallel=True)
def class_sums(packed, y, include):
    """Per SNP and genotype class: count, sum of y and sum of y^2 over included individuals.

    Parameters
    ----------
    packed : ndarray of uint8, shape (b, n_bytes)
        Packed genotypes of b SNPs.
    y : ndarray of float64, shape (n_file,)
        Response per individual of the file (any value where not included).
    include : ndarray of bool, shape (n_file,)

    Returns
    -------
    ndarray of float64, shape (b, 4, 3)
        ``[snp, copies of A1 (0, 1, 2) or 3 for missing, (count, sum y, sum y^2)]``.
    """
    b, n_bytes = packed.shape
    n = y.shape[0]
    out = np.zeros((b, 4, 3))
    # class index by 2-bit code: 00 -> 2 copies, 01 -> missing (3), 10 -> 1 copy, 11 -> 0 copies
    slot = np.array([2, 3, 1, 0])
    for j in prange(b):
        acc = np.zeros((4, 3))
        for q in range(n_bytes):
            v = packed[j, q]
            base = 4 * q
            for p in range(4):
                i = base + p
                if i >= n:
                    break
                if include[i]:
                    k = slot[(v >> (2 * p)) & 3]
                    yi = y[i]
                    acc[k, 0] += 1.0
                    acc[k, 1] += yi
                    acc[k, 2] += yi * yi
        out[j] = acc
    return out


@njit(cache=True, parallel=True)
def decode(packed, rows, n_file):
    """Copies of A1 (0, 1, 2; -1 missing) for individuals ``rows`` of b SNPs.

    Returns
    -------
    ndarray of int8, shape (b, len(rows))
    """
    b = packed.shape[0]
    out = np.empty((b, rows.shape[0]), dtype=np.int8)
    copies = np.array([2, -1, 1, 0], dtype=np.int8)
    for j in prange(b):
        for r in range(rows.shape[0]):
            i = rows[r]
            out[j, r] = copies[(packed[j, i >> 2] >> (2 * (i & 3))) & 3]
    return out


def read_packed(path: str, n_individuals: int, start: int, stop: int) -> np.ndarray:
    """Packed bytes of SNPs ``start:stop`` of a validated .bed file, shape (stop - start, n_bytes)."""
    n_bytes = (n_individuals + 3) // 4
    with open(path, "rb") as f:
        f.seek(3 + start * n_bytes)
        raw = f.read((stop - start) * n_bytes)
    return np.frombuffer(raw, dtype=np.uint8).reshape(stop - start, n_bytes)
