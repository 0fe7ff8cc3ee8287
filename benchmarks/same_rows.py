"""Whether two checkouts write the same dosage scans, byte for byte::

    python benchmarks/same_rows.py TREE_A TREE_B [--variants 800] [--data DIR] [--out DIR]

Runs ``bin/hlmm_chr.py`` of each tree (its own ``hlmm``, by ``PYTHONPATH``) on the first
``--variants`` variants of the files that ``bench_dosages.py`` makes in ``--data``, and compares every
file each run writes (gzip members decompressed) with the other tree's:

* 10 traits of ``dos.pgen`` by Wald (``pheno10.txt``, ``--all_phenotypes``);
* the same with three traits 10% missing (their classes' counts differ from the others'), by Wald
  and with ``--robust``;
* the same with every third individual missing from the phenotype file, by Wald and ``--robust``;
* 10 traits of ``dos8.pgen`` by Wald;
* one trait of ``dos.pgen`` and of ``dos.bgen`` (``pheno.txt``).

The two phenotype files with missing values are made from ``pheno10.txt`` in ``--out`` (seeded).
Prints each file that differs and the counts; exits 1 if any differ or a run fails. docs/performance.rst
cites it for changes that keep the rows. For a table that differs only in numbers (the same rows,
columns and text), it prints how many cells differ and the largest relative difference, with its
column, and the largest difference of a t statistic (its estimate's difference in standard errors):
a change of the order of floating-point sums moves the last printed digits only.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def phenotypes(data: Path, out: Path) -> tuple[Path, Path]:
    """``pheno10.txt`` with traits t3, t5 and t7 10% missing, and without every third individual."""
    lines = (data / "pheno10.txt").read_text().splitlines()
    rng = np.random.default_rng(22)
    na, sub = [lines[0]], [lines[0]]
    for i, line in enumerate(lines[1:]):
        fields = line.split()
        for c in (5, 7, 9):  # t3, t5, t7 after FID and IID
            if rng.random() < 0.1:
                fields[c] = "NA"
        na.append(" ".join(fields))
        if i % 3 != 1:
            sub.append(line)
    paths = out / "pheno10_na.txt", out / "pheno10_sub.txt"
    for path, rows in zip(paths, (na, sub)):
        path.write_text("\n".join(rows) + "\n")
    return paths


def read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def numeric_difference(a: bytes, b: bytes) -> tuple[int, float, str, float] | None:
    """Cells that differ, their largest relative difference and its column, and the largest
    difference of a t statistic (``*_t``: in units of its standard error), of two tab-separated
    tables of the same header, shape and text; None if they differ otherwise."""
    ra, rb = a.decode().splitlines(), b.decode().splitlines()
    if len(ra) != len(rb) or not ra or ra[0] != rb[0]:
        return None
    header = ra[0].split("\t")
    cells, worst, where, t_most = 0, 0.0, "", 0.0
    for la, lb in zip(ra[1:], rb[1:]):
        fa, fb = la.split("\t"), lb.split("\t")
        if len(fa) != len(fb):
            return None
        for name, x, y in zip(header, fa, fb):
            if x == y:
                continue
            try:
                u, v = float(x), float(y)
            except ValueError:
                return None
            if np.isnan(u) or np.isnan(v):
                return None
            cells += 1
            if name.endswith("_t"):
                t_most = max(t_most, abs(u - v))
            rel = abs(u - v) / max(abs(u), abs(v))
            if rel > worst:
                worst, where = rel, name
    return cells, worst, where, t_most


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", type=Path, nargs=2, help="the two checkouts")
    p.add_argument("--variants", type=int, default=800)
    p.add_argument("--data", type=Path, default=REPO / "benchmarks" / "_data" / "dosages")
    p.add_argument("--out", type=Path, default=Path("same_rows_out"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    d = args.data
    na, sub = phenotypes(d, args.out)
    ten = ["--all_phenotypes"]
    runs = {
        "d10_w": (d / "dos.pgen", d / "pheno10.txt", ten),
        "d10na_w": (d / "dos.pgen", na, ten),
        "d10na_r": (d / "dos.pgen", na, ten + ["--robust"]),
        "d10s_w": (d / "dos.pgen", sub, ten),
        "d10s_r": (d / "dos.pgen", sub, ten + ["--robust"]),
        "d1_w": (d / "dos.pgen", d / "pheno.txt", []),
        "d8_10_w": (d / "dos8.pgen", d / "pheno10.txt", ten),
        "bg_w": (d / "dos.bgen", d / "pheno.txt", ["--sample", str(d / "dos.sample")]),
    }
    same, differ, failed = 0, 0, 0
    for tag, (geno, pheno, extra) in runs.items():
        written = []
        for k, tree in enumerate(args.trees):
            prefix = args.out / f"{tag}.{k}"
            for old in args.out.glob(f"{tag}.{k}.*"):
                old.unlink()
            env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
            done = subprocess.run([sys.executable, str(tree / "bin" / "hlmm_chr.py"), str(geno), "0",
                                   str(args.variants), str(pheno), str(prefix), *extra, "--quiet"],
                                  env=env, capture_output=True, text=True)
            if done.returncode != 0:
                failed += 1
                print(f"FAILED {tree} {tag}: {done.stderr.strip().splitlines()[-1:]}")
            written.append({f.name[len(prefix.name):]: f for f in args.out.glob(f"{prefix.name}.*")})
        for name in sorted(set(written[0]) | set(written[1])):
            if name in written[0] and name in written[1] and read(written[0][name]) == read(written[1][name]):
                same += 1
            else:
                differ += 1
                both = name in written[0] and name in written[1]
                numbers = numeric_difference(read(written[0][name]), read(written[1][name])) if both else None
                if numbers is None:
                    print(f"DIFFERS {tag}{name}")
                else:
                    print(f"DIFFERS {tag}{name}: {numbers[0]} numbers, largest relative difference "
                          f"{numbers[1]:.2e} ({numbers[2]}), of a t statistic {numbers[3]:.2e}")
    print(f"{same} files the same, {differ} differ, {failed} runs failed ({args.variants} variants)")
    sys.exit(1 if differ or failed else 0)


if __name__ == "__main__":
    main()
