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

from hlmm._linalg import LOG_2PI, ROW_CHUNK, syrk, weighted_gram
from hlmm._optimize import minimize_newton


@dataclass
class Totals:
    """What the fast HLMM engine keeps of the random effects, and their totals over everyone.

    Float64 mode: ``A = [G, 1, y]`` (n x (l + 2)), so one symmetric rank-k update over any rows
    gives ``G'G``, ``G'1``, ``G'y``, the count, ``sum y`` and ``sum y^2`` of those rows.

    Integer mode (random effects from genotype files): ``G = (R + E - center) / scale`` with
    ``R`` the called genotypes as int8 (0 where imputed) and ``E`` the sparse mean-imputed
    values. ``R'R`` over any rows is then an exact single-precision rank-k update (integers, sums
    below 2^24), at half the cost; the rest is float64.
    """

    y: np.ndarray
    AA: np.ndarray  # (l + 2) x (l + 2) augmented Gram over all individuals, in G units
    A: np.ndarray | None = None  # float64 mode
    R: np.ndarray | None = None  # integer mode
    E: object = None  # scipy.sparse.csr_matrix, integer mode
    center: np.ndarray | None = None
    scale: np.ndarray | None = None

    @property
    def l(self) -> int:  # noqa: E743
        return self.AA.shape[0] - 2

    @property
    def G(self) -> np.ndarray:
        if self.A is not None:
            return self.A[:, : self.l]
        return (self.R + self.E.toarray() - self.center) / self.scale

    def gram_of_rows(self, idx: np.ndarray) -> np.ndarray:
        """Augmented Gram matrix (G, 1, y) over rows ``idx``, in G units."""
        if self.A is not None:
            return _float_gram(self.A, idx)
        return _integer_gram(self, idx)


def totals(y: np.ndarray, G: np.ndarray, center=None, scale=None, form: "IntegerDesign | None" = None) -> Totals:
    """Totals for the fast engine; integer mode if ``G = (genotypes - center) / scale`` with
    integer genotypes (mean-imputed where missing) is recovered exactly (or its integer form is
    given: ``form``, shared by phenotypes with the same G)."""
    y = np.ascontiguousarray(y, dtype=float)
    if center is not None:
        tot = _integer_totals(y, G, np.asarray(center, float), np.asarray(scale, float), form)
        if tot is not None:
            return tot
    A = np.empty((G.shape[0], G.shape[1] + 2))
    A[:, : G.shape[1]] = G
    A[:, -2] = 1.0
    A[:, -1] = y
    return Totals(y, weighted_gram(A), A=A)


@dataclass
class IntegerDesign:
    """A random-effect design from genotype files in exact integer form.

    ``G = (R + E - center) / scale`` with ``R`` the called genotypes (small integers, 0 where a
    call was imputed) and ``E`` sparse, holding the imputed column means. Products with ``R`` are
    exact in integer arithmetic (or in single precision while sums stay below 2^24).
    """

    R: np.ndarray  # (n, l) int8
    E: object  # scipy.sparse.csr_matrix (n, l)
    center: np.ndarray
    scale: np.ndarray
    _planes: tuple | None = None
    _colsum: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.R.shape[0]

    def planes(self) -> tuple:
        """Bit-planes of ``R'`` (see :func:`hlmm.engines._kernels_score.bitplanes`), formed once."""
        if self._planes is None:
            from hlmm.engines._kernels_score import bitplanes

            self._planes = bitplanes(np.ascontiguousarray(self.R.T))
        return self._planes

    def column_sums(self) -> np.ndarray:
        """``R' 1`` as float64 (exact), formed once."""
        if self._colsum is None:
            self._colsum = self.R.sum(axis=0, dtype=np.int64).astype(np.float64)
        return self._colsum

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_planes"] = state["_colsum"] = None  # rebuilt where needed
        return state


def integer_design(G: np.ndarray, center, scale) -> IntegerDesign | None:
    """Recover the integer form of ``G = (genotypes - center) / scale`` (mean-imputed genotypes),
    or None if the genotypes are not small integers."""
    from scipy import sparse

    center, scale = np.asarray(center, float), np.asarray(scale, float)
    n, l = G.shape  # noqa: E741
    integer_mean = np.abs(center - np.rint(center)) < 1e-9
    R = np.empty((n, l), dtype=np.int8)
    rows, cols = [], []
    for r0 in range(0, n, ROW_CHUNK):
        Rc = G[r0 : r0 + ROW_CHUNK] * scale + center
        imputed = (np.abs(Rc - center) < 1e-9) & ~integer_mean
        Ri = np.rint(Rc)
        if np.any((np.abs(Rc - Ri) > 1e-6) & ~imputed) or np.abs(Ri).max() > 2:
            return None  # not genotype counts
        R[r0 : r0 + ROW_CHUNK] = np.where(imputed, 0.0, Ri)
        i, j = np.nonzero(imputed)
        rows.append(i + r0)
        cols.append(j)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return IntegerDesign(R, sparse.csr_matrix((center[cols], (rows, cols)), shape=(n, l)), center, scale)


def _integer_totals(y, G, center, scale, form=None):
    n, l = G.shape  # noqa: E741
    form = form if form is not None else integer_design(G, center, scale)
    if form is None or 4 * n >= 2**24:
        return None  # not integer genotypes, or single precision would not be exact
    tot = Totals(y, np.zeros((l + 2, l + 2)), R=form.R, E=form.E, center=form.center, scale=form.scale)
    tot.AA = _integer_gram(tot, np.arange(n))
    return tot


def _float_gram(A: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``A[idx]' A[idx]``, gathering chunks of rows into one reused buffer."""

    out = np.zeros((A.shape[1],) * 2)
    if idx.size == 0:
        return out
    buf = np.empty((min(ROW_CHUNK, idx.size), A.shape[1]))
    for r0 in range(0, idx.size, ROW_CHUNK):
        chunk = idx[r0 : r0 + ROW_CHUNK]
        np.take(A, chunk, axis=0, out=buf[: chunk.size])
        out += syrk(buf[: chunk.size])
    return out


def _integer_gram(tot: Totals, idx: np.ndarray) -> np.ndarray:
    """Augmented Gram over rows ``idx`` from the integer form, converted to G units.

    The products ``R'R`` are exact in single precision (small integers, every sum below 2^24), so
    their order, and the BLAS's threads, cannot change a bit of the result. (numpy's sgemm for the
    full product was faster here than the rank-k update ``ssyrk``, and releases the GIL.)
    """
    from hlmm.engines._kernels_hlmm import gather_rows_f32, integer_row_sums

    l = tot.l  # noqa: E741
    RR = np.zeros((l, l))
    buf = np.empty((min(ROW_CHUNK, max(idx.size, 1)), l), dtype=np.float32)
    for r0 in range(0, idx.size, ROW_CHUNK):
        chunk = idx[r0 : r0 + ROW_CHUNK]
        b = buf[: chunk.size]
        gather_rows_f32(tot.R, chunk, b)
        RR += b.T @ b
    y = tot.y[idx]
    s, zy, ER, EE = integer_row_sums(tot.R, tot.E.indptr, tot.E.indices, tot.center, idx, y)
    n_k, sy, syy = float(idx.size), float(y.sum()), float(y @ y)
    mu = tot.center
    ZZ = RR + ER + ER.T + EE - np.outer(s, mu) - np.outer(mu, s) + n_k * np.outer(mu, mu)
    out = np.empty((l + 2, l + 2))
    out[:l, :l] = ZZ / np.outer(tot.scale, tot.scale)
    out[:l, l] = out[l, :l] = (s - n_k * mu) / tot.scale
    out[:l, l + 1] = out[l + 1, :l] = (zy - mu * sy) / tot.scale
    out[l, l], out[l, l + 1], out[l + 1, l], out[l + 1, l + 1] = n_k, sy, sy, syy
    return out


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
    """Class statistics of a SNP from its codes (0, 1, 2 copies of A1; -1 missing).

    Rank-k updates over the rows of the non-modal classes and of individuals without a call;
    the modal class is the total minus those.
    """
    counts = np.array([(codes == k).sum() for k in range(3)])
    modal = int(np.argmax(counts))
    grams = {}
    rest = tot.AA.copy()
    for k in (0, 1, 2, -1):
        if k != modal:
            grams[k] = tot.gram_of_rows(np.flatnonzero(codes == k))
            rest -= grams[k]
    grams[modal] = rest
    l = tot.l  # noqa: E741
    AA = np.stack([grams[k] for k in range(3)])
    n = AA[:, l, l]
    gbar = (n[1] + 2 * n[2]) / n.sum()
    return ClassStats(n, AA[:, l, l + 1], AA[:, l + 1, l + 1], AA[:, :l, l], AA[:, :l, l + 1],
                      np.ascontiguousarray(AA[:, :l, :l]), np.arange(3.0) - gbar)


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
        # P_j = M^-1 T_j; T_0 = S and h2 S = M - I give P_0 = (I - M^-1) / h2 without a product
        P0 = (np.eye(self.l) - Minv) / h2 if h2 > 1e-6 else Minv @ T[0]
        P = np.stack([P0, Minv @ T[1]])
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

    def _profile(self, theta):
        """F, profile gradient and profile Hessian at theta, computed together once per point
        (Newton asks for the Hessian at every accepted point)."""
        key = theta.tobytes()
        if getattr(self, "_pkey", None) != key:
            t, grad, H = self.derivatives(theta, hessian=True)
            self._full = (t, grad, H)
            if t is None:
                val = (np.inf, np.full(3, np.nan), np.full((3, 3), np.nan))
            else:
                val = (t["F"], grad[2:], H[2:, 2:] - H[2:, :2] @ np.linalg.solve(H[:2, :2], H[:2, 2:]))
            self._pkey, self._pval = key, val
        return self._pval

    def fun_grad(self, theta):
        F, grad, _ = self._profile(theta)
        return F, grad

    def profile_hessian(self, theta):
        return self._profile(theta)[2]


def fit_snp(cs: ClassStats, beta0: np.ndarray, h2_init: float) -> tuple[dict | None, str | None]:
    """Maximum likelihood fit of one SNP; returns (estimates, None) or (None, reason)."""
    cm = ClassModel(cs)
    res = minimize_newton(cm.fun_grad, cm.profile_hessian, np.append(beta0, h2_init),
                          lower=np.array([-np.inf, -np.inf, 0.0]))
    if not res.success:
        return None, res.message
    t, _, H = cm._full if cm._pkey == res.x.tobytes() else cm.derivatives(res.x, hessian=True)
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
