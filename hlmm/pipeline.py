"""The analyses as library calls: a genome scan (:func:`prepare_scan`, :func:`run_scan`, and
:func:`scan_arrays` for arrays in memory) and one model fit (:func:`fit_model`), from paths and
explicit options. The command-line programs only parse arguments, call these and log.

A scan goes through three stages, each in its own module:

1. **inputs and matching** (:mod:`hlmm.inputs`): read the phenotype, covariate and random-effect
   files, match their individuals with the genotype file's, select the variants;
2. **null models** (:mod:`hlmm.nulls`): per phenotype, the null HLM (and HLMM), the default-mode
   adjustment, the residuals' moments, and the prepared model of the variants;
3. **the run** (here): the scan's :class:`hlmm.model.ModelSpec` is made once from the options,
   the engine chosen from it (:func:`hlmm.engines.make_scanner`), and blocks of variants go
   through :func:`hlmm.runner.run_blocks` (serially, in worker processes or on a Dask cluster) to
   one results file per phenotype (:mod:`hlmm.runstate`), or, for :func:`scan_arrays`, to arrays.
   Both go through the same block loop (:func:`_scan_blocks`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from hlmm import results
from hlmm.columns import MODELS, interaction_columns, names
from hlmm.engines import STATUS, make_scanner
from hlmm.genome import plink_code
from hlmm.inputs import Inputs, match_inputs, select_variants
from hlmm.io import InputError, OutputError, open_genotypes
from hlmm.io.loco import loco_line, read_loco, read_pred_list
from hlmm.model import ModelSpec
from hlmm.nulls import NO_TERMS, GroupTerms, PhenotypeFit, fit_model, kurtosis_warning, log_fit, phenotype_model
from hlmm.runner import ScanJob, open_executor, read_size, run_blocks
from hlmm.runstate import RunState, fingerprint
from hlmm.scan import ScanSettings

__all__ = ["Inputs", "ScanOptions", "prepare_scan", "run_scan", "scan_arrays", "fit_model", "PhenotypeFit",
           "Prepared", "ScanSummary"]

log = logging.getLogger("hlmm")


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
    pred_offset : bool
        Subtract the ``--pred`` predictions (coefficient 1) instead of fitting their coefficient.
    no_x_sex : bool
        No sex adjustment on chrX.
    """

    start: int = 0
    end: int | None = None
    whole_chr: bool = False
    settings: ScanSettings = field(default_factory=ScanSettings)
    fit_covariates: bool = False
    h2_init: float = 0.05
    no_h2_estimate: bool = False
    block_size: int | None = None
    pred_offset: bool = False
    no_x_sex: bool = False


@dataclass
class VariantGroup:
    """Variants whose models share their null models: all variants, or, with per-chromosome terms
    (``--pred``, sex on chrX), those of one chromosome (:class:`hlmm.nulls.GroupTerms`)."""

    terms: GroupTerms
    fits: list  # PhenotypeFit per phenotype
    models: list  # ScanModel per phenotype
    scanner: object


@dataclass
class Prepared:
    """A scan ready to run: the model, the genotype source, the selected variants, their groups and
    the scanner."""

    spec: ModelSpec
    source: object
    variants: np.ndarray  # selected variant indices
    start: int
    stop: int
    rows: np.ndarray  # sample rows of the scan (union over phenotypes)
    groups: list  # VariantGroup
    group_of: np.ndarray  # group of each selected variant
    inputs: Inputs
    options: ScanOptions
    random_files: object = None  # the random-effect inputs' files, for the fingerprint
    notes: list = field(default_factory=list)
    checked_outprefix: str | None = None  # whose outputs prepare_scan checked
    loco_files: list = field(default_factory=list)  # the prediction list and files, for the fingerprint

    @property
    def has_dosages(self) -> bool:
        """Whether blocks hold dosages (the file has them and they are not rounded)."""
        return self.source.has_dosages and not self.spec.hard_calls

    @property
    def fits(self) -> list:
        """The null fits of the phenotypes (of the first group: the null-effect files and the log)."""
        return self.groups[0].fits

    @property
    def scanner(self):
        """What computes a block: the group's scanner (blocks never span groups)."""
        if len(self.groups) == 1:
            return self.groups[0].scanner
        return GroupedScanner([g.scanner for g in self.groups], self.variants, self.group_of)


class GroupedScanner:
    """Blocks of several groups of variants: each to its group's scanner (blocks never span groups)."""

    def __init__(self, scanners: list, variants: np.ndarray, group_of: np.ndarray) -> None:
        self.scanners = scanners
        # runs of consecutive selected variants of one group: their first variant and group
        starts = np.concatenate([[0], np.flatnonzero(np.diff(group_of)) + 1]).astype(np.int64)
        self.run_first, self.run_group = variants[starts], group_of[starts]
        first = scanners[0]
        self.spec, self.models, self.block_size, self.per_core = first.spec, first.models, first.block_size, \
            first.per_core
        self.description = first.description

    def _scanner_of(self, variant: int):
        run = int(np.searchsorted(self.run_first, variant, side="right")) - 1
        return self.scanners[int(self.run_group[run])]

    def scan(self, block) -> list:
        return self._scanner_of(block.index[0]).scan(block)

    def scan_parts(self, read, parts: list) -> list:
        first = parts[0][0] if len(parts[0]) else self.run_first[0]
        return self._scanner_of(first).scan_parts(read, parts)


# ----------------------------------------------------------------------------------------------
# Preparing
# ----------------------------------------------------------------------------------------------
def prepare_scan(inputs: Inputs, options: ScanOptions, outprefix: str | None = None) -> Prepared:
    """Read and match the inputs, fit the null models and choose the scanner.

    Parameters
    ----------
    inputs : Inputs
        With ``genotypes``.
    options : ScanOptions
    outprefix : str, optional
        The output prefix of the run to come: its outputs are checked (writable, not another
        run's) before the null models are fitted, and :func:`run_scan` does not check them again.

    Returns
    -------
    Prepared

    Raises
    ------
    InputError
        Any problem with the inputs or the options, in one line.
    """
    exposures = list(inputs.interaction) + ([inputs.interaction_snp] if inputs.interaction_snp else [])
    spec = ModelSpec.from_options(options, random_effects=bool(inputs.random_gts), loco=bool(inputs.pred),
                                  interactions=tuple(exposures))
    source = open_genotypes(inputs.genotypes, inputs.sample)
    variants, start, stop = select_variants(source, inputs, options.start, options.end, options.whole_chr)
    mt = match_inputs(inputs, source.samples, f"genotype file {source.path}", source.sex)
    if inputs.interaction_snp:
        _snp_exposure(source, inputs.interaction_snp, mt)
    if spec.interactions:
        log.info(f"G×E: each variant's mean has g and g*E for E = {', '.join(spec.interactions)}, its log-variance g;"
                 " every E enters the mean and the log-variance null models (the variance model too, even where the"
                 " variance covariate file lacks it)")
        _log_exposure_levels(mt)
    if outprefix is not None:
        for prefix in output_prefixes(outprefix, mt.names):
            RunState(prefix).check_paths()
    keys = _group_keys(spec, source.variants.chrom[variants], mt)
    order = list(dict.fromkeys(keys))  # in the order the variants meet them
    group_of = np.array([order.index(k) for k in keys], dtype=np.int64) if len(order) > 1 else \
        np.zeros(len(variants), dtype=np.int64)
    loco, loco_files = _loco_predictions(spec, inputs, mt, order)
    groups, notes, shared = [], [], {}
    h2 = [None] * len(mt.names)  # each group's null mixed model starts from the previous one's h2
    for key in order:
        terms = _group_terms(spec, key, mt, loco)
        fits, models = [], []
        for p in range(len(mt.names)):
            fit, model = phenotype_model(spec, mt, p, inputs, shared, terms, h2[p])
            if fit.h2 is not None:
                h2[p] = fit.h2[0]
            if not groups:
                log_fit(fit)
                warning = kurtosis_warning(fit, model.n)
                if warning and not spec.robust:
                    notes.append(warning)
            if terms.label:
                _log_group_fit(terms.label, fit)
            fits.append(fit)
            models.append(model)
        try:
            scanner = make_scanner(spec, models, source.has_dosages and not spec.hard_calls)
        except ValueError as e:
            raise InputError(str(e)) from None
        groups.append(VariantGroup(terms, fits, models, scanner))
    return Prepared(spec, source, variants, start, stop, mt.rows, groups, group_of, inputs, options, mt.random_files,
                    notes, outprefix, loco_files)


def _snp_exposure(source, snp: str, mt) -> None:
    """G×G: the genotypes of variant ``snp`` (by ID) as the last exposure of ``mt``; individuals
    without a call are left out (through the groups' terms)."""
    where = np.flatnonzero(source.variants.id == snp)
    if where.size != 1:
        raise InputError(f"--interaction_snp {snp}: {'no' if where.size == 0 else where.size} variants of"
                         f" {source.path} have this ID")
    j = int(where[0])
    order = np.argsort(mt.rows, kind="stable")
    g = np.empty(len(mt.rows))
    g[order] = source.read_dosages(mt.rows[order], j, j + 1)[0]
    if np.nanstd(g) == 0 or np.isnan(g).all():
        raise InputError(f"--interaction_snp {snp}: the variant has no variation among the individuals used")
    mt.exposures = g[:, None] if mt.exposures is None else np.column_stack([mt.exposures, g])
    mt.exposure_names = list(mt.exposure_names) + [snp]


def _log_exposure_levels(mt) -> None:
    """For an exposure with few levels (binary, or a dummy column of a categorical one): N per level."""
    for name, values in zip(mt.exposure_names, mt.exposures.T):
        levels, counts = np.unique(values[~np.isnan(values)], return_counts=True)
        if levels.size <= 5:
            log.info(f"exposure {name}: " + ", ".join(f"{lv:g}: N = {c:,}" for lv, c in zip(levels, counts)))


def _group_keys(spec: ModelSpec, chrom: np.ndarray, mt) -> list:
    """The group of each selected variant: ``(LOCO line or 0, sex-adjusted chrX)``."""
    sexed = spec.x_sex and mt.sex is not None
    labels = {c: ((loco_line(c) or 0) if spec.loco else 0, sexed and plink_code(c) == 23) for c in np.unique(chrom)}
    if spec.loco:
        lost = [c for c in labels if not loco_line(c)]
        if lost:
            raise InputError(f"--pred: regenie's predictions have no line for chromosome{'s' if len(lost) > 1 else ''}"
                             f" {', '.join(lost)}; leave {'them' if len(lost) > 1 else 'it'} out (--chr, --extract)")
    if spec.x_sex and mt.sex is None and any(x for x in (plink_code(c) == 23 for c in labels)):
        log.warning("chrX variants but no sex information (the genotype file's samples have none; give --sex):"
                    " they are analysed without the sex adjustment")
    return [labels[c] for c in chrom.tolist()]


def _loco_predictions(spec: ModelSpec, inputs: Inputs, mt, keys: list) -> tuple[list, list]:
    """Per phenotype, the LOCO predictions of the lines the scan needs (read_loco), and the files."""
    if not spec.loco:
        return [], []
    paths = read_pred_list(inputs.pred, mt.names)
    lines = sorted({line for line, _ in keys})
    preds = []
    for name in mt.names:
        pred = read_loco(paths[name], mt.ids, lines)
        missing = int((~pred.present).sum())
        if missing:
            log.info(f"--pred: {missing} of the {len(mt.ids)} individuals have no prediction for '{name}' in"
                     f" {paths[name]}; they are left out of its analysis")
        preds.append(pred)
    return preds, [inputs.pred] + [paths[name] for name in mt.names]


def _group_terms(spec: ModelSpec, key: tuple, mt, loco: list) -> GroupTerms:
    """The extra null-model terms of a group (module docstring of :mod:`hlmm.nulls`)."""
    line, on_x = key
    n, P = len(mt.ids), len(mt.names)
    mean, variance, offset, labels = [], [], None, []
    exclude = np.zeros((n, P), dtype=bool)
    why = []
    if line:
        values = np.column_stack([pred.for_chromosome(line) for pred in loco])
        exclude |= np.isnan(values)
        why.append("no LOCO prediction")
        values = np.where(np.isnan(values), 0.0, values)
        if spec.loco == "covariate":
            mean.append(("LOCO", values))
        else:
            offset = values
        labels.append(f"chromosome {line if line < 23 else 'X/Y/MT (regenie line 23)'}")
    if on_x:
        unknown = mt.sex == 0
        exclude |= unknown[:, None]
        why.append("unknown sex on chrX")
        male = (mt.sex == 1).astype(float)
        if np.unique(mt.sex[~unknown]).size > 1:
            mean.append(("sex", male))
            variance.append(("sex", male))
        else:
            log.info("chrX: the individuals of known sex are all of one sex: no sex term")
        labels.append("chrX")
    for name, values in zip(mt.exposure_names, [] if mt.exposures is None else mt.exposures.T):
        if np.isnan(values).any():  # an --interaction_snp genotype without a call
            exclude |= np.isnan(values)[:, None]
            why.append(f"no call at {name}")
            values = np.nan_to_num(values)
        if name not in (mt.mean_names or []):  # an --interaction_snp genotype
            mean.append((name, values))
        variance.append((name, values))  # every exposure in the variance model too (not twice)
    return GroupTerms(", ".join(labels), tuple(mean), tuple(variance), offset,
                      exclude if exclude.any() else None, " or ".join(why))


def _log_group_fit(label: str, fit: PhenotypeFit) -> None:
    """The group's own null terms (LOCO coefficient, sex effects) for the log."""
    parts = []
    for what, (names_, est, se) in (("mean", fit.mean_effects), ("variance", fit.variance_effects)):
        parts += [f"{what} {k} {e:.4g} (se {s:.2g})" for k, e, s in zip(names_, est, se) if k in ("LOCO", "sex")]
    h2 = f"; h2 {fit.h2[0]:.4g}" if fit.h2 is not None else ""
    log.info(f"null model, {label} ({fit.name}): " + (", ".join(parts) or "no LOCO or sex term") + h2)


def output_prefixes(outprefix: str, phenotypes: list) -> list:
    """One output prefix per phenotype (names): ``outprefix`` itself for one phenotype, else
    ``outprefix.<phenotype name>``."""
    if len(phenotypes) == 1:
        return [outprefix]
    names_ = list(phenotypes)
    bad = [n for n in names_ if not n or os.sep in n or n in (".", "..")]
    if bad:
        raise InputError(f"phenotype names {bad} cannot be used in file names")
    return [f"{outprefix}.{name}" for name in names_]


def run_options(prepared: Prepared) -> dict:
    """The options of a run that affect its results (for its fingerprint)."""
    o, s, i = prepared.options, prepared.spec, prepared.inputs
    return {"start": o.start, "end": o.end, "whole_chr": o.whole_chr, "missing_char": i.missing_char,
            "fit_covariates": s.fit_covariates, "h2_init": s.h2_init, "min_maf": s.min_maf,
            "max_missing": s.max_missing, "no_h2_estimate": s.no_h2_estimate, "engine": s.engine,
            "test": s.test, "refit": s.refit, "robust": s.robust, "hard_calls": s.hard_calls,
            "random_gts_txt": i.random_gts_txt, "chr": i.chrom, "from_bp": i.from_bp, "to_bp": i.to_bp,
            **({"loco": s.loco} if s.loco else {}), **({} if s.x_sex else {"x_sex": False}),
            **({"interactions": list(s.interactions)} if s.interactions else {}),
            # the rows' columns: a file of another version's columns is neither resumed nor appended to
            "columns": names(MODELS) + names(interaction_columns(s.interactions))}


def run_files(prepared: Prepared) -> dict:
    """The input files of a run (for its fingerprint)."""
    i = prepared.inputs
    files = {"genotypes": prepared.source.files(), "phenotype": i.phenotypes, "mean_covar": i.mean_covar,
             "var_covar": i.var_covar, "keep": i.keep, "remove": i.remove, "extract": i.extract,
             "exclude": i.exclude, "sample": i.sample}
    if i.random_gts:
        files["random_txt" if i.random_gts_txt else "random"] = prepared.random_files
    if prepared.loco_files:
        files["pred"] = prepared.loco_files
    if i.sex:
        files["sex"] = i.sex
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
TALLY_COLUMNS = {"add": "add_pval", "var": "var_pval_adapt", "var (robust SE)": "var_pval_robust",
                 "var (model-based SE)": "var_pval"}


def tally_columns(spec: ModelSpec) -> dict:
    """The columns of the end-of-scan summary: :data:`TALLY_COLUMNS`, and the G×E test of one exposure."""
    return dict(TALLY_COLUMNS, **({"G×E": "gxe_pval"} if len(spec.interactions) == 1 else {}))


def default_jobs(scanner, n_blocks: int) -> int:
    """Worker processes when the user gives none: one per available core for scanners of slow,
    per-SNP mixed-model fits with enough blocks to share (results do not depend on it), else 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return cores if scanner.per_core and n_blocks >= 2 * cores else 1


def _variant_info(source, idx: np.ndarray) -> dict:
    v = source.variants
    return {"SNP": v.id[idx], "chr": v.chrom[idx], "pos": v.pos[idx], "A1": v.a1[idx], "A2": v.a2[idx]}


#: At most this many genotype values per block by default (512 MB as float64): at n = 500,000 a
#: block of 512 dosages and its mean-imputed copy had taken 3 GB of an HLMM score screen's 8.2 GB.
MAX_BLOCK_VALUES = 2**26


def scan_block_size(requested: int | None, scanner, n_individuals: int) -> int:
    """Variants per block: ``--block_size`` if given, else the engine's, lowered for large samples
    so that a block holds at most :data:`MAX_BLOCK_VALUES` genotypes (no change up to n = 131,072
    for the HLM, whose blocks are 256). Results do not depend on it."""
    if requested:
        return requested
    return max(1, min(scanner.block_size, MAX_BLOCK_VALUES // max(1, n_individuals)))


def block_ranges(group_of: np.ndarray, first: int, block_size: int) -> list:
    """``(b0, b1)`` blocks of the selected variants from ``first`` on, at most ``block_size`` long and
    never spanning two groups.

    Examples
    --------
    >>> block_ranges(np.array([0, 0, 0, 1, 1, 2]), 0, 2)
    [(0, 2), (2, 3), (3, 5), (5, 6)]
    """
    total = len(group_of)
    cuts = np.flatnonzero(np.diff(group_of)) + 1
    edges = sorted({first, total, *[int(c) for c in cuts if c > first]})
    blocks = []
    for a, b in zip(edges[:-1], edges[1:]):
        blocks += [(b0, min(b0 + block_size, b)) for b0 in range(a, b, block_size)]
    return blocks


def _scan_job(prepared: Prepared) -> ScanJob:
    """What the runner needs to compute any block of the scan (dosages read in parts)."""
    return ScanJob(prepared.source, prepared.rows, prepared.scanner, prepared.variants, prepared.spec.hard_calls,
                   read_size(len(prepared.rows), prepared.has_dosages))


def _scan_blocks(prepared: Prepared, first: int, block_size: int, on_tables, *, n_jobs: int | None = None,
                 dask_scheduler: str | None = None, executor=None) -> list:
    """The block loop of every scan: blocks of the selected variants from ``first`` on, computed by
    the runner, turned into each phenotype's result columns and passed, in order, to
    ``on_tables(b0, b1, tables, outs, failure)``. Returns the blocks that failed twice."""
    blocks = block_ranges(prepared.group_of, first, block_size)
    job = _scan_job(prepared)
    if executor is None:
        if n_jobs is None:
            n_jobs = default_jobs(prepared.scanner, len(blocks))
        executor = open_executor(job, n_jobs, dask_scheduler, len(blocks))

    def on_block(b0: int, b1: int, outs: list, failure: str | None) -> None:
        info = _variant_info(prepared.source, prepared.variants[b0:b1])
        fits = prepared.groups[int(prepared.group_of[b0])].fits if b1 > b0 else prepared.fits
        tables = [results.stats_table(info, o, fit.moments, prepared.spec.interactions) for o, fit in zip(outs, fits)]
        on_tables(b0, b1, tables, outs, failure)

    return run_blocks(job, blocks, on_block, executor=executor)


@contextlib.contextmanager
def _frozen_heap():
    """The objects alive before the scan (modules, the inputs, the null fits: about 140,000 for one
    phenotype) left out of Python's collections during it (:func:`gc.freeze`), and put back after
    (:func:`gc.unfreeze`): a scan makes a few hundred containers per variant, and each of the few
    full collections of a scan (7 in 4,000 variants of one phenotype) traversed all of them again.
    1-2% of the marginal time per variant (docs/performance.rst). Left alone if the caller has
    frozen objects of its own."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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

    Raises
    ------
    InputError
        For ``resume`` with ``append``, outputs that cannot be written or that hold another run,
        or an unreachable Dask scheduler (before anything is written).
    """
    if resume and append:
        raise InputError("--resume and --append cannot be combined")
    t0 = time.monotonic()
    prefixes = output_prefixes(outprefix, [f.name for f in prepared.fits])
    states = [RunState(p) for p in prefixes]
    if prepared.checked_outprefix != outprefix:
        for st in states:
            st.check_paths()
    columns = names(MODELS) + names(interaction_columns(prepared.spec.interactions))
    header = results.header_member(columns)
    files = run_files(prepared)
    total = len(prepared.variants)
    summary = ScanSummary(outputs=[st.out for st in states],
                          tallies=[results.Tally(tally_columns(prepared.spec)) for _ in states])
    block_size = scan_block_size(prepared.options.block_size, prepared.scanner, len(prepared.rows))
    job = _scan_job(prepared)
    n_blocks = len(block_ranges(prepared.group_of, 0, block_size))
    if n_jobs is None:
        n_jobs = default_jobs(prepared.scanner, n_blocks)
    executor = None
    try:
        for st in states:
            st.lock()
        executor = open_executor(job, n_jobs, dask_scheduler, n_blocks)  # before anything is written
        plans = []
        for st, fit in zip(states, prepared.fits):
            run = fingerprint(files, {**run_options(prepared), "phenotype": fit.name})
            plans.append(st.plan(run, total, prepared.start, prepared.stop, resume, append, header))
            st.state.setdefault("se", prepared.spec.se)
            st.state.setdefault("test", prepared.spec.test)
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
        variants = prepared.source.variants
        counts = dict.fromkeys(STATUS, 0)
        if progress is not None:
            progress.start(total, first)

        def on_tables(b0: int, b1: int, tables: list, outs: list, failure: str | None) -> None:
            idx = prepared.variants[b0:b1]
            for st, plan, o, cols, fit, tally in zip(states, plans, outs, tables, prepared.fits, summary.tallies):
                if plan == "done" or st.position >= b1:
                    continue  # this output already holds the block (an earlier run wrote it)
                for j, why in o["problems"]:
                    log.warning(f"variant {cols['SNP'][j]} ({fit.name}): fit failed ({why}); its row has NaN estimates")
                for j in np.flatnonzero(o["status"] == STATUS["multiallelic"]):
                    log.info(f"variant {cols['SNP'][j]}: {variants.n_alleles[idx[j]]} alleles;"
                             " its row has NaN estimates")
                for k, code in STATUS.items():
                    counts[k] += int((o["status"] == code).sum())
                if "gxe_model_se" in o:
                    counts["gxe_model_se"] = counts.get("gxe_model_se", 0) + int(o["gxe_model_se"].sum())
                tally.update(cols)
                st.write_block(results.block_member(cols, columns), b1 - b0,
                               [int(b0), int(b1), failure] if failure else None)
            summary.rows += b1 - b0
            if progress is not None:
                progress.update(b1 - b0)

        ex, executor = executor, None  # the runner closes it
        with _frozen_heap():
            summary.failed_blocks = _scan_blocks(prepared, first, block_size, on_tables, executor=ex)
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
        if executor is not None:
            executor.close(cancel=True)
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
    from hlmm.inputs import Matched
    from hlmm.io import ArraySource

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

    mt = Matched([source.samples[i] for i in rows], rows, y[rows, None], ["y"],
                 None if mean is None else mean[rows], None if var is None else var[rows], labels(mean, "x"),
                 labels(var, "v"), None if random is None else np.asarray(random, dtype=float)[rows])
    inputs = Inputs("<array>", "<array>", mean_covar="<array>" if mean is not None else None,
                    var_covar="<array>" if var is not None else None,
                    random_gts="<array>" if random is not None else None)
    spec = ModelSpec.from_options(options, random_effects=random is not None)
    fit, model = phenotype_model(spec, mt, 0, inputs)
    try:
        scanner = make_scanner(spec, [model], source.has_dosages and not spec.hard_calls)
    except ValueError as e:
        raise InputError(str(e)) from None
    variants, start, stop = select_variants(source, inputs, options.start, options.end, options.whole_chr)
    prepared = Prepared(spec, source, variants, start, stop, rows, [VariantGroup(NO_TERMS, [fit], [model], scanner)],
                        np.zeros(len(variants), dtype=np.int64), inputs, options)
    parts = []
    _scan_blocks(prepared, 0, scan_block_size(options.block_size, scanner, len(rows)),
                 lambda b0, b1, tables, outs, failure:
                 parts.append(tables[0]), n_jobs=1)
    columns = {c: np.concatenate([p[c] for p in parts])
               for c in names(MODELS) + names(interaction_columns(spec.interactions))}
    return columns, fit
