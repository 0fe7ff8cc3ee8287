"""Compiled exact integer products of the score engine (numba): ``G' D^-1 g`` for random effects and
test variants from genotype files, by bit-plane popcounts (:mod:`hlmm.engines.score`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from hlmm.engines import _kernels_classes


@intrinsic
def _popcount(typingctx, x):
    """LLVM's ctpop on a uint64 (vectorised by LLVM where the CPU allows)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(cache=True, parallel=True)
def bitplanes(codes):
    """Two bit-planes of genotype codes: ``[code >= 1]`` and ``[code == 2]`` (missing, -1, as 0).

    Parameters
    ----------
    codes : ndarray of int8, shape (k, n)

    Returns
    -------
    low, high : ndarray of uint64, shape (k, ceil(n / 64))
        Bit ``t`` of word ``w`` is individual ``64 w + t``; ``code = low + high`` for calls.
    """
    k, n = codes.shape
    W = (n + 63) // 64
    low = np.zeros((k, W), dtype=np.uint64)
    high = np.zeros((k, W), dtype=np.uint64)
    for j in prange(k):
        for w in range(W):
            lo = np.uint64(0)
            hi = np.uint64(0)
            for t in range(min(64, n - 64 * w)):
                c = codes[j, 64 * w + t]
                if c >= 1:
                    lo |= np.uint64(1) << np.uint64(t)
                if c == 2:
                    hi |= np.uint64(1) << np.uint64(t)
            low[j, w] = lo
            high[j, w] = hi
    return low, high


@njit(cache=True, inline="always")
def _plane_product(a, h, u, v):
    """``popc(a&u) + popc(a&v) + popc(h&u) + popc(h&v)`` with three popcounts, as ``h`` is a
    subset of ``a`` and ``v`` of ``u`` (bit-planes of codes): ``(a&v) & (h&u) = h&v``, so
    ``popc(a&v) + popc(h&u) = popc((a&v) | (h&u)) + popc(h&v)``."""
    return _popcount(a & u) + (_popcount(h & v) << np.uint64(1)) + _popcount((a & v) | (h & u))


@njit(cache=True, parallel=True)
def popcount_products(A, B, U, V):
    """Exact ``R' C`` of two genotype matrices held as bit-planes (see :func:`bitplanes`).

    With ``R = A + B`` (l variants) and ``C = U + V`` (b variants) over the same individuals,
    ``(R'C)_js = popc(A_j & U_s) + popc(A_j & V_s) + popc(B_j & U_s) + popc(B_j & V_s)``, computed
    with three popcounts per word (:func:`_plane_product`): integer arithmetic, so the result
    does not depend on threads or order. Four test variants share each load of the random-effect
    planes.

    Returns
    -------
    ndarray of int64, shape (l, b)
    """
    l, W = A.shape
    b = U.shape[0]
    out = np.zeros((l, b), dtype=np.int64)
    n_groups = (b + 3) // 4
    for grp in prange(n_groups):
        s0 = 4 * grp
        s1 = min(s0 + 4, b)
        if s1 - s0 == 4:
            for j in range(l):
                c0 = np.uint64(0)
                c1 = np.uint64(0)
                c2 = np.uint64(0)
                c3 = np.uint64(0)
                for w in range(W):
                    a = A[j, w]
                    h = B[j, w]
                    c0 += _plane_product(a, h, U[s0, w], V[s0, w])
                    c1 += _plane_product(a, h, U[s0 + 1, w], V[s0 + 1, w])
                    c2 += _plane_product(a, h, U[s0 + 2, w], V[s0 + 2, w])
                    c3 += _plane_product(a, h, U[s0 + 3, w], V[s0 + 3, w])
                out[j, s0] = c0
                out[j, s0 + 1] = c1
                out[j, s0 + 2] = c2
                out[j, s0 + 3] = c3
        else:
            for s in range(s0, s1):
                for j in range(l):
                    c = np.uint64(0)
                    for w in range(W):
                        c += _plane_product(A[j, w], B[j, w], U[s, w], V[s, w])
                    out[j, s] = c
    return out


@njit(cache=True, parallel=True)
def missing_row_sums(R, codes):
    """``sum_{i missing in s} R_i`` for each test variant s: (l, b) int64 from R (n, l) int8."""
    b, n = codes.shape
    l = R.shape[1]
    out = np.zeros((l, b), dtype=np.int64)
    for s in prange(b):
        acc = np.zeros(l, dtype=np.int64)
        for i in range(n):
            if codes[s, i] < 0:
                for j in range(l):
                    acc[j] += R[i, j]
        out[:, s] = acc
    return out


@njit(cache=True, parallel=True)
def sparse_centred_products(indptr, indices, data, l, codes, gbar):
    """``E' g~`` for a CSR matrix E (n, l) and centred, mean-imputed codes: (l, b) float64.

    ``g~_is = codes_si - gbar_s`` for a call, 0 for a missing one. Each nonzero of E is read
    once per chunk of 64 variants, whose centred genotypes it multiplies together.
    """
    b, n = codes.shape
    out = np.zeros((l, b))
    chunk = 64
    for c0 in prange((b + chunk - 1) // chunk):
        s0 = c0 * chunk
        s1 = min(s0 + chunk, b)
        g = np.empty(s1 - s0)
        for i in range(n):
            if indptr[i] == indptr[i + 1]:
                continue
            for s in range(s0, s1):
                c = codes[s, i]
                g[s - s0] = 0.0 if c < 0 else c - gbar[s]
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                v = data[p]
                for s in range(s0, s1):
                    out[j, s] += v * g[s - s0]
    return out


# ----------------------------------------------------------------------------------------------
# Dosages: distinct values as classes, in a ragged layout, and the HLM fit over them
# ----------------------------------------------------------------------------------------------


def centred_power_sums(dosages, rows, B, powers=None):
    """Per variant: calls, summed dosage, and ``sum_i g_i^m B[i, k]`` for m = 1 .. ``powers[k]``,
    where ``g`` is the dosage centred over the individuals with a call (a missing call, NaN or
    negative, is mean-imputed: it adds nothing). The score test of a dosage needs nothing else of it.

    Parameters
    ----------
    dosages : ndarray, shape (b, N)
        Dosages of the block's variants over the block's rows.
    rows : ndarray of int64, shape (n,)
        The individuals (columns of ``dosages``) of the model, in the order of ``B``'s rows.
    B : ndarray, shape (n, r)
        Per-individual columns.
    powers : ndarray of int64, shape (r,), optional
        The highest power (1, 2 or 3) asked of each column (default 3 for all); the compiled
        kernel is fastest when they do not increase from one column to the next.

    Returns
    -------
    n_called : ndarray of int64, shape (b,)
    a1 : ndarray, shape (b,)
        Sum of the dosages over the calls.
    S : ndarray, shape (b, 3, r)
        ``S[j, m - 1, k]``; zero for ``m > powers[k]``.

    Notes
    -----
    Every sum is eight partial sums (lanes), over the individuals ``i`` (rows of ``B``) with
    ``i % 8`` equal to 0, ..., 7, each added in increasing ``i`` and combined as ``((l0 + l1) +
    (l2 + l3)) + ((l4 + l5) + (l6 + l7))``, with each product rounded on its own (no fused
    multiply-add). The compiled kernel (``_classsums.c``; :data:`hlmm.engines._kernels_classes.COMPILED`)
    adds in vectors of those lanes, over B's columns in a column-major copy made once per ``B``
    (its trailing zero columns, padding for numba's rows, left out); numba's kernel, used without
    it, adds in the same order, so both give the same sums to the last bit. A sum not asked for is
    not computed (the score scanner asks for 6 of the 9 of its usual 3 columns).
    """
    lib = _kernels_classes.LIBRARY
    b, N = dosages.shape
    n, r = B.shape
    powers = np.full(r, 3, dtype=np.int64) if powers is None else np.ascontiguousarray(powers, dtype=np.int64)
    if powers.shape != (r,) or np.any((powers < 1) | (powers > 3)):
        raise ValueError(f"powers must be {r} integers in 1..3, got {powers!r}")
    if lib is None or b == 0 or n == 0 or dosages.dtype not in (np.float32, np.float64):
        return _centred_power_sums(dosages, np.asarray(rows, np.int64), B, powers)
    dosages = np.ascontiguousarray(dosages)
    rows = np.ascontiguousarray(rows, np.int64)
    Bt, r_used = _columns(B)
    n_called = np.zeros(b, dtype=np.int64)
    a1 = np.zeros(b)
    S = np.zeros((b, 3, r))
    identity = n == N and bool(np.all(rows == np.arange(n)))
    f = lib.hlmm_power_sums_float if dosages.dtype == np.float32 else lib.hlmm_power_sums_double
    failed = []

    def call(*args):
        if f(*args) != 0:
            failed.append(args[-2:])

    _kernels_classes.run_ranges(call, b, dosages.ctypes.data, N, None if identity else rows.ctypes.data, n,
                                Bt.ctypes.data, r_used, Bt.shape[1], r, powers.ctypes.data, n_called.ctypes.data,
                                a1.ctypes.data, S.ctypes.data, _kernels_classes.VECTOR_LANES, minimum=4)
    if failed:
        raise MemoryError(f"out of memory for the power sums of {b} variants and {r_used} columns")
    return n_called, a1, S


_last_columns: tuple = (None, None, 0)


def _columns(B):
    """``B`` column-major, rows up to a multiple of 8 (zero past n), without its trailing zero
    columns, and how many columns that leaves; the last one made is kept for the next call (the
    scanner passes the same basis for every block)."""
    global _last_columns
    last = _last_columns
    if last[0] is B:
        return last[1], last[2]
    n, r = B.shape
    nonzero = np.flatnonzero(np.any(B != 0, axis=0))
    used = int(nonzero[-1]) + 1 if nonzero.size else 0
    Bt = np.zeros((used, -(-n // 8) * 8))
    Bt[:, :n] = B[:, :used].T
    _last_columns = (B, Bt, used)
    return Bt, used


@njit(cache=True, parallel=True)
def _centred_power_sums(dosages, rows, B, powers):
    b = dosages.shape[0]
    n, r = B.shape
    n_called = np.zeros(b, dtype=np.int64)
    a1 = np.zeros(b)
    S = np.zeros((b, 3, r))
    for j in prange(b):
        c = 0
        lanes = np.zeros(8)
        for i in range(n):
            d = dosages[j, rows[i]]
            if d >= 0:  # False for NaN
                c += 1
                lanes[i & 7] += d
        s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
        n_called[j] = c
        a1[j] = s
        if c == 0:
            continue
        mean = s / c
        acc = np.zeros((8, 3, r))  # [i % 8, power - 1, column]
        for i in range(n):
            d = dosages[j, rows[i]]
            if d >= 0:
                g = d - mean
                g2 = g * g
                g3 = g2 * g
                lane = i & 7
                for k in range(r):
                    v = B[i, k]
                    acc[lane, 0, k] += g * v
                    if powers[k] >= 2:
                        acc[lane, 1, k] += g2 * v
                    if powers[k] >= 3:
                        acc[lane, 2, k] += g3 * v
        for m in range(3):
            for k in range(r):
                if m >= powers[k]:
                    continue
                S[j, m, k] = (((acc[0, m, k] + acc[1, m, k]) + (acc[2, m, k] + acc[3, m, k]))
                              + ((acc[4, m, k] + acc[5, m, k]) + (acc[6, m, k] + acc[7, m, k])))
    return n_called, a1, S
