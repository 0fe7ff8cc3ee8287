"""Time the mixed model's score screen (``hlmm_chr --test score --random_gts``) on dosages.

Per variant and phenotype, the mixed model's score test needs ``Z = G' D^-1 g`` (l numbers, O(n l)
work: a product with all of G, n x l). Two measurements:

``--products``  in process: ``G'g`` for random G (n x l) and b variants at a time, as numpy's
                single-threaded BLAS product of the whole G (``G.T @ g``) and as
                :func:`hlmm.engines.score.gram_products` (the halves of G's columns on two threads);
                ms per variant, the best of ``--repeats``.
``--scan``      whole ``hlmm_chr`` processes on the first ``--k`` variants of the dosage benchmark's
                ``dos.pgen`` (``benchmarks/bench_dosages.py`` makes it, n = 100,000), with the first
                ``--l`` variants of its ``hard.bed`` as random effects (made here with plink2 as
                ``random<l>.bed``), one phenotype (``pheno.txt``) and ten (``pheno10.txt``,
                ``--all_phenotypes``); with ``--compare PATH`` the same runs of another checkout
                (``PYTHONPATH=PATH``). The scan's time is the log's "Wrote ... in X s" (after the
                null fits, which do not change here), per variant; peak memory is GNU time's
                maximum resident set size. Medians over ``--repeats``, runs interleaved; the rows
                of the two checkouts are compared (largest relative difference of any number).

Examples (the figures in docs/performance.rst)::

    python benchmarks/bench_hlmm_score.py --products --n 100000 500000
    python benchmarks/bench_hlmm_score.py --scan --compare /tmp/base --repeats 2
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dosages import machine, plink2, python_env  # noqa: E402
from bench_vs_original import run_once  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WROTE = re.compile(r"Wrote \d+ rows to .* in ([0-9.]+) s")


def products(ns: list, l: int, bs: list, repeats: int) -> list:  # noqa: E741
    from threadpoolctl import threadpool_limits

    from hlmm.engines.score import gram_products

    rows = []
    rng = np.random.default_rng(1)
    for n in ns:
        G = rng.standard_normal((n, l))
        for b in bs:
            g = np.asfortranarray(rng.standard_normal((n, b)))
            best = {}
            for name, f in (("G.T @ g, 1 thread", lambda G=G, g=g: G.T @ g),
                            ("gram_products", lambda G=G, g=g: gram_products(G, g))):
                ts = []
                for _ in range(repeats):
                    with threadpool_limits(1, "blas"):
                        t0 = time.perf_counter()
                        f()
                        ts.append(time.perf_counter() - t0)
                best[name] = min(ts) * 1e3 / b
            row = dict(n=n, l=l, b=b, **best)
            rows.append(row)
            print(f"n={n:>7} l={l} b={b:>4}: " + ", ".join(f"{k} {v:.2f} ms/variant" for k, v in best.items()),
                  flush=True)
    return rows


def random_bed(workdir: Path, l: int) -> Path:  # noqa: E741
    out = workdir / f"random{l}"
    if not out.with_suffix(".bed").exists():
        ids = workdir / f"random{l}.ids"
        with open(workdir / "hard.bim") as f:
            ids.write_text("".join(line.split()[1] + "\n" for _, line in zip(range(l), f)))
        subprocess.run([plink2(), "--bfile", str(workdir / "hard"), "--extract", str(ids), "--make-bed", "--out",
                        str(out)], check=True, capture_output=True)
    return out.with_suffix(".bed")


def rows_of(prefix: Path, traits: list) -> list:
    out = []
    for t in traits:
        name = Path(f"{prefix}.{t}.models.gz") if t else Path(f"{prefix}.models.gz")
        with gzip.open(name, "rt") as f:
            out.append([line.rstrip("\n").split("\t") for line in f])
    return out


def largest_difference(a: list, b: list) -> tuple[int, float]:
    """Rows that differ, and the largest relative difference of any number in them."""
    differ, worst = 0, 0.0
    for ta, tb in zip(a, b):
        assert len(ta) == len(tb), "different numbers of rows"
        for ra, rb in zip(ta, tb):
            if ra == rb:
                continue
            differ += 1
            for x, y in zip(ra, rb):
                if x != y:
                    fx, fy = float(x), float(y)
                    worst = max(worst, abs(fx - fy) / max(abs(fx), abs(fy)))
    return differ, worst


def scan(args) -> list:
    w = args.workdir
    bed = random_bed(w, args.l)
    trees = [("this checkout", REPO)] + ([("baseline", args.compare)] if args.compare else [])
    setups = [("1 trait", w / "pheno.txt", [], [""]), ("10 traits", w / "pheno10.txt", ["--all_phenotypes"],
                                                       [f"t{i}" for i in range(10)])]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    times: dict = {}
    peaks: dict = {}
    for rep in range(args.repeats):
        for setup, pheno, extra, _ in setups:
            for label, tree in trees:
                prefix = out_dir / f"{label.replace(' ', '_')}_{setup.replace(' ', '_')}"
                cmd = [sys.executable, str(tree / "bin" / "hlmm_chr.py"), str(w / "dos.pgen"), "0", str(args.k),
                       str(pheno), str(prefix), "--test", "score", "--random_gts", str(bed), *extra]
                log = prefix.with_suffix(".log.txt")
                wall, peak = run_once(cmd, python_env(tree), log)
                found = WROTE.findall(log.read_text())
                if not found:
                    raise SystemExit(f"no 'Wrote ... in X s' in {log}")
                t = float(found[-1])
                times.setdefault((setup, label), []).append(t)
                peaks[(setup, label)] = max(peaks.get((setup, label), 0.0), peak)
                print(f"repeat {rep + 1}: {setup}, {label}: scan {t:.1f} s ({t / args.k * 1e3:.2f} ms/variant), "
                      f"whole {wall:.1f} s, peak {peak:.0f} MB", flush=True)
    rows = []
    for setup, _, _, traits in setups:
        base = statistics.median(times[(setup, "baseline")]) if args.compare else None
        for label, _ in trees:
            t = statistics.median(times[(setup, label)])
            row = dict(run=setup, tree=label, scan_s=t, ms_per_variant=t / args.k * 1e3, peak_mb=peaks[(setup, label)],
                       speedup=None if base is None else base / t)
            if args.compare and label == "this checkout":
                pre = [out_dir / f"{lab.replace(' ', '_')}_{setup.replace(' ', '_')}" for lab in ("this checkout",
                                                                                                 "baseline")]
                row["rows_differing"], row["largest_relative_difference"] = largest_difference(
                    *(rows_of(p, traits) for p in pre))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--products", action="store_true")
    p.add_argument("--scan", action="store_true")
    p.add_argument("--n", type=int, nargs="+", default=[100_000, 500_000], help="--products: individuals")
    p.add_argument("--b", type=int, nargs="+", default=[8, 41, 128, 335], help="--products: variants at a time")
    p.add_argument("--l", type=int, default=500, help="random-effect variants (default 500)")
    p.add_argument("--k", type=int, default=600, help="--scan: test variants (default 600)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compare", type=Path, default=None, help="--scan: another hlmm checkout as the baseline")
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "dosages")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "_data" / "hlmm_score"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if not (args.products or args.scan):
        p.error("choose --products and/or --scan")
    print(machine(), flush=True)
    result = {}
    if args.products:
        result["products"] = products(args.n, args.l, args.b, args.repeats)
    if args.scan:
        result["scan"] = scan(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
