"""The one registry of output columns: every column of every results file is declared here once.

The writer and reader of ``.models.gz`` files, ``hlmm_merge``, the per-block statistics, the
documentation's column tables and a test of the documentation all derive from
:data:`MODELS` and :data:`DISPERSION`. Adding a column is one entry here (and the code that
computes it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Column", "MODELS", "DISPERSION", "by_name", "names", "DOCUMENTED", "rst_table", "STATS", "INTERNAL",
           "interaction_columns"]


@dataclass(frozen=True)
class Column:
    """One output column.

    Attributes
    ----------
    name : str
    kind : {"str", "int", "float"}
        How it is written and read.
    doc : str
        What it holds, as the documentation states it.
    source : str
        ``"variant"`` (from the genotype file's variant table), ``"stats"`` (computed per SNP
        by a scanner), ``"derived"`` (computed from other columns when a block is written) or
        ``"dispersion"`` (appended by hlmm_dispersion).
    since : str
        ``"1.2.0a1"`` for the documented columns of the original, else the version that added it.
    """

    name: str
    kind: str
    doc: str
    source: str
    since: str = "1.2.0a1"


#: Columns of ``outprefix.models.gz``, in file order.
MODELS = (
    Column("SNP", "str", "variant ID from the genotype file", "variant"),
    Column("n", "int", "number of individuals with a call (Wald fits use only them; score tests set the others"
           " to the variant's mean, so they add nothing to its scores)", "stats"),
    Column("frequency", "float", "minor allele frequency among them", "stats"),
    Column("likelihood", "float", "maximum of the log-likelihood (NaN for score-test rows)", "stats"),
    Column("add", "float", "additive effect of a copy of A1 on the mean", "stats"),
    Column("add_se", "float", "its standard error", "stats"),
    Column("add_t", "float", "add / add_se", "derived"),
    Column("add_pval", "float", "−log10 p-value for an additive effect", "derived"),
    Column("var", "float", "log-linear variance effect of a copy of A1", "stats"),
    Column("var_se", "float", "its standard error", "stats"),
    Column("var_t", "float", "var / var_se", "derived"),
    Column("var_pval", "float", "−log10 p-value for a log-linear variance effect", "derived"),
    Column("av_pval", "float", "−log10 p-value of the joint 2-df test of additive and variance effects", "derived"),
    Column("chr", "str", "chromosome, from the genotype file", "variant", "2.0"),
    Column("pos", "int", "base-pair position, from the genotype file", "variant", "2.0"),
    Column("A1", "str", "the counted allele (effects are per copy of it)", "variant", "2.0"),
    Column("A2", "str", "the other allele", "variant", "2.0"),
    Column("A1_frequency", "float", "frequency of A1 among the individuals with a call", "stats", "2.0"),
    Column("test", "str", "wald (maximum likelihood fit) or score (one-step estimate and score test under the null)",
           "stats", "2.0"),
    Column("var_se_robust", "float", "standard error of var valid for non-normal traits: the model-based one times"
           " sqrt(m4 / 2), m4 the variance of the null model's squared standardised residuals (2 if normal)",
           "derived", "2.0"),
    Column("var_pval_robust", "float", "−log10 p-value for a log-linear variance effect from var / var_se_robust"
           " (the default for hlmm_dispersion)", "derived", "2.0"),
    Column("av_pval_robust", "float", "−log10 p-value of the joint 2-df test of add and var with var_se_robust and"
           " the correlation add_var_cor", "derived", "2.0"),
    Column("add_var_cor", "float", "correlation of the sampling errors of add and var, m3 / sqrt(m4) from the null"
           " model's residuals (0 for symmetric traits)", "derived", "2.0"),
    Column("var_adapt", "float", "log-linear variance effect of a copy of A1 from the adaptive variance score,"
           " efficient for heavy-tailed traits (hlmm.adaptive; about var for normal ones)", "stats", "2.0"),
    Column("var_se_adapt", "float", "its standard error, valid for non-normal traits", "stats", "2.0"),
    Column("var_pval_adapt", "float", "−log10 p-value for a log-linear variance effect from var_adapt / var_se_adapt"
           " (the default for hlmm_sumstats, the plots and the top variants logged)", "derived", "2.0"),
)

#: Columns that ``hlmm_dispersion`` appends.
DISPERSION = (
    Column("dispersion", "float", "dispersion effect: var − slope · add, the slope of the mean-variance relation",
           "dispersion", "2.0"),
    Column("dispersion_se", "float", "its standard error: sqrt(var_se² + slope² add_se² − 2 slope cov(add, var)"
           " + add² se(slope)²) (hlmm.dispersion; 1.2.0a1's method: sqrt(var_se² + slope² add_se²))",
           "dispersion", "2.0"),
    Column("dispersion_t", "float", "dispersion / dispersion_se", "dispersion", "2.0"),
    Column("dispersion_pval", "float", "−log10 p-value for a dispersion effect", "dispersion", "2.0"),
)

_ALL = {c.name: c for c in MODELS + DISPERSION}

#: The columns a scanner computes per variant (:mod:`hlmm.engines`), in file order.
STATS = tuple(c.name for c in MODELS if c.source == "stats")

#: Per-variant keys of a scanner's results that are not written as columns: name -> what they hold.
INTERNAL = {
    "status": "filter or fit status code of the variant (hlmm.engines.STATUS)",
    "problems": "list of (index within the block, reason) of failed fits",
    "av_chi2": "score tests: the joint 2-df statistic where it is not add_t^2 + var_t^2 (robust score tests)",
    "add_se_model": "with robust standard errors: the model-based add_se, from which the robust columns start",
    "var_se_model": "with robust standard errors: the model-based var_se, from which the robust columns start",
    "gxe": "with --interaction: the G×E effects, shape (b, K)",
    "gxe_se": "their standard errors, shape (b, K)",
    "gxe_cov": "the covariance of (add, gxe_1..gxe_K), shape (b, K + 1, K + 1), for the joint tests",
    "gxe_model_se": "with --robust --interaction: 1 where add and the G×E effects have model-based standard errors"
                    " (too few minor alleles among the exposed for the sandwich; hlmm.engines.reference)",
}


def interaction_columns(exposures) -> tuple:
    """The columns of a scan with G×E terms (``--interaction``), after :data:`MODELS`.

    One exposure E: ``gxe``, ``gxe_se``, ``gxe_t``, ``gxe_pval`` and ``joint_pval`` (2 df). K
    exposures: a ``gxe_<E>`` group of four for each, ``gxe_pval`` (K df) and ``joint_pval`` (K + 1 df).

    Examples
    --------
    >>> names(interaction_columns(["smoking"]))
    ['gxe', 'gxe_se', 'gxe_t', 'gxe_pval', 'joint_pval']
    >>> names(interaction_columns(["E1", "E2"]))[:5]
    ['gxe_E1', 'gxe_E1_se', 'gxe_E1_t', 'gxe_E1_pval', 'gxe_E2']
    """
    exposures = list(exposures)
    if not exposures:
        return ()
    out = []
    for e in exposures:
        stem = "gxe" if len(exposures) == 1 else f"gxe_{e}"
        out += [Column(stem, "float", f"G×E effect: the change in the additive effect of a copy of A1 per unit of {e}",
                       "interaction", "2.0"),
                Column(f"{stem}_se", "float", "its standard error", "interaction", "2.0"),
                Column(f"{stem}_t", "float", f"{stem} / {stem}_se", "interaction", "2.0"),
                Column(f"{stem}_pval", "float", f"−log10 p-value for a G×E effect with {e}", "interaction", "2.0")]
    K = len(exposures)
    if K > 1:
        out.append(Column("gxe_pval", "float", f"−log10 p-value of the joint {K}-df test of the {K} G×E effects",
                          "interaction", "2.0"))
    out.append(Column("joint_pval", "float", f"−log10 p-value of the joint {K + 1}-df test of add and the G×E"
                      " effect" + ("s" if K > 1 else "") + ": does the variant act on the mean at all?",
                      "interaction", "2.0"))
    return tuple(out)

#: Names of the 13 columns documented by 1.2.0a1, in order.
DOCUMENTED = [c.name for c in MODELS if c.since == "1.2.0a1"]


def names(columns=MODELS) -> list:
    """Column names, in order."""
    return [c.name for c in columns]


def by_name(name: str) -> Column | None:
    """The registered column called ``name`` (None if there is none)."""
    return _ALL.get(name)


def rst_table(columns=MODELS) -> str:
    """The columns as a reStructuredText simple table (for the documentation)."""
    width = max(len(c.name) for c in columns) + 2
    rule = "=" * width + "  " + "=" * 78
    lines = [rule]
    lines += [f"{c.name:<{width}}  {c.doc}" for c in columns]
    lines.append(rule)
    return "\n".join(lines) + "\n"
