"""Compiled HLM fits (numba): one variant's likelihood pass with covariates (:mod:`hlmm.engines.hlm_covariates`)
and Newton fits over the distinct dosages of every variant (:mod:`hlmm.engines.hlm_classes`), the latter
by the compiled library (``_classsums.c``) where it is built.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from hlmm.engines import _kernels_classes


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


def fit_dosage_classes(offsets, values, cnt, s1, s2, max_iter, dec_rtol, stall_rtol, local_rtol, noise_rtol):
    """The HLM ``y ~ N(a0 + a1 g, exp(b0 + b1 g))`` of every variant from its ragged classes.

    Newton's method with a backtracking line search on the profile likelihood of (b0, b1), by the
    stopping rules of :func:`hlmm._optimize.minimize_newton`. With the compiled library
    (:data:`hlmm.engines._kernels_classes.COMPILED`) by its ``hlmm_fit_dosage_classes``, over ranges
    of variants on threads; else by :func:`fit_dosage_classes_numba`. The two take the same steps by
    the same rules, but the compiled one evaluates the likelihood eight classes at a time, with an
    exponential of its own (within an ulp of libm's), so their estimates differ in the last digits
    (``tests/test_engines.py`` holds them to 1e-9 relative). On the 1/16384 dosage grid (about 8,900
    classes per variant) it took 0.120 against 0.309 ms per variant on one thread, 0.065 against
    0.145 on two (``python benchmarks/time_scan_parts.py --fits``, an AVX-512 machine). Its eight
    lanes are one 512-bit vector with AVX-512, two 256-bit halves without
    (:data:`hlmm.engines._kernels_classes.VECTOR_LANES`), the same bits either way. A variant of at
    least :data:`TABLE_CLASSES` classes, all on the 1/16384 grid of .pgen dosages, takes its weights
    ``exp(-(b0 + b1 g))`` from tables of 385 exponentials an evaluation (each weight a product of
    three of them) instead of one exponential a class; its estimates differ from the direct ones in
    the last digits (``tests/test_engines.py`` holds them to 1e-12 relative). A variant of at least
    :data:`MOMENT_CLASSES` classes is evaluated by power sums instead (``moment_profile``): the
    sums over its classes of ``g^p``, ``g^p y`` and ``g^p y^2`` once per phenotype, and each
    evaluation from them by the series of ``exp(-b1 g)`` (at most 13 terms, to below an ulp of the
    sums), or by a pass of the classes where the series does not reach (``|b1| max|g| > 0.3``).
    The sums are added in another order, so the estimates differ from the direct ones in the last
    digits (``tests/test_engines.py`` holds them to 1e-9, as the fits of numba; docs/performance.rst,
    "The fits by power sums").

    Parameters
    ----------
    offsets : ndarray of int64, shape (b + 1,)
        Variant j's classes are ``offsets[j]:offsets[j + 1]``.
    values, cnt : ndarray of float64, shape (K,)
        The classes' dosages and counts.
    s1, s2 : ndarray of float64, shape (K,), or lists of them
        The classes' sums of y and y^2 (``cnt``, ``s1`` and ``s2`` may be strided: columns of one
        array, as the scanner passes them, are not copied). Lists (of the same length) give several
        phenotypes of the same counts ``cnt``, fitted in one call: the compiled fits then make each
        variant's classes, counts and centred dosages once for all of them (docs/performance.rst,
        "Ten phenotypes' fits share their classes"), with the same results to the last bit as one
        call per phenotype.
    max_iter : int
    dec_rtol, stall_rtol, local_rtol, noise_rtol : float
        The stopping rules' tolerances (:mod:`hlmm._optimize`).

    Returns
    -------
    ndarray, shape (b, 8), or (T, b, 8) for lists of T phenotypes
        ``F, a0, a1, b0, b1, var(a1), var(b1), success`` per variant (NaN where not fitted).
    """
    several = isinstance(s1, (list, tuple))
    s1s, s2s = (list(s1), list(s2)) if several else ([s1], [s2])
    if len(s1s) != len(s2s):
        raise ValueError("s1 and s2 must hold the same number of phenotypes")
    lib = _kernels_classes.LIBRARY
    b, T = offsets.shape[0] - 1, len(s1s)
    if lib is None or b == 0 or T == 0:
        out = np.stack([fit_dosage_classes_numba(offsets, values, cnt, a, c, max_iter, dec_rtol, stall_rtol,
                                                 local_rtol, noise_rtol) for a, c in zip(s1s, s2s)]) \
            if T else np.full((0, b, 8), np.nan)
        return out if several else out[0]
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    cols = [np.asarray(a, dtype=np.float64) for a in [cnt, *s1s, *s2s]]
    stride = cols[0].strides[0]
    if any(a.strides[0] != stride for a in cols) or stride <= 0 or stride % 8:
        cols = [np.ascontiguousarray(a) for a in cols]
        stride = 8
    cnt, s1s, s2s = cols[0], cols[1:T + 1], cols[T + 1:]
    pointers = np.array([[a.ctypes.data for a in s1s], [a.ctypes.data for a in s2s]], dtype=np.uintp)
    out = np.full((T, b, 8), np.nan)
    bounds = _kernels_classes.range_bounds(b, minimum=4)
    starts = np.cumsum([0] + [lib.hlmm_fit_scratch_size(offsets.ctypes.data, bounds[t], bounds[t + 1])
                              for t in range(len(bounds) - 1)])
    scratch = _kept_scratch(int(starts[-1]))

    def run(j0, j1):
        t = bounds.index(j0)  # (run_ranges splits at the same bounds)
        lib.hlmm_fit_dosage_classes(offsets.ctypes.data, values.ctypes.data, cnt.ctypes.data,
                                    pointers[0].ctypes.data, pointers[1].ctypes.data, T, stride // 8, j0, j1, b,
                                    _kernels_classes.VECTOR_LANES, TABLE_CLASSES, MOMENT_CLASSES, int(max_iter),
                                    dec_rtol, stall_rtol, local_rtol, noise_rtol, out.ctypes.data,
                                    scratch[starts[t]:].ctypes.data)

    _kernels_classes.run_ranges(run, b, minimum=4)
    return out if several else out[0]


#: The fewest classes of a variant on the 1/16384 grid whose compiled fit takes its weights from
#: tables (``hlmm_fit_dosage_classes``): below it, 385 exponentials an evaluation are not fewer than one
#: a class. Hard calls and 8-bit dosages (at most 511 classes) keep one a class.
TABLE_CLASSES = 1024

#: The fewest classes of a variant whose compiled fit evaluates its likelihood by power sums
#: (``moment_profile`` in ``_classsums.c``) wherever their series reaches: one pass of the classes
#: per phenotype for the power sums, instead of one per evaluation. Hard calls and 8-bit dosages (at
#: most 511 classes) keep their passes.
MOMENT_CLASSES = 1024

#: Per calling thread, the scratch space of the compiled fits (attribute ``array``), kept for its
#: next calls (see ``hlmm_fit_dosage_classes`` in ``_classsums.c``).
_scratch = threading.local()


def _kept_scratch(size: int) -> np.ndarray:
    """This thread's scratch space of at least ``size`` doubles."""
    array = getattr(_scratch, "array", None)
    if array is None or array.size < size:
        array = _scratch.array = np.empty(max(size, 2 * (0 if array is None else array.size)))
    return array


@njit(cache=True, parallel=True)
def fit_dosage_classes_numba(offsets, values, cnt, s1, s2, max_iter, dec_rtol, stall_rtol, local_rtol, noise_rtol):
    """:func:`fit_dosage_classes` without the compiled library: one numba loop per variant.

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
        # Each trial point is evaluated with its derivatives, which the accepted one then keeps:
        # one pass over the classes per iteration rather than two (the same values at the same
        # points, so the same iterates and results)
        F, gr0, gr1, h00, h01, h11, a0, a1, minv11 = _profile_classes(b0, b1, g, c, y1, y2, True, wk)
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
                Ft, t0, t1, t00, t01, t11, ta0, ta1, tm = _profile_classes(nb0, nb1, g, c, y1, y2, True, wk)
                accept = Ft <= F - 1e-4 * t * dec or (local and t == 1.0 and Ft <= F + noise_rtol * scale)
                if np.isfinite(Ft) and accept:
                    b0, b1 = nb0, nb1
                    F, gr0, gr1, h00, h01, h11, a0, a1, minv11 = Ft, t0, t1, t00, t01, t11, ta0, ta1, tm
                    moved = True
                    break
                t *= 0.5
            if not moved:
                ok = dec <= stall_rtol * scale
                break
        if not ok:
            continue
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
