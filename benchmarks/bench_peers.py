"""Variance tests of hlmm_chr side by side with three vQTL peers, on the same simulated data, as whole processes.

The peers:

* **varGWAS** (Lyon et al. 2022; ``--vargwas``: the path to its ``varGWAS`` binary): a Brown-Forsythe-like
  test. Least absolute deviation fit of the trait on the dosage, then a regression of the absolute residuals on
  dummies of the rounded genotype, F-test of the two dummies (``phi_p``). It reads a BGEN file, written here by
  ``plink2 --bfile geno --export bgen-1.2 bits=8 ref-first``, and a CSV phenotype file; it runs with
  ``-t THREADS`` and ``--flip``, so that its effect allele is the .bim's A1, the allele whose copies hlmm counts
  (plink2 writes REF, the .bim's A2, first; varGWAS counts the first allele unless ``--flip``).
* **QUAIL** (Miao et al. 2022; ``--quail``: the directory holding ``Step1_QUAIL_rank_score.R`` and
  ``Step2_QUAIL_vQTL.R``): quantile integral rank score of the trait (step 1, ``--num_levels`` quantile
  regressions, ``--num_cores THREADS``), then ``plink2 --glm`` of the score on each SNP (step 2, plink2 given
  ``--threads THREADS`` through QUAIL's ``--plink_path``). QUAIL needs a covariate file; it gets one column of
  independent N(0, 1) noise, as a constant column makes its quantile fits singular. Step 2 fails with plink2
  v2.00a3 and later (an ERRCODE column QUAIL does not expect) unless patched. plink2 --glm reports BETA per copy
  of the sample's minor allele (its A1), which is the .bim's A2 at SNPs whose A1 frequency came out above 0.5;
  those signs are turned here to be per copy of the .bim's A1.
* **Brown-Forsythe** (median-centred Levene test), computed here with numpy/scipy (vectorised over the SNPs of a
  block, per genotype class, missing calls dropped), in a child process of this script so that it is timed like
  the others.

hlmm_chr runs with its defaults (``var_pval``, and ``var_pval_robust`` and ``var_pval_adapt`` when the results have
those columns) and
with ``--robust`` (``var_pval``). A peer that is not given is skipped, with a note in the table.

Genotypes (Hardy-Weinberg, minor allele frequencies uniform in [0.05, 0.5], A1 the minor allele) are written
with ``hlmm.io.BedWriter``; the traits (``TRAITS``) use the first ``--causal`` SNPs as causal ones. For each
trait and test: λGC over the null SNPs (median χ²₁ / 0.4549, with p-values of the 2-df tests of varGWAS and
Brown-Forsythe turned into χ²₁ quantiles), null SNPs at p < 1e-4, the mean χ²₁ over the causal SNPs where they
affect the variance (power), the causal SNPs flagged at p < 1e-4 where they affect the mean only (for
``meanvar`` that is a variance effect on the raw scale), the share of causal SNPs whose variance estimate has
the sign of the simulated effect, and each program's wall time and peak resident memory (GNU time's maximum
resident set size, which covers a program's children; for QUAIL the sum of its two steps' times and the larger
of their peaks, step 2's being plink2's). All tests are compared on the SNPs that every program run reported.

Example (the table in docs/_peers_table.rst; the peers are built outside this repository, which holds none of
their code nor any recipe to build them)::

    python benchmarks/bench_peers.py --n 20000 --m 4000 --threads 2 --seed 1 \\
        --vargwas /work/peers/vargwas/build/bin/varGWAS --quail /work/peers/quail/QUAIL \\
        --out-rst docs/_peers_table.rst
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------
# The simulation's constants (each can be changed on the command line)
# ----------------------------------------------------------------------------------------------
N_CAUSAL = 20  # the causal SNPs are the first N_CAUSAL of the file (SNP ids snp0 .. snp19)
B_VAR = 0.06  # vqtl, vqtl_t5: log-variance effect per copy of A1
A_MEAN = 0.05  # meanonly: mean effect per copy of A1
A_MEANVAR = 0.15  # meanvar: mean effect per copy of A1 inside the exponential
EXP_SCALE = 0.3  # expscale, meanvar: y = exp(EXP_SCALE * (...))
MAF_RANGE = (0.05, 0.5)
P_FLAG = 1e-4
QUAIL_LEVELS = 100  # QUAIL's --num_levels (its simulations use 100; its test script 2000)
TRAITS = {
    "normal": "z",
    "t5": "Student t5 / sqrt(5/3)",
    "chi2_3": "(chi2_3 - 3) / sqrt(6)",
    "lognormal": "exp(z) standardised",
    "expscale": "exp(0.3 z)",
    "vqtl": "z exp(0.5 b sum g), b = B_VAR",
    "vqtl_t5": "t5 / sqrt(5/3) exp(0.5 b sum g), b = B_VAR",
    "meanonly": "z + a sum g, a = A_MEAN",
    "meanvar": "exp(0.3 (z + a sum g)), a = A_MEANVAR",
}
VAR_TRAITS = ("vqtl", "vqtl_t5")
MEAN_TRAITS = ("meanonly", "meanvar")
METHODS = ("hlmm var_pval", "hlmm var_pval_robust", "hlmm var_pval_adapt", "hlmm --robust", "varGWAS", "QUAIL",
           "Brown-Forsythe")
MEDIAN_CHI2 = float(stats.chi2.median(1))


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def simulate_genotypes(workdir: Path, n: int, m: int, k: int, seed: int, missing: float) -> np.ndarray:
    """Write workdir/geno.bed (.bim, .fam); returns the true genotypes of the first k SNPs (n, k).

    Reuses the files when a previous run had the same settings.
    """
    from hlmm.io import BedWriter

    stamp, causal_file = workdir / "geno.json", workdir / "geno_causal.npy"
    want = {"n": n, "m": m, "k": k, "seed": seed, "missing": missing, "maf": list(MAF_RANGE)}
    if stamp.exists() and causal_file.exists() and json.loads(stamp.read_text()) == want:
        return np.load(causal_file)
    rng = np.random.default_rng(seed)
    ids = [(f"s{i}", f"s{i}") for i in range(n)]
    block = max(1, min(500, 20_000_000 // n))
    causal = []
    with BedWriter(str(workdir / "geno"), ids) as w:
        for j0 in range(0, m, block):
            b = min(block, m - j0)
            g = rng.binomial(2, rng.uniform(*MAF_RANGE, b), (n, b)).astype(float)
            if j0 < k:
                causal.append(g[:, : k - j0].astype(np.int8))
            if missing > 0:
                g[rng.random((n, b)) < missing] = np.nan
            w.write(g, snp=[f"snp{j0 + j}" for j in range(b)], A1=["A"] * b, A2=["G"] * b)
    causal = np.concatenate(causal, axis=1)[:, :k] if causal else np.zeros((n, 0), dtype=np.int8)
    np.save(causal_file, causal)
    for stale in workdir.glob("geno.bgen*"):
        stale.unlink()
    stamp.write_text(json.dumps(want))
    return causal


def make_trait(name: str, g: np.ndarray, seed: int, consts: dict) -> np.ndarray:
    """The trait ``name`` (see TRAITS) given the true genotypes ``g`` (n, k) of the causal SNPs."""
    rng = np.random.default_rng([seed, list(TRAITS).index(name) + 1])
    n = g.shape[0]
    z = rng.standard_normal(n)
    gsum = g.sum(axis=1).astype(float)

    def t5():
        return rng.standard_t(5, n) / np.sqrt(5 / 3)

    if name == "normal":
        return z
    if name == "t5":
        return t5()
    if name == "chi2_3":
        return (rng.chisquare(3, n) - 3) / np.sqrt(6)
    if name == "lognormal":
        return (np.exp(z) - np.exp(0.5)) / np.sqrt((np.e - 1) * np.e)
    if name == "expscale":
        return np.exp(EXP_SCALE * z)
    if name == "vqtl":
        return z * np.exp(0.5 * consts["b_var"] * gsum)
    if name == "vqtl_t5":
        return t5() * np.exp(0.5 * consts["b_var"] * gsum)
    if name == "meanonly":
        return z + consts["a_mean"] * gsum
    if name == "meanvar":
        return np.exp(EXP_SCALE * (z + consts["a_meanvar"] * gsum))
    raise ValueError(name)


def write_trait_files(workdir: Path, name: str, y: np.ndarray) -> dict:
    """The trait in each program's format; returns their paths."""
    ids = [f"s{i}" for i in range(len(y))]
    vals = [repr(float(v)) for v in y]
    files = {"pheno": workdir / f"pheno_{name}.txt", "csv": workdir / f"pheno_{name}.csv",
             "quail": workdir / f"pheno_{name}.quail.txt"}
    files["pheno"].write_text("FID IID y\n" + "".join(f"{i} {i} {v}\n" for i, v in zip(ids, vals)))
    files["csv"].write_text("S,y\n" + "".join(f"{i}_{i},{v}\n" for i, v in zip(ids, vals)))
    files["quail"].write_text("FID\tIID\ty\n" + "".join(f"{i}\t{i}\t{v}\n" for i, v in zip(ids, vals)))
    return files


def write_quail_covariate(workdir: Path, n: int, seed: int) -> Path:
    path = workdir / "quail_covar.txt"
    c = np.random.default_rng([seed, 999]).standard_normal(n)
    path.write_text("FID\tIID\tnoise\n" + "".join(f"s{i}\ts{i}\t{v!r}\n" for i, v in enumerate(c.tolist())))
    return path


# ----------------------------------------------------------------------------------------------
# Running programs
# ----------------------------------------------------------------------------------------------
def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[key] = str(threads)
    return env


def run_once(cmd: list, env: dict, log: Path) -> tuple:
    """(wall s, peak RSS MB, exit status) of one run; its output goes to ``log``.

    The peak is GNU time's maximum resident set size of the program (with its children) when /usr/bin/time
    exists: ``os.wait4`` of a child of this process would report at least this process's own size, which a
    forked child inherits in its high-water mark before it execs.
    """
    gnu_time = shutil.which("time", path="/usr/bin")
    rss_file = log.with_suffix(".rss")
    full = [gnu_time, "-f", "%M", "-o", str(rss_file)] + cmd if gnu_time else cmd
    with open(log, "ab") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    peak = usage.ru_maxrss / 1024.0
    if gnu_time:
        lines = rss_file.read_text().split()
        peak = float(lines[-1]) / 1024.0 if lines and lines[-1].isdigit() else float("nan")
        rss_file.unlink()
    return wall, peak, os.waitstatus_to_exitcode(status)


def run_steps(steps: list, env: dict, log: Path, repeats: int) -> dict:
    """Run the commands ``steps`` in order, ``repeats`` times: median total wall time and largest peak."""
    log.write_text("")
    walls, peaks = [], []
    for _ in range(repeats):
        total, peak = 0.0, 0.0
        for cmd in steps:
            wall, rss, code = run_once(cmd, env, log)
            total, peak = total + wall, max(peak, rss)
            if code != 0:
                return {"error": f"exit {code}, see {log}", "cmds": steps}
        walls.append(total)
        peaks.append(peak)
    return {"wall": statistics.median(walls), "peak_mb": max(peaks), "cmds": steps}


def hlmm_command(args) -> list:
    if args.hlmm:
        return shlex.split(args.hlmm)
    exe = Path(sys.executable).parent / "hlmm_chr"
    return [str(exe)] if exe.exists() else [sys.executable, str(REPO / "bin" / "hlmm_chr.py")]


def snp_index(workdir: Path) -> dict:
    with open(workdir / "geno.bim") as f:
        return {line.split()[1]: j for j, line in enumerate(f)}


def bim_a1(workdir: Path) -> list:
    with open(workdir / "geno.bim") as f:
        return [line.split()[4] for line in f]


def neglog10_to_p(x: np.ndarray) -> np.ndarray:
    return np.power(10.0, -np.asarray(x, dtype=float))


def run_hlmm(args, files: dict, name: str, robust: bool, m: int) -> dict:
    from hlmm.results import read_models  # imported by main() already

    out = args.workdir / f"out_{name}_hlmm{'_robust' if robust else ''}"
    cmd = hlmm_command(args) + [str(args.workdir / "geno.bed"), "0", str(m), str(files["pheno"]), str(out)]
    cmd += ["--robust"] if robust else []
    res = run_steps([cmd], child_env(args.threads), out.with_suffix(".log"), args.repeats)
    if "error" in res:
        return res
    cols = read_models(str(out) + ".models.gz")
    idx = snp_index(args.workdir)
    rows = np.array([idx[s] for s in cols["SNP"]])
    res["p"], res["est"] = np.full(m, np.nan), np.full(m, np.nan)
    res["p"][rows] = neglog10_to_p(cols["var_pval"])
    res["est"][rows] = cols["var"]
    if not robust:
        for col, key in (("var_pval_robust", "p_robust"), ("var_pval_adapt", "p_adapt")):
            if col in cols:
                res[key] = np.full(m, np.nan)
                res[key][rows] = neglog10_to_p(cols[col])
            else:
                res[key] = None
        if "var_adapt" in cols:
            res["est_adapt"] = np.full(m, np.nan)
            res["est_adapt"][rows] = cols["var_adapt"]
    return res


def ensure_bgen(workdir: Path, threads: int) -> float:
    """geno.bgen (with .sample) from geno.bed; returns the conversion's wall time (0 if reused)."""
    if (workdir / "geno.bgen").exists() and (workdir / "geno.sample").exists():
        return 0.0
    cmd = [shutil.which("plink2") or "plink2", "--bfile", str(workdir / "geno"), "--export", "bgen-1.2", "bits=8",
           "ref-first", "--threads", str(threads), "--out", str(workdir / "geno")]
    wall, _, code = run_once(cmd, child_env(threads), workdir / "plink2_bgen.log")
    if code != 0:
        raise SystemExit(f"plink2 --export bgen-1.2 failed, see {workdir / 'plink2_bgen.log'}")
    return wall


def run_vargwas(args, files: dict, name: str, m: int) -> dict:
    out = args.workdir / f"out_{name}_vargwas.txt"
    cmd = [args.vargwas, "-v", str(files["csv"]), "-s", ",", "-o", str(out), "-b", str(args.workdir / "geno.bgen"),
           "-p", "y", "-i", "S", "-t", str(args.threads), "--flip"]
    res = run_steps([cmd], child_env(args.threads), out.with_suffix(".log"), args.repeats)
    if "error" in res:
        return res
    idx = snp_index(args.workdir)
    res["p"], res["est"], res["mean_beta"] = np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan)
    with open(out) as f:
        header = f.readline().rstrip("\n").split("\t")
        c = {h: i for i, h in enumerate(header)}
        alleles = set()
        for line in f:
            v = line.rstrip("\n").split("\t")
            j = idx[v[c["rsid"]]]
            res["p"][j] = float(v[c["phi_p"]])
            res["est"][j] = float(v[c["phi_x2"]])  # change in variance from 0 to 2 copies of ea
            res["mean_beta"][j] = float(v[c["beta"]])
            alleles.add(v[c["ea"]])
    a1 = set(bim_a1(args.workdir))
    res["effect_allele"] = ",".join(sorted(alleles)) + f" (the .bim's A1: {','.join(sorted(a1))})"
    return res


def run_quail(args, files: dict, name: str, m: int, covar: Path) -> dict:
    qdir = Path(args.quail)
    prefix = args.workdir / f"out_{name}_quail"
    score = args.workdir / f"out_{name}_quail_rank_score.txt"
    plink2 = f"{shutil.which('plink2') or 'plink2'} --threads {args.threads}"
    step1 = ["Rscript", str(qdir / "Step1_QUAIL_rank_score.R"), "--pheno", str(files["quail"]), "--covar", str(covar),
             "--output", str(score), "--num_levels", str(args.quail_levels), "--num_cores", str(args.threads)]
    step2 = ["Rscript", str(qdir / "Step2_QUAIL_vQTL.R"), "--pheno_rs", str(score), "--geno",
             str(args.workdir / "geno"), "--covar", str(covar), "--output", str(prefix), "--plink_path", plink2]
    res = run_steps([step1, step2], child_env(args.threads), prefix.with_suffix(".log"), args.repeats)
    out = Path(str(prefix) + "_QUAIL_vQTL.txt")
    if "error" in res:
        return res
    if not out.exists():
        return {"error": f"no {out.name}, see {prefix.with_suffix('.log')}", "cmds": res["cmds"]}
    idx, a1 = snp_index(args.workdir), bim_a1(args.workdir)
    res["p"], res["est"] = np.full(m, np.nan), np.full(m, np.nan)
    flipped = 0
    with open(out) as f:
        header = f.readline().split()
        c = {h: i for i, h in enumerate(header)}
        for line in f:
            v = line.split()
            j = idx[v[c["SNP"]]]
            # plink2 >= 2.00a3 --glm counts the sample's minor allele, whatever REF/ALT are: BETA per copy of A1
            sign = 1.0 if v[c["A1"]] == a1[j] else -1.0
            flipped += sign < 0
            res["p"][j], res["est"][j] = float(v[c["P"]]), sign * float(v[c["BETA"]])
    res["effect_allele"] = f"the sample's minor allele: the .bim's A2 at {flipped} SNPs (signs turned to A1 here)"
    return res


def run_levene(args, files: dict, name: str, m: int) -> dict:
    out = args.workdir / f"out_{name}_bf.npy"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--levene-worker", str(args.workdir / "geno.bed"),
           str(files["pheno"]), str(out)]
    res = run_steps([cmd], child_env(args.threads), out.with_suffix(".log"), args.repeats)
    if "error" in res:
        return res
    res["p"] = np.load(out)
    res["est"] = None
    return res


# ----------------------------------------------------------------------------------------------
# Brown-Forsythe (median-centred Levene) test, vectorised over the SNPs of a block
# ----------------------------------------------------------------------------------------------
def brown_forsythe(codes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P-values of the median-centred Levene test of ``y`` across genotype classes, one per SNP.

    Parameters
    ----------
    codes : ndarray of int8, shape (b, n)
        Copies of A1 (0, 1, 2), -1 for a missing call (left out).
    y : ndarray, shape (n,)
        The trait.

    Returns
    -------
    ndarray, shape (b,)
        P-values of F = [(N - k) / (k - 1)] Σ n_c (z̄_c - z̄)² / Σ (z_ci - z̄_c)², z_ci = |y_ci - median_c|, over
        the k non-empty classes c and N called individuals; NaN with fewer than two classes.
    """
    order = np.argsort(y, kind="stable")
    ys, cs = y[order], codes[:, order]
    b, n = cs.shape
    rows = np.arange(b)[:, None]
    # per SNP: the missing calls, then classes 0, 1, 2, each in increasing order of y (a radix sort of int8)
    grouped = np.argsort(cs, axis=1, kind="stable")
    masks = [cs == c for c in range(3)]
    counts = np.stack([mk.sum(axis=1) for mk in masks], axis=1)
    first = (cs < 0).sum(axis=1)[:, None] + np.cumsum(counts, axis=1) - counts
    lo = np.minimum(first + np.maximum(counts - 1, 0) // 2, n - 1)
    hi = np.minimum(first + counts // 2, n - 1)
    cnt = counts.astype(float)
    med = np.where(cnt > 0, 0.5 * (ys[grouped[rows, lo]] + ys[grouped[rows, hi]]), 0.0)
    centre = np.where(masks[0], med[:, :1], np.where(masks[1], med[:, 1:2], med[:, 2:3]))
    z = np.where(cs >= 0, np.abs(ys[None, :] - centre), 0.0)
    sums = np.stack([np.where(mk, z, 0.0).sum(axis=1) for mk in masks], axis=1)
    total_n = cnt.sum(axis=1)
    ss_total = (z * z).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.where(cnt > 0, sums / cnt, 0.0)
        grand = sums.sum(axis=1) / total_n
        k = (cnt > 0).sum(axis=1)
        ssb = (cnt * (means - grand[:, None]) ** 2).sum(axis=1)
        ssw = ss_total - (cnt * means**2).sum(axis=1)
        f = (ssb / (k - 1)) / (ssw / (total_n - k))
        p = stats.f.sf(f, k - 1, total_n - k)
    return np.where(k >= 2, p, np.nan)


def read_bed_codes(bed: str, n: int, start: int, stop: int) -> np.ndarray:
    """Copies of A1 (int8, -1 missing) of SNPs ``start:stop`` of a SNP-major .bed, shape (stop - start, n)."""
    n_bytes = (n + 3) // 4
    with open(bed, "rb") as f:
        f.seek(3 + start * n_bytes)
        packed = np.frombuffer(f.read((stop - start) * n_bytes), dtype=np.uint8).reshape(stop - start, n_bytes)
    copies = np.array([2, -1, 1, 0], dtype=np.int8)  # PLINK codes 00, 01 (missing), 10, 11
    codes = np.empty((stop - start, n_bytes, 4), dtype=np.int8)
    for k in range(4):
        codes[:, :, k] = copies[(packed >> (2 * k)) & 3]
    return codes.reshape(stop - start, 4 * n_bytes)[:, :n]


def levene_worker(bed: str, pheno: str, out: str) -> None:
    """Child process: Brown-Forsythe p-values of every SNP of ``bed`` for the trait in ``pheno`` (.fam order).

    It reads the .bed with numpy alone, so that it does not depend on the hlmm under test.
    """
    prefix = bed[:-4]
    with open(prefix + ".fam") as f:
        n = sum(1 for _ in f)
    with open(prefix + ".bim") as f:
        m = sum(1 for _ in f)
    y = np.loadtxt(pheno, skiprows=1, usecols=2)
    block = max(1, min(512, 16_000_000 // n))
    p = np.full(m, np.nan)
    for j0 in range(0, m, block):
        j1 = min(m, j0 + block)
        p[j0:j1] = brown_forsythe(read_bed_codes(bed, n, j0, j1), y)
    np.save(out, p)


# ----------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------
def to_chi2(p: np.ndarray) -> np.ndarray:
    return stats.chi2.isf(np.clip(p, 1e-300, 1.0), 1)


def summarise(name: str, p: np.ndarray, est, common: np.ndarray, k: int) -> dict:
    causal = np.zeros(len(p), dtype=bool)
    if name in VAR_TRAITS + MEAN_TRAITS:
        causal[:k] = True
    null = common & ~causal
    chi2 = to_chi2(p)
    hits = int((p[null] < P_FLAG).sum())
    out = {"lambda": float(np.median(chi2[null]) / MEDIAN_CHI2), "null_hits": hits,
           "null_pct": 100.0 * hits / max(1, null.sum()), "n_null": int(null.sum()), "power": None,
           "flagged": None, "sign": None}
    tested = causal & common
    if name in VAR_TRAITS:
        out["power"] = float(np.mean(chi2[tested])) if tested.any() else float("nan")
    if name in MEAN_TRAITS:
        out["flagged"] = f"{int((p[tested] < P_FLAG).sum())}/{int(tested.sum())}"
    if name in VAR_TRAITS and est is not None and tested.any():
        out["sign"] = f"{int((est[tested] > 0).sum())}/{int(tested.sum())}"
    return out


def fmt(x, spec: str) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    return format(x, spec) if np.isfinite(x) else "nan"


HEADER = ["trait", "test", "λGC (null)", f"null p<{P_FLAG:g}", "% null", "power: mean χ²₁ causal",
          f"mean-only flagged p<{P_FLAG:g}", "var sign +", "wall (s)", "peak MB"]


def table_rows(results: dict) -> list:
    rows = []
    for name, per in results.items():
        for method in METHODS:
            r = per[method]
            if "skip" in r:
                rows.append([name, method, r["skip"]] + [""] * (len(HEADER) - 3))
                continue
            s = r["summary"]
            rows.append([name, method, fmt(s["lambda"], ".3f"), str(s["null_hits"]), fmt(s["null_pct"], ".3f"),
                         fmt(s["power"], ".2f"), fmt(s["flagged"], ""), fmt(s["sign"], ""),
                         fmt(r.get("wall"), ".1f"), fmt(r.get("peak_mb"), ".0f")])
    return rows


def plain_table(rows: list) -> str:
    full = [HEADER] + [r for r in rows if r[3] != "" or not r[2]]  # skipped tests' notes span their row
    widths = [max(len(str(r[i])) for r in full + [r[:2] + [""] * (len(HEADER) - 2) for r in rows])
              for i in range(len(HEADER))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(HEADER, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        if r[3] == "" and r[2]:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(r[:2], widths)) + "  " + r[2])
        else:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


RST_MARKER = ".. peers table"


def rst_table(rows: list, preamble: str) -> str:
    """The page's text. ``:orphan:`` keeps ``sphinx -W`` quiet while no page includes it; a page that includes it
    should do so with ``:start-after:`` the marker comment (RST_MARKER), or the ``:orphan:`` shows as a field."""
    out = [":orphan:", "", ".. Written by benchmarks/bench_peers.py; do not edit.", "", RST_MARKER, "", preamble, "",
           ".. list-table::", "   :header-rows: 1", ""]
    for r in [HEADER] + rows:
        cells = [str(c).replace("*", r"\*").replace("|", r"\|") or " " for c in r]
        out.append("   * - " + cells[0])
        out.extend(f"     - {c}" for c in cells[1:])
    return "\n".join(out) + "\n"


def program_versions(args) -> dict:
    """Versions of the programs; for hlmm also the git commit of the checkout its package is imported from."""
    import hlmm

    v = {}
    out = subprocess.run(hlmm_command(args) + ["--version"], capture_output=True, text=True).stdout.split()
    v["hlmm"] = out[-1] if out else "?"
    checkout = str(Path(hlmm.__file__).resolve().parents[1])
    git = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if git.returncode == 0 and not args.hlmm:
        dirty = subprocess.run(["git", "-C", checkout, "status", "--porcelain", "--", "hlmm"], capture_output=True,
                               text=True).stdout.strip()
        v["hlmm_git"] = git.stdout.strip() + (" with uncommitted changes to hlmm/" if dirty else "")
    plink2 = shutil.which("plink2")
    if plink2:
        v["plink2"] = subprocess.run([plink2, "--version"], capture_output=True, text=True).stdout.strip()
    if args.quail:
        v["R"] = subprocess.run(["Rscript", "-e", "cat(R.version.string)"], capture_output=True,
                                text=True).stdout.strip()
    if args.vargwas:
        text = subprocess.run([args.vargwas, "-h"], capture_output=True, text=True).stdout
        v["varGWAS"] = next((w for w in text.split() if w.startswith("v1") or w.startswith("v2")), "?")
    return v


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--levene-worker":
        levene_worker(*argv[1:4])
        return {}
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="see the module docstring",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="individuals (default 20,000)")
    p.add_argument("--m", type=int, default=4000, help="SNPs (default 4000)")
    p.add_argument("--traits", nargs="+", choices=list(TRAITS), default=list(TRAITS), help="default: all")
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "peers")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--missing", type=float, default=0.0, help="fraction of missing calls (default 0)")
    p.add_argument("--causal", type=int, default=N_CAUSAL, help=f"causal SNPs, the first ones (default {N_CAUSAL})")
    p.add_argument("--b-var", type=float, default=B_VAR, help=f"log-variance effect per allele (default {B_VAR})")
    p.add_argument("--a-mean", type=float, default=A_MEAN, help=f"meanonly effect per allele (default {A_MEAN})")
    p.add_argument("--a-meanvar", type=float, default=A_MEANVAR,
                   help=f"meanvar effect per allele inside exp({EXP_SCALE} ·) (default {A_MEANVAR})")
    p.add_argument("--hlmm", default=None, help="hlmm_chr command (default: hlmm_chr beside this Python)")
    p.add_argument("--vargwas", default=None, help="path to the varGWAS binary (skipped if not given)")
    p.add_argument("--quail", default=None, help="directory of QUAIL's R scripts (skipped if not given)")
    p.add_argument("--quail-levels", type=int, default=QUAIL_LEVELS,
                   help=f"QUAIL's --num_levels, even (default {QUAIL_LEVELS})")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every program")
    p.add_argument("--repeats", type=int, default=1, help="runs of each program; median wall time (default 1)")
    p.add_argument("--out-rst", type=Path, default=None, help="also write the table as RST here")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    import hlmm.io  # noqa: F401  (at the start: a checkout edited during a long run cannot break this process)
    import hlmm.results  # noqa: F401

    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    consts = {"b_var": args.b_var, "a_mean": args.a_mean, "a_meanvar": args.a_meanvar}
    k = args.causal
    print(f"n = {args.n}, m = {args.m}, seed = {args.seed}, missing = {args.missing}, threads = {args.threads}, "
          f"MAF ~ U{MAF_RANGE}, A1 the minor allele")
    print(f"causal SNPs: snp0 .. snp{k - 1} (the first {k}); log-variance effect b = {args.b_var} (vqtl, vqtl_t5); "
          f"mean effect a = {args.a_mean} (meanonly), a = {args.a_meanvar} inside exp({EXP_SCALE} ·) (meanvar)")
    for name in args.traits:
        print(f"  {name:10s} {TRAITS[name]}")

    t0 = time.perf_counter()
    causal = simulate_genotypes(args.workdir, args.n, args.m, k, args.seed, args.missing)
    print(f"genotypes: {args.workdir / 'geno.bed'} ({time.perf_counter() - t0:.1f} s; reused if as good as 0)")
    if args.vargwas:
        args.vargwas = str(Path(args.vargwas).resolve())
        wall = ensure_bgen(args.workdir, args.threads)
        print(f"plink2 --export bgen-1.2 bits=8 ref-first: {wall:.1f} s" if wall else "geno.bgen reused")
    covar = write_quail_covariate(args.workdir, args.n, args.seed) if args.quail else None
    versions = program_versions(args)
    print("versions:", json.dumps(versions))

    # untimed warm-up: numba compiles hlmm's kernels on a checkout's first run and caches them for the next ones
    warm = write_trait_files(args.workdir, "warmup", np.random.default_rng(0).standard_normal(args.n))
    for extra in ([], ["--robust"]):
        run_once(hlmm_command(args) + [str(args.workdir / "geno.bed"), "0", str(min(args.m, 10)), str(warm["pheno"]),
                                       str(args.workdir / "out_warmup")] + extra, child_env(args.threads),
                 args.workdir / "out_warmup.log")

    results = {}
    for name in args.traits:
        y = make_trait(name, causal, args.seed, consts)
        files = write_trait_files(args.workdir, name, y)
        per = {}
        hl = run_hlmm(args, files, name, robust=False, m=args.m)
        per["hlmm var_pval"] = hl
        for method, key, col in (("hlmm var_pval_robust", "p_robust", "var_pval_robust"),
                                 ("hlmm var_pval_adapt", "p_adapt", "var_pval_adapt")):
            if "error" in hl:
                per[method] = {"skip": "hlmm failed"}
            elif hl[key] is None:
                per[method] = {"skip": f"n/a (no {col} column)"}
            else:
                per[method] = {"p": hl[key], "est": hl["est_adapt"] if key == "p_adapt" else hl["est"],
                               "wall": hl["wall"], "peak_mb": hl["peak_mb"], "cmds": hl["cmds"]}
        per["hlmm --robust"] = run_hlmm(args, files, name, robust=True, m=args.m)
        per["varGWAS"] = (run_vargwas(args, files, name, args.m) if args.vargwas
                          else {"skip": "skipped (no --vargwas)"})
        per["QUAIL"] = run_quail(args, files, name, args.m, covar) if args.quail else {"skip": "skipped (no --quail)"}
        per["Brown-Forsythe"] = run_levene(args, files, name, args.m)
        for method, r in per.items():
            if "error" in r:
                per[method] = {"skip": f"failed: {r['error']}", "cmds": r.get("cmds")}
            elif "p" in r and not np.isfinite(r["p"]).any():
                per[method] = {"skip": "no p-values (all NaN)", "cmds": r.get("cmds")}
        ran = [r for r in per.values() if "p" in r]
        common = np.ones(args.m, dtype=bool)
        for r in ran:
            common &= np.isfinite(r["p"])
        for r in ran:
            r["summary"] = summarise(name, r["p"], r.get("est"), common, k)
        results[name] = per
        rows = table_rows({name: per})
        print(f"\n[{name}] {TRAITS[name]}; {int(common.sum())} SNPs reported by every test")
        print(plain_table(rows), flush=True)
        print("  SNPs with a p-value: " + ", ".join(f"{meth} {int(np.isfinite(r['p']).sum())}"
                                                 for meth, r in per.items() if "p" in r))
        for method, r in per.items():
            if "effect_allele" in r:
                print(f"  {method}: effect allele {r['effect_allele']}")
        if name == "meanonly" and "mean_beta" in per["varGWAS"]:
            mb = per["varGWAS"]["mean_beta"][:k]
            print(f"  varGWAS mean effects of the causal SNPs: median {np.nanmedian(mb):+.4f} "
                  f"(simulated {args.a_mean:+.4f} per copy of A1)")

    rows = table_rows(results)
    print("\nAll traits\n" + plain_table(rows))
    print("\nTotal wall time over the traits:")
    for method in METHODS:
        walls = [per[method]["wall"] for per in results.values() if "wall" in per[method]]
        if walls and method not in ("hlmm var_pval_robust", "hlmm var_pval_adapt"):
            print(f"  {method:16s} {sum(walls):8.1f} s ({len(walls)} traits)")
    commands = {}
    for per in results.values():
        for method, r in per.items():
            if r.get("cmds") and method not in commands:
                commands[method] = [shlex.join(c) for c in r["cmds"]]
    print("\nCommand lines (first trait):")
    for method, cmds in commands.items():
        for c in cmds:
            print(f"  {method}: {c}")
    if args.out_rst:
        args.out_rst.write_text(rst_table(rows, rst_preamble(args, versions, results)))
        print(f"wrote {args.out_rst}")
    summary = {name: {m: {key: r.get(key) for key in ("summary", "wall", "peak_mb", "skip")}
                      for m, r in per.items()} for name, per in results.items()}
    if args.json:
        args.json.write_text(json.dumps({"args": {k_: str(v) for k_, v in vars(args).items()},
                                         "versions": versions, "results": summary}, indent=1))
    return summary


def lambda_halfwidth(n_null: int) -> float:
    """Half-width of the asymptotic 95% interval of λGC over n_null null SNPs (variance of a sample median)."""
    return 1.96 / (2 * stats.chi2.pdf(MEDIAN_CHI2, 1) * np.sqrt(max(n_null, 1))) / MEDIAN_CHI2


def rst_preamble(args, versions: dict, results: dict) -> str:
    peers = []
    if args.vargwas:
        peers.append(f"varGWAS {versions.get('varGWAS', '?')} (``-t {args.threads} --flip``)")
    if args.quail:
        peers.append(f"QUAIL (``--num_levels {args.quail_levels} --num_cores {args.threads}``, "
                     f"plink2 ``--threads {args.threads}``)")
    peers.append("a Brown-Forsythe test (numpy)")
    hlmm_git = f" (git {versions['hlmm_git']})" if versions.get("hlmm_git") else ""
    n_null = min((r["summary"]["n_null"] for per in results.values() for r in per.values() if "summary" in r),
                 default=args.m)
    return (
        f"Measured by ``benchmarks/bench_peers.py`` (n = {args.n:,} individuals, m = {args.m:,} SNPs with minor "
        f"allele frequencies uniform in 0.05–0.5, {'no' if args.missing == 0 else args.missing} missing calls; "
        f"causal SNPs: the first {args.causal}; log-variance effect {args.b_var} per allele for ``vqtl`` and "
        f"``vqtl_t5``, mean effect {args.a_mean} for ``meanonly`` and {args.a_meanvar} inside "
        f"exp({EXP_SCALE} ·) for ``meanvar``; {args.threads} threads for every program; hlmm "
        f"{versions.get('hlmm', '?')}{hlmm_git} with its defaults, one process) against " + ", ".join(peers) + ". "
        "All tests are compared on the SNPs that every program reported (hlmm leaves out those with a sample "
        "MAF at or below 0.05). λGC is over the null SNPs, with p-values of 2-df tests (varGWAS, Brown-Forsythe) "
        f"taken as χ²₁ quantiles; its 95% interval is about ±{lambda_halfwidth(n_null):.2f} at {n_null:,} SNPs. "
        "Power is the mean χ²₁ over the causal SNPs; *var sign +* counts the causal SNPs whose variance effect "
        "estimate, per copy of A1, is positive, as simulated. Wall time and peak resident memory are those of the "
        "whole program on all SNPs (QUAIL: both steps). QUAIL gets one covariate of independent noise (it needs "
        "one) and draws an unseeded random column in step 1, so its numbers vary a little between runs. "
        "Reproduce with::\n\n"
        f"    python benchmarks/bench_peers.py --n {args.n} --m {args.m} --seed {args.seed} --threads {args.threads} "
        f"\\\n        --vargwas /path/to/varGWAS --quail /path/to/QUAIL --out-rst docs/_peers_table.rst"
    )


if __name__ == "__main__":
    main()
