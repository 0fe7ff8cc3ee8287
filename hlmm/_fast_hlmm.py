"""Exact HLMM fits of one SNP from genotype-class algebra in l dimensions.

For a SNP's model ``X = V = [1, g]`` with random effects ``G``, ``D^-1 = exp(-V beta)`` takes one
value ``w_k`` per genotype class k (0, 1, 2 copies of A1, among individuals with a call), so

    S = G' D^-1 G = sum_k w_k G_k' G_k

and every term of the likelihood, its gradient and its Hessian (see
:meth:`hlmm.hetlmm.model._derivatives`) reduces to per-class quantities: ``n_k``,
``S1_k = sum y``, ``S2_k = sum y^2``, ``G_k' 1``, ``G_k' y`` and ``G_k' G_k``. Totals over all
individuals are formed once per scan; per SNP only the non-modal classes (and individuals
without a call) need a symmetric rank-k update over their rows, and the modal class follows by
subtraction. The optimiser then works entirely in l dimensions, never touching n-length arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from hlmm._linalg import weighted_gram
from hlmm._optimize import minimize_newton

LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class Totals:
    """Sums over all individuals of the analysis, formed once per scan."""

    G: np.ndarray  # n x l
    y: np.ndarray  # n
    GG: np.ndarray
    Gy: np.ndarray
    G1: np.ndarray
    n: float
    S1: float
    S2: float


def totals(y: np.ndarray, G: np.ndarray) -> Totals:
    G = np.ascontiguousarray(G, dtype=float)
    return Totals(G, y, weighted_gram(G), G.T @ y, G.sum(0), float(len(y)), float(y.sum()), float(y @ y))


@dataclass
class ClassStats:
    """Per-class sufficient statistics of one SNP (classes 0, 1, 2 copies of A1)."""

    n: np.ndarray  # (3,)
    S1: np.ndarray  # (3,)
    S2: np.ndarray  # (3,)
    G1: np.ndarray  # (3, l)
    Gy: np.ndarray  # (3, l)
    GG: np.ndarray  # (3, l, l)
    g: np.ndarray  # (3,) centred genotype value of each class


def class_stats(tot: Totals, codes: np.ndarray) -> ClassStats:
    """Class statistics of a SNP from its codes (0, 1, 2 copies of A1; -1 missing)."""
    l = tot.G.shape[1]  # noqa: E741
    counts = np.array([(codes == k).sum() for k in range(3)], dtype=float)
    modal = int(np.argmax(counts))
    n, S1, S2 = np.zeros(3), np.zeros(3), np.zeros(3)
    G1, Gy, GG = np.zeros((3, l)), np.zeros((3, l)), np.zeros((3, l, l))
    rest = [tot.n, tot.S1, tot.S2, tot.G1.copy(), tot.Gy.copy(), tot.GG.copy()]
    for k in (0, 1, 2, -1):
        if k == modal:
            continue
        idx = np.flatnonzero(codes == k)
        yk = tot.y[idx]
        Gk_sum, Gk_y = _row_sums(tot.G, idx, yk)
        part = [float(idx.size), float(yk.sum()), float(yk @ yk), Gk_sum, Gk_y, weighted_gram(tot.G, rows=idx)]
        for r in range(6):
            rest[r] = rest[r] - part[r]
        if k >= 0:
            n[k], S1[k], S2[k], G1[k], Gy[k], GG[k] = part
    n[modal], S1[modal], S2[modal], G1[modal], Gy[modal], GG[modal] = rest
    gbar = (n[1] + 2 * n[2]) / n.sum()
    return ClassStats(n, S1, S2, G1, Gy, GG, np.arange(3.0) - gbar)


def _row_sums(G: np.ndarray, idx: np.ndarray, y: np.ndarray):
    """``G[idx]' 1`` and ``G[idx]' y`` a chunk of rows at a time."""
    from hlmm._linalg import ROW_CHUNK

    s1, sy = np.zeros(G.shape[1]), np.zeros(G.shape[1])
    for r0 in range(0, idx.size, ROW_CHUNK):
        Gc = G[idx[r0 : r0 + ROW_CHUNK]]
        s1 += Gc.sum(0)
        sy += Gc.T @ y[r0 : r0 + ROW_CHUNK]
    return s1, sy


class ClassModel:
    """Profile likelihood of ``(b0, b1, h2)`` for one SNP, from its class statistics."""

    def __init__(self, cs: ClassStats) -> None:
        self.cs = cs
        self.l = cs.GG.shape[1]
        self.v = np.stack([np.ones(3), cs.g], 1)  # (3, 2): design row (1, g_k) of each class
        self._key = None

    def _terms(self, theta: np.ndarray, alpha: np.ndarray | None = None):
        key = (theta.tobytes(), None if alpha is None else alpha.tobytes())
        if key == self._key:
            return self._t
        cs, v = self.cs, self.v
        b, h2 = theta[:2], float(theta[2])
        t = None
        with np.errstate(over="ignore", invalid="ignore"):
            eta = v @ b
            w = np.exp(-eta)
            if h2 >= 0 and np.all(np.isfinite(w)):
                S = np.einsum("k,kij->ij", w, cs.GG)
                M = h2 * S
                M[np.diag_indices_from(M)] += 1.0
                try:
                    cM = linalg.cho_factor(M, lower=True)
                except linalg.LinAlgError:
                    cM = None
                if cM is not None:
                    C = (w[:, None] * cs.G1).T @ v  # l x 2
                    Gwy = w @ cs.Gy
                    XtWX = (v * (w * cs.n)[:, None]).T @ v
                    XtWy = v.T @ (w * cs.S1)
                    MinvC = linalg.cho_solve(cM, C)
                    A = XtWX - h2 * C.T @ MinvC
                    if alpha is None:
                        try:
                            alpha = linalg.solve(A, XtWy - h2 * MinvC.T @ Gwy, assume_a="pos")
                        except (linalg.LinAlgError, ValueError):
                            alpha = None
                    if alpha is not None:
                        mu = v @ alpha
                        Q = cs.S2 - 2 * mu * cs.S1 + cs.n * mu * mu
                        u = Gwy - C @ alpha
                        m = linalg.cho_solve(cM, u)
                        logdet = 2.0 * np.sum(np.log(np.diag(cM[0])))
                        F = float(cs.n @ eta + logdet + w @ Q - h2 * (u @ m))
                        if np.isfinite(F):
                            t = dict(w=w, S=S, cM=cM, C=C, MinvC=MinvC, A=A, alpha=alpha, mu=mu, Q=Q, m=m, F=F)
        self._key, self._t = key, t
        return t

    def derivatives(self, theta: np.ndarray, hessian: bool, alpha: np.ndarray | None = None):
        """Gradient (and Hessian) of F in (alpha, beta, h2) at alpha (profiled if None)."""
        t = self._terms(theta, alpha)
        if t is None:
            return None, None, None
        cs, v, h2 = self.cs, self.v, float(theta[2])
        w, m, mu = t["w"], t["m"], t["mu"]
        Minv, info = lapack.dpotri(t["cM"][0], lower=1)
        Minv = np.tril(Minv) + np.tril(Minv, -1).T
        tq = np.einsum("ij,kij->k", Minv, cs.GG)  # tr(M^-1 G_k'G_k)
        Gr = cs.Gy - mu[:, None] * cs.G1  # G_k' r_k
        GGm = cs.GG @ m  # (3, l)
        E = w * (t["Q"] - 2 * h2 * (Gr @ m) + h2**2 * (GGm @ m))
        R = cs.S1 - cs.n * mu
        esum = w * (R - h2 * (cs.G1 @ m))
        grad_alpha = -2.0 * v.T @ esum
        grad_beta = v.T @ (cs.n - h2 * w * tq - E)
        grad_h2 = float(w @ tq - m @ m)
        grad = np.concatenate([grad_alpha, grad_beta, [grad_h2]])
        if not hessian:
            return t, grad, None
        H = np.empty((5, 5))
        H[:2, :2] = 2.0 * t["A"]
        Gte = w[:, None] * (Gr - h2 * GGm)  # G_k' e_k
        Y = Gte.T @ v  # l x 2: G'(V_j e)
        XVe = (v * esum[:, None]).T @ v
        MinvY = linalg.cho_solve(t["cM"], Y)
        H[:2, 2:4] = 2.0 * (XVe - h2 * t["MinvC"].T @ Y)
        H[:2, 4] = 2.0 * t["MinvC"].T @ m
        T = np.einsum("kj,kab->jab", v * w[:, None], cs.GG)  # T_j = sum_k w_k v_kj G_k'G_k
        P = np.stack([Minv @ T[0], Minv @ T[1]])
        Hbb = (v * (h2 * w * tq + E)[:, None]).T @ v - 2 * h2 * Y.T @ MinvY
        for j in range(2):
            for k in range(2):
                Hbb[j, k] -= h2**2 * np.einsum("ij,ji->", P[j], P[k])
        H[2:4, 2:4] = Hbb
        for j in range(2):
            H[2 + j, 4] = -np.einsum("ij,ji->", Minv, P[j]) + 2.0 * float(Y[:, j] @ (Minv @ m))
        H[4, 4] = -np.einsum("ij,ji->", P[0], P[0]) + 2.0 * float(m @ (P[0] @ m))
        H = np.triu(H) + np.triu(H, 1).T
        return t, grad, H

    def fun_grad(self, theta):
        t, grad, _ = self.derivatives(theta, hessian=False)
        if t is None:
            return np.inf, np.full(3, np.nan)
        return t["F"], grad[2:]

    def profile_hessian(self, theta):
        t, _, H = self.derivatives(theta, hessian=True)
        if t is None:
            return np.full((3, 3), np.nan)
        return H[2:, 2:] - H[2:, :2] @ np.linalg.solve(H[:2, :2], H[:2, 2:])


def fit_snp(cs: ClassStats, beta0: np.ndarray, h2_init: float) -> tuple[dict | None, str | None]:
    """Maximum likelihood fit of one SNP; returns (estimates, None) or (None, reason)."""
    cm = ClassModel(cs)
    res = minimize_newton(cm.fun_grad, cm.profile_hessian, np.append(beta0, h2_init),
                          lower=np.array([-np.inf, -np.inf, 0.0]))
    if not res.success:
        return None, res.message
    t, _, H = cm.derivatives(res.x, hessian=True)
    try:
        c = linalg.cho_factor(0.5 * H, lower=True)
    except (linalg.LinAlgError, ValueError):
        return None, "observed information is not positive definite"
    cov = linalg.cho_solve(c, np.eye(5))
    est = {
        "likelihood": -0.5 * (res.fun + cs.n.sum() * LOG_2PI),
        "add": t["alpha"][1],
        "add_se": np.sqrt(cov[1, 1]),
        "var": res.x[1],
        "var_se": np.sqrt(cov[3, 3]),
    }
    if not all(np.isfinite(x) for x in est.values()):
        return None, "non-finite estimate or standard error"
    return est, None
