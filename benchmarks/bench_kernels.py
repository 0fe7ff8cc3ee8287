"""Time the compiled sums of genotype blocks at several design widths (columns per individual).

The class sums of dosages (``dosage_classes``: a scatter over the ~9,000 distinct dosages of each
variant) and the score test's power sums (``centred_power_sums``) on one block of imputation-like
dosages (30% of the calls perturbed by N(0, 0.1), on the 1/16384 grid), and the class sums of the
same block's hard calls, packed as in a .bed without missing calls (``class_moments_packed``);
n = 100,000, 256 variants; medians of 5 runs after a warm-up. The figures behind
:func:`hlmm.engines.classes.padded_width` (docs/performance.rst)::

    python benchmarks/bench_kernels.py

Run it in another checkout (``PYTHONPATH=../other python benchmarks/bench_kernels.py``) for the
same kernels before a change.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hlmm.engines import _kernels_classes, _kernels_score


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--b", type=int, default=256)
    p.add_argument("--widths", type=int, nargs="+", default=[3, 4, 21, 24])
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    n, b = args.n, args.b
    g = rng.binomial(2, rng.uniform(0.05, 0.5, b)[:, None], (b, n)).astype(np.float64)
    bits = np.select([g == 2, g == 1], [0, 2], 3).astype(np.uint8)  # .bed codes: 00 two copies, 10 one, 11 none
    bits = np.concatenate([bits, np.full((b, -n % 4), 3, np.uint8)], axis=1)
    packed = (bits[:, 0::4] | bits[:, 1::4] << 2 | bits[:, 2::4] << 4 | bits[:, 3::4] << 6).astype(np.uint8)
    pert = rng.random((b, n)) < 0.3
    g[pert] = np.clip(g[pert] + rng.normal(0, 0.1, pert.sum()), 0, 2)
    D = (np.round(g * 16384) / 16384).astype(np.float32)
    rows = np.arange(n)
    print(f"n = {n:,}, {b} variants; ms per variant (median of 5)")
    for q in args.widths:
        Y = np.ascontiguousarray(rng.standard_normal((n, q)))
        kernels = {"dosage_classes": lambda Y=Y: _kernels_classes.dosage_classes(D, Y, 16384),
                   "centred_power_sums": lambda Y=Y: _kernels_score.centred_power_sums(D, rows, Y),
                   "class_moments_packed": lambda Y=Y: _kernels_classes.class_moments_packed(packed, Y)}
        out = []
        for name, f in kernels.items():
            f()  # compile / warm
            ts = []
            for _ in range(5):
                t = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t)
            out.append(f"{name} {1e3 * np.median(ts) / b:.3f}")
        print(f"  {q:>3} columns: " + ", ".join(out), flush=True)


if __name__ == "__main__":
    main()
