"""Scanners: the per-SNP models of a scan, fitted to blocks of genotypes.

Numerics only: arrays and genotype blocks in, arrays out. For each SNP, ``g`` counts copies of
the counted allele (A1) or is its dosage, centred over the individuals with a call; individuals
without a call are left out of that SNP's fit. The SNP's model has mean design ``[X, g]`` and
variance design ``[V, g]``, plus random effects ``G`` for a mixed model. In the default mode of
``hlmm_chr`` the phenotype has been adjusted by the null model and ``X = V = 1``
(:class:`ScanModel` with ``X`` and ``V`` None).

:func:`make_scanner` is the one place that knows models and engines: it takes the prepared
models (one per phenotype) and the settings, and returns an object whose ``scan(block)`` gives
every phenotype's statistics for a block. Nothing else branches on engines.

Scanners
--------
:class:`HLMClassScanner`
    HLM, default mode: the likelihood depends on the data only through per-genotype-class
    counts and sums of y and y^2 (three classes for hard calls, the distinct dosages for
    dosages); one compiled pass gives them for every phenotype, and every SNP of the block is
    fitted at once (:mod:`hlmm._fast_hlm`).
:class:`HLMCovariateScanner`
    HLM with ``--fit_covariates``: Newton steps whose likelihood, gradient and Hessian come
    from compiled passes over the individuals.
:class:`HLMMClassScanner`
    HLMM, default mode, hard calls: genotype-class Gram matrices of the random effects and
    Newton's method in l dimensions (:mod:`hlmm._fast_hlmm`).
:class:`ReferenceScanner`
    One :meth:`hlmm.hetlm.model.optimize_model` or :meth:`hlmm.hetlmm.model.optimize_model`
    per SNP, the straightforward algorithm of hlmm 1.2.0a1 (``--engine reference``, and the
    HLMM with covariates or dosages).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hlmm import _fast_hlm, _fast_hlmm, _kernels, hetlm, hetlmm
from hlmm.io import GenotypeBlock

__all__ = [
    "ScanSettings",
    "ScanModel",
    "make_scanner",
    "ENGINES",
    "TESTS",
    "STATUS",
    "class_moments",
    "filters",
]

ENGINES = ("fast", "reference")
TESTS = ("wald", "score")

#: Per-SNP status codes in the ``status`` array of a scanner's result.
STATUS = {"ok": 0, "maf": 1, "missing": 2, "no_calls": 3, "multiallelic": 4, "failed": 5}

#: Statistics every scanner returns per SNP (arrays of length b).
STAT_KEYS = ("n", "frequency", "likelihood", "add", "add_se", "var", "var_se")


@dataclass(frozen=True)
class ScanSettings:
    """Options of a scan that affect its results.

    Attributes
    ----------
    min_maf : float
        SNPs with minor allele frequency <= min_maf get NaN estimates (a fraction, 0 <= . < 0.5).
    max_missing : float
        SNPs with at least this percentage of missing calls get NaN estimates (0 < . <= 100).
    engine : {"fast", "reference"}
    test : {"wald", "score"}
    refit : float, optional
        With the score test: refit exactly (Wald) every SNP with any of its -log10 p-values
        (add, var, av) at least this.
    robust : bool
        Sandwich standard errors (Wald) or empirical score variances (score test).
    hard_calls : bool
        Round dosages to the nearest genotype.
    threads : int
        Threads used inside a block where results do not depend on them.
    """

    min_maf: float = 0.05
    max_missing: float = 5.0
    engine: str = "fast"
    test: str = "wald"
    refit: float | None = None
    robust: bool = False
    hard_calls: bool = False
    threads: int = 1

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine '{self.engine}'; choose from {ENGINES}")
        if self.test not in TESTS:
            raise ValueError(f"unknown test '{self.test}'; choose from {TESTS}")
        if not 0 <= self.min_maf < 0.5:
            raise ValueError(f"min_maf must be a fraction in [0, 0.5), got {self.min_maf}")
        if not 0 < self.max_missing <= 100:
            raise ValueError(f"max_missing must be a percentage in (0, 100], got {self.max_missing}")


@dataclass
class ScanModel:
    """One phenotype's model for a scan, prepared by :mod:`hlmm.pipeline`.

    Attributes
    ----------
    name : str
        Phenotype name.
    subset : ndarray of int64
        Positions of this phenotype's individuals within the scan's sample rows.
    y : ndarray, shape (n,)
        Response of the SNP models (in the default mode, the phenotype adjusted by the null
        model).
    X, V : ndarray, shape (n, c) and (n, v), or None
        Mean and variance designs without the SNP; None means an intercept alone (the default
        mode).
    G : ndarray, shape (n, l), optional
        Random-effect design.
    G_center, G_scale : ndarray, shape (l,), optional
        ``G = (genotypes - center) / scale`` for random effects from a genotype file (lets the
        HLMM engine use exact integer Gram matrices).
    h2_start : float
        Starting value of h2 for each SNP's mixed model.
    beta_start : ndarray, optional
        Starting variance effects of the covariates (the null fit), with ``X``/``V``.
    null : dict, optional
        The null fit of ``(y, X, V[, G])`` (``alpha``, ``beta`` and ``h2``), for the score test.
    """

    name: str
    subset: np.ndarray
    y: np.ndarray
    X: np.ndarray | None = None
    V: np.ndarray | None = None
    G: np.ndarray | None = None
    G_center: np.ndarray | None = None
    G_scale: np.ndarray | None = None
    h2_start: float = 0.05
    beta_start: np.ndarray | None = None
    null: dict | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def default_mode(self) -> bool:
        return self.X is None and self.V is None

    def designs(self) -> tuple[np.ndarray, np.ndarray]:
        """``X`` and ``V`` as arrays (an intercept column for None)."""
        one = np.ones((self.n, 1))
        return (one if self.X is None else self.X), (one if self.V is None else self.V)


# ----------------------------------------------------------------------------------------------
# Per-SNP summaries: calls, allele frequencies and filters
# ----------------------------------------------------------------------------------------------
def filters(n_called: np.ndarray, a1_copies: np.ndarray, n: int, min_maf: float, max_missing: float):
    """Minor allele frequency, A1 frequency and filter status of SNPs.

    Parameters
    ----------
    n_called, a1_copies : ndarray, shape (b,)
        Individuals with a call, and copies of A1 (sum of dosages) among them.
    n : int
        Individuals analysed.

    Returns
    -------
    maf, a1_freq : ndarray, shape (b,)
        NaN where there are no calls.
    status : ndarray of int8, shape (b,)
        :data:`STATUS` codes (``ok``, ``no_calls``, ``missing``, ``maf``).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        p = a1_copies / (2.0 * n_called)
    maf = np.minimum(p, 1.0 - p)
    missing_pct = 100.0 * (1.0 - n_called / n)
    status = np.full(len(n_called), STATUS["ok"], dtype=np.int8)
    status[~(maf > min_maf)] = STATUS["maf"]
    status[~(missing_pct < max_missing)] = STATUS["missing"]
    status[n_called == 0] = STATUS["no_calls"]
    return maf, p, status


@dataclass
class ClassMoments:
    """Per-SNP genotype-class statistics of one phenotype.

    Attributes
    ----------
    counts : ndarray, shape (b, K)
        Individuals per class.
    sums : ndarray, shape (b, K, powers)
        Sums of y, y^2, ... per class.
    values : ndarray, shape (b, K), or None
        Genotype value of each class; None for hard calls (classes 0, 1, 2).
    n_missing : ndarray, shape (b,)
    """

    counts: np.ndarray
    sums: np.ndarray
    values: np.ndarray | None
    n_missing: np.ndarray

    @property
    def n_called(self) -> np.ndarray:
        return np.rint(self.counts.sum(1)).astype(np.int64)

    @property
    def a1_copies(self) -> np.ndarray:
        if self.values is None:
            return self.counts[:, 1] + 2 * self.counts[:, 2]
        return (self.counts * self.values).sum(1)


def class_moments(block: GenotypeBlock, models: list, powers: int) -> list:
    """Genotype-class counts and sums of powers of y of every SNP of a block, for each model.

    One compiled pass over the block serves every phenotype.

    Parameters
    ----------
    block : GenotypeBlock
    models : list of (subset, y)
        Positions within ``block.rows`` and the response of each phenotype.
    powers : int
        Highest power of y summed (0 for counts alone).

    Returns
    -------
    list of ClassMoments
    """
    q = powers + 1
    if block.packed is not None:
        Yc = np.zeros((block.n_file, q * len(models)))
        where = lambda subset: block.rows[subset]  # noqa: E731 - file positions of the subset
    else:
        Yc = np.zeros((len(block.rows), q * len(models)))
        where = lambda subset: subset  # noqa: E731
    for p, (subset, y) in enumerate(models):
        r = where(subset)
        Yc[r, p * q] = 1.0
        for k in range(1, q):
            Yc[r, p * q + k] = y**k
    values = None
    if block.packed is not None:
        mom = _kernels.class_moments_packed(block.packed, Yc)
    elif block.dosages is None:
        mom = _kernels.class_moments_codes(block.codes, Yc)
    else:
        den = block.denominator
        if den and _kernels.off_grid(block.dosages, den):
            den = 0
        values, sums, _, missing = _kernels.class_moments_dosages(block.dosages, Yc, den)
        out = []
        for p in range(len(models)):
            s = sums[:, :, p * q : (p + 1) * q]
            out.append(ClassMoments(s[:, :, 0], s[:, :, 1:], values, missing[:, p * q]))
        return out
    out = []
    for p in range(len(models)):
        m = mom[:, :, p * q : (p + 1) * q]
        out.append(ClassMoments(m[:, :3, 0], m[:, :3, 1:], None, m[:, 3, 0]))
    return out


def _empty(b: int) -> dict:
    out = {k: np.full(b, np.nan) for k in STAT_KEYS}
    out["n"] = np.zeros(b, dtype=np.int64)
    out["status"] = np.full(b, STATUS["no_calls"], dtype=np.int8)
    out["problems"] = []
    return out


def _summarised(block: GenotypeBlock, mom: ClassMoments, n: int, settings: ScanSettings) -> dict:
    """Empty statistics with n, frequency and status filled in."""
    out = _empty(block.n_variants)
    out["n"] = mom.n_called
    out["frequency"], out["A1_frequency"], out["status"] = filters(mom.n_called, mom.a1_copies, n, settings.min_maf,
                                                                     settings.max_missing)
    out["status"][block.multiallelic] = STATUS["multiallelic"]
    return out


def _fill(out: dict, j: int, est: dict | None, why: str | None) -> None:
    if why:
        out["status"][j] = STATUS["failed"]
        out["problems"].append((int(j), why))
        return
    for key, value in est.items():
        out[key][j] = value


# ----------------------------------------------------------------------------------------------
# Scanners
# ----------------------------------------------------------------------------------------------
class Scanner:
    """Base class: ``scan(block)`` returns one dict of per-SNP arrays per model.

    Each dict holds the :data:`STAT_KEYS` arrays, ``A1_frequency``, ``status`` (:data:`STATUS`
    codes) and ``problems``, a list of ``(index within the block, reason)`` of failed fits.
    """

    #: SNPs per block unless the user chooses: blocks are the unit of progress and of work
    #: sent to worker processes, so slow models get small blocks.
    block_size = 256

    def __init__(self, models: list, settings: ScanSettings) -> None:
        self.models, self.settings = models, settings

    def scan(self, block: GenotypeBlock) -> list:
        raise NotImplementedError

    def summaries(self, block: GenotypeBlock) -> list:
        """Calls, frequencies and filters of every model (one compiled pass)."""
        moms = class_moments(block, [(m.subset, m.y) for m in self.models], 0)
        return [_summarised(block, mom, m.n, self.settings) for mom, m in zip(moms, self.models)]


class HLMClassScanner(Scanner):
    """HLM in the default mode, from genotype-class statistics, all phenotypes in one pass."""

    block_size = 256

    def scan(self, block: GenotypeBlock) -> list:
        moms = class_moments(block, [(m.subset, m.y) for m in self.models], 2)
        outs = [_summarised(block, mom, m.n, self.settings) for mom, m in zip(moms, self.models)]
        idx = [np.flatnonzero(o["status"] == STATUS["ok"]) for o in outs]
        if not any(i.size for i in idx):
            return outs
        cnt = np.concatenate([mom.counts[i] for mom, i in zip(moms, idx)])
        s1 = np.concatenate([mom.sums[i, :, 0] for mom, i in zip(moms, idx)])
        s2 = np.concatenate([mom.sums[i, :, 1] for mom, i in zip(moms, idx)])
        values = None if moms[0].values is None else np.concatenate([mom.values[i] for mom, i in zip(moms, idx)])
        fit = _fast_hlm.fit_classes(cnt, s1, s2, values)
        k = 0
        for o, i in zip(outs, idx):
            sl = slice(k, k + i.size)
            for key in ("likelihood", "add", "add_se", "var", "var_se"):
                o[key][i] = fit[key][sl]
            bad = i[~fit["success"][sl]]
            o["status"][bad] = STATUS["failed"]
            o["problems"] += [(int(j), "optimisation did not converge") for j in bad]
            k += i.size
        return outs


class _PerSNP(Scanner):
    """Scanners that fit each SNP of each model separately."""

    def scan(self, block: GenotypeBlock) -> list:
        outs = self.summaries(block)
        for m, o in zip(self.models, outs):
            todo = np.flatnonzero(o["status"] == STATUS["ok"])
            fits = self.fit_model(m, block, todo)
            for j, (est, why) in zip(todo, fits):
                _fill(o, j, est, why)
        return outs

    def fit_model(self, m: ScanModel, block: GenotypeBlock, todo: np.ndarray) -> list:
        raise NotImplementedError


def _row(block: GenotypeBlock, j: int, subset: np.ndarray) -> np.ndarray:
    """Genotypes of SNP j for the individuals ``subset``: float64, NaN for a missing call."""
    if block.dosages is not None:
        return np.ascontiguousarray(block.dosages[j, subset], dtype=np.float64)
    c = block.get_codes()[j, subset]
    return np.where(c < 0, np.nan, c.astype(np.float64))


class HLMCovariateScanner(_PerSNP):
    """HLM with covariates fitted for each SNP, by compiled passes over the individuals."""

    block_size = 64

    def fit_model(self, m: ScanModel, block: GenotypeBlock, todo: np.ndarray) -> list:
        X, V = m.designs()
        beta_start = m.beta_start
        if beta_start is None:
            beta_start = np.linalg.lstsq(V, np.full(m.n, np.log(np.var(m.y))), rcond=None)[0]
        y, X, V = (np.ascontiguousarray(a, dtype=float) for a in (m.y, X, V))
        return [_fast_hlm.fit_covariate_snp(y, X, V, _row(block, j, m.subset), beta_start) for j in todo]


class HLMMClassScanner(_PerSNP):
    """HLMM in the default mode with hard calls, from genotype-class Gram matrices."""

    block_size = 8

    def __init__(self, models: list, settings: ScanSettings) -> None:
        super().__init__(models, settings)
        self.totals = [_fast_hlmm.totals(m.y, m.G, m.G_center, m.G_scale) for m in models]
        for m in models:  # the totals keep what the engine needs of G
            m.G = None

    def fit_model(self, m: ScanModel, block: GenotypeBlock, todo: np.ndarray) -> list:
        tot = self.totals[self.models.index(m)]
        codes = block.get_codes()
        codes = codes if len(m.subset) == codes.shape[1] and np.array_equal(m.subset, np.arange(len(m.subset))) \
            else np.ascontiguousarray(codes[:, m.subset])

        def fit(j):
            cs = _fast_hlmm.class_stats(tot, codes[j])
            start = _fast_hlm.fit_classes(cs.n[None], cs.S1[None], cs.S2[None])
            if not start["success"][0]:
                return None, "no starting value: the model without random effects did not converge"
            return _fast_hlmm.fit_snp(cs, start["beta"][0], m.h2_start)

        if self.settings.threads > 1 and len(todo) > 1:
            with ThreadPoolExecutor(self.settings.threads) as pool:
                return list(pool.map(fit, todo))
        return [fit(j) for j in todo]


class ReferenceScanner(_PerSNP):
    """One ``optimize_model`` per SNP (hlmm 1.2.0a1's algorithm)."""

    block_size = 16

    def __init__(self, models: list, settings: ScanSettings) -> None:
        super().__init__(models, settings)
        if any(m.G is not None for m in models):
            self.block_size = 1

    def fit_model(self, m: ScanModel, block: GenotypeBlock, todo: np.ndarray) -> list:
        X, V = m.designs()
        return [reference_fit(m.y, X, V, _row(block, j, m.subset), m.G, m.h2_start) for j in todo]


def reference_fit(y, X, V, g, G=None, h2_start: float = 0.05) -> tuple[dict | None, str | None]:
    """Fit one SNP's model by :meth:`hlmm.hetlm.model.optimize_model` (or hetlmm's).

    Returns
    -------
    (dict, None) or (None, reason)
    """
    called = ~np.isnan(g)
    gc = g[called] - g[called].mean()
    Xl = np.column_stack([X[called], gc])
    Vl = np.column_stack([V[called], gc])
    try:
        if G is None:
            fit = hetlm.model(y[called], Xl, Vl).optimize_model()
        else:
            fit = hetlmm.model(y[called], Xl, Vl, G[called]).optimize_model(h2_start)
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


@dataclass
class _Choice:
    cls: type
    why: str = ""
    notes: list = field(default_factory=list)


def choose_scanner(models: list, settings: ScanSettings, has_dosages: bool) -> _Choice:
    """Which scanner class fits these models, and why (for the log)."""
    default = all(m.default_mode for m in models)
    mixed = any(m.G is not None for m in models)
    if settings.engine == "reference":
        return _Choice(ReferenceScanner, "reference engine")
    if not mixed:
        return _Choice(HLMClassScanner, "genotype-class statistics") if default else \
            _Choice(HLMCovariateScanner, "covariates fitted per SNP")
    if default and not has_dosages:
        return _Choice(HLMMClassScanner, "genotype-class Gram matrices")
    why = "dosages" if default else "covariates fitted per SNP"
    return _Choice(ReferenceScanner, f"mixed model with {why}: reference algorithm, O(n l^2) per likelihood evaluation")


def make_scanner(models: list, settings: ScanSettings, has_dosages: bool = False) -> Scanner:
    """The scanner for these models and settings.

    Parameters
    ----------
    models : list of ScanModel
        One per phenotype; all default mode or all with covariates, all with or all without
        random effects.
    settings : ScanSettings
    has_dosages : bool
        Whether blocks will hold dosages (not hard calls).

    Returns
    -------
    Scanner
    """
    if not models:
        raise ValueError("no models to scan")
    if len({m.default_mode for m in models}) > 1 or len({m.G is None for m in models}) > 1:
        raise ValueError("all models of a scan must share the mode (default or covariates) and random effects")
    choice = choose_scanner(models, settings, has_dosages)
    scanner = choice.cls(models, settings)
    scanner.description = choice.why
    return scanner
