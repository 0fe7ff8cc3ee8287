"""hlmm_dispersion: estimate dispersion effects from a .models.gz results table."""

from __future__ import annotations

import gzip
import sys
import zlib

import numpy as np

from hlmm import columns as C
from hlmm.cli._common import log, parser, run_main
from hlmm.dispersion import estimate_dispersion, ks_test
from hlmm.io import InputError
from hlmm.plots import CHI2_1_MEDIAN
from hlmm.results import read_models, write_table


def build_parser():
    p = parser("hlmm_dispersion", "Estimate dispersion effects from hlmm_chr results (prefix.models.gz).")
    p.add_argument("models", help="results of hlmm_chr, e.g. test.models.gz")
    p.add_argument("-o", "--out", default=None, help="output table (default: prefix.dispersion.gz)")
    p.add_argument("--plot", action="store_true", help="also write PNG plots next to the results (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no summary on stderr")
    return p


def run(args) -> None:
    prefix = args.models[: -len(".models.gz")] if args.models.endswith(".models.gz") else args.models
    out = args.out or prefix + ".dispersion.gz"
    try:
        res = read_models(args.models)
    except FileNotFoundError:
        raise InputError(f"results file {args.models}: no such file") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as e:
        raise InputError(f"results file {args.models}: not a readable gzip results table ({e})") from None
    except (ValueError, IndexError):
        raise InputError(f"results file {args.models}: malformed table") from None
    missing = [c for c in ("add", "add_se", "var", "var_se", "add_t", "var_t") if c not in res]
    if missing:
        raise InputError(f"results file {args.models}: missing columns {', '.join(missing)}")
    try:
        disp = estimate_dispersion(res["add"], res["add_se"], res["var"], res["var_se"])
    except ValueError as e:
        raise InputError(f"results file {args.models}: {e}") from None
    res.update({c: disp[c] for c in C.names(C.DISPERSION)})
    known = C.names(C.MODELS)
    columns = [c for c in known if c in res] + [c for c in res if c not in known and C.by_name(c) not in C.DISPERSION]
    write_table(out, res, columns + C.names(C.DISPERSION))
    n_ok = int(np.isfinite(res["add"]).sum())
    ks_stat, ks_p = ks_test(res["dispersion_t"][1:])
    lines = [
        f"{len(res['SNP'])} SNPs, {n_ok} with estimates",
        f"median add_t^2 = {np.nanmedian(res['add_t'] ** 2):.4g}, median var_t^2 = {np.nanmedian(res['var_t'] ** 2):.4g}"
        f" (expected under the null {CHI2_1_MEDIAN:.3f})",
        f"mean-variance slope r = {disp['r']:.4g} (robust slope {disp['slope']:.4g} x noise adjustment {disp['adjustment']:.4g})",
        f"KS test of dispersion_t^2 against chi-square(1), all SNPs but the first: D = {ks_stat:.4g}, p = {ks_p:.3g}",
        f"first SNP {res['SNP'][0]}: dispersion = {res['dispersion'][0]:.4g} (se {res['dispersion_se'][0]:.3g}),"
        f" -log10 p = {res['dispersion_pval'][0]:.3f}",
        f"wrote {out}",
    ]
    for line in lines:
        log.info(line)
    if args.plot:
        try:
            from hlmm import plots

            written = [
                plots.add_var_scatter(res, prefix + ".add_var.png", disp["r"]),
                plots.qq_plot(res, prefix + ".qq.png"),
                plots.manhattan(res, prefix + ".manhattan.png"),
            ]
        except ImportError as e:
            raise InputError(str(e)) from None
        log.info("wrote " + ", ".join(written))


def main(argv=None) -> int:
    return run_main("hlmm_dispersion", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
