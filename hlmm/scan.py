"""What a scan is made of: the user's per-variant settings (:class:`ScanSettings`) and each
phenotype's prepared model (:class:`ScanModel`, with its null fit :class:`NullFit`).

The settings become, with the other options, the scan's :class:`hlmm.model.ModelSpec`; the
null-model stage (:mod:`hlmm.nulls`) makes one :class:`ScanModel` per phenotype; the engines
(:mod:`hlmm.engines`) read both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ScanSettings", "ScanModel", "NullFit"]


@dataclass(frozen=True)
class ScanSettings:
    """The per-variant options of a scan (those of :class:`hlmm.model.ModelSpec` that a user sets
    for the variants' models). They are checked, with the other options, when the spec is made
    (:meth:`hlmm.model.ModelSpec.from_options`).

    Attributes
    ----------
    min_maf : float
        Variants with minor allele frequency <= min_maf get NaN estimates (a fraction, 0 <= . < 0.5).
    max_missing : float
        Variants with at least this percentage of missing calls get NaN estimates (0 < . <= 100).
    engine : {"fast", "reference"}
    test : {"wald", "score"}
    refit : float, optional
        With the score test: refit exactly (Wald) every variant with any of its -log10 p-values
        (add, var adaptive, var robust, av robust) at least this.
    robust : bool
        Sandwich standard errors (Wald) or empirical score variances (score test) in the
        documented columns.
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


@dataclass(frozen=True)
class NullFit:
    """The null fit of a phenotype's variant models (without the variant), for score tests and
    starting values.

    Attributes
    ----------
    alpha, beta : ndarray
        Mean and log-variance effects of the variant models' covariates (``X``, ``V``).
    h2 : float, optional
        Random-effect variance (None for an HLM).
    """

    alpha: np.ndarray
    beta: np.ndarray
    h2: float | None = None

    @classmethod
    def of(cls, fit: dict) -> "NullFit":
        """From :meth:`hlmm.hetlm.model.optimize_model` or hetlmm's result."""
        return cls(np.asarray(fit["alpha"]), np.asarray(fit["beta"]), fit.get("h2"))


@dataclass
class ScanModel:
    """One phenotype's model for a scan, prepared by :mod:`hlmm.nulls`.

    Attributes
    ----------
    name : str
        Phenotype name.
    subset : ndarray of int64
        Positions of this phenotype's individuals within the scan's sample rows.
    y : ndarray, shape (n,)
        Response of the variant models (in the default mode, the phenotype adjusted by the null
        model).
    X, V : ndarray, shape (n, c) and (n, v)
        Mean and variance designs without the variant (an intercept column in the default mode;
        ``None`` is taken as one).
    G : ndarray, shape (n, l), optional
        Random-effect design.
    G_center, G_scale : ndarray, shape (l,), optional
        ``G = (genotypes - center) / scale`` for random effects from a genotype file (lets the
        HLMM engines use exact integer products).
    h2_start : float
        Starting value of h2 for each variant's mixed model.
    beta_start : ndarray, optional
        Starting variance effects of the covariates for covariates fitted per variant.
    null : NullFit, optional
        The null fit of ``(y, X, V[, G])``: for score tests, and the residual variance of the
        HLMM engine's starting values.
    moments : hlmm.robust.ResidualMoments, optional
        Of the null model's residuals: the robust p-values that decide score-test refits.
    exposures : ndarray, shape (n, K), optional
        The exposures of the variant's G×E terms (``--interaction``), as given.
    score_null : hlmm.score.HLMMNull, optional
        The null mixed model prepared for score tests, when the null fits made it (for the
        moments of its residuals): the score engine uses it rather than preparing it again.
    adaptive : hlmm.adaptive.AdaptiveScore, optional
        The adaptive variance score of the null model's residuals (the ``var_adapt`` columns; NaN
        without it).
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
    null: NullFit | None = None
    moments: object = None
    exposures: np.ndarray | None = None
    score_null: object = None
    adaptive: object = None

    def __post_init__(self) -> None:
        one = None
        if self.X is None or self.V is None:
            one = np.ones((len(self.y), 1))
        if self.X is None:
            self.X = one
        if self.V is None:
            self.V = one

    @property
    def n(self) -> int:
        return len(self.y)
