"""Calibration of hlmm_chr's tests under the null, on simulated data, as whole processes.

Every test variant has no effect on the mean or the variance; the phenotypes differ in the
distribution of their residuals (normal, Student t with 5 df, chi-square with 3 df, each scaled
to variance 1) and in whether they have random effects (``h2`` of a random-effect set of l
variants). For each configuration the script runs ``hlmm_chr`` and reports lambda_GC (the median
of t^2 over the median of chi-square(1), 0.4549) of ``add_t`` and ``var_t``, with a 95% interval
from the asymptotic variance of a median (about +-0.032 at 20,000 variants), and the fraction of
``var_t^2`` beyond the 5% point.

Example (the tables of docs/robust.rst and docs/score_test.rst)::

    python benchmarks/calibration.py --n 100000 --m 20000 --l 500
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


def residuals(dist: str, n: int, rng) -> np.ndarray:
    """Mean 0, variance 1 draws (``chi2_3`` is calibration_score's ``chisq3``)."""
    return standardized_noise(rng, n, "chisq3" if dist == "chi2_3" else dist)


def simulate(workdir: Path, n: int, m: int, l: int, h2: float, seed: int) -> None:
    stamp = workdir / "simulated.json"
    want = {"n": n, "m": m, "l": l, "h2": h2, "seed": seed}
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
    for dist in ("normal", "t5", "chi2_3"):
        e = residuals(dist, n, rng)
        for name, y in ((dist, e), (f"{dist}_h2", np.sqrt(h2) * u + np.sqrt(1 - h2) * e)):
            (workdir / f"{name}.txt").write_text("".join(f"f{i} i{i} {y[i]:.10g}\n" for i in range(n)))
    stamp.write_text(json.dumps(want))


def lam(t: np.ndarray) -> tuple[float, float]:
    """lambda_GC and the half-width of its 95% interval."""
    t = t[np.isfinite(t)]
    se = 1 / (2 * np.sqrt(t.size) * DENSITY) / MEDIAN
    return float(np.median(t**2) / MEDIAN), 1.96 * se


CONFIGS = [
    ("HLM Wald, model SE", "{d}", []),
    ("HLM Wald, --robust", "{d}", ["--robust"]),
    ("HLMM score, model SE", "{d}_h2", ["--test", "score", "--random_gts", "RANDOM"]),
    ("HLMM score, --robust", "{d}_h2", ["--test", "score", "--random_gts", "RANDOM", "--robust"]),
    ("HLM score, --robust", "{d}", ["--test", "score", "--robust"]),
]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--m", type=int, default=20_000, help="null test variants (default 20,000)")
    p.add_argument("--l", type=int, default=500, help="random-effect variants (default 500)")
    p.add_argument("--h2", type=float, default=0.3)
    p.add_argument("--dists", nargs="+", default=["normal", "t5", "chi2_3"])
    p.add_argument("--configs", type=int, nargs="+", default=list(range(len(CONFIGS))),
                   help="indices into the list of configurations (default all)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/_data/calibration"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    simulate(args.workdir, args.n, args.m, args.l, args.h2, args.seed)
    print(f"data: n = {args.n:,}, {args.m:,} null test variants (MAF 0.05-0.5, 0.5% missing), random effects"
          f" l = {args.l} with h2 = {args.h2} for the *_h2 phenotypes; seed {args.seed}"
          f" ({time.perf_counter() - t0:.0f} s)")
    print(f"{'configuration':>22} {'residuals':>9} {'lambda add':>16} {'lambda var':>16} {'var_t^2>3.84':>13}"
          f" {'wall s':>7}")
    out = []
    for c in args.configs:
        label, pheno, extra = CONFIGS[c]
        extra = [str(args.workdir / "random.bed") if e == "RANDOM" else e for e in extra]
        for dist in args.dists:
            name = pheno.format(d=dist)
            prefix = args.workdir / f"out_{c}_{dist}"
            cmd = [sys.executable, "-m", "hlmm.cli.hlmm_chr", str(args.workdir / "test.bed"), "0", str(args.m),
                   str(args.workdir / f"{name}.txt"), str(prefix), "--quiet", *extra]
            t = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t
            res = read_models(f"{prefix}.models.gz")
            (la, ha), (lv, hv) = lam(res["add_t"]), lam(res["var_t"])
            tail = float(np.nanmean(res["var_t"] ** 2 > 3.841))
            print(f"{label:>22} {dist:>9} {la:>9.3f} ±{ha:.3f} {lv:>9.3f} ±{hv:.3f} {tail:>13.4f} {wall:>7.0f}",
                  flush=True)
            out.append({"configuration": label, "residuals": dist, "lambda_add": la, "lambda_var": lv,
                        "half_width": ha, "var_tail_5pct": tail, "command": " ".join(cmd[1:])})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(f"\nload {os.getloadavg()[0]:.2f}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
