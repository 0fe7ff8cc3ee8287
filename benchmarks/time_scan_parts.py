"""Where a scan's time goes, in process: ``hlmm_chr`` run as a function with timers around the
runner's parts, and the per-class numba kernels timed on one thread against all of numba's.

Scan parts (ms per variant, over the whole run, start-up excluded): ``compute`` (reading and
scanning blocks, ``runner.compute_block``), ``write`` (each block's rows formatted, compressed and
written, ``on_block``), of which ``gzip member`` (``results.block_member``: formatting and
compression), and ``run_blocks`` (the block loop). The arguments after the first are
``hlmm_chr``'s (its genotype file, range and phenotype file); output goes to a temporary
directory::

    python benchmarks/time_scan_parts.py benchmarks/_data/dosages/dos8.pgen 0 6000 \\
        benchmarks/_data/dosages/pheno10.txt --test score --all_phenotypes

``--kernels`` instead times the per-class kernels of :mod:`hlmm.engines._kernels_classes` on the
classes of a part of 41 variants of 8-bit-like dosages (256 classes each) and of the 1/16384 grid
(9,200 each), called through their wrappers (:func:`~hlmm.engines._kernels_classes.threads_by_work`)
and directly on numba's threads (medians of 200 calls, microseconds)::

    python benchmarks/time_scan_parts.py --kernels

``--classes PATH`` times the dosage class sums (:func:`hlmm.engines._kernels_classes.dosage_classes`)
of the first 41 variants of a genotype file (a scan's part at n = 100,000), for one phenotype (4
columns) and ten (21 columns, as ``--all_phenotypes`` makes them), the compiled kernel against
numba's (medians of 15 calls, ms per variant, on numba's threads), and checks that their sums are
the same to the last bit::

    python benchmarks/time_scan_parts.py --classes benchmarks/_data/dosages/dos.pgen

``--fits`` times the HLM's Newton fits over the dosage classes of 41 variants (n = 100,000, 30% of
the calls perturbed by N(0, 0.1) as ``bench_dosages.py``'s ``dos.pgen``, on its 1/16384 grid and on
an 8-bit grid), the compiled library's (:func:`hlmm.engines._kernels_hlm.fit_dosage_classes`)
against numba's (``fit_dosage_classes_numba``), on one thread and on numba's (medians of 15 calls,
ms per variant), with the largest difference between their estimates relative to the standard
error::

    python benchmarks/time_scan_parts.py --fits
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(totals: dict, name: str, f):
    def g(*a, **kw):
        t = time.perf_counter()
        try:
            return f(*a, **kw)
        finally:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - t

    return g


def scan_parts(argv: list) -> None:
    from hlmm import pipeline, results, runner
    from hlmm.cli import hlmm_chr

    totals: dict = {}
    compute = _timed(totals, "compute", runner.compute_block)
    original_init = runner._Serial.__init__

    def init(self, job):
        original_init(self, job)
        self.fn = compute

    runner._Serial.__init__ = init
    run_blocks = pipeline.run_blocks
    pipeline.run_blocks = lambda job, blocks, on_block, **kw: _timed(totals, "run_blocks", run_blocks)(
        job, blocks, _timed(totals, "write", on_block), **kw)
    results.block_member = _timed(totals, "gzip member", results.block_member)
    k = int(argv[2]) - int(argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        hlmm_chr.main(argv[:4] + [str(Path(tmp) / "out"), "--quiet"] + argv[4:])
    print(f"{k} variants: " + "  ".join(f"{name} {1000 * t / k:.4f}" for name, t in totals.items())
          + "  (ms per variant)")


def _median_time(f, args: tuple, calls: int) -> float:
    """The median wall time of ``calls`` calls ``f(*args)`` after one more (seconds)."""
    f(*args)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def kernels() -> None:
    import numba

    from hlmm.engines import _kernels_classes as kc

    rng = np.random.default_rng(0)
    for per in (256, 9200):
        b = 41
        offsets = np.arange(b + 1) * per
        K = b * per
        counts, values = rng.integers(0, 500, K).astype(np.float64), rng.random(K) * 2
        hsums, S, coef = rng.standard_normal(K), rng.standard_normal((K, 4)), np.array([1.0, 2.0, 3.0])
        calls = {"segment_count_sums": (offsets, counts, values),
                 "centred_segment_sums": (offsets, values, counts, hsums),
                 "combine_columns": (S, coef)}
        for name, args in calls.items():
            wrapper = getattr(kc, name)
            row = []
            for label, f in (("wrapper", wrapper), (f"{numba.get_num_threads()} threads", wrapper.kernel)):
                row.append(f"{label} {1e6 * _median_time(f, args, 200):7.1f}")
            print(f"{b} variants x {per:5d} classes  {name:22s} " + "  ".join(row) + "  (us per call)")


def fits() -> None:
    import numba

    from hlmm import _optimize
    from hlmm.engines import _kernels_hlm as kh

    rules = (200, _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL, _optimize.LOCAL_RTOL, _optimize.F_NOISE_RTOL)
    rng = np.random.default_rng(0)
    n, b = 100_000, 41
    threads = numba.get_num_threads()
    for grid in (16384, 255):
        offsets, values, counts, sums = [0], [], [], []
        for _ in range(b):
            g = rng.binomial(2, rng.uniform(0.05, 0.5), n).astype(float)
            d = np.where(rng.random(n) < 0.3, np.clip(g + rng.normal(0, 0.1, n), 0, 2), g)
            v, inv = np.unique(np.round(d * grid) / grid, return_inverse=True)
            y = rng.standard_normal(n)
            offsets.append(offsets[-1] + v.size)
            values.append(v)
            counts.append(np.bincount(inv).astype(float))
            sums.append(np.column_stack([np.bincount(inv, y), np.bincount(inv, y * y)]))
        args = (np.array(offsets), np.concatenate(values), np.concatenate(counts))
        S = np.concatenate(sums)
        args += (S[:, 0], S[:, 1]) + rules
        row = []
        try:
            for t in sorted({1, threads}):
                numba.set_num_threads(t)
                for label, f in (("compiled", kh.fit_dosage_classes), ("numba", kh.fit_dosage_classes_numba)):
                    row.append(f"{label} {t} thread{'s' * (t > 1)} {1000 * _median_time(f, args, 15) / b:.4f}")
        finally:
            numba.set_num_threads(threads)
        a, c = kh.fit_dosage_classes(*args), kh.fit_dosage_classes_numba(*args)
        ok = c[:, 7] == 1
        worst = max(np.abs(a[ok, 2] - c[ok, 2]).max() / np.sqrt(c[ok, 5]).min(),
                    np.abs(a[ok, 4] - c[ok, 4]).max() / np.sqrt(c[ok, 6]).min())
        print(f"{b} variants, grid 1/{grid}, {(offsets[-1]) / b:,.0f} classes per variant: " + "  ".join(row)
              + f"  (ms per variant); largest difference {worst:.1e} standard errors")


def classes(path: str) -> None:
    from hlmm.engines import _kernels_classes as kc
    from hlmm.io import open_genotypes

    source = open_genotypes(path)
    n = len(source.samples)
    D = source.read_dosages(np.arange(n), 0, 41).astype(np.float32)  # (as the scans' blocks hold them)
    rng = np.random.default_rng(0)
    compiled = kc._dosage_classes_c
    for q in (4, 21):
        Yc = rng.standard_normal((n, q))
        Yc[:, 0] = 1.0
        # one trait [1, y, y^2] padded to 4; ten traits: the ones column shared, [1, y_t, y_t^2] each
        parts = [np.arange(3)] if q == 4 else [np.array([0, 1 + 2 * t, 2 + 2 * t]) for t in range(10)]
        row, out = [], {}
        for label, kernel in (("compiled", compiled), ("numba", None)):
            if label == "compiled" and compiled is None:
                continue
            kc._dosage_classes_c = kernel
            try:
                out[label] = kc.dosage_classes(D, Yc, 16384, parts)
                row.append(f"{label} {1000 * _median_time(kc.dosage_classes, (D, Yc, 16384, parts), 15) / 41:.3f}")
            finally:
                kc._dosage_classes_c = compiled
        flat = [[a for x in o for a in (x if isinstance(x, list) else [x])] for o in out.values()]
        same = len(flat) < 2 or all(a.tobytes() == c.tobytes() for a, c in zip(*flat))
        print(f"41 variants of {Path(path).name}, {q} columns: " + "  ".join(row)
              + f"  (ms per variant); the same sums: {same}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--kernels"]:
        kernels()
    elif sys.argv[1:] == ["--fits"]:
        fits()
    elif len(sys.argv) == 3 and sys.argv[1] == "--classes":
        classes(sys.argv[2])
    elif len(sys.argv) >= 5:
        scan_parts(sys.argv[1:])
    else:
        sys.exit(__doc__)
