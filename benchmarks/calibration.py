"""Calibration of hlmm_chr's tests under the null, on simulated data, as whole processes.

Every test variant has no effect on the mean or the variance; the phenotypes differ in the
distribution of their residuals (normal, Student t with 5 df, chi-square with 3 df, log-normal
``exp(z)`` and the exp-scale ``exp(0.3 z)``, each scaled to variance 1) and in whether they have
random effects (``h2`` of a random-effect set of l variants, for the ``*_h2`` phenotypes of the
mixed-model configurations). For each configuration the script runs ``hlmm_chr`` and reports
lambda_GC (the median of chi-square(1) statistics over its null median, 0.4549) with a 95% interval
from the asymptotic variance of a median (about +-0.032 at 20,000 variants) of:

* the additive test (``add_t``);
* the variance test with model-based standard errors (``var_t``, 1.2.0a1's column);
* the variance test of the robust column ``var_pval_robust`` (what hlmm_dispersion uses by default),
  with the percentage of variants at p < 1e-4 (expected 0.01%);
* the adaptive variance test ``var_pval_adapt`` (what hlmm_sumstats, the plots and the log use by
  default), with the same percentage;
* the joint 2-df test ``av_pval_robust`` (its lambda_GC: median chi-square(2) over 1.386).

Examples (the tables of docs/robust.rst)::

    python benchmarks/calibration.py --n 20000 --m 20000 --l 500 --workdir benchmarks/_data/cal20k
    python benchmarks/calibration.py --n 100000 --m 20000 --l 500 --workdir benchmarks/_data/cal100k
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from hlmm.covariates import random_effects_design
from hlmm.io import BedWriter, open_genotypes, read_random_effects
from hlmm.results import read_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration_score import standardized_noise  # noqa: E402

MEDIAN = float(stats.chi2.median(1))
DENSITY = float(stats.chi2.pdf(MEDIAN, 1))
MEDIAN2 = float(stats.chi2.median(2))
DISTS = ("normal", "t5", "chi2_3", "lognormal", "expscale")


def residuals(dist: str, n: int, rng) -> np.ndarray:
    """Mean 0, variance 1 draws (``chi2_3`` is calibration_score's ``chisq3``)."""
    return standardized_noise(rng, n, "chisq3" if dist == "chi2_3" else dist)


def simulate(workdir: Path, n: int, m: int, l: int, h2: float, seed: int) -> None:
    stamp = workdir / "simulated.json"
    want = {"n": n, "m": m, "l": l, "h2": h2, "seed": seed, "dists": list(DISTS)}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    rng = np.random.default_rng(seed)
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    for name, count in (("test", m), ("random", l)):
        with BedWriter(str(workdir / name), ids) as w:
            for j0 in range(0, count, 500):
                b = min(500, count - j0)
                g = rng.binomial(2, rng.uniform(0.05, 0.5, b), (n, b)).astype(float)
                g[rng.random((n, b)) < 0.005] = np.nan
                w.write(g)
    G, *_ = random_effects_design(read_random_effects(open_genotypes(str(workdir / "random.bed")), np.arange(n)))
    u = G @ rng.standard_normal(G.shape[1])
    for dist in DISTS:
        e = residuals(dist, n, rng)
        for name, y in ((dist, e), (f"{dist}_h2", np.sqrt(h2) * u + np.sqrt(1 - h2) * e)):
            (workdir / f"{name}.txt").write_text("".join(f"f{i} i{i} {y[i]:.10g}\n" for i in range(n)))
    stamp.write_text(json.dumps(want))


def lam(chi2: np.ndarray) -> tuple[float, float]:
    """lambda_GC of 1-df statistics and the half-width of its 95% interval."""
    chi2 = chi2[np.isfinite(chi2)]
    se = 1 / (2 * np.sqrt(chi2.size) * DENSITY) / MEDIAN
    return float(np.median(chi2) / MEDIAN), 1.96 * se


def chi2_of(neglog10: np.ndarray, df: int) -> np.ndarray:
    return stats.chi2.isf(10.0 ** -np.asarray(neglog10, dtype=float), df)


#: label, phenotype, extra arguments, whether it scans only --slow_m variants (exact mixed-model fits)
CONFIGS = [
    ("HLM Wald", "{d}", [], False),
    ("HLM score", "{d}", ["--test", "score"], False),
    ("HLMM score", "{d}_h2", ["--test", "score", "--random_gts", "RANDOM"], False),
    ("HLMM Wald", "{d}_h2", ["--random_gts", "RANDOM"], True),
    ("HLM Wald, --robust", "{d}", ["--robust"], False),
]


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def rst_table(rows: list) -> str:
    """The measured rows as a reStructuredText list-table (docs/_robust_table.rst)."""
    names = {"normal": "normal", "t5": "t5", "chi2_3": "χ²₃", "lognormal": "log-normal", "expscale": "exp(0.3 z)"}
    lines = [".. list-table::", "   :header-rows: 1", "",
             "   * - n", "     - test", "     - residuals", "     - variants", "     - λGC add",
             "     - λGC var, ``var_pval``", "     - λGC var, ``var_pval_robust``",
             "     - % ``var_pval_robust`` < 1e-4", "     - λGC var, ``var_pval_adapt``",
             "     - % ``var_pval_adapt`` < 1e-4", "     - λGC ``av_pval_robust``"]
    for r in rows:
        model = f"**{r['lambda_var_model']:.3f}**" if r["lambda_var_model"] > 1.1 else f"{r['lambda_var_model']:.3f}"
        lines += [f"   * - {r['n']:,}", f"     - {r['configuration'].replace('--robust', '``--robust``')}",
                  f"     - {names[r['residuals']]}", f"     - {r['m']:,}", f"     - {r['lambda_add']:.3f}",
                  f"     - {model}", f"     - {r['lambda_var_robust']:.3f}", f"     - {r['pct_var_robust_p_1e-4']:.3f}",
                  f"     - {_fmt(r.get('lambda_var_adapt'))}", f"     - {_fmt(r.get('pct_var_adapt_p_1e-4'))}",
                  f"     - {r['lambda_av_robust']:.3f}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--m", type=int, default=20_000, help="null test variants (default 20,000)")
    p.add_argument("--l", type=int, default=500, help="random-effect variants (default 500)")
    p.add_argument("--slow_m", type=int, default=2000, help="variants of the exact HLMM configuration (default 2,000)")
    p.add_argument("--h2", type=float, default=0.3)
    p.add_argument("--dists", nargs="+", default=list(DISTS), choices=DISTS)
    p.add_argument("--configs", type=int, nargs="+", default=list(range(len(CONFIGS))),
                   help="indices into the list of configurations (default all)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/_data/calibration"))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--table", type=Path, nargs="+", default=None,
                   help="only write the RST table of these JSON outputs to stdout (no runs)")
    args = p.parse_args(argv)
    if args.table:
        print(rst_table([r for path in args.table for r in json.loads(path.read_text())]), end="")
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    simulate(args.workdir, args.n, args.m, args.l, args.h2, args.seed)
    print(f"data: n = {args.n:,}, {args.m:,} null test variants (MAF 0.05-0.5, 0.5% missing), random effects"
          f" l = {args.l} with h2 = {args.h2} for the *_h2 phenotypes; seed {args.seed}"
          f" ({time.perf_counter() - t0:.0f} s)")
    print(f"{'configuration':>20} {'residuals':>9} {'m':>6} {'lambda add':>15} {'lambda var (model)':>19}"
          f" {'lambda var robust':>18} {'% p<1e-4':>8} {'lambda var adapt':>17} {'% p<1e-4':>8}"
          f" {'lambda av robust':>16} {'wall s':>7}")
    out = []
    for c in args.configs:
        label, pheno, extra, slow = CONFIGS[c]
        extra = [str(args.workdir / "random.bed") if e == "RANDOM" else e for e in extra]
        m = min(args.slow_m, args.m) if slow else args.m
        for dist in args.dists:
            name = pheno.format(d=dist)
            prefix = args.workdir / f"out_{c}_{dist}"
            cmd = [sys.executable, "-m", "hlmm.cli.hlmm_chr", str(args.workdir / "test.bed"), "0", str(m),
                   str(args.workdir / f"{name}.txt"), str(prefix), "--quiet", *extra]
            t = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t
            res = read_models(f"{prefix}.models.gz")
            (la, ha), (lv, _) = lam(res["add_t"] ** 2), lam(res["var_t"] ** 2)
            lr, _ = lam(chi2_of(res["var_pval_robust"], 1))
            ok = np.isfinite(res["var_pval_robust"])
            tail = 100 * float(np.mean(res["var_pval_robust"][ok] >= 4))
            ld, _ = lam(chi2_of(res["var_pval_adapt"], 1))
            tail_d = 100 * float(np.mean(res["var_pval_adapt"][ok] >= 4))
            av = chi2_of(res["av_pval_robust"], 2)
            lav = float(np.nanmedian(av) / MEDIAN2)
            print(f"{label:>20} {dist:>9} {int(ok.sum()):>6} {la:>8.3f} ±{ha:.3f} {lv:>19.3f} {lr:>18.3f}"
                  f" {tail:>8.3f} {ld:>17.3f} {tail_d:>8.3f} {lav:>16.3f} {wall:>7.0f}", flush=True)
            out.append({"configuration": label, "residuals": dist, "n": args.n, "m": int(ok.sum()), "lambda_add": la,
                        "lambda_var_model": lv, "lambda_var_robust": lr, "half_width": ha,
                        "pct_var_robust_p_1e-4": tail, "lambda_var_adapt": ld, "pct_var_adapt_p_1e-4": tail_d,
                        "lambda_av_robust": lav, "wall_s": wall,
                        "command": " ".join(cmd[1:])})
            if args.json:  # after every run, so that an interrupted run keeps what it measured
                args.json.write_text(json.dumps(out, indent=1))
    print(f"\nload {os.getloadavg()[0]:.2f}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
