"""Sandwich (Huber-White) covariance of the HLM's maximum likelihood estimates.

Parameterisation
----------------
As in :mod:`hlmm.hetlm`: ``y_i ~ N(x_i' alpha, d_i)``, ``d_i = exp(v_i' beta)``, independently,
with residuals ``r_i = y_i - x_i' alpha``. The per-individual scores of ``(alpha, beta)`` are::

    s_i = [ x_i r_i / d_i ;  1/2 v_i (r_i^2 / d_i - 1) ].

Derivation
----------
At the MLE ``sum_i s_i = 0``, and a first-order expansion gives
``theta_hat - theta ~= A^-1 sum_i s_i`` with ``A`` the expected information::

    A = blockdiag(X' D^-1 X, 1/2 V'V),

the information behind :class:`hlmm.hetlm.model`'s standard errors (it equals the expected
negative Hessian whenever the mean and variance models are right, normal or not). Hence::

    cov(theta_hat) ~= A^-1 B A^-1,    B = sum_i s_i s_i',

which stays valid when the residuals are not normal (for example skewed or heavy-tailed
traits, where the model-based ``2 (V'V)^-1`` understates the variance of ``beta_hat`` by about
``1 + kurtosis/2``), and for the mean effects also when the variance model is wrong. No
small-sample (HC1-3) correction is applied.

Genotype classes
----------------
In the default mode of ``hlmm_chr`` a SNP's model has ``X = V = [1, g]`` and ``g`` takes K
values ``g_k`` (3 genotype classes, centred). With ``z_k = (1, g_k)``, ``mu_k = alpha' z_k``,
``d_k = exp(beta' z_k)`` and the central sums ``R_pk = sum_{i in k} (y_i - mu_k)^p``::

    sum_{i in k} s_i s_i' = [[ R_2 / d^2,                   1/2 (R_3 / d^2 - R_1 / d)      ],
                             [ 1/2 (R_3 / d^2 - R_1 / d),   1/4 (R_4 / d^2 - 2 R_2 / d + n) ]]  (x) z_k z_k'

and ``A = blockdiag(sum_k n_k z_k z_k' / d_k, 1/2 sum_k n_k z_k z_k')``, so the covariance
depends on the data only through the per-class power sums ``n, sum y, ..., sum y^4``. The
``R_pk`` follow from them by the binomial expansion, which loses digits when ``|mu_k|`` is
large compared with the spread of y: pass sums of a standardised (or at least centred) y.

Examples
--------
>>> import numpy as np
>>> from hlmm import hetlm, robust
>>> rng = np.random.default_rng(0)
>>> n = 5000
>>> X = np.column_stack([np.ones(n), rng.standard_normal(n)])
>>> y = X @ [0.0, 0.5] + rng.standard_t(5, n)
>>> fit = hetlm.model(y, X, X).optimize_model()
>>> cov = robust.hlm_sandwich(y, X, X, fit["alpha"], fit["beta"])
>>> ratio = np.sqrt(cov[3, 3]) / fit["beta_se"][1]   # t5: kurtosis 6, ratio about 2
>>> bool(1.5 < ratio < 2.5)
True
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from hlmm._checks import as_design, as_parameter, as_response

__all__ = ["hlm_sandwich", "hlm_sandwich_classes"]


def hlm_sandwich(y, X, V, alpha, beta) -> np.ndarray:
    """Sandwich covariance ``A^-1 B A^-1`` of the HLM estimates ``(alpha, beta)``.

    Parameters
    ----------
    y : array_like, shape (n,)
        Phenotype.
    X : array_like, shape (n, c) or (n,)
        Mean design.
    V : array_like, shape (n, v) or (n,)
        Log-variance design.
    alpha : array_like, shape (c,)
        Maximum likelihood estimate of the mean effects.
    beta : array_like, shape (v,)
        Maximum likelihood estimate of the log-variance effects.

    Returns
    -------
    ndarray, shape (c + v, c + v)
        Covariance of ``(alpha, beta)``, in that order.

    Raises
    ------
    ValueError
        If shapes do not match, an input holds NaN or inf, or ``X`` or ``V`` has collinear
        columns.
    """
    y = as_response(y)
    n = y.shape[0]
    X = as_design(X, n, "X")
    V = as_design(V, n, "V")
    alpha = as_parameter(alpha, X.shape[1], "alpha")
    beta = as_parameter(beta, V.shape[1], "beta")
    c = X.shape[1]
    w = np.exp(-(V @ beta))
    r = y - X @ alpha
    s = np.column_stack([X * (w * r)[:, None], 0.5 * V * (w * r**2 - 1.0)[:, None]])
    B = s.T @ s
    cho_x = linalg.cho_factor(X.T @ (w[:, None] * X), lower=True)
    cho_v = linalg.cho_factor(0.5 * V.T @ V, lower=True)

    def solve_A(R: np.ndarray) -> np.ndarray:
        return np.vstack([linalg.cho_solve(cho_x, R[:c]), linalg.cho_solve(cho_v, R[c:])])

    cov = solve_A(solve_A(B).T)
    return 0.5 * (cov + cov.T)


def hlm_sandwich_classes(g, power_sums, alpha, beta) -> np.ndarray:
    """Sandwich covariance for many SNPs with ``X = V = [1, g]`` from per-class power sums.

    Parameters
    ----------
    g : array_like, shape (B, K) or (K,)
        Genotype value of each class for each SNP (for example 0, 1, 2 minus the SNP's mean).
    power_sums : array_like, shape (B, K, 5)
        Per SNP and class: number of individuals, ``sum y``, ``sum y^2``, ``sum y^3``,
        ``sum y^4``, over the individuals of that class (a SNP's missing calls in no class).
    alpha : array_like, shape (B, 2)
        Maximum likelihood estimates ``(intercept, a)`` of each SNP's mean model.
    beta : array_like, shape (B, 2)
        Maximum likelihood estimates ``(intercept, b)`` of each SNP's log-variance model.

    Returns
    -------
    ndarray, shape (B, 4, 4)
        Covariance of ``(alpha_0, a, beta_0, b)`` per SNP; NaN for SNPs with fewer than two
        non-empty classes or non-finite estimates.

    Raises
    ------
    ValueError
        If the shapes do not agree.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0.1, -0.3, 1.2, 0.4, -1.0, 0.7])
    >>> cls = np.array([0, 0, 1, 1, 2, 2])
    >>> ps = np.array([[[np.sum(y[cls == k] ** p) for p in range(5)] for k in range(3)]])
    >>> g = np.arange(3.0) - 1.0
    >>> X = np.column_stack([np.ones(6), g[cls]])
    >>> cov = hlm_sandwich_classes(g, ps, [[0.2, 0.1]], [[-0.5, 0.2]])
    >>> bool(np.allclose(cov[0], hlm_sandwich(y, X, X, [0.2, 0.1], [-0.5, 0.2])))
    True
    """
    ps = np.asarray(power_sums, dtype=float)
    if ps.ndim != 3 or ps.shape[2] != 5:
        raise ValueError(f"power_sums must have shape (B, K, 5), got {ps.shape}")
    n_snps, n_classes = ps.shape[:2]
    g = np.broadcast_to(np.asarray(g, dtype=float), (n_snps, n_classes))
    alpha = np.asarray(alpha, dtype=float).reshape(-1, 2)
    beta = np.asarray(beta, dtype=float).reshape(-1, 2)
    if alpha.shape[0] != n_snps or beta.shape[0] != n_snps:
        raise ValueError(
            f"alpha has {alpha.shape[0]} and beta {beta.shape[0]} rows but power_sums has {n_snps} SNPs"
        )
    cnt = ps[..., 0]
    out = np.full((n_snps, 4, 4), np.nan)
    ok = ((cnt > 0).sum(axis=1) >= 2) & np.all(np.isfinite(alpha), axis=1) & np.all(np.isfinite(beta), axis=1)
    ok &= np.all(np.isfinite(ps), axis=(1, 2)) & np.all(np.isfinite(g), axis=1)
    if not ok.any():
        return out
    ps, g, alpha, beta, cnt = ps[ok], g[ok], alpha[ok], beta[ok], cnt[ok]
    mu = alpha[:, :1] + alpha[:, 1:] * g
    w = np.exp(-(beta[:, :1] + beta[:, 1:] * g))  # 1 / d_k
    R = _central_sums(ps, mu)  # (b, K, 5)
    c_aa = R[..., 2] * w**2
    c_ab = 0.5 * (R[..., 3] * w**2 - R[..., 1] * w)
    c_bb = 0.25 * (R[..., 4] * w**2 - 2.0 * R[..., 2] * w + cnt)
    B = np.empty((g.shape[0], 4, 4))
    B[:, :2, :2] = _outer_sum(c_aa, g)
    B[:, :2, 2:] = _outer_sum(c_ab, g)
    B[:, 2:, :2] = np.swapaxes(B[:, :2, 2:], 1, 2)
    B[:, 2:, 2:] = _outer_sum(c_bb, g)
    A = np.zeros_like(B)
    A[:, :2, :2] = _outer_sum(cnt * w, g)
    A[:, 2:, 2:] = 0.5 * _outer_sum(cnt, g)
    cov = np.linalg.solve(A, np.swapaxes(np.linalg.solve(A, B), 1, 2))
    out[ok] = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    return out


def _central_sums(ps: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``sum (y - mu)^p`` for p = 0..4 from the power sums ``sum y^p`` (binomial expansion)."""
    binom = ((1,), (1, 1), (1, 2, 1), (1, 3, 3, 1), (1, 4, 6, 4, 1))
    R = np.zeros_like(ps)
    m = -mu
    for p in range(5):
        # sum (y - mu)^p = sum_j C(p, j) (-mu)^(p - j) sum y^j
        for j in range(p + 1):
            R[..., p] += binom[p][j] * m ** (p - j) * ps[..., j]
    return R


def _outer_sum(weights: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``sum_k weights_k z_k z_k'`` with ``z_k = (1, g_k)``, per SNP: shape (b, 2, 2)."""
    s0 = weights.sum(axis=1)
    s1 = (weights * g).sum(axis=1)
    s2 = (weights * g * g).sum(axis=1)
    return np.stack([np.stack([s0, s1], -1), np.stack([s1, s2], -1)], -2)
