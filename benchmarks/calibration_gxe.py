"""G×E in the heteroskedastic model: calibration, power against least squares, rare variants, speed.

Parts (``--parts``), as whole ``hlmm_chr`` processes on simulated data (seeded):

``null``
    n individuals, m null variants (MAF 0.05-0.5), a covariate x, an exposure E ~ N(0, 1) that
    raises the trait's mean (0.5 E) and its variance (log-variance 0.5 E), no G×E. λGC of the G×E
    test of: hlmm default mode, ``--fit_covariates``, the t5 trait with ``--fit_covariates`` (with and
    without ``--robust``), the score screen (``--test score``; t5 trait with ``--robust``), and least
    squares (``y ~ 1 + x + E + g + g·E``, the model of plink2's ``--glm interaction``)
    with model-based and with sandwich (HC0, GEM's and regenie's default) standard errors.
``power``
    The same with a true G×E on 100 of the variants (effect ``--gxe`` per copy and unit of E): mean
    χ² of the G×E tests over them, hlmm against least squares with sandwich SEs.
``rare``
    Null variants of MAF 0.005-0.02 and a binary exposure of frequency 0.1: λGC and the share at
    p < 0.001 of hlmm's G×E test with model-based and with sandwich (``--robust``) SEs, by minor
    allele count among the exposed.
``speed``
    The marginal time per variant at ``--speed_n`` individuals (hard calls, one phenotype) of the plain
    HLM scan, ``--interaction E`` (default mode), ``--interaction`` with 3 exposures, and
    ``--interaction E --fit_covariates`` (fewer variants), in interleaved runs.

Example (the tables of docs/gxe.rst)::

    python benchmarks/calibration_gxe.py --n 20000 --m 3000 --parts null power rare speed \\
        --workdir benchmarks/_data/gxe --json benchmarks/_data/gxe.json --rst docs/_gxe_table.rst
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

REPO = Path(__file__).resolve().parents[1]
MEDIAN = float(stats.chi2.median(1))


def write_data(d: Path, n: int, m: int, seed: int, maf=(0.05, 0.5), gxe: float = 0.0, causal: int = 0,
               binary: float | None = None) -> np.ndarray:
    """Genotypes, covariates (x, E) and phenotypes (normal and t5 noise); returns the first
    ``causal`` variants' genotypes."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    first = None
    with BedWriter(str(d / "g"), ids) as w:
        for j0 in range(0, m, 500):
            b = min(500, m - j0)
            g = rng.binomial(2, rng.uniform(*maf, b), (n, b)).astype(np.int8)
            if j0 == 0:
                first = g[:, :causal].astype(float)
            w.write(g, snp=[f"v{j0 + j}" for j in range(b)], pos=[1000 * (j0 + j + 1) for j in range(b)])
    x = rng.standard_normal(n)
    E = (rng.random(n) < binary).astype(float) if binary is not None else rng.standard_normal(n)
    (d / "covar.txt").write_text("FID IID x E\n" + "".join(f"f{i} i{i} {a:.8g} {e:.8g}\n" for i, (a, e) in
                                                           enumerate(zip(x, E))))
    signal = 0.0
    if causal:
        gc = first - first.mean(0)
        signal = (gc * E[:, None]).sum(1) * gxe
    sd = np.exp(0.25 * E)
    y = 0.3 * x + 0.5 * E + signal + rng.standard_normal(n) * sd
    y5 = 0.3 * x + 0.5 * E + signal + rng.standard_t(5, n) / np.sqrt(5 / 3) * sd
    ys = 0.3 * x + 0.5 * E + signal + (rng.chisquare(3, n) - 3) / np.sqrt(6) * sd
    (d / "pheno.txt").write_text("FID IID y y_t5 y_chi2\n" + "".join(f"f{i} i{i} {a:.8g} {b:.8g} {c:.8g}\n"
                                                                     for i, (a, b, c) in enumerate(zip(y, y5, ys))))
    return first


def hlmm(d: Path, m: int, name: str, *extra) -> dict:
    cmd = [sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(d / "g.bed"), "0", str(m), str(d / "pheno.txt"),
           str(d / name), "--quiet", "--mean_covar", str(d / "covar.txt"), "--var_covar", str(d / "covar.txt"),
           "--interaction", "E", "--min_maf", "0.001", *map(str, extra)]
    subprocess.run(cmd, check=True)
    return read_models(f"{d / name}.models.gz")


def least_squares(d: Path, m: int, phen: int = 0) -> dict:
    """OLS of y ~ 1 + x + E + g + g*E per variant (g centred over the calls): the g*E t-statistics with
    model-based and with HC0 sandwich standard errors."""
    from hlmm.io import open_bed

    cov = np.loadtxt(d / "covar.txt", skiprows=1, usecols=(2, 3))
    y = np.loadtxt(d / "pheno.txt", skiprows=1, usecols=(2 + phen,))
    src = open_bed(str(d / "g.bed"))
    n = len(y)
    Z = np.column_stack([np.ones(n), cov])
    out = {"t_model": np.full(m, np.nan), "t_sandwich": np.full(m, np.nan), "mac_exposed": np.zeros(m)}
    for j0 in range(0, m, 256):
        G = src.read_dosages(np.arange(n), j0, min(j0 + 256, m)).T
        for k in range(G.shape[1]):
            g = G[:, k]
            ok = ~np.isnan(g)
            gc = g[ok] - g[ok].mean()
            X = np.column_stack([Z[ok], gc, gc * cov[ok, 1]])
            XtX = X.T @ X
            try:
                inv = np.linalg.inv(XtX)
            except np.linalg.LinAlgError:
                continue
            beta = inv @ (X.T @ y[ok])
            r = y[ok] - X @ beta
            s2 = r @ r / (ok.sum() - X.shape[1])
            meat = (X * r[:, None] ** 2).T @ X
            sand = inv @ meat @ inv
            out["t_model"][j0 + k] = beta[-1] / np.sqrt(s2 * inv[-1, -1])
            out["t_sandwich"][j0 + k] = beta[-1] / np.sqrt(sand[-1, -1])
            out["mac_exposed"][j0 + k] = min(g[ok][cov[ok, 1] > 0.5].sum(), (2 - g[ok][cov[ok, 1] > 0.5]).sum())
    return out


def lam(chi2) -> float:
    chi2 = np.asarray(chi2, float)
    chi2 = chi2[np.isfinite(chi2)]
    return float(np.median(chi2) / MEDIAN)


def null_part(args) -> list:
    d = args.workdir / "null"
    write_data(d, args.n, args.m, args.seed)
    rows = []
    for label, name, extra in (("hlmm, default mode", "default", []),
                               ("hlmm, --fit_covariates", "fitcov", ["--fit_covariates"]),
                               ("hlmm, t5 trait, --fit_covariates --robust", "t5robust",
                                ["--fit_covariates", "--robust", "--phen_index", "2"]),
                               ("hlmm, t5 trait, --fit_covariates", "t5model", ["--fit_covariates", "--phen_index",
                                                                                 "2"]),
                               ("hlmm, χ²₃ trait, default mode", "chi2", ["--phen_index", "3"]),
                               ("hlmm, score screen (--test score)", "score", ["--test", "score"]),
                               ("hlmm, t5 trait, score screen --robust", "t5score",
                                ["--test", "score", "--robust", "--phen_index", "2"])):
        res = hlmm(d, args.m, name, *extra)
        # the first stage picks variants by their variance test: is it independent of the G×E test?
        ok = np.isfinite(res["gxe_t"]) & np.isfinite(res["var_pval_robust"])
        cor = stats.spearmanr(res["var_pval_robust"][ok], res["gxe_t"][ok] ** 2)[0]
        top = ok & (res["var_pval_robust"] >= np.quantile(res["var_pval_robust"][ok], 0.9))
        rows.append({"part": "null", "test": label, "m": int(ok.sum()), "lambda": lam(res["gxe_t"] ** 2),
                     "lambda_top10_var": lam(res["gxe_t"][top] ** 2), "spearman_var_gxe": float(cor)})
        print(rows[-1], flush=True)
    ls = least_squares(d, args.m)
    for key, label in (("t_model", "least squares, model-based SE"), ("t_sandwich", "least squares, sandwich SE")):
        rows.append({"part": "null", "test": label, "m": int(np.isfinite(ls[key]).sum()), "lambda": lam(ls[key] ** 2),
                     "lambda_top10_var": float("nan"), "spearman_var_gxe": float("nan")})
        print(rows[-1], flush=True)
    return rows


def power_part(args) -> list:
    d = args.workdir / "power"
    write_data(d, args.n, args.m, args.seed + 1, gxe=args.gxe, causal=100)
    res = hlmm(d, args.m, "default")
    fc = hlmm(d, args.m, "fitcov", "--fit_covariates")
    ls = least_squares(d, args.m)
    rows = [{"part": "power", "test": "hlmm, default mode", "mean_chi2": float(np.nanmean(res["gxe_t"][:100] ** 2))},
            {"part": "power", "test": "hlmm, --fit_covariates", "mean_chi2": float(np.nanmean(fc["gxe_t"][:100] ** 2))},
            {"part": "power", "test": "least squares, sandwich SE",
             "mean_chi2": float(np.nanmean(ls["t_sandwich"][:100] ** 2))},
            {"part": "power", "test": "least squares, model-based SE",
             "mean_chi2": float(np.nanmean(ls["t_model"][:100] ** 2))}]
    print(rows, flush=True)
    return rows


def rare_part(args) -> list:
    d = args.workdir / "rare"
    write_data(d, args.n, args.m, args.seed + 2, maf=(0.005, 0.02), binary=0.1)
    rows = []
    ls = least_squares(d, args.m)
    mac = ls["mac_exposed"]
    for label, name, extra in (("hlmm, model-based SE", "model", ["--fit_covariates"]),
                               ("hlmm, --robust (model-based SEs below 50 minor alleles among the exposed)", "robust",
                                ["--fit_covariates", "--robust"])):
        res = hlmm(d, args.m, name, *extra)
        t2 = res["gxe_t"] ** 2
        for lo, hi in ((0, 20), (20, 50), (50, 10**9)):
            sel = (mac >= lo) & (mac < hi) & np.isfinite(t2)
            rows.append({"part": "rare", "test": label, "mac_exposed": f"{lo}-{hi if hi < 10**9 else ''}",
                         "m": int(sel.sum()), "lambda": lam(t2[sel]),
                         "pct_p_1e-3": 100 * float(np.mean(t2[sel] > stats.chi2.isf(1e-3, 1)))})
            print(rows[-1], flush=True)
    return rows


def speed_part(args) -> list:
    d = args.workdir / "speed"
    n, k0, k1 = args.speed_n, 500, 500 + args.speed_k
    if not (d / "g.bed").exists():
        write_data(d, n, k1, args.seed + 3)
        cov = np.loadtxt(d / "covar.txt", skiprows=1, usecols=(2, 3))
        rng = np.random.default_rng(args.seed)
        (d / "covar3.txt").write_text("FID IID x E E2 E3\n" + "".join(
            f"f{i} i{i} {a:.8g} {e:.8g} {rng.standard_normal():.8g} {rng.standard_normal():.8g}\n"
            for i, (a, e) in enumerate(cov)))
    modes = {"plain HLM": [], "--interaction E": ["--interaction", "E"],
             "--interaction E,E2,E3": ["--interaction", "E,E2,E3"],
             "--interaction E --fit_covariates": ["--interaction", "E", "--fit_covariates"]}
    walls = {(mode, k): [] for mode in modes for k in (k0, k1)}
    for _ in range(args.repeats):
        for k in (k0, k1):
            for mode, extra in modes.items():
                kk = k if "fit_covariates" not in mode else k0 + (k - k0) // 20
                covar = str(d / "covar3.txt") if "E2" in mode else str(d / "covar.txt")
                cmd = [sys.executable, str(REPO / "bin" / "hlmm_chr.py"), str(d / "g.bed"), "0", str(kk),
                       str(d / "pheno.txt"), str(d / "o"), "--quiet", "--mean_covar", covar, "--var_covar",
                       str(d / "covar.txt"), *extra]
                walls[mode, k].append(run_once(cmd, None, d / "log.txt")[0])
    rows = []
    for mode in modes:
        dk = (args.speed_k if "fit_covariates" not in mode else args.speed_k // 20)
        per = (statistics.median(walls[mode, k1]) - statistics.median(walls[mode, k0])) / dk
        rows.append({"part": "speed", "test": mode, "n": n, "ms_per_variant": 1e3 * per, "variants_per_s": 1 / per})
        print(rows[-1], flush=True)
    return rows


def rst(rows: list) -> str:
    commands = list(dict.fromkeys(r["command"] for r in rows))
    out = ["Measured by " + "; ".join(f"``{c}``" for c in commands) + " (each part from its own run).", ""]
    parts = {"null": ("λGC of the G×E test over null variants (E raises mean and variance; no G×E); its λGC"
                      " over the tenth of them with the largest var_pval_robust (the first stage's pick), and the"
                      " rank correlation of var_pval_robust and gxe_t²",
                      ["test", "m", "lambda", "lambda_top10_var", "spearman_var_gxe"]),
             "power": ("Mean χ² of the G×E test over 100 variants with a G×E effect", ["test", "mean_chi2"]),
             "rare": ("Rare variants (MAF 0.005-0.02), binary exposure of frequency 0.1: the G×E test by minor"
                      " allele count among the exposed", ["test", "mac_exposed", "m", "lambda", "pct_p_1e-3"]),
             "speed": ("Time per variant (hard calls, one phenotype, interleaved runs)",
                       ["test", "n", "ms_per_variant", "variants_per_s"])}
    for part, (title, cols) in parts.items():
        sel = [r for r in rows if r["part"] == part]
        if not sel:
            continue
        out += [title + ":", "", ".. list-table::", "   :header-rows: 1", ""]
        out += ["   * - " + cols[0]] + [f"     - {c}" for c in cols[1:]]
        for r in sel:
            vals = ["—" if isinstance(r[c], float) and not np.isfinite(r[c]) else f"{r[c]:.3f}"
                    if isinstance(r[c], float) else f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols]
            out += ["   * - " + vals[0]] + [f"     - {v}" for v in vals[1:]]
        out.append("")
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["null", "power", "rare", "speed"])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--m", type=int, default=3000)
    p.add_argument("--gxe", type=float, default=0.05)
    p.add_argument("--speed_n", type=int, default=100_000)
    p.add_argument("--speed_k", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "gxe")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--rst", type=Path, default=None)
    args = p.parse_args(argv)
    command = "python benchmarks/calibration_gxe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = []  # an existing --json keeps the rows of the parts not run now
    if args.json and args.json.exists():
        rows = [r for r in json.loads(args.json.read_text()) if r["part"] not in args.parts]
    for part in args.parts:
        new = {"null": null_part, "power": power_part, "rare": rare_part, "speed": speed_part}[part](args)
        rows += [dict(r, command=command) for r in new]
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        if args.rst:
            args.rst.write_text(rst(rows))


if __name__ == "__main__":
    main()
