"""Time .pgen decoding on one and two threads, as a scan reads it, under each OpenMP wait policy.

A scan reads dosages 41 variants at a time (``hlmm.runner.DOSAGE_READ_VALUES`` at n = 100,000), and
each part goes through numba's parallel kernels, whose OpenMP threads, by default, spin after them.
(When this was found, the reader's own ``negative_to_nan`` was such a kernel; since 8a594e2 each
decoding thread runs it on its own variants, and the scanners' kernels, such as the Wald scan's
class sums of dosages, are the parallel ones.) This times ``PgenSource.read_block`` over
``--variants`` variants of a .pgen in parts of ``--part``, each part followed by a small parallel
numba kernel (``decode_packed`` of one byte per variant, standing in for the scanner's), for
``threads`` = 1 and 2, medians of ``--repeats``, in a fresh process per case:

* ``without numba``: without that kernel (the decoding alone);
* ``OMP_WAIT_POLICY=ACTIVE``: with it, OpenMP threads spinning (libgomp's default);
* ``OMP_WAIT_POLICY=PASSIVE``: with it, as ``import hlmm`` sets by default.

The table in docs/performance.rst ("Dosages: OpenMP threads that wait passively")::

    python benchmarks/bench_omp_wait.py benchmarks/_data/dosages/dos.pgen

(``dos.pgen`` is made by ``benchmarks/bench_dosages.py``.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
from hlmm.io import open_genotypes
from hlmm.io._kernels import decode_packed
path, stub = sys.argv[1], sys.argv[5] == "1"
variants, part, repeats = (int(x) for x in sys.argv[2:5])
packed, who = np.zeros((part, 1), np.uint8), np.arange(4, dtype=np.int64)
decode_packed(packed, who, 4)
src = open_genotypes(path)
rows = np.arange(src.n_samples)
starts = range(0, variants - part + 1, part)
out = {}
for threads in (1, 2, 1, 2):
    src.threads = threads
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for a in starts:
            src.read_block(rows, np.arange(a, a + part))
            if not stub:
                decode_packed(packed, who, 4)
        times.append(time.perf_counter() - t)
    out.setdefault(threads, []).append(float(np.median(times)) / (len(starts) * part) * 1e3)
print(json.dumps(out))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pgen", help="a .pgen of dosages (e.g. bench_dosages.py's dos.pgen)")
    p.add_argument("--variants", type=int, default=4000)
    p.add_argument("--part", type=int, default=41)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    cases = [("without numba", "PASSIVE", "1"), ("OMP_WAIT_POLICY=ACTIVE", "ACTIVE", "0"),
             ("OMP_WAIT_POLICY=PASSIVE", "PASSIVE", "0")]
    print(f"{a.pgen}: {a.variants} variants in parts of {a.part}, medians of {a.repeats}; "
          "ms per variant, two measurements per thread count")
    print(f"{'case':28s}  {'one thread':>16s}  {'two threads':>16s}")
    for label, policy, stub in cases:
        env = dict(os.environ, OMP_WAIT_POLICY=policy)
        res = subprocess.run([sys.executable, "-c", CHILD, a.pgen, str(a.variants), str(a.part), str(a.repeats), stub],
                             env=env, capture_output=True, text=True, check=True)
        t = json.loads(res.stdout)
        one, two = (", ".join(f"{v:.3f}" for v in t[k]) for k in ("1", "2"))
        print(f"{label:28s}  {one:>16s}  {two:>16s}")


if __name__ == "__main__":
    main()
