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
``fast``
    The same maximum likelihood by other algebra. For an HLM with ``X = V = 1`` (the default
    mode) a compiled pass over the packed .bed bytes gives per-class counts and sums of y and
    y^2, from which every SNP of a block is fitted at once (:mod:`hlmm._fast_hlm`). For an HLMM
    in the default mode each SNP is fitted in l dimensions from genotype-class Gram matrices
    (:mod:`hlmm._fast_hlmm`). An HLM with covariates is fitted per SNP by Newton steps whose
    likelihood, gradient and Hessian come from two compiled passes over the individuals. An HLMM
    with covariates is fitted per SNP by the reference algorithm on the decoded block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlmm import _bedkernels, _fast_hlm, _fast_hlmm, hetlm, hetlmm
from hlmm._linalg import blas_threads_for

__all__ = ["ScanSettings", "snp_summary", "scan_block", "scan_packed", "STAT_KEYS", "ENGINES"]

ENGINES = ("fast", "reference")

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
        ``"fast"`` or ``"reference"``.
    beta_start : ndarray, optional
        Starting variance effects of the covariates for the fast engine with covariates (the
        null fit); by default the log of the phenotypic variance for the intercept.
    """

    min_maf: float = 0.05
    max_missing: float = 5.0
    h2_init: float = 0.05
    engine: str = "fast"
    beta_start: np.ndarray | None = None


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
    called = ~np.isnan(genotypes)
    n_called = called.sum(axis=0)
    a1_copies = np.where(called, genotypes, 0.0).sum(axis=0)
    return _filters(n_called, a1_copies, genotypes.shape[0], min_maf, max_missing)


def _filters(n_called, a1_copies, n: int, min_maf: float, max_missing: float):
    with np.errstate(invalid="ignore", divide="ignore"):
        p = a1_copies / (2.0 * n_called)
    maf = np.minimum(p, 1.0 - p)
    missing_pct = 100.0 * (1.0 - n_called / n)
    passes = (n_called > 0) & (missing_pct < max_missing) & (maf > min_maf)
    return n_called.astype(np.int64), maf, passes


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
    stats = empty_stats(genotypes.shape[1])
    stats["n"], stats["frequency"], passes = snp_summary(genotypes, settings.min_maf, settings.max_missing)
    return _fit_each(stats, passes, lambda j: _fit_one(y, X, V, genotypes[:, j], settings, G))


def _fit_each(stats: dict, passes: np.ndarray, fit) -> tuple[dict, list]:
    """Fill ``stats`` with ``fit(j)`` -> (estimates, None) or (None, reason) for passing SNPs."""
    problems = []
    for j in np.flatnonzero(passes):
        est, why = fit(j)
        if why:
            problems.append((int(j), why))
            continue
        for key, value in est.items():
            stats[key][j] = value
    return stats, problems


def _summary_from_codes(codes: np.ndarray, n: int, settings: ScanSettings) -> tuple[dict, np.ndarray]:
    """Empty stats with n and frequency filled, and the filter, from codes (b, n) of a block."""
    called = codes >= 0
    n_called = called.sum(1)
    a1 = np.where(called, codes, 0).sum(1).astype(float)
    n_called, maf, passes = _filters(n_called, a1, n, settings.min_maf, settings.max_missing)
    stats = empty_stats(codes.shape[0])
    stats["n"], stats["frequency"] = n_called, maf
    return stats, passes


def scan_packed(
    y: np.ndarray,
    X: np.ndarray,
    V: np.ndarray,
    packed: np.ndarray,
    rows: np.ndarray,
    n_file: int,
    settings: ScanSettings,
    G: np.ndarray | None = None,
) -> tuple[dict, list]:
    """Like :func:`scan_block`, from packed .bed bytes, with the engine of ``settings``.

    Parameters
    ----------
    packed : ndarray of uint8, shape (b, ceil(n_file / 4))
        Packed genotypes of the block's SNPs.
    rows : ndarray of int, shape (n,)
        Positions in the .bed file of the individuals of ``y`` (in the order of ``y``).
    n_file : int
        Number of individuals in the .bed file.
    """
    if settings.engine not in ENGINES:
        raise ValueError(f"unknown engine '{settings.engine}'; choose from {ENGINES}")
    default_mode = X.shape[1] == 1 and V.shape[1] == 1 and np.all(X == 1) and np.all(V == 1)
    if settings.engine == "fast" and default_mode:
        if G is None:
            return _scan_hlm_classes(y, packed, rows, n_file, settings)
        return _scan_hlmm_classes(y, packed, rows, n_file, settings, G)
    codes = _bedkernels.decode(packed, np.ascontiguousarray(rows, dtype=np.int64), n_file)
    if settings.engine == "fast" and G is None:
        with blas_threads_for(0):
            return _scan_hlm_covariates(y, X, V, codes, settings)
    genotypes = np.where(codes < 0, np.nan, codes).T
    return scan_block(y, X, V, genotypes, settings, G.G if isinstance(G, _fast_hlmm.Totals) else G)


def _scan_hlm_covariates(y, X, V, codes, settings: ScanSettings):
    stats, passes = _summary_from_codes(codes, len(y), settings)
    beta_start = settings.beta_start
    if beta_start is None:
        beta_start = np.linalg.lstsq(V, np.full(len(y), np.log(np.var(y))), rcond=None)[0]
    y, X, V = (np.ascontiguousarray(a, dtype=float) for a in (y, X, V))
    return _fit_each(stats, passes,
                     lambda j: _fast_hlm.fit_covariate_snp(y, X, V, np.ascontiguousarray(codes[j]), beta_start))


def prepare_random_effects(y: np.ndarray, G: np.ndarray, center=None, scale=None) -> _fast_hlmm.Totals:
    """Sums over all individuals (G'G, G'y, G'1) that the fast HLMM engine reuses for every SNP.

    With the ``center`` and ``scale`` of the columns (``G = (genotypes - center) / scale``, see
    :func:`hlmm.covariates.random_effects_design`), Gram matrices of genotype classes are formed
    from the integer genotypes in single precision, exactly. Pass the result as ``G`` to
    :func:`scan_packed` to form them once per scan.
    """
    return _fast_hlmm.totals(y, G, center, scale)


def _scan_hlmm_classes(y, packed, rows, n_file, settings: ScanSettings, G):
    tot = G if isinstance(G, _fast_hlmm.Totals) else _fast_hlmm.totals(y, G)
    codes = _bedkernels.decode(packed, np.ascontiguousarray(rows, dtype=np.int64), n_file)
    stats, passes = _summary_from_codes(codes, len(y), settings)

    def fit(j):
        cs = _fast_hlmm.class_stats(tot, codes[j])
        start = _fast_hlm.fit_classes(cs.n[None], cs.S1[None], cs.S2[None])
        if not start["success"][0]:
            return None, "no starting value: the model without random effects did not converge"
        return _fast_hlmm.fit_snp(cs, start["beta"][0], settings.h2_init)

    return _fit_each(stats, passes, fit)


def _scan_hlm_classes(y, packed, rows, n_file, settings: ScanSettings):
    b = packed.shape[0]
    y_file = np.zeros(n_file)
    include = np.zeros(n_file, dtype=bool)
    y_file[rows] = y
    include[rows] = True
    cs = _bedkernels.class_sums(packed, y_file, include)
    counts, sums, sums2 = cs[:, :3, 0], cs[:, :3, 1], cs[:, :3, 2]
    n_called = counts.sum(1)
    n_called_int = np.rint(n_called).astype(np.int64)
    _, maf, passes = _filters(n_called_int, counts[:, 1] + 2 * counts[:, 2], len(y), settings.min_maf, settings.max_missing)
    stats = empty_stats(b)
    stats["n"], stats["frequency"] = n_called_int, maf
    problems = []
    idx = np.flatnonzero(passes)
    if idx.size:
        fit = _fast_hlm.fit_classes(counts[idx], sums[idx], sums2[idx])
        for key in ("likelihood", "add", "add_se", "var", "var_se"):
            stats[key][idx] = fit[key]
        problems = [(int(j), "optimisation did not converge") for j in idx[~fit["success"]]]
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
