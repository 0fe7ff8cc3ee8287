"""Benchmark two versions of our hlmm_chr side by side (this checkout against a baseline commit).

The baseline is checked out with ``git worktree`` into ``--workdir`` (it runs from its source tree
with ``PYTHONPATH``; its optional C kernel, if it has one, is built in place first), and both run
``hlmm_chr`` on the same simulated data with the same arguments. For each version and scan mode the
marginal time per variant is ``(t[0, k1) - t[0, k0)) / (k1 - k0)`` with ``t`` the median wall time
over the repeats, so that start-up, reading and the null fits cancel; runs are interleaved
(baseline k0, ours k0, baseline k1, ours k1, ... in every repeat) so that changes of machine load
hit both. Peak memory is each process's maximum resident set size (GNU time), the largest over the
repeats.

Modes: ``hlm`` (default scan), ``robust``, ``score``, ``hlmm_score`` (``--test score --random_gts``),
``fit_covariates`` (with 2 covariates), ``phenotypes`` (10 traits in one pass); any other
``hlmm_chr`` arguments with ``--mode NAME='ARGS'``. ``--noise t5`` gives the phenotypes Student t
noise (the adaptive variance test then sums one more column per trait).

Example (the figures of docs/performance.rst)::

    python benchmarks/bench_commits.py --baseline e2588a9 --n 100000 --k 1000 9000 --repeats 3 \\
        --modes hlm robust score phenotypes
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_original import build_in_place, run_once, write_fileset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODES = {
    "hlm": [],
    "robust": ["--robust"],
    "score": ["--test", "score"],
    "hlmm_score": ["--test", "score", "--random_gts", "{w}/random.bed"],
    "fit_covariates": ["--mean_covar", "{w}/covar.txt", "--var_covar", "{w}/covar.txt", "--fit_covariates"],
    "phenotypes": ["--all_phenotypes"],
}


def simulate(workdir: Path, n: int, m: int, l: int, seed: int) -> None:
    stamp = workdir / "simulated.json"
    want = {"n": n, "m": m, "l": l, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    rng = np.random.default_rng(seed)
    first = write_fileset(workdir / "test", n, m, rng, 0.0, "test")
    write_fileset(workdir / "random", n, l, rng, 0.0, "random")
    ids = [f"f{i} i{i}" for i in range(n)]  # as write_fileset names them
    y = 0.1 * first[:, 0] + rng.standard_normal(n)
    (workdir / "pheno1.txt").write_text("".join(f"{i} {v:.8g}\n" for i, v in zip(ids, y)))
    Y = np.column_stack([y] + [rng.standard_normal(n) for _ in range(9)])
    (workdir / "pheno10.txt").write_text("FID IID " + " ".join(f"y{j}" for j in range(10)) + "\n" + "".join(
        f"{i} " + " ".join(f"{v:.8g}" for v in row) + "\n" for i, row in zip(ids, Y)))
    C = rng.standard_normal((n, 2))
    (workdir / "covar.txt").write_text("".join(f"{i} {a:.8g} {b:.8g}\n" for i, (a, b) in zip(ids, C)))
    stamp.write_text(json.dumps(want))


def worktree(commit: str, workdir: Path) -> Path:
    path = workdir / f"tree_{commit}"
    if not path.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=True,
                       capture_output=True)
    build_in_place(path)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="commit (or branch) to compare with")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--k", type=int, nargs=2, default=[1000, 9000], help="the two variant counts k0 k1")
    p.add_argument("--l", type=int, default=500, help="random-effect variants (hlmm_score)")
    p.add_argument("--modes", nargs="+", default=["hlm"], help=f"from {', '.join(MODES)} or NAME='ARGS'")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "commits")
    p.add_argument("--noise", choices=("normal", "t5"), default="normal",
                   help="the phenotypes' noise: t5 (Student t, 5 df) makes the adaptive variance test sum one more"
                        " column per trait (hlmm.adaptive)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    simulate(args.workdir, args.n, max(args.k), args.l, args.seed)
    suffix = "" if args.noise == "normal" else f"_{args.noise}"
    if suffix:
        heavy_tailed_phenotypes(args.workdir, suffix, args.seed)
    trees = {"baseline": worktree(args.baseline, args.workdir), "ours": REPO}
    modes = {}
    for m in args.modes:
        name, _, extra = m.partition("=")
        modes[name] = shlex.split(extra) if extra else MODES[name]
    w = args.workdir
    print(f"n = {args.n:,}, k = {args.k}, baseline {args.baseline}, {args.repeats} repeats; load"
          f" {os.getloadavg()[0]:.2f}", flush=True)
    out = {}
    for mode, extra in modes.items():
        extra = [e.format(w=w) for e in extra]
        pheno = w / (f"pheno10{suffix}.txt" if "--all_phenotypes" in extra else f"pheno1{suffix}.txt")
        walls = {(v, k): [] for v in trees for k in args.k}
        rss = dict.fromkeys(trees, 0.0)
        for _ in range(args.repeats):
            for k in args.k:
                for version, tree in trees.items():
                    cmd = [sys.executable, str(tree / "bin" / "hlmm_chr.py"), str(w / "test.bed"), "0", str(k),
                           str(pheno), str(w / f"out_{version}_{mode}"), "--quiet", *extra]
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    t, r = run_once(cmd, env, w / f"{version}_{mode}.log")
                    walls[version, k].append(t)
                    rss[version] = max(rss[version], r)
        per = {v: (statistics.median(walls[v, args.k[1]]) - statistics.median(walls[v, args.k[0]]))
               / (args.k[1] - args.k[0]) for v in trees}
        out[mode] = {"ms_per_variant": {v: 1e3 * per[v] for v in trees}, "ratio": per["ours"] / per["baseline"],
                     "peak_rss_mb": rss, "walls": {f"{v} k={k}": walls[v, k] for v, k in walls}}
        print(f"{mode:>15}: baseline {1e3 * per['baseline']:.4f} ms/variant, ours {1e3 * per['ours']:.4f}"
              f" ms/variant, ratio {per['ours'] / per['baseline']:.3f}; peak RSS baseline"
              f" {rss['baseline']:.0f} MB, ours {rss['ours']:.0f} MB", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(f"load {os.getloadavg()[0]:.2f} at {time.strftime('%H:%M:%S')}")
    return out


def heavy_tailed_phenotypes(w: Path, suffix: str, seed: int) -> None:
    """``pheno1{suffix}.txt`` and ``pheno10{suffix}.txt``: the simulated files' individuals and layout with
    Student t (5 df) values."""
    rng = np.random.default_rng(seed + 101)
    for name in ("pheno1", "pheno10"):
        lines = (w / f"{name}.txt").read_text().splitlines()
        try:
            float(lines[0].split()[-1])
            header = []
        except ValueError:
            header = [lines[0]]
        out = list(header)
        for line in lines[len(header):]:
            f = line.split()
            out.append(" ".join(f[:2] + [f"{x:.6f}" for x in rng.standard_t(5, len(f) - 2)]))
        (w / f"{name}{suffix}.txt").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
