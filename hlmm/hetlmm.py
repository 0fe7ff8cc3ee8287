"""Heteroskedastic linear mixed model (HLMM).

Parameterisation
----------------
For n individuals with response ``y``, mean covariates ``X`` (n x c), variance covariates ``V``
(n x v) and random-effect design ``G`` (n x l)::

    y ~ N(X alpha, Sigma),    Sigma = h2 G G' + D,    D = diag(exp(V beta)),

so ``alpha`` are fixed mean effects, ``beta`` log-linear fixed variance effects and ``h2 >= 0``
the variance of the random effects ``u ~ N(0, h2 I_l)`` in ``y = X alpha + G u + e``. The scripts
z-score each column of ``G`` and divide by sqrt(l), so that ``h2`` is on the scale of the
residual variance.

Algebra
-------
Everything is computed in l dimensions (Woodbury identity), at O(n l^2) cost and without ever
forming an n x n matrix. With ``S = G' D^-1 G`` and ``M = I + h2 S = L L'`` (Cholesky)::

    log|Sigma| = sum(V beta) + log|M|
    a' Sigma^-1 b = a' D^-1 b - h2 (G' D^-1 a)' M^-1 (G' D^-1 b).

As in hlmm 1.2.0a1, ``likelihood(..., negative=True)`` and ``likelihood_and_gradient`` refer to
``-2 L / n - log(2 pi)`` of the profile likelihood (``alpha`` at its MLE given ``beta, h2``);
gradients are ordered ``beta`` then ``h2``.

Examples
--------
>>> import numpy as np
>>> from hlmm import hetlmm
>>> sim = hetlmm.simulate(2000, 100, np.array([1.0]), np.array([0.5]), 0.5, seed=3)
>>> fit = sim.optimize_model(0.1)
>>> bool(fit["success"]), fit["par_cov"].shape
(True, (3, 3))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from hlmm import hetlm
from hlmm._checks import as_design, as_h2, as_parameter, as_response
from hlmm._linalg import LOG_2PI, blas_threads_for, rows_quadratic, weighted_gram
from hlmm._optimize import fd_hessian, minimize_newton

__all__ = ["model", "simulate"]

@dataclass
class _Terms:
    """Quantities of the likelihood at one parameter value, in l dimensions."""

    F: float  # -2 L - n log(2 pi)
    alpha: np.ndarray
    r: np.ndarray  # residuals y - X alpha
    w: np.ndarray  # exp(-V beta)
    S: np.ndarray  # G' D^-1 G
    cM: tuple  # Cholesky factor of M = I + h2 S
    u: np.ndarray  # G' D^-1 r
    Minv_u: np.ndarray  # M^-1 u
    C: np.ndarray  # G' D^-1 X
    q: np.ndarray | None = None  # diag(G M^-1 G'), computed on demand


class model:
    """Heteroskedastic linear mixed model with input data.

    Define a heteroskedastic linear mixed model and calculate likelihood, gradients, and maximum
    likelihood estimates of parameters.

    Parameters
    ----------
    y : array_like, shape (n,)
        Phenotype observations.
    X : array_like, shape (n, c) or (n,)
        Design matrix for the fixed mean effects.
    V : array_like, shape (n, v) or (n,)
        Design matrix for the fixed variance effects.
    G : array_like, shape (n, l) or (n,)
        Design matrix for the random effects. ``l`` may exceed ``n``.

    Raises
    ------
    ValueError
        If shapes do not match, an array holds NaN or inf, or ``X`` or ``V`` has collinear
        columns.
    """

    def __init__(self, y, X, V, G) -> None:
        self.y = as_response(y)
        self.n = self.y.shape[0]
        self.X = as_design(X, self.n, "X")
        self.V = as_design(V, self.n, "V")
        self.G = as_design(G, self.n, "G", full_rank=False)
        self.n_fixed_mean = self.X.shape[1]
        self.n_fixed_variance = self.V.shape[1]
        self.l = self.G.shape[1]
        self._cache_key: bytes | None = None
        self._cache: _Terms | None = None

    # ----------------------------------------------------------------------------------------
    # Public API
    # ----------------------------------------------------------------------------------------
    def alpha_mle(self, beta, h2) -> np.ndarray:
        """Maximum likelihood estimate of the fixed mean effects given ``beta`` and ``h2``.

        Parameters
        ----------
        beta : array_like, shape (v,)
            Fixed variance effects.
        h2 : float
            Variance of the random effects.

        Returns
        -------
        ndarray, shape (c,)
            ``(X' Sigma^-1 X)^-1 X' Sigma^-1 y``.
        """
        t = self._terms(self._beta(beta), as_h2(h2))
        if t is None:
            raise ValueError("the covariance matrix is not positive definite at these parameters")
        return t.alpha

    def alpha_ols(self) -> np.ndarray:
        """Ordinary least-squares estimate of the fixed mean effects.

        Returns
        -------
        ndarray, shape (c,)
        """
        return np.linalg.lstsq(self.X, self.y, rcond=None)[0]

    def likelihood(self, beta, h2, negative: bool = False) -> float:
        """Log of the profile likelihood (``alpha`` at its MLE given ``beta`` and ``h2``).

        Parameters
        ----------
        beta : array_like, shape (v,)
            Fixed variance effects.
        h2 : float
            Variance of the random effects.
        negative : bool
            If True, return ``-2*L/n - log(2*pi)``, the function minimised to find the MLE.

        Returns
        -------
        float
        """
        t = self._terms(self._beta(beta), as_h2(h2))
        F = np.inf if t is None else t.F
        return F / self.n if negative else -0.5 * (F + self.n * LOG_2PI)

    def likelihood_and_gradient(self, beta, h2, return_grad: bool = True):
        """``LL = -2*L/n - log(2*pi)`` of the profile likelihood and its gradient.

        Parameters
        ----------
        beta : array_like, shape (v,)
            Fixed variance effects.
        h2 : float
            Variance of the random effects.
        return_grad : bool
            If False, return only ``LL``.

        Returns
        -------
        LL : float
        gradient : ndarray, shape (v + 1,)
            Gradient with respect to ``beta`` followed by ``h2``. Returned as ``(LL, gradient)``
            when ``return_grad``.
        """
        beta, h2 = self._beta(beta), as_h2(h2)
        F, g = self._profile_fg(np.append(beta, h2))
        if not return_grad:
            return F / self.n
        return F / self.n, g / self.n

    def optimize_model(self, h2, SEs: bool = True, dx: float | None = None) -> dict:
        """Find the maximum likelihood estimate (MLE) of the parameters and their sampling distribution.

        Starts ``beta`` from the heteroskedastic linear model without random effects and ``h2``
        from the given value, then takes projected Newton steps on the profile likelihood of
        ``(beta, h2)`` with ``h2 >= 0`` and the analytic Hessian, until the Newton decrement is below 1e-18 relative.

        Parameters
        ----------
        h2 : float
            Initial value of the variance of the random effects.
        SEs : bool
            Whether to compute the sampling distribution of the estimates.
        dx : float, optional
            If given, the Hessian for the SEs is differenced from the analytic gradient with
            this step, as in hlmm 1.2.0a1 (whose default was 1e-6). Default: analytic Hessian.

        Returns
        -------
        dict
            ``alpha``, ``beta``, ``h2`` (MLEs); ``alpha_se``, ``beta_se``, ``h2_se`` and
            ``par_cov`` (order alpha, beta, h2), the inverse observed information, with its
            ``alpha_cov`` and ``beta_cov`` blocks (the keys of
            :meth:`hlmm.hetlm.model.optimize_model`); ``likelihood``
            (maximum log-likelihood); ``success``; ``warnflag`` (0 converged, 1 too many
            iterations, 2 other failure); ``message``; ``n_iter``. On failure the last iterate is
            returned with ``success=False``.
        """
        h2 = as_h2(h2, "initial h2")
        with blas_threads_for(self.n * max(self.l, self.n_fixed_mean) ** 2):
            return self._optimize(h2, SEs, dx)

    def _optimize(self, h2: float, SEs: bool, dx: float | None) -> dict:
        v = self.n_fixed_variance
        hlm = hetlm.model(self.y, self.X, self.V)
        beta0 = hlm.optimize_model()["beta"]
        if not np.all(np.isfinite(beta0)):
            beta0 = hlm.approx_beta_mle()
        lower = np.append(np.full(v, -np.inf), 0.0)
        res = minimize_newton(self._profile_fg, self._profile_hessian, np.append(beta0, h2), lower)
        beta, h2_hat = res.x[:v], float(res.x[v])
        t = self._terms(beta, h2_hat)
        optim = {
            "alpha": t.alpha if t is not None else np.full(self.n_fixed_mean, np.nan),
            "beta": beta,
            "h2": h2_hat,
            "likelihood": -0.5 * (res.fun + self.n * LOG_2PI),
            "success": bool(res.success),
            "warnflag": int(res.warnflag),
            "message": res.message,
            "n_iter": res.n_iter,
        }
        if SEs:
            if t is None:
                par_cov = np.full((self.n_fixed_mean + v + 1,) * 2, np.nan)
            else:
                par_cov = self.parameter_covariance(t.alpha, beta, h2_hat, dx)
            se = np.sqrt(np.diag(par_cov))
            c = self.n_fixed_mean
            optim["par_cov"] = par_cov
            optim["alpha_cov"] = par_cov[:c, :c]
            optim["beta_cov"] = par_cov[c : c + v, c : c + v]
            optim["alpha_se"] = se[: self.n_fixed_mean]
            optim["beta_se"] = se[self.n_fixed_mean : self.n_fixed_mean + v]
            optim["h2_se"] = float(se[-1])
        return optim

    def parameter_covariance(self, alpha, beta, h2, dx: float | None = None) -> np.ndarray:
        """Sampling covariance of ``(alpha, beta, h2)``: the inverse observed information.

        The covariance is ``(H / 2)^-1`` where ``H`` is the Hessian of ``-2 L``, computed
        analytically, or with ``dx`` given, by differencing the analytic gradient as hlmm 1.2.0a1
        did (centrally; forwards for ``h2`` within ``dx`` of its bound 0).

        Parameters
        ----------
        alpha : array_like, shape (c,)
        beta : array_like, shape (v,)
        h2 : float
        dx : float, optional
            Difference step, scaled by ``max(1, |parameter|)``. Default: analytic Hessian.

        Returns
        -------
        ndarray, shape (c + v + 1, c + v + 1)
            NaN-filled if the observed information is not positive definite.
        """
        theta = np.concatenate(
            [as_parameter(alpha, self.n_fixed_mean, "alpha"), self._beta(beta), [as_h2(h2)]]
        )
        if dx is None:
            H = self._full(theta, hessian=True)[1]
        else:
            lower = np.full(theta.shape[0], -np.inf)
            lower[-1] = 0.0
            H = fd_hessian(self._full_grad, theta, dx * np.maximum(1.0, np.abs(theta)), lower)
        try:
            c = linalg.cho_factor(0.5 * H, lower=True)
        except (linalg.LinAlgError, ValueError):
            return np.full(H.shape, np.nan)
        return linalg.cho_solve(c, np.eye(H.shape[0]))

    # ----------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------
    def _beta(self, beta) -> np.ndarray:
        return as_parameter(beta, self.n_fixed_variance, "beta")

    def _terms(self, beta: np.ndarray, h2: float, alpha: np.ndarray | None = None) -> _Terms | None:
        """Likelihood terms at (alpha, beta, h2); alpha profiled out if None. None if infeasible."""
        if h2 < 0:
            return None
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            Vb = self.V @ beta
            w = np.exp(-Vb)
            if not np.all(np.isfinite(w)):
                return None
            S = weighted_gram(self.G, w)
            M = h2 * S
            M[np.diag_indices_from(M)] += 1.0
            try:
                cM = linalg.cho_factor(M, lower=True)
            except (linalg.LinAlgError, ValueError):
                return None
            logdet_M = 2.0 * float(np.sum(np.log(np.diag(cM[0]))))
            C = self.G.T @ (w[:, None] * self.X)
            Gwy = self.G.T @ (w * self.y)
            if alpha is None:
                # X' Sigma^-1 X and X' Sigma^-1 y by Woodbury
                Minv_C = linalg.cho_solve(cM, C)
                XtWX = self.X.T @ (w[:, None] * self.X)
                A = XtWX - h2 * C.T @ Minv_C
                b = self.X.T @ (w * self.y) - h2 * Minv_C.T @ Gwy
                try:
                    alpha = linalg.cho_solve(linalg.cho_factor(A, lower=True), b)
                except (linalg.LinAlgError, ValueError):
                    return None
            r = self.y - self.X @ alpha
            u = Gwy - C @ alpha
            Minv_u = linalg.cho_solve(cM, u)
            F = float(np.sum(Vb) + logdet_M + np.sum(w * r**2) - h2 * (u @ Minv_u))
        if not np.isfinite(F):
            return None
        return _Terms(F, alpha, r, w, S, cM, u, Minv_u, C)

    def _derivatives(self, t: _Terms, h2: float, hessian: bool):
        """Gradient and (optionally) Hessian of F = -2 L - n log 2 pi in (alpha, beta, h2).

        With e = Sigma^-1 r, m = M^-1 u = G' e, q_i = g_i' M^-1 g_i and T_j = G' diag(w V_j) G,
        every term reduces to l-dimensional algebra (see docs/hetlmm for the derivation)::

            dF/dalpha   = -2 X' e
            dF/dbeta_j  = sum_i V_ij (1 - h2 w_i q_i - d_i e_i^2)
            dF/dh2      = tr(M^-1 S) - m'm
            F_aa  = 2 X' Sigma^-1 X            F_ab_j = 2 X' Sigma^-1 diag(d V_j) e
            F_ah  = 2 C' M^-1 m
            F_bjbk = V_j' diag(h2 w q + d e^2) V_k - h2^2 tr(M^-1 T_j M^-1 T_k)
                     - 2 h2 y_j' M^-1 y_k,   y_j = G' (V_j e)
            F_bjh = -tr(M^-2 T_j) + 2 y_j' M^-1 m
            F_hh  = -tr((M^-1 S)^2) + 2 m' M^-1 S m
        """
        c, v = self.n_fixed_mean, self.n_fixed_variance
        if t.q is None:
            t.q = rows_quadratic(self.G, t.cM[0])
        q = t.q
        m = t.Minv_u
        Gm = self.G @ m
        e = t.w * (t.r - h2 * Gm)  # Sigma^-1 r
        d_e2 = t.w * (t.r - h2 * Gm) ** 2  # d_i e_i^2
        hwq = h2 * t.w * q
        MinvS = linalg.cho_solve(t.cM, t.S)
        Minv_C = linalg.cho_solve(t.cM, t.C)
        grad = np.concatenate(
            [-2.0 * (self.X.T @ e), self.V.T @ (1.0 - hwq - d_e2), [np.trace(MinvS) - float(m @ m)]]
        )
        if not hessian:
            return grad, None
        p = c + v + 1
        H = np.empty((p, p))
        # alpha-alpha
        XtWX = self.X.T @ (t.w[:, None] * self.X)
        H[:c, :c] = 2.0 * (XtWX - h2 * t.C.T @ Minv_C)
        # y_j = G'(V_j e), and X' Sigma^-1 diag(d V_j) e = X'(V_j e) - h2 C' M^-1 y_j
        Ve = self.V * e[:, None]
        Y = self.G.T @ Ve  # l x v
        Minv_Y = linalg.cho_solve(t.cM, Y)
        H[:c, c : c + v] = 2.0 * (self.X.T @ Ve - h2 * t.C.T @ Minv_Y)
        H[:c, -1] = 2.0 * (Minv_C.T @ m)
        # beta-beta and beta-h2: K_j = M^-1 T_j; a constant column j gives T_j = V_j * S
        K = []
        for j in range(v):
            col = self.V[:, j]
            if np.all(col == col[0]):
                K.append(col[0] * MinvS)
            else:
                K.append(linalg.cho_solve(t.cM, weighted_gram(self.G, t.w * col)))
        Hbb = self.V.T @ ((hwq + d_e2)[:, None] * self.V) - 2.0 * h2 * (Y.T @ Minv_Y)
        for j in range(v):
            for k in range(j, v):
                Hbb[j, k] -= h2**2 * np.einsum("ij,ji->", K[j], K[k])
                Hbb[k, j] = Hbb[j, k]
        H[c : c + v, c : c + v] = Hbb
        Minv_m = linalg.cho_solve(t.cM, m)
        for j in range(v):
            # tr(M^-2 T_j) = tr(M^-1 K_j)
            H[c + j, -1] = -np.trace(linalg.cho_solve(t.cM, K[j])) + 2.0 * float(Y[:, j] @ Minv_m)
        H[-1, -1] = -np.einsum("ij,ji->", MinvS, MinvS) + 2.0 * float(m @ (MinvS @ m))
        H = np.triu(H) + np.triu(H, 1).T
        return grad, H

    def _cached_terms(self, theta: np.ndarray) -> _Terms | None:
        """Profile terms at theta = (beta, h2), remembering the last point evaluated."""
        key = theta.tobytes()
        if self._cache_key != key:
            v = self.n_fixed_variance
            self._cache_key, self._cache = key, self._terms(theta[:v], float(theta[v]))
        return self._cache

    def _profile_fg(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """F and dF/d(beta, h2) of the profile likelihood (alpha at its MLE)."""
        t = self._cached_terms(theta)
        if t is None:
            return np.inf, np.full(theta.shape[0], np.nan)
        grad, _ = self._derivatives(t, float(theta[-1]), hessian=False)
        return t.F, grad[self.n_fixed_mean :]

    def _profile_hessian(self, theta: np.ndarray) -> np.ndarray:
        """Hessian of the profile F in (beta, h2): the Schur complement of the full Hessian."""
        t = self._cached_terms(theta)
        if t is None:
            return np.full((theta.shape[0],) * 2, np.nan)
        _, H = self._derivatives(t, float(theta[-1]), hessian=True)
        c = self.n_fixed_mean
        Haa, Hat, Htt = H[:c, :c], H[:c, c:], H[c:, c:]
        return Htt - Hat.T @ np.linalg.solve(Haa, Hat)

    def _full(self, theta: np.ndarray, hessian: bool):
        """Gradient (and Hessian) of the full F in (alpha, beta, h2)."""
        c, v = self.n_fixed_mean, self.n_fixed_variance
        h2 = float(theta[c + v])
        t = self._terms(theta[c : c + v], h2, alpha=theta[:c])
        if t is None:
            nan = np.full(theta.shape[0], np.nan)
            return nan, (np.full((theta.shape[0],) * 2, np.nan) if hessian else None)
        return self._derivatives(t, h2, hessian)

    def _full_grad(self, theta: np.ndarray) -> np.ndarray:
        return self._full(theta, hessian=False)[0]


def simulate(n: int, l: int, alpha, beta, h2: float, seed=None) -> model:  # noqa: E741
    """Simulate from a heteroskedastic linear mixed model.

    ``X`` and ``V`` have independent standard normal entries; ``G`` holds binomial(2, 0.5)
    genotypes, each column z-scored and divided by sqrt(l); then
    ``y = X alpha + sqrt(h2) G z + exp(V beta / 2) e`` with ``z``, ``e`` standard normal.

    Parameters
    ----------
    n : int
        Sample size.
    l : int
        Number of random effects.
    alpha : array_like, shape (c,)
        Fixed mean effects.
    beta : array_like, shape (v,)
        Fixed variance effects.
    h2 : float
        Variance of the random effects.
    seed : int or numpy.random.Generator, optional
        Seed for ``numpy.random.default_rng``, or a Generator. Without it the draws come from
        NumPy's global random state, as in 1.2.0a1, so ``np.random.seed(5)`` beforehand
        reproduces the data.

    Returns
    -------
    model
        A model whose ``y``, ``X``, ``V``, ``G`` hold the simulated data.

    Examples
    --------
    >>> import numpy as np
    >>> np.random.seed(5)
    >>> a = simulate(50, 4, np.array([1.0]), np.array([0.0]), 0.5)
    >>> np.random.seed(5)
    >>> b = simulate(50, 4, np.array([1.0]), np.array([0.0]), 0.5)
    >>> bool(np.array_equal(a.y, b.y))
    True
    """
    rng = np.random.mtrand._rand if seed is None else np.random.default_rng(seed)
    alpha = np.atleast_1d(np.asarray(alpha, dtype=float))
    beta = np.atleast_1d(np.asarray(beta, dtype=float))
    h2 = as_h2(h2)
    X = rng.standard_normal((n, alpha.shape[0]))
    V = rng.standard_normal((n, beta.shape[0]))
    G = rng.binomial(2, 0.5, (n, l)).astype(float)
    sd = G.std(axis=0)
    sd[sd == 0] = 1.0
    G = (G - G.mean(axis=0)) / sd / np.sqrt(l)
    y = X @ alpha + np.sqrt(h2) * (G @ rng.standard_normal(l)) + rng.standard_normal(n) * np.exp(V @ beta / 2)
    return model(y, X, V, G)
