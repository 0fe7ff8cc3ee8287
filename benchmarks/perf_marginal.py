"""Where a whole ``hlmm_chr`` process spends its CPU time, per variant, on every thread: ``perf
record`` of the same command on the first k0 and k1 variants, and the difference of the samples of
each part, so that start-up, imports and the null fits cancel (as ``bench_dosages.py``'s marginal
wall times)::

    python benchmarks/perf_marginal.py benchmarks/_data/dosages/dos.pgen benchmarks/_data/dosages/pheno.txt

The arguments after the genotype and phenotype files are ``hlmm_chr``'s (``--all_phenotypes``,
``--test score``, ...). Each run is repeated ``--repeats`` times (interleaved, k0 then k1); the
samples of each part are the medians over the repeats. A sample is counted in the first part
whose rule matches its shared object and symbol (``perf report --sort dso,symbol``), in this
order:

=====================  ======================================================================
part                   what
=====================  ======================================================================
decode                 pgenlib (.pgen), zlib's or isal's inflate (.bgen)
class keys (C)         ``hlmm_dosage_keys_*``: dosages to grid keys and class indices
class sums (C)         ``hlmm_dosage_sums``, ``hlmm_class_sums``: the per-class sums
Newton (C)             ``hlmm_fit_*``: the HLM's fits over the dosage classes
other C kernels        the rest of ``_classsums.c`` (the score test's power sums, ...)
numba kernels          numba's compiled code (perf names it ``[JIT]`` or an address)
compression            isal's or zlib's deflate (gzip of the results), the rest of zlib and isal
Python                 the interpreter (formatting, the glue between kernels)
numpy, BLAS            numpy's and the BLAS libraries' own code
libc                   memset, memcpy, malloc, ...
kernel                 system calls, page faults, scheduling
other                  the rest
=====================  ======================================================================

and printed in CPU milliseconds per variant with their sum; then the marginal wall, user and
system times per variant of each command run alone, just before its run under perf, and the
cores they kept busy. perf's sampling adds to the samples of the kernel (its own interrupts),
so that the sum under perf exceeds user + system of the runs alone (by about 10%: 0.70 against
0.63 ms per variant for one trait on ``dos.pgen``). Needs ``perf`` (Debian: ``apt-get install linux-perf``) and
permission to use it (root, or ``kernel.perf_event_paranoid`` at most 1).
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PARTS = [  # (part, regex on "dso symbol"), tried in this order
    ("decode", r"^pgenlib|inflate|decompress"),
    ("class keys (C)", r"^_classsums\S* hlmm_dosage_keys"),
    ("class sums (C)", r"^_classsums\S* hlmm_(dosage|class)_sums"),
    ("Newton (C)", r"^_classsums\S* hlmm_fit"),
    ("other C kernels", r"^_classsums"),
    ("numba kernels", r"^\[JIT\]|^\[unknown\]|^perf-\d+\.map"),
    ("compression", r"deflate|compress|^zlib|^igzip|^libz"),
    ("Python", r"^libpython|^python3"),
    ("numpy, BLAS", r"^_multiarray|^_umath|openblas|^libgfortran|^_pocketfft|^lapack"),
    ("libc", r"^libc\.so|^libm\.so|^ld-linux|^libstdc\+\+|^libgomp"),
    ("kernel", r"^\[kernel"),
]


def part_of(dso: str, symbol: str) -> str:
    key = f"{dso} {symbol}"
    for name, pattern in PARTS:
        if re.search(pattern, key):
            return name
    return "other"


def record(cmd: list, data: Path, frequency: int) -> tuple[tuple, dict]:
    """Wall, user and system time of ``cmd`` run alone (perf's own work distorts them), and its
    samples per part under ``perf record``."""
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    subprocess.run(["perf", "record", "-q", "-F", str(frequency), "-o", str(data), "--", *cmd], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,symbol", "-n",
                             "--stdio", "-g", "none"], check=True, capture_output=True, text=True).stdout
    samples: dict = {}
    for line in report.splitlines():
        # "    13.08%          1010  _classsums.cpython-311-x86_64-linux-gnu.so  [.] hlmm_dosage_sums..."
        # (a dso may hold spaces: "[JIT] tid 20320"; trailing "-" columns dropped)
        m = re.match(r"^\s*[\d.]+%\s+(\d+)\s+(.+?)\s+\[.\]\s+(\S+)", line)
        if m:
            part = part_of(m.group(2), m.group(3))
            samples[part] = samples.get(part, 0) + int(m.group(1))
    return (wall, user, system), samples


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("genotypes")
    p.add_argument("phenotypes")
    p.add_argument("--k", type=int, nargs=2, default=(600, 6000), help="the two numbers of variants (k0 k1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frequency", type=int, default=999, help="perf samples per second per thread (default 999)")
    p.add_argument("--tree", type=Path, default=REPO, help="the hlmm checkout to run (default this one)")
    args, rest = p.parse_known_args(argv)
    if shutil.which("perf") is None:
        raise SystemExit("perf not found on PATH (Debian: apt-get install linux-perf)")
    k0, k1 = sorted(args.k)
    runs: dict = {k0: [], k1: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for k in (k0, k1):
                cmd = [sys.executable, str(args.tree / "bin" / "hlmm_chr.py"), args.genotypes, "0", str(k),
                       args.phenotypes, str(Path(tmp) / "out"), "--quiet", *rest]
                runs[k].append(record(cmd, Path(tmp) / "perf.data", args.frequency))
    names = [n for n, _ in PARTS] + ["other"]
    per = {}
    for name in names:
        diffs = [(b[1].get(name, 0) - a[1].get(name, 0)) / args.frequency / (k1 - k0) * 1e3
                 for a, b in zip(runs[k0], runs[k1])]
        per[name] = statistics.median(diffs)
    wall, user, system = (statistics.median([(b[0][t] - a[0][t]) / (k1 - k0) * 1e3 for a, b in zip(runs[k0], runs[k1])])
                          for t in range(3))
    total = sum(per.values())
    print(f"{' '.join([Path(args.genotypes).name, Path(args.phenotypes).name, *rest])}: k = {k0:,} and {k1:,}, "
          f"{args.repeats} repeats, perf at {args.frequency} Hz (wall: each run alone, before its perf run)")
    for name in names:
        print(f"  {name:<18}{per[name]:>8.3f} ms CPU per variant")
    print(f"  {'sum':<18}{total:>8.3f} ms CPU per variant (under perf)")
    print(f"  run alone: wall {wall:.3f}, user {user:.3f}, system {system:.3f} ms per variant; "
          f"{(user + system) / wall if wall > 0 else float('nan'):.2f} cores busy")
    return {"parts": per, "cpu": total, "wall": wall, "user": user, "system": system}


if __name__ == "__main__":
    main()
