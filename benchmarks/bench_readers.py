"""Compare readers of .pgen and .bgen dosages on a simulated 100,000-sample dataset.

It makes its own data in ``--workdir`` (skipped when the files exist), with plink2:

* ``hard``: a seeded .bed (hard calls, 1% missing) -> ``plink2 --make-pgen`` and
  ``plink2 --export bgen-1.2 bits=8 ref-first``;
* ``dos``: a seeded VCF with a DS field (dosages with 3 decimals, 1% missing) ->
  ``plink2 --vcf dosage=DS --make-pgen`` and ``--export bgen-1.2 bits=8 ref-first``.

Then, for each dataset, each sample set (all samples; a sorted random half) and each candidate,
it times reading the dosages (float64 expected count of the counted allele, NaN missing) of
blocks of ``--block`` consecutive variants. Candidates run interleaved, in a rotating order,
within one process, so machine noise hits them alike; the median over ``--reps`` blocks is
reported as seconds per block and variants/s. Peak memory is measured separately: one child
process per candidate opens the file and reads ``--mem-blocks`` blocks of all samples, and
reports its peak resident set size (ru_maxrss) and the increase over the same process right
after its imports.

Candidates: pgenlib (through hlmm.io.pgen); for .bgen hlmm.io.bgen (numpy + the standard
library's zlib, and numpy + isal's inflate when isal is installed), cbgen,
bgen-reader and pysnptools' Bgen (the last two pin dask<2025 and pandas<3, so they may live in
another environment: missing packages are reported and skipped).

Example (the table in docs/genotype_formats.rst)::

    PYTHONPATH=. python benchmarks/bench_readers.py --workdir /tmp/bench_readers
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np


def _import_hlmm_io() -> None:
    """Make ``hlmm.io.pgen``/``hlmm.io.bgen`` importable while ``hlmm/io`` is not yet a package."""
    import hlmm
    import hlmm.io

    if not hasattr(hlmm.io, "__path__"):
        hlmm.io.__path__ = [os.path.join(os.path.dirname(hlmm.__file__), "io")]


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def _run(cmd: list[str], cwd: Path) -> None:
    print("  $", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def make_data(work: Path, n: int, m_hard: int, m_dos: int, seed: int) -> None:
    """Write hard.{bed,pgen,bgen} and dos.{pgen,bgen} (+ companions) under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if not (work / "hard.bed").exists():
        with open(work / "hard.fam", "w") as f:
            f.write("".join(f"F{i} I{i} 0 0 {1 + i % 2} -9\n" for i in range(n)))
        with open(work / "hard.bim", "w") as f:
            f.write("".join(f"1\tv{j}\t0\t{1000 + 10 * j}\tA\tG\n" for j in range(m_hard)))
        code = np.array([0b11, 0b10, 0b00], np.uint8)
        nb = (n + 3) // 4
        with open(work / "hard.bed", "wb") as f:
            f.write(bytes([0x6C, 0x1B, 0x01]))
            for j0 in range(0, m_hard, 256):
                k = min(256, m_hard - j0)
                c = code[rng.binomial(2, rng.uniform(0.05, 0.5, size=(k, 1)), size=(k, n))]
                c[rng.random((k, n)) < 0.01] = 0b01
                pad = np.zeros((k, 4 * nb), np.uint8)
                pad[:, :n] = c
                q = pad.reshape(k, nb, 4)
                f.write((q[:, :, 0] | q[:, :, 1] << 2 | q[:, :, 2] << 4 | q[:, :, 3] << 6).astype(np.uint8).tobytes())
    if not (work / "hard.pgen").exists():
        _run(["plink2", "--bfile", "hard", "--make-pgen", "--threads", "1", "--out", "hard"], work)
    if not (work / "hard.bgen").exists():
        _run(["plink2", "--bfile", "hard", "--export", "bgen-1.2", "bits=8", "ref-first", "--threads", "1",
              "--out", "hard"], work)
    if not (work / "dos.pgen").exists():
        table = np.array([f"{k / 1000:.3f}" for k in range(2001)] + ["."])
        with open(work / "dos.vcf", "w") as f:
            f.write('##fileformat=VCFv4.2\n##contig=<ID=1>\n'
                    '##FORMAT=<ID=DS,Number=A,Type=Float,Description="ALT dosage">\n')
            f.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
                    + "\t".join(f"S{i}" for i in range(n)) + "\n")
            for j in range(m_dos):
                p = rng.uniform(0.05, 0.5)
                ds = np.clip(rng.binomial(2, p, n) + rng.normal(0, 0.15, n), 0, 2)
                idx = np.rint(ds * 1000).astype(np.int64)
                idx[rng.random(n) < 0.01] = 2001
                f.write(f"1\t{1000 + 10 * j}\td{j}\tA\tG\t.\t.\t.\tDS\t" + "\t".join(table[idx]) + "\n")
        _run(["plink2", "--vcf", "dos.vcf", "dosage=DS", "--double-id", "--make-pgen", "--threads", "2",
              "--out", "dos"], work)
        (work / "dos.vcf").unlink()
    if not (work / "dos.bgen").exists():
        _run(["plink2", "--pfile", "dos", "--export", "bgen-1.2", "bits=8", "ref-first", "--threads", "1",
              "--out", "dos"], work)


# ----------------------------------------------------------------------------------------------
# Candidates: open(path_prefix) -> object with read(rows, start, stop) -> float64 (b, k)
# ----------------------------------------------------------------------------------------------
class HlmmPgen:
    label = "pgenlib (hlmm.io.pgen)"
    ext = "pgen"

    def __init__(self, prefix: str) -> None:
        _import_hlmm_io()
        from hlmm.io.pgen import open_pgen

        self.src = open_pgen(prefix + ".pgen")

    def read(self, rows, start, stop):
        return self.src.read_dosages(rows, start, stop)


class HlmmBgen:
    label = "numpy+zlib (hlmm.io.bgen)"
    ext = "bgen"

    def __init__(self, prefix: str) -> None:
        _import_hlmm_io()
        from hlmm.io.bgen import open_bgen

        self.src = open_bgen(prefix + ".bgen", prefix + ".sample")
        self.src._inflate = zlib.decompress  # the standard library's, whether or not isal is installed

    def read(self, rows, start, stop):
        return self.src.read_dosages(rows, start, stop)


class HlmmBgenIsal(HlmmBgen):
    label = "numpy+isal (hlmm.io.bgen)"

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        from isal.isal_zlib import decompress

        self.src._inflate = decompress


class Cbgen:
    label = "cbgen"
    ext = "bgen"

    def __init__(self, prefix: str) -> None:
        import cbgen

        self.bgen = cbgen.bgen_file(prefix + ".bgen")
        self.tmp = tempfile.TemporaryDirectory()
        meta = os.path.join(self.tmp.name, "x.metafile")
        self.bgen.create_metafile(meta, verbose=False)
        mf = cbgen.bgen_metafile(meta)
        self.offset = np.concatenate([mf.read_partition(i).variants.offset for i in range(mf.npartitions)])
        self.n = self.bgen.nsamples

    def read(self, rows, start, stop):
        out = np.empty((stop - start, len(rows)))
        full = len(rows) == self.n
        for i, j in enumerate(range(start, stop)):
            p = self.bgen.read_probability(self.offset[j])
            if not full:
                p = p[rows]
            out[i] = p[:, 1] + 2 * p[:, 2]
        return out


class BgenReader:
    label = "bgen-reader"
    ext = "bgen"

    def __init__(self, prefix: str) -> None:
        from bgen_reader import open_bgen

        self.bgen = open_bgen(prefix + ".bgen", samples_filepath=prefix + ".sample", verbose=False)
        self.n = self.bgen.nsamples

    def read(self, rows, start, stop):
        idx = np.s_[:, start:stop] if len(rows) == self.n else np.s_[rows, start:stop]
        p = self.bgen.read(idx, dtype=np.float64)  # (k, b, 3)
        return (p[:, :, 1] + 2 * p[:, :, 2]).T


class PysnptoolsBgen:
    label = "pysnptools Bgen"
    ext = "bgen"

    def __init__(self, prefix: str) -> None:
        from pysnptools.distreader import Bgen

        self.bgen = Bgen(prefix + ".bgen", sample=prefix + ".sample")
        self.n = self.bgen.iid_count

    def read(self, rows, start, stop):
        sel = self.bgen[:, start:stop] if len(rows) == self.n else self.bgen[rows, start:stop]
        p = sel.read(dtype=np.float64, view_ok=True).val  # (k, b, 3)
        return (p[:, :, 1] + 2 * p[:, :, 2]).T


MODULES = {"HlmmPgen": "pgenlib", "HlmmBgen": "zlib", "HlmmBgenIsal": "isal.isal_zlib", "Cbgen": "cbgen",
           "BgenReader": "bgen_reader", "PysnptoolsBgen": "pysnptools.distreader"}
CANDIDATES = {"pgen": [HlmmPgen], "bgen": [HlmmBgen, HlmmBgenIsal, Cbgen, BgenReader, PysnptoolsBgen]}
ALL = {c.__name__: c for cs in CANDIDATES.values() for c in cs}


def _version(cls) -> str:
    from importlib.metadata import PackageNotFoundError, version

    pkg = {"HlmmPgen": "pgenlib", "HlmmBgen": "numpy", "HlmmBgenIsal": "isal", "Cbgen": "cbgen",
           "BgenReader": "bgen-reader", "PysnptoolsBgen": "pysnptools"}[cls.__name__]
    try:
        return f"{pkg} {version(pkg)}"
    except PackageNotFoundError:
        return f"{pkg} (not installed)"


# ----------------------------------------------------------------------------------------------
def child(name: str, prefix: str, block: int, blocks: int) -> None:
    """Open with one candidate, read ``blocks`` blocks of all samples, print peak RSS as JSON."""
    cls = ALL[name]
    if cls in (HlmmPgen, HlmmBgen, HlmmBgenIsal):
        _import_hlmm_io()
        import hlmm.io.bgen  # noqa: F401
        import hlmm.io.pgen  # noqa: F401
    else:
        __import__(MODULES[name])
    base = _memory_kb()[0]
    reader = cls(prefix)
    n = _nsamples(prefix)
    rows = np.arange(n)
    for b in range(blocks):
        reader.read(rows, b * block, (b + 1) * block)
    peak = _memory_kb()[1]
    print(json.dumps({"peak_mb": peak / 1024, "delta_mb": (peak - base) / 1024}))


def _memory_kb() -> tuple[int, int]:
    """(current, peak) resident set size in KiB of this process.

    Linux's ru_maxrss keeps the parent's peak across fork+exec, so /proc/self/status (VmRSS,
    VmHWM) is used where it exists.
    """
    try:
        with open("/proc/self/status") as f:
            vals = dict(line.split(":", 1) for line in f)
        return int(vals["VmRSS"].split()[0]), int(vals["VmHWM"].split()[0])
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak


def _nsamples(prefix: str) -> int:
    with open(prefix + ".psam" if os.path.exists(prefix + ".psam") else prefix + ".fam") as f:
        return sum(1 for line in f if not line.startswith("#"))


def _nvariants(prefix: str) -> int:
    with open(prefix + ".pvar") as f:
        return sum(1 for line in f if not line.startswith("#"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True, type=Path, help="where the simulated files go (reused if present)")
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--variants", type=int, default=2048, help="variants of the hard-call dataset")
    ap.add_argument("--dosage-variants", type=int, default=1024, help="variants of the dosage dataset")
    ap.add_argument("--block", type=int, default=512, help="variants per read")
    ap.add_argument("--reps", type=int, default=5, help="blocks timed per candidate and setting")
    ap.add_argument("--mem-blocks", type=int, default=2, help="blocks read by each memory-measuring child")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="comma-separated candidate class names, e.g. HlmmPgen,HlmmBgen (default: all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.prefix, args.block, args.mem_blocks)
        return

    work = args.workdir
    print(f"# data in {work}", flush=True)
    make_data(work, args.samples, args.variants, args.dosage_variants, args.seed)
    for f in sorted(work.iterdir()):
        if f.suffix in (".bed", ".pgen", ".bgen", ".pvar", ".psam", ".sample"):
            print(f"  {f.name:12s} {f.stat().st_size / 2**20:9.1f} MiB")

    available = []
    for classes in CANDIDATES.values():
        for cls in classes:
            if args.only and cls.__name__ not in args.only.split(","):
                continue
            try:
                __import__(MODULES[cls.__name__])
                available.append(cls)
            except ImportError as e:
                print(f"# skipping {cls.label}: {e}")
    rng = np.random.default_rng(0)
    n = args.samples
    half = np.sort(rng.choice(n, n // 2, replace=False)).astype(np.int64)
    row_sets = {"all": np.arange(n, dtype=np.int64), "half": half}

    results = []
    for data in ("hard", "dos"):
        prefix = str(work / data)
        m = _nvariants(prefix)
        readers = {}
        for cls in available:
            t0 = time.perf_counter()
            readers[cls] = cls(prefix)
            results.append({"data": data, "cand": cls, "rows": "open", "t": time.perf_counter() - t0})
        # agreement with hlmm's reader on one block (bgen) -- a sanity check, not a timing
        ref = readers.get(HlmmBgen)
        if ref is not None:
            want = ref.read(half, 0, min(64, m))
            for cls, r in readers.items():
                if cls.ext == "bgen" and cls is not HlmmBgen:  # includes the isal variant
                    got = r.read(half, 0, min(64, m))
                    same_nan = np.array_equal(np.isnan(got), np.isnan(want))
                    diff = np.nanmax(np.abs(got - want))
                    print(f"# {data}: {cls.label} vs hlmm.io.bgen: same missing {same_nan}, max |diff| {diff:.2e}")
        times = {(cls, rs): [] for cls in available for rs in row_sets}
        order = list(available)
        for rep in range(args.reps):
            start = (rep * args.block) % max(1, m - args.block + 1)
            stop = min(m, start + args.block)
            for rs, rows in row_sets.items():
                order = order[1:] + order[:1]  # rotate so no candidate always runs first
                for cls in order:
                    t0 = time.perf_counter()
                    readers[cls].read(rows, start, stop)
                    times[(cls, rs)].append((time.perf_counter() - t0, stop - start))
        for (cls, rs), ts in times.items():
            med = statistics.median(t for t, _ in ts)
            results.append({"data": data, "cand": cls, "rows": rs, "t": med, "vps": ts[0][1] / med})
        del readers

    mem = {}
    for data in ("hard", "dos"):
        for cls in available:
            out = subprocess.run([sys.executable, __file__, "--workdir", str(work), "--child", cls.__name__,
                                  "--prefix", str(work / data), "--block", str(args.block),
                                  "--mem-blocks", str(args.mem_blocks)], capture_output=True, text=True)
            mem[(data, cls)] = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None

    print()
    print(f"n = {n} samples, blocks of {args.block} variants, median of {args.reps} blocks; "
          f"'half' = {len(half)} sorted random samples; memory: {args.mem_blocks} blocks of all samples")
    head = (f"{'data':5s} {'format':6s} {'reader':28s} {'version':22s} {'open s':>7s} {'all: s/blk':>10s} "
            f"{'var/s':>7s} {'half: s/blk':>11s} {'var/s':>7s} {'peak MB':>8s} {'+MB':>7s}")
    print(head)
    print("-" * len(head))
    for data in ("hard", "dos"):
        for cls in available:
            r = {x["rows"]: x for x in results if x["data"] == data and x["cand"] is cls}
            mm = mem[(data, cls)]
            mtxt = f"{mm['peak_mb']:8.0f} {mm['delta_mb']:7.0f}" if mm else f"{'failed':>8s} {'':7s}"
            print(f"{data:5s} {cls.ext:6s} {cls.label:28s} {_version(cls):22s} {r['open']['t']:7.2f} "
                  f"{r['all']['t']:10.3f} {r['all']['vps']:7.0f} {r['half']['t']:11.3f} {r['half']['vps']:7.0f} "
                  f"{mtxt}")


if __name__ == "__main__":
    main()
