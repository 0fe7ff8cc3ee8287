"""Inputs and matching: the input files of an analysis (:class:`Inputs`), reading the phenotype,
covariate and random-effect tables, matching their individuals with the genotype file's
(:func:`match_inputs`) and selecting the variants (:func:`select_variants`).

Errors are one-line :class:`hlmm.io.InputError` naming the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from hlmm.io import (
    IdRole,
    InputError,
    id_scheme,
    match_samples,
    open_genotypes,
    read_random_effects,
    read_sample_list,
    read_sex_file,
    read_table,
    read_variant_list,
)

__all__ = ["Inputs", "Matched", "match_inputs", "select_variants", "compact_random_effects", "random_effects_values"]

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
    pred : str, optional
        regenie's step-1 prediction list (``<prefix>_pred.list``): leave-one-chromosome-out
        predictions of the phenotypes.
    sex : str, optional
        A sex file (``FID IID sex``), instead of the genotype file's sex.
    id_delim : str, optional
        The genotype file's sample IDs are ``FID + id_delim + IID`` (plink2's ``--id-delim``):
        matched as whole tokens against the other files' joined FID and IID.
    interaction : list of str
        Exposures: columns of the mean covariate file whose product with each variant's genotype
        enters the mean (``--interaction``).
    interaction_snp : str, optional
        A variant of the genotype file whose genotype is the exposure (``--interaction_snp``).
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
    pred: str | None = None
    sex: str | None = None
    id_delim: str | None = None
    interaction: list = field(default_factory=list)
    interaction_snp: str | None = None



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
class Matched:
    """The individuals used, in the reference order, and their data from every input."""

    ids: list
    rows: np.ndarray  # into the reference
    phenotype: np.ndarray  # (n, P) values
    names: list
    mean: np.ndarray | None
    var: np.ndarray | None
    mean_names: list | None
    var_names: list | None
    random: np.ndarray | None  # raw random-effect values (n, l0): compact_random_effects' int8 or float64
    random_files: object = None  # the random-effect genotype file's files (for fingerprints), or its text table
    sex: np.ndarray | None = None  # PLINK sex codes of the individuals (1 male, 2 female, 0 unknown)
    exposures: np.ndarray | None = None  # (n, K) values of the --interaction exposures
    exposure_names: list = field(default_factory=list)


def match_inputs(inputs: Inputs, reference_ids: list | None, reference_what: str,
                 reference_sex: np.ndarray | None = None) -> Matched:
    """Read the phenotype, covariate and random-effect inputs and match their individuals with the
    reference's (the genotype file's samples; the phenotype file if ``reference_ids`` is None).
    The individuals' sex comes from ``--sex`` if given, else from ``reference_sex`` (the genotype
    file's)."""
    tables = _tables(inputs)
    pheno = tables["phenotype"]
    cols = _phenotype_columns(pheno, inputs)
    pvals = pheno.values[:, [c - 1 for c in cols]]
    roles = {"phenotype": IdRole(pheno.ids, f"phenotype file {pheno.path}", ~np.isnan(pvals).all(axis=1))}
    for role in ("mean_covar", "var_covar"):
        if role in tables:
            t = tables[role]
            roles[role] = IdRole(t.ids, f"{t.what} {t.path}", ~np.isnan(t.values).any(axis=1))
    for e in inputs.interaction:  # before matching, which would drop everyone for a column that is all NA
        t = tables.get("mean_covar")
        if t is not None and e in t.names and np.isnan(t.values[:, t.names.index(e)]).all():
            raise InputError(f"--interaction {e}: missing for every individual of the mean covariate file {t.path}")
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
    join = inputs.id_delim
    if join is None and reference_what.startswith("genotype file"):
        join = id_scheme(reference_ids, pheno.ids)
        if join is not None:
            log.info(f"the sample IDs of the {reference_what} are FID{join}IID tokens: matched with the other files'"
                     f" FID and IID joined by '{join}' (as --id_delim {join} would)")
    m = match_samples(reference_ids, reference_what, roles, keep, remove,
                      f"--keep {inputs.keep}", f"--remove {inputs.remove}", join)
    for line in m.log:
        log.info(line)
    random = None
    if random_source is not None:
        idx = m.index["random"]
        order = np.argsort(idx, kind="stable")
        codes = not random_source.has_dosages  # hard calls: read as int8 directly
        random = np.empty((len(idx), random_source.n_variants), dtype=np.int8 if codes else np.float64)
        random[order] = read_random_effects(random_source, idx[order], codes=codes)
        if not codes:
            random = compact_random_effects(random)
    elif random_table is not None:
        random = random_table.values[m.index["random"]]
    ids = m.ids if join is None else [pheno.ids[k] for k in m.index["phenotype"]]  # (FID, IID), not tokens
    sex = None
    if inputs.sex:
        codes = read_sex_file(inputs.sex)
        sex = np.array([codes.get(i, 0) for i in ids], dtype=np.int8)
        log.info(f"sex from {inputs.sex}: {int((sex == 1).sum())} males, {int((sex == 2).sum())} females,"
                 f" {int((sex == 0).sum())} unknown among the {len(ids)} individuals used")
    elif reference_sex is not None:
        sex = reference_sex[m.rows]
    exposures, exposure_names = None, list(inputs.interaction)
    if exposure_names:
        mean = tables.get("mean_covar")
        absent = [e for e in exposure_names if mean is None or e not in mean.names]
        if absent:
            where = f"the mean covariate file {mean.path} (its columns: {', '.join(mean.names)})" if mean is not None \
                else "no mean covariate file (give one with --mean_covar)"
            raise InputError(f"--interaction {', '.join(absent)}: not a column of {where}")
        exposures = mean.values[m.index["mean_covar"]][:, [mean.names.index(e) for e in exposure_names]]
    return Matched(
        ids, m.rows, pvals[m.index["phenotype"]], [pheno.names[c - 1] for c in cols],
        tables["mean_covar"].values[m.index["mean_covar"]] if "mean_covar" in tables else None,
        tables["var_covar"].values[m.index["var_covar"]] if "var_covar" in tables else None,
        tables["mean_covar"].names if "mean_covar" in tables else None,
        tables["var_covar"].names if "var_covar" in tables else None,
        random,
        random_source.files() if random_source is not None else inputs.random_gts,
        sex,
        exposures,
        exposure_names,
    )


def compact_random_effects(values: np.ndarray) -> np.ndarray:
    """Random-effect genotypes held once for the whole run: int8 copies of A1 (-1 missing) when they
    are all whole numbers (hard calls, an eighth of the memory), else the float64 values (NaN
    missing). :func:`random_effects_values` gives back the float values.

    Examples
    --------
    >>> compact_random_effects(np.array([[0.0, np.nan], [2.0, 1.0]])).tolist()
    [[0, -1], [2, 1]]
    """
    called = values[~np.isnan(values)]
    if called.size and np.all(called == np.rint(called)) and called.min() >= 0 and called.max() <= 2:
        return np.where(np.isnan(values), -1, values).astype(np.int8)
    return values


def random_effects_values(random: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Float64 values (NaN missing) of the rows ``sel`` of :func:`compact_random_effects`' array."""
    if random.dtype == np.int8:
        sub = random[sel]
        return np.where(sub < 0, np.nan, sub.astype(np.float64))
    return random[sel]


def select_variants(source, inputs: Inputs, start: int = 0, end: int | None = None,
                    whole_chr: bool = False) -> tuple[np.ndarray, int, int]:
    """Indices of the variants to scan (range, then --extract, --exclude, --chr, --from_bp, --to_bp),
    and the range's start and stop."""
    m = source.n_variants
    if whole_chr:
        start, stop = 0, m
    else:
        stop = m if end is None else end
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
