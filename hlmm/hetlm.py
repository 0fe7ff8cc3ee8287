"""Heteroskedastic linear model (HLM).

Parameterisation
----------------
For n individuals with response ``y``, mean covariates ``X`` (n x c) and variance covariates
``V`` (n x v)::

    y_i ~ N(X_i . alpha, exp(V_i . beta))        independently,

so ``alpha`` are fixed effects on the mean and ``beta`` log-linear fixed effects on the variance.
With D = diag(exp(V beta)) and residuals r = y - X alpha, the log-likelihood is::

    L = -1/2 [ n log(2 pi) + sum_i V_i beta + sum_i r_i^2 exp(-V_i beta) ].

As in hlmm 1.2.0a1, ``likelihood(..., negative=True)`` and ``grad_beta`` refer to
``-2 L / n - log(2 pi)``, the function minimised to find the maximum likelihood estimate (MLE).
The MLE of ``alpha`` given ``beta`` is generalised least squares; ``beta`` is found by Newton's
method on the profile likelihood with its exact Hessian.

Examples
--------
>>> import numpy as np
>>> from hlmm import hetlm
>>> rng = np.random.default_rng(1)
>>> n = 2000
>>> X = np.column_stack([np.ones(n), rng.standard_normal(n)])
>>> V = np.column_stack([np.ones(n), rng.standard_normal(n)])
>>> y = X @ [1.0, 0.5] + rng.standard_normal(n) * np.exp(V @ [0.0, 0.3] / 2)
>>> fit = hetlm.model(y, X, V).optimize_model()
>>> bool(fit["success"]), bool(abs(fit["beta"][1] - 0.3) < 0.1)
(True, True)
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from hlmm._checks import as_design, as_parameter, as_response
from hlmm._linalg import LOG_2PI, blas_threads_for
from hlmm._optimize import minimize_newton

__all__ = ["model"]

class model:
    """Heteroskedastic linear model with input data.

    Define a heteroskedastic linear model and calculate likelihood, gradients, and maximum
    likelihood estimates of parameters.

    Parameters
    ----------
    y : array_like, shape (n,)
        Phenotype observations.
    X : array_like, shape (n, c) or (n,)
        Design matrix for the fixed mean effects. A 1-D array is one column.
    V : array_like, shape (n, v) or (n,)
        Design matrix for the fixed variance effects. A 1-D array is one column.

    Raises
    ------
    ValueError
        If the shapes do not match, an array holds NaN or inf, or ``X`` or ``V`` has collinear
        columns.

    Attributes
    ----------
    y, X, V : ndarray
        The validated data, ``X`` and ``V`` always 2-D.
    n : int
        Number of observations.
    n_fixed_mean, n_fixed_variance : int
        Numbers of columns of ``X`` and ``V``.
    """

    def __init__(self, y, X, V) -> None:
        self.y = as_response(y)
        self.n = self.y.shape[0]
        self.X = as_design(X, self.n, "X")
        self.V = as_design(V, self.n, "V")
        self.n_fixed_mean = self.X.shape[1]
        self.n_fixed_variance = self.V.shape[1]

    # ----------------------------------------------------------------------------------------
    # Likelihood and its derivatives
    # ----------------------------------------------------------------------------------------
    def likelihood(self, beta, alpha, negative: bool = False) -> float:
        """Log-likelihood of the data given ``beta`` and ``alpha``.

        Parameters
        ----------
        beta : array_like, shape (v,)
            Fixed variance effects.
        alpha : array_like, shape (c,)
            Fixed mean effects.
        negative : bool
            If True, return ``-2*L/n - log(2*pi)``, the function minimised to find the MLE.

        Returns
        -------
        float
            ``L``, or ``-2*L/n - log(2*pi)`` if ``negative``.
        """
        beta = as_parameter(beta, self.n_fixed_variance, "beta")
        alpha = as_parameter(alpha, self.n_fixed_mean, "alpha")
        F = self._deviance(beta, self.y - self.X @ alpha)
        return F / self.n if negative else -0.5 * (F + self.n * LOG_2PI)

    def grad_beta(self, beta, alpha) -> np.ndarray:
        """Gradient of ``-2*L/n - log(2*pi)`` with respect to the fixed variance effects.

        Parameters
        ----------
        beta : array_like, shape (v,)
            Fixed variance effects.
        alpha : array_like, shape (c,)
            Fixed mean effects.

        Returns
        -------
        ndarray, shape (v,)
            At ``alpha = alpha_mle(beta)`` this is also the gradient of the profile likelihood.

        Notes
        -----
        1.2.0a1 returned the gradient of ``-2*L - n*log(2*pi)`` (not divided by n) with shape
        (1, v). This is the gradient of what ``likelihood(..., negative=True)`` returns.
        """
        beta = as_parameter(beta, self.n_fixed_variance, "beta")
        alpha = as_parameter(alpha, self.n_fixed_mean, "alpha")
        r = self.y - self.X @ alpha
        with np.errstate(over="ignore", invalid="ignore"):
            return self.V.T @ (1.0 - r**2 * np.exp(-self.V @ beta)) / self.n

    def alpha_mle(self, beta) -> np.ndarray:
        """Maximum likelihood estimate of the fixed mean effects given ``beta``.

        Parameters
        ----------
        beta : array_like, shape (v,)
            Fixed variance effects.

        Returns
        -------
        ndarray, shape (c,)
            The generalised least-squares estimate ``(X' D^-1 X)^-1 X' D^-1 y``.
        """
        beta = as_parameter(beta, self.n_fixed_variance, "beta")
        w = np.exp(-self.V @ beta)
        return linalg.cho_solve(_cho(self.X.T @ (w[:, None] * self.X)), self.X.T @ (w * self.y))

    def alpha_ols(self) -> np.ndarray:
        """Ordinary least-squares estimate of the fixed mean effects.

        Returns
        -------
        ndarray, shape (c,)
        """
        return np.linalg.lstsq(self.X, self.y, rcond=None)[0]

    def approx_beta_mle(self) -> np.ndarray:
        """Analytical approximation to the MLE of the fixed variance effects.

        Takes the OLS residuals r, the homoskedastic fit ``V beta0 ~ log(mean r^2)``, and one
        Newton step from ``beta0`` for ``beta`` with ``alpha`` held at OLS. (1.2.0a1 instead
        regressed ``log(r^2)`` on ``V`` and corrected the intercept; both are only starting
        points, and the MLE does not depend on them.)

        Returns
        -------
        ndarray, shape (v,)
            Approximate MLE of ``beta``; used as the optimiser's starting point.
        """
        r2 = (self.y - self.X @ self.alpha_ols()) ** 2
        beta0 = np.linalg.lstsq(self.V, np.full(self.n, np.log(max(r2.mean(), 1e-300))), rcond=None)[0]
        with np.errstate(over="ignore", invalid="ignore"):
            wr2 = r2 * np.exp(-self.V @ beta0)
            g = self.V.T @ (1.0 - wr2)
            H = self.V.T @ (wr2[:, None] * self.V)
        try:
            step = linalg.cho_solve(_cho(H), g)
        except (linalg.LinAlgError, ValueError):
            return beta0
        return beta0 - step if np.all(np.isfinite(step)) else beta0

    def alpha_cov(self, beta) -> np.ndarray:
        """Sampling covariance of the fixed mean effects given ``beta``: ``(X' D^-1 X)^-1``.

        Parameters
        ----------
        beta : array_like, shape (v,)

        Returns
        -------
        ndarray, shape (c, c)
        """
        beta = as_parameter(beta, self.n_fixed_variance, "beta")
        w = np.exp(-self.V @ beta)
        return _inv_pd(self.X.T @ (w[:, None] * self.X))

    def beta_cov(self) -> np.ndarray:
        """Sampling covariance of the fixed variance effects from the expected information.

        Returns
        -------
        ndarray, shape (v, v)
            ``2 (V'V)^-1``.
        """
        return 2.0 * _inv_pd(self.V.T @ self.V)

    # ----------------------------------------------------------------------------------------
    # Optimisation
    # ----------------------------------------------------------------------------------------
    def optimize_model(self) -> dict:
        """Find the maximum likelihood estimate (MLE) of the parameters and their sampling distribution.

        Newton's method on the profile likelihood of ``beta`` with the exact Hessian and a
        backtracking line search, to a Newton decrement below 1e-18 relative.

        Returns
        -------
        dict
            ``alpha``, ``beta`` (MLEs); ``alpha_se``, ``beta_se``, ``alpha_cov``, ``beta_cov``
            and ``par_cov`` (order alpha, beta; sampling distribution from the expected
            information, so ``par_cov`` is block diagonal); ``likelihood`` (maximum of the
            log-likelihood); ``success`` (bool); ``warnflag`` (0 converged, 1 too many
            iterations, 2 other failure); ``message`` (why it stopped); ``n_iter``. The keys
            mean the same as in :meth:`hlmm.hetlmm.model.optimize_model`. On failure the last
            iterate is returned with ``success=False``.
        """
        with blas_threads_for(self.n * max(self.n_fixed_mean, self.n_fixed_variance) ** 2):
            return self._optimize()

    def _optimize(self) -> dict:
        starts = [self.approx_beta_mle()]
        r2 = (self.y - self.X @ self.alpha_ols()) ** 2
        starts.append(np.linalg.lstsq(self.V, np.full(self.n, np.log(max(r2.mean(), 1e-300))), rcond=None)[0])
        beta0 = min(starts, key=lambda b: self._profile(b)[0])
        res = minimize_newton(
            lambda b: self._profile(b)[:2], lambda b: self._profile(b, hessian=True)[2], beta0
        )
        beta = res.x
        alpha = self.alpha_mle(beta)
        optim = {
            "alpha": alpha,
            "beta": beta,
            "alpha_cov": self.alpha_cov(beta),
            "beta_cov": self.beta_cov(),
        }
        optim["alpha_se"] = np.sqrt(np.diag(optim["alpha_cov"]))
        optim["beta_se"] = np.sqrt(np.diag(optim["beta_cov"]))
        optim["par_cov"] = linalg.block_diag(optim["alpha_cov"], optim["beta_cov"])
        optim["likelihood"] = -0.5 * (res.fun + self.n * LOG_2PI)
        optim["success"] = bool(res.success)
        optim["warnflag"] = int(res.warnflag)
        optim["message"] = res.message
        optim["n_iter"] = res.n_iter
        return optim

    # ----------------------------------------------------------------------------------------
    # Internals: F = -2 L - n log(2 pi) and the profile over alpha
    # ----------------------------------------------------------------------------------------
    def _deviance(self, beta: np.ndarray, r: np.ndarray) -> float:
        Vb = self.V @ beta
        with np.errstate(over="ignore", invalid="ignore"):
            F = float(np.sum(Vb) + np.sum(r**2 * np.exp(-Vb)))
        return F if np.isfinite(F) else np.inf

    def _profile(self, beta: np.ndarray, hessian: bool = False):
        """F(beta) profiled over alpha, its gradient, and (optionally) its exact Hessian."""
        v = self.n_fixed_variance
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            Vb = self.V @ beta
            w = np.exp(-Vb)
            if not np.all(np.isfinite(w)):
                return np.inf, np.full(v, np.nan), np.full((v, v), np.nan)
            wX = w[:, None] * self.X
            try:
                cXtWX = _cho(self.X.T @ wX)
            except (linalg.LinAlgError, ValueError):
                return np.inf, np.full(v, np.nan), np.full((v, v), np.nan)
            alpha = linalg.cho_solve(cXtWX, wX.T @ self.y)
            r = self.y - self.X @ alpha
            wr2 = w * r**2
            F = float(np.sum(Vb) + np.sum(wr2))
            if not np.isfinite(F):
                return np.inf, np.full(v, np.nan), np.full((v, v), np.nan)
            grad = self.V.T @ (1.0 - wr2)
            H = None
            if hessian:
                # d2F/dbeta2 = V' diag(w r^2) V - 2 A' (X'WX)^-1 A, with A = X' diag(w r) V
                A = wX.T @ (r[:, None] * self.V)
                H = self.V.T @ (wr2[:, None] * self.V) - 2.0 * A.T @ linalg.cho_solve(cXtWX, A)
        return F, grad, H


def _cho(A: np.ndarray):
    return linalg.cho_factor(A, lower=True, check_finite=True)


def _inv_pd(A: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix via its Cholesky factor."""
    return linalg.cho_solve(_cho(A), np.eye(A.shape[0]))
