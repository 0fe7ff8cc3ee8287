"""Per-SNP scans: fitting a model with each test SNP added to the mean and variance designs.

Numerics only: arrays in, arrays out. For each SNP, ``g`` counts copies of A1 and is centred
over the individuals with a call; individuals without a call are left out of that SNP's fit.
The SNP's model has mean design ``[X, g]`` and variance design ``[V, g]`` (in the default mode of
``hlmm_chr`` ``X = V = 1``), plus random effects ``G`` for a mixed model.

Engines
-------
``reference``
    One :meth:`hlmm.hetlm.model.optimize_model` or :meth:`hlmm.hetlmm.model.optimize_model` per
    SNP: the straightforward algorithm of hlmm 1.2.0a1, kept for cross-checking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlmm import hetlm, hetlmm

__all__ = ["ScanSettings", "snp_summary", "scan_block", "STAT_KEYS"]

STAT_KEYS = ("n", "frequency", "likelihood", "add", "add_se", "var", "var_se")


@dataclass
class ScanSettings:
    """Filters and options of a scan.

    Attributes
    ----------
    min_maf : float
        SNPs with minor allele frequency <= min_maf get NaN estimates.
    max_missing : float
        SNPs with at least this percentage of missing calls get NaN estimates.
    h2_init : float
        Starting value of h2 for each SNP's mixed model (the null estimate in hlmm_chr).
    engine : str
        ``"reference"``.
    """

    min_maf: float = 0.05
    max_missing: float = 5.0
    h2_init: float = 0.05
    engine: str = "reference"


def snp_summary(genotypes: np.ndarray, min_maf: float, max_missing: float):
    """Calls, minor allele frequency and filter status of each SNP.

    Parameters
    ----------
    genotypes : ndarray, shape (n, b)
        Copies of A1, NaN for missing calls.
    min_maf, max_missing : float

    Returns
    -------
    n_called : ndarray of int, shape (b,)
    maf : ndarray, shape (b,)
        NaN where there are no calls.
    passes : ndarray of bool, shape (b,)
    """
    n = genotypes.shape[0]
    called = ~np.isnan(genotypes)
    n_called = called.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(called, genotypes, 0.0).sum(axis=0) / (2.0 * n_called)
    maf = np.minimum(p, 1.0 - p)
    missing_pct = 100.0 * (1.0 - n_called / n)
    passes = (n_called > 0) & (missing_pct < max_missing) & (maf > min_maf)
    return n_called, maf, passes


def empty_stats(b: int) -> dict:
    """Stats arrays for ``b`` SNPs, all NaN (n = 0)."""
    out = {k: np.full(b, np.nan) for k in STAT_KEYS}
    out["n"] = np.zeros(b, dtype=np.int64)
    return out


def scan_block(
    y: np.ndarray,
    X: np.ndarray,
    V: np.ndarray,
    genotypes: np.ndarray,
    settings: ScanSettings,
    G: np.ndarray | None = None,
) -> tuple[dict, list]:
    """Fit the model of every SNP in a block.

    Parameters
    ----------
    y : ndarray, shape (n,)
    X : ndarray, shape (n, c)
        Mean covariates (at least an intercept).
    V : ndarray, shape (n, v)
        Variance covariates (at least an intercept).
    genotypes : ndarray, shape (n, b)
        Copies of A1 per SNP, NaN for missing calls.
    settings : ScanSettings
    G : ndarray, shape (n, l), optional
        Random-effect design; a mixed model is fitted if given.

    Returns
    -------
    stats : dict
        Arrays of length b: ``n``, ``frequency`` (minor allele frequency), ``likelihood``,
        ``add``, ``add_se``, ``var``, ``var_se``; NaN estimates for filtered or failed SNPs.
    problems : list of (int, str)
        SNPs (index within the block) whose fit failed, and why.
    """
    b = genotypes.shape[1]
    stats = empty_stats(b)
    n_called, maf, passes = snp_summary(genotypes, settings.min_maf, settings.max_missing)
    stats["n"] = n_called
    stats["frequency"] = maf
    problems = []
    if settings.engine != "reference":
        raise ValueError(f"unknown engine '{settings.engine}'")
    for j in np.flatnonzero(passes):
        fit, problem = _fit_one(y, X, V, genotypes[:, j], settings, G)
        if problem:
            problems.append((int(j), problem))
            continue
        for key, value in fit.items():
            stats[key][j] = value
    return stats, problems


def _fit_one(y, X, V, g, settings: ScanSettings, G):
    """The reference per-SNP fit. Returns (estimates, None) or (None, reason)."""
    called = ~np.isnan(g)
    gc = g[called] - g[called].mean()
    Xl = np.column_stack([X[called], gc])
    Vl = np.column_stack([V[called], gc])
    try:
        if G is None:
            fit = hetlm.model(y[called], Xl, Vl).optimize_model()
        else:
            fit = hetlmm.model(y[called], Xl, Vl, G[called]).optimize_model(settings.h2_init)
    except ValueError as e:
        return None, str(e)
    if not fit["success"]:
        return None, fit.get("message", "optimisation failed")
    est = {
        "likelihood": fit["likelihood"],
        "add": fit["alpha"][-1],
        "add_se": fit["alpha_se"][-1],
        "var": fit["beta"][-1],
        "var_se": fit["beta_se"][-1],
    }
    if not all(np.isfinite(v) for v in est.values()):
        return None, "non-finite estimate or standard error"
    return est, None
