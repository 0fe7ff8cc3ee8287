"""fit_hlmm_model: fit one HLM or HLMM to a phenotype with covariates and random effects."""

from __future__ import annotations

import sys

from hlmm.cli._common import add_data_arguments, log, parser, positive_int, run_main
from hlmm.io import InputError
from hlmm.pipeline import Inputs, fit_model
from hlmm.results import write_effects
from hlmm.runstate import RunState


def build_parser():
    p = parser("fit_hlmm_model",
               "Fit a heteroskedastic linear (mixed) model to a phenotype, covariates and random effects.")
    p.add_argument("phenofile", type=str, help="Phenotype (response) file: FID, IID, y1, y2, ...")
    p.add_argument("outprefix", type=str, help="Output prefix (a prefix, not a file name): writes "
                                               "outprefix.mean_effects.txt, .variance_effects.txt and .h2.txt")
    add_data_arguments(p)
    p.add_argument("--phen_index", type=positive_int, default=1,
                   help="Phenotype column to analyse, counting from 1 (default 1)")
    p.add_argument("--robust", action="store_true", default=False,
                   help="Sandwich (Huber-White) standard errors, valid for non-normal traits; not available with "
                        "--random_gts (the individuals' scores are correlated through the random effects)")
    return p


def run(args) -> None:
    if not (args.mean_covar or args.var_covar or args.random_gts):
        raise InputError("at least one of --mean_covar, --var_covar and --random_gts is required")
    RunState(args.outprefix).check_paths()
    inputs = Inputs(args.phenofile, None, [args.phen_index], False, args.mean_covar, args.var_covar,
                    args.random_gts, args.random_gts_txt, args.missing_char, keep=args.keep, remove=args.remove)
    log.info("Fitting model")
    fit = fit_model(inputs, args.h2_init, args.robust)
    log.info(f"Maximum log-likelihood {fit.covariate_fit['likelihood']:.6f}")
    if args.mean_covar or args.var_covar:
        write_effects(args.outprefix + ".mean_effects.txt", *fit.mean_effects)
        write_effects(args.outprefix + ".variance_effects.txt", *fit.variance_effects)
    if fit.h2 is not None and not args.no_h2_estimate:
        write_effects(args.outprefix + ".h2.txt", ["h2"], [fit.h2[0]], [fit.h2[1]])


def main(argv=None) -> int:
    return run_main("fit_hlmm_model", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
