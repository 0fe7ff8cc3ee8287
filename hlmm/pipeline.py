"""The analyses as library calls: a genome scan (:func:`prepare_scan`, :func:`run_scan`) and one model fit
(:func:`fit_model`), from paths and explicit options. The command-line programs only parse
arguments, call these and log.

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
import os
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from hlmm import __version__, hetlm, hetlmm, results
from hlmm.columns import MODELS, names
from hlmm.covariates import Design, is_constant, make_design, random_effects_design
from hlmm.io import (
    IdRole,
    InputError,
    OutputError,
    match_samples,
    open_genotypes,
    read_random_effects,
    read_sample_list,
    read_table,
    read_variant_list,
)
from hlmm.robust import ResidualMoments
from hlmm.runner import ScanJob, run_blocks
from hlmm.runstate import RunState, fingerprint
from hlmm.scan import STATUS, ScanModel, ScanSettings, make_scanner

__all__ = ["Inputs", "ScanOptions", "prepare_scan", "run_scan", "scan_arrays", "fit_model", "PhenotypeFit",
           "Prepared"]

log = logging.getLogger("hlmm")


@dataclass
class Inputs:
    """The input files of an analysis.

    Attributes
    ----------
    phenotypes : str
        Phenotype file ``FID IID y1 y2 ...``.
    genotypes : str, optional
        Genotype file to scan (``.bed``, ``.pgen``, ``.bgen``).
    phen_index : list of int
        Phenotype columns (1-based); ``all_phenotypes`` takes every column.
    mean_covar, var_covar : str, optional
        Covariate files ``FID IID x1 x2 ...``.
    random_gts : str, optional
        Genotype file (or, with ``random_gts_txt``, a text table) of the random effects.
    sample : str, optional
        ``.sample`` file of a ``.bgen``.
    keep, remove : str, optional
        Individuals to keep or remove (``FID IID`` per line).
    extract, exclude : str, optional
        Variant IDs to keep or remove (one per line).
    chrom : str, optional
    from_bp, to_bp : int, optional
        Keep variants of this chromosome and base-pair range.
    """

    phenotypes: str
    genotypes: str | None = None
    phen_index: list = field(default_factory=lambda: [1])
    all_phenotypes: bool = False
    mean_covar: str | None = None
    var_covar: str | None = None
    random_gts: str | None = None
    random_gts_txt: bool = False
    missing_char: str = "NA"
    sample: str | None = None
    keep: str | None = None
    remove: str | None = None
    extract: str | None = None
    exclude: str | None = None
    chrom: str | None = None
    from_bp: int | None = None
    to_bp: int | None = None


@dataclass
class ScanOptions:
    """Options of a scan.

    Attributes
    ----------
    start, end : int
        Variant indices ``start..end-1`` of the genotype file (``end`` is clipped to the file).
    whole_chr : bool
        All variants of the file.
    settings : ScanSettings
        Filters, engine, test, robust standard errors.
    fit_covariates : bool
        Fit the covariates for each SNP instead of adjusting the phenotype by the null model.
    h2_init : float
        Starting h2 of the null HLMM.
    no_h2_estimate : bool
        Start each SNP's h2 at ``h2_init`` (and write no ``null_h2.txt``).
    block_size : int, optional
        SNPs per block (default: chosen by the scanner).
    """

    start: int = 0
    end: int | None = None
    whole_chr: bool = False
    settings: ScanSettings = field(default_factory=ScanSettings)
    fit_covariates: bool = False
    h2_init: float = 0.05
    no_h2_estimate: bool = False
    block_size: int | None = None


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


@dataclass
class Prepared:
    """A scan ready to run: the genotype source, the selected variants and the scanner."""

    source: object
    variants: np.ndarray  # selected variant indices
    start: int
    stop: int
    rows: np.ndarray  # sample rows of the scan (union over phenotypes)
    fits: list  # PhenotypeFit per phenotype
    scanner: object
    inputs: Inputs
    options: ScanOptions
    notes: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Reading and matching
# ----------------------------------------------------------------------------------------------
def _phenotype_columns(table, inputs: Inputs) -> list:
    k = table.values.shape[1]
    cols = list(range(1, k + 1)) if inputs.all_phenotypes else list(inputs.phen_index)
    for c in cols:
        if not 1 <= c <= k:
            raise InputError(f"phenotype file {table.path}: --phen_index {c} is out of range"
                             f" (the file has {k} phenotype{'s' if k > 1 else ''})")
    if len(set(cols)) != len(cols):
        raise InputError(f"--phen_index: phenotype columns {cols} repeat")
    return cols


def _tables(inputs: Inputs) -> dict:
    """Phenotype and covariate tables by role."""
    out = {"phenotype": read_table(inputs.phenotypes, inputs.missing_char, "phenotype file")}
    if inputs.mean_covar:
        out["mean_covar"] = read_table(inputs.mean_covar, inputs.missing_char, "mean covariate file")
    if inputs.var_covar:
        out["var_covar"] = read_table(inputs.var_covar, inputs.missing_char, "variance covariate file")
    return out


@dataclass
class _Matched:
    ids: list
    rows: np.ndarray  # into the reference
    phenotype: np.ndarray  # (n, P) values
    names: list
    mean: np.ndarray | None
    var: np.ndarray | None
    mean_names: list | None
    var_names: list | None
    random: np.ndarray | None  # raw random-effect values (n, l0), NaN missing


def _match(inputs: Inputs, reference_ids: list | None, reference_what: str) -> _Matched:
    tables = _tables(inputs)
    pheno = tables["phenotype"]
    cols = _phenotype_columns(pheno, inputs)
    pvals = pheno.values[:, [c - 1 for c in cols]]
    roles = {"phenotype": IdRole(pheno.ids, f"phenotype file {pheno.path}", ~np.isnan(pvals).all(axis=1))}
    for role in ("mean_covar", "var_covar"):
        if role in tables:
            t = tables[role]
            roles[role] = IdRole(t.ids, f"{t.what} {t.path}", ~np.isnan(t.values).any(axis=1))
    random_source = random_table = None
    if inputs.random_gts:
        if inputs.random_gts_txt:
            random_table = read_table(inputs.random_gts, inputs.missing_char, "random effects file")
            roles["random"] = IdRole(random_table.ids, f"random effects file {inputs.random_gts}")
        else:
            random_source = open_genotypes(inputs.random_gts, what="random effects file")
            roles["random"] = IdRole(random_source.samples, f"random effects file {random_source.path}")
    if reference_ids is None:
        reference_ids, reference_what = pheno.ids, f"phenotype file {pheno.path}"
    keep = read_sample_list(inputs.keep, "--keep file") if inputs.keep else None
    remove = read_sample_list(inputs.remove, "--remove file") if inputs.remove else None
    m = match_samples(reference_ids, reference_what, roles, keep, remove,
                      f"--keep {inputs.keep}", f"--remove {inputs.remove}")
    for line in m.log:
        log.info(line)
    random = None
    if random_source is not None:
        idx = m.index["random"]
        order = np.argsort(idx, kind="stable")
        random = np.empty((len(idx), random_source.n_variants))
        random[order] = read_random_effects(random_source, idx[order])
    elif random_table is not None:
        random = random_table.values[m.index["random"]]
    return _Matched(
        m.ids, m.rows, pvals[m.index["phenotype"]], [pheno.names[c - 1] for c in cols],
        tables["mean_covar"].values[m.index["mean_covar"]] if "mean_covar" in tables else None,
        tables["var_covar"].values[m.index["var_covar"]] if "var_covar" in tables else None,
        tables["mean_covar"].names if "mean_covar" in tables else None,
        tables["var_covar"].names if "var_covar" in tables else None,
        random,
    )


# ----------------------------------------------------------------------------------------------
# Null models
# ----------------------------------------------------------------------------------------------
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


def _designs(mt: _Matched, sel: np.ndarray, inputs: Inputs) -> tuple[Design, Design]:
    n = int(sel.sum())
    try:
        X = make_design(None if mt.mean is None else mt.mean[sel], mt.mean_names, n,
                        f"mean covariate file {inputs.mean_covar}")
        V = make_design(None if mt.var is None else mt.var[sel], mt.var_names, n,
                        f"variance covariate file {inputs.var_covar}")
    except ValueError as e:
        raise InputError(str(e)) from None
    return X, V


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


def _random_design(raw: np.ndarray, sel: np.ndarray, path: str):
    G, kept, center, scale = random_effects_design(raw[sel], copy=True, return_scaling=True)
    if G.shape[1] == 0:
        raise InputError(f"random effects file {path}: no column has calls and variance")
    return G, kept, center, scale


def _phenotype_model(mt: _Matched, p: int, inputs: Inputs, options: ScanOptions, scan: bool):
    """Null fits and the scan model of phenotype ``p``."""
    name = mt.names[p]
    yall = mt.phenotype[:, p]
    sel = ~np.isnan(yall)
    n_missing = int((~sel).sum())
    if n_missing and len(mt.names) > 1:
        log.info(f"phenotype '{name}': dropped {n_missing} individuals missing it; {int(sel.sum())} used")
    y = yall[sel]
    _check_phenotype(y, name, inputs.phenotypes)
    X, V = _designs(mt, sel, inputs)
    G = G_center = G_scale = None
    if mt.random is not None:
        G, kept, G_center, G_scale = _random_design(mt.random, sel, inputs.random_gts)
        if (~kept).any():
            log.info(f"dropped {int((~kept).sum())} random-effect columns with no calls or no variance")
        log.info(f"{G.shape[1]} random-effect columns, mean-imputed, z-scored and scaled by 1/sqrt({G.shape[1]})")
    hlm = hetlm.model(y, X.matrix, V.matrix).optimize_model()
    if not hlm["success"]:
        raise _null_failure(hlm, y, X, V, inputs, "model")
    z = (y - X.matrix @ hlm["alpha"]) * np.exp(-0.5 * (V.matrix @ hlm["beta"]))
    kurt = _excess_kurtosis(z)
    settings = options.settings
    if options.fit_covariates and G is not None:
        covariate_fit = hetlmm.model(y, X.matrix, V.matrix, G).optimize_model(options.h2_init)
        if not covariate_fit["success"]:
            raise _null_failure(covariate_fit, y, X, V, inputs, "mixed model")
    else:
        covariate_fit = hlm
    # as in 1.2.0a1, the covariate effects written are the null HLM's, in every mode
    mean = (X.names, *X.to_original_units(hlm["alpha"], hlm["alpha_cov"]))
    var = (V.names, *V.to_original_units(hlm["beta"], hlm["beta_cov"]))
    h2 = None
    if options.fit_covariates:
        y_scan, Xs, Vs, null = y, X.matrix, V.matrix, covariate_fit
        if G is not None:
            h2 = (covariate_fit["h2"], covariate_fit["h2_se"])
        elif scan and settings.test == "score":
            null = hlm
    else:
        y_scan, Xs, Vs = z, None, None
        null = None
        one = np.ones((len(z), 1))
        if G is not None and (not options.no_h2_estimate or settings.test == "score"):
            log.info("Estimating h2 in the null model")
            null = hetlmm.model(z, one, one, G).optimize_model(options.h2_init)
            if not null["success"]:
                raise InputError(f"the null mixed model of {inputs.phenotypes} with random effects"
                                 f" {inputs.random_gts} could not be fitted: {null.get('message')}")
            h2 = (null["h2"], null["h2_se"])
        elif G is None and scan and settings.test == "score":
            null = hetlm.model(z, one, one).optimize_model()
    h2_start = options.h2_init if (options.no_h2_estimate or h2 is None) else h2[0]
    moments = _residual_moments(z, y_scan, Xs, Vs, G, null if G is not None and h2 is not None else None)
    fit = PhenotypeFit(name, [i for i, s in zip(mt.ids, sel) if s], covariate_fit, mean, var,
                       None if options.no_h2_estimate else h2, *kurt, moments)
    model = ScanModel(name, np.flatnonzero(sel), y_scan, Xs, Vs, G, G_center, G_scale, h2_start,
                      covariate_fit["beta"] if options.fit_covariates else None, null, moments)
    return fit, model


def _residual_moments(z: np.ndarray, y: np.ndarray, X, V, G, null_hlmm: dict | None) -> ResidualMoments:
    """Pooled moments of the standardised residuals of the SNP models' null: the null HLM's ``z``,
    or with random effects and a fitted null mixed model its ``e_i / sqrt(P_ii)``."""
    if G is None or null_hlmm is None:
        return ResidualMoments.from_residuals(z)
    from hlmm.score import HLMMNull

    one = np.ones((len(y), 1))
    X, V = (one if X is None else X), (one if V is None else V)
    return ResidualMoments.from_residuals(
        HLMMNull(y, X, V, G, null_hlmm["alpha"], null_hlmm["beta"], null_hlmm["h2"]).standardised_residuals())


def _log_fit(fit: PhenotypeFit) -> None:
    for what, (names_, est, se) in (("mean", fit.mean_effects), ("variance", fit.variance_effects)):
        log.info(f"null {what} effects ({fit.name}): "
                 + ", ".join(f"{k} {e:.6g} (se {s:.3g})" for k, e, s in zip(names_, est, se)))
    if fit.h2 is not None:
        log.info(f"null h2 ({fit.name}): {fit.h2[0]:.6g} (se {fit.h2[1]:.3g})")


def _kurtosis_warning(fit: PhenotypeFit, n: int) -> str | None:
    """A warning when the null residuals' kurtosis is beyond what normal data show at this n."""
    if np.isfinite(fit.kurtosis_p) and fit.kurtosis_p < 1e-6:
        return (f"phenotype '{fit.name}': the null model's standardised residuals have excess kurtosis"
                f" {fit.kurtosis:.3g} (normal data: 0 ± {np.sqrt(24 / n):.2g} at n = {n}; p = {fit.kurtosis_p:.2g});"
                " the model-based var_se, var_pval and av_pval assume normal residuals and are too small for this"
                " trait; read var_pval_robust and av_pval_robust (what hlmm_sumstats, hlmm_dispersion and the plots"
                " use by default), use --robust (sandwich var_se), or an inverse-normal transform of the phenotype")
    return None


# ----------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------
def _select_variants(source, inputs: Inputs, options: ScanOptions) -> tuple[np.ndarray, int, int]:
    m = source.n_variants
    if options.whole_chr:
        start, stop = 0, m
    else:
        start, stop = options.start, m if options.end is None else options.end
        if start < 0:
            raise InputError(f"genotype file {source.path}: start {start} is negative")
        if start >= m:
            raise InputError(f"genotype file {source.path}: start {start} is past the last variant"
                             f" (the file has {m} variants, indices 0..{m - 1})")
        if start >= stop:
            raise InputError(f"genotype file {source.path}: start {start} is not before end {stop}")
        if stop > m:
            log.info(f"end {stop} is past the last variant; clipped to {m}")
            stop = m
    idx = np.arange(start, stop)
    var = source.variants
    steps = []
    if inputs.extract:
        keep = read_variant_list(inputs.extract, "--extract file")
        idx = idx[np.isin(var.id[idx], list(keep))]
        steps.append(f"--extract {inputs.extract}")
    if inputs.exclude:
        drop = read_variant_list(inputs.exclude, "--exclude file")
        idx = idx[~np.isin(var.id[idx], list(drop))]
        steps.append(f"--exclude {inputs.exclude}")
    if inputs.chrom is not None:
        idx = idx[var.chrom[idx] == str(inputs.chrom)]
        steps.append(f"--chr {inputs.chrom}")
    if inputs.from_bp is not None:
        idx = idx[var.pos[idx] >= inputs.from_bp]
        steps.append(f"--from_bp {inputs.from_bp}")
    if inputs.to_bp is not None:
        idx = idx[var.pos[idx] <= inputs.to_bp]
        steps.append(f"--to_bp {inputs.to_bp}")
    if steps:
        log.info(f"{len(idx)} of variants {start}..{stop - 1} kept by " + ", ".join(steps))
        if len(idx) == 0:
            raise InputError(f"no variants of {source.path} in {start}..{stop - 1} remain after " + ", ".join(steps))
    return idx, start, stop


# ----------------------------------------------------------------------------------------------
# The scan
# ----------------------------------------------------------------------------------------------
def prepare_scan(inputs: Inputs, options: ScanOptions) -> Prepared:
    """Read and match the inputs, fit the null models and choose the scanner.

    Parameters
    ----------
    inputs : Inputs
        With ``genotypes``.
    options : ScanOptions

    Returns
    -------
    Prepared

    Raises
    ------
    InputError
        Any problem with the inputs, in one line.
    """
    if options.h2_init < 0 or not np.isfinite(options.h2_init):
        raise InputError(f"--h2_init must be finite and non-negative, got {options.h2_init}")
    source = open_genotypes(inputs.genotypes, inputs.sample)
    variants, start, stop = _select_variants(source, inputs, options)
    reference_what = f"genotype file {source.path}"
    mt = _match(inputs, source.samples, reference_what)
    fits, models, notes = [], [], []
    for p in range(len(mt.names)):
        fit, model = _phenotype_model(mt, p, inputs, options, scan=True)
        _log_fit(fit)
        warning = _kurtosis_warning(fit, model.n)
        if warning and not options.settings.robust:
            notes.append(warning)
        fits.append(fit)
        models.append(model)
    has_dosages = source.has_dosages and not options.settings.hard_calls
    try:
        scanner = make_scanner(models, options.settings, has_dosages)
    except ValueError as e:
        raise InputError(str(e)) from None
    return Prepared(source, variants, start, stop, mt.rows, fits, scanner, inputs, options, notes)


def output_prefixes(outprefix: str, prepared: Prepared) -> list:
    """One output prefix per phenotype: ``outprefix`` itself for one phenotype, else
    ``outprefix.<phenotype name>``."""
    if len(prepared.fits) == 1:
        return [outprefix]
    names_ = [f.name for f in prepared.fits]
    bad = [n for n in names_ if not n or os.sep in n or n in (".", "..")]
    if bad:
        raise InputError(f"phenotype names {bad} cannot be used in file names")
    return [f"{outprefix}.{name}" for name in names_]


def run_options(prepared: Prepared) -> dict:
    """The options of a run that affect its results (for its fingerprint)."""
    o, s, i = prepared.options, prepared.options.settings, prepared.inputs
    return {"start": o.start, "end": o.end, "whole_chr": o.whole_chr, "missing_char": i.missing_char,
            "fit_covariates": o.fit_covariates, "h2_init": o.h2_init, "min_maf": s.min_maf,
            "max_missing": s.max_missing, "no_h2_estimate": o.no_h2_estimate, "engine": s.engine,
            "test": s.test, "refit": s.refit, "robust": s.robust, "hard_calls": s.hard_calls,
            "random_gts_txt": i.random_gts_txt, "chr": i.chrom, "from_bp": i.from_bp, "to_bp": i.to_bp}


def run_files(prepared: Prepared) -> dict:
    i = prepared.inputs
    files = {"genotypes": prepared.source.files(), "phenotype": i.phenotypes, "mean_covar": i.mean_covar,
             "var_covar": i.var_covar, "keep": i.keep, "remove": i.remove, "extract": i.extract,
             "exclude": i.exclude, "sample": i.sample}
    if i.random_gts:
        if i.random_gts_txt:
            files["random_txt"] = i.random_gts
        else:
            files["random"] = open_genotypes(i.random_gts, what="random effects file").files()
    return files


def write_null_outputs(prefix: str, fit: PhenotypeFit, inputs: Inputs, no_covariate_estimates: bool) -> list:
    """Write the null model's covariate effects and h2 (atomically); returns the paths."""
    written = []
    if not no_covariate_estimates:
        if inputs.mean_covar:
            results.write_effects(prefix + ".null_mean_effects.txt", *fit.mean_effects)
            written.append(prefix + ".null_mean_effects.txt")
        if inputs.var_covar:
            results.write_effects(prefix + ".null_variance_effects.txt", *fit.variance_effects)
            written.append(prefix + ".null_variance_effects.txt")
    if fit.h2 is not None:
        results.write_effects(prefix + ".null_h2.txt", ["h2"], [fit.h2[0]], [fit.h2[1]])
        written.append(prefix + ".null_h2.txt")
    return written


@dataclass
class ScanSummary:
    """What a run did."""

    rows: int = 0
    status_counts: dict = field(default_factory=dict)
    failed_blocks: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    finished_before: bool = False
    resumed_from: int | None = None
    elapsed: float = 0.0
    #: One :class:`hlmm.results.Tally` per output, over the rows fitted in this run.
    tallies: list = field(default_factory=list)


#: What the log reports of a finished scan (:class:`hlmm.results.Tally`): label -> column.
TALLY_COLUMNS = {"add": "add_pval", "var": "var_pval_robust", "var (model-based SE)": "var_pval"}


def default_jobs(scanner, n_blocks: int) -> int:
    """Worker processes when the user gives none: one per available core for scanners of slow,
    per-SNP mixed-model fits with enough blocks to share (results do not depend on it), else 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return cores if scanner.per_core and n_blocks >= 2 * cores else 1


def run_scan(prepared: Prepared, outprefix: str, *, n_jobs: int | None = None, dask_scheduler: str | None = None,
             resume: bool = False, append: bool = False, no_covariate_estimates: bool = False,
             progress=None) -> ScanSummary:
    """Scan the selected variants and write one results file per phenotype.

    Parameters
    ----------
    prepared : Prepared
        From :func:`prepare_scan`.
    outprefix : str
        Output prefix (``outprefix.models.gz``, or ``outprefix.<phenotype>.models.gz`` for
        several phenotypes).
    n_jobs : int, optional
        Worker processes (default: :func:`default_jobs`).
    dask_scheduler : str, optional
        Address of a Dask scheduler to send blocks to.
    resume : bool
        Continue an interrupted run (or do nothing for a finished one).
    append : bool
        Append rows to finished results of the same analysis (another range).
    no_covariate_estimates : bool
        Do not write the null model's covariate effects.
    progress : object, optional
        With ``start(total, done)``, ``update(k)`` and ``close()``.

    Returns
    -------
    ScanSummary
    """
    t0 = time.monotonic()
    prefixes = output_prefixes(outprefix, prepared)
    states = [RunState(p) for p in prefixes]
    for st in states:
        st.check_paths()
    columns = names(MODELS)
    header = results.header_member(columns)
    files = run_files(prepared)
    total = len(prepared.variants)
    summary = ScanSummary(outputs=[st.out for st in states],
                          tallies=[results.Tally(TALLY_COLUMNS) for _ in states])
    try:
        for st in states:
            st.lock()
        plans = []
        for st, fit in zip(states, prepared.fits):
            run = fingerprint(files, {**run_options(prepared), "phenotype": fit.name})
            plans.append(st.plan(run, total, prepared.start, prepared.stop, resume, append, header))
            st.state.setdefault("se", "robust" if prepared.options.settings.robust else "model")
            st.state.setdefault("test", prepared.options.settings.test)
        if all(p == "done" for p in plans):
            for st in states:
                log.info(f"--resume: {st.out} is already complete ({total} variants); nothing to do")
            summary.finished_before = True
            return summary
        if not append:
            for prefix, fit in zip(prefixes, prepared.fits):
                write_null_outputs(prefix, fit, prepared.inputs, no_covariate_estimates)
        first = min(st.position if p != "done" else total for st, p in zip(states, plans))
        if resume and first > 0:
            summary.resumed_from = first
            log.info(f"resuming at variant {first} of {total}")
        block_size = prepared.options.block_size or prepared.scanner.block_size
        blocks = [(b0, min(b0 + block_size, total)) for b0 in range(first, total, block_size)]
        variants = prepared.source.variants
        counts = dict.fromkeys(STATUS, 0)
        if progress is not None:
            progress.start(total, first)

        def on_block(b0: int, b1: int, outs: list, failure: str | None) -> None:
            idx = prepared.variants[b0:b1]
            info = {"SNP": variants.id[idx], "chr": variants.chrom[idx], "pos": variants.pos[idx],
                    "A1": variants.a1[idx], "A2": variants.a2[idx]}
            for st, plan, o, fit, tally in zip(states, plans, outs, prepared.fits, summary.tallies):
                if plan == "done" or st.position >= b1:
                    continue  # this output already holds the block (an earlier run wrote it)
                for j, why in o["problems"]:
                    log.warning(f"variant {info['SNP'][j]} ({fit.name}): fit failed ({why}); its row has NaN estimates")
                for j in np.flatnonzero(o["status"] == STATUS["multiallelic"]):
                    log.info(f"variant {info['SNP'][j]}: {variants.n_alleles[idx[j]]} alleles;"
                             " its row has NaN estimates")
                for k, code in STATUS.items():
                    counts[k] += int((o["status"] == code).sum())
                cols = results.stats_table(info, o, fit.moments)
                tally.update(cols)
                member = results.block_member(cols, columns)
                st.write_block(member, b1 - b0, [int(b0), int(b1), failure] if failure else None)
            summary.rows += b1 - b0
            if progress is not None:
                progress.update(b1 - b0)

        job = ScanJob(prepared.source, prepared.rows, prepared.scanner, prepared.variants,
                      prepared.options.settings.hard_calls)
        if n_jobs is None:
            n_jobs = default_jobs(prepared.scanner, len(blocks))
        summary.failed_blocks = run_blocks(job, blocks, on_block, n_jobs=n_jobs, dask_scheduler=dask_scheduler)
        for st in states:
            st.finish()
        summary.status_counts = counts
    except OutputError as e:
        done = [st for st in states if st.state.get("position", 0) > 0]
        for st in states:
            st.discard()
        if done:
            raise OutputError(f"{e}; the {done[0].position} rows written so far are kept in {done[0].part}:"
                              " make room and rerun with --resume to finish") from None
        raise
    finally:
        for st in states:
            st.close()
            st.unlock()
        if progress is not None:
            progress.close()
    summary.elapsed = time.monotonic() - t0
    return summary


def scan_arrays(y, genotypes, *, mean_covar=None, var_covar=None, random=None,
                options: ScanOptions | None = None) -> tuple[dict, PhenotypeFit]:
    """Scan genotypes held in memory: the analysis of ``hlmm_chr`` on arrays instead of files.

    Parameters
    ----------
    y : array_like, shape (n,)
        Phenotype (NaN for missing).
    genotypes : array_like, shape (n, m)
        Copies of the counted allele or dosages, NaN for missing calls.
    mean_covar, var_covar : array_like, shape (n, k), optional
        Covariates (an intercept is added).
    random : array_like, shape (n, l), optional
        Random-effect genotypes (mean-imputed, z-scored and scaled as the scripts do).
    options : ScanOptions, optional

    Returns
    -------
    columns : dict
        Every output column of ``outprefix.models.gz``, as arrays of length m.
    fit : PhenotypeFit
        The null fits.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> g = rng.binomial(2, 0.3, (1000, 5)).astype(float)
    >>> y = 0.4 * g[:, 0] + rng.standard_normal(1000)
    >>> cols, fit = scan_arrays(y, g)
    >>> bool(cols["add_pval"][0] > 5), list(cols)[:4]
    (True, ['SNP', 'n', 'frequency', 'likelihood'])
    """
    from hlmm.io import ArraySource
    from hlmm.results import stats_table

    options = options or ScanOptions()
    y = np.asarray(y, dtype=float).reshape(-1)
    source = ArraySource(genotypes)
    n = len(y)
    if source.n_samples != n:
        raise ValueError(f"genotypes have {source.n_samples} rows but y has {n} observations")

    def cov(a):
        return None if a is None else np.asarray(a, dtype=float).reshape(n, -1)

    mean, var = cov(mean_covar), cov(var_covar)
    complete = np.ones(n, dtype=bool)
    for a in (mean, var):
        if a is not None:
            complete &= ~np.isnan(a).any(axis=1)
    rows = np.flatnonzero(complete)
    def labels(a, prefix):
        return None if a is None else [f"{prefix}{j + 1}" for j in range(a.shape[1])]

    mt = _Matched([source.samples[i] for i in rows], rows, y[rows, None], ["y"],
                  None if mean is None else mean[rows], None if var is None else var[rows], labels(mean, "x"),
                  labels(var, "v"), None if random is None else np.asarray(random, dtype=float)[rows])
    inputs = Inputs("<array>", "<array>", mean_covar="<array>" if mean is not None else None,
                    var_covar="<array>" if var is not None else None,
                    random_gts="<array>" if random is not None else None)
    fit, model = _phenotype_model(mt, 0, inputs, options, scan=True)
    scanner = make_scanner([model], options.settings, source.has_dosages and not options.settings.hard_calls)
    variants, _, _ = _select_variants(source, inputs, options)
    size = options.block_size or scanner.block_size
    parts = []
    for b0 in range(0, len(variants), size):
        idx = variants[b0 : b0 + size]
        block = source.read_block(rows, idx, options.settings.hard_calls)
        info = {"SNP": source.variants.id[idx], "chr": source.variants.chrom[idx], "pos": source.variants.pos[idx],
                "A1": source.variants.a1[idx], "A2": source.variants.a2[idx]}
        parts.append(stats_table(info, scanner.scan(block)[0], fit.moments))
    columns = {c: np.concatenate([p[c] for p in parts]) for c in names(MODELS)}
    return columns, fit


# ----------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------
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
    if h2_init < 0 or not np.isfinite(h2_init):
        raise InputError(f"--h2_init must be finite and non-negative, got {h2_init}")
    if robust and inputs.random_gts:
        raise InputError("--robust with --random_gts: sandwich standard errors of a mixed model's fit are not valid"
                         " (the individuals' scores are correlated through the random effects)")
    if len(inputs.phen_index) != 1 or inputs.all_phenotypes:
        raise InputError("fit_hlmm_model fits one phenotype; give one --phen_index")
    mt = _match(inputs, None, "")
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


def version() -> str:
    return __version__
