"""p-values and genomic control: the numerics that results, plots, dispersion effects and the engines
share (no I/O).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import gammaln, log_ndtr

__all__ = ["neglog10_pval", "lambda_gc", "lambda_from_neglog10", "wald_chi2", "CHI2_1_MEDIAN"]

LN10 = float(np.log(10.0))
#: Median of chi-square(1).
CHI2_1_MEDIAN = 0.454936423119572


def neglog10_pval(chi2_stat, df: int) -> np.ndarray:
    """-log10 of the chi-square upper tail probability, without underflow.

    For 1 degree of freedom ``p = 2 Phi(-sqrt(x))`` via ``log_ndtr``; for 2, ``p = exp(-x/2)``;
    for more, scipy's log survival function. A p-value of 1e-400 gives 400, not inf.

    Parameters
    ----------
    chi2_stat : array_like
    df : int

    Returns
    -------
    ndarray

    Examples
    --------
    >>> float(neglog10_pval(3.841458820694124, 1).round(6))
    1.30103
    """
    x = np.asarray(chi2_stat, dtype=float)
    if df == 1:
        return -(np.log(2.0) + log_ndtr(-np.sqrt(x))) / LN10
    if df == 2:
        return x / (2.0 * LN10)
    if df > 2:
        with np.errstate(divide="ignore"):
            out = -stats.chi2.logsf(x, df)
        far = ~np.isfinite(out) & np.isfinite(x)
        if np.any(far):  # beyond double precision: the asymptotic series of the upper incomplete gamma
            a, z = df / 2.0, x[far] / 2.0
            series, term = np.ones_like(z), np.ones_like(z)
            for k in range(1, 8):
                term = term * (a - k) / z
                series += term
            out[far] = z - (a - 1.0) * np.log(z) + gammaln(a) - np.log(series)
        return out / LN10
    raise ValueError(f"df must be a positive integer, got {df}")


def lambda_gc(t) -> float:
    """Genomic control inflation: median of t^2 over the median of chi-square(1); NaNs dropped.

    Examples
    --------
    >>> round(lambda_gc([0.5, -1.0, 2.0, float("nan")]), 4)
    2.1981
    """
    t = np.asarray(t, dtype=float)
    t = t[np.isfinite(t)]
    return float(np.median(t**2) / CHI2_1_MEDIAN) if t.size else float("nan")


def lambda_from_neglog10(neglog10) -> float:
    """λGC of −log10 p-values of 1-df tests: the chi-square(1) quantile of the median p over the
    median of chi-square(1); NaNs dropped.

    Examples
    --------
    >>> round(lambda_from_neglog10([0.5, 1.0, 2.0]), 4) == round(float(stats.chi2.isf(0.1, 1)) / CHI2_1_MEDIAN, 4)
    True
    """
    x = np.asarray(neglog10, dtype=float)
    x = x[np.isfinite(x)]
    return float(stats.chi2.isf(10.0 ** -np.median(x), 1) / CHI2_1_MEDIAN) if x.size else float("nan")


def wald_chi2(est: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``est' cov^-1 est`` per row: the Wald statistic of several effects.

    Parameters
    ----------
    est : ndarray, shape (b, k)
    cov : ndarray, shape (b, k, k)

    Returns
    -------
    ndarray, shape (b,)
        NaN where not finite or ``cov`` is not positive definite.
    """
    out = np.full(est.shape[0], np.nan)
    ok = np.all(np.isfinite(est), axis=1) & np.all(np.isfinite(cov), axis=(1, 2))
    try:  # every row at once; row by row if any is not positive definite
        L = np.linalg.cholesky(cov[ok])
        z = np.linalg.solve(L, est[ok][..., None])[..., 0]
        out[ok] = np.einsum("bk,bk->b", z, z)
        return out
    except np.linalg.LinAlgError:
        pass
    for j in np.flatnonzero(ok):
        try:
            L = np.linalg.cholesky(cov[j])
        except np.linalg.LinAlgError:
            continue
        z = np.linalg.solve(L, est[j])
        out[j] = z @ z
    return out
