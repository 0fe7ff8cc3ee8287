"""The null models of a scan and one model fit: per phenotype, the null HLM (and HLMM), the
default-mode adjustment of the phenotype, the moments of the residuals, and the prepared
:class:`hlmm.scan.ScanModel` of the variant models (:func:`phenotype_model`); and
:func:`fit_model`, the analysis of ``fit_hlmm_model``.

The null models, precisely
--------------------------
For each phenotype, with mean covariates ``X`` and variance covariates ``V`` (an intercept
always included, covariates z-scored for fitting and reported in their own units):

Default mode (no ``fit_covariates``), as hlmm 1.2.0a1:

1. the **null HLM** :class:`hlmm.hetlm.model` ``(y, X, V)``, without random effects, is fitted;
   its covariate effects are ``null_mean_effects.txt`` and ``null_variance_effects.txt`` (in
   both modes, as in 1.2.0a1);
2. the phenotype is replaced by ``y* = (y - X alpha) exp(-V beta / 2)``;
3. with random effects, the **null HLMM** :class:`hlmm.hetlmm.model` ``(y*, 1, 1, G)`` gives h2:
   ``null_h2.txt`` and each SNP's starting h2;
4. each SNP's model has ``X = V = [1, g]`` on ``y*`` (plus ``G``).

With ``fit_covariates``: the null model is the HLMM ``(y, X, V, G)`` with random effects, or the
HLM ``(y, X, V)`` without; it gives h2 (``null_h2.txt``, each SNP's starting h2), and each SNP's
model is ``[X, g]``, ``[V, g]`` on ``y``. The covariate effects written are still the null HLM's.

The score test (``test="score"``) uses the null model of the SNP models: ``(y*, 1, 1[, G])`` in
the default mode, ``(y, X, V[, G])`` with ``fit_covariates``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from hlmm import hetlm, hetlmm
from hlmm.adaptive import AdaptiveScore
from hlmm.covariates import Design, is_constant, make_design, random_effects_design
from hlmm.inputs import Inputs, Matched, match_inputs, random_effects_values
from hlmm.io import InputError
from hlmm.model import ModelSpec
from hlmm.robust import ResidualMoments
from hlmm.scan import NullFit, ScanModel

__all__ = ["PhenotypeFit", "phenotype_model", "fit_model", "log_fit", "kurtosis_warning", "GroupTerms"]

log = logging.getLogger("hlmm")


@dataclass
class PhenotypeFit:
    """The null fits of one phenotype.

    Attributes
    ----------
    name : str
    ids : list of (str, str)
        The individuals used.
    covariate_fit : dict
        The null model with the covariates: the HLM, or with ``fit_covariates`` and random
        effects the HLMM (see the module docstring).
    mean_effects, variance_effects : (names, estimates, standard errors)
        Covariate effects of the null HLM, in the covariates' own units.
    h2 : (float, float) or None
        Null h2 and its standard error, with random effects.
    kurtosis : float
        Excess kurtosis of the standardised residuals of the null HLM.
    kurtosis_p : float
        p-value of a test of normal kurtosis (D'Agostino).
    moments : hlmm.robust.ResidualMoments, optional
        Pooled moments of the null model's standardised residuals, for the robust columns
        (:mod:`hlmm.robust`).
    """

    name: str
    ids: list
    covariate_fit: dict
    mean_effects: tuple
    variance_effects: tuple
    h2: tuple | None = None
    kurtosis: float = float("nan")
    kurtosis_p: float = float("nan")
    moments: ResidualMoments | None = None


#: Phenotype values beyond this magnitude (or whose spread is below its inverse) would overflow
#: or underflow the squared residuals of the likelihood.
SCALE_LIMIT = 1e100


def _check_phenotype(y: np.ndarray, name: str, path: str) -> None:
    if is_constant(y):
        raise InputError(f"phenotype file {path}: phenotype '{name}' is constant over the {len(y)} individuals used")
    big = float(np.abs(y).max())
    spread = float(np.std(y))
    if big > SCALE_LIMIT or spread < 1 / SCALE_LIMIT:
        raise InputError(f"phenotype file {path}: phenotype '{name}' has values up to {big:.3g} and spread"
                         f" {spread:.3g}, beyond what its squares can hold; rescale it (e.g. to other units)")


@dataclass(frozen=True)
class GroupTerms:
    """What the variants of one group of chromosomes add to the null models of every phenotype.

    The variants of a scan fall into groups with the same null model: with ``--pred`` one per
    chromosome (its LOCO prediction), and on chrX, with sex, the sex-adjusted models. Values are
    over the matched individuals (:class:`hlmm.inputs.Matched`'s rows); per-phenotype values (a
    trait's own LOCO predictions) are a 2-D array with one column per phenotype.

    Attributes
    ----------
    label : str
        For the log ("chromosome 3", "chrX").
    mean, variance : tuple of (name, values)
        Extra covariates of the mean and of the log-variance.
    offset : ndarray, optional
        Subtracted from the phenotype.
    exclude : ndarray of bool, optional
        Individuals left out of the group's models (no prediction, unknown sex on X) ...
    why_excluded : str
        ... and why, for the log.
    """

    label: str = ""
    mean: tuple = ()
    variance: tuple = ()
    offset: np.ndarray | None = None
    exclude: np.ndarray | None = None
    why_excluded: str = ""

    def column(self, values: np.ndarray, p: int) -> np.ndarray:
        return values[:, p] if values.ndim == 2 else values


NO_TERMS = GroupTerms()


def _designs(mt: Matched, sel: np.ndarray, inputs: Inputs, terms: GroupTerms = NO_TERMS,
             p: int = 0) -> tuple[Design, Design]:
    n = int(sel.sum())

    def values(table, names, extra):
        cols = [] if table is None else [table[sel]]
        labels = list(names) if table is not None else []
        for name, v in extra:
            column = terms.column(v, p)[sel]
            if _in_span(column, cols):  # e.g. sex already a covariate, or a constant prediction
                why = "constant over the individuals used" if np.ptp(column) == 0 else \
                    "already in the span of the covariates"
                log.info(f"{terms.label or 'null model'}: '{name}' is {why}; not added")
                continue
            cols.append(column[:, None])
            labels.append(name)
        return (np.column_stack(cols) if cols else None), (labels or None)

    try:
        X = make_design(*values(mt.mean, mt.mean_names, terms.mean), n, f"mean covariate file {inputs.mean_covar}")
        V = make_design(*values(mt.var, mt.var_names, terms.variance), n,
                        f"variance covariate file {inputs.var_covar}")
    except ValueError as e:
        raise InputError(str(e)) from None
    return X, V


def _in_span(column: np.ndarray, cols: list) -> bool:
    """Whether ``column`` is (numerically) a linear combination of the intercept and ``cols``."""
    A = np.column_stack([np.ones(len(column))] + cols)
    resid = column - A @ np.linalg.lstsq(A, column, rcond=None)[0]
    return bool(np.sum(resid**2) <= 1e-18 * max(np.sum((column - column.mean()) ** 2), np.finfo(float).tiny))


def _null_failure(fit: dict, y: np.ndarray, X: Design, V: Design, inputs: Inputs, what: str) -> InputError:
    """A message naming the files and the likely cause of a null model that could not be fitted."""
    n, c, v = len(y), X.matrix.shape[1], V.matrix.shape[1]
    files = ", ".join(f for f in (inputs.phenotypes, inputs.mean_covar, inputs.var_covar) if f)
    resid = y - X.matrix @ np.linalg.lstsq(X.matrix, y, rcond=None)[0]
    if np.sum(resid**2) <= 1e-20 * np.sum((y - y.mean()) ** 2):
        cause = "the phenotype is a linear function of the mean covariates (a covariate identical to the phenotype?)"
    elif n < 10 * (c + v):
        cause = f"{c} mean and {v} variance parameters are more than {n} individuals can support"
    else:
        cause = fit.get("message", "optimisation failed")
    return InputError(f"the null {what} of {files} could not be fitted: {cause}")


def _excess_kurtosis(z: np.ndarray) -> tuple[float, float]:
    k = float(sps.kurtosis(z, fisher=True, bias=True))
    p = float(sps.kurtosistest(z).pvalue) if len(z) >= 20 else float("nan")
    return k, p


def _random_design(raw: np.ndarray, sel: np.ndarray, path: str, shared: dict | None = None):
    """The random-effect design of the individuals ``sel``: ``(G, kept, center, scale)``. Phenotypes
    with the same individuals share one design (``shared``, keyed by the selection), so that G is
    held once for them all; other individuals give another G (z-scored over them)."""
    key = sel.tobytes()
    if shared is not None and key in shared:
        return shared[key]
    G, kept, center, scale = random_effects_design(random_effects_values(raw, sel), copy=False, return_scaling=True)
    if G.shape[1] == 0:
        raise InputError(f"random effects file {path}: no column has calls and variance")
    if shared is not None:
        shared[key] = (G, kept, center, scale)
    return G, kept, center, scale


def phenotype_model(spec: ModelSpec, mt: Matched, p: int, inputs: Inputs, shared: dict | None = None,
                    terms: GroupTerms = NO_TERMS, h2_init: float | None = None) -> tuple[PhenotypeFit, ScanModel]:
    """The null fits and the scan model of phenotype ``p`` (module docstring), for the variants of
    a group with extra ``terms`` (:class:`GroupTerms`). ``shared`` (a dict kept by the caller over
    the phenotypes and groups) lets models of the same individuals share G; ``h2_init`` (the
    previous group's h2) replaces the spec's starting h2 of the null mixed model."""
    name = mt.names[p]
    yall = mt.phenotype[:, p]
    sel = ~np.isnan(yall)
    n_missing = int((~sel).sum())
    if n_missing and len(mt.names) > 1:
        log.info(f"phenotype '{name}': dropped {n_missing} individuals missing it; {int(sel.sum())} used")
    if terms.exclude is not None:
        out = sel & terms.column(terms.exclude, p)
        if out.any():
            sel &= ~out
            log.info(f"phenotype '{name}', {terms.label}: left out {int(out.sum())} individuals"
                     f" ({terms.why_excluded}); {int(sel.sum())} used")
    y = yall[sel]
    if terms.offset is not None:
        y = y - terms.column(terms.offset, p)[sel]
    _check_phenotype(y, name, inputs.phenotypes)
    X, V = _designs(mt, sel, inputs, terms, p)
    G = G_center = G_scale = None
    if mt.random is not None:
        G, kept, G_center, G_scale = _random_design(mt.random, sel, inputs.random_gts, shared)
        if (~kept).any():
            log.info(f"dropped {int((~kept).sum())} random-effect columns with no calls or no variance")
        log.info(f"{G.shape[1]} random-effect columns, mean-imputed, z-scored and scaled by 1/sqrt({G.shape[1]})")
    hlm = hetlm.model(y, X.matrix, V.matrix).optimize_model()
    if not hlm["success"]:
        raise _null_failure(hlm, y, X, V, inputs, "model")
    z = (y - X.matrix @ hlm["alpha"]) * np.exp(-0.5 * (V.matrix @ hlm["beta"]))
    kurt = _excess_kurtosis(z)
    h2_init = spec.h2_init if h2_init is None else h2_init
    if spec.fit_covariates and G is not None:
        covariate_fit = hetlmm.model(y, X.matrix, V.matrix, G).optimize_model(h2_init)
        if not covariate_fit["success"]:
            raise _null_failure(covariate_fit, y, X, V, inputs, "mixed model")
    else:
        covariate_fit = hlm
    # as in 1.2.0a1, the covariate effects written are the null HLM's, in every mode
    mean = (X.names, *X.to_original_units(hlm["alpha"], hlm["alpha_cov"]))
    var = (V.names, *V.to_original_units(hlm["beta"], hlm["beta_cov"]))
    h2 = None
    score = spec.test == "score"
    if spec.fit_covariates:
        y_scan, Xs, Vs, null = y, X.matrix, V.matrix, covariate_fit
        if G is not None:
            h2 = (covariate_fit["h2"], covariate_fit["h2_se"])
        elif score:
            null = hlm
    else:
        one = np.ones((len(z), 1))
        y_scan, Xs, Vs = z, one, one
        null = None
        if G is not None and (not spec.no_h2_estimate or score):
            log.info("Estimating h2 in the null model")
            null = hetlmm.model(z, one, one, G).optimize_model(h2_init)
            if not null["success"]:
                raise InputError(f"the null mixed model of {inputs.phenotypes} with random effects"
                                 f" {inputs.random_gts} could not be fitted: {null.get('message')}")
            h2 = (null["h2"], null["h2_se"])
        elif G is None and score:
            null = hetlm.model(z, one, one).optimize_model()
    h2_start = spec.h2_init if (spec.no_h2_estimate or h2 is None) else h2[0]
    shift = float(np.mean(np.exp(-0.5 * (V.matrix @ hlm["beta"])))) if spec.fit_covariates else 1.0
    moments, score_null, adaptive = _residual_moments(z, y_scan, Xs, Vs, G,
                                                      null if G is not None and h2 is not None else None, shift)
    fit = PhenotypeFit(name, [i for i, s in zip(mt.ids, sel) if s], covariate_fit, mean, var,
                       None if spec.no_h2_estimate else h2, *kurt, moments)
    model = ScanModel(name, np.flatnonzero(sel), y_scan, Xs, Vs, G, G_center, G_scale, h2_start,
                      covariate_fit["beta"] if spec.fit_covariates else None,
                      None if null is None else NullFit.of(null), moments,
                      None if mt.exposures is None else np.ascontiguousarray(mt.exposures[sel]), score_null, adaptive)
    log.info(f"phenotype '{name}'{', ' + terms.label if terms.label else ''}: {adaptive.describe()}")
    _check_interaction_size(spec, model, inputs)
    return fit, model


def _check_interaction_size(spec: ModelSpec, model: ScanModel, inputs: Inputs) -> None:
    """A variant's model must have far fewer parameters than individuals: 10 per parameter."""
    if not spec.interactions:
        return
    k = model.X.shape[1] + model.V.shape[1] + 1 + len(spec.mean_terms) if spec.fit_covariates else \
        2 + len(spec.mean_terms) + 1
    if model.n < 10 * k:
        raise InputError(f"--interaction {', '.join(spec.interactions)}: each variant's model has {k} parameters,"
                         f" more than the {model.n} individuals of phenotype '{model.name}' can support (10 per"
                         " parameter)")


def _residual_moments(z: np.ndarray, y: np.ndarray, X, V, G, null_hlmm: dict | None, shift: float = 1.0) -> tuple:
    """Pooled moments of the standardised residuals of the SNP models' null: the null HLM's ``z``,
    or with random effects and a fitted null mixed model its ``e_i / sqrt(P_ii)``; that null mixed
    model prepared for score tests (None without it), which the score engine reuses; and the
    adaptive variance score of the same residuals (:mod:`hlmm.adaptive`). ``shift``: the change in
    the HLM's ``z`` per unit of a variant's ``add``."""
    if G is None or null_hlmm is None:
        return ResidualMoments.from_residuals(z), None, AdaptiveScore.from_residuals(z, shift, V)
    from hlmm.score import HLMMNull

    prepared = HLMMNull(y, X, V, G, null_hlmm["alpha"], null_hlmm["beta"], null_hlmm["h2"])
    zm = prepared.standardised_residuals()
    return (ResidualMoments.from_residuals(zm), prepared,
            AdaptiveScore.from_residuals(zm, prepared.mean_shift(), V))


def log_fit(fit: PhenotypeFit) -> None:
    """Log the null model's covariate effects and h2."""
    for what, (names_, est, se) in (("mean", fit.mean_effects), ("variance", fit.variance_effects)):
        log.info(f"null {what} effects ({fit.name}): "
                 + ", ".join(f"{k} {e:.6g} (se {s:.3g})" for k, e, s in zip(names_, est, se)))
    if fit.h2 is not None:
        log.info(f"null h2 ({fit.name}): {fit.h2[0]:.6g} (se {fit.h2[1]:.3g})")


def kurtosis_warning(fit: PhenotypeFit, n: int) -> str | None:
    """A warning when the null residuals' kurtosis is beyond what normal data show at this n."""
    if np.isfinite(fit.kurtosis_p) and fit.kurtosis_p < 1e-6:
        return (f"phenotype '{fit.name}': the null model's standardised residuals have excess kurtosis"
                f" {fit.kurtosis:.3g} (normal data: 0 ± {np.sqrt(24 / n):.2g} at n = {n}; p = {fit.kurtosis_p:.2g});"
                " the model-based var_se, var_pval and av_pval assume normal residuals and are too small for this"
                " trait; read var_pval_adapt (the adaptive test: what hlmm_sumstats, the plots and this log use by"
                " default), var_pval_robust and av_pval_robust (hlmm_dispersion's), use --robust (sandwich var_se),"
                " or an inverse-normal transform of the phenotype")
    return None


def fit_model(inputs: Inputs, h2_init: float = 0.05, robust: bool = False) -> PhenotypeFit:
    """Fit one HLM (or, with random effects, HLMM) with covariates to one phenotype.

    Individuals are matched across the files in the phenotype file's order. Covariate effects
    are reported in the covariates' own units.

    Parameters
    ----------
    inputs : Inputs
    h2_init : float
        Starting value of h2 (with random effects).
    robust : bool
        Sandwich (Huber-White) standard errors of the HLM's effects (:mod:`hlmm.robust`); not
        available with random effects.

    Returns
    -------
    PhenotypeFit
        ``covariate_fit`` is the model's fit; ``h2`` set with random effects.
    """
    ModelSpec(random_effects=bool(inputs.random_gts), robust=robust, h2_init=h2_init)  # the scans' rules
    if len(inputs.phen_index) != 1 or inputs.all_phenotypes:
        raise InputError("fit_hlmm_model fits one phenotype; give one --phen_index")
    mt = match_inputs(inputs, None, "")
    name = mt.names[0]
    y = mt.phenotype[:, 0]
    sel = ~np.isnan(y)
    y = y[sel]
    _check_phenotype(y, name, inputs.phenotypes)
    X, V = _designs(mt, sel, inputs)
    if mt.random is None:
        fit = hetlm.model(y, X.matrix, V.matrix).optimize_model()
        what, h2 = "model", None
    else:
        G, kept, _, _ = _random_design(mt.random, sel, inputs.random_gts)
        if (~kept).any():
            log.info(f"dropped {int((~kept).sum())} random-effect columns with no calls or no variance")
        fit = hetlmm.model(y, X.matrix, V.matrix, G).optimize_model(h2_init)
        what, h2 = "mixed model", None
    if not fit["success"]:
        raise _null_failure(fit, y, X, V, inputs, what)
    if mt.random is not None:
        h2 = (fit["h2"], fit["h2_se"])
    alpha_cov, beta_cov = fit["alpha_cov"], fit["beta_cov"]
    if robust:
        from hlmm.robust import hlm_sandwich

        cov = hlm_sandwich(y, X.matrix, V.matrix, fit["alpha"], fit["beta"])
        c = X.matrix.shape[1]
        alpha_cov, beta_cov = cov[:c, :c], cov[c:, c:]
    mean = (X.names, *X.to_original_units(fit["alpha"], alpha_cov))
    var = (V.names, *V.to_original_units(fit["beta"], beta_cov))
    return PhenotypeFit(name, [i for i, s in zip(mt.ids, sel) if s], fit, mean, var, h2)
