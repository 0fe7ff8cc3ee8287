"""Compiled helpers of the readers (numba): decoding of packed .bed bytes, and .pgen's missing dosages.

Packed PLINK .bed bytes are SNP-major, 2 bits per genotype: 0b00 two copies of A1, 0b01
missing, 0b10 one copy, 0b11 no copy; the first individual of a byte is in its lowest two bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: copies of A1 for each 2-bit code; -1 marks a missing call
CODE_TO_COPIES = np.array([2, -1, 1, 0], dtype=np.int8)


@njit(cache=True, parallel=True)
def decode_packed(packed, rows, n_file):
    """Copies of A1 (0, 1, 2; -1 missing) for individuals ``rows`` of b variants.

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


@njit(cache=True, nogil=True)
def negative_to_nan(a):
    """Set the negative entries of a 2-D array (pgenlib's -9 for a missing dosage) to NaN, in place
    (on the calling thread: each .pgen decoding thread calls it on the variants it decoded, without
    the GIL, so that the decoding threads do not wait for each other)."""
    for j in range(a.shape[0]):
        row = a[j]
        for i in range(row.shape[0]):
            if row[i] < 0:
                row[i] = np.nan
