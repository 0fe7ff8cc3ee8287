"""hlmm_dispersion: estimate dispersion effects from results tables, one or several analysed together.

Several inputs (say, one per chromosome) are analysed as one scan: the mean-variance slope is
fitted to all their SNPs, and one table is written with their rows in the order of the inputs.
The method (:mod:`hlmm.dispersion`) is the moment estimator with the robust variance standard
errors and the correlation of add and var (``--method moment``, the default), or 1.2.0a1's
procedure (``--method 1.2.0a1``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from hlmm import columns as C
from hlmm.cli._common import check_output, log, parser, probability, read_results, run_main
from hlmm.dispersion import CLUSTER_BP, METHODS, MIN_Z, WEIGHT_T, clusters_of, estimate_dispersion, summarize
from hlmm.io import InputError
from hlmm.pvalues import CHI2_1_MEDIAN
from hlmm.results import write_table

NEEDED = ("SNP", "add", "add_se", "var", "var_se", "add_t", "var_t")
#: Columns of the moment method beyond NEEDED (results of hlmm_chr since they were added).
ROBUST = ("var_se_robust", "add_var_cor")


def build_parser():
    p = parser("hlmm_dispersion", "Estimate dispersion effects from hlmm_chr results (prefix.models.gz); several "
                                  "results files (e.g. one per chromosome) are analysed together.")
    p.add_argument("models", nargs="+", help="results of hlmm_chr, e.g. test.models.gz or chr*.models.gz")
    p.add_argument("-o", "--out", default=None, help="output table (default with one input X.models.gz: "
                                                     "X.dispersion.gz; needed with several inputs)")
    p.add_argument("--method", choices=METHODS, default="moment",
                   help="moment (default): the mean-variance slope by a moment estimator that accounts for the"
                        " correlated sampling errors of add and var, with var_se_robust; 1.2.0a1: the procedure of"
                        " hlmm 1.2.0a1's R script (robust regression of var on add, noise adjustment, var_se)")
    p.add_argument("--report", action="append", default=[], metavar="SNP",
                   help="print this SNP's dispersion effect, standard error and -log10 p (may be repeated)")
    p.add_argument("--plot", action="store_true", help="also write PNG plots next to the output table (needs "
                                                       "matplotlib)")
    p.add_argument("--gw_threshold", type=probability, default=5e-8,
                   help="p-value of the genome-wide significance line of the Manhattan plot (default 5e-8)")
    p.add_argument("--quiet", action="store_true", help="no summary on stderr")
    return p


def _prefix(path: str) -> str:
    for suffix in (".dispersion.gz", ".models.gz", ".gz"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def run(args) -> None:
    if len(args.models) > 1 and args.out is None:
        raise InputError(f"{len(args.models)} results files: name the combined output with -o, "
                         f"e.g. -o all.dispersion.gz")
    out = args.out or _prefix(args.models[0]) + ".dispersion.gz"
    check_output(out, args.models)
    tables = []
    for path in args.models:
        res = read_results(path)
        missing = [c for c in NEEDED if c not in res]
        if missing:
            raise InputError(f"results file {path}: missing columns {', '.join(missing)}")
        if tables and list(res) != list(tables[0]):
            raise InputError(f"results file {path}: its columns differ from those of {args.models[0]}")
        tables.append(res)
    res = {c: np.concatenate([t[c] for t in tables]) for c in tables[0]}
    for snp in args.report:
        if snp not in res["SNP"]:
            raise InputError(f"--report {snp}: no such SNP in {', '.join(args.models)}")
    robust = args.method == "moment" and all(c in res for c in ROBUST)
    if args.method == "moment" and not robust:
        log.warning(f"{', '.join(args.models)}: no {' or '.join(ROBUST)} columns (results of an earlier version):"
                    " the moment method uses var_se and takes the errors of add and var as uncorrelated, which is"
                    " right only for symmetric traits; rerun hlmm_chr for the robust columns")
    var_se = res["var_se_robust"] if robust else res["var_se"]
    try:
        disp = estimate_dispersion(res["add"], res["add_se"], res["var"], var_se, method=args.method,
                                   add_var_cor=res["add_var_cor"] if robust else None,
                                   clusters=clusters_of(res["chr"], res["pos"]) if "chr" in res and "pos" in res
                                   else None)
    except ValueError as e:
        raise InputError(f"results file{'s' if len(args.models) > 1 else ''} {', '.join(args.models)}: {e}") from None
    res.update({c: disp[c] for c in C.names(C.DISPERSION)})
    known = C.names(C.MODELS)
    columns = [c for c in known if c in res] + [c for c in res if c not in known and C.by_name(c) not in C.DISPERSION]
    write_table(out, res, columns + C.names(C.DISPERSION))

    n_ok = int(np.isfinite(res["add"]).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        var_t = res["var"] / var_se
    s = summarize(res["add_t"], var_t, res["dispersion_t"])
    where = f"{len(args.models)} files" if len(args.models) > 1 else args.models[0]
    lines = [f"{len(res['SNP']):,} SNPs from {where}, {n_ok:,} with estimates"]
    if "test" in res:
        score = np.asarray(res["test"], dtype=str) == "score"
        n_score = int((score & np.isfinite(res["add"])).sum())
        if n_score:
            lines.append(f"{n_score:,} of the {n_ok:,} SNPs with estimates are score-test rows (one-step estimates of"
                         f" add and var, valid near the null): used in the slope fit and given dispersion effects"
                         f" like the others")
    se_name = "var_se_robust" if robust else "var_se"
    lines.append(f"median add_t^2 = {s['median_add_t2']:.4g} (lambda_GC {s['lambda_add']:.4g}), median (var /"
                 f" {se_name})^2 = {s['median_var_t2']:.4g} (lambda_GC {s['lambda_var']:.4g}); null median"
                 f" {CHI2_1_MEDIAN:.4f}")
    if args.method == "1.2.0a1":
        lines.append(f"mean-variance slope (1.2.0a1) = {disp['r']:.4g}: robust regression slope {disp['slope']:.4g}"
                     f" times {disp['adjustment']:.4g} for the noise in add")
    else:
        fit = disp["slope"]
        if fit.estimated:
            lines.append(f"mean-variance slope = {disp['r']:.4g} (SE {fit.se:.3g}"
                         + (f" over {fit.clusters} clusters of {CLUSTER_BP // 1_000_000} Mb" if fit.clusters else "")
                         + f"), mostly from the {fit.informative:,} SNPs with |add_t| >= {WEIGHT_T:g} (evidence of"
                         f" additive effects z = {fit.z:.3g}); errors of add and var correlated"
                         f" {np.nanmedian(res['add_var_cor']) if robust else 0.0:.3f}")
        else:
            lines.append(f"no additive effects stand out of the noise (weighted evidence z = {fit.z:.3g} <"
                         f" {MIN_Z:g}): no mean-variance relation to estimate, slope 0, dispersion effects are the"
                         f" variance effects")
    lines.append(f"dispersion_t^2: lambda_GC {s['lambda_dispersion']:.4g}; KS test against chi-square(1) over all"
                 f" {int(np.isfinite(res['dispersion_t']).sum()):,} SNPs with estimates: D = {s['ks_statistic']:.4g},"
                 f" p = {s['ks_pvalue']:.3g}")
    for snp in args.report:
        for j in np.flatnonzero(res["SNP"] == snp):
            lines.append(f"{snp}: dispersion = {res['dispersion'][j]:.4g} (SE {res['dispersion_se'][j]:.3g}),"
                         f" -log10 p = {res['dispersion_pval'][j]:.3f}")
    lines.append(f"wrote {out}")
    for line in lines:
        log.info(line)
    if args.plot:
        prefix = _prefix(out)
        name = os.path.basename(prefix)
        try:
            from hlmm import plots

            written = [
                plots.add_var_scatter(res, prefix + ".add_var.png", disp["r"], title=f"{name}: variance vs additive"
                                      " effects", robust_slope=disp["slope"] if args.method == "1.2.0a1" else None),
                plots.qq_plot(res, prefix + ".qq.png", title=f"{name}: QQ plot"),
                plots.manhattan(res, prefix + ".manhattan.png", gw_threshold=args.gw_threshold,
                                title=f"{name}: Manhattan plot"),
            ]
        except ImportError as e:
            raise InputError(str(e)) from None
        log.info("wrote " + ", ".join(written))


def main(argv=None) -> int:
    return run_main("hlmm_dispersion", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
