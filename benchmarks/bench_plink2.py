"""Time our HLM scan against plink2's linear regression (``--glm``), side by side, as processes.

plink2 --glm fits the mean model only (least squares of the trait on each variant); our HLM scan
fits mean and log-variance effects by maximum likelihood per variant, so plink2 does less. It is
the fastest widely used program for the part of the job they share, hence the peer to compare with.

Both read the same simulated .bed (from ``bench_vs_original.simulate``; 100,000 individuals by
default) and the same phenotype. For each program the marginal time per variant is

    (t[k1] - t[k0]) / (k1 - k0)

with ``t`` the median wall time over the repeats of whole runs on the first k variants, so that
start-up and reading the phenotype cancel. Runs are interleaved (ours k0, plink2 k0, ours k1,
plink2 k1 in every repeat). Both use the machine's cores: plink2 by default uses them all; ours is
run with its defaults and with ``--n_jobs`` set to the number of CPUs. Peak memory is each
process's ``ru_maxrss``.

Example (the figures in docs/performance.rst)::

    python benchmarks/bench_plink2.py --n 100000 --k 2000 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_original import REPO, run_once, simulate  # noqa: E402


def commands(workdir: Path, k: int) -> dict:
    env = {key: v for key, v in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    ours = [sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(workdir / "test.bed"), "0", str(k),
            str(workdir / "pheno.txt"), str(workdir / f"out_ours_{k}"), "--quiet"]
    return {
        "ours": (ours, env),
        f"ours --n_jobs {os.cpu_count()}": (ours + ["--n_jobs", str(os.cpu_count())], env),
        "plink2 --glm": ([shutil.which("plink2") or "plink2", "--bfile", str(workdir / "test"),
                          "--pheno", str(workdir / "pheno.txt"), "--glm", "allow-no-covars",
                          "--snps", f"snp0-snp{k - 1}", "--out", str(workdir / f"out_plink2_{k}")], env),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--k", type=int, nargs=2, default=(2000, 20000), help="the two numbers of variants")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "plink2")
    args = p.parse_args(argv)
    if shutil.which("plink2") is None:
        raise SystemExit("plink2 not found on PATH (Debian: apt-get install plink2)")
    k0, k1 = sorted(args.k)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    simulate(args.workdir, args.n, k1, 1, 0.0, args.seed)
    print(f"data: n = {args.n:,}, {k1:,} variants ({args.workdir}; {time.perf_counter() - t0:.0f} s); "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    for name, (cmd, _) in commands(args.workdir, k1).items():
        print(f"  {name}: {shlex.join(cmd)}")
    names = list(commands(args.workdir, k1))
    walls = {(nm, k): [] for nm in names for k in (k0, k1)}
    rss = {(nm, k): [] for nm in names for k in (k0, k1)}
    for r, k in itertools.product(range(args.repeats), (k0, k1)):
        for nm, (cmd, env) in commands(args.workdir, k).items():
            w, mb = run_once(cmd, env, args.workdir / "log.txt")
            walls[nm, k].append(w)
            rss[nm, k].append(mb)
            print(f"  repeat {r + 1}: {nm:>14} k = {k:>6}: {w:7.2f} s, peak {mb:6.0f} MB", flush=True)
    print(f"\n{'program':>16} {'wall k0 -> k1 (s)':>20} {'ms/variant':>11} {'variants/s':>11} {'peak MB':>12}")
    per = {}
    for nm in names:
        a, b = statistics.median(walls[nm, k0]), statistics.median(walls[nm, k1])
        per[nm] = (b - a) / (k1 - k0)
        print(f"{nm:>16} {a:>9.2f} -> {b:<8.2f} {1e3 * per[nm]:>11.4f} {1 / per[nm]:>11.0f} "
              f"{max(rss[nm, k0]):>5.0f} / {max(rss[nm, k1]):<5.0f}")
    for nm in names[:2]:
        print(f"plink2 --glm / {nm}, time per variant: {per['plink2 --glm'] / per[nm]:.2f}")
    return per


if __name__ == "__main__":
    main()
