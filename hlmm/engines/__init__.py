"""The scan engines: per-variant models fitted to blocks of genotypes.

Numerics only: a :class:`hlmm.model.ModelSpec`, the prepared models of the phenotypes
(:class:`hlmm.scan.ScanModel`) and genotype blocks in, per-variant arrays out. For each variant,
``g`` counts copies of the counted allele (A1) or is its dosage, centred over the individuals
with a call. :func:`make_scanner` is the one place that chooses an engine: the choice table below,
read from the spec and whether blocks hold dosages. The runner only calls ``scanner.scan_parts``
(a block read in parts; by default ``scanner.scan(block)`` of each).

Engines (one module each)
-------------------------
:class:`~hlmm.engines.hlm_classes.HLMClassScanner`
    HLM, default mode: the likelihood depends on the data only through per-genotype-class
    counts and sums of y and y^2; every variant of a block is fitted at once.
:class:`~hlmm.engines.hlm_covariates.HLMCovariateScanner`
    HLM with ``--fit_covariates``: Newton steps from compiled passes over the individuals.
:class:`~hlmm.engines.hlmm_classes.HLMMClassScanner`
    HLMM, default mode: genotype-class Gram matrices of the random effects and Newton's method
    in l dimensions (non-integer dosages by the reference algorithm).
:class:`~hlmm.engines.reference.ReferenceScanner`
    One ``optimize_model`` per variant (``--engine reference``, and the HLMM with covariates).
:class:`~hlmm.engines.score.ScoreScanner`
    Score tests under the null model (HLM or HLMM) from class sums, with exact Wald refits.

Shared pieces: :mod:`hlmm.engines.base` (results from the column registry, filters, the
interface) and :mod:`hlmm.engines.classes` (genotype-class statistics). The compiled kernels are
split by the engines that use them: ``_kernels_classes`` (class sums, every engine),
``_kernels_hlm`` (HLM fits), ``_kernels_hlmm`` (the integer random-effect design) and
``_kernels_score`` (bit-plane popcount products); ``_hlm_fits`` and ``_hlmm_fits`` hold the
numpy numerics of the fast HLM and HLMM fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from hlmm.engines.base import STATUS, Scanner, empty_results, filters
from hlmm.engines.classes import ClassStatistics, column_basis
from hlmm.engines.gxe_classes import HLMInteractionScanner
from hlmm.engines.hlm_classes import HLMClassScanner
from hlmm.engines.hlm_covariates import HLMCovariateScanner
from hlmm.engines.hlmm_classes import HLMMClassScanner
from hlmm.engines.reference import ReferenceScanner, reference_fit
from hlmm.engines.score import ScoreScanner
from hlmm.model import ModelSpec

__all__ = ["make_scanner", "choose_scanner", "Scanner", "STATUS", "filters", "empty_results", "column_basis",
           "ClassStatistics", "reference_fit", "HLMClassScanner", "HLMCovariateScanner", "HLMMClassScanner",
           "ReferenceScanner", "ScoreScanner", "HLMInteractionScanner"]


@dataclass(frozen=True)
class Choice:
    """An engine and why it was chosen (for the log)."""

    cls: type
    why: str


def choose_scanner(spec: ModelSpec, has_dosages: bool) -> Choice:
    """The engine for a model: the choice table.

    ====================  =========  =============  =========================
    test                  engine     model          scanner
    ====================  =========  =============  =========================
    score                 any        any            ScoreScanner
    wald                  reference  any            ReferenceScanner
    wald, G×E             fast       HLM, default,  HLMInteractionScanner
                                     hard calls
    wald, G×E             fast       other          ReferenceScanner
    wald                  fast       HLM, default   HLMClassScanner
    wald                  fast       HLM, covar.    HLMCovariateScanner
    wald                  fast       HLMM, default  HLMMClassScanner
    wald                  fast       HLMM, covar.   ReferenceScanner
    ====================  =========  =============  =========================
    """
    if spec.test == "score":
        return Choice(ScoreScanner, f"score tests under the null {'mixed model' if spec.random_effects else 'HLM'}"
                      + (f", Wald refits where -log10 p >= {spec.refit}" if spec.refit is not None else ""))
    if spec.engine == "reference":
        return Choice(ReferenceScanner, "reference engine")
    if spec.interactions:
        if not spec.random_effects and spec.default_mode and not spec.robust and not has_dosages:
            return Choice(HLMInteractionScanner, "G×E terms from genotype-class sums")
        return Choice(ReferenceScanner, "G×E terms: reference algorithm (one optimize_model per variant)")
    if not spec.random_effects:
        return Choice(HLMClassScanner, "genotype-class statistics") if spec.default_mode else \
            Choice(HLMCovariateScanner, "covariates fitted per SNP")
    if spec.default_mode:
        return Choice(HLMMClassScanner, "genotype-class Gram matrices" + (
            "; variants with non-integer dosages by the reference algorithm, O(n l^2) per likelihood evaluation"
            if has_dosages else ""))
    return Choice(ReferenceScanner, "mixed model with covariates fitted per SNP: reference algorithm, O(n l^2) per"
                  " likelihood evaluation")


def make_scanner(spec: ModelSpec, models: list, has_dosages: bool = False) -> Scanner:
    """The scanner for a model and the phenotypes' prepared models.

    Parameters
    ----------
    spec : ModelSpec
    models : list of hlmm.scan.ScanModel
        One per phenotype, prepared for ``spec`` (random effects if and only if the spec has them).
    has_dosages : bool
        Whether blocks will hold dosages (not hard calls).

    Returns
    -------
    Scanner
    """
    if not models:
        raise ValueError("no models to scan")
    if any((m.G is not None) != spec.random_effects for m in models):
        raise ValueError(f"the models of a {spec.kind} scan must {'all' if spec.random_effects else 'not'} have"
                         " random effects")
    choice = choose_scanner(spec, has_dosages)
    scanner = choice.cls(spec, models, has_dosages) if choice.cls is ScoreScanner else choice.cls(spec, models)
    scanner.description = choice.why
    return scanner
