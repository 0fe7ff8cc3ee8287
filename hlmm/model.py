"""The model of a scan, decided once: :class:`ModelSpec`.

A scan fits, for every variant and phenotype, a heteroskedastic linear (mixed) model. Everything
that defines that model and how it is tested is one immutable :class:`ModelSpec`, made once from
the options (:meth:`ModelSpec.from_options`) and validated there. The pipeline, every engine
(:mod:`hlmm.engines`), :func:`hlmm.pipeline.fit_model` and the run description read it; nothing
else decides these things, and library callers get the same rules as the command line.

What the spec holds
-------------------
* the model: HLM, or HLMM with random effects (``random_effects``);
* the mode: the default mode (``fit_covariates=False``: the phenotype adjusted by the null model,
  each variant's model with an intercept) or covariates fitted for each variant;
* how the variant enters the model: its terms in the mean (``mean_terms``) and in the
  log-variance (``variance_terms``), ``("g",)`` in both for 1.2.0a1's model;
* the test (``"wald"`` maximum likelihood fits or ``"score"`` tests under the null, with
  ``refit`` for exact refits of the score rows that matter) and the standard errors of the
  documented columns (model-based, or ``robust``: sandwich / empirical score variance);
* the genotypes: dosages, or ``hard_calls`` (dosages rounded to the nearest genotype);
* the variant filters (``min_maf``, ``max_missing``), the engine, and the starting h2.

Examples
--------
>>> spec = ModelSpec(random_effects=True, test="score", robust=True)
>>> spec.kind, spec.default_mode, spec.mean_terms
('HLMM', True, ('g',))
>>> try:
...     ModelSpec(random_effects=True, robust=True)
... except ValueError as e:
...     print(str(e)[:55])
--robust with --random_gts: sandwich standard errors of
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from hlmm.io import InputError

__all__ = ["ModelSpec", "ENGINES", "TESTS"]

ENGINES = ("fast", "reference")
TESTS = ("wald", "score")


@dataclass(frozen=True)
class ModelSpec:
    """The per-variant models of a scan and how they are tested.

    Attributes
    ----------
    random_effects : bool
        HLMM (random effects for a set of variables) rather than HLM.
    fit_covariates : bool
        Fit the covariates for each variant; otherwise (the default mode) the phenotype is
        adjusted by the null model and each variant's model has an intercept.
    test : {"wald", "score"}
    refit : float, optional
        With the score test: refit exactly every variant with any −log10 p-value at least this.
    robust : bool
        Sandwich standard errors (Wald HLM) or empirical score variances (score tests) in the
        documented columns.
    hard_calls : bool
        Round dosages to the nearest genotype.
    engine : {"fast", "reference"}
    min_maf : float
        Variants with minor allele frequency at or below this get NaN estimates.
    max_missing : float
        Variants with at least this percentage of missing calls get NaN estimates.
    h2_init : float
        Starting h2 of the null mixed model.
    no_h2_estimate : bool
        Start each variant's h2 at ``h2_init`` instead of the null model's estimate.
    interactions : tuple of str
        Exposures E (``--interaction``; ``--interaction_snp`` gives a variant's genotype): each
        variant's mean has ``g`` and ``g*E`` for each, and every E enters the mean and the
        log-variance null models.
    loco : {None, "covariate", "offset"}
        Leave-one-chromosome-out predictions (``--pred``): for a variant on chromosome c, the
        trait's chromosome-c prediction is a mean covariate with an estimated coefficient, or
        (``"offset"``, ``--pred_offset``) is subtracted from the trait. Per-chromosome terms: the
        null models are fitted per chromosome.
    x_sex : bool
        On chrX (not its pseudo-autosomal regions), sex in the mean and the variance null models
        and individuals of unknown sex left out (``--no_x_sex`` turns it off).
    """

    random_effects: bool = False
    fit_covariates: bool = False
    test: str = "wald"
    refit: float | None = None
    robust: bool = False
    hard_calls: bool = False
    engine: str = "fast"
    min_maf: float = 0.05
    max_missing: float = 5.0
    h2_init: float = 0.05
    no_h2_estimate: bool = False
    interactions: tuple = ()
    loco: str | None = None
    x_sex: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine '{self.engine}'; choose from {ENGINES}")
        if self.test not in TESTS:
            raise InputError(f"unknown test '{self.test}'; choose from {TESTS}")
        if not 0 <= self.min_maf < 0.5:
            raise InputError(f"min_maf must be a fraction in [0, 0.5), got {self.min_maf}")
        if not 0 < self.max_missing <= 100:
            raise InputError(f"max_missing must be a percentage in (0, 100], got {self.max_missing}")
        if self.h2_init < 0 or not np.isfinite(self.h2_init):
            raise InputError(f"--h2_init must be finite and non-negative, got {self.h2_init}")
        if self.refit is not None and self.test != "score":
            raise InputError("--refit refits score-test rows: it needs --test score")
        if self.robust and self.random_effects and (self.test == "wald" or self.refit is not None):
            raise InputError("--robust with --random_gts: sandwich standard errors of a mixed model's"
                             " maximum-likelihood fits are not valid (the individuals' scores are correlated"
                             " through the random effects); for a scan, use --test score (robust score test)"
                             " without --refit")
        if self.loco not in (None, "covariate", "offset"):
            raise InputError(f"unknown LOCO mode '{self.loco}'; choose covariate or offset")
        if len(set(self.interactions)) != len(self.interactions):
            raise InputError(f"--interaction: {', '.join(self.interactions)} names an exposure twice")
        if self.interactions and self.test == "score" and self.random_effects:
            raise InputError("--interaction with --test score and --random_gts: the score screen of G×E terms is for"
                             " the HLM; with random effects, run the Wald test (exact fits)")

    @classmethod
    def from_options(cls, options, random_effects: bool, loco: bool = False, interactions: tuple = ()) -> "ModelSpec":
        """The spec of a scan from its options (:class:`hlmm.pipeline.ScanOptions`), with random
        effects and LOCO predictions if the inputs have them."""
        s = options.settings
        if options.pred_offset and not loco:
            raise InputError("--pred_offset subtracts the --pred predictions: it needs --pred")
        return cls(random_effects=random_effects, fit_covariates=options.fit_covariates, test=s.test,
                   refit=s.refit, robust=s.robust, hard_calls=s.hard_calls, engine=s.engine, min_maf=s.min_maf,
                   max_missing=s.max_missing, h2_init=options.h2_init, no_h2_estimate=options.no_h2_estimate,
                   loco=("offset" if options.pred_offset else "covariate") if loco else None,
                   x_sex=not options.no_x_sex, interactions=tuple(interactions))

    @property
    def mean_terms(self) -> tuple:
        """How the variant enters the mean: ``g``, and ``g*E`` for each exposure."""
        return ("g",) + tuple(f"g*{e}" for e in self.interactions)

    @property
    def variance_terms(self) -> tuple:
        """How the variant enters the log-variance: ``g``."""
        return ("g",)

    @property
    def default_mode(self) -> bool:
        """The phenotype adjusted by the null model, each variant's model with an intercept only."""
        return not self.fit_covariates

    @property
    def kind(self) -> str:
        """``"HLMM"`` or ``"HLM"``."""
        return "HLMM" if self.random_effects else "HLM"

    @property
    def se(self) -> str:
        """``"robust"`` or ``"model"``: the standard errors of the documented columns."""
        return "robust" if self.robust else "model"

    def wald(self) -> "ModelSpec":
        """The same model fitted exactly (for the refits of score rows)."""
        return replace(self, test="wald", refit=None)

    def describe(self) -> dict:
        """The fields as a JSON-able dict (the run description)."""
        return asdict(self)
