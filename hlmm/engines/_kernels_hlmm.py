"""Compiled row gathers of the integer random-effect design (numba), for the exact HLMM engine
(:mod:`hlmm.engines._hlmm_fits`).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def integer_row_sums(R, indptr, indices, center, idx, y):
    """Sums over rows ``idx`` of ``R + E`` (E sparse CSR, value ``center[j]`` at its entries).

    Returns, in float64: column sums ``s`` of R + E, ``zy = (R + E)' y``, ``ER = E'R`` and
    ``EE = E'E`` (both l x l), without converting R. Rows are added in the order of ``idx``.
    """
    l = R.shape[1]
    s = np.zeros(l)
    zy = np.zeros(l)
    ER = np.zeros((l, l))
    EE = np.zeros((l, l))
    for r in range(idx.shape[0]):
        i = idx[r]
        yi = y[r]
        for j in range(l):
            v = R[i, j]
            s[j] += v
            zy[j] += v * yi
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            mj = center[j]
            s[j] += mj
            zy[j] += mj * yi
            for k in range(l):
                ER[j, k] += mj * R[i, k]
            for q in range(indptr[i], indptr[i + 1]):
                EE[j, indices[q]] += mj * center[indices[q]]
    return s, zy, ER, EE


@njit(cache=True, nogil=True)
def gather_rows_f32(R, idx, out):
    """``out[r] = R[idx[r]]`` as float32 (R small integers)."""
    for r in range(idx.shape[0]):
        i = idx[r]
        for j in range(R.shape[1]):
            out[r, j] = R[i, j]


# ----------------------------------------------------------------------------------------------
# Exact products of small-integer genotype matrices by bit-plane popcounts
# ----------------------------------------------------------------------------------------------
