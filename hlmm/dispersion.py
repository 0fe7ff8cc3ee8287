"""Dispersion effects: variance effects not explained by a general mean-variance relation.

A SNP with additive effect ``a`` and log-linear variance effect ``b`` has dispersion effect
``delta = b - r a``, where ``r`` is the slope of the relation between mean and variance that holds
across SNPs (for a trait ``exp(c (z + mean effects))`` every mean effect brings the variance effect
``r a`` and no SNP has a dispersion effect). Two methods estimate ``r``.

The default: a moment estimator that accounts for the sampling errors (``method="moment"``)
-------------------------------------------------------------------------------------------------
Each SNP gives ``add = a + e_a`` and ``var = b + e_b``, with ``sd(e_a) = s_a`` (``add_se``),
``sd(e_b) = s_b`` (``var_se_robust``) and correlation ``rho`` (``add_var_cor``): on a skewed trait
the two errors are correlated (the third moment of the residuals, :mod:`hlmm.robust`), so that the
SNPs without effects, which are nearly all SNPs of a scan, lie along a line of slope
``rho s_b / s_a`` through the origin, whatever ``r`` is. A regression of ``var`` on ``add``
estimates a mix of that slope and ``r``, and the noise correction of 1.2.0a1 then inflates it:
on ``exp(0.3 (z + 20 mean SNPs))`` (true ``r`` about 0.65) the robust slope was 0.97 (the skewness
of the residuals), multiplied by 6.8 for the noise, and 18 of the 20 mean-only SNPs had dispersion
p < 1e-4.

With ``t = add / s_a`` and a weight ``w(add) = phi(t)``, ``phi(t) = t^4 / (t^4 + tau^4)`` (``tau =``
:data:`WEIGHT_T`), which is near 1 for SNPs whose additive effect stands out of the noise and near
0 for the others, Stein's identity for a normal error, ``E[e_a h(add)] = s_a^2 E[h'(add)]``, gives
per SNP::

    D_j = w add^2 - s_a^2 (w + w' add)             E D_j = a E[w add]
    N_j = w add var - c (w + w' add),  c = rho s_a s_b,   E N_j = a b E[w add] (bivariate normal errors)

(``w + w' add = phi(t) + t phi'(t)``), so ``r^ = sum_j N_j / sum_j D_j`` is consistent for ``r``
when ``b_j = r a_j`` for the SNPs with additive effects, however the errors are correlated, and
the data-dependent weight lets the few SNPs with additive effects inform it without the noise of
the many without (with ``w = 1`` it is the classical errors-in-variables estimator). Its standard
error is the sandwich ``sqrt(sum_k (sum_{j in k} (N_j - r^ D_j))^2) / sum_j D_j`` over clusters
``k``: windows of :data:`CLUSTER_BP` base pairs of a chromosome (SNPs in LD share their errors) if
there are at least :data:`MIN_CLUSTERS` of them, else single SNPs. Then::

    dispersion    = var - r^ add
    dispersion_se = sqrt(s_b^2 + r^2 s_a^2 - 2 r^ c + add^2 se(r^)^2),

the last term carrying the uncertainty of ``r^`` to SNPs with large additive effects, which is
what keeps mean-only SNPs from being flagged when ``r`` is known only roughly.

If ``sum_j D_j`` does not exceed :data:`MIN_Z` times its standard deviation when no SNP has an
additive effect (``sqrt(sum_j s_a^4 E[(phi(t)(t^2 - 1) - t phi'(t))^2])`` for ``t ~ N(0, 1)``, SNPs
taken as independent), no SNP has an additive effect that stands out of the noise, ``r`` cannot be estimated and is
irrelevant: ``r = 0`` and the dispersion effects are the variance effects, with the log saying
so. This is the case of a trait without mean effects (1.2.0a1's procedure refuses to run there).

Assumptions: the errors of ``add`` and ``var`` are close to bivariate normal (true for all but
very rare variants at biobank sizes); a SNP with both an additive and a dispersion effect pulls
``r^`` towards its own ratio (there is no robust down-weighting: with many SNPs of additive
effects its share is small); and, as for any plug-in estimate, a SNP that dominates ``r^`` is
tested conservatively (its own errors are in ``r^``).

1.2.0a1's procedure (``method="1.2.0a1"``)
------------------------------------------
The method of the hlmm tutorial's R script (``estimate_dispersion_effects.R``), kept so that its
numbers stay reproducible:

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

It uses the model-based ``var_se`` and ignores the correlation of the errors.

Both methods leave SNPs with NaN estimates out and give them NaN dispersion effects.

Rows of score tests (``test`` = ``score`` in a results table) hold one-step estimates of ``add``
and ``var`` (one Newton step from the null fit) with standard errors from the efficient
information. Near the null, where nearly all SNPs of a scan are, these are asymptotically
equivalent to the maximum-likelihood estimates, so they are used like the others: in the slope
fit and for dispersion effects. For SNPs with large effects a one-step estimate can differ from the
maximum-likelihood one; refit such SNPs with Wald tests before reading their dispersion effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from hlmm.pvalues import lambda_gc, neglog10_pval

__all__ = ["estimate_dispersion", "mean_variance_slope", "moment_slope", "MomentSlope", "ks_test", "summarize",
           "METHODS"]

#: Methods of :func:`estimate_dispersion`.
METHODS = ("moment", "1.2.0a1")
#: ``tau`` of the weight ``t^4 / (t^4 + tau^4)`` of a SNP with additive t-statistic ``t``.
WEIGHT_T = 5.0
#: The slope is estimated only if the weighted sum of squared additive effects exceeds this many
#: of its standard errors; otherwise r = 0.
MIN_Z = 3.0
#: SNPs of a chromosome in one window of this many base pairs form a cluster of the standard
#: error of the slope (SNPs in LD share their errors) ...
CLUSTER_BP = 2_000_000
#: ... if there are at least this many clusters; otherwise each SNP is its own.
MIN_CLUSTERS = 30


@dataclass(frozen=True)
class MomentSlope:
    """The mean-variance slope of the moment method.

    Attributes
    ----------
    r : float
        The slope (0 if it could not be estimated).
    se : float
        Its standard error (0 if not estimated).
    z : float
        The weighted sum of squared additive effects over its standard error: the evidence that
        some SNPs have additive effects (the slope is estimated if ``z >= MIN_Z``).
    estimated : bool
    informative : int
        SNPs whose additive t-statistic is at least ``WEIGHT_T`` in size (weight at least 1/2): those
        whose additive effects inform ``r`` most.
    clusters : int
        Clusters of the standard error (0: each SNP its own).
    """

    r: float
    se: float
    z: float
    estimated: bool
    informative: int
    clusters: int = 0


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


def clusters_of(chrom, pos, width: int = CLUSTER_BP) -> np.ndarray:
    """Cluster labels of SNPs: one per chromosome and window of ``width`` base pairs.

    Examples
    --------
    >>> clusters_of(["1", "1", "1", "2"], [100, 1_500_000, 2_500_000, 100]).tolist()
    [0, 0, 1, 2]
    """
    chrom = np.asarray(chrom, dtype=str)
    window = np.asarray(pos, dtype=np.int64) // width
    keys = np.char.add(np.char.add(chrom, ":"), window.astype(str))
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


@lru_cache(maxsize=1)
def _null_weight_variance() -> float:
    """``E[(phi(t) (t^2 - 1) - t phi'(t))^2]`` for ``t ~ N(0, 1)``: the variance of ``D_j / s_a^2`` of a
    SNP without additive effect."""
    from scipy import integrate

    tau4 = WEIGHT_T**4

    def f(t):
        t4 = t**4
        phi = t4 / (t4 + tau4)
        return (phi * (t * t - 1.0) - 4.0 * t4 * tau4 / (t4 + tau4) ** 2) ** 2 * stats.norm.pdf(t)

    return 2.0 * integrate.quad(f, 0.0, np.inf, limit=200)[0]


def moment_slope(add, add_se, var, var_se, add_var_cor=None, clusters=None) -> MomentSlope:
    """The mean-variance slope by the moment method (module docstring).

    Parameters
    ----------
    add, add_se, var, var_se : array_like, shape (m,)
        Estimates and standard errors (``var_se``: valid for the trait, e.g. ``var_se_robust``).
    add_var_cor : array_like, shape (m,), optional
        Correlation of the errors of ``add`` and ``var`` (0 if not given).
    clusters : array_like of int, shape (m,), optional
        Cluster of each SNP for the standard error (:func:`clusters_of`); each SNP its own if
        not given.

    Returns
    -------
    MomentSlope

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> m = 5000
    >>> a = np.where(np.arange(m) < 50, 0.1, 0.0)        # 50 SNPs with additive effects
    >>> add = a + 0.01 * rng.standard_normal(m)
    >>> e = rng.standard_normal(m)                       # var's error: correlated 0.6 with add's
    >>> var = 0.7 * a + 0.02 * (0.6 * (add - a) / 0.01 + 0.8 * e)
    >>> fit = moment_slope(add, np.full(m, 0.01), var, np.full(m, 0.02), np.full(m, 0.6))
    >>> bool(abs(fit.r - 0.7) < 3 * fit.se), fit.estimated
    (True, True)
    """
    add, add_se, var, var_se = (np.asarray(x, dtype=float).reshape(-1) for x in (add, add_se, var, var_se))
    cor = np.zeros_like(add) if add_var_cor is None else np.broadcast_to(np.asarray(add_var_cor, float), add.shape)
    ok = np.isfinite(add) & np.isfinite(add_se) & np.isfinite(var) & np.isfinite(var_se) & np.isfinite(cor) \
        & (add_se > 0)
    if ok.sum() < 3:
        raise ValueError(f"need at least 3 SNPs with estimates to relate variance to additive effects,"
                         f" got {int(ok.sum())}")
    a, sa, b, c = add[ok], add_se[ok], var[ok], (cor * add_se * var_se)[ok]
    t = a / sa
    t4, tau4 = t**4, WEIGHT_T**4
    phi = t4 / (t4 + tau4)
    tdphi = 4.0 * t4 * tau4 / (t4 + tau4) ** 2  # t phi'(t)
    D = sa**2 * (phi * (t * t - 1.0) - tdphi)
    N = phi * a * b - c * (phi + tdphi)
    total = float(D.sum())
    # evidence of additive effects: sum D over its standard deviation when no SNP has one
    null_sd = float(np.sqrt(np.sum(sa**4) * _null_weight_variance()))
    z = total / null_sd if null_sd > 0 else 0.0
    if not z >= MIN_Z:
        return MomentSlope(0.0, 0.0, z, False, int((phi >= 0.5).sum()), 0)
    r = float(N.sum()) / total
    resid = N - r * D
    n_clusters = 0
    if clusters is not None:
        cl = np.unique(np.asarray(clusters)[ok], return_inverse=True)[1].reshape(-1)
        n_clusters = int(cl.max()) + 1
        if n_clusters >= MIN_CLUSTERS:
            resid = np.bincount(cl, weights=resid)
        else:
            n_clusters = 0
    se = float(np.sqrt(np.sum(resid**2))) / total
    return MomentSlope(r, se, z, True, int((phi >= 0.5).sum()), n_clusters)


def estimate_dispersion(add, add_se, var, var_se, *, method: str = "moment", add_var_cor=None,
                        clusters=None) -> dict:
    """Dispersion effects, their standard errors, t-statistics and -log10 p-values.

    Parameters
    ----------
    add, add_se, var, var_se : array_like, shape (m,)
        Columns of a ``.models.gz`` results table: for ``method="moment"``, ``var_se`` should be
        valid for the trait (``var_se_robust``); 1.2.0a1's procedure used ``var_se``.
    method : {"moment", "1.2.0a1"}
        The estimator of the mean-variance slope (module docstring).
    add_var_cor : array_like, shape (m,), optional
        ``method="moment"``: the correlation of the errors of ``add`` and ``var``
        (``add_var_cor``); 0 if not given.
    clusters : array_like of int, shape (m,), optional
        ``method="moment"``: clusters of SNPs for the slope's standard error (:func:`clusters_of`).

    Returns
    -------
    dict
        ``dispersion``, ``dispersion_se``, ``dispersion_t``, ``dispersion_pval`` (arrays), ``r``
        and ``method``; for ``moment`` also ``slope`` (a :class:`MomentSlope`), for ``1.2.0a1``
        ``slope`` (the robust slope before adjustment) and ``adjustment``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> add = rng.normal(0, 0.1, 500)
    >>> var = 0.5 * add + rng.normal(0, 0.01, 500)
    >>> out = estimate_dispersion(add, np.full(500, 0.01), var, np.full(500, 0.01), method="1.2.0a1")
    >>> round(out["r"], 1)
    0.5
    >>> round(estimate_dispersion(add, np.full(500, 0.01), var, np.full(500, 0.01))["r"], 1)
    0.5
    """
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'; choose from {METHODS}")
    add, add_se, var, var_se = (np.asarray(a, dtype=float) for a in (add, add_se, var, var_se))
    out: dict = {"method": method}
    if method == "1.2.0a1":
        r, slope, adjustment = mean_variance_slope(add, add_se, var)
        dispersion_se = np.sqrt(var_se**2 + r**2 * add_se**2)
        out.update(slope=slope, adjustment=adjustment)
    else:
        fit = moment_slope(add, add_se, var, var_se, add_var_cor, clusters)
        r = fit.r
        cov = 0.0 if add_var_cor is None else np.asarray(add_var_cor, dtype=float) * add_se * var_se
        with np.errstate(invalid="ignore"):
            dispersion_se = np.sqrt(var_se**2 + r**2 * add_se**2 - 2.0 * r * cov + add**2 * fit.se**2)
        out["slope"] = fit
    dispersion = var - r * add
    with np.errstate(invalid="ignore", divide="ignore"):
        t = dispersion / dispersion_se
    out.update(dispersion=dispersion, dispersion_se=dispersion_se, dispersion_t=t,
               dispersion_pval=neglog10_pval(t**2, 1), r=r)
    return out


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
