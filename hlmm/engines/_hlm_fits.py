"""Exact HLM fits of many SNPs at once from genotype-class sufficient statistics.

In the default mode of ``hlmm_chr`` a SNP's model has ``X = V = [1, g]``, and ``g`` takes a few
distinct values among the individuals with a call: three for hard calls (0, 1, 2 copies of A1),
and for dosages the distinct values of the file's grid (multiples of 1/16384 in .pgen, of 1/255
in 8-bit .bgen). Writing ``n_k``, ``S1_k = sum y`` and ``S2_k = sum y^2`` per class k of
individuals sharing the (centred) value ``g_k``, the profile likelihood of ``beta = (b0, b1)``
and its exact gradient and Hessian depend on the data only through these numbers::

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
from hlmm._linalg import LOG_2PI, class_outer_sum
from hlmm.engines import _kernels_hlm

K = np.arange(3.0)


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
        M = class_outer_sum(w * cnt, g)
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
            A = class_outer_sum(w * (s1 - cnt * mu), g)
            H = class_outer_sum(wQ, g) - 2.0 * np.einsum("bji,bjk->bik", A, np.einsum("bij,bjk->bik", _inv2(M), A))
    return F, grad, H, alpha, M


def newton_batch(beta, F, grad, H, VtV, profile, max_iter: int) -> np.ndarray:
    """Newton's method with backtracking on the log-variance parameters of many variants at once.

    Shared by the HLM and the G×E class fits. ``beta`` (m, 2), ``F``, ``grad`` and ``H`` (the
    profile objective and its derivatives at ``beta``) are updated in place; where ``H`` is not
    positive definite the step uses ``VtV`` (the expected information). ``profile(rows, b,
    hessian)`` evaluates the objective of variants ``rows`` at ``b``: ``(F, grad, H, ...)``.
    The stopping rules are :mod:`hlmm._optimize`'s.

    Returns
    -------
    ndarray of bool
        Per variant: converged (or stalled within rounding).
    """
    m = beta.shape[0]
    done = np.zeros(m, dtype=bool)
    ok = np.zeros(m, dtype=bool)
    stalls = np.zeros(m, dtype=int)
    last_dec = np.full(m, np.inf)
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
        act, step, dec, scale = act[keep], step[keep], dec[keep], scale[keep]
        local = dec <= _optimize.LOCAL_RTOL * scale
        t = np.ones(act.size)
        pending = np.ones(act.size, dtype=bool)
        while pending.any():
            p = np.flatnonzero(pending)
            sel = act[p]
            trial = beta[sel] + t[p, None] * step[p]
            Ft = profile(sel, trial, False)[0]
            Fa = F[sel]
            accept = np.isfinite(Ft) & (
                (Ft <= Fa - 1e-4 * t[p] * dec[p])
                | (local[p] & (t[p] == 1.0) & (Ft <= Fa + _optimize.F_NOISE_RTOL * scale[p]))
            )
            beta[sel[accept]] = trial[accept]
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
            Fm, gm, Hm = profile(moved, beta[moved], True)[:3]
            F[moved], grad[moved], H[moved] = Fm, gm, Hm
    return ok


def fit_classes(counts: np.ndarray, sums: np.ndarray, sums2: np.ndarray, values: np.ndarray | None = None,
                max_iter: int = 200) -> dict:
    """Fit ``y ~ N(a0 + a1 g, exp(b0 + b1 g))`` for many SNPs from class statistics.

    Parameters
    ----------
    counts, sums, sums2 : ndarray, shape (b, K)
        Per SNP and class: number of individuals, sum of y, sum of y^2.
    values : ndarray, shape (b, K), optional
        Genotype value of each class (uncentred); default 0, 1, 2 copies of A1 (K = 3). Classes
        with no individuals (padding) may have any value.
    max_iter : int

    Returns
    -------
    dict
        Arrays of length b: ``likelihood``, ``add``, ``add_se``, ``var``, ``var_se``,
        ``alpha`` and ``beta`` (shape (b, 2): intercepts and SNP effects on the centred genotype)
        and ``success`` (False where fewer than two classes are present or Newton did not converge;
        those SNPs have NaN estimates).
    """
    b = counts.shape[0]
    n = counts.sum(1)
    if values is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            gbar = (counts[:, 1] + 2.0 * counts[:, 2]) / n
        g = K[None, :] - gbar[:, None]
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            gbar = (counts * values).sum(1) / n
        g = np.where(counts > 0, values - gbar[:, None], 0.0)
    usable = ((counts > 0).sum(1) >= 2) & (n > 4)
    out = {k: np.full(b, np.nan) for k in ("likelihood", "add", "add_se", "var", "var_se")}
    out["beta"] = np.full((b, 2), np.nan)
    out["alpha"] = np.full((b, 2), np.nan)
    success = np.zeros(b, dtype=bool)
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        out["success"] = success
        return out
    cnt, s1, s2, gi = counts[idx], sums[idx], sums2[idx], g[idx]
    # start: OLS mean, homoskedastic variance
    ones = np.ones_like(cnt)
    alpha0 = _solve2(class_outer_sum(cnt, gi), np.stack([s1.sum(1), (s1 * gi).sum(1)], -1))
    mu0 = alpha0[:, :1] + alpha0[:, 1:] * gi
    rss = np.maximum(s2 - 2 * mu0 * s1 + cnt * mu0**2, 0).sum(1)
    beta = np.stack([np.log(np.maximum(rss / n[idx], 1e-300)), np.zeros(idx.size)], -1)
    VtV = class_outer_sum(cnt * ones, gi)
    F, grad, H, _, _ = _profile(beta, cnt, s1, s2, gi, hessian=True)
    ok = newton_batch(beta, F, grad, H, VtV, lambda rows, b, hessian: _profile(
        b, cnt[rows], s1[rows], s2[rows], gi[rows], hessian=hessian), max_iter)
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
    out["alpha"][sel] = alpha[good]
    success[sel] = True
    out["success"] = success
    return out


# ----------------------------------------------------------------------------------------------
# With covariates: X = [Xc, g], V = [Vc, g], one SNP at a time by fused passes over individuals
# ----------------------------------------------------------------------------------------------
class CovariateSNP:
    """Profile likelihood of one SNP's HLM with covariates, by fused passes over individuals.

    ``fun_grad`` and ``hessian`` share one evaluation per point: two compiled passes (weighted
    Gram matrix, then residual sums), so the Newton iterations cost a few passes over n each.
    """

    def __init__(self, y, Xc, Vc, geno):
        self.y, self.Xc, self.Vc, self.geno = y, Xc, Vc, geno
        called = ~np.isnan(geno)
        self.n = int(called.sum())
        self.gmean = float(geno[called].mean())
        self._key, self._val = None, None

    def evaluate(self, beta):
        key = beta.tobytes()
        if key == self._key:
            return self._val
        val = None
        with np.errstate(over="ignore", invalid="ignore"):
            s_eta, M, rhs, _, _, _ = _kernels_hlm.covariate_pass(
                self.y, self.Xc, self.Vc, self.geno, self.gmean, beta, beta, False)
            if np.isfinite(s_eta) and np.all(np.isfinite(M)):
                try:
                    ch = np.linalg.cholesky(M)
                    alpha = np.linalg.solve(ch.T, np.linalg.solve(ch, rhs))
                except np.linalg.LinAlgError:
                    alpha = None
                if alpha is not None:
                    s_wr2, _, _, grad, Hv, A = _kernels_hlm.covariate_pass(
                        self.y, self.Xc, self.Vc, self.geno, self.gmean, beta, alpha, True)
                    F = s_eta + s_wr2
                    if np.isfinite(F):
                        H = Hv - 2.0 * A.T @ np.linalg.solve(M, A)
                        val = (F, grad, H, alpha, M)
        self._key, self._val = key, val
        return val

    def fun_grad(self, beta):
        val = self.evaluate(beta)
        return (np.inf, np.full(beta.shape, np.nan)) if val is None else (val[0], val[1])

    def hessian(self, beta):
        val = self.evaluate(beta)
        return np.full((beta.size, beta.size), np.nan) if val is None else val[2]


def fit_covariate_snp(y, Xc, Vc, geno, beta_start, robust: bool = False) -> tuple[dict | None, str | None]:
    """Fit ``y ~ N([Xc, g] alpha, exp([Vc, g] beta))`` for one SNP given its genotypes.

    Parameters
    ----------
    geno : ndarray of float64, shape (n,)
        Copies of A1 (or dosages), NaN for a missing call (left out of the fit).
    beta_start : ndarray, shape (v,)
        Starting variance effects of the covariates; the SNP's starts at 0.
    robust : bool
        Standard errors from the sandwich estimator (:func:`hlmm.robust.hlm_sandwich`); the
        model-based ones are then ``add_se_model`` and ``var_se_model``.

    Returns
    -------
    (dict, None) or (None, reason)
        Estimates as :class:`hlmm.hetlm.model` gives them.
    """
    from hlmm._optimize import minimize_newton

    snp = CovariateSNP(y, Xc, Vc, geno)
    res = minimize_newton(snp.fun_grad, snp.hessian, np.append(beta_start, 0.0))
    if not res.success:
        return None, res.message
    F, _, _, alpha, M = snp.evaluate(res.x)
    called = ~np.isnan(geno)
    Vl = np.column_stack([Vc[called], geno[called] - snp.gmean])
    try:
        add_var = np.linalg.inv(M)[-1, -1]
        var_var = 2.0 * np.linalg.inv(Vl.T @ Vl)[-1, -1]
    except np.linalg.LinAlgError:
        return None, "singular information matrix"
    est = {"likelihood": -0.5 * (F + snp.n * LOG_2PI), "add": alpha[-1], "add_se": np.sqrt(add_var),
           "var": res.x[-1], "var_se": np.sqrt(var_var)}
    if robust:
        from hlmm.robust import hlm_sandwich

        Xl = np.column_stack([Xc[called], geno[called] - snp.gmean])
        cov = hlm_sandwich(y[called], Xl, Vl, alpha, res.x)
        est["add_se_model"], est["var_se_model"] = est["add_se"], est["var_se"]
        est["add_se"], est["var_se"] = np.sqrt(cov[Xl.shape[1] - 1, Xl.shape[1] - 1]), np.sqrt(cov[-1, -1])
    if not all(np.isfinite(v) for v in est.values()):
        return None, "non-finite estimate or standard error"
    return est, None
