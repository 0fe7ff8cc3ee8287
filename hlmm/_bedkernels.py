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


@njit(cache=True)
def covariate_pass(y, Xc, Vc, codes, gmean, beta, alpha, second):
    """One pass of the HLM likelihood with covariates for one SNP, over its called individuals.

    With x_i = (Xc_i, g_i), v_i = (Vc_i, g_i), g_i = codes_i - gmean and w_i = exp(-v_i' beta):

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
        if codes[i] < 0:
            continue
        gi = codes[i] - gmean
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


@njit(cache=True)
def integer_row_sums(R, indptr, indices, center, idx, y):
    """Sums over rows ``idx`` of ``R + E`` (E sparse CSR, value ``center[j]`` at its entries).

    Returns, in float64: column sums ``s`` of R + E, ``zy = (R + E)' y``, ``ER = E'R`` and
    ``EE = E'E`` (both l x l), without converting R.
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
