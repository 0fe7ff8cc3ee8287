"""Relatedness and chrX: calibration with and without LOCO predictions and sex, and the cost of --pred.

Three parts, as whole ``hlmm_chr`` processes:

``families``
    Sibships with a polygenic trait (``simulate_families.py``: families of sibs, 21 chromosomes,
    h2 0.6) and null test variants on chromosome 1, scanned without predictions, with the true
    LOCO genetic values as ``--pred`` (covariate and ``--pred_offset``), and with regenie step 1's
    predictions if ``--regenie_pred`` names its ``_pred.list`` (made from the same ``geno.bed``
    and ``pheno.txt``).
``chrx``
    Unrelated individuals, null variants on chrX (males haploid, coded 0/2 as PLINK stores
    them) and on chromosome 1, sex in the .fam, a trait whose residual SD is 1.5 in males and 1.0
    in females and no variant effect: scanned by default (sex in the mean and variance models on
    X) and with ``--no_x_sex``.
``speed``
    The marginal time per variant of the default scan with and without ``--pred`` (LOCO predictions
    of random values for every chromosome) on n individuals and two chromosomes, interleaved runs.

For each scan: λGC of ``add_t²`` and of ``var_pval_robust`` (the variance test that is read), with
the 95% interval of a median's λGC at that many variants. Example (the tables of docs/relatedness.rst)::

    python benchmarks/calibration_relatedness.py --families 4000 --sibs 4 --regenie_pred STEP1_pred.list \\
        --workdir benchmarks/_data/relatedness --parts families chrx speed
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from hlmm.io import BedWriter
from hlmm.results import read_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_original import run_once  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MEDIAN = float(stats.chi2.median(1))
DENSITY = float(stats.chi2.pdf(MEDIAN, 1))


def lambdas(prefix: Path) -> dict:
    res = read_models(f"{prefix}.models.gz")
    add = res["add_t"] ** 2
    var = stats.chi2.isf(10.0 ** -res["var_pval_robust"], 1)
    ok = np.isfinite(add) & np.isfinite(var)
    half = 1.96 / (2 * np.sqrt(ok.sum()) * DENSITY) / MEDIAN
    return {"m": int(ok.sum()), "lambda_add": float(np.median(add[ok]) / MEDIAN),
            "lambda_var": float(np.median(var[ok]) / MEDIAN), "half_width": float(half)}


def hlmm_chr(*argv) -> None:
    subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), *map(str, argv), "--quiet"], check=True)


def families(args) -> list:
    d = args.workdir / "families"
    if not (d / "test.bed").exists():
        subprocess.run([sys.executable, str(HERE / "simulate_families.py"), "--families", str(args.families), "--sibs",
                        str(args.sibs), "--chromosomes", "21", "--snps-per-chr", "500", "--h2", "0.6", "--test-snps",
                        str(args.test_snps), "--seed", str(args.seed), "--out", str(d)], check=True)
    m = sum(1 for _ in open(d / "test.bim"))
    runs = [("no predictions", []), ("true LOCO, --pred", ["--pred", d / "true_pred.list"]),
            ("true LOCO, --pred_offset", ["--pred", d / "true_pred.list", "--pred_offset"])]
    if args.regenie_pred:
        runs.append(("regenie step 1, --pred", ["--pred", args.regenie_pred]))
    out = []
    for label, extra in runs:
        prefix = d / f"out_{len(out)}"
        hlmm_chr(d / "test.bed", 0, m, d / "pheno.txt", prefix, *extra)
        out.append({"part": "families", "scan": label, **lambdas(prefix)})
        print(out[-1], flush=True)
    return out


def chrx(args) -> list:
    d = args.workdir / "chrx"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    n, m = args.n, args.m
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    sex = rng.choice([1, 2], n)
    male = sex == 1
    with BedWriter(str(d / "g"), ids) as w:
        for chrom in ("1", "X"):
            for j0 in range(0, m, 500):
                b = min(500, m - j0)
                p = rng.uniform(0.05, 0.5, b)
                g = rng.binomial(2, p, (n, b)).astype(float)
                if chrom == "X":
                    g[male] = 2 * rng.binomial(1, p, (male.sum(), b))  # haploid males, coded 0/2
                w.write(g, chrom=[chrom] * b, snp=[f"{chrom}_{j0 + j}" for j in range(b)],
                        pos=[1000 * (j0 + j + 1) for j in range(b)])
    fam = (d / "g.fam").read_text().splitlines()
    (d / "g.fam").write_text("".join(" ".join(line.split()[:4] + [str(s), "-9"]) + "\n" for line, s in zip(fam, sex)))
    y = 0.5 * male + rng.standard_normal(n) * np.where(male, 1.5, 1.0)
    (d / "pheno.txt").write_text("".join(f"f{i} i{i} {v:.8g}\n" for i, v in enumerate(y)))
    out = []
    for label, chrom, extra in (("chrX, default (sex in mean and variance)", "X", []),
                                ("chrX, --no_x_sex", "X", ["--no_x_sex"]),
                                ("chromosome 1, default", "1", [])):
        prefix = d / f"out_{len(out)}"
        hlmm_chr(d / "g.bed", 0, 2 * m, d / "pheno.txt", prefix, "--chr", chrom, *extra)
        out.append({"part": "chrx", "scan": label, **lambdas(prefix)})
        print(out[-1], flush=True)
    return out


def speed(args) -> list:
    d = args.workdir / "speed"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    n, k0, k1 = args.speed_n, 1000, 1000 + args.speed_k
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    if not (d / "g.bed").exists():
        with BedWriter(str(d / "g"), ids) as w:
            for j0 in range(0, k1, 500):
                b = min(500, k1 - j0)
                w.write(rng.binomial(2, rng.uniform(0.05, 0.5, b), (n, b)).astype(float),
                        chrom=["1" if j0 + b <= k1 // 2 else "2"] * b, pos=[1000 * (j0 + j + 1) for j in range(b)])
        (d / "pheno.txt").write_text("FID IID y\n" + "".join(f"f{i} i{i} {v:.8g}\n"
                                                             for i, v in enumerate(rng.standard_normal(n))))
        loco = rng.normal(0, 0.2, (23, n))
        (d / "y.loco").write_text("FID_IID " + " ".join(f"f{i}_i{i}" for i in range(n)) + "\n" + "".join(
            f"{c + 1} " + " ".join(f"{v:.6g}" for v in loco[c]) + "\n" for c in range(23)))
        (d / "pred.list").write_text(f"y {d / 'y.loco'}\n")
    walls = {(label, k): [] for label in ("without --pred", "with --pred") for k in (k0, k1)}
    for _ in range(args.repeats):
        for k in (k0, k1):
            for label, extra in (("without --pred", []), ("with --pred", ["--pred", str(d / "pred.list")])):
                cmd = [sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(d / "g.bed"), "0", str(k),
                       str(d / "pheno.txt"), str(d / "o"), "--quiet", *extra]
                walls[label, k].append(run_once(cmd, None, d / "log.txt")[0])
    out = []
    for label in ("without --pred", "with --pred"):
        per = (statistics.median(walls[label, k1]) - statistics.median(walls[label, k0])) / (k1 - k0)
        out.append({"part": "speed", "scan": label, "n": n, "ms_per_variant": 1e3 * per})
    out.append({"part": "speed", "scan": "ratio", "ratio": out[1]["ms_per_variant"] / out[0]["ms_per_variant"]})
    print(out, flush=True)
    return out


def rst_table(rows: list, command: str) -> str:
    """The rows as reStructuredText (docs/_relatedness_table.rst)."""
    lines = [f"Measured by ``{command}``; λGC is the median chi-square over its null median, with the",
             "half-width of its 95% interval.", "", ".. list-table::", "   :header-rows: 1", "",
             "   * - data", "     - scan", "     - variants", "     - λGC add", "     - λGC var (``var_pval_robust``)"]
    for r in rows:
        if r["part"] == "speed":
            continue
        lines += [f"   * - {'families' if r['part'] == 'families' else 'unrelated, sex-specific SD'}",
                  f"     - {r['scan']}", f"     - {r['m']:,}", f"     - {r['lambda_add']:.3f} ± {r['half_width']:.3f}",
                  f"     - {r['lambda_var']:.3f} ± {r['half_width']:.3f}"]
    speed = {r["scan"]: r for r in rows if r["part"] == "speed"}
    if speed:
        w, p = speed["without --pred"], speed["with --pred"]
        lines += ["", f"Time per variant at n = {w['n']:,} (default scan, hard calls, two chromosomes, median of"
                  f" interleaved runs): {w['ms_per_variant']:.3f} ms without ``--pred``, {p['ms_per_variant']:.3f} ms"
                  f" with it (ratio {speed['ratio']['ratio']:.2f})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["families", "chrx", "speed"], choices=["families", "chrx", "speed"])
    p.add_argument("--families", type=int, default=4000)
    p.add_argument("--sibs", type=int, default=4)
    p.add_argument("--test_snps", type=int, default=1500, help="null test variants of the families part")
    p.add_argument("--regenie_pred", type=Path, default=None, help="regenie step 1's _pred.list for the families")
    p.add_argument("--n", type=int, default=20_000, help="individuals of the chrX part")
    p.add_argument("--m", type=int, default=5000, help="variants per chromosome of the chrX part")
    p.add_argument("--speed_n", type=int, default=100_000)
    p.add_argument("--speed_k", type=int, default=8000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "relatedness")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--rst", type=Path, default=None, help="write the table (RST) here")
    p.add_argument("--table", type=Path, default=None, help="only write the RST of this JSON to --rst")
    args = p.parse_args(argv)
    command = "python benchmarks/calibration_relatedness.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.table:
        args.rst.write_text(rst_table(json.loads(args.table.read_text()), command))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = []
    for part in args.parts:
        out += {"families": families, "chrx": chrx, "speed": speed}[part](args)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1, default=str))
    if args.rst:
        args.rst.write_text(rst_table(out, command))


if __name__ == "__main__":
    main()
