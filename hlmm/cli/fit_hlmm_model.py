"""fit_hlmm_model: fit one HLM or HLMM to a phenotype with covariates and random effects."""

from __future__ import annotations

import argparse
import sys

from hlmm.cli._common import (
    add_data_arguments,
    check_output_prefix,
    covariate_effects,
    fit_null,
    load_analysis_data,
    log,
    run_main,
)
from hlmm.io import InputError
from hlmm.results import write_effects


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fit_hlmm_model",
        description="Fit a heteroskedastic linear (mixed) model to a phenotype, covariates and random effects.",
    )
    p.add_argument("phenofile", type=str, help="Location of the phenotype (response) file with format: FID, IID, y1, y2, ...")
    p.add_argument("outprefix", type=str, help="Prefix of the output files")
    add_data_arguments(p)
    return p


def run(args) -> None:
    if not (args.mean_covar or args.var_covar or args.random_gts):
        raise InputError("at least one of --mean_covar, --var_covar and --random_gts is required")
    check_output_prefix(args.outprefix)
    data = load_analysis_data(args, None, "")
    log.info("Fitting model")
    fit = fit_null(data, args.h2_init)
    log.info(f"Maximum log-likelihood {fit['likelihood']:.6f}")
    (mean, mean_se), (var, var_se) = covariate_effects(data, fit)
    if args.mean_covar or args.var_covar:
        write_effects(args.outprefix + ".mean_effects.txt", data.X.names, mean, mean_se)
        write_effects(args.outprefix + ".variance_effects.txt", data.V.names, var, var_se)
    if data.G is not None and not args.no_h2_estimate:
        write_effects(args.outprefix + ".h2.txt", ["h2"], [fit["h2"]], [fit["h2_se"]])


def main(argv=None) -> int:
    return run_main("fit_hlmm_model", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
