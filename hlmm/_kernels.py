"""Compiled kernels of the scan engines (numba).

Packed PLINK .bed bytes are SNP-major, 2 bits per genotype: 0b00 two copies of A1, 0b01
missing, 0b10 one copy, 0b11 no copy; the first individual of a byte is in its lowest two bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

#: copies of A1 for each 2-bit code; -1 marks a missing call
CODE_TO_COPIES = np.array([2, -1, 1, 0], dtype=np.int8)


@njit(cache=True, parallel=True)
def class_moments_packed(packed, Yc):
    """Per variant and genotype class: column sums of ``Yc`` over the individuals of the class.

    Parameters
    ----------
    packed : ndarray of uint8, shape (b, n_bytes)
        Packed genotypes of b variants.
    Yc : ndarray of float64, shape (n_file, q)
        Per individual of the file, the quantities to sum (e.g. an inclusion indicator, y and
        y^2 for each phenotype; zero rows for individuals not included).

    Returns
    -------
    ndarray of float64, shape (b, 4, q)
        ``[variant, copies of A1 (0, 1, 2) or 3 for missing, column of Yc]``.
    """
    b, n_bytes = packed.shape
    n, q = Yc.shape
    out = np.zeros((b, 4, q))
    # class index by 2-bit code: 00 -> 2 copies, 01 -> missing (3), 10 -> 1 copy, 11 -> 0 copies
    slot = np.array([2, 3, 1, 0])
    for j in prange(b):
        acc = np.zeros((4, q))
        for byte in range(n_bytes):
            v = packed[j, byte]
            base = 4 * byte
            for p in range(4):
                i = base + p
                if i >= n:
                    break
                k = slot[(v >> (2 * p)) & 3]
                for c in range(q):
                    acc[k, c] += Yc[i, c]
        out[j] = acc
    return out


@njit(cache=True, parallel=True)
def class_moments_codes(codes, Yc):
    """Like :func:`class_moments_packed`, from decoded hard calls ``codes`` (b, n), -1 missing,
    with ``Yc`` of shape (n, q) over the same individuals."""
    b, n = codes.shape
    q = Yc.shape[1]
    out = np.zeros((b, 4, q))
    for j in prange(b):
        acc = np.zeros((4, q))
        for i in range(n):
            k = codes[j, i]
            if k < 0:
                k = 3
            for c in range(q):
                acc[k, c] += Yc[i, c]
        out[j] = acc
    return out


@njit(cache=True)
def _distinct_sorted(row, denominator):
    """Distinct non-NaN values of ``row`` in increasing order."""
    n = row.shape[0]
    if 0 < denominator <= 65536:
        present = np.zeros(2 * denominator + 1, dtype=np.bool_)
        for i in range(n):
            d = row[i]
            if not np.isnan(d):
                present[int(np.rint(d * denominator))] = True
        keys = np.flatnonzero(present)
        return keys.astype(np.float64) / denominator
    vals = np.empty(n)
    m = 0
    for i in range(n):
        if not np.isnan(row[i]):
            vals[m] = row[i]
            m += 1
    vals = np.sort(vals[:m])
    out = np.empty(m)
    k = 0
    for t in range(m):
        if t == 0 or vals[t] != vals[t - 1]:
            out[k] = vals[t]
            k += 1
    return out[:k]


@njit(cache=True, parallel=True)
def class_moments_dosages(dosages, Yc, denominator):
    """Per variant, column sums of ``Yc`` over the individuals sharing each distinct dosage.

    Dosages on the grid ``k / denominator`` (k = 0 .. 2 denominator, ``denominator`` at most
    65536) are binned by k; otherwise (``denominator`` 0: no known grid) distinct values are
    found by sorting.

    Returns
    -------
    values : ndarray, shape (b, K)
        Distinct dosages of each variant in increasing order, padded with 0.
    sums : ndarray, shape (b, K, q)
        Column sums of ``Yc`` per distinct dosage (zero for padding).
    n_classes : ndarray of int64, shape (b,)
    missing : ndarray, shape (b, q)
        Column sums of ``Yc`` over the individuals with a missing dosage.
    """
    b, n = dosages.shape
    q = Yc.shape[1]
    n_classes = np.zeros(b, dtype=np.int64)
    for j in prange(b):
        n_classes[j] = _distinct_sorted(dosages[j], denominator).shape[0]
    kmax = max(1, n_classes.max())
    values = np.zeros((b, kmax))
    sums = np.zeros((b, kmax, q))
    missing = np.zeros((b, q))
    grid = 0 < denominator <= 65536
    for j in prange(b):
        vals = _distinct_sorted(dosages[j], denominator)
        K = vals.shape[0]
        values[j, :K] = vals
        if grid:
            slot = np.full(2 * denominator + 1, -1, dtype=np.int64)
            for k in range(K):
                slot[int(np.rint(vals[k] * denominator))] = k
        for i in range(n):
            d = dosages[j, i]
            if np.isnan(d):
                for c in range(q):
                    missing[j, c] += Yc[i, c]
                continue
            if grid:
                k = slot[int(np.rint(d * denominator))]
            else:
                k = np.searchsorted(vals, d)
            for c in range(q):
                sums[j, k, c] += Yc[i, c]
    return values, sums, n_classes, missing


@njit(cache=True, parallel=True)
def off_grid(dosages, denominator):
    """Whether any dosage is not a multiple of ``1 / denominator`` (to within 1e-6 of a unit)."""
    b, n = dosages.shape
    bad = np.zeros(b, dtype=np.bool_)
    for j in prange(b):
        for i in range(n):
            x = dosages[j, i] * denominator
            if not np.isnan(x) and abs(x - np.rint(x)) > 1e-6:
                bad[j] = True
                break
    return bad.any()


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
def covariate_pass(y, Xc, Vc, geno, gmean, beta, alpha, second):
    """One pass of the HLM likelihood with covariates for one SNP, over its called individuals.

    ``geno`` holds the SNP's genotypes (float64, NaN where missing; missing individuals are left
    out). With x_i = (Xc_i, g_i), v_i = (Vc_i, g_i), g_i = geno_i - gmean and
    w_i = exp(-v_i' beta):

    * first pass (``second`` False): returns (sum eta_i, X'WX, X'Wy);
    * second pass, at ``alpha``: returns (sum w_i r_i^2, sum v_i (1 - w_i r_i^2),
      sum w_i r_i^2 v_i v_i', sum w_i r_i x_i v_i').

    Non-finite sums signal overflow to the caller.
    """
    n = y.shape[0]
    c = Xc.shape[1]
    v = Vc.shape[1]
    p, q = c + 1, v + 1
    x = np.empty(p)
    vv = np.empty(q)
    s0 = 0.0
    A1 = np.zeros((p, p))
    b1 = np.zeros(p)
    g2 = np.zeros(q)
    H2 = np.zeros((q, q))
    A2 = np.zeros((p, q))
    for i in range(n):
        if np.isnan(geno[i]):
            continue
        gi = geno[i] - gmean
        for a in range(c):
            x[a] = Xc[i, a]
        x[c] = gi
        eta = 0.0
        for a in range(v):
            vv[a] = Vc[i, a]
            eta += Vc[i, a] * beta[a]
        vv[v] = gi
        eta += gi * beta[v]
        w = np.exp(-eta)
        if not second:
            s0 += eta
            for a in range(p):
                wa = w * x[a]
                b1[a] += wa * y[i]
                for b in range(a + 1):
                    A1[a, b] += wa * x[b]
        else:
            r = y[i]
            for a in range(p):
                r -= x[a] * alpha[a]
            wr = w * r
            wr2 = wr * r
            s0 += wr2
            d = 1.0 - wr2
            for a in range(q):
                g2[a] += vv[a] * d
                for b in range(a + 1):
                    H2[a, b] += wr2 * vv[a] * vv[b]
            for a in range(p):
                for b in range(q):
                    A2[a, b] += wr * x[a] * vv[b]
    for a in range(p):
        for b in range(a):
            A1[b, a] = A1[a, b]
    for a in range(q):
        for b in range(a):
            H2[b, a] = H2[a, b]
    return s0, A1, b1, g2, H2, A2


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


@njit(cache=True, parallel=True)
def popcount_products(A, B, U, V):
    """Exact ``R' C`` of two genotype matrices held as bit-planes (see :func:`bitplanes`).

    With ``R = A + B`` (l variants) and ``C = U + V`` (b variants) over the same individuals,
    ``(R'C)_js = popc(A_j & U_s) + popc(A_j & V_s) + popc(B_j & U_s) + popc(B_j & V_s)``: integer
    arithmetic, so the result does not depend on threads or order. Four test variants share each
    load of the random-effect planes.

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
                    c0 += _popcount(a & U[s0, w]) + _popcount(a & V[s0, w]) + _popcount(h & U[s0, w]) + \
                        _popcount(h & V[s0, w])
                    c1 += _popcount(a & U[s0 + 1, w]) + _popcount(a & V[s0 + 1, w]) + _popcount(h & U[s0 + 1, w]) + \
                        _popcount(h & V[s0 + 1, w])
                    c2 += _popcount(a & U[s0 + 2, w]) + _popcount(a & V[s0 + 2, w]) + _popcount(h & U[s0 + 2, w]) + \
                        _popcount(h & V[s0 + 2, w])
                    c3 += _popcount(a & U[s0 + 3, w]) + _popcount(a & V[s0 + 3, w]) + _popcount(h & U[s0 + 3, w]) + \
                        _popcount(h & V[s0 + 3, w])
                out[j, s0] = c0
                out[j, s0 + 1] = c1
                out[j, s0 + 2] = c2
                out[j, s0 + 3] = c3
        else:
            for s in range(s0, s1):
                for j in range(l):
                    c = np.uint64(0)
                    for w in range(W):
                        c += _popcount(A[j, w] & U[s, w]) + _popcount(A[j, w] & V[s, w]) + \
                            _popcount(B[j, w] & U[s, w]) + _popcount(B[j, w] & V[s, w])
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
