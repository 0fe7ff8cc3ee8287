"""hlmm_sumstats: write one effect of a results table as GWAS Catalog summary statistics (GWAS-SSF)."""

from __future__ import annotations

import gzip
import hashlib
import os
import sys

from hlmm.cli._common import check_output, log, parser, read_results, run_main
from hlmm.io import InputError
from hlmm.results import write_atomic
from hlmm.sumstats import (
    EFFECT_DOC,
    EFFECTS,
    SE_CHOICES,
    effect_columns,
    format_gwas_ssf,
    gwas_ssf_table,
    metadata_path,
    metadata_yaml,
)


def build_parser():
    p = parser("hlmm_sumstats", __doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("results", help="results table: X.models.gz (hlmm_chr, hlmm_merge) or X.dispersion.gz "
                                   "(hlmm_dispersion)")
    p.add_argument("-o", "--out", required=True, help="data file NAME.tsv.gz (gzip) or NAME.tsv; the metadata goes "
                                                      "to NAME.tsv.gz-meta.yaml")
    p.add_argument("--effect", required=True, metavar="{" + ",".join(EFFECTS) + ",gxe_<E>}",
                   help="the effect written as beta: " + "; ".join(f"{k}: {v}" for k, v in EFFECT_DOC.items())
                        + " (dispersion needs a .dispersion.gz)")
    p.add_argument("--se", choices=SE_CHOICES, default="adapt",
                   help="for --effect var: adapt (default): the adaptive variance test, valid for non-normal traits"
                        " and efficient for heavy-tailed ones (var_adapt, var_se_adapt, var_pval_adapt); robust: var"
                        " with var_se_robust and var_pval_robust, valid for non-normal traits; model: the model-based"
                        " columns (var_se, var_pval), which assume normal residuals. add and dispersion are the same"
                        " for every choice")
    p.add_argument("--keep_missing", action="store_true",
                   help="keep rows without an estimate, with NA (GWAS-SSF's mandatory fields may not be NA, so they "
                        "are left out by default)")
    p.add_argument("--genome_assembly", default=None, help="for the metadata, e.g. GRCh37 or GRCh38 (default NR, "
                                                           "not reported)")
    p.add_argument("--trait", default=None, help="trait description for the metadata (default NR)")
    p.add_argument("--ancestry", default=None, help="sample ancestry category for the metadata, e.g. European "
                                                    "(default NR)")
    p.add_argument("--genotyping_technology", default=None,
                   help="for the metadata, e.g. 'Genome-wide genotyping array' (default NR)")
    p.add_argument("--quiet", action="store_true", help="No log messages; errors are still printed")
    return p


def run(args) -> None:
    if not (args.out.endswith(".tsv") or args.out.endswith(".tsv.gz")):
        raise InputError(f"output {args.out}: a GWAS-SSF data file is named NAME.tsv or NAME.tsv.gz")
    check_output(args.out, [args.results])
    res = read_results(args.results)
    if args.effect == "dispersion" and "dispersion" not in res:
        raise InputError(f"results file {args.results}: no dispersion columns; --effect dispersion needs the output"
                         f" of hlmm_dispersion (X.dispersion.gz)")
    try:
        table, notes = gwas_ssf_table(res, args.effect, keep_missing=args.keep_missing, se=args.se)
    except ValueError as e:
        raise InputError(f"results file {args.results}: {e}") from None
    for note in notes:
        log.warning(note)
    data = format_gwas_ssf(table).encode()
    if args.out.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_atomic(args.out, data)
    est, se_col, pval, _ = effect_columns(res, args.effect, args.se)
    meta = metadata_yaml(os.path.basename(args.out), hashlib.md5(data).hexdigest(), table, args.effect,
                         args.genome_assembly, args.trait, args.ancestry, args.genotyping_technology,
                         columns=(est, se_col, pval))
    write_atomic(metadata_path(args.out), meta.encode(), "metadata file")
    log.info(f"wrote {args.out} ({len(table['snp_id']):,} rows, beta = {args.effect}"
             + (f" ({est})" if est != args.effect else "")
             + f", standard errors and p-values from {se_col} and {pval}) and {metadata_path(args.out)}")


def main(argv=None) -> int:
    return run_main("hlmm_sumstats", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
