"""Process CPU time per variant of the compiled dosage kernels alone, on the first 256 variants of a
.pgen in memory (float32 dosages, as the scan reads them), and a hash of their results::

    python benchmarks/bench_dosage_kernels.py [--tree PATH] [--pgen FILE] [--repeats R]

Kernels: the class keys and sums (``dosage_classes``) for one trait (columns 1, y, y²) and ten (21
columns), the Newton fits over the one trait's classes (``fit_dosage_classes``) and over the ten
traits' (in one call where the tree's ``fit_dosage_classes`` takes lists of phenotypes, as its
scanner calls it; one call per trait before), the adaptive test's centred sums of the ten traits
(``centred_combinations_sums``, random combinations of each trait's three columns), and the score test's
power sums (``centred_power_sums``) of 3 and 21 columns. Run it with ``--tree`` set to each of two
checkouts, alternately, to compare their builds (the hashes say whether their results are the same
bits); y is a seeded standard normal. docs/performance.rst ("Dosages on a processor without
AVX-512") used R = 9 to 21 on benchmarks/_data/dosages/dos.pgen.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=REPO, help="the checkout whose hlmm to time")
    p.add_argument("--pgen", type=Path, default=REPO / "benchmarks" / "_data" / "dosages" / "dos.pgen")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--variants", type=int, default=256)
    args = p.parse_args()
    sys.path.insert(0, str(args.tree))
    import pgenlib

    from hlmm import _optimize
    from hlmm.engines import _kernels_classes, _kernels_hlm, _kernels_score

    reader = pgenlib.PgenReader(str(args.pgen).encode())
    n, b = reader.get_raw_sample_ct(), args.variants
    dosages = np.empty((b, n), np.float32)
    reader.read_dosages_range(0, b, dosages)
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((n, 10))
    one = np.column_stack([np.ones(n), Y[:, 0], Y[:, 0] ** 2])
    ten = np.ascontiguousarray(np.column_stack([np.ones(n)] + [c for t in range(10) for c in (Y[:, t], Y[:, t] ** 2)]))
    rows = np.arange(n, dtype=np.int64)
    rules = (200, _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL, _optimize.LOCAL_RTOL, _optimize.F_NOISE_RTOL)
    offsets, values, sums, _ = _kernels_classes.dosage_classes(dosages, one, 16384)
    B3, B21 = rng.standard_normal((n, 3)), rng.standard_normal((n, 21))
    # ten traits' sums as the scanner has them (one (K, 3) array per trait, the counts shared), fitted
    # as the tree's scanner fits them: in one call where fit_dosage_classes takes lists, else one each
    offsets10, values10, sums10, _ = _kernels_classes.dosage_classes(
        dosages, ten, 16384, [[0, 1 + 2 * t, 2 + 2 * t] for t in range(10)])
    together = "lists" in (_kernels_hlm.fit_dosage_classes.__doc__ or "")
    # the adaptive test's centred sums of a combination of each trait's three columns
    coefs10 = tuple(rng.standard_normal(3) for _ in range(10))
    counted10 = _kernels_classes.segment_count_sums(offsets10, sums10[0][:, 0], values10)

    def ten_fits():
        if together:
            return _kernels_hlm.fit_dosage_classes(offsets10, values10, sums10[0][:, 0], [s[:, 1] for s in sums10],
                                                   [s[:, 2] for s in sums10], *rules)
        return np.stack([_kernels_hlm.fit_dosage_classes(offsets10, values10, s[:, 0], s[:, 1], s[:, 2], *rules)
                         for s in sums10])

    kernels = {
        "class keys and sums, 3 columns": lambda: _kernels_classes.dosage_classes(dosages, one, 16384, [[0, 1, 2]]),
        "class keys and sums, 21 columns": lambda: _kernels_classes.dosage_classes(
            dosages, ten, 16384, [[0, 1 + 2 * t, 2 + 2 * t] for t in range(10)]),
        "Newton fits, one trait": lambda: _kernels_hlm.fit_dosage_classes(
            offsets, values, sums[:, 0], sums[:, 1], sums[:, 2], *rules),
        "Newton fits, ten traits": lambda: ten_fits(),
        "adaptive sums, ten traits": lambda: _kernels_classes.centred_combinations_sums(
            offsets10, values10, tuple(sums10), coefs10, counted10),
        "power sums, 3 columns": lambda: _kernels_score.centred_power_sums(dosages, rows, B3, np.array([3, 2, 1])),
        "power sums, 21 columns": lambda: _kernels_score.centred_power_sums(dosages, rows, B21,
                                                                            np.array([3, 2, 1] * 7)),
    }
    print(f"{args.tree}: {b} variants of {args.pgen.name}, n = {n:,}, vector lanes "
          f"{_kernels_classes.VECTOR_LANES if hasattr(_kernels_classes, 'VECTOR_LANES') else 8}, "
          f"{args.repeats} repeats")
    for name, kernel in kernels.items():
        times, digest = [], hashlib.sha1()
        for _ in range(args.repeats):
            t0 = time.process_time()
            out = kernel()
            times.append(time.process_time() - t0)
        for a in out if isinstance(out, tuple) else (out,):
            for x in a if isinstance(a, list) else (a,):
                digest.update(np.ascontiguousarray(x).tobytes())
        print(f"  {name:34s} {np.median(times) / b * 1e3:.3f} ms CPU per variant (median), "
              f"result {digest.hexdigest()[:12]}", flush=True)


if __name__ == "__main__":
    main()
