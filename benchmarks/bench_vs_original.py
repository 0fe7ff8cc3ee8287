"""Benchmark our hlmm_chr against the original hlmm 1.2.0a1, side by side, as whole processes.

Both programs run ``hlmm_chr test.bed 0 k pheno.txt out [--random_gts random.bed]`` with default
options on the same simulated data. For each program the marginal time per SNP is

    (t[0, k) - t[0, k0)) / (k - k0)

with ``t`` the median wall time over the repeats and ``k0`` the smallest SNP count, so that
start-up, reading the data and the null fit cancel. Runs of ours and of the original are
interleaved (ours k0, original k0, ours k1, original k1, ... in every repeat), so that changes of
machine load hit both. Peak memory is the resident set size of each process (``os.wait4``'s
``ru_maxrss``), the largest over the repeats.

The data (seeded numpy; the .bed bytes are written here, not by hlmm.io) are kept in
``--workdir`` and reused when the sizes match. The original is looked for in ``--original``,
``$HLMM_ORIGINAL`` or ``<repo>/../shared/original-1.2.0a1`` and run with this interpreter, which
needs numpy, scipy, pysnptools and six; ours is ``<repo>/bin/hlmm_chr.py`` with this checkout on
``PYTHONPATH``.

Examples
--------
The full measurement (HLMM, n = 100,000, l = 500; the original takes ~20-25 s per SNP)::

    python benchmarks/bench_vs_original.py --mode hlmm --n 100000 --l 500 \\
        --ours-k 1 41 --original-k 1 3 --repeats 3

HLM scans (the original takes ~14 ms per SNP)::

    python benchmarks/bench_vs_original.py --mode hlm --ours-k 1 2001 --original-k 1 201

A smoke run::

    python benchmarks/bench_vs_original.py --n 5000 --l 50 --ours-k 1 21 --original-k 1 3 --repeats 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_K = {"hlmm": {"ours": [1, 41], "original": [1, 3]},
             "hlm": {"ours": [1, 2001], "original": [1, 201]}}


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def pack_bed_rows(genotypes: np.ndarray) -> bytes:
    """SNP-major .bed bytes of ``genotypes`` (n, b): copies of A1 as int8, -1 missing."""
    n, b = genotypes.shape
    codes = np.full((n + (-n) % 4, b), 0b01, dtype=np.uint8)  # 01 = missing (also the padding)
    codes[:n][genotypes == 2] = 0b00
    codes[:n][genotypes == 1] = 0b10
    codes[:n][genotypes == 0] = 0b11
    c = codes.T.reshape(b, -1, 4)
    return (c[:, :, 0] | c[:, :, 1] << 2 | c[:, :, 2] << 4 | c[:, :, 3] << 6).astype(np.uint8).tobytes()


def write_fileset(prefix: Path, n: int, m: int, rng: np.random.Generator, missing: float, name: str,
                  block: int = 256) -> np.ndarray:
    """Write m SNPs for n individuals; returns the genotypes of the first min(m, 2) SNPs."""
    first = None
    with open(prefix.with_suffix(".bed"), "wb") as f:
        f.write(b"\x6c\x1b\x01")
        for j0 in range(0, m, block):
            b = min(block, m - j0)
            g = rng.binomial(2, rng.uniform(0.1, 0.5, b), (n, b)).astype(np.int8)
            if missing > 0:
                g[rng.random((n, b)) < missing] = -1
            if first is None:
                first = g[:, : min(b, 2)].copy()
            f.write(pack_bed_rows(g))
    prefix.with_suffix(".fam").write_text("".join(f"f{i} i{i} 0 0 0 -9\n" for i in range(n)))
    prefix.with_suffix(".bim").write_text("".join(f"1\t{name}{j}\t0\t{1000 * (j + 1)}\tA\tG\n" for j in range(m)))
    return first


def random_effect_phenotype(prefix: Path, n: int, l: int, h2: float, rng: np.random.Generator) -> np.ndarray:
    """G u with G the standardised random-effect genotypes (read back from the .bed) and Var = h2."""
    data = np.frombuffer(prefix.with_suffix(".bed").read_bytes()[3:], dtype=np.uint8).reshape(l, -1)
    lookup = np.array([2, -1, 1, 0], dtype=np.int8)  # 00, 01, 10, 11
    out = np.zeros(n)
    u = rng.standard_normal(l) * np.sqrt(h2 / l)
    for j in range(l):
        codes = (data[j][:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
        g = lookup[codes.reshape(-1)[:n]].astype(float)
        miss = g < 0
        g[miss] = g[~miss].mean()
        sd = g.std()
        if sd > 0:
            out += u[j] * (g - g.mean()) / sd
    return out


def simulate(workdir: Path, n: int, m: int, l: int, missing: float, seed: int) -> dict:
    """Write test.bed (m SNPs), random.bed (l SNPs) and pheno.txt in workdir, unless already there."""
    stamp = workdir / "simulated.json"
    want = {"n": n, "l": l, "missing": missing, "seed": seed}
    if stamp.exists():
        have = json.loads(stamp.read_text())
        if {k: have.get(k) for k in want} == want and have.get("m", 0) >= m:
            return have
    rng = np.random.default_rng(seed)
    first = write_fileset(workdir / "test", n, m, rng, missing, "snp")
    write_fileset(workdir / "random", n, max(l, 1), rng, missing, "rnd")
    g = np.where(first < 0, 0, first).astype(float)
    y = random_effect_phenotype(workdir / "random", n, max(l, 1), 0.3, rng)
    y += 0.05 * g[:, 0] + rng.standard_normal(n) * np.exp(0.5 * (0.1 * g[:, -1] - 0.35))
    (workdir / "pheno.txt").write_text("FID IID trait\n" + "".join(f"f{i} i{i} {y[i]:.17g}\n" for i in range(n)))
    info = {**want, "m": m}
    stamp.write_text(json.dumps(info))
    return info


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def locate_original(arg: str | None) -> Path:
    for c in (arg, os.environ.get("HLMM_ORIGINAL"), REPO.parent / "shared" / "original-1.2.0a1"):
        if c and (Path(c) / "bin" / "hlmm_chr.py").is_file():
            return Path(c).resolve()
    raise SystemExit("hlmm 1.2.0a1 not found: pass --original DIR or set HLMM_ORIGINAL")


def command(program: str, k: int, workdir: Path, mode: str, original: Path) -> tuple[list, dict]:
    """The command line and environment of one run."""
    script = original / "bin" / "hlmm_chr.py" if program == "original" else REPO / "bin" / "hlmm_chr.py"
    cmd = [sys.executable, str(script), str(workdir / "test.bed"), "0", str(k), str(workdir / "pheno.txt"),
           str(workdir / f"out_{program}_{k}")]
    if mode == "hlmm":
        cmd += ["--random_gts", str(workdir / "random.bed")]
    env = {key: v for key, v in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(original if program == "original" else REPO)
    return cmd, env


def build_in_place(tree: Path) -> None:
    """Build the optional C kernel of another checkout of ours (``hlmm/engines/_classsums.c``, from
    242874a on) in its source tree, as ``pip install -e`` does, so that running it with ``PYTHONPATH``
    measures its C kernel rather than its numba fallback; a warning if that fails. Always built
    afresh (``--force``): a library left from another commit of the same tree has other signatures
    (one left in place gave a baseline of empty rows)."""
    engines = Path(tree) / "hlmm" / "engines"
    if not (engines / "_classsums.c").exists():
        return
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force"], cwd=tree,
                       capture_output=True, text=True)
    if r.returncode != 0 or not any(engines.glob("_classsums*.so")):
        print(f"warning: could not build {engines / '_classsums.c'}; {tree} runs its numba kernels", file=sys.stderr)


def run_once(cmd: list, env: dict, log: Path) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MB) of one run; its output goes to ``log``.

    The peak is GNU time's maximum resident set size of the program (with its children) when
    /usr/bin/time exists: ``os.wait4`` of a direct child reports at least this process's own size,
    which the forked child carries in its high-water mark into the exec.
    """
    gnu_time = shutil.which("time", path="/usr/bin")
    rss_file = log.with_suffix(".rss")
    full = [gnu_time, "-f", "%M", "-o", str(rss_file)] + list(cmd) if gnu_time else list(cmd)
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"failed ({status}): {shlex.join(cmd)}\nsee {log}")
    peak = usage.ru_maxrss / 1024.0
    if gnu_time:
        lines = rss_file.read_text().split() if rss_file.exists() else []
        peak = float(lines[-1]) / 1024.0 if lines and lines[-1].isdigit() else float("nan")
        rss_file.unlink(missing_ok=True)
    return wall, peak


def summarise(walls: dict, rss: dict, ks: list) -> dict:
    k0 = ks[0]
    t = {k: statistics.median(walls[k]) for k in ks}
    marginals = {k: (t[k] - t[k0]) / (k - k0) for k in ks[1:]}
    per_snp = marginals[ks[-1]]
    return {"k": ks, "median_wall": t, "walls": walls, "peak_rss_mb": {k: max(rss[k]) for k in ks},
            "marginal_s_per_snp": marginals, "s_per_snp": per_snp,
            "snps_per_s": 1.0 / per_snp if per_snp > 0 else float("inf")}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="see the module docstring for examples")
    p.add_argument("--mode", choices=("hlmm", "hlm"), default="hlmm",
                   help="hlmm: with --random_gts (default); hlm: without")
    p.add_argument("--n", type=int, default=100_000, help="individuals (default 100,000)")
    p.add_argument("--l", type=int, default=500, help="random-effect SNPs (default 500)")
    p.add_argument("--ours-k", type=int, nargs="+", default=None,
                   help="SNP counts k for ours, at least two (default 1 41 for hlmm, 1 2001 for hlm)")
    p.add_argument("--original-k", type=int, nargs="+", default=None,
                   help="SNP counts k for the original (default 1 3 for hlmm, 1 201 for hlm)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each (program, k); medians (default 3)")
    p.add_argument("--missing", type=float, default=0.0, help="fraction of missing calls (default 0)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "vs_original")
    p.add_argument("--original", type=str, default=None, help="directory of hlmm 1.2.0a1")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    ks = {"ours": sorted(set(args.ours_k or DEFAULT_K[args.mode]["ours"])),
          "original": sorted(set(args.original_k or DEFAULT_K[args.mode]["original"]))}
    for prog, k in ks.items():
        if len(k) < 2 or k[0] < 1:
            p.error(f"--{'ours' if prog == 'ours' else 'original'}-k needs at least two distinct counts >= 1, got {k}")
    original = locate_original(args.original)
    args.workdir.mkdir(parents=True, exist_ok=True)
    m = max(ks["ours"] + ks["original"])

    t0 = time.perf_counter()
    info = simulate(args.workdir, args.n, m, args.l, args.missing, args.seed)
    print(f"data: n = {args.n:,} individuals, test.bed {info['m']:,} SNPs, random.bed l = {args.l} SNPs, "
          f"missing = {args.missing}, seed = {args.seed} ({args.workdir}; {time.perf_counter() - t0:.1f} s)")
    print(f"mode = {args.mode}; k ours = {ks['ours']}, k original = {ks['original']}; repeats = {args.repeats}")
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                          "NUMBA_NUM_THREADS") if k in os.environ}
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; python "
          f"{platform.python_version()}; thread settings {threads or 'none (library defaults)'}")
    print("commands:")
    for prog in ("ours", "original"):
        for k in ks[prog]:
            cmd, env = command(prog, k, args.workdir, args.mode, original)
            print(f"  PYTHONPATH={env['PYTHONPATH']} {shlex.join(cmd)}")

    walls = {prog: {k: [] for k in ks[prog]} for prog in ks}
    rss = {prog: {k: [] for k in ks[prog]} for prog in ks}
    for r in range(args.repeats):
        for k_ours, k_orig in itertools.zip_longest(ks["ours"], ks["original"]):
            for prog, k in (("ours", k_ours), ("original", k_orig)):
                if k is None:
                    continue
                cmd, env = command(prog, k, args.workdir, args.mode, original)
                w, mb = run_once(cmd, env, args.workdir / f"log_{prog}_{k}.txt")
                walls[prog][k].append(w)
                rss[prog][k].append(mb)
                print(f"  repeat {r + 1}: {prog:>8} k = {k:>6}: {w:9.2f} s, peak RSS {mb:8.0f} MB", flush=True)

    res = {prog: summarise(walls[prog], rss[prog], ks[prog]) for prog in ks}
    print(f"\n{'program':>9} {'k':>12} {'median wall (s)':>22} {'s/SNP':>11} {'SNPs/s':>10} {'peak RSS MB':>18}")
    for prog in ("ours", "original"):
        s = res[prog]
        k0, k1 = s["k"][0], s["k"][-1]
        wall, peak = s["median_wall"], s["peak_rss_mb"]
        print(f"{prog:>9} {f'{k0} -> {k1}':>12} {wall[k0]:>10.2f} -> {wall[k1]:<9.2f} "
              f"{s['s_per_snp']:>11.4g} {s['snps_per_s']:>10.4g} {peak[k0]:>8.0f} / {peak[k1]:<8.0f}")
    for prog in ("ours", "original"):
        s = res[prog]
        spread = max(max(w) - min(w) for w in s["walls"].values())
        gap = s["median_wall"][s["k"][-1]] - s["median_wall"][s["k"][0]]
        if gap < max(1.0, 3 * spread):
            print(f"warning: {prog}: the wall times of k = {s['k'][0]} and {s['k'][-1]} differ by {gap:.2f} s, not well"
                  f" above run-to-run noise ({spread:.2f} s over repeats); use a larger k")
    ours_per_snp = res["ours"]["s_per_snp"]
    ratio = res["original"]["s_per_snp"] / ours_per_snp if ours_per_snp > 0 else float("nan")
    print(f"ratio original/ours, marginal time per SNP: {ratio:.1f}x")
    out = {"mode": args.mode, "n": args.n, "l": args.l, "missing": args.missing, "seed": args.seed,
           "repeats": args.repeats, "results": res, "ratio_original_over_ours": ratio}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
