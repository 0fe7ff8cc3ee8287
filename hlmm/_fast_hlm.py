"""Exact HLM fits of many SNPs at once from genotype-class sufficient statistics.

In the default mode of ``hlmm_chr`` a SNP's model has ``X = V = [1, g]`` and ``g`` takes three
values (0, 1, 2 copies of A1, centred) among the individuals with a call. Writing ``n_k``,
``S1_k = sum y`` and ``S2_k = sum y^2`` per class k, the profile likelihood of
``beta = (b0, b1)`` and its exact gradient and Hessian depend on the data only through these
nine numbers::

    eta_k = b0 + b1 g_k,   w_k = exp(-eta_k),   alpha = (X'WX)^-1 X'Wy   (2 x 2)
    Q_k = sum_{i in k} (y_i - mu_k)^2 = S2_k - 2 mu_k S1_k + n_k mu_k^2
    F = sum_k n_k eta_k + w_k Q_k                      (= -2 L - n log 2 pi)
    dF/dbeta = sum_k (n_k - w_k Q_k) v_k,              v_k = (1, g_k)
    d2F = sum_k w_k Q_k v_k v_k' - 2 A' (X'WX)^-1 A,   A = sum_k w_k R_k v_k v_k'

with ``R_k = S1_k - n_k mu_k``. Every SNP of a block is fitted at once by Newton steps with a
backtracking line search, stopping by the same rule as :func:`hlmm._optimize.minimize_newton`.
The standard errors are those of :class:`hlmm.hetlm.model`: ``(X'WX)^-1`` and ``2 (V'V)^-1``.
"""

from __future__ import annotations

import numpy as np

from hlmm import _optimize

LOG_2PI = float(np.log(2 * np.pi))
K = np.arange(3.0)


def _outer_sum(weights: np.ndarray, g: np.ndarray) -> np.ndarray:
    """sum_k weights_k (1, g_k)(1, g_k)' for each SNP, shape (b, 2, 2)."""
    s0 = weights.sum(axis=1)
    s1 = (weights * g).sum(axis=1)
    s2 = (weights * g * g).sum(axis=1)
    return np.stack([np.stack([s0, s1], -1), np.stack([s1, s2], -1)], -2)


def _solve2(A: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solve stacked 2 x 2 systems; NaN where singular."""
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        x0 = (A[:, 1, 1] * r[:, 0] - A[:, 0, 1] * r[:, 1]) / det
        x1 = (A[:, 0, 0] * r[:, 1] - A[:, 1, 0] * r[:, 0]) / det
    return np.stack([x0, x1], -1)


def _inv2(A: np.ndarray) -> np.ndarray:
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.stack([np.stack([A[:, 1, 1], -A[:, 0, 1]], -1), np.stack([-A[:, 1, 0], A[:, 0, 0]], -1)], -2)
        return out / det[:, None, None]


def _profile(beta, cnt, s1, s2, g, hessian: bool):
    """F, gradient, (Hessian), alpha and X'WX at beta for each SNP (rows of the inputs)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        eta = beta[:, :1] + beta[:, 1:] * g
        w = np.exp(-eta)
        M = _outer_sum(w * cnt, g)
        rhs = np.stack([(w * s1).sum(1), (w * s1 * g).sum(1)], -1)
        alpha = _solve2(M, rhs)
        mu = alpha[:, :1] + alpha[:, 1:] * g
        Q = np.maximum(s2 - 2.0 * mu * s1 + cnt * mu * mu, 0.0)
        wQ = w * Q
        F = (cnt * eta).sum(1) + wQ.sum(1)
        F = np.where(np.isfinite(F), F, np.inf)
        d = cnt - wQ
        grad = np.stack([d.sum(1), (d * g).sum(1)], -1)
        H = None
        if hessian:
            A = _outer_sum(w * (s1 - cnt * mu), g)
            H = _outer_sum(wQ, g) - 2.0 * np.einsum("bji,bjk->bik", A, np.einsum("bij,bjk->bik", _inv2(M), A))
    return F, grad, H, alpha, M


def fit_classes(counts: np.ndarray, sums: np.ndarray, sums2: np.ndarray, max_iter: int = 200) -> dict:
    """Fit ``y ~ N(a0 + a1 g, exp(b0 + b1 g))`` for many SNPs from class statistics.

    Parameters
    ----------
    counts, sums, sums2 : ndarray, shape (b, 3)
        Per SNP and class (0, 1, 2 copies of A1): number of individuals, sum of y, sum of y^2.
    max_iter : int

    Returns
    -------
    dict
        Arrays of length b: ``likelihood``, ``add``, ``add_se``, ``var``, ``var_se``,
        ``beta`` (shape (b, 2): log-variance intercept and SNP effect) and ``success`` (False where fewer than two classes are present or Newton did not converge;
        those SNPs have NaN estimates).
    """
    b = counts.shape[0]
    n = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gbar = (counts[:, 1] + 2.0 * counts[:, 2]) / n
    g = K[None, :] - gbar[:, None]
    usable = ((counts > 0).sum(1) >= 2) & (n > 4)
    out = {k: np.full(b, np.nan) for k in ("likelihood", "add", "add_se", "var", "var_se")}
    out["beta"] = np.full((b, 2), np.nan)
    success = np.zeros(b, dtype=bool)
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        out["success"] = success
        return out
    cnt, s1, s2, gi = counts[idx], sums[idx], sums2[idx], g[idx]
    # start: OLS mean, homoskedastic variance
    ones = np.ones_like(cnt)
    alpha0 = _solve2(_outer_sum(cnt, gi), np.stack([s1.sum(1), (s1 * gi).sum(1)], -1))
    mu0 = alpha0[:, :1] + alpha0[:, 1:] * gi
    rss = np.maximum(s2 - 2 * mu0 * s1 + cnt * mu0**2, 0).sum(1)
    beta = np.stack([np.log(np.maximum(rss / n[idx], 1e-300)), np.zeros(idx.size)], -1)
    VtV = _outer_sum(cnt * ones, gi)
    F, grad, H, _, _ = _profile(beta, cnt, s1, s2, gi, hessian=True)
    done = np.zeros(idx.size, dtype=bool)
    ok = np.zeros(idx.size, dtype=bool)
    stalls = np.zeros(idx.size, dtype=int)
    last_dec = np.full(idx.size, np.inf)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        Ha, ga = H[act], grad[act]
        pd = (Ha[:, 0, 0] > 0) & (Ha[:, 0, 0] * Ha[:, 1, 1] - Ha[:, 0, 1] ** 2 > 0)
        Hs = np.where(pd[:, None, None], Ha, VtV[act])
        step = -_solve2(Hs, ga)
        dec = -(ga * step).sum(1)
        scale = np.maximum(1.0, np.abs(F[act]))
        conv = dec <= _optimize.DECREMENT_RTOL * scale
        stalls[act] = np.where(dec > 0.5 * last_dec[act], stalls[act] + 1, 0)
        conv |= (stalls[act] >= 3) & (dec <= _optimize.STALL_RTOL * scale)
        last_dec[act] = dec
        done[act[conv]] = ok[act[conv]] = True
        bad = ~np.isfinite(dec)
        done[act[bad]] = True
        keep = ~conv & ~bad
        act, step, dec, scale, ga = act[keep], step[keep], dec[keep], scale[keep], ga[keep]
        local = dec <= _optimize.LOCAL_RTOL * scale
        t = np.ones(act.size)
        pending = np.ones(act.size, dtype=bool)
        while pending.any():
            p = np.flatnonzero(pending)
            trial = beta[act[p]] + t[p, None] * step[p]
            Ft = _profile(trial, cnt[act[p]], s1[act[p]], s2[act[p]], gi[act[p]], hessian=False)[0]
            Fa = F[act[p]]
            accept = np.isfinite(Ft) & (
                (Ft <= Fa - 1e-4 * t[p] * dec[p])
                | (local[p] & (t[p] == 1.0) & (Ft <= Fa + _optimize.F_NOISE_RTOL * scale[p]))
            )
            beta[act[p[accept]]] = trial[accept]
            pending[p[accept]] = False
            t[p[~accept]] *= 0.5
            give_up = p[~accept][t[p[~accept]] < 1e-14]
            if give_up.size:
                pending[give_up] = False
                stalled = act[give_up]
                rounding = dec[give_up] <= _optimize.STALL_RTOL * scale[give_up]
                done[stalled] = True
                ok[stalled[rounding]] = True
        moved = act[~done[act]]
        if moved.size:
            Fm, gm, Hm, _, _ = _profile(beta[moved], cnt[moved], s1[moved], s2[moved], gi[moved], hessian=True)
            F[moved], grad[moved], H[moved] = Fm, gm, Hm
    F, _, _, alpha, M = _profile(beta, cnt, s1, s2, gi, hessian=False)
    with np.errstate(invalid="ignore"):
        add_var = _inv2(M)[:, 1, 1]
        var_var = 2.0 * _inv2(VtV)[:, 1, 1]
        good = ok & np.isfinite(F) & (add_var > 0) & (var_var > 0)
    sel = idx[good]
    out["likelihood"][sel] = -0.5 * (F[good] + n[sel] * LOG_2PI)
    out["add"][sel] = alpha[good, 1]
    out["add_se"][sel] = np.sqrt(add_var[good])
    out["var"][sel] = beta[good, 1]
    out["var_se"][sel] = np.sqrt(var_var[good])
    out["beta"][sel] = beta[good]
    success[sel] = True
    out["success"] = success
    return out


# ----------------------------------------------------------------------------------------------
# With covariates: X = [Xc, g], V = [Vc, g], a block of SNPs at a time
# ----------------------------------------------------------------------------------------------
def _pairs(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Columns A_a * B_b for all (a, b), shape (n, a * b)."""
    return (A[:, :, None] * B[:, None, :]).reshape(A.shape[0], -1)


class _CovariateBlock:
    """Per-SNP sums over individuals for a block, as matrix products with n x b arrays."""

    def __init__(self, y, Xc, Vc, g, mask):
        self.y, self.Xc, self.Vc, self.g, self.mask = y, Xc, Vc, g, mask
        self.c, self.v = Xc.shape[1], Vc.shape[1]
        self.XX = _pairs(Xc, Xc)
        self.VV = _pairs(Vc, Vc)
        self.XV = _pairs(Xc, Vc)
        self.Xy = Xc * y[:, None]

    def gram(self, W, A, B, AB, cols):
        """sum_i W_ib [A_i, g_ib][B_i, g_ib]' per SNP b: shape (b, a + 1, b + 1)."""
        g = self.g[:, cols]
        na, nb = A.shape[1], B.shape[1]
        out = np.empty((len(cols), na + 1, nb + 1))
        out[:, :na, :nb] = (AB.T @ W).T.reshape(len(cols), na, nb)
        Wg = W * g
        out[:, :na, nb] = (A.T @ Wg).T
        out[:, na, :nb] = (B.T @ Wg).T
        out[:, na, nb] = (Wg * g).sum(0)
        return out

    def profile(self, beta, cols, hessian: bool):
        c, v = self.c, self.v
        g, mask = self.g[:, cols], self.mask[:, cols]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            eta = self.Vc @ beta[:, :v].T + g * beta[:, v]
            W = np.exp(-eta) * mask
            M = self.gram(W, self.Xc, self.Xc, self.XX, cols)
            Wy = W * self.y[:, None]
            rhs = np.concatenate([(self.Xc.T @ Wy).T, (Wy * g).sum(0)[:, None]], 1)
            try:
                alpha = np.linalg.solve(M, rhs[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                alpha = np.stack([_safe_solve(M[k], rhs[k]) for k in range(len(cols))])
            r = self.y[:, None] - self.Xc @ alpha[:, :c].T - g * alpha[:, c]
            wr = W * r
            wr2 = wr * r
            F = (mask * eta).sum(0) + wr2.sum(0)
            F = np.where(np.isfinite(F), F, np.inf)
            d = mask - wr2
            grad = np.concatenate([(self.Vc.T @ d).T, (d * g).sum(0)[:, None]], 1)
            H = None
            if hessian:
                A = self.gram(wr, self.Xc, self.Vc, self.XV, cols)
                H = self.gram(wr2, self.Vc, self.Vc, self.VV, cols) - 2.0 * np.einsum(
                    "bji,bjk->bik", A, np.linalg.solve(M, A))
        return F, grad, H, alpha, M


def _safe_solve(A, b):
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        return np.full(b.shape, np.nan)


def _identifiable(Xc: np.ndarray, g: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Whether [Xc, g] has full column rank over each SNP's called individuals.

    The same tolerance as ``numpy.linalg.matrix_rank``, from the eigenvalues of X'X.
    """
    ones = mask.astype(float)
    blk = _CovariateBlock(np.zeros(len(g)), Xc, Xc, g, ones)
    XtX = blk.gram(ones, Xc, Xc, blk.XX, np.arange(g.shape[1]))
    ev = np.clip(np.linalg.eigvalsh(XtX), 0, None)
    sv = np.sqrt(ev)
    n = mask.sum(0)
    tol = sv.max(1) * np.maximum(n, Xc.shape[1] + 1) * np.finfo(float).eps
    return (sv > tol[:, None]).sum(1) == Xc.shape[1] + 1


def fit_covariates_block(y, Xc, Vc, genotypes, beta_start, max_iter: int = 200) -> dict:
    """Fit ``y ~ N([Xc, g] alpha, exp([Vc, g] beta))`` for each SNP column of ``genotypes``.

    Parameters
    ----------
    y : ndarray, shape (n,)
    Xc : ndarray, shape (n, c)
        Mean covariates (with intercept).
    Vc : ndarray, shape (n, v)
        Variance covariates (with intercept).
    genotypes : ndarray, shape (n, b)
        Copies of A1, NaN for missing calls (those individuals are left out of that SNP's fit).
    beta_start : ndarray, shape (v,)
        Starting variance effects of the covariates (the null fit); the SNP's starts at 0.

    Returns
    -------
    dict
        As :func:`fit_classes`, from the same likelihood and standard errors as
        :class:`hlmm.hetlm.model` on each SNP's data.
    """
    n, b = genotypes.shape
    c, v = Xc.shape[1], Vc.shape[1]
    mask = ~np.isnan(genotypes)
    n_called = mask.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(mask, genotypes, 0.0).sum(0) / n_called
    g = np.where(mask, genotypes - means, 0.0)
    maskf = mask.astype(float)
    out = {k: np.full(b, np.nan) for k in ("likelihood", "add", "add_se", "var", "var_se")}
    out["beta"] = np.full((b, v + 1), np.nan)
    success = np.zeros(b, dtype=bool)
    idx = np.flatnonzero((n_called > c + v + 2) & _identifiable(Xc, g, mask))
    out["success"] = success
    if idx.size == 0:
        return out
    blk = _CovariateBlock(y, Xc, Vc, g, maskf)
    beta = np.zeros((idx.size, v + 1))
    beta[:, :v] = beta_start
    F, grad, H, _, _ = blk.profile(beta, idx, hessian=True)
    VtV = blk.gram(maskf[:, idx], Vc, Vc, blk.VV, idx)
    done = np.zeros(idx.size, dtype=bool)
    ok = np.zeros(idx.size, dtype=bool)
    stalls = np.zeros(idx.size, dtype=int)
    last_dec = np.full(idx.size, np.inf)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        Ha, ga = H[act], grad[act]
        step = np.empty_like(ga)
        for k in range(act.size):
            try:
                ch = np.linalg.cholesky(Ha[k])
                step[k] = -np.linalg.solve(ch.T, np.linalg.solve(ch, ga[k]))
            except np.linalg.LinAlgError:
                step[k] = -_safe_solve(VtV[act[k]], ga[k])
        dec = -(ga * step).sum(1)
        scale = np.maximum(1.0, np.abs(F[act]))
        conv = dec <= _optimize.DECREMENT_RTOL * scale
        stalls[act] = np.where(dec > 0.5 * last_dec[act], stalls[act] + 1, 0)
        conv |= (stalls[act] >= 3) & (dec <= _optimize.STALL_RTOL * scale)
        last_dec[act] = dec
        done[act[conv]] = ok[act[conv]] = True
        bad = ~np.isfinite(dec)
        done[act[bad]] = True
        keep = ~conv & ~bad
        act, step, dec, scale = act[keep], step[keep], dec[keep], scale[keep]
        local = dec <= _optimize.LOCAL_RTOL * scale
        t = np.ones(act.size)
        pending = np.ones(act.size, dtype=bool)
        while pending.any():
            p = np.flatnonzero(pending)
            trial = beta[act[p]] + t[p, None] * step[p]
            Ft = blk.profile(trial, idx[act[p]], hessian=False)[0]
            Fa = F[act[p]]
            accept = np.isfinite(Ft) & (
                (Ft <= Fa - 1e-4 * t[p] * dec[p])
                | (local[p] & (t[p] == 1.0) & (Ft <= Fa + _optimize.F_NOISE_RTOL * scale[p]))
            )
            beta[act[p[accept]]] = trial[accept]
            pending[p[accept]] = False
            t[p[~accept]] *= 0.5
            give_up = p[~accept][t[p[~accept]] < 1e-14]
            if give_up.size:
                pending[give_up] = False
                stalled = act[give_up]
                done[stalled] = True
                ok[stalled[dec[give_up] <= _optimize.STALL_RTOL * scale[give_up]]] = True
        moved = act[~done[act]]
        if moved.size:
            Fm, gm, Hm, _, _ = blk.profile(beta[moved], idx[moved], hessian=True)
            F[moved], grad[moved], H[moved] = Fm, gm, Hm
    F, _, _, alpha, M = blk.profile(beta, idx, hessian=False)
    with np.errstate(invalid="ignore"):
        add_var = np.array([_safe_inv(Mk)[-1, -1] for Mk in M])
        var_var = 2.0 * np.array([_safe_inv(Vk)[-1, -1] for Vk in VtV])
        good = ok & np.isfinite(F) & (add_var > 0) & (var_var > 0)
    sel = idx[good]
    out["likelihood"][sel] = -0.5 * (F[good] + n_called[sel] * LOG_2PI)
    out["add"][sel] = alpha[good, c]
    out["add_se"][sel] = np.sqrt(add_var[good])
    out["var"][sel] = beta[good, v]
    out["var_se"][sel] = np.sqrt(var_var[good])
    out["beta"][sel] = beta[good]
    success[sel] = True
    return out


def _safe_inv(A):
    try:
        return np.linalg.inv(A)
    except np.linalg.LinAlgError:
        return np.full(A.shape, np.nan)
