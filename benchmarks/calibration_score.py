"""Calibration of the score tests under a null simulation: lambda_GC of add_t and var_t.

Simulates a heteroskedastic linear mixed model with genotype-like random effects and test SNPs
without effects, fits the null once (hetlmm.optimize_model, or hetlm for --l 0), and reports the
genomic-control factor lambda_GC = median(t^2) / 0.4549 of the model-based and robust score
statistics (median(av_chi2) / 1.386 for the 2-df statistic), with a 95% interval from the
binomial distribution of the number of statistics below the median (as if the SNPs were
independent; the SNPs of one phenotype share its residuals, so the interval is too narrow when
one phenotype's realised kurtosis matters, as for t5), and the fraction above the nominal 5%
point. With --reps > 1 several phenotypes are simulated and pooled.

    python benchmarks/calibration_score.py --n 20000 --l 200 --snps 5000 --dist t5

Measured (n = 20,000, l = 200, h2 = 0.5, 4 phenotypes x 5,000 SNPs, 2-core machine shared with
other jobs; lambda_GC of var_t, model-based / robust; add_t 0.99-1.01 for both throughout):

    normal   1.057 / 1.038   (per phenotype 1.07 1.10 0.98 1.07 / 1.02 1.10 0.98 1.04)
    t5       3.409 / 1.013   (4 x 1,250 SNPs; per phenotype 3.21 2.79 4.33 3.35 / 0.96 1.06 1.04 1.02)
    chisq3   2.781 / 1.010   (per phenotype 2.91 2.76 2.66 2.84 / 1.00 1.05 1.00 0.98)

The normal model var_t of 16 other phenotypes x 2,000 SNPs (HLM, n = 20,000) gave 0.964: the
per-phenotype spread (0.85-1.14) is the SNP sampling plus the phenotype's realised residuals.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from hlmm import hetlm, hetlmm, score

CHI2_1_MEDIAN = float(stats.chi2.median(1))
CHI2_2_MEDIAN = float(stats.chi2.median(2))
CHI2_1_CRIT = float(stats.chi2.ppf(0.95, 1))
CHI2_2_CRIT = float(stats.chi2.ppf(0.95, 2))


def standardized_noise(rng: np.random.Generator, n: int, dist: str) -> np.ndarray:
    """Mean 0, variance 1 draws: normal, t5 (excess kurtosis 6), chi^2_3 (skewness 1.63, kurtosis 4),
    lognormal (exp(z): skewness 6.2, kurtosis 111) or expscale (exp(0.3 z): skewness 0.95, kurtosis 1.6)."""
    if dist == "normal":
        return rng.standard_normal(n)
    if dist == "t5":
        return rng.standard_t(5, n) / np.sqrt(5.0 / 3.0)
    if dist == "chisq3":
        return (rng.chisquare(3, n) - 3.0) / np.sqrt(6.0)
    if dist in ("lognormal", "expscale"):
        s = 1.0 if dist == "lognormal" else 0.3
        mean, var = np.exp(s * s / 2), (np.exp(s * s) - 1.0) * np.exp(s * s)
        return (np.exp(s * rng.standard_normal(n)) - mean) / np.sqrt(var)
    raise ValueError(f"unknown distribution {dist!r}: use normal, t5, chisq3, lognormal or expscale")


def genotypes(rng: np.random.Generator, n: int, m: int, missing: float = 0.0) -> np.ndarray:
    """n x m allele counts, allele frequencies uniform on (0.05, 0.5), NaN with probability ``missing``."""
    g = rng.binomial(2, rng.uniform(0.05, 0.5, m), (n, m)).astype(float)
    if missing > 0:
        g[rng.random((n, m)) < missing] = np.nan
    return g


def simulate_null(n: int, l: int, h2: float, dist: str, seed: int):
    """y, X, V, G of a null HLMM: X = V = [1, N(0,1)], G z-scored genotypes / sqrt(l)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    V = np.column_stack([np.ones(n), rng.standard_normal(n)])
    G = None
    y = X @ [0.5, 0.2] + standardized_noise(rng, n, dist) * np.exp(V @ [0.0, 0.3] / 2)
    if l > 0:
        G = genotypes(rng, n, l)
        G = (G - G.mean(0)) / np.maximum(G.std(0), 1e-12) / np.sqrt(l)
        y = y + np.sqrt(h2) * (G @ rng.standard_normal(l))
    return y, X, V, G


def lambda_gc(t2: np.ndarray, median: float = CHI2_1_MEDIAN) -> tuple[float, float, float]:
    """lambda_GC and a 95% interval from order statistics around the median."""
    t2 = np.sort(t2[np.isfinite(t2)])
    m = t2.shape[0]
    half = 1.96 * np.sqrt(m) / 2
    lo, hi = int(np.floor(m / 2 - half)), int(np.ceil(m / 2 + half))
    return float(np.median(t2) / median), float(t2[max(lo, 0)] / median), float(t2[min(hi, m - 1)] / median)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000, help="individuals")
    p.add_argument("--l", type=int, default=200, help="random-effect SNPs (0: HLM)")
    p.add_argument("--h2", type=float, default=0.5, help="random-effect variance")
    p.add_argument("--snps", type=int, default=5000, help="test SNPs")
    p.add_argument("--dist", choices=("normal", "t5", "chisq3"), default="normal", help="residual distribution")
    p.add_argument("--missing", type=float, default=0.01, help="fraction of missing test-SNP calls")
    p.add_argument("--block", type=int, default=256, help="SNPs per block")
    p.add_argument("--reps", type=int, default=1, help="phenotypes simulated (pooled; seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)

    t0 = time.time()
    keys = ("add_t", "var_t", "av_chi2")
    res = {robust: {k: [] for k in keys} for robust in (False, True)}
    per_rep = []
    t_score = 0.0
    for rep in range(a.reps):
        seed = a.seed + rep
        t1 = time.time()
        y, X, V, G = simulate_null(a.n, a.l, a.h2, a.dist, seed)
        if G is None:
            fit = hetlm.model(y, X, V).optimize_model()
            null = score.HLMNull(y, X, V, fit["alpha"], fit["beta"])
            h2_text = ""
        else:
            fit = hetlmm.model(y, X, V, G).optimize_model(0.1, SEs=False)
            null = score.HLMMNull(y, X, V, G, fit["alpha"], fit["beta"], fit["h2"])
            h2_text = f", h2_hat={fit['h2']:.3f}"
        print(f"phenotype {rep + 1}/{a.reps}: null fit success={fit['success']}{h2_text} ({time.time() - t1:.1f} s)")
        rng = np.random.default_rng(seed + 100_000)
        rep_var = {False: [], True: []}
        for b0 in range(0, a.snps, a.block):
            g = score.mean_impute(genotypes(rng, a.n, min(a.block, a.snps - b0), a.missing))
            Z = null.gtdinv(g) if G is not None else None
            for robust in (False, True):
                t = time.time()
                out = score.score_test(null, g, robust=robust, GtDinv_g=Z)
                t_score += time.time() - t
                for k in keys:
                    res[robust][k].append(out[k])
                rep_var[robust].append(out["var_t"] ** 2)
        per_rep.append([lambda_gc(np.concatenate(rep_var[r]))[0] for r in (False, True)])
    print(f"n={a.n} l={a.l} h2={a.h2} dist={a.dist}, {a.reps} phenotype(s) x {a.snps} SNPs; score tests "
          f"{t_score:.2f} s excluding G'D^-1 g; total {time.time() - t0:.1f} s")
    if a.reps > 1:
        print("lambda_GC of var_t per phenotype, model: " + " ".join(f"{x[0]:.2f}" for x in per_rep))
        print("lambda_GC of var_t per phenotype, robust: " + " ".join(f"{x[1]:.2f}" for x in per_rep))
    print(f"{'statistic':<22}{'lambda_GC':>10}{'95% interval':>20}{'P(> nominal 5% point)':>24}")
    for robust in (False, True):
        for k in keys:
            x = np.concatenate(res[robust][k])
            t2 = x if k == "av_chi2" else x**2
            med, crit = (CHI2_2_MEDIAN, CHI2_2_CRIT) if k == "av_chi2" else (CHI2_1_MEDIAN, CHI2_1_CRIT)
            lam, lo, hi = lambda_gc(t2, med)
            t2 = t2[np.isfinite(t2)]
            name = f"{'robust' if robust else 'model'} {k}"
            print(f"{name:<22}{lam:>10.3f}{f'({lo:.3f}, {hi:.3f})':>20}{np.mean(t2 > crit):>24.4f}")


if __name__ == "__main__":
    main()
