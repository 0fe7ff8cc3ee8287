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

from dataclasses import dataclass, field, replace

import numpy as np

from hlmm import _fast_hlm, _fast_hlmm, _kernels, hetlm, hetlmm
from hlmm.io import GenotypeBlock

__all__ = [
    "ScoreScanner",
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
#: With robust standard errors (``--robust``), also the model-based ones, for the robust columns
#: (:func:`hlmm.robust.robust_statistics` starts from the model-based standard errors).
MODEL_SE_KEYS = ("add_se_model", "var_se_model")


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
    """

    min_maf: float = 0.05
    max_missing: float = 5.0
    engine: str = "fast"
    test: str = "wald"
    refit: float | None = None
    robust: bool = False
    hard_calls: bool = False

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
    moments : hlmm.robust.ResidualMoments, optional
        Of the null model's residuals: the robust p-values that decide score-test refits.
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
    moments: object = None

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


class _Layout:
    """Per-class arrays of a block: padded (b, K, ...) for hard calls, or ragged (K_total, ...)
    with variant j's classes in rows ``offsets[j]:offsets[j + 1]`` for dosages. Subclasses hold
    ``offsets`` (None when padded) and ``values`` (None for hard calls)."""

    @property
    def ragged(self) -> bool:
        return self.offsets is not None

    def reduce(self, x: np.ndarray) -> np.ndarray:
        """Per-variant sums over the classes of ``x`` ((b, K[, q]) padded or (K[, q]) ragged)."""
        if not self.ragged:
            return x.sum(axis=1)
        two = np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float64)
        out = _kernels.segment_sums(self.offsets, two)
        return out[:, 0] if x.ndim == 1 else out

    def class_values(self) -> np.ndarray:
        """Genotype value of each class: (b, K) padded, (K,) ragged."""
        if self.values is not None:
            return self.values
        return np.broadcast_to(np.arange(3.0), self._shape())

    def per_class(self, per_variant: np.ndarray) -> np.ndarray:
        """A per-variant value repeated for each of its classes."""
        if not self.ragged:
            return per_variant[:, None]
        return np.repeat(per_variant, np.diff(self.offsets))


@dataclass
class ClassMoments(_Layout):
    """Per-SNP genotype-class statistics of one phenotype.

    Attributes
    ----------
    counts : ndarray, shape (b, K) or (K_total,)
        Individuals per class.
    sums : ndarray, shape (b, K, powers) or (K_total, powers)
        Sums of y, y^2, ... per class.
    values : ndarray, shape (b, K) or (K_total,), or None
        Genotype value of each class; None for hard calls (classes 0, 1, 2).
    n_missing : ndarray, shape (b,)
    offsets : ndarray, shape (b + 1,), or None
        The ragged layout of dosages (see :class:`_Layout`).
    """

    counts: np.ndarray
    sums: np.ndarray
    values: np.ndarray | None
    n_missing: np.ndarray
    offsets: np.ndarray | None = None

    def _shape(self):
        return self.counts.shape

    @property
    def n_called(self) -> np.ndarray:
        return np.rint(self.reduce(self.counts)).astype(np.int64)

    @property
    def a1_copies(self) -> np.ndarray:
        if self.values is None:
            return self.counts[:, 1] + 2 * self.counts[:, 2]
        return self.reduce(self.counts * self.values)


@dataclass
class ClassSums(_Layout):
    """Per-SNP sums of per-individual columns over the individuals of each genotype class.

    Attributes
    ----------
    sums : ndarray, shape (b, K, q) or (K_total, q)
        Column sums per class (K = 3 classes 0, 1, 2 copies of A1 for hard calls; the distinct
        dosages of each variant for dosages, in the ragged layout of :class:`_Layout`).
    values : ndarray, shape (b, K) or (K_total,), or None
        Genotype value of each class; None for hard calls.
    missing : ndarray, shape (b, q)
        Column sums over the individuals without a call.
    offsets : ndarray, shape (b + 1,), or None
    """

    sums: np.ndarray
    values: np.ndarray | None
    missing: np.ndarray
    offsets: np.ndarray | None = None

    def _shape(self):
        return self.sums.shape[:-1]


class _IdentityCache:
    """The last few values computed from given objects, found again by identity (``is``).

    The objects are kept alive with the value, so that their ids cannot be reused. Scanners pass
    the same phenotype arrays for every block; building the per-individual columns once saves
    more than the compiled pass over a block of 10 phenotypes costs per variant."""

    def __init__(self, size: int = 4) -> None:
        self.size, self.entries = size, []

    def get(self, objects: tuple, check, make):
        for k, (objs, value) in enumerate(self.entries):
            if len(objs) == len(objects) and all(a is b for a, b in zip(objs, objects)) and check(value):
                self.entries.insert(0, self.entries.pop(k))
                return value
        value = make()
        self.entries = [(objects, value)] + self.entries[: self.size - 1]
        return value


_DESIGNS = _IdentityCache()
_PARTS = _IdentityCache()


def _design(block: GenotypeBlock, parts: list) -> tuple[np.ndarray, list]:
    """The matrix of every part's columns over the file's rows (packed .bed blocks) or the block's
    rows, and each part's columns in it."""
    packed = block.packed is not None

    def make():
        n_rows = block.n_file if packed else len(block.rows)
        # A column of ones over the same individuals (the counts) is summed once for all parts.
        columns, index, ones = [], [], []
        for subset, cols in parts:
            r = block.rows[subset] if block.packed is not None else subset
            idx = []
            for c in range(cols.shape[1]):
                if np.all(cols[:, c] == 1.0):
                    same = next((k for rr, k in ones if rr is r or np.array_equal(rr, r)), None)
                    if same is not None:
                        idx.append(same)
                        continue
                    ones.append((r, len(columns)))
                idx.append(len(columns))
                columns.append((r, cols[:, c]))
            # a run of consecutive columns is taken as a view
            contiguous = idx == list(range(idx[0], idx[0] + len(idx))) if idx else True
            index.append(slice(idx[0], idx[0] + len(idx)) if contiguous and idx else np.array(idx, dtype=np.intp))
        Yc = np.zeros((n_rows, len(columns)))
        for k, (r, col) in enumerate(columns):
            Yc[r, k] = col
        return packed, n_rows, block.rows.copy(), Yc, index

    objects = tuple(a for part in parts for a in part)
    value = _DESIGNS.get(objects, lambda v: v[0] == packed and v[1] == (block.n_file if packed else len(block.rows))
                         and np.array_equal(v[2], block.rows), make)
    return value[3], value[4]


def class_sums(block: GenotypeBlock, parts: list) -> list:
    """Sums of per-individual columns over each genotype class of every SNP of a block.

    One compiled pass over the block serves every part (phenotype).

    Parameters
    ----------
    block : GenotypeBlock
    parts : list of (subset, columns)
        Positions within ``block.rows`` and a matrix (len(subset), q) of per-individual values.

    Returns
    -------
    list of ClassSums
    """
    Yc, index = _design(block, parts)
    if block.packed is not None:
        mom = _kernels.class_moments_packed(block.packed, Yc)
    elif block.dosages is None:
        mom = _kernels.class_moments_codes(block.codes, Yc)
    else:
        seg, values, sums, missing = _kernels.dosage_classes(block.dosages, Yc, block.denominator or 0)
        return [ClassSums(sums[:, idx], values, missing[:, idx], seg) for idx in index]
    return [ClassSums(mom[:, :3][:, :, idx], None, mom[:, 3][:, idx]) for idx in index]


def column_basis(A: np.ndarray, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``A`` that span the others, and the coefficients that give them back.

    Greedy in column order (so the first column is always kept): a column is kept when its
    residual after projection on the kept columns exceeds ``tol`` times its norm.

    Returns
    -------
    basis : ndarray, shape (n, r)
        The kept columns of ``A``, unchanged.
    coef : ndarray, shape (r, q)
        ``A = basis @ coef`` to rounding: unit vectors for the kept columns, least-squares
        coefficients for the others. If the others are not reproduced to 1e-12 of their size,
        every column is kept.
    """
    A = np.asarray(A, dtype=np.float64)
    n, q = A.shape
    keep, Q = [], np.empty((n, 0))
    for j in range(q):
        a = A[:, j]
        r = a - Q @ (Q.T @ a)
        r -= Q @ (Q.T @ r)
        norm_a, norm_r = np.linalg.norm(a), np.linalg.norm(r)
        if not keep or norm_r > tol * norm_a:
            keep.append(j)
            if norm_r > 0:
                Q = np.column_stack([Q, r / norm_r])
    basis = A[:, keep]
    coef = np.linalg.lstsq(basis, A, rcond=None)[0]
    coef[:, keep] = np.eye(len(keep))
    scale = np.maximum(np.abs(A).max(axis=0), np.finfo(float).tiny)
    if np.max(np.abs(basis @ coef - A) / scale) > 1e-12:
        return A.copy(), np.eye(q)
    return np.ascontiguousarray(basis), coef


def class_moments(block: GenotypeBlock, models: list, powers: int) -> list:
    """Genotype-class counts and sums of powers of y of every SNP of a block, for each model.

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
    parts = _PARTS.get(tuple(a for m in models for a in m) + (powers,), lambda v: True, lambda: [
        (subset, np.column_stack([y**k for k in range(powers + 1)])) for subset, y in models])
    return [ClassMoments(c.sums[..., 0], c.sums[..., 1:], c.values, c.missing[:, 0], c.offsets)
            for c in class_sums(block, parts)]


def _empty(b: int, robust: bool = False) -> dict:
    out = {k: np.full(b, np.nan) for k in STAT_KEYS + (MODEL_SE_KEYS if robust else ())}
    out["n"] = np.zeros(b, dtype=np.int64)
    out["status"] = np.full(b, STATUS["no_calls"], dtype=np.int8)
    out["test"] = np.full(b, "wald")
    out["problems"] = []
    return out


def _summarised(block: GenotypeBlock, mom: ClassMoments, n: int, settings: ScanSettings) -> dict:
    """Empty statistics with n, frequency and status filled in."""
    out = _empty(block.n_variants, settings.robust)
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
    #: Whether a scan uses one worker process per core unless the user chooses: for the slow,
    #: per-SNP fits of mixed models, where the work of a block is far larger than sending it.
    per_core = False

    def __init__(self, models: list, settings: ScanSettings) -> None:
        self.models, self.settings = models, settings

    def scan(self, block: GenotypeBlock) -> list:
        raise NotImplementedError

    def summaries(self, block: GenotypeBlock) -> list:
        """Calls, frequencies and filters of every model (one compiled pass)."""
        moms = class_moments(block, [(m.subset, m.y) for m in self.models], 0)
        return [_summarised(block, mom, m.n, self.settings) for mom, m in zip(moms, self.models)]


class HLMClassScanner(Scanner):
    """HLM in the default mode, from genotype-class statistics, all phenotypes in one pass.

    With ``robust``, the sandwich standard errors need per-class sums of y^3 and y^4 too
    (:func:`hlmm.robust.hlm_sandwich_classes`).
    """

    block_size = 256

    def scan(self, block: GenotypeBlock) -> list:
        robust = self.settings.robust
        moms = class_moments(block, [(m.subset, m.y) for m in self.models], 4 if robust else 2)
        outs = [_summarised(block, mom, m.n, self.settings) for mom, m in zip(moms, self.models)]
        idx = [np.flatnonzero(o["status"] == STATUS["ok"]) for o in outs]
        if not any(i.size for i in idx):
            return outs
        if moms[0].ragged:
            for mom, o, i in zip(moms, outs, idx):
                self._fit_ragged(mom, o, i, robust)
            return outs
        cnt = np.concatenate([mom.counts[i] for mom, i in zip(moms, idx)])
        s1 = np.concatenate([mom.sums[i, :, 0] for mom, i in zip(moms, idx)])
        s2 = np.concatenate([mom.sums[i, :, 1] for mom, i in zip(moms, idx)])
        values = None if moms[0].values is None else np.concatenate([mom.values[i] for mom, i in zip(moms, idx)])
        fit = _fast_hlm.fit_classes(cnt, s1, s2, values)
        if robust:
            fit["add_se_model"], fit["var_se_model"] = fit["add_se"], fit["var_se"]
            fit["add_se"], fit["var_se"] = self._sandwich_se(moms, idx, fit)
        k = 0
        for o, i in zip(outs, idx):
            sl = slice(k, k + i.size)
            for key in ("likelihood", "add", "add_se", "var", "var_se") + (MODEL_SE_KEYS if robust else ()):
                o[key][i] = fit[key][sl]
            bad = i[~fit["success"][sl]]
            o["status"][bad] = STATUS["failed"]
            o["problems"] += [(int(j), "optimisation did not converge") for j in bad]
            k += i.size
        return outs

    @staticmethod
    def _fit_ragged(mom: ClassMoments, o: dict, ok: np.ndarray, robust: bool) -> None:
        """Dosages: every variant's fit over its distinct dosages, one compiled loop per variant."""
        from hlmm import _optimize
        from hlmm._linalg import LOG_2PI

        fit = _kernels.fit_dosage_classes(mom.offsets, mom.values, mom.counts, mom.sums[:, 0], mom.sums[:, 1], 200,
                                          _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL, _optimize.LOCAL_RTOL,
                                          _optimize.F_NOISE_RTOL)
        good = ok[fit[ok, 7] == 1.0]
        bad = ok[fit[ok, 7] != 1.0]
        n = mom.n_called
        o["likelihood"][good] = -0.5 * (fit[good, 0] + n[good] * LOG_2PI)
        o["add"][good], o["var"][good] = fit[good, 2], fit[good, 4]
        o["add_se"][good], o["var_se"][good] = np.sqrt(fit[good, 5]), np.sqrt(fit[good, 6])
        if robust:
            from hlmm.robust import hlm_sandwich_classes

            o["add_se_model"][good], o["var_se_model"][good] = o["add_se"][good], o["var_se"][good]

            for j in good:
                seg = slice(mom.offsets[j], mom.offsets[j + 1])
                c = mom.counts[seg]
                g = mom.values[seg] - (c * mom.values[seg]).sum() / c.sum()
                ps = np.concatenate([c[:, None], mom.sums[seg]], axis=1)[None]
                cov = hlm_sandwich_classes(g[None], ps, fit[j, 1:3][None], fit[j, 3:5][None])[0]
                o["add_se"][j], o["var_se"][j] = np.sqrt(cov[1, 1]), np.sqrt(cov[3, 3])
        o["status"][bad] = STATUS["failed"]
        o["problems"] += [(int(j), "optimisation did not converge") for j in bad]

    @staticmethod
    def _sandwich_se(moms: list, idx: list, fit: dict) -> tuple[np.ndarray, np.ndarray]:
        from hlmm.robust import hlm_sandwich_classes

        ps = np.concatenate([np.concatenate([m.counts[i][:, :, None], m.sums[i]], axis=2) for m, i in zip(moms, idx)])
        raw = np.concatenate([m.class_values()[i] if m.values is not None else np.broadcast_to(np.arange(3.0),
                              (i.size, 3)) for m, i in zip(moms, idx)])
        n = ps[:, :, 0].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            g = raw - ((ps[:, :, 0] * raw).sum(1) / n)[:, None]
        cov = hlm_sandwich_classes(np.where(ps[:, :, 0] > 0, g, 0.0), ps, np.nan_to_num(fit["alpha"]),
                                   np.nan_to_num(fit["beta"]))
        with np.errstate(invalid="ignore"):
            return np.sqrt(cov[:, 1, 1]), np.sqrt(cov[:, 3, 3])


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
        return [_fast_hlm.fit_covariate_snp(y, X, V, _row(block, j, m.subset), beta_start, self.settings.robust)
                for j in todo]


class HLMMClassScanner(_PerSNP):
    """HLMM in the default mode, from genotype-class Gram matrices.

    Variants whose dosages are not whole numbers have no genotype classes: they are fitted by
    the reference algorithm, at O(n l^2) per likelihood evaluation.
    """

    block_size = 8
    per_core = True

    def _G(self, p: int) -> np.ndarray:
        return self.totals[p].G

    def __init__(self, models: list, settings: ScanSettings) -> None:
        self.totals = [_fast_hlmm.totals(m.y, m.G, m.G_center, m.G_scale) for m in models]
        # the totals keep what the engine needs of G: do not hold G itself (n x l) as well
        super().__init__([replace(m, G=None) for m in models], settings)
        self.designs = [m.designs() for m in self.models]

    def fit_model(self, m: ScanModel, block: GenotypeBlock, todo: np.ndarray) -> list:
        p = self.models.index(m)
        tot = self.totals[p]
        integral = block.integral_rows()
        classes = todo[integral[todo]]
        codes = block.hard_codes(classes) if classes.size else np.zeros((0, len(m.subset)), np.int8)
        if len(m.subset) != codes.shape[1] or not np.array_equal(m.subset, np.arange(len(m.subset))):
            codes = np.ascontiguousarray(codes[:, m.subset])
        where = {int(j): k for k, j in enumerate(classes)}

        def fit(j):
            if int(j) not in where:  # non-integer dosages: no genotype classes
                return reference_fit(m.y, *self.designs[p], _row(block, j, m.subset), self._G(p), m.h2_start)
            cs = _fast_hlmm.class_stats(tot, codes[where[int(j)]])
            start = _fast_hlm.fit_classes(cs.n[None], cs.S1[None], cs.S2[None])
            if not start["success"][0]:
                return None, "no starting value: the model without random effects did not converge"
            beta0 = start["beta"][0]
            if m.null is not None and "h2" in m.null:
                # the SNP's variance effect from the model without random effects, the residual
                # variance from the null mixed model: closer to the maximum than both from the HLM
                beta0 = np.array([m.null["beta"][0], beta0[1]])
            return _fast_hlmm.fit_snp(cs, beta0, m.h2_start)

        return [fit(j) for j in todo]


class ReferenceScanner(_PerSNP):
    """One ``optimize_model`` per SNP (hlmm 1.2.0a1's algorithm)."""

    block_size = 16

    def __init__(self, models: list, settings: ScanSettings) -> None:
        super().__init__(models, settings)
        if any(m.G is not None for m in models):
            self.block_size, self.per_core = 1, True

    def fit_model(self, m: ScanModel, block: GenotypeBlock, todo: np.ndarray) -> list:
        X, V = m.designs()
        return [reference_fit(m.y, X, V, _row(block, j, m.subset), m.G, m.h2_start, self.settings.robust) for j in todo]


class ScoreScanner(Scanner):
    """Score tests of every SNP under the null model (:mod:`hlmm.score`), with optional exact refits.

    Everything the statistics need of a SNP's genotypes is a sum, over its genotype classes, of
    per-individual weights of the null model: one compiled pass gives them for every phenotype.
    Missing calls are mean-imputed. A mixed model also needs ``Z = G' D^-1 g``: in the default
    mode, with random effects and test SNPs from genotype files (small integers), it is computed
    exactly by bit-plane popcounts; otherwise by a floating-point product.

    With ``settings.refit``, every SNP with any of its -log10 p-values (add, var, av) at least
    ``refit`` is fitted again by the Wald scanner, whose row replaces the score row.
    """

    block_size = 512

    def __init__(self, models: list, settings: ScanSettings, has_dosages: bool = False) -> None:

        from hlmm import score

        super().__init__(models, settings)
        self.nulls, self.forms, self.columns = [], [], []
        for m in models:
            X, V = m.designs()
            if m.null is None:
                raise ValueError(f"phenotype '{m.name}': the score test needs the null model's fit")
            if m.G is None:
                null, form = score.HLMNull(m.y, X, V, m.null["alpha"], m.null["beta"]), None
            else:
                null = score.HLMMNull(m.y, X, V, m.G, m.null["alpha"], m.null["beta"], m.null["h2"])
                form = None
                if m.default_mode and m.G_center is not None:
                    form = _fast_hlmm.integer_design(m.G, m.G_center, m.G_scale)
            self.nulls.append(null)
            self.forms.append(form)
            self.columns.append(null.columns(settings.robust))
        # the class sums need only a basis of the columns [1 | L | Q | K]: in the default mode most
        # are constant or multiples of one another (15 columns, 4 independent, for the mixed model)
        self.bases = [column_basis(np.column_stack([np.ones(m.n), *cols]))
                      for m, cols in zip(models, self.columns)]
        self.refit = None
        if settings.refit is not None:
            self.refit = make_scanner(models, replace(settings, test="wald", refit=None), has_dosages)

    def scan(self, block: GenotypeBlock) -> list:
        parts = [(m.subset, basis) for m, (basis, _) in zip(self.models, self.bases)]
        outs = []
        for p, (m, cs) in enumerate(zip(self.models, class_sums(block, parts))):
            coef = self.bases[p][1]
            cs = replace(cs, sums=cs.sums @ coef, missing=cs.missing @ coef)
            mom = ClassMoments(cs.sums[..., 0], cs.sums[..., 1:2], cs.values, cs.missing[:, 0], cs.offsets)
            o = _summarised(block, mom, m.n, self.settings)
            o["test"] = np.full(block.n_variants, "score")
            o["av_chi2"] = np.full(block.n_variants, np.nan)
            ok = np.flatnonzero(o["status"] == STATUS["ok"])
            if ok.size:
                self._score(p, m, block, cs, mom, o, ok)
            outs.append(o)
        if self.refit is not None:
            self._refit(block, outs)
        return outs

    def _score(self, p: int, m: ScanModel, block: GenotypeBlock, cs: ClassSums, mom: ClassMoments, o: dict,
               ok: np.ndarray) -> None:
        kL, kQ = self.columns[p][0].shape[1], self.columns[p][1].shape[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            gbar_all = mom.a1_copies / mom.n_called
        vals = mom.class_values()
        gk = np.where(mom.counts > 0, vals - cs.per_class(gbar_all), 0.0)
        S = cs.sums
        lin = cs.reduce(gk[..., None] * S[..., 1 : 1 + kL])[ok]
        sq = cs.reduce((gk**2)[..., None] * S[..., 1 + kL : 1 + kL + kQ])[ok]
        cube = cs.reduce((gk**3)[..., None] * S[..., 1 + kL + kQ :])[ok]
        gbar = gbar_all[ok]
        null = self.nulls[p]
        if self.forms[p] is None and not hasattr(null, "gtdinv"):  # an HLM
            st = null.from_products(lin, sq, cube, robust=self.settings.robust)
        else:
            st = null.from_products(lin, sq, cube, self._gtdinv(p, m, block, ok, gbar), robust=self.settings.robust)
        for key in ("add", "add_se", "var", "var_se", "av_chi2") + (MODEL_SE_KEYS if self.settings.robust else ()):
            o[key][ok] = st[key]
        bad = ok[~(np.isfinite(st["add_se"]) & np.isfinite(st["var_se"]))]
        o["status"][bad] = STATUS["failed"]
        o["problems"] += [(int(j), "no information about the effect (collinear with the covariates)") for j in bad]

    def _gtdinv(self, p: int, m: ScanModel, block: GenotypeBlock, ok: np.ndarray, gbar: np.ndarray) -> np.ndarray:
        """``Z = G' D^-1 g`` of the centred, mean-imputed genotypes of SNPs ``ok``."""
        form = self.forms[p]
        if form is None or not block.integral_rows()[ok].all():
            from hlmm.score import mean_impute

            g = np.column_stack([_row(block, j, m.subset) for j in ok])
            return self.nulls[p].gtdinv(mean_impute(g))
        codes = block.hard_codes(ok)
        codes = np.ascontiguousarray(codes[:, m.subset]) if len(m.subset) != codes.shape[1] else codes
        A, B = form.planes()
        U, V = _kernels.bitplanes(codes)
        RC = _kernels.popcount_products(A, B, U, V).astype(np.float64)  # R' codes (missing as 0), exact
        if not hasattr(form, "colsum"):
            form.colsum = form.R.sum(axis=0, dtype=np.int64).astype(np.float64)
        Rm = _kernels.missing_row_sums(form.R, codes).astype(np.float64)  # R' 1_missing
        E = form.E
        Eg = _kernels.sparse_centred_products(E.indptr, E.indices, E.data, form.R.shape[1], codes, gbar)
        Gg = (RC - gbar[None, :] * (form.colsum[:, None] - Rm) + Eg) / form.scale[:, None]
        w = float(np.exp(-m.null["beta"][0]))  # default mode: D = exp(beta_0) I
        return w * Gg

    def _refit(self, block: GenotypeBlock, outs: list) -> None:
        from hlmm.results import neglog10_pval
        from hlmm.robust import robust_statistics

        threshold = self.settings.refit
        chosen = []
        for o, m in zip(outs, self.models):
            with np.errstate(invalid="ignore", divide="ignore"):
                stats = [(o["add"] / o["add_se"]) ** 2, (o["var"] / o["var_se"]) ** 2]
                joint = o["av_chi2"]
                if m.moments is not None:  # the p-values that are read: robust for the variance
                    rob = robust_statistics(o["add"], o.get("add_se_model", o["add_se"]), o["var"],
                                            o.get("var_se_model", o["var_se"]), m.moments)
                    stats[1], joint = rob["var_chi2_robust"], rob["av_chi2_robust"]
                top = np.fmax(np.fmax(neglog10_pval(stats[0], 1), neglog10_pval(stats[1], 1)),
                              neglog10_pval(joint, 2))
            chosen.append((o["status"] == STATUS["ok"]) & (top >= threshold))
        union = np.flatnonzero(np.any(chosen, axis=0))
        if not union.size:
            return
        exact = self.refit.scan(block.take(union))
        for o, sel, e in zip(outs, chosen, exact):
            for k, j in enumerate(union):
                if not sel[j]:
                    continue
                for key in ("n", "frequency", "A1_frequency", "likelihood", "add", "add_se", "var", "var_se",
                            "status", "test") + tuple(key for key in MODEL_SE_KEYS if key in o):
                    o[key][j] = e[key][k]
                o["av_chi2"][j] = np.nan
            o["problems"] += [(int(union[k]), why) for k, why in e["problems"] if sel[union[k]]]


def reference_fit(y, X, V, g, G=None, h2_start: float = 0.05, robust: bool = False) -> tuple[dict | None, str | None]:
    """Fit one SNP's model by :meth:`hlmm.hetlm.model.optimize_model` (or hetlmm's).

    With ``robust`` (HLM only) the standard errors are the sandwich estimator's
    (:func:`hlmm.robust.hlm_sandwich`).

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
    if robust:
        from hlmm.robust import hlm_sandwich

        cov = hlm_sandwich(y[called], Xl, Vl, fit["alpha"], fit["beta"])
        est["add_se_model"], est["var_se_model"] = est["add_se"], est["var_se"]
        est["add_se"], est["var_se"] = np.sqrt(cov[Xl.shape[1] - 1, Xl.shape[1] - 1]), np.sqrt(cov[-1, -1])
    if not all(np.isfinite(v) for v in est.values()):
        return None, "non-finite estimate or standard error"
    return est, None


@dataclass
class _Choice:
    cls: type
    why: str = ""
    notes: list = field(default_factory=list)


def choose_scanner(models: list, settings: ScanSettings, has_dosages: bool) -> _Choice:
    """Which scanner class fits these models, and why (for the log).

    Raises
    ------
    ValueError
        For combinations without a valid method (robust Wald standard errors of a mixed model).
    """
    default = all(m.default_mode for m in models)
    mixed = any(m.G is not None for m in models)
    if settings.robust and mixed and (settings.test == "wald" or settings.refit is not None):
        raise ValueError("--robust with --random_gts: sandwich standard errors of the mixed model's fits are not valid"
                         " (the individuals' scores are correlated through the random effects); use --test score"
                         " (robust score test) without --refit")
    if settings.test == "score":
        what = "mixed model" if mixed else "HLM"
        return _Choice(ScoreScanner, f"score tests under the null {what}"
                       + (f", Wald refits where -log10 p >= {settings.refit}" if settings.refit is not None else ""))
    if settings.engine == "reference":
        return _Choice(ReferenceScanner, "reference engine")
    if not mixed:
        return _Choice(HLMClassScanner, "genotype-class statistics") if default else \
            _Choice(HLMCovariateScanner, "covariates fitted per SNP")
    if default:
        return _Choice(HLMMClassScanner, "genotype-class Gram matrices" + (
            "; variants with non-integer dosages by the reference algorithm, O(n l^2) per likelihood evaluation"
            if has_dosages else ""))
    return _Choice(ReferenceScanner, "mixed model with covariates fitted per SNP: reference algorithm, O(n l^2) per"
                   " likelihood evaluation")


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
    scanner = choice.cls(models, settings, has_dosages) if choice.cls is ScoreScanner else choice.cls(models, settings)
    scanner.description = choice.why
    return scanner
