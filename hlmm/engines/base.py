"""What every scanner shares: per-variant results made from the column registry, filters and status,
and the :class:`Scanner` interface (``scan(block)``).

A scanner's ``scan(block)`` returns one dict per phenotype of per-variant arrays: the ``stats``
columns of :data:`hlmm.columns.STATS` and the internal keys of :data:`hlmm.columns.INTERNAL`
(``status``, ``problems``, and where they apply ``av_chi2``, ``add_se_model`` and
``var_se_model``). Nothing else lists them.
"""

from __future__ import annotations

import numpy as np

from hlmm.columns import STATS, by_name
from hlmm.engines.classes import ClassMoments, ClassStatistics
from hlmm.io import GenotypeBlock
from hlmm.model import ModelSpec

__all__ = ["Scanner", "STATUS", "concatenate_results", "filters", "empty_results", "MODEL_SE_KEYS"]

#: Per-variant status codes in the ``status`` array of a scanner's result.
STATUS = {"ok": 0, "maf": 1, "missing": 2, "no_calls": 3, "multiallelic": 4, "failed": 5}

#: With robust standard errors (``--robust``), the model-based ones too, for the robust columns
#: (:func:`hlmm.robust.robust_statistics` starts from the model-based standard errors).
MODEL_SE_KEYS = ("add_se_model", "var_se_model")
#: The keys of the G×E statistics (``--interaction``), shaped per exposure.
GXE_KEYS = ("gxe", "gxe_se", "gxe_cov", "gxe_model_se")


def empty_results(b: int, spec: ModelSpec, status: str = "no_calls") -> dict:
    """The per-variant results of ``b`` variants before any fit: NaN statistics, ``n`` 0, the given
    status, ``test`` the spec's, and the internal keys the spec needs."""
    out = {}
    for key in STATS:
        kind = by_name(key).kind
        out[key] = np.zeros(b, dtype=np.int64) if kind == "int" else np.full(b, spec.test) if kind == "str" \
            else np.full(b, np.nan)
    if spec.robust:
        for key in MODEL_SE_KEYS:
            out[key] = np.full(b, np.nan)
    if spec.test == "score":
        out["av_chi2"] = np.full(b, np.nan)
    if spec.interactions:
        K = len(spec.interactions)
        out["gxe"], out["gxe_se"] = np.full((b, K), np.nan), np.full((b, K), np.nan)
        out["gxe_cov"] = np.full((b, K + 1, K + 1), np.nan)
        if spec.robust:
            out["gxe_model_se"] = np.zeros(b, dtype=np.int8)
    out["status"] = np.full(b, STATUS[status], dtype=np.int8)
    out["problems"] = []
    return out


def concatenate_results(parts: list) -> dict:
    """The results of consecutive parts of a block as one: arrays joined along the variants, and
    the ``problems`` of each part with its variants' positions shifted by the parts before it."""
    out, offset, problems = {}, 0, []
    for part in parts:
        problems += [(j + offset, why) for j, why in part["problems"]]
        offset += len(part["status"])
    for key in parts[0]:
        out[key] = problems if key == "problems" else np.concatenate([p[key] for p in parts], axis=0)
    return out


def filters(n_called: np.ndarray, a1_copies: np.ndarray, n: int, min_maf: float, max_missing: float):
    """Minor allele frequency, A1 frequency and filter status of variants.

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


def summarised(multiallelic: np.ndarray, mom: ClassMoments, n: int, spec: ModelSpec) -> dict:
    """Empty results with n, frequencies and status filled in, for variants whose ``multiallelic``
    flags (a block's) are given."""
    out = empty_results(len(multiallelic), spec)
    out["n"] = n_called = mom.n_called  # a compiled pass over the classes for dosages: once
    out["frequency"], out["A1_frequency"], out["status"] = filters(n_called, mom.a1_copies, n, spec.min_maf,
                                                                     spec.max_missing)
    out["status"][multiallelic] = STATUS["multiallelic"]
    return out


def fill(out: dict, j: int, est: dict | None, why: str | None) -> None:
    """Variant ``j``'s fit (or its failure) into the results."""
    if why:
        out["status"][j] = STATUS["failed"]
        out["problems"].append((int(j), why))
        return
    for key, value in est.items():
        out[key][j] = value


def genotype_columns(block: GenotypeBlock, idx, subset: np.ndarray) -> np.ndarray:
    """Genotypes of variants ``idx`` for the individuals ``subset`` as the columns of an (n, b) view
    of a (b, n) array: float64 or float32 (dosages), NaN for a missing call."""
    if block.dosages is not None:
        return block.dosages[idx][:, subset].T
    c = block.get_codes()[idx][:, subset].T
    return np.where(c < 0, np.nan, c.astype(np.float64))


def genotype_row(block: GenotypeBlock, j: int, subset: np.ndarray) -> np.ndarray:
    """Genotypes of variant j for the individuals ``subset``: float64, NaN for a missing call."""
    return np.ascontiguousarray(genotype_columns(block, [j], subset)[:, 0], dtype=np.float64)


def each_part(read, parts: list, f) -> list:
    """``[f(read(part)) for part in parts]``, with one part's block in memory at a time."""
    out = []
    for part in parts:
        block = read(part)
        out.append(f(block))
        del block  # before the next part is read
    return out


class Scanner:
    """Base class: ``scan(block)`` returns one dict of per-variant arrays per model (module docstring).

    Parameters
    ----------
    spec : ModelSpec
    models : list of hlmm.scan.ScanModel
        One per phenotype.
    """

    #: Variants per block unless the user chooses: blocks are the unit of progress and of work
    #: sent to worker processes, so slow models get small blocks.
    block_size = 256
    #: Whether a scan uses one worker process per core unless the user chooses: for the slow,
    #: per-variant fits of mixed models, where the work of a block is far larger than sending it.
    per_core = False
    #: What the scanner does, for the log (set by :func:`hlmm.engines.make_scanner`).
    description = ""

    def __init__(self, spec: ModelSpec, models: list) -> None:
        self.spec, self.models = spec, models
        # per scanner and per thread (a Dask worker runs several blocks of one scanner at once)
        self.classes = ClassStatistics()

    def scan(self, block: GenotypeBlock) -> list:
        raise NotImplementedError

    def scan_parts(self, read, parts: list) -> list:
        """The results of a block read in parts: ``parts`` are consecutive arrays of variant
        indices, and ``read(part)`` gives a part's :class:`~hlmm.io.GenotypeBlock`. Here each part
        is read and scanned in turn (one part in memory at a time), and the results joined; a
        scanner may instead gather what it needs of every part, and compute once for the block."""
        outs = each_part(read, parts, self.scan)
        return outs[0] if len(outs) == 1 else [concatenate_results(list(p)) for p in zip(*outs)]

    def adaptive(self, block: GenotypeBlock, outs: list, sums: list | None = None) -> list:
        """Fill in the adaptive variance columns (``var_adapt``, ``var_se_adapt``: :mod:`hlmm.adaptive`)
        of every model's variants with status ok, and return ``outs``.

        ``sums`` gives, per model, ``(sum g h, sum g^2, sum g^3)`` of every variant of the block, from
        the scanner's own pass over it; without them (the per-variant engines, where a pass costs
        little beside the fits) one compiled pass over the block computes them."""
        if sums is None:
            todo = [m.adaptive is not None for m in self.models]
            parts = [(m.subset, self._adaptive_columns(m)) for m, t in zip(self.models, todo) if t]
            cs = iter(self.classes.sums(block, parts) if parts else [])
            sums = []
            for t in todo:
                c = next(cs) if t else None
                sums.append(None if c is None else c.centred_sums(c.sums[..., 0], c.sums[..., 1]))
        for o, m, s in zip(outs, self.models, sums):
            if m.adaptive is None or s is None:
                continue
            ok = np.flatnonzero(o["status"] == STATUS["ok"])
            o["var_adapt"][ok], o["var_se_adapt"][ok] = m.adaptive.statistics(*(a[ok] for a in s), o["add"][ok])
        return outs

    def _adaptive_columns(self, m) -> np.ndarray:
        """``[1, h]`` of a model, built once. Found again by the model's identity: an entry whose
        model is another object (an id of the process a scanner was pickled in) is rebuilt."""
        cache = self.__dict__.setdefault("_adaptive_cache", {})
        hit = cache.get(id(m))
        if hit is None or hit[0] is not m:
            hit = cache[id(m)] = (m, np.column_stack([np.ones(m.n), m.adaptive.h]))
        return hit[1]

    def summaries(self, block: GenotypeBlock) -> list:
        """Calls, frequencies and filters of every model (one compiled pass)."""
        moms = self.classes.moments(block, [(m.subset, m.y) for m in self.models], 0)
        return [summarised(block.multiallelic, mom, m.n, self.spec) for mom, m in zip(moms, self.models)]


class PerVariant(Scanner):
    """Scanners that fit each variant of each model separately."""

    def scan(self, block: GenotypeBlock) -> list:
        outs = self.summaries(block)
        for p, o in enumerate(outs):
            todo = np.flatnonzero(o["status"] == STATUS["ok"])
            for j, (est, why) in zip(todo, self.fit_model(p, block, todo)):
                fill(o, j, est, why)
        return self.adaptive(block, outs)

    def fit_model(self, p: int, block: GenotypeBlock, todo: np.ndarray) -> list:
        """``(estimates, None)`` or ``(None, reason)`` of model ``p``'s variants ``todo``."""
        raise NotImplementedError
