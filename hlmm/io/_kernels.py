"""Compiled helpers of the readers (numba): decoding and packing of .bed bytes, .pgen's missing dosages,
and .bgen's dosages from pairs of probabilities.

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


@njit(cache=True, inline="always")
def _two_bits(code):
    """A .bed's 2-bit code of a hard call: c = code & 3 (0, 1, 2 copies; 3 for -1 or pgenlib's -9)
    -> c ^ 3 ^ (c >> 1): 0b11, 0b10, 0b00, and 0b01 for missing."""
    c = np.uint8(code) & 3
    return c ^ 3 ^ (c >> 1)


@njit(cache=True, parallel=True)
def pack_codes(codes, rows, n_file):
    """Hard calls ``codes`` (b, len(rows)) of the individuals ``rows`` (strictly increasing places
    in a file of ``n_file``) packed as a .bed's bytes over all ``n_file`` places.

    A code's lowest two bits give its 2-bit code: 0, 1, 2 copies -> 0b11, 0b10, 0b00; a missing
    call (any negative code whose lowest two bits are 0b11, such as -1, or pgenlib's -9) -> 0b01.
    The places not in ``rows`` read as no copy (0b11), so that a variant without missing calls
    among ``rows`` has none in its bytes either.

    Returns
    -------
    ndarray of uint8, shape (b, ceil(n_file / 4))
    """
    b = codes.shape[0]
    out = np.empty((b, (n_file + 3) // 4), dtype=np.uint8)
    for j in prange(b):
        _pack_row(codes[j], rows, out[j])
    return out


@njit(cache=True, nogil=True)
def pack_codes_into(codes, rows, out):
    """:func:`pack_codes` of ``codes`` (b, len(rows)) into ``out`` (b, ceil(n_file / 4)), on the
    calling thread without the GIL (each .pgen decoding thread packs the variants it decoded)."""
    for j in range(codes.shape[0]):
        _pack_row(codes[j], rows, out[j])


@njit(cache=True, inline="always")
def _pack_row(row, rows, o):
    """One variant's calls ``row`` of the places ``rows`` packed into its bytes ``o``."""
    n = row.shape[0]
    first = 0
    if n and rows[n - 1] == n - 1:  # the places 0 .. n - 1: four calls to a byte, in order
        first = n - n % 4
        for byte in range(n // 4):
            i = 4 * byte
            o[byte] = (_two_bits(row[i]) | (_two_bits(row[i + 1]) << 2) | (_two_bits(row[i + 2]) << 4)
                       | (_two_bits(row[i + 3]) << 6))
    o[first // 4:] = 0xFF  # the rest, and the places not in rows, as no copy
    for r in range(first, n):
        i = rows[r]
        s = 2 * (i & 3)
        o[i >> 2] = (o[i >> 2] & ~(3 << s)) | (_two_bits(row[r]) << s)


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


@njit(cache=True, nogil=True)
def bgen_pair_dosages(v, rows, ploidy, multiplier, top, out):
    """Dosages of the second allele from a .bgen's pairs of stored probabilities, into ``out``.

    ``v`` (n, 2) holds each sample's two stored integers (8, 16 or 32 bits): unphased P(11) and
    P(12) (``multiplier`` -2), or phased P(allele 1) of each haplotype (``multiplier`` -1), each
    out of ``top`` = 2^bits - 1. Sample ``rows[r]`` (all n in order where ``rows`` is empty) gets
    ``((multiplier v0 - v1) + 2 top) / top``: integers below 2^34, exact in float64, then one
    rounded division, as numpy's passes of the same operations gave. NaN where its ``ploidy``
    byte marks a missing call (0x80 set). One pass without the GIL, in place of four numpy passes
    and their casts.
    """
    m = out.shape[0]
    t = np.float64(top)
    two_top = 2.0 * t
    flat = v.ravel()  # (a view: indexing the pairs as one row made the loop scalar, twice the time)
    whole = rows.shape[0] == 0
    for r in range(m):
        i = r if whole else rows[r]
        out[r] = ((np.float64(flat[2 * i]) * multiplier - np.float64(flat[2 * i + 1])) + two_top) / t
    missing = False
    for i in range(ploidy.shape[0]):
        missing |= ploidy[i] >= 0x80
    if missing:
        for r in range(m):
            if ploidy[r if whole else rows[r]] >= 0x80:
                out[r] = np.nan
