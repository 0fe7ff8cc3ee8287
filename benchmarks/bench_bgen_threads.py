"""Time hlmm.io.bgen's threaded reading of an 8-bit zlib .bgen (UK Biobank's layout).

It makes its own data in ``--workdir`` (reused when the files exist): a seeded .bed of hard
calls (allele frequencies uniform in 0.05..0.5, 1% missing) written with
:class:`hlmm.io.BedWriter`, exported with ``plink2 --export bgen-1.2 bits=8 ref-first`` to
``g{n}x{m}.bgen`` + ``.sample`` (the .bed is then deleted).

Then it reads the whole file with :meth:`BgenSource.read_dosages` in blocks of ``--block``
variants (all samples) with each thread count of ``--threads`` and each inflater (isal's, the
default when installed, and the standard library's zlib), ``--repeats`` times, candidates
interleaved in a rotating order within one process so machine noise hits them alike (after one
untimed block each). It prints the median ms per variant, the speedup over one thread with the
same inflater, the CPU time per wall time, and checks that every candidate gave the same bytes
(a hash of each block, taken outside the timing). It also times the inflate alone (every
variant's block, one thread) with isal and zlib, and the peak resident set size of a fresh child
process per thread count that opens the file and reads ``--mem-blocks`` blocks (VmHWM, reset
after the imports), with the increase over that process right after its imports.

``--baseline REV`` adds the reader of ``hlmm/io/bgen.py`` at git revision REV (loaded from
``git show``; one thread, as it was before the threaded reader) to the comparison, with each
inflater.

Example (on a 2-core machine shared with other jobs; ``--baseline`` names the commit before the
threaded reader)::

    PYTHONPATH=. python benchmarks/bench_bgen_threads.py --n 100000 --m 2000 --repeats 3 --baseline HEAD~1
    PYTHONPATH=. python benchmarks/bench_bgen_threads.py --n 20000 --m 2000 --repeats 3 --baseline HEAD~1
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

DEFAULT_WORKDIR = Path(__file__).resolve().parent / "_data" / "bgen_threads"


def make_data(work: Path, n: int, m: int, seed: int) -> str:
    """Write ``g{n}x{m}.bgen`` and ``.sample`` under ``work`` unless they exist; return the prefix."""
    from hlmm.io import BedWriter

    work.mkdir(parents=True, exist_ok=True)
    prefix = work / f"g{n}x{m}"
    if (work / f"{prefix.name}.bgen").exists() and (work / f"{prefix.name}.sample").exists():
        return str(prefix)
    rng = np.random.default_rng(seed)
    print(f"writing {prefix}.bed ({n} samples, {m} variants)", flush=True)
    chunk = max(1, min(m, 20_000_000 // n))
    with BedWriter(str(prefix), [(f"F{i}", f"I{i}") for i in range(n)]) as w:
        for j0 in range(0, m, chunk):
            b = min(chunk, m - j0)
            g = rng.binomial(2, rng.uniform(0.05, 0.5, size=(1, b)), size=(n, b)).astype(np.float64)
            g[rng.random((n, b)) < 0.01] = np.nan
            w.write(g, snp=[f"v{j}" for j in range(j0, j0 + b)], pos=[1000 + 10 * j for j in range(j0, j0 + b)])
    cmd = ["plink2", "--bfile", prefix.name, "--export", "bgen-1.2", "bits=8", "ref-first", "--threads", "2",
           "--out", prefix.name]
    print("  $", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=work, check=True, stdout=subprocess.DEVNULL)
    for ext in ("bed", "bim", "fam", "log"):
        (work / f"{prefix.name}.{ext}").unlink(missing_ok=True)
    return str(prefix)


def _inflaters() -> dict:
    out = {}
    try:
        from isal.isal_zlib import decompress

        out["isal"] = decompress
    except ImportError:
        pass
    out["zlib"] = zlib.decompress
    return out


def _open(prefix: str, threads: int, inflate=None, module=None):
    """A BgenSource of this checkout (or of ``module``, a revision's hlmm.io.bgen: one thread)."""
    if module is None:
        from hlmm.io.bgen import open_bgen

        src = open_bgen(prefix + ".bgen", prefix + ".sample", threads=threads)
    else:  # (revisions since the threaded reader take threads: one, as the comparison says)
        try:
            src = module.open_bgen(prefix + ".bgen", prefix + ".sample", threads=1)
        except TypeError:
            src = module.open_bgen(prefix + ".bgen", prefix + ".sample")
    if inflate is not None:
        src._inflate = inflate
    return src


def load_revision(rev: str):
    """hlmm/io/bgen.py as it was at git revision ``rev``, as a module (it imports today's hlmm.io._base)."""
    root = Path(__file__).resolve().parent.parent
    text = subprocess.run(["git", "show", f"{rev}:hlmm/io/bgen.py"], cwd=root, check=True, capture_output=True,
                          text=True).stdout
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("bgen_at_revision", loader=None))
    module.__file__ = f"{rev}:hlmm/io/bgen.py"
    exec(compile(text, module.__file__, "exec"), module.__dict__)
    return module


def read_pass(src, rows: np.ndarray, block: int, digests: list | None) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) spent in read_dosages over the whole file (hashes of the
    blocks into ``digests``)."""
    m, wall, cpu = len(src.variants), 0.0, 0.0
    for j0 in range(0, m, block):
        t, c = time.perf_counter(), time.process_time()
        d = src.read_dosages(rows, j0, min(m, j0 + block))
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
        if digests is not None:
            digests.append(hashlib.blake2b(d.tobytes(), digest_size=16).hexdigest())
        del d
    return wall, cpu


def time_inflate(prefix: str, inflaters: dict, repeats: int) -> dict:
    """Median ms per variant to inflate every genotype block, one thread, per inflater."""
    src = _open(prefix, 1)
    buf, blocks = src._mm, []
    for pos in src._block:
        (c, d) = np.frombuffer(buf, dtype="<u4", count=2, offset=int(pos)).tolist()
        blocks.append((bytes(buf[pos + 8 : pos + 4 + c]), d))
    src.close()
    times: dict = {k: [] for k in inflaters}
    for r in range(repeats):
        for name in list(inflaters)[r % len(inflaters):] + list(inflaters)[: r % len(inflaters)]:
            f = inflaters[name]
            t = time.perf_counter()
            for data, d in blocks:
                f(data, bufsize=d)
            times[name].append((time.perf_counter() - t) / len(blocks) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def memory_child(prefix: str, threads: int, block: int, n_blocks: int) -> None:
    """(In a child process) print JSON: resident set size after imports, and its peak (VmHWM, reset
    after the imports, which peak higher than a read, where Linux allows) while reading n_blocks blocks."""
    from hlmm.io.bgen import open_bgen

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak to the current RSS
        base, peak_of = _status_kib("VmRSS"), lambda: _status_kib("VmHWM")
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # noqa: E731
    src = open_bgen(prefix + ".bgen", prefix + ".sample", threads=threads)
    rows = np.arange(len(src.samples), dtype=np.int64)
    for k in range(n_blocks):
        j0 = (k * block) % max(1, len(src.variants) - block + 1)
        src.read_dosages(rows, j0, min(len(src.variants), j0 + block))
    src.close()
    print(json.dumps({"base_kib": base, "peak_kib": peak_of()}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--n", type=int, default=100_000, help="individuals")
    ap.add_argument("--m", type=int, default=2_000, help="variants")
    ap.add_argument("--block", type=int, default=256, help="variants per read_dosages call")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the file per candidate (median)")
    ap.add_argument("--mem-blocks", type=int, default=4, help="blocks read by each memory-measuring child")
    ap.add_argument("--zlib-only", action="store_true", help="time the standard library's inflate only")
    ap.add_argument("--baseline", metavar="REV", help="also time hlmm/io/bgen.py of this git revision (one thread)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--_memory", type=int, help=argparse.SUPPRESS)  # internal: the child of the memory step
    ap.add_argument("--_prefix", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._memory is not None:
        memory_child(args._prefix, args._memory, args.block, args.mem_blocks)
        return

    prefix = make_data(args.workdir, args.n, args.m, args.seed)
    inflaters = _inflaters()
    if args.zlib_only:
        inflaters = {"zlib": inflaters["zlib"]}
    print(f"{prefix}.bgen: {os.path.getsize(prefix + '.bgen') / 1e6:.1f} MB, n={args.n}, m={args.m}, "
          f"block={args.block}, CPUs usable={len(os.sched_getaffinity(0))}, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)

    inflate_ms = time_inflate(prefix, inflaters, args.repeats)
    print("inflate alone, one thread: " + ", ".join(f"{k} {v:.3f} ms/variant" for k, v in inflate_ms.items()))

    # candidates: (reader, inflater, threads), reader "now" or the baseline revision
    candidates = [("now", name, t) for name in inflaters for t in args.threads]
    modules = {"now": None}
    if args.baseline:
        modules[args.baseline] = load_revision(args.baseline)
        candidates += [(args.baseline, name, 1) for name in inflaters]
    sources = {c: _open(prefix, c[2], inflaters[c[1]], modules[c[0]]) for c in candidates}
    rows = np.arange(args.n, dtype=np.int64)
    for src in sources.values():  # warm-up, untimed: the pool's threads, the first touch of the process's memory
        src.read_dosages(rows, 0, min(args.m, args.block))
    times: dict = {c: [] for c in candidates}
    digests: dict = {}
    for r in range(args.repeats):
        k = r % len(candidates)
        for c in candidates[k:] + candidates[:k]:
            dig = [] if r == 0 else None
            times[c].append(read_pass(sources[c], rows, args.block, dig))
            if dig is not None:
                digests[c] = dig
    for src in sources.values():
        src.close()
    same = len({tuple(d) for d in digests.values()}) == 1
    print(f"\nread_dosages, blocks of {args.block}, all {args.n} samples, median of {args.repeats} passes "
          f"(every candidate gave the same bytes: {'yes' if same else 'NO'})")
    print("speedup: over this checkout's first thread count with the same inflater"
          + (f"; vs base: over {args.baseline}'s reader (one thread) with the same inflater" if args.baseline else ""))
    print("CPU/wall: CPU seconds of all the process's threads per wall second, about the threads' count when"
          " they are not kept waiting; less when the GIL or other processes hold them")
    print(f"{'reader':>8} {'inflater':>8} {'threads':>7} {'ms/variant':>10} {'speedup':>7} "
          + (f"{'vs base':>7} " if args.baseline else "") + f"{'CPU/wall':>8}  wall per pass (s)")
    for reader, name, t in candidates:
        med = statistics.median(w for w, _ in times[reader, name, t])
        one = statistics.median(w for w, _ in times["now", name, args.threads[0]])
        ratio = statistics.median(c / w for w, c in times[reader, name, t])
        line = f"{reader:>8} {name:>8} {t:>7} {med / args.m * 1e3:>10.3f} {one / med:>7.2f} "
        if args.baseline:
            base = statistics.median(w for w, _ in times[args.baseline, name, 1])
            line += f"{base / med:>7.2f} "
        print(line + f"{ratio:>8.2f}  " + " ".join(f"{w:.2f}" for w, _ in times[reader, name, t]))

    print(f"\npeak RSS of a child that reads {args.mem_blocks} blocks of {args.block} (one block of float64 = "
          f"{args.block * args.n * 8 / 2**20:.0f} MiB)")
    for t in args.threads:
        out = subprocess.run([sys.executable, __file__, "--_memory", str(t), "--_prefix", prefix, "--block",
                              str(args.block), "--mem-blocks", str(args.mem_blocks)],
                             check=True, capture_output=True, text=True).stdout
        mem = json.loads(out.strip().splitlines()[-1])
        print(f"  threads={t}: peak {mem['peak_kib'] / 1024:.0f} MiB while reading, "
              f"{(mem['peak_kib'] - mem['base_kib']) / 1024:.0f} MiB over the process after its imports")
    if not same:
        sys.exit("thread counts gave different dosages")


if __name__ == "__main__":
    main()
