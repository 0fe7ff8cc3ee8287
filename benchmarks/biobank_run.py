"""A biobank-size run on record: n = 500,000, an 8-bit zlib .bgen made by plink2, 10 traits, 20 covariates.

Data (in ``--workdir``, made once and kept):

* ``dos.pgen``: ``--m`` variants (default 2,000), allele frequencies uniform in 0.01–0.5, dosages as
  imputation gives them (30% of the calls perturbed by N(0, 0.1), clipped to [0, 2]), written by
  pgenlib; ``dos.bgen`` (+ ``dos.sample``) from it by ``plink2 --export bgen-1.2 bits=8`` (zlib, as
  UK Biobank's; its sample IDs are FID_IID, which hlmm_chr matches by itself);
* ``random.bed``: ``--l`` hard-call variants (default 500) for the mixed model's random effects;
* ``pheno.txt``: 10 traits, each a polygenic normal trait on the random-effect variants (h2 0.2)
  plus covariate effects and noise; ``covar.txt``: 20 covariates, 10 of them PC-like (smooth
  functions of a latent population structure) and 10 independent normals.

Runs, as whole ``hlmm_chr`` processes on the .bgen, all 10 traits in one pass (``--all_phenotypes``),
``--mean_covar`` and ``--var_covar`` the 20 covariates:

* HLM Wald with ``--robust``;
* the HLM score screen (``--test score``);
* the HLMM score screen (``--test score --random_gts random.bed``, l = 500).

Each on the first k variants (``--k``, one or two numbers; default 200 and 2,000): the wall time,
the scan's time (the log's "Wrote ... in X s": reading, testing and writing, after the null fits)
and the peak resident memory (GNU time's ru_maxrss, which covers child processes). The time per
variant is the scan's over k (the largest k); with two k, the marginal time per variant
(t[k1] - t[k0]) / (k1 - k0) of the walls too. The start-up is the wall less the scan. From them,
the extrapolation to 10 million variants x 10 traits in core-hours (the run's 2 cores) and on a
100-task SLURM array (each task: one range of 100,000 variants, its own start-up).

Example (the record in docs/performance.rst)::

    python benchmarks/biobank_run.py --n 500000 --m 2000 --l 500 --k 2000 \\
        --workdir benchmarks/_data/biobank --json benchmarks/_data/biobank_r4.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hlmm.io import BedWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_original import run_once  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WROTE = re.compile(r"Wrote \d+ rows to .* in ([0-9.]+) s")


def simulate(d: Path, n: int, m: int, l: int, seed: int) -> None:  # noqa: E741
    stamp = d / "simulated.json"
    want = {"n": n, "m": m, "l": l, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    import pgenlib

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    t0 = time.perf_counter()
    G = np.empty((n, l), dtype=np.int8)
    with BedWriter(str(d / "random"), ids) as w:
        for j0 in range(0, l, 100):
            b = min(100, l - j0)
            g = rng.binomial(2, rng.uniform(0.05, 0.5, b), (n, b))
            G[:, j0 : j0 + b] = g
            w.write(g.astype(float))
    pw = pgenlib.PgenWriter(str(d / "dos.pgen").encode(), n, m, False, dosage_present=True)
    for j0 in range(0, m, 50):
        b = min(50, m - j0)
        g = rng.binomial(2, rng.uniform(0.01, 0.5, b), (n, b)).astype(np.float32)
        g += rng.normal(0, 0.1, (n, b)).astype(np.float32) * (rng.random((n, b)) < 0.3)
        np.clip(g, 0, 2, out=g)
        for k in range(b):
            pw.append_dosages(np.ascontiguousarray(g[:, k]))
    pw.close()
    (d / "dos.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n" + "".join(
        f"1\t{1000 * (j + 1)}\trs{j}\tG\tA\n" for j in range(m)))
    (d / "dos.psam").write_text("#FID\tIID\n" + "".join(f"{a}\t{b}\n" for a, b in ids))
    subprocess.run([shutil.which("plink2") or "plink2", "--pfile", str(d / "dos"), "--export", "bgen-1.2", "bits=8",
                    "--threads", "2", "--out", str(d / "dos")], check=True, stdout=subprocess.DEVNULL)
    # covariates: 10 PC-like (smooth in a 2-d latent structure) and 10 independent normals
    latent = rng.standard_normal((n, 2))
    pcs = np.column_stack([np.sin((k + 1) * latent[:, 0]) + np.cos((k + 1) * latent[:, 1]) for k in range(10)])
    C = np.column_stack([(pcs - pcs.mean(0)) / pcs.std(0), rng.standard_normal((n, 10))])
    header = " ".join([f"PC{k + 1}" for k in range(10)] + [f"c{k + 1}" for k in range(10)])
    with open(d / "covar.txt", "w") as f:
        f.write(f"FID IID {header}\n")
        for i in range(0, n, 50_000):
            f.writelines(f"f{j} i{j} " + " ".join(f"{v:.6g}" for v in row) + "\n"
                         for j, row in zip(range(i, i + 50_000), C[i : i + 50_000]))
    Z = (G - G.mean(0)) / G.std(0)
    Y = np.empty((n, 10))
    for t in range(10):
        u = Z @ rng.normal(0, np.sqrt(0.2 / l), l)
        Y[:, t] = u + C @ rng.normal(0, 0.1, 20) + rng.standard_normal(n) * np.sqrt(0.8)
    with open(d / "pheno.txt", "w") as f:
        f.write("FID IID " + " ".join(f"t{t + 1}" for t in range(10)) + "\n")
        for i in range(0, n, 50_000):
            f.writelines(f"f{j} i{j} " + " ".join(f"{v:.6g}" for v in row) + "\n"
                         for j, row in zip(range(i, i + 50_000), Y[i : i + 50_000]))
    stamp.write_text(json.dumps(want))
    print(f"simulated in {time.perf_counter() - t0:.0f} s", flush=True)


RUNS = {
    "HLM Wald, --robust": ["--robust"],
    "HLM score screen": ["--test", "score"],
    "HLMM score screen": ["--test", "score", "--random_gts", "{random}"],
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500_000)
    p.add_argument("--m", type=int, default=2000)
    p.add_argument("--l", type=int, default=500)
    p.add_argument("--k", type=int, nargs="+", default=[200, 2000], help="one or two numbers of variants")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "biobank")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if not 1 <= len(args.k) <= 2:
        p.error("--k takes one or two numbers of variants")
    simulate(args.workdir, args.n, args.m, args.l, args.seed)
    d = args.workdir
    rows = []
    # one untimed run first: numba loads (or compiles) its kernels on a checkout's first run
    run_once([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(d / "dos.bgen"), "0", "10", str(d / "pheno.txt"),
              str(d / "warmup"), "--quiet", "--test", "score"], None, d / "log_warmup.txt")
    for label in args.runs:
        extra = [e.replace("{random}", str(d / "random.bed")) for e in RUNS[label]]
        walls, peaks, scans = {}, {}, {}
        for k in args.k:
            cmd = [sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(d / "dos.bgen"), "0", str(k),
                   str(d / "pheno.txt"), str(d / f"out_{k}"), "--all_phenotypes", "--mean_covar",
                   str(d / "covar.txt"), "--var_covar", str(d / "covar.txt"), *extra]
            log = d / f"log_{len(rows)}_{k}.txt"
            walls[k], peaks[k] = run_once(cmd, None, log)
            found = WROTE.findall(log.read_text())
            if not found:
                raise SystemExit(f"no 'Wrote ... in X s' in {log}")
            scans[k] = float(found[-1])
            print(f"{label}: {k} variants in {walls[k]:.1f} s (scan {scans[k]:.1f} s), peak {peaks[k]:.0f} MB",
                  flush=True)
        k1 = max(args.k)
        per = scans[k1] / k1
        start = walls[k1] - scans[k1]
        marginal = None
        if len(args.k) == 2:
            k0 = min(args.k)
            marginal = (walls[k1] - walls[k0]) / (k1 - k0)
        # 10 million variants x 10 traits (the traits share each pass): one process on 2 cores, and a
        # 100-task array, each task 100,000 variants with its own start-up
        core_hours = 2 * (start + 1e7 * per) / 3600
        task_h = (start + 1e5 * per) / 3600
        rows.append({"run": label, "n": args.n, "l": args.l if "HLMM" in label else 0, "traits": 10, "covariates": 20,
                     "k": list(args.k), "wall_s": [walls[k] for k in args.k], "scan_s": [scans[k] for k in args.k],
                     "ms_per_variant": 1e3 * per,
                     "marginal_ms_per_variant": None if marginal is None else 1e3 * marginal, "startup_s": start,
                     "peak_mb": max(peaks.values()), "core_hours_10M": core_hours, "slurm_task_hours": task_h})
        print(rows[-1], flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
