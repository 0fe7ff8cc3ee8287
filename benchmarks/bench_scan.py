"""Benchmark hlmm_chr engines side by side on simulated tutorial-scale data.

For each engine and mode it runs ``hlmm_chr`` as a subprocess on two numbers of SNPs and reports
the marginal time per SNP (the difference of the two wall times over the difference of SNP
counts, so fixed costs such as reading the phenotype and fitting the null model cancel), SNPs/s,
the peak resident memory of each run, and the ratio of the reference engine's marginal time to
the fast engine's. Each configuration is repeated and the median is reported.

Example (the figures in docs/performance.rst)::

    python benchmarks/bench_scan.py --n 100000 --mode hlm --snps 200 2000 --ref-snps 20 60
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hlmm.io import BedWriter


def simulate(workdir: Path, n: int, m: int, l: int, missing: float, seed: int) -> None:
    """Write test.bed (m SNPs), random.bed (l SNPs), pheno.txt and covar.txt, unless present."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(n)
    c = rng.standard_normal((n, 2))
    (workdir / "pheno.txt").write_text("".join(f"f{i} i{i} {y[i]:.17g}\n" for i in range(n)))
    (workdir / "covar.txt").write_text("".join(f"f{i} i{i} {c[i, 0]:.17g} {c[i, 1]:.17g}\n" for i in range(n)))
    stamp = workdir / "simulated.json"
    want = {"n": n, "l": l, "missing": missing, "seed": seed}
    if stamp.exists():
        have = json.loads(stamp.read_text())
        if {k: have.get(k) for k in want} == want and have.get("m", 0) >= m:
            return
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    for name, count in (("test", m), ("random", max(l, 1))):
        with BedWriter(str(workdir / name), ids) as w:
            for j0 in range(0, count, 250):
                b = min(250, count - j0)
                g = rng.binomial(2, rng.uniform(0.05, 0.95, b), (n, b)).astype(float)
                g[rng.random((n, b)) < missing] = np.nan
                w.write(g)
    stamp.write_text(json.dumps({**want, "m": m}))


def run_once(workdir: Path, engine: str, n_snps: int, extra: list) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MB) of one hlmm_chr run."""
    cmd = [sys.executable, "-m", "hlmm.cli.hlmm_chr", str(workdir / "test.bed"), "0", str(n_snps),
           str(workdir / "pheno.txt"), str(workdir / f"out_{engine}"), "--engine", engine, "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return wall, usage.ru_maxrss / 1024.0


def measure(workdir, engine, counts, extra, repeats):
    small, large = counts
    walls = {small: [], large: []}
    rss = {small: [], large: []}
    for _ in range(repeats):
        for k in (small, large):
            w, r = run_once(workdir, engine, k, extra)
            walls[k].append(w)
            rss[k].append(r)
    t_small, t_large = statistics.median(walls[small]), statistics.median(walls[large])
    per_snp = (t_large - t_small) / (large - small)
    return {"engine": engine, "snps": counts, "wall_small": t_small, "wall_large": t_large,
            "per_snp": per_snp, "snps_per_s": 1.0 / per_snp if per_snp > 0 else float("inf"),
            "peak_small": max(rss[small]), "peak_large": max(rss[large])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="individuals (default 100,000)")
    p.add_argument("--mode", choices=("hlm", "hlmm", "fit_covariates"), default="hlm")
    p.add_argument("--l", type=int, default=500, help="random-effect SNPs for --mode hlmm (default 500)")
    p.add_argument("--snps", type=int, nargs=2, default=(200, 2000), help="two SNP counts for the fast engine")
    p.add_argument("--ref-snps", type=int, nargs=2, default=(20, 60), help="two SNP counts for the reference engine")
    p.add_argument("--missing", type=float, default=0.005, help="fraction of missing calls (default 0.005)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/_data"))
    p.add_argument("--engines", nargs="+", default=["reference", "fast"])
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    m = max(max(args.snps), max(args.ref_snps))
    simulate(args.workdir, args.n, m, args.l, args.missing, seed=1)
    extra = {"hlm": [], "hlmm": ["--random_gts", str(args.workdir / "random.bed")],
             "fit_covariates": ["--mean_covar", str(args.workdir / "covar.txt"), "--var_covar",
                                str(args.workdir / "covar.txt"), "--fit_covariates"]}[args.mode]
    print(f"mode={args.mode} n={args.n} l={args.l if args.mode == 'hlmm' else 0} missing={args.missing} "
          f"repeats={args.repeats} (medians)")
    print(f"{'engine':>10} {'SNPs':>11} {'wall small':>11} {'wall large':>11} {'ms/SNP':>10} {'SNPs/s':>10}"
          f" {'peak MB (small/large)':>22}")
    res = {}
    for engine in args.engines:
        counts = tuple(args.ref_snps) if engine == "reference" else tuple(args.snps)
        r = measure(args.workdir, engine, counts, extra, args.repeats)
        res[engine] = r
        print(f"{engine:>10} {str(counts[0]) + '/' + str(counts[1]):>11} {r['wall_small']:>10.2f}s"
              f" {r['wall_large']:>10.2f}s {1e3 * r['per_snp']:>10.3f} {r['snps_per_s']:>10.1f}"
              f" {r['peak_small']:>11.0f}/{r['peak_large']:<10.0f}", flush=True)
    if "reference" in res and "fast" in res:
        ratio = res["reference"]["per_snp"] / res["fast"]["per_snp"]
        print(f"ratio reference/fast marginal time per SNP: {ratio:.1f}x")


if __name__ == "__main__":
    main()
