"""Pieces shared by the command-line programs: errors, logging, progress, loading the data."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from hlmm.covariates import Design, make_design, random_effects_design
from hlmm.io import InputError, match_individuals, open_bed, read_random_effects_bed, read_table

log = logging.getLogger("hlmm")


def run_main(prog: str, run, argv=None, parser=None) -> int:
    """Run ``run(args)``; input problems become a one-line message and exit status 2."""
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    log.propagate = False
    try:
        run(args)
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rows already written are kept", file=sys.stderr)
        return 130
    return 0


def check_output_prefix(outprefix: str) -> None:
    """The directory of ``outprefix`` must exist and be writable."""
    d = os.path.dirname(outprefix) or "."
    if not os.path.isdir(d):
        raise InputError(f"output prefix {outprefix}: directory {d} does not exist")
    if not os.access(d, os.W_OK | os.X_OK):
        raise InputError(f"output prefix {outprefix}: directory {d} is not writable")


class Progress:
    """A progress bar on stderr with SNPs/s and an ETA; silent unless enabled."""

    def __init__(self, total: int, enabled: bool, label: str = "SNPs") -> None:
        self.total, self.enabled, self.label = total, enabled and total > 0, label
        self.done = 0
        self.t0 = time.monotonic()
        self._last = 0.0

    def update(self, k: int) -> None:
        self.done += k
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and self.done < self.total:
            return
        self._last = now
        rate = self.done / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * self.done / self.total)
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "--:--:--"
        sys.stderr.write(
            f"\r[{'#' * filled}{' ' * (width - filled)}] {self.done}/{self.total} {self.label}"
            f"  {rate:.1f} {self.label}/s  ETA {eta_s}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


@dataclass
class AnalysisData:
    """The matched data of an analysis, in the reference order."""

    rows: np.ndarray  # indices of the individuals used into the reference (.fam) order
    ids: list
    y: np.ndarray
    phenotype: str
    X: Design
    V: Design
    G: np.ndarray | None
    G_center: np.ndarray | None = None
    G_scale: np.ndarray | None = None


def load_analysis_data(args, reference_ids: list | None, reference_what: str) -> AnalysisData:
    """Read the phenotype, covariates and random effects of ``args`` and match individuals.

    ``reference_ids`` fixes the order (the .fam of the genotypes); ``None`` uses the phenotype
    file's order.
    """
    pheno = read_table(args.phenofile, args.missing_char, "phenotype file")
    k = pheno.values.shape[1]
    if not 1 <= args.phen_index <= k:
        raise InputError(
            f"phenotype file {args.phenofile}: --phen_index {args.phen_index} is out of range"
            f" (the file has {k} phenotype{'s' if k > 1 else ''})"
        )
    pheno.values = pheno.values[:, [args.phen_index - 1]]
    phen_name = pheno.names[args.phen_index - 1]
    pheno.names = [phen_name]
    tables = [(pheno, "phenotype file")]
    if args.mean_covar:
        tables.append((read_table(args.mean_covar, args.missing_char, "mean covariate file"), "mean covariate file"))
    if args.var_covar:
        tables.append((read_table(args.var_covar, args.missing_char, "variance covariate file"), "variance covariate file"))
    if reference_ids is None:
        reference_ids, reference_what = pheno.ids, f"phenotype file {args.phenofile}"
    matched = match_individuals(reference_ids, reference_what, tables)
    rows, ids = matched.rows, matched.ids
    cols = dict(zip([w for _, w in tables], matched.columns))
    G = G_center = G_scale = None
    if args.random_gts:
        G_raw, present = _read_random(args, ids)
        if not present.all():
            matched.log.append(f"dropped {int((~present).sum())} individuals not in random effects file {args.random_gts}")
            if not present.any():
                raise InputError(f"random effects file {args.random_gts}: no individuals in common with the analysis")
            rows, ids = rows[present], [i for i, p in zip(ids, present) if p]
            cols = {w: c[present] for w, c in cols.items()}
            G_raw = G_raw[present]
        G, kept, G_center, G_scale = random_effects_design(G_raw, copy=False, return_scaling=True)
        del G_raw
        if G.shape[1] == 0:
            raise InputError(f"random effects file {args.random_gts}: no column has calls and variance")
        if (~kept).any():
            matched.log.append(f"dropped {int((~kept).sum())} random-effect columns with no calls or no variance")
        matched.log.append(f"{G.shape[1]} random-effect columns, mean-imputed, z-scored and scaled by 1/sqrt({G.shape[1]})")
        if not present.all():
            matched.log.append(f"{len(ids)} individuals used after matching the random effects")
    for line in matched.log:
        log.info(line)
    y = cols["phenotype file"][:, 0]
    if np.std(y) <= 1e-12 * max(1.0, abs(np.mean(y))):
        raise InputError(f"phenotype file {args.phenofile}: phenotype '{phen_name}' is constant over the {len(y)} individuals used")
    n = len(y)
    try:
        X = make_design(cols.get("mean covariate file"), tables[1][0].names if args.mean_covar else None, n,
                        f"mean covariate file {args.mean_covar}")
        var_table = [t for t, w in tables if w == "variance covariate file"]
        V = make_design(cols.get("variance covariate file"), var_table[0].names if var_table else None, n,
                        f"variance covariate file {args.var_covar}")
    except ValueError as e:
        raise InputError(str(e)) from None
    return AnalysisData(rows, ids, y, phen_name, X, V, G, G_center, G_scale)


def _read_random(args, ids: list):
    """Random-effect genotypes (BED, or text with --random_gts_txt) for ``ids``."""
    if getattr(args, "random_gts_txt", False):
        table = read_table(args.random_gts, args.missing_char, "random effects file")
        idx = np.array([table.index.get(i, -1) for i in ids], dtype=np.int64)
        present = idx >= 0
        values = np.full((len(ids), table.values.shape[1]), np.nan)
        values[present] = table.values[idx[present]]
        return values, present
    fileset = open_bed(args.random_gts, "random effects file")
    return read_random_effects_bed(fileset, ids)


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be non-negative, got {text}")
    return value


def add_data_arguments(parser, with_missing_char_help: str = "Missing value string in phenotype file (default NA)") -> None:
    """Arguments shared by hlmm_chr and fit_hlmm_model."""
    parser.add_argument("--mean_covar", type=str, default=None, help="Location of mean covariate file (default no mean covariates)")
    parser.add_argument("--var_covar", type=str, default=None, help="Location of variance covariate file (default no variance covariates)")
    parser.add_argument("--random_gts", type=str, default=None,
                        help="Location of the BED file with the genotypes of the SNPs that random effects should be modelled for. "
                             "If random_gts are provided, HLMMs (hetlmm.model) are fit, rather than HLMs (hetlm.model).")
    parser.add_argument("--random_gts_txt", action="store_true", default=False,
                        help="The file given to --random_gts is a text file with columns FID, IID, x1, x2, ...")
    parser.add_argument("--h2_init", type=non_negative_float, default=0.05, help="Initial value for variance explained by random effects (default 0.05)")
    parser.add_argument("--phen_index", type=int, default=1,
                        help="If the phenotype file contains multiple phenotypes, which phenotype to analyse (default 1, the first)")
    parser.add_argument("--missing_char", type=str, default="NA", help=with_missing_char_help)
    parser.add_argument("--no_h2_estimate", action="store_true", default=False, help="Suppress output of h2 estimate")
    parser.add_argument("--quiet", action="store_true", default=False, help="No progress bar or log messages (errors are still printed)")


def fit_null(data: AnalysisData, h2_init: float) -> dict:
    """Fit the model with the covariates (and random effects) alone."""
    from hlmm import hetlm, hetlmm

    if data.G is None:
        fit = hetlm.model(data.y, data.X.matrix, data.V.matrix).optimize_model()
        fit["par_cov"] = _block_diag(fit["alpha_cov"], fit["beta_cov"])
        fit["h2"], fit["h2_se"] = np.nan, np.nan
    else:
        fit = hetlmm.model(data.y, data.X.matrix, data.V.matrix, data.G).optimize_model(h2_init)
    if not fit["success"]:
        raise InputError(f"the null model could not be fitted: {fit.get('message', 'optimisation failed')}")
    return fit


def _block_diag(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    out = np.zeros((A.shape[0] + B.shape[0],) * 2)
    out[: A.shape[0], : A.shape[0]] = A
    out[A.shape[0] :, A.shape[0] :] = B
    return out


def covariate_effects(data: AnalysisData, fit: dict):
    """Mean and variance covariate effects and SEs in the covariates' own units."""
    c, v = data.X.matrix.shape[1], data.V.matrix.shape[1]
    cov = fit["par_cov"]
    mean = data.X.to_original_units(fit["alpha"], cov[:c, :c])
    var = data.V.to_original_units(fit["beta"], cov[c : c + v, c : c + v])
    return mean, var
