"""hlmm_chr: fit HLMs or HLMMs to a contiguous range of the SNPs of a PLINK .bed file.

The script runs from start to end-1 inclusive, the first SNP having index 0, and writes
``outprefix.models.gz``. See the documentation for every argument and output.
"""

from __future__ import annotations

import argparse
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
from hlmm.results import ModelsWriter, stats_table, write_effects
from hlmm._bedkernels import read_packed
from hlmm.scan import ENGINES, ScanSettings, prepare_random_effects, scan_block, scan_packed


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
    if args.h2_init < 0:
        raise InputError(f"--h2_init must be non-negative, got {args.h2_init}")
    bed = open_bed(args.genofile)
    start, stop = snp_range(args, bed.n_snps, bed.path)
    data = load_analysis_data(args, bed.ids, f"genotype file {bed.path[:-4]}.fam")
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
        G = prepare_random_effects(y, G)
    log.info(f"Fitting models for {stop - start} SNPs")
    progress = Progress(stop - start, enabled=sys.stderr.isatty() and not args.quiet)
    n_failed = 0
    with ModelsWriter(args.outprefix + ".models.gz", append=args.append) as out:
        for b0 in range(start, stop, args.block_size):
            b1 = min(b0 + args.block_size, stop)
            if args.engine == "reference":
                stats, problems = scan_block(y, X, V, bed.read(data.rows, b0, b1), settings, data.G)
            else:
                packed = read_packed(bed.path, bed.n_individuals, b0, b1)
                stats, problems = scan_packed(y, X, V, packed, data.rows, bed.n_individuals, settings, G)
            for j, why in problems:
                log.warning(f"SNP {bed.snp[b0 + j]}: fit failed ({why}); its row has NaN estimates")
            n_failed += len(problems)
            info = {"SNP": bed.snp[b0:b1], "chr": bed.chrom[b0:b1], "pos": bed.pos[b0:b1],
                    "A1": bed.A1[b0:b1], "A2": bed.A2[b0:b1]}
            out.write_block(stats_table(info, stats))
            progress.update(b1 - b0)
    progress.close()
    log.info(f"Wrote {stop - start} rows to {args.outprefix}.models.gz ({n_failed} failed fits)")


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
