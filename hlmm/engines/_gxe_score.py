"""Score screen of G×E terms under the null HLM, from per-individual columns and block products.

The null model (fitted once, :mod:`hlmm.nulls`) has the covariates and the exposures ``E_1..E_K``
in the mean (``X``, p columns, exposures among them) and in the log-variance, giving weights
``w_i = exp(-v_i' beta)`` and residuals ``r_i = y_i - x_i' alpha``. A variant with centred genotype
``g`` (missing calls mean-imputed, so 0) enters the mean through ``z_i = g_i u_i``, ``u_i = (1,
E_i1, .., E_iK)``: its main effect ``a`` at E = 0 and its G×E effects. With the variance held at
the null, the mean is linear, and the score of ``(a, c)`` adjusted for the covariates is::

    S = sum_i z_i w_i r_i                              (X' W r = 0 at the null estimate)
    I = Z'WZ - Z'WX (X'WX)^-1 X'WZ

so ``theta = I^-1 S`` is the weighted least-squares fit of ``r`` on ``z`` (with ``X`` projected
out) and ``theta' I theta`` its score statistic; the G×E block of ``I^-1`` gives the K-df test
of the G×E terms with ``a`` estimated, not fixed at 0, so a variant's main effect does not leak
into its G×E test. With ``robust``, ``I^-1 R I^-1`` replaces ``I^-1``, with the empirical
variance of the adjusted score::

    R = sum_i e_i^2 zt_i zt_i',   zt_i = z_i - Z'WX (X'WX)^-1 x_i,   e_i = w_i r_i

Everything a variant adds is a sum over individuals of ``g_i`` or ``g_i^2`` times fixed
per-individual columns (:meth:`InteractionNull.columns`), so per-genotype-class sums give it.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["InteractionNull"]


class InteractionNull:
    """The null HLM, prepared for score tests of G×E terms.

    Parameters
    ----------
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
        Mean covariates of the null model (the exposures among them).
    V : ndarray, shape (n, v)
        Log-variance covariates of the null model.
    alpha, beta : ndarray
        Null maximum-likelihood estimates.
    E : ndarray, shape (n, K)
        The exposures.
    robust : bool
        Empirical (sandwich) variance of the score.
    """

    def __init__(self, y, X, V, alpha, beta, E, robust: bool = False) -> None:
        X, V, E = (np.asarray(a, dtype=np.float64).reshape(len(y), -1) for a in (X, V, E))
        w = np.exp(-(V @ np.asarray(beta, dtype=np.float64)))
        e = w * (np.asarray(y, dtype=np.float64) - X @ np.asarray(alpha, dtype=np.float64))
        self.p, self.q = X.shape[1], E.shape[1] + 1
        self.robust = robust
        u = np.column_stack([np.ones(len(y)), E])
        self._iu = np.triu_indices(self.q)
        pairs = u[:, self._iu[0]] * u[:, self._iu[1]]  # u_j u_l, j <= l
        ux = (u[:, :, None] * X[:, None, :]).reshape(len(y), -1)  # u_j x_c
        lin = [u * e[:, None], w[:, None] * ux]
        sq = [w[:, None] * pairs]
        if robust:
            lin.append((e**2)[:, None] * ux)
            sq.append((e**2)[:, None] * pairs)
            self._xe2x = X.T @ ((e**2)[:, None] * X)
        self._lin, self._sq = np.column_stack(lin), np.column_stack(sq)
        self._cho = linalg.cho_factor(X.T @ (w[:, None] * X), lower=True)

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-individual columns ``L`` and ``Q``: the statistics need only ``g' L`` and ``(g^2)' Q``."""
        return self._lin, self._sq

    def from_products(self, lin: np.ndarray, sq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Estimates ``(a, c_1..c_K)`` and their covariance from the block products.

        Parameters
        ----------
        lin : ndarray, shape (b, L)
            ``g' L`` per variant.
        sq : ndarray, shape (b, Q)
            ``(g^2)' Q`` per variant.

        Returns
        -------
        theta : ndarray, shape (b, K + 1)
            NaN where the information is singular.
        cov : ndarray, shape (b, K + 1, K + 1)
            Robust (sandwich) with ``robust``, else model-based.
        cov_model : ndarray, shape (b, K + 1, K + 1)
            Model-based.
        """
        b, q, p = lin.shape[0], self.q, self.p
        S = lin[:, :q]
        B = lin[:, q : q + q * p].reshape(b, q, p)  # Z'WX
        A = _symmetric(sq[:, : len(self._iu[0])], self._iu, q)  # Z'WZ
        MinvBt = linalg.cho_solve(self._cho, B.transpose(2, 0, 1).reshape(p, -1)).reshape(p, b, q).transpose(1, 0, 2)
        info = A - B @ MinvBt
        theta = np.full((b, q), np.nan)
        cov, cov_model = np.full((b, q, q), np.nan), np.full((b, q, q), np.nan)
        # a variant whose G×E columns are (nearly) in the span of the covariates has no information
        scale = np.sqrt(np.clip(np.einsum("bjj->bj", A), 0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.einsum("bjj->bj", info) / np.where(scale > 0, scale**2, np.nan)
        ok = np.flatnonzero(np.all(rel > 1e-8, axis=1))
        if not ok.size:
            return theta, cov, cov_model
        inv = np.linalg.inv(info[ok])
        theta[ok] = np.einsum("bjk,bk->bj", inv, S[ok])
        cov_model[ok] = inv
        if not self.robust:
            cov[ok] = inv
            return theta, cov, cov_model
        Br = lin[ok, q + q * p :].reshape(len(ok), q, p)  # sum e^2 g u x'
        Ar = _symmetric(sq[ok, len(self._iu[0]) :], self._iu, q)
        T = MinvBt[ok]  # (X'WX)^-1 X'WZ, as (b, p, q)
        R = Ar - Br @ T - (Br @ T).transpose(0, 2, 1) + T.transpose(0, 2, 1) @ self._xe2x @ T
        cov[ok] = inv @ R @ inv
        return theta, cov, cov_model


def _symmetric(upper: np.ndarray, iu: tuple, q: int) -> np.ndarray:
    out = np.empty((upper.shape[0], q, q))
    out[:, iu[0], iu[1]] = upper
    out[:, iu[1], iu[0]] = upper
    return out
