"""Marginal wall and CPU time per variant of whole ``hlmm_chr`` processes of several checkouts (and
plink2 ``--glm``), interleaved in one run::

    python benchmarks/ab_processes.py REPEATS K0 K1 GENO PHENO TREE [TREE ...] [-- hlmm_chr options]

Each TREE is a checkout with its library built (``PYTHONPATH=TREE TREE/bin/hlmm_chr.py``), or
``plink2`` for ``plink2 --pfile GENO --pheno PHENO --glm allow-no-covars --snps rs0-rs<k-1>
--threads 2`` (GENO a .pgen). After one untimed run of each at K0, every repeat runs every tree at
K0, then every tree at K1. Printed per tree: the median over repeats of (t[K1] - t[K0]) / (K1 - K0)
in ms, for the wall time and for the CPU time (user + system of the process and its threads), and
each repeat's wall. On a machine whose neighbours vary, the CPU times vary less than the walls.
Outputs go to the system's temporary directory. ``bench_dosages.py`` is the full benchmark (its
data, tables and peak memory); this is the quick side-by-side check used in docs/performance.rst.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    if len(argv) < 6:
        sys.exit(__doc__)
    repeats, k0, k1 = (int(a) for a in argv[:3])
    geno, pheno, *trees = argv[3:]
    out = Path(tempfile.mkdtemp(prefix="ab_processes_"))

    def run(tree: str, k: int) -> tuple[float, float]:
        if tree == "plink2":
            prefix = geno[:-5] if geno.endswith(".pgen") else geno
            cmd = ["plink2", "--pfile", prefix, "--pheno", pheno, "--glm", "allow-no-covars", "--snps",
                   f"rs0-rs{k - 1}", "--threads", "2", "--out", str(out / f"plink2_{k}")]
        else:
            cmd = [sys.executable, f"{tree}/bin/hlmm_chr.py", geno, "0", str(k), pheno,
                   str(out / f"{Path(tree).name}_{k}"), "--quiet", *extra]
        env = dict(os.environ, PYTHONPATH=tree)
        r0, t0 = os.times(), time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall, r1 = time.perf_counter() - t0, os.times()
        return wall, (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)

    times = {t: {k0: [], k1: []} for t in trees}
    for t in trees:
        run(t, k0)
    for _ in range(repeats):
        for k in (k0, k1):
            for t in trees:
                times[t][k].append(run(t, k))
    for t in trees:
        wall = [(b[0] - a[0]) / (k1 - k0) * 1e3 for a, b in zip(times[t][k0], times[t][k1])]
        cpu = [(b[1] - a[1]) / (k1 - k0) * 1e3 for a, b in zip(times[t][k0], times[t][k1])]
        print(f"{t:24s} wall ms/var median {statistics.median(wall):.4f} {['%.3f' % x for x in wall]}  "
              f"cpu {statistics.median(cpu):.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
