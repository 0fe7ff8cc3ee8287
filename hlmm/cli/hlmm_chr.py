"""hlmm_chr: fit HLMs or HLMMs to a range of the variants of a genotype file.

The script runs from start to end-1 inclusive, the first variant having index 0, and writes
``outprefix.models.gz``. See the documentation for every argument and output.
"""

from __future__ import annotations

import sys

from hlmm.cli._common import (
    Progress,
    add_data_arguments,
    index_list,
    log,
    maf_fraction,
    missing_percentage,
    name_list,
    neglog10_threshold,
    parser,
    positive_int,
    run_main,
)
from hlmm.engines.reference import MIN_SANDWICH_MAC
from hlmm.model import ENGINES, TESTS
from hlmm.pipeline import Inputs, ScanOptions, prepare_scan, run_scan
from hlmm.scan import ScanSettings


def build_parser():
    p = parser("hlmm_chr", "Fit heteroskedastic linear (mixed) models to variants start..end-1 of a genotype file.")
    p.add_argument("genofile", type=str, help="Genotype file: .bed (with .bim and .fam), .pgen (with .pvar and .psam) "
                                              "or .bgen (sample IDs from the file or --sample)")
    p.add_argument("start", type=int, help="Index of the variant in genofile from which to start computing test stats "
                                           "(0-based)")
    p.add_argument("end", type=int, help="Index of the variant in genofile at which to finish computing test stats "
                                         "(exclusive)")
    p.add_argument("phenofile", type=str, help="Phenotype (response) file: FID, IID, y1, y2, ...")
    p.add_argument("outprefix", type=str, help="Output prefix (a prefix, not a file name): results go to "
                                               "outprefix.models.gz, gzipped tab-separated text with a header")
    add_data_arguments(p)
    p.add_argument("--phen_index", type=index_list, default=[1],
                   help="Phenotype column(s) to analyse, counting from 1, e.g. 2 or 1,3-5 (default 1); with several, "
                        "each gets outprefix.<name>.models.gz")
    p.add_argument("--all_phenotypes", action="store_true", default=False,
                   help="Analyse every phenotype column of phenofile")
    p.add_argument("--fit_covariates", action="store_true", default=False,
                   help="Fit covariates for each locus. Default is to fit covariates for the null model and project "
                        "out (mean) and rescale (variance)")
    p.add_argument("--min_maf", type=maf_fraction, default=0.05,
                   help="Minor allele frequency threshold, a fraction in [0, 0.5): variants with MAF at or below it "
                        "get NaN estimates (default 0.05)")
    p.add_argument("--max_missing", type=missing_percentage, default=5.0,
                   help="Missingness threshold, a percentage in (0, 100]: variants with this %% of missing calls or "
                        "more get NaN estimates (default 5)")
    p.add_argument("--append", action="store_true", default=False,
                   help="Append rows for another range to finished results of the same analysis in "
                        "outprefix.models.gz (default: replace it once the new run has finished)")
    p.add_argument("--whole_chr", action="store_true", default=False,
                   help="Fit models to all variants of genofile, ignoring start and end")
    p.add_argument("--no_covariate_estimates", action="store_true", default=False,
                   help="Suppress output of covariate effect estimates")
    p.add_argument("--sample", type=str, default=None, help="Sample file (.sample) with the sample IDs of a .bgen")
    p.add_argument("--extract", type=str, default=None, help="Fit only the variants whose IDs this file lists "
                                                             "(one per line)")
    p.add_argument("--exclude", type=str, default=None, help="Leave out the variants whose IDs this file lists")
    p.add_argument("--chr", dest="chrom", type=str, default=None, help="Fit only the variants of this chromosome")
    p.add_argument("--from_bp", type=int, default=None, help="Fit only variants at or after this base-pair position")
    p.add_argument("--to_bp", type=int, default=None, help="Fit only variants at or before this base-pair position")
    p.add_argument("--hard_calls", action="store_true", default=False,
                   help="Round dosages to the nearest genotype (0, 1, 2), so that the genotype-class engines apply")
    p.add_argument("--test", choices=TESTS, default="wald",
                   help="wald (default): fit each variant's model by maximum likelihood; score: score tests under "
                        "the null model, far faster (a genome screen), with one-step estimates and likelihood NaN")
    p.add_argument("--refit", type=neglog10_threshold, default=None, metavar="PVAL",
                   help="With --test score: fit exactly (Wald) every variant whose add, var (adaptive or robust) or av"
                        " (robust) -log10 p-value is at least PVAL (e.g. 5 for p <= 1e-5), and write that row instead"
                        " of the score row")
    p.add_argument("--robust", action="store_true", default=False,
                   help="Standard errors valid for non-normal traits: sandwich (Huber-White) for Wald fits of HLMs, "
                        "the empirical score variance for --test score. Not available for Wald fits of mixed models "
                        "(their individuals' scores are correlated): with --random_gts use --test score without "
                        "--refit")
    p.add_argument("--interaction", type=name_list, default=[], metavar="NAME[,NAME...]",
                   help="G×E: columns of the mean covariate file (exposures E); each variant's mean gets g and g*E for "
                        "each, its log-variance g, and every E enters the mean and variance null models; writes gxe, "
                        "gxe_se, gxe_t, gxe_pval and joint_pval (gxe_<NAME> groups and a K-df gxe_pval for several)")
    p.add_argument("--interaction_snp", type=str, default=None, metavar="ID",
                   help="G×G: this variant's genotype (from the genotype file) is the exposure")
    p.add_argument("--pred", type=str, default=None, metavar="PRED_LIST",
                   help="regenie step 1's prediction list (<prefix>_pred.list): for a variant on chromosome c, the "
                        "trait's leave-one-chromosome-out prediction for c is a mean covariate with an estimated "
                        "coefficient (null models per chromosome); individuals without a prediction are left out")
    p.add_argument("--pred_offset", action="store_true", default=False,
                   help="With --pred: subtract the prediction from the trait (coefficient 1, regenie step 2's "
                        "convention) instead of estimating its coefficient")
    p.add_argument("--id_delim", type=str, default=None, metavar="C",
                   help="The genotype file's sample IDs are FID, C and IID joined (plink2's --id-delim; a .bgen's "
                        "embedded FID_IID, for example): they are matched as whole tokens against the other files' "
                        "FID and IID joined by C. FID_IID tokens are recognised without it when the match is "
                        "unambiguous")
    p.add_argument("--sex", type=str, default=None,
                   help="Sex of the individuals, FID IID sex per line (1/M/male, 2/F/female, 0/NA unknown), instead "
                        "of the genotype file's (.fam, .psam SEX, .sample sex)")
    p.add_argument("--no_x_sex", action="store_true", default=False,
                   help="On chrX, do not put sex in the mean and variance models nor leave out individuals of "
                        "unknown sex (as plink2's no-x-sex)")
    p.add_argument("--engine", choices=ENGINES, default="fast",
                   help="Fitting engine: fast (default) or reference (one optimize_model per SNP, the "
                        "straightforward algorithm of hlmm 1.2.0a1); both give the same numbers")
    p.add_argument("--block_size", type=positive_int, default=None,
                   help="Variants read, fitted and written per block (default: chosen for the model, 512 for score "
                        "tests and 256 for HLMs down to 1 for the reference mixed model, so that progress moves "
                        "every few seconds, and at most 2^26 genotypes per block; blocks of dosages are read and "
                        "fitted at most 2^22 dosages at a time)")
    p.add_argument("--n_jobs", type=positive_int, default=None,
                   help="Worker processes fitting blocks in parallel (default: one per core for the exact fits of "
                        "mixed models, whose blocks are slow; 1 otherwise). Results do not depend on it")
    p.add_argument("--dask_scheduler", type=str, default=None,
                   help="Address of a Dask scheduler to send blocks to (needs the dask extra)")
    p.add_argument("--resume", action="store_true", default=False,
                   help="Continue an interrupted run after its last complete block (same inputs and options); "
                        "does nothing if the run has finished")
    return p


def run(args) -> None:
    inputs = Inputs(args.phenofile, args.genofile, args.phen_index, args.all_phenotypes, args.mean_covar,
                    args.var_covar, args.random_gts, args.random_gts_txt, args.missing_char, args.sample,
                    args.keep, args.remove, args.extract, args.exclude, args.chrom, args.from_bp, args.to_bp,
                    args.pred, args.sex, args.id_delim, args.interaction, args.interaction_snp)
    settings = ScanSettings(args.min_maf, args.max_missing, args.engine, args.test, args.refit, args.robust,
                            args.hard_calls)
    options = ScanOptions(args.start, args.end, args.whole_chr, settings, args.fit_covariates, args.h2_init,
                          args.no_h2_estimate, args.block_size, args.pred_offset, args.no_x_sex)
    prepared = prepare_scan(inputs, options, outprefix=args.outprefix)
    for note in prepared.notes:
        log.warning(note)
    n = len(prepared.variants)
    log.info(f"{n} test variants ({prepared.start}..{prepared.stop - 1}) in {prepared.source.path};"
             f" {prepared.scanner.description}")
    log.info(f"Fitting models for {n} variants")
    summary = run_scan(prepared, args.outprefix, n_jobs=args.n_jobs, dask_scheduler=args.dask_scheduler,
                       resume=args.resume, append=args.append, no_covariate_estimates=args.no_covariate_estimates,
                       progress=Progress(enabled=not args.quiet))
    if summary.finished_before:
        return
    c = summary.status_counts
    log.info(f"Wrote {summary.rows} rows to {', '.join(summary.outputs)} in {summary.elapsed:.1f} s"
             f" ({c.get('failed', 0)} failed fits; filtered: {c.get('maf', 0)} by MAF, {c.get('missing', 0)} by"
             f" missingness, {c.get('no_calls', 0)} without calls, {c.get('multiallelic', 0)} multi-allelic)")
    if c.get("gxe_model_se"):
        log.info(f"{c['gxe_model_se']} rows: add and G×E standard errors model-based, not sandwich (fewer than"
                 f" {MIN_SANDWICH_MAC} minor alleles among the exposed, where the sandwich is inflated)")
    for out, tally in zip(summary.outputs, summary.tallies):
        log_tally(out if len(summary.outputs) > 1 else "", tally)
    n_rows = summary.rows * len(summary.outputs)
    if n_rows and c.get("ok", 0) == 0:
        log.warning(f"every one of the {summary.rows} variants was filtered or failed: the results hold no estimates"
                    f" (--min_maf {args.min_maf}, --max_missing {args.max_missing})")


def log_tally(what: str, tally) -> None:
    """λGC and the top variants of a scan's rows, as calibrated p-values give them (for the variance
    effects the adaptive test's), with the robust and model-based variance λGC beside them."""
    label = f"{what}: " if what else ""
    if not tally.n["add"]:
        return
    lam = {k: tally.lambda_gc(k) for k in tally.columns}
    log.info(f"{label}lambda_GC over {tally.n['add']:,} variants: add {lam['add']:.3f}, var {lam['var']:.3f}"
             f" (var_pval_adapt; var_pval_robust {lam['var (robust SE)']:.3f}; with the model-based var_se"
             f" {lam['var (model-based SE)']:.3f});"
             f" p < 5e-8: {tally.significant['add']:,} add, {tally.significant['var']:,} var")
    if "G×E" in tally.columns:
        log.info(f"{label}G×E test: lambda_GC {lam['G×E']:.3f}; p < 5e-8: {tally.significant['G×E']:,}")
    for k in ("add", "var", "G×E"):
        if k in tally.columns:
            top = ", ".join(f"{snp} ({p:.3g})" for snp, p in tally.top_variants(k))
            log.info(f"{label}top {k} variants (-log10 p{', adaptive test' if k == 'var' else ''}): {top}")


def main(argv=None) -> int:
    return run_main("hlmm_chr", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
