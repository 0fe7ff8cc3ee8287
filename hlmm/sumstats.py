"""GWAS-SSF summary statistics: one effect of a results table in the GWAS Catalog's format.

GWAS-SSF v1.0 (the GWAS Catalog's summary statistics format; specification
``gwas-ssf_v1.0.2.tex`` in github.com/EBISPOT/gwas-summary-statistics-standard) is two files:

- a data file, a tab-separated table with a header line, ``.tsv`` or gzip-compressed ``.tsv.gz``,
  whose first eight columns are, in this order, ``chromosome``, ``base_pair_location``,
  ``effect_allele``, ``other_allele``, ``beta``, ``standard_error``, ``effect_allele_frequency``
  and ``p_value``; further (optional) columns follow them;
- a YAML metadata file named after it, ``NAME.tsv.gz-meta.yaml``, with the file name, its md5
  sum, the genome assembly, trait, sample size and ancestry, and whether the file is sorted.

What this module writes, and why:

``chromosome``
    An integer 1-25: the specification maps X to 23, Y to 24 and MT to 25. Labels may carry a
    ``chr`` prefix. Numeric labels above 22 are read as PLINK codes (23 X, 24 Y, 25 XY, 26 MT);
    PLINK's XY (the pseudo-autosomal regions, in X coordinates) becomes 23. Rows on any other
    contig, or with a position below 1, cannot be written and are left out, with a note.
``beta``, ``standard_error``
    The chosen effect and its standard error: ``add`` (additive effect on the mean), ``var``
    (log-linear variance effect) or ``dispersion``, per copy of A1, which is the effect allele.
``effect_allele_frequency``
    The results' ``A1_frequency`` column. Without it (``frequency`` is the *minor* allele
    frequency, which does not say A1's) the column is ``NA`` and a note says so.
``p_value``, ``neg_log_10_p_value``
    Both are computed from the results' −log10 p, so p-values never underflow. p-values of at
    least 1e-300 are written with 6 significant digits (``0.0123457``, ``1.23457e-05``); smaller
    ones as mantissa and exponent, ``1e-400`` rather than 0. A program that reads ``p_value`` as a
    double gets 0 for those, which is what ``neg_log_10_p_value`` (an optional column of the
    specification, here placed right after ``p_value``) is for; the GWAS Catalog's validator reads
    the mantissa and exponent separately.
``rsid``, ``n``, ``snp_id`` (and ``test``)
    ``rsid`` is the variant ID where it is an rsID (``rs`` and digits), else ``NA``. The
    specification's ``variant_id`` (chromosome_position_reference_alternative) is not written: a
    results table does not say which allele is the reference. ``n`` is the number of individuals
    of each row; ``snp_id`` the variant ID as the genotype file gives it, and ``test`` (if the
    results have it) ``wald`` or ``score``.
Missing values
    ``NA``. The specification "recommends" ``#NA`` and its validator accepts ``NA``; ``NA`` is also
    what LDSC's ``munge_sumstats.py`` (``na_values=['.', 'NA']``) and R's ``read.table`` read as
    missing, while ``#`` starts a comment in R.
Rows
    In genomic order: chromosome code, then position (rows with equal keys keep their order). The
    mandatory fields may not be missing, so rows without an estimate (filtered variants, failed
    fits) are left out unless ``keep_missing``.
"""

from __future__ import annotations

import json
import re

import numpy as np

from hlmm import __version__
from hlmm.columns import Column
from hlmm.genome import plink_code

__all__ = ["EFFECTS", "ROBUST_EFFECTS", "ADAPT_EFFECTS", "SE_CHOICES", "effect_columns", "COLUMNS", "SSF_VERSION",
           "ssf_chromosome",
           "p_value_text", "gwas_ssf_table",
           "format_gwas_ssf", "metadata_yaml", "metadata_path"]

#: The ``file_type`` written in the metadata.
SSF_VERSION = "GWAS-SSF v1.0"

#: Effect name -> (estimate, standard error, −log10 p) columns of a results table, with model-based
#: standard errors (``se="model"``).
EFFECTS = {
    "add": ("add", "add_se", "add_pval"),
    "var": ("var", "var_se", "var_pval"),
    "dispersion": ("dispersion", "dispersion_se", "dispersion_pval"),
    "gxe": ("gxe", "gxe_se", "gxe_pval"),
}
#: The columns with standard errors valid for non-normal traits (``se="robust"``):
#: the variance effect's robust columns; the additive effect's model-based standard error is
#: valid for non-normal traits already (:mod:`hlmm.robust`), and the dispersion columns of
#: hlmm_dispersion's default method use the robust ones.
ROBUST_EFFECTS = {**EFFECTS, "var": ("var", "var_se_robust", "var_pval_robust")}
#: The adaptive variance test (``se="adapt"``, the default; :mod:`hlmm.adaptive`): calibrated like the
#: robust columns, and efficient for heavy-tailed traits.
ADAPT_EFFECTS = {**EFFECTS, "var": ("var_adapt", "var_se_adapt", "var_pval_adapt")}
#: Choices of standard errors (and, for ``var``, of the test), the default first.
SE_CHOICES = ("adapt", "robust", "model")
_BY_SE = {"adapt": ADAPT_EFFECTS, "robust": ROBUST_EFFECTS, "model": EFFECTS}

#: What ``beta`` is, for each effect (the metadata's ``author_notes`` and the documentation).
EFFECT_DOC = {
    "add": "additive effect of a copy of effect_allele on the mean of the trait",
    "var": "log-linear variance effect of a copy of effect_allele (change in the log of the trait's variance)",
    "dispersion": "dispersion effect of a copy of effect_allele: its log-linear variance effect minus what the "
                  "mean-variance slope predicts from its additive effect (hlmm_dispersion)",
    "gxe": "G×E effect of a copy of effect_allele: the change of its additive effect per unit of the exposure "
           "(hlmm_chr --interaction; gxe_<E> for one of several exposures)",
}

#: Columns of the GWAS-SSF data file, in file order (the last only when the results have ``test``).
COLUMNS = (
    Column("chromosome", "int", "chromosome, 1-22, 23 (X), 24 (Y), 25 (MT)", "gwas-ssf", "2.0"),
    Column("base_pair_location", "int", "position, from the genotype file (1-based)", "gwas-ssf", "2.0"),
    Column("effect_allele", "str", "A1, the counted allele", "gwas-ssf", "2.0"),
    Column("other_allele", "str", "A2", "gwas-ssf", "2.0"),
    Column("beta", "float", "the effect (--effect add, var or dispersion) per copy of effect_allele", "gwas-ssf",
           "2.0"),
    Column("standard_error", "float", "its standard error", "gwas-ssf", "2.0"),
    Column("effect_allele_frequency", "float", "frequency of A1 (A1_frequency; NA if the results lack it)",
           "gwas-ssf", "2.0"),
    Column("p_value", "str", "p-value; 1e-400 is written as 1e-400, not 0", "gwas-ssf", "2.0"),
    Column("neg_log_10_p_value", "float", "−log10 of the p-value", "gwas-ssf", "2.0"),
    Column("rsid", "str", "the variant ID if it is an rsID (rs and digits), else NA", "gwas-ssf", "2.0"),
    Column("n", "int", "number of individuals used for the variant", "gwas-ssf", "2.0"),
    Column("snp_id", "str", "the variant ID from the genotype file", "gwas-ssf", "2.0"),
    Column("test", "str", "wald or score (score: beta is a one-step estimate); only if the results say", "gwas-ssf",
           "2.0"),
)

_RSID = re.compile(r"^rs[0-9]+$")
_NUCLEOTIDES = re.compile(r"^[ACGTacgt]+$")
#: GWAS-SSF's own chromosome codes from PLINK's (hlmm.genome): X 23, Y 24, and, as the
#: specification has no code for the pseudo-autosomal regions, XY (in X coordinates) also 23; MT 25.
_SSF_FROM_PLINK = {23: 23, 24: 24, 25: 23, 26: 25}


def ssf_chromosome(labels) -> np.ndarray:
    """GWAS-SSF chromosome codes of chromosome labels; 0 where there is none.

    Parameters
    ----------
    labels : array_like of str, shape (m,)
        ``1``-``22``, ``X``, ``Y``, ``XY``, ``MT`` (also ``M``, ``PAR1``, ``PAR2``), with or without a
        ``chr`` prefix, or PLINK's numeric codes 23-26.

    Returns
    -------
    ndarray of int64, shape (m,)

    Examples
    --------
    >>> ssf_chromosome(["1", "chr10", "X", "23", "25", "MT", "26", "Un"]).tolist()
    [1, 10, 23, 23, 23, 25, 25, 0]
    """
    labels = np.asarray(labels, dtype=str)
    codes = {}
    for label in np.unique(labels):
        k = plink_code(label)
        codes[label] = k if k <= 22 else _SSF_FROM_PLINK[k]
    return np.array([codes[label] for label in labels], dtype=np.int64)


def p_value_text(neglog10, digits: int = 6) -> np.ndarray:
    """p-values as text from −log10 p-values, without underflow.

    p ≥ 1e-300 is formatted with ``digits`` significant digits; smaller p as a mantissa of
    ``digits`` significant digits and a decimal exponent, so 400 gives ``1e-400``. NaN gives ``NA``.

    Parameters
    ----------
    neglog10 : array_like, shape (m,)
        −log10 p (values below 0 are read as 0).
    digits : int

    Returns
    -------
    ndarray of str, shape (m,)

    Examples
    --------
    >>> p_value_text([0.0, 2.0, 7.3, 400.0, 1234.5, np.nan]).tolist()
    ['1', '0.01', '5.01187e-08', '1e-400', '3.16228e-1235', 'NA']
    """
    L = np.maximum(np.asarray(neglog10, dtype=float), 0.0)
    out = np.full(L.shape, "NA", dtype=object)
    plain = np.isfinite(L) & (L <= 300)
    out[plain] = [format(10.0 ** -x, f".{digits}g") for x in L[plain]]
    tiny = np.isfinite(L) & (L > 300)
    exponent = np.floor(-L[tiny])
    mantissa = np.round(10.0 ** (-L[tiny] - exponent), digits - 1)
    carry = mantissa >= 10.0
    mantissa[carry] /= 10.0
    exponent[carry] += 1
    out[tiny] = [f"{format(m, f'.{digits}g')}e{int(e):+03d}" for m, e in zip(mantissa, exponent)]
    return out.astype(str)


def effect_columns(results, effect: str, se: str = "adapt") -> tuple[str, str, str, str | None]:
    """The estimate, standard error and −log10 p columns of an effect that a results table has.

    Returns
    -------
    estimate, standard_error, pvalue : str
        Column names.
    note : str or None
        Set when the columns asked for are missing from the results (an earlier version's): the
        next choice of :data:`SE_CHOICES` that the results have is used instead.
    """
    if se not in SE_CHOICES:
        raise ValueError(f"se must be one of {', '.join(SE_CHOICES)}, got {se!r}")
    if effect.startswith("gxe_") and effect in results:  # one exposure of several
        return effect, f"{effect}_se", f"{effect}_pval", None
    if effect not in EFFECTS:
        raise ValueError(f"effect must be one of {', '.join(EFFECTS)} (or gxe_<E> of a scan with several"
                         f" exposures), got {effect!r}")
    wanted = _BY_SE[se][effect]
    for choice in SE_CHOICES[SE_CHOICES.index(se):]:
        est, se_col, pval = _BY_SE[choice][effect]
        if all(c in results for c in (est, se_col, pval)):
            break
    if (est, se_col, pval) == wanted:
        return est, se_col, pval, None
    what = "the model-based columns, which assume normal residuals" if choice == "model" else \
        "the pooled-moment robust columns (not efficient for heavy-tailed traits)"
    return est, se_col, pval, (f"the results have no {wanted[1]} column (an earlier version's): beta, standard_error"
                               f" and p_value are {est}, {se_col} and {pval}, {what}")


def gwas_ssf_table(results: dict, effect: str, keep_missing: bool = False, se: str = "adapt") -> tuple[dict, list]:
    """The GWAS-SSF data table of one effect of a results table.

    Parameters
    ----------
    results : dict
        Columns of a results table (:func:`hlmm.results.read_models`): ``SNP``, ``n``, ``chr``,
        ``pos``, ``A1``, ``A2``, the effect's three columns (:data:`EFFECTS`) and, if present,
        ``A1_frequency`` and ``test``.
    effect : {"add", "var", "dispersion"}
    keep_missing : bool
        Keep rows without an estimate (their beta, standard error and p-value ``NA``).
    se : {"adapt", "robust", "model"}
        ``adapt``: for ``var``, the adaptive test's ``var_adapt``, ``var_se_adapt`` and
        ``var_pval_adapt`` (:data:`ADAPT_EFFECTS`); ``robust``: ``var``, ``var_se_robust`` and
        ``var_pval_robust`` (:data:`ROBUST_EFFECTS`); ``model``: the documented columns
        (:data:`EFFECTS`). Results without the columns asked for fall back to the next choice, with
        a note.

    Returns
    -------
    table : dict
        Column name -> array, in :data:`COLUMNS` order, rows in genomic order. NaN stands for
        ``NA`` in float columns; ``p_value`` is text.
    notes : list of str
        One line for each thing a user should know (rows left out, missing frequencies, ...).

    Raises
    ------
    ValueError
        For an unknown effect or missing columns (naming them).
    """
    notes = []
    est, se_col, pval, note = effect_columns(results, effect, se)

    if note:
        notes.append(note)
    missing = [c for c in ("SNP", "n", "chr", "pos", "A1", "A2", est, se_col, pval) if c not in results]
    if missing:
        raise ValueError(f"missing columns {', '.join(missing)}")
    m = len(results["SNP"])
    chrom = ssf_chromosome(results["chr"])
    pos = np.asarray(results["pos"], dtype=np.int64)
    beta, beta_se, neglog10 = (np.asarray(results[c], dtype=float) for c in (est, se_col, pval))
    keep = np.ones(m, dtype=bool)
    unplaced = chrom == 0
    if unplaced.any():
        labels = sorted(set(np.asarray(results["chr"], dtype=str)[unplaced]))
        shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
        notes.append(f"{int(unplaced.sum())} rows on chromosomes without a GWAS-SSF code (1-22, X, Y, XY, MT): "
                     f"{shown}; left out")
    no_position = ~unplaced & (pos < 1)
    if no_position.any():
        notes.append(f"{int(no_position.sum())} rows with base-pair position below 1; left out")
    keep &= ~unplaced & ~no_position
    estimated = np.isfinite(beta) & np.isfinite(beta_se) & np.isfinite(neglog10)
    if not keep_missing and (keep & ~estimated).any():
        notes.append(f"{int((keep & ~estimated).sum())} rows without an estimate (filtered or failed fits) left out:"
                     f" GWAS-SSF's mandatory fields may not be NA (keep them with --keep_missing)")
        keep &= estimated
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((pos[rows], chrom[rows]))]
    snp = np.asarray(results["SNP"], dtype=str)[rows]
    a1 = np.asarray(results["A1"], dtype=str)[rows]
    a2 = np.asarray(results["A2"], dtype=str)[rows]
    if "A1_frequency" in results:
        eaf = np.asarray(results["A1_frequency"], dtype=float)[rows]
    else:
        eaf = np.full(len(rows), np.nan)
        notes.append("the results have no A1_frequency column (frequency is the minor allele's): "
                     "effect_allele_frequency is NA, which the GWAS Catalog's validator rejects")
    not_nucleotides = sum(not (_NUCLEOTIDES.match(a) and _NUCLEOTIDES.match(b)) for a, b in zip(a1, a2))
    if not_nucleotides:
        notes.append(f"{not_nucleotides} rows have alleles that are not nucleotide strings (such as 0 or I/D), "
                     f"which the GWAS Catalog's validator rejects")
    L = np.where(np.isfinite(neglog10[rows]), np.maximum(neglog10[rows], 0.0), np.nan)
    table = {
        "chromosome": chrom[rows],
        "base_pair_location": pos[rows],
        "effect_allele": a1,
        "other_allele": a2,
        "beta": beta[rows],
        "standard_error": beta_se[rows],
        "effect_allele_frequency": eaf,
        "p_value": p_value_text(L),
        "neg_log_10_p_value": L,
        "rsid": np.where([bool(_RSID.match(s)) for s in snp], snp, "NA") if len(snp) else snp,
        "n": np.asarray(results["n"], dtype=np.int64)[rows],
        "snp_id": snp,
    }
    if "test" in results:
        test = np.asarray(results["test"], dtype=str)[rows]
        table["test"] = test
        n_score = int((test == "score").sum())
        if n_score:
            notes.append(f"{n_score} rows come from score tests (column test): their beta is a one-step estimate")
    return table, notes


def _text(name: str, values) -> list:
    kind = next(c.kind for c in COLUMNS if c.name == name)
    if kind == "str":
        return [str(v) for v in values]
    if kind == "int":
        return [str(int(v)) for v in values]
    return ["NA" if not np.isfinite(v) else format(float(v), ".10g") for v in values]


def format_gwas_ssf(table: dict) -> str:
    """The data file's text: a header line and one tab-separated line per row."""
    names = list(table)
    columns = [_text(name, table[name]) for name in names]
    return "\t".join(names) + "\n" + "".join("\t".join(row) + "\n" for row in zip(*columns))


def metadata_path(data_path: str) -> str:
    """The metadata file of a GWAS-SSF data file: ``X.tsv.gz`` -> ``X.tsv.gz-meta.yaml``."""
    return data_path + "-meta.yaml"


def metadata_yaml(data_file_name: str, md5sum: str, table: dict, effect: str, genome_assembly: str | None = None,
                  trait: str | None = None, ancestry: str | None = None, genotyping_technology: str | None = None,
                  date: str | None = None, columns: tuple | None = None) -> str:
    """The GWAS-SSF metadata (YAML) of a data file.

    Fields the results do not determine (genome assembly, trait, ancestry, genotyping technology)
    are ``NR`` (not reported, the GWAS Catalog tools' value for unknowns) unless given, and a
    comment at the top lists them. The sample size is the largest ``n`` of the table. Fields are in
    the order of the GWAS Catalog's metadata model (gwas-sumstats-tools).

    Parameters
    ----------
    data_file_name : str
        The data file's name (without directories).
    md5sum : str
        md5 of the data file as written (compressed, if it is).
    table : dict
        From :func:`gwas_ssf_table`.
    effect : {"add", "var", "dispersion"}
    genome_assembly, trait, ancestry, genotyping_technology : str, optional
    date : str, optional
        ``date_metadata_last_modified``, ISO format (default today).
    columns : (str, str) or (str, str, str), optional
        The results' (estimate,) standard error and −log10 p columns the table was made from, for
        the notes (the estimate is named when it is not the effect's own column).

    Returns
    -------
    str
    """
    import datetime

    def q(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML scalar

    given = {"genome_assembly": genome_assembly, "trait_description": trait, "sample_ancestry_category": ancestry,
             "genotyping_technology": genotyping_technology}
    unknown = [k for k, v in given.items() if v is None]
    n = int(np.max(table["n"])) if len(table["n"]) else 0
    notes = f"beta is the {EFFECT_DOC['gxe' if effect.startswith('gxe') else effect]}; n is the number of individuals"
    notes += " per variant"
    if columns:
        *est, se_col, p_col = columns
        if est and est[0] != effect:  # the adaptive test's var_adapt, not the HLM's var
            notes += f"; beta is the results column {est[0]}"
        notes += f"; standard_error and p_value are the results columns {se_col} and {p_col}"
    lines = ["# GWAS-SSF metadata written by hlmm_sumstats."]
    if unknown:
        lines.append(f"# Not reported (NR); fill in before submitting: {', '.join(unknown)}.")
    lines += [
        f"author_notes: {q(notes)}",
        f"date_metadata_last_modified: {date or datetime.date.today().isoformat()}",
        "trait_description:",
        f"  - {q(trait or 'NR')}",
        f"genome_assembly: {q(genome_assembly or 'NR')}",
        "coordinate_system: 1-based",
        "genotyping_technology:",
        f"  - {q(genotyping_technology or 'NR')}",
        "samples:",
        "  - sample_ancestry_category:",
        f"      - {q(ancestry or 'NR')}",
        f"    sample_size: {n}",
        f"data_file_name: {q(data_file_name)}",
        f"file_type: {q(SSF_VERSION)}",
        f"data_file_md5sum: {q(md5sum)}",
        f"analysis_software: {q(f'hlmm {__version__}')}",
        "is_harmonised: false",
        "is_sorted: true",
    ]
    return "\n".join(lines) + "\n"
