"""hlmm_chr: fit HLMs or HLMMs to a contiguous range of the SNPs of a PLINK .bed file.

The script runs from start to end-1 inclusive, the first SNP having index 0, and writes
``outprefix.models.gz``. See the documentation for every argument and output.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from hlmm.cli._common import (
    Progress,
    add_data_arguments,
    check_output_prefix,
    covariate_effects,
    fit_null,
    load_analysis_data,
    log,
    run_main,
)
from hlmm.io import InputError, open_bed
from hlmm.results import write_effects
from hlmm.runner import ScanJob, Sidecar, differences, fingerprint, run_scan
from hlmm.scan import ENGINES, ScanSettings, prepare_random_effects


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hlmm_chr",
        description="Fit heteroskedastic linear (mixed) models to SNPs start..end-1 of a .bed file.",
    )
    p.add_argument("genofile", type=str, help="Path to genotypes in BED format")
    p.add_argument("start", type=int, help="Index of SNP in genofile from which to start computing test stats")
    p.add_argument("end", type=int, help="Index of SNP in genofile at which to finish computing test stats")
    p.add_argument("phenofile", type=str, help="Location of the phenotype (response) file with format: FID, IID, y1, y2, ...")
    p.add_argument("outprefix", type=str, help="Location to output csv file with association statistics")
    add_data_arguments(p)
    p.add_argument("--fit_covariates", action="store_true", default=False,
                   help="Fit covariates for each locus. Default is to fit covariates for the null model and project out "
                        "(mean) and rescale (variance)")
    p.add_argument("--min_maf", type=float, default=0.05, help="Ignore SNPs with minor allele frequency below min_maf (default 5%%)")
    p.add_argument("--max_missing", type=float, default=5.0, help="Ignore SNPs with greater %% missing calls than max_missing (default 5%%)")
    p.add_argument("--append", action="store_true", default=False,
                   help="Append results to existing output file with given outprefix (default overwrites)")
    p.add_argument("--whole_chr", action="store_true", default=False, help="Fit models to all variants in .bed genofile")
    p.add_argument("--no_covariate_estimates", action="store_true", default=False, help="Suppress output of covariate effect estimates")
    p.add_argument("--engine", choices=ENGINES, default="fast",
                   help="Fitting engine: fast (default) or reference (one optimize_model per SNP, the "
                        "straightforward algorithm of hlmm 1.2.0a1); both give the same numbers")
    p.add_argument("--block_size", type=int, default=256, help="SNPs read and written per block (default 256)")
    p.add_argument("--n_jobs", type=int, default=1, help="worker processes fitting blocks in parallel (default 1)")
    p.add_argument("--dask_scheduler", type=str, default=None,
                   help="address of a Dask scheduler to send blocks to (needs the dask extra)")
    p.add_argument("--resume", action="store_true", default=False,
                   help="continue an interrupted run after its last complete SNP (same inputs and options)")
    return p


def snp_range(args, n_snps: int, path: str) -> tuple[int, int]:
    """Validated [start, stop) of the SNPs to fit."""
    if args.whole_chr:
        return 0, n_snps
    start, end = args.start, args.end
    if start < 0:
        raise InputError(f"genotype file {path}: start {start} is negative")
    if start >= n_snps:
        raise InputError(f"genotype file {path}: start {start} is past the last SNP (the file has {n_snps} SNPs, indices 0..{n_snps - 1})")
    if start >= end:
        raise InputError(f"genotype file {path}: start {start} is not before end {end}")
    if end > n_snps:
        log.info(f"end {end} is past the last SNP; clipped to {n_snps}")
        end = n_snps
    return start, end


def run(args) -> None:
    check_output_prefix(args.outprefix)
    if args.block_size < 1:
        raise InputError(f"--block_size must be at least 1, got {args.block_size}")
    if args.n_jobs < 1:
        raise InputError(f"--n_jobs must be at least 1, got {args.n_jobs}")
    if args.resume and args.append:
        raise InputError("--resume and --append cannot be combined")
    bed = open_bed(args.genofile)
    start, stop = snp_range(args, bed.n_snps, bed.path)
    out_path = args.outprefix + ".models.gz"
    data = load_analysis_data(args, bed.ids, f"genotype file {bed.path[:-4]}.fam")
    run_id = run_fingerprint(args, bed.path)
    if args.resume and not check_resume(out_path, run_id):
        return
    log.info(f"{stop - start} test SNPs ({start}..{stop - 1}) in {bed.path}")

    log.info("Fitting null model")
    null = fit_null(data, args.h2_init)
    write_null_outputs(args, data, null)
    X, V, y = data.X.matrix, data.V.matrix, data.y
    if not args.fit_covariates:
        y = (y - X @ null["alpha"]) * np.exp(-0.5 * (V @ null["beta"]))
        X = V = np.ones((len(y), 1))
    h2_start = args.h2_init if (args.no_h2_estimate or data.G is None) else null["h2"]
    settings = ScanSettings(args.min_maf, args.max_missing, h2_start, args.engine, beta_start=null["beta"])
    G = data.G
    if G is not None and args.engine == "fast" and not args.fit_covariates:
        G = prepare_random_effects(y, G, data.G_center, data.G_scale)
        data.G = None  # the fast engine keeps its own copy, augmented with 1 and y
    job = ScanJob(bed, data.rows, y, X, V, G, settings)

    log.info(f"Fitting models for {stop - start} SNPs")
    progress = Progress(stop - start, enabled=sys.stderr.isatty() and not args.quiet)
    summary = run_scan(job, out_path, start, stop, args.block_size, run_id, n_jobs=args.n_jobs,
                       dask_scheduler=args.dask_scheduler, resume=args.resume, append=args.append,
                       progress=progress)
    progress.close()
    log.info(f"Wrote {summary['rows']} rows to {out_path} ({summary['failed']} failed fits)")


def run_fingerprint(args, bed_path: str) -> dict:
    prefix = bed_path[:-4]
    paths = {"genotype_bed": bed_path, "genotype_bim": prefix + ".bim", "genotype_fam": prefix + ".fam",
             "phenotype": args.phenofile, "mean_covar": args.mean_covar, "var_covar": args.var_covar}
    if args.random_gts:
        if args.random_gts_txt:
            paths["random_txt"] = args.random_gts
        else:
            rp = args.random_gts[:-4] if args.random_gts.endswith(".bed") else args.random_gts
            paths.update({"random_bed": rp + ".bed", "random_bed_bim": rp + ".bim", "random_bed_fam": rp + ".fam"})
    try:
        return fingerprint(args, paths)
    except OSError as e:
        raise InputError(f"cannot read {e.filename}: {e.strerror}") from None


def check_resume(out_path: str, run_id: dict) -> bool:
    """Whether a resumed run has work to do; refuses a run with different inputs or options."""
    side_path = out_path[: -len(".gz")] + ".json"
    if not os.path.exists(side_path):
        if os.path.exists(out_path):
            raise InputError(f"--resume: {out_path} has no run description {side_path}, so it cannot be resumed safely")
        log.info(f"--resume: no earlier run of {out_path}; starting a new one")
        return True
    side = Sidecar.load(side_path)
    diff = differences(side.run, run_id)
    if diff:
        raise InputError(f"--resume: {out_path} was started with different inputs or options ({', '.join(diff)});"
                         " rerun without --resume to start again")
    if side.finished:
        log.info(f"--resume: {out_path} is already complete ({side.stop - side.start} SNPs); nothing to do")
        return False
    if not os.path.exists(out_path):
        raise InputError(f"--resume: {out_path} is missing although {side_path} describes it")
    return True


def write_null_outputs(args, data, null: dict) -> None:
    if args.append:
        return
    if not args.no_covariate_estimates:
        (mean, mean_se), (var, var_se) = covariate_effects(data, null)
        if args.mean_covar:
            write_effects(args.outprefix + ".null_mean_effects.txt", data.X.names, mean, mean_se)
        if args.var_covar:
            write_effects(args.outprefix + ".null_variance_effects.txt", data.V.names, var, var_se)
    if data.G is not None and not args.no_h2_estimate:
        write_effects(args.outprefix + ".null_h2.txt", ["h2"], [null["h2"]], [null["h2_se"]])


def main(argv=None) -> int:
    return run_main("hlmm_chr", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
