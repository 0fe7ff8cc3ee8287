"""Dispersion effects: variance effects not explained by a general mean-variance relation.

The method of the hlmm tutorial's R script (``estimate_dispersion_effects.R``):

1. regress ``var`` on ``add`` through the origin by a robust Huber M-estimator, Huber's psi with
   k = 1.345 and a MAD scale, with statsmodels' RLM. This is the estimator of R's ``MASS::rlm``
   defaults up to one constant: statsmodels divides the median absolute deviation by
   ``scipy.stats.norm.ppf(0.75)`` = 0.6744897502, MASS by 0.6745, so statsmodels' scale is larger by
   a factor 1 + 1.52e-5. On the 300 SNPs of ``tests/data/r_reference/rlm_vectors.tsv`` the two
   converged slopes differ by a relative 5.2e-7; MASS's default stopping rule (``acc = 1e-4``) moves
   its slope by a further 5.6e-6 (``tests/test_r_reference.py``);
2. inflate the slope by ``1 + mean(add_se^2) / (var(add) - mean(add_se^2))`` to undo the
   attenuation caused by the sampling noise of ``add`` (regression dilution);
3. ``dispersion = var - r * add`` with ``dispersion_se = sqrt(var_se^2 + r^2 add_se^2)``.

SNPs with NaN estimates are left out of the regression and get NaN dispersion effects.

Rows of score tests (``test`` = ``score`` in a results table) hold one-step estimates of ``add``
and ``var`` (one Newton step from the null fit) with standard errors from the efficient
information. Near the null, where nearly all SNPs of a scan are, these are asymptotically
equivalent to the maximum-likelihood estimates, so they are used like the others: in the slope
fit and for dispersion effects. For SNPs with large effects a one-step estimate can differ from the
maximum-likelihood one; refit such SNPs with Wald tests before reading their dispersion effects.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from hlmm.results import neglog10_pval

__all__ = ["estimate_dispersion", "mean_variance_slope", "ks_test", "summarize"]


def mean_variance_slope(add, add_se, var) -> tuple[float, float, float]:
    """The noise-adjusted slope ``r`` of log-linear variance effects on additive effects.

    Parameters
    ----------
    add, add_se, var : array_like, shape (m,)

    Returns
    -------
    r : float
        Adjusted slope.
    slope : float
        Robust (Huber) slope before adjustment.
    adjustment : float
        ``1 + mean(add_se^2) / (var(add) - mean(add_se^2))``.
    """
    import statsmodels.api as sm

    add, add_se, var = (np.asarray(a, dtype=float) for a in (add, add_se, var))
    ok = np.isfinite(add) & np.isfinite(var)
    if ok.sum() < 3:
        raise ValueError(f"need at least 3 SNPs with estimates to relate variance to additive effects,"
                         f" got {int(ok.sum())}")
    fit = sm.RLM(var[ok], add[ok][:, None], M=sm.robust.norms.HuberT()).fit()
    slope = float(fit.params[0])
    mean_noise = float(np.nanmean(add_se[np.isfinite(add_se)] ** 2))
    spread = float(np.var(add[ok], ddof=1))
    if not spread > mean_noise:
        raise ValueError(
            f"the variance of the additive effects ({spread:.3g}) does not exceed their mean squared"
            f" standard error ({mean_noise:.3g}): no mean-variance relation can be estimated"
        )
    adjustment = 1.0 + mean_noise / (spread - mean_noise)
    return slope * adjustment, slope, adjustment


def estimate_dispersion(add, add_se, var, var_se) -> dict:
    """Dispersion effects, their standard errors, t-statistics and -log10 p-values.

    Parameters
    ----------
    add, add_se, var, var_se : array_like, shape (m,)
        Columns of a ``.models.gz`` results table.

    Returns
    -------
    dict
        ``dispersion``, ``dispersion_se``, ``dispersion_t``, ``dispersion_pval`` (arrays) and
        ``r``, ``slope``, ``adjustment`` (floats).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> add = rng.normal(0, 0.1, 500)
    >>> var = 0.5 * add + rng.normal(0, 0.01, 500)
    >>> out = estimate_dispersion(add, np.full(500, 0.01), var, np.full(500, 0.01))
    >>> round(out["r"], 1)
    0.5
    """
    add, add_se, var, var_se = (np.asarray(a, dtype=float) for a in (add, add_se, var, var_se))
    r, slope, adjustment = mean_variance_slope(add, add_se, var)
    dispersion = var - r * add
    dispersion_se = np.sqrt(var_se**2 + r**2 * add_se**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = dispersion / dispersion_se
    return {
        "dispersion": dispersion,
        "dispersion_se": dispersion_se,
        "dispersion_t": t,
        "dispersion_pval": neglog10_pval(t**2, 1),
        "r": r,
        "slope": slope,
        "adjustment": adjustment,
    }


def ks_test(t_statistics) -> tuple[float, float]:
    """Kolmogorov-Smirnov test of squared t-statistics against chi-square(1), NaNs dropped.

    Returns
    -------
    statistic, pvalue : float
    """
    t = np.asarray(t_statistics, dtype=float)
    t = t[np.isfinite(t)]
    res = stats.kstest(t**2, "chi2", args=(1,))
    return float(res.statistic), float(res.pvalue)


def summarize(add_t, var_t, dispersion_t) -> dict:
    """Calibration of a scan: squared t-statistics against chi-square(1).

    Parameters
    ----------
    add_t, var_t, dispersion_t : array_like, shape (m,)
        t-statistics; NaNs are dropped.

    Returns
    -------
    dict
        ``median_add_t2``, ``median_var_t2`` (medians of the squared statistics),
        ``lambda_add``, ``lambda_var``, ``lambda_dispersion`` (genomic control inflation: a median
        over the median of chi-square(1), 0.4549) and ``ks_statistic``, ``ks_pvalue`` (the
        Kolmogorov-Smirnov test of all squared dispersion t-statistics against chi-square(1)).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.random.default_rng(0).standard_normal(10_000)
    >>> s = summarize(t, 2 * t, t)
    >>> round(s["lambda_var"] / s["lambda_add"], 6)
    4.0
    """
    from hlmm.plots import lambda_gc

    add_t, var_t, dispersion_t = (np.asarray(a, dtype=float) for a in (add_t, var_t, dispersion_t))
    ks_statistic, ks_pvalue = ks_test(dispersion_t)
    return {
        "median_add_t2": float(np.nanmedian(add_t**2)),
        "median_var_t2": float(np.nanmedian(var_t**2)),
        "lambda_add": lambda_gc(add_t),
        "lambda_var": lambda_gc(var_t),
        "lambda_dispersion": lambda_gc(dispersion_t),
        "ks_statistic": ks_statistic,
        "ks_pvalue": ks_pvalue,
    }
