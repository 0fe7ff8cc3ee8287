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

    Notes
    -----
    With more than 8 columns, variants are taken in groups of 8 and individuals in chunks whose
    rows of ``Yc`` fit in cache, so that each chunk is read from memory once per group rather than
    once per variant; with few columns the plain loop over individuals per variant was faster
    (measured at n = 100,000: 47-72 ms against 54-108 ms per 256 variants for 1-8 columns). Both
    add the individuals in their order, so the sums are the same to the last bit.
    """
    if Yc.shape[1] > 8:
        return _class_moments_tiled(packed, Yc)
    return _class_moments_plain(packed, Yc)


@njit(cache=True, parallel=True)
def _class_moments_plain(packed, Yc):
    b, n_bytes = packed.shape
    n, q = Yc.shape
    out = np.zeros((b, 4, q))
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
def _class_moments_tiled(packed, Yc):
    b, n_bytes = packed.shape
    n, q = Yc.shape
    out = np.zeros((b, 4, q))
    # class index by 2-bit code: 00 -> 2 copies, 01 -> missing (3), 10 -> 1 copy, 11 -> 0 copies
    slot = np.array([2, 3, 1, 0])
    group = 8
    chunk = max(16, 16384 // max(q, 1))  # bytes: 4 * chunk rows of Yc, about 512 KB
    full = n // 4  # bytes holding 4 individuals
    for grp in prange((b + group - 1) // group):
        j0 = grp * group
        j1 = min(j0 + group, b)
        acc = np.zeros((j1 - j0, 4, q))
        for c0 in range(0, n_bytes, chunk):
            c1 = min(c0 + chunk, n_bytes)
            for j in range(j0, j1):
                a = acc[j - j0]
                for byte in range(c0, min(c1, full)):
                    v = packed[j, byte]
                    base = 4 * byte
                    for p in range(4):
                        k = slot[(v >> (2 * p)) & 3]
                        row = Yc[base + p]
                        ak = a[k]
                        for c in range(q):
                            ak[c] += row[c]
                if c1 > full:  # the last, partly filled byte
                    v = packed[j, full]
                    for p in range(n - 4 * full):
                        k = slot[(v >> (2 * p)) & 3]
                        for c in range(q):
                            a[k, c] += Yc[4 * full + p, c]
        out[j0:j1] = acc
    return out


@njit(cache=True, parallel=True)
def class_moments_codes(codes, Yc):
    """Like :func:`class_moments_packed`, from decoded hard calls ``codes`` (b, n), -1 missing,
    with ``Yc`` of shape (n, q) over the same individuals."""
    b, n = codes.shape
    q = Yc.shape[1]
    out = np.zeros((b, 4, q))
    group = 8
    chunk = max(64, 65536 // max(q, 1))
    for grp in prange((b + group - 1) // group):
        j0 = grp * group
        j1 = min(j0 + group, b)
        for i0 in range(0, n, chunk):
            i1 = min(i0 + chunk, n)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    k = codes[j, i]
                    if k < 0:
                        k = 3
                    for c in range(q):
                        out[j, k, c] += Yc[i, c]
    return out


@njit(cache=True)
def _distinct_sorted(row):
    """Distinct called values of ``row`` (not NaN, not negative) in increasing order."""
    n = row.shape[0]
    vals = np.empty(n)
    m = 0
    for i in range(n):
        if row[i] >= 0:  # False for NaN
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
@njit(cache=True, parallel=True)
def dosage_classes(dosages, Yc, denominator):
    """Column sums of ``Yc`` over the individuals sharing each distinct dosage of each variant.

    Ragged: variant j's classes are rows ``offsets[j]:offsets[j + 1]`` of ``values`` and
    ``sums``, so that variants with many distinct dosages (fine .pgen grids) do not pad the
    others. A variant whose dosages all lie on the grid ``k / denominator`` (to within 1e-6 of a
    grid unit; ``denominator`` at most 65536) is binned by k; otherwise (or with ``denominator``
    0) its distinct values are found by sorting. Both give the same classes for dosages on the
    grid. Negative dosages count as missing, like NaN.

    Returns
    -------
    offsets : ndarray of int64, shape (b + 1,)
    values : ndarray, shape (K,)
        Distinct dosages of each variant, increasing.
    sums : ndarray, shape (K, q)
    missing : ndarray, shape (b, q)
    """
    b, n = dosages.shape
    q = Yc.shape[1]
    grid = 0 < denominator <= 65536
    width = 2 * denominator + 1 if grid else 1
    present = np.zeros((b if grid else 0, width), dtype=np.bool_)
    on_grid = np.zeros(b, dtype=np.bool_)
    counts = np.zeros(b, dtype=np.int64)
    for j in prange(b):
        ok = grid
        if grid:
            for i in range(n):
                d = dosages[j, i]
                if d >= 0:  # False for NaN
                    x = d * denominator
                    k = int(x + 0.5)
                    if abs(x - k) > 1e-6 or k >= width:
                        ok = False
                        break
                    present[j, k] = True
        on_grid[j] = ok
        if ok:
            counts[j] = np.count_nonzero(present[j])
        else:
            counts[j] = _distinct_sorted(dosages[j]).shape[0]
    offsets = np.zeros(b + 1, dtype=np.int64)
    for j in range(b):
        offsets[j + 1] = offsets[j] + counts[j]
    values = np.zeros(offsets[b])
    sums = np.zeros((offsets[b], q))
    missing = np.zeros((b, q))
    for j in prange(b):
        o = offsets[j]
        if on_grid[j]:
            slot = np.empty(width, dtype=np.int32)
            k = 0
            for v in range(width):
                if present[j, v]:
                    slot[v] = k
                    values[o + k] = v / denominator
                    k += 1
            # class of each individual first (k: missing), then the sums in a local array:
            # measured 35-50% faster than adding into ``sums`` while looking the classes up
            keys = np.empty(n, dtype=np.int32)
            for i in range(n):
                d = dosages[j, i]
                keys[i] = slot[int(d * denominator + 0.5)] if d >= 0 else k
            acc = np.zeros((k + 1, q))
            for i in range(n):
                r = keys[i]
                for c in range(q):
                    acc[r, c] += Yc[i, c]
            sums[o : o + k] = acc[:k]
            missing[j] = acc[k]
        else:
            vals = _distinct_sorted(dosages[j])
            values[o : o + vals.shape[0]] = vals
            for i in range(n):
                d = dosages[j, i]
                if d >= 0:
                    r = o + np.searchsorted(vals, d)
                    for c in range(q):
                        sums[r, c] += Yc[i, c]
                else:
                    for c in range(q):
                        missing[j, c] += Yc[i, c]
    return offsets, values, sums, missing


@njit(cache=True, nogil=True)
def _profile_classes(b0, b1, g, cnt, s1, s2, hessian, wk):
    """F = -2L - n log 2pi of the SNP's HLM profiled over alpha, its gradient and Hessian in beta.

    ``wk`` (K) is scratch space for the weights. Returns (F, grad0, grad1, H00, H01, H11,
    alpha0, alpha1, Minv11); F = inf if infeasible.
    """
    m00 = m01 = m11 = r0 = r1 = 0.0
    K = g.shape[0]
    for k in range(K):
        if cnt[k] == 0:
            continue
        w = np.exp(-(b0 + b1 * g[k]))
        wk[k] = w
        m00 += w * cnt[k]
        m01 += w * cnt[k] * g[k]
        m11 += w * cnt[k] * g[k] * g[k]
        r0 += w * s1[k]
        r1 += w * s1[k] * g[k]
    det = m00 * m11 - m01 * m01
    if not (det > 0) or not np.isfinite(det):
        return np.inf, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, np.nan
    a0 = (m11 * r0 - m01 * r1) / det
    a1 = (m00 * r1 - m01 * r0) / det
    F = 0.0
    gr0 = gr1 = h00 = h01 = h11 = A00 = A01 = A11 = 0.0
    for k in range(K):
        if cnt[k] == 0:
            continue
        eta = b0 + b1 * g[k]
        w = wk[k]
        mu = a0 + a1 * g[k]
        Q = max(s2[k] - 2.0 * mu * s1[k] + cnt[k] * mu * mu, 0.0)
        wQ = w * Q
        F += cnt[k] * eta + wQ
        d = cnt[k] - wQ
        gr0 += d
        gr1 += d * g[k]
        if hessian:
            h00 += wQ
            h01 += wQ * g[k]
            h11 += wQ * g[k] * g[k]
            wr = w * (s1[k] - cnt[k] * mu)
            A00 += wr
            A01 += wr * g[k]
            A11 += wr * g[k] * g[k]
    if not np.isfinite(F):
        return np.inf, 0.0, 0.0, 0.0, 0.0, 0.0, a0, a1, np.nan
    if hessian:
        # H = sum wQ v v' - 2 A' M^-1 A with A symmetric [[A00, A01], [A01, A11]]
        i00, i01, i11 = m11 / det, -m01 / det, m00 / det
        x00 = i00 * A00 + i01 * A01
        x01 = i00 * A01 + i01 * A11
        x10 = i01 * A00 + i11 * A01
        x11 = i01 * A01 + i11 * A11
        h00 -= 2.0 * (A00 * x00 + A01 * x10)
        h01 -= 2.0 * (A00 * x01 + A01 * x11)
        h11 -= 2.0 * (A01 * x01 + A11 * x11)
    return F, gr0, gr1, h00, h01, h11, a0, a1, m00 / det


@njit(cache=True, parallel=True)
def fit_dosage_classes(offsets, values, cnt, s1, s2, max_iter, dec_rtol, stall_rtol, local_rtol, noise_rtol):
    """The HLM ``y ~ N(a0 + a1 g, exp(b0 + b1 g))`` of every variant from its ragged classes.

    Newton's method with a backtracking line search on the profile likelihood of (b0, b1), by the
    stopping rules of :func:`hlmm._optimize.minimize_newton`; one compiled loop per variant.

    Returns
    -------
    ndarray, shape (b, 8)
        ``F, a0, a1, b0, b1, var(a1), var(b1), success`` per variant (NaN where not fitted).
    """
    b = offsets.shape[0] - 1
    out = np.full((b, 8), np.nan)
    for j in prange(b):
        o0 = offsets[j]
        o1 = offsets[j + 1]
        c = cnt[o0:o1]
        n = 0.0
        sg = 0.0
        present = 0
        for k in range(o1 - o0):
            n += c[k]
            sg += c[k] * values[o0 + k]
            if c[k] > 0:
                present += 1
        out[j, 7] = 0.0
        if present < 2 or n <= 4:
            continue
        g = values[o0:o1] - sg / n
        wk = np.empty(o1 - o0)
        y1 = s1[o0:o1]
        y2 = s2[o0:o1]
        # start: ordinary least squares mean, homoskedastic variance
        v00 = v01 = v11 = 0.0
        r0 = r1 = 0.0
        for k in range(o1 - o0):
            v00 += c[k]
            v01 += c[k] * g[k]
            v11 += c[k] * g[k] * g[k]
            r0 += y1[k]
            r1 += y1[k] * g[k]
        vdet = v00 * v11 - v01 * v01
        a0 = (v11 * r0 - v01 * r1) / vdet
        a1 = (v00 * r1 - v01 * r0) / vdet
        rss = 0.0
        for k in range(o1 - o0):
            mu = a0 + a1 * g[k]
            rss += max(y2[k] - 2.0 * mu * y1[k] + c[k] * mu * mu, 0.0)
        b0 = np.log(max(rss / n, 1e-300))
        b1 = 0.0
        F, gr0, gr1, h00, h01, h11, a0, a1, _ = _profile_classes(b0, b1, g, c, y1, y2, True, wk)
        ok = False
        stalls = 0
        last = np.inf
        for _ in range(max_iter):
            if not np.isfinite(F):
                break
            hd = h00 * h11 - h01 * h01
            if h00 > 0 and hd > 0:
                s0 = -(h11 * gr0 - h01 * gr1) / hd
                s1_ = -(h00 * gr1 - h01 * gr0) / hd
            else:
                s0 = -(v11 * gr0 - v01 * gr1) / vdet
                s1_ = -(v00 * gr1 - v01 * gr0) / vdet
            dec = -(gr0 * s0 + gr1 * s1_)
            scale = max(1.0, abs(F))
            if not np.isfinite(dec):
                break
            if dec <= dec_rtol * scale:
                ok = True
                break
            stalls = stalls + 1 if dec > 0.5 * last else 0
            if stalls >= 3 and dec <= stall_rtol * scale:
                ok = True
                break
            last = dec
            local = dec <= local_rtol * scale
            t = 1.0
            moved = False
            while t >= 1e-14:
                nb0, nb1 = b0 + t * s0, b1 + t * s1_
                Ft = _profile_classes(nb0, nb1, g, c, y1, y2, False, wk)[0]
                accept = Ft <= F - 1e-4 * t * dec or (local and t == 1.0 and Ft <= F + noise_rtol * scale)
                if np.isfinite(Ft) and accept:
                    b0, b1 = nb0, nb1
                    moved = True
                    break
                t *= 0.5
            if not moved:
                ok = dec <= stall_rtol * scale
                break
            F, gr0, gr1, h00, h01, h11, a0, a1, _ = _profile_classes(b0, b1, g, c, y1, y2, True, wk)
        if not ok:
            continue
        F, _, _, _, _, _, a0, a1, minv11 = _profile_classes(b0, b1, g, c, y1, y2, False, wk)
        var_b1 = 2.0 * v00 / vdet
        if np.isfinite(F) and minv11 > 0 and var_b1 > 0:
            out[j, 0] = F
            out[j, 1] = a0
            out[j, 2] = a1
            out[j, 3] = b0
            out[j, 4] = b1
            out[j, 5] = minv11
            out[j, 6] = var_b1
            out[j, 7] = 1.0
    return out


@njit(cache=True, parallel=True)
def segment_sums(offsets, x):
    """Sums of the rows ``offsets[j]:offsets[j + 1]`` of ``x`` (K, q) for each j: (b, q)."""
    b = offsets.shape[0] - 1
    out = np.zeros((b, x.shape[1]))
    for j in prange(b):
        for k in range(offsets[j], offsets[j + 1]):
            for c in range(x.shape[1]):
                out[j, c] += x[k, c]
    return out
