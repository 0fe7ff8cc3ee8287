"""Exact default-mode HLM fits with G×E terms for many variants at once, from genotype-class sums.

In the default mode with exposures ``E_1..E_K`` (``--interaction``) the null model, with the
exposures in the mean and the log-variance, adjusts the phenotype once (:mod:`hlmm.nulls`), and
each variant's model on the adjusted phenotype is::

    y_i ~ N(a0 + a g_i + sum_j c_j g_i E_ij,  exp(b0 + b g_i)),

``g`` the variant's genotype centred over the individuals with a call, ``E`` as given (so ``a`` is
the effect at E = 0). The individuals of a genotype class k share ``g_k``, hence ``w_k =
exp(-b0 - b g_k)``; with the mean design row ``x_i = (1, g_k, g_k E_i')`` the profile likelihood of
``beta = (b0, b)`` needs per class only the sums of ``1, y, y^2, E_j, E_j E_l, y E_j``::

    M = X'WX = sum_k w_k sum_{i in k} x_i x_i',   alpha = M^-1 X'Wy
    Q_k = sum_{i in k} (y_i - x_i' alpha)^2
    F = sum_k n_k eta_k + w_k Q_k                         (= -2 L - n log 2 pi)
    dF/dbeta = sum_k (n_k - w_k Q_k) v_k,                 v_k = (1, g_k)
    d2F = sum_k w_k Q_k v_k v_k' - 2 C' M^-1 C,           C = sum_k w_k (sum_{i in k} x_i r_i) v_k'

(with ``K = 0`` this is :func:`hlmm.engines._hlm_fits.fit_classes`). Every variant of a block is
fitted at once by Newton steps with a backtracking line search and the stopping rule of
:func:`hlmm._optimize.minimize_newton`. Standard errors are those of :class:`hlmm.hetlm.model`:
``M^-1`` for the mean and ``2 (V'V)^-1`` for the log-variance.
"""

from __future__ import annotations

import numpy as np

from hlmm._linalg import LOG_2PI, class_outer_sum
from hlmm.engines._hlm_fits import newton_batch

__all__ = ["fit_interaction_classes"]


def _mean_moments(g, cnt, sE, sEE):
    """Per class ``sum_{i in k} x_i x_i'`` for ``x_i = (1, g_k, g_k E_i)``: shape (b, K, p, p)."""
    b, K = cnt.shape
    q = sE.shape[2]
    p = 2 + q
    S = np.empty((b, K, p, p))
    S[..., 0, 0] = cnt
    S[..., 0, 1] = S[..., 1, 0] = cnt * g
    S[..., 1, 1] = cnt * g * g
    S[..., 0, 2:] = S[..., 2:, 0] = g[..., None] * sE
    S[..., 1, 2:] = S[..., 2:, 1] = (g * g)[..., None] * sE
    S[..., 2:, 2:] = (g * g)[..., None, None] * sEE
    return S


def _cross(g, sy, syE):
    """Per class ``sum_{i in k} x_i y_i``: shape (b, K, p)."""
    return np.concatenate([sy[..., None], (g * sy)[..., None], g[..., None] * syE], axis=-1)


def _profile(beta, g, cnt, syy, S, xy, hessian: bool):
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        eta = beta[:, :1] + beta[:, 1:] * g
        w = np.exp(-eta)
        M = np.einsum("bk,bkij->bij", w, S)
        rhs = np.einsum("bk,bki->bi", w, xy)
        try:
            alpha = np.linalg.solve(M, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:
            alpha = np.full(rhs.shape, np.nan)
            for j in range(M.shape[0]):
                try:
                    alpha[j] = np.linalg.solve(M[j], rhs[j])
                except np.linalg.LinAlgError:
                    pass
        # Q_k = syy - 2 alpha' xy_k + alpha' S_k alpha
        Q = np.maximum(syy - 2.0 * np.einsum("bi,bki->bk", alpha, xy)
                       + np.einsum("bi,bkij,bj->bk", alpha, S, alpha), 0.0)
        wQ = w * Q
        F = (cnt * eta).sum(1) + wQ.sum(1)
        F = np.where(np.isfinite(F), F, np.inf)
        d = cnt - wQ
        grad = np.stack([d.sum(1), (d * g).sum(1)], -1)
        H = None
        if hessian:
            xr = xy - np.einsum("bkij,bj->bki", S, alpha)  # sum_{i in k} x_i r_i
            wxr = w[..., None] * xr
            C = np.stack([wxr.sum(1), (wxr * g[..., None]).sum(1)], -1)  # (b, p, 2)
            MinvC = np.linalg.solve(M, C)
            H = class_outer_sum(wQ, g) - 2.0 * np.einsum("bpi,bpj->bij", C, MinvC)
    return F, grad, H, alpha, M


def fit_interaction_classes(counts, sy, syy, sE, sEE, syE, values=None, max_iter: int = 200) -> dict:
    """Fit ``y ~ N(a0 + a g + sum_j c_j g E_j, exp(b0 + b g))`` for many variants from class sums.

    Parameters
    ----------
    counts, sy, syy : ndarray, shape (b, K)
        Per variant and class: individuals, sum of y, sum of y^2.
    sE : ndarray, shape (b, K, q)
        Sums of each exposure.
    sEE : ndarray, shape (b, K, q, q)
        Sums of the products of exposures.
    syE : ndarray, shape (b, K, q)
        Sums of y times each exposure.
    values : ndarray, shape (b, K), optional
        Genotype value of each class (uncentred); default 0, 1, 2 copies of A1 (K = 3).
    max_iter : int

    Returns
    -------
    dict
        Arrays of length b: ``likelihood``, ``add``, ``add_se``, ``var``, ``var_se``; ``gxe`` and
        ``gxe_se`` of shape (b, q); ``alpha`` (b, 2 + q), ``beta`` (b, 2), ``mean_cov`` (b, 2 + q,
        2 + q), the covariance of ``alpha``; ``success``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> n = 3000
    >>> g, E = rng.binomial(2, 0.3, n).astype(float), rng.standard_normal(n)
    >>> y = 0.2 * g + 0.3 * (g - g.mean()) * E + rng.standard_normal(n)
    >>> cls = [g == k for k in range(3)]
    >>> s = lambda v: np.array([[v[c].sum() for c in cls]])
    >>> out = fit_interaction_classes(s(np.ones(n)), s(y), s(y * y), s(E)[..., None], s(E * E)[..., None, None],
    ...                               s(y * E)[..., None])
    >>> bool(abs(out["gxe"][0, 0] - 0.3) < 3 * out["gxe_se"][0, 0])
    True
    """
    counts, sy, syy = (np.asarray(a, dtype=float) for a in (counts, sy, syy))
    sE, sEE, syE = (np.asarray(a, dtype=float) for a in (sE, sEE, syE))
    b, K = counts.shape
    q = sE.shape[2]
    p = 2 + q
    n = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if values is None:
            gbar = (counts[:, 1] + 2.0 * counts[:, 2]) / n
            g = np.arange(3.0)[None, :] - gbar[:, None]
        else:
            gbar = (counts * values).sum(1) / n
            g = np.where(counts > 0, values - gbar[:, None], 0.0)
    usable = ((counts > 0).sum(1) >= 2) & (n > 2 * (p + 2))
    out = {k: np.full(b, np.nan) for k in ("likelihood", "add", "add_se", "var", "var_se")}
    out.update(gxe=np.full((b, q), np.nan), gxe_se=np.full((b, q), np.nan), alpha=np.full((b, p), np.nan),
               beta=np.full((b, 2), np.nan), mean_cov=np.full((b, p, p), np.nan))
    success = np.zeros(b, dtype=bool)
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        out["success"] = success
        return out
    gi, cnt, syy_i = g[idx], counts[idx], syy[idx]
    S = _mean_moments(gi, cnt, sE[idx], sEE[idx])
    xy = _cross(gi, sy[idx], syE[idx])
    # start: least squares mean, homoskedastic variance
    beta = np.zeros((idx.size, 2))
    F0, _, _, alpha0, _ = _profile(beta, gi, cnt, syy_i, S, xy, hessian=False)
    beta[:, 0] = np.log(np.maximum((F0 - 0.0) / n[idx], 1e-300))  # rss / n at beta = 0
    VtV = class_outer_sum(cnt, gi)
    F, grad, H, _, _ = _profile(beta, gi, cnt, syy_i, S, xy, hessian=True)
    ok = newton_batch(beta, F, grad, H, VtV, lambda rows, b, hessian: _profile(
        b, gi[rows], cnt[rows], syy_i[rows], S[rows], xy[rows], hessian=hessian), max_iter)
    F, _, _, alpha, M = _profile(beta, gi, cnt, syy_i, S, xy, hessian=False)
    with np.errstate(invalid="ignore"):
        cov = np.full_like(M, np.nan)
        finite = np.all(np.isfinite(M), axis=(1, 2))
        for j in np.flatnonzero(finite):
            try:
                cov[j] = np.linalg.inv(M[j])
            except np.linalg.LinAlgError:
                pass
        var_var = 2.0 * (VtV[:, 0, 0] / (VtV[:, 0, 0] * VtV[:, 1, 1] - VtV[:, 0, 1] ** 2))
        diag = np.diagonal(cov, axis1=1, axis2=2)
        good = ok & np.isfinite(F) & np.all(diag > 0, axis=1) & (var_var > 0)
    sel = idx[good]
    out["likelihood"][sel] = -0.5 * (F[good] + n[sel] * LOG_2PI)
    out["add"][sel] = alpha[good, 1]
    out["add_se"][sel] = np.sqrt(diag[good, 1])
    out["gxe"][sel] = alpha[good, 2:]
    out["gxe_se"][sel] = np.sqrt(diag[good, 2:])
    out["var"][sel] = beta[good, 1]
    out["var_se"][sel] = np.sqrt(var_var[good])
    out["alpha"][sel] = alpha[good]
    out["beta"][sel] = beta[good]
    out["mean_cov"][sel] = cov[good]
    success[sel] = True
    out["success"] = success
    return out
