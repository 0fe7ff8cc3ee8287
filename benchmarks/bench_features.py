"""Benchmarks of the scan's features, each as whole ``hlmm_chr`` processes on simulated data.

For each measurement the script runs ``hlmm_chr`` for two numbers of variants and reports the
marginal time per variant (the difference of the wall times over the difference of the counts,
so that reading the phenotype and fitting the null model cancel), variants/s, the peak resident
memory (``os.wait4``) and, where there is one, the ratio to the baseline of the same run. Each
configuration is repeated and the medians are reported; configurations are interleaved.

Sub-benchmarks (``--what``):

``score``
    ``--test score`` with ``--random_gts`` (l random-effect SNPs) and without: the genome screen.
``dosage``
    The HLM scan of a .pgen of dosages (written with pgenlib) against the same scan of its hard
    calls (a .bed).
``phenotypes``
    The hard-call HLM scan of 10 phenotypes in one pass against 1 phenotype.
``robust``
    The hard-call HLM scan with ``--robust`` against without.

Example (the figures in docs/performance.rst)::

    python benchmarks/bench_features.py --what score dosage phenotypes robust --n 100000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from hlmm.io import BedWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_original import run_once  # noqa: E402


def simulate(workdir: Path, n: int, m: int, l: int, seed: int = 1) -> None:
    """test.bed (m variants, 0.5% missing), dos.pgen (m dosage variants), random.bed (l), and phenotypes."""
    stamp = workdir / "simulated.json"
    want = {"n": n, "m": m, "l": l, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    import pgenlib

    rng = np.random.default_rng(seed)
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    with BedWriter(str(workdir / "random"), ids) as w:
        for j0 in range(0, l, 250):
            b = min(250, l - j0)
            w.write(rng.binomial(2, rng.uniform(0.05, 0.5, b), (n, b)).astype(float))
    pw = pgenlib.PgenWriter(str(workdir / "dos.pgen").encode(), n, m, False, dosage_present=True)
    with BedWriter(str(workdir / "test"), ids) as w:
        for j0 in range(0, m, 250):
            b = min(250, m - j0)
            p = rng.uniform(0.05, 0.5, b)
            # dosages: expected counts from noisy genotype probabilities (imputation-like)
            g = rng.binomial(2, p, (n, b)).astype(float)
            dos = np.clip(g + rng.normal(0, 0.1, (n, b)) * (rng.random((n, b)) < 0.3), 0, 2)
            miss = rng.random((n, b)) < 0.005
            g[miss] = np.nan
            w.write(g)
            for k in range(b):
                d = dos[:, k].astype(np.float32)
                d[miss[:, k]] = -9
                pw.append_dosages(d)
    pw.close()
    (workdir / "dos.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n" + "".join(
        f"1\t{1000 * (j + 1)}\trs{j}\tG\tA\n" for j in range(m)))
    (workdir / "dos.psam").write_text("#FID\tIID\n" + "".join(f"{a}\t{b}\n" for a, b in ids))
    Y = rng.standard_normal((n, 10))
    (workdir / "pheno10.txt").write_text("FID IID " + " ".join(f"t{k}" for k in range(10)) + "\n" + "".join(
        f"f{i} i{i} " + " ".join(f"{v:.10g}" for v in Y[i]) + "\n" for i in range(n)))
    (workdir / "pheno.txt").write_text("".join(f"f{i} i{i} {Y[i, 0]:.10g}\n" for i in range(n)))
    stamp.write_text(json.dumps(want))


def run(workdir: Path, geno: str, k: int, pheno: str, extra: list, tag: str) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MB) of one hlmm_chr run on variants 0..k-1 (output in workdir/log.txt)."""
    extra = [str(workdir / e) if e.endswith(".bed") else e for e in extra]
    cmd = [sys.executable, "-m", "hlmm.cli.hlmm_chr", str(workdir / geno), "0", str(k), str(workdir / pheno),
           str(workdir / f"out_{tag}_{k}"), "--quiet", *extra]
    return run_once(cmd, None, workdir / "log.txt")


CONFIGS = {
    "score": [("score_hlmm", "test.bed", "pheno.txt", ["--test", "score", "--random_gts", "random.bed"], None),
              ("score_hlm", "test.bed", "pheno.txt", ["--test", "score"], None)],
    "dosage": [("hard", "test.bed", "pheno.txt", [], None),
               ("dosage", "dos.pgen", "pheno.txt", [], "hard")],
    "phenotypes": [("1_phenotype", "test.bed", "pheno10.txt", ["--phen_index", "1"], None),
                   ("10_phenotypes", "test.bed", "pheno10.txt", ["--all_phenotypes"], "1_phenotype")],
    "robust": [("model_se", "test.bed", "pheno.txt", [], None),
               ("robust_se", "test.bed", "pheno.txt", ["--robust"], "model_se")],
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--m", type=int, default=8_000, help="test variants simulated (default 8,000)")
    p.add_argument("--l", type=int, default=500)
    p.add_argument("--k", type=int, nargs=2, default=(1000, 8000), help="the two numbers of variants")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/_data/features"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    simulate(args.workdir, args.n, max(args.m, max(args.k)), args.l)
    print(f"data: n = {args.n:,}, {max(args.m, max(args.k)):,} test variants, l = {args.l} ({args.workdir};"
          f" {time.perf_counter() - t0:.0f} s); load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    small, large = args.k
    results = {}
    for what in args.what:
        configs = CONFIGS[what]
        walls = {(c[0], k): [] for c in configs for k in (small, large)}
        rss = {(c[0], k): [] for c in configs for k in (small, large)}
        for _ in range(args.repeats):
            for tag, geno, pheno, extra, _base in configs:
                for k in (small, large):
                    w, r = run(args.workdir, geno, k, pheno, extra, tag)
                    walls[tag, k].append(w)
                    rss[tag, k].append(r)
        print(f"\n{what}: hlmm_chr GENO 0 k PHENO out --quiet ...; k = {small} and {large}; medians of {args.repeats}")
        print(f"{'run':>14} {'options':>40} {'wall small':>11} {'wall large':>11} {'ms/var':>8} {'var/s':>9}"
              f" {'peak MB':>15} {'ratio':>7}")
        for tag, geno, pheno, extra, base in configs:
            ws, wl = statistics.median(walls[tag, small]), statistics.median(walls[tag, large])
            per = (wl - ws) / (large - small)
            r = {"wall_small": ws, "wall_large": wl, "per_variant": per, "per_s": 1 / per,
                 "peak_mb": [max(rss[tag, small]), max(rss[tag, large])], "cmd": [geno, pheno, *extra]}
            ratio = per / results[what][base]["per_variant"] if base else None
            r["ratio"] = ratio
            results.setdefault(what, {})[tag] = r
            print(f"{tag:>14} {' '.join([geno, *extra])[:40]:>40} {ws:>10.2f}s {wl:>10.2f}s {1e3 * per:>8.3f}"
                  f" {1 / per:>9.0f} {r['peak_mb'][0]:>7.0f}/{r['peak_mb'][1]:<7.0f}"
                  f" {'' if ratio is None else f'{ratio:.2f}x':>7}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
