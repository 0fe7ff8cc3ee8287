"""Plots of scan results: additive vs variance effects, QQ plots with lambda_GC, Manhattan plots.

Needs matplotlib (``pip install 'hlmm[plot]'``). Each function writes one PNG and returns its path.
"""

from __future__ import annotations

import numpy as np

from hlmm.results import neglog10_pval

__all__ = ["add_var_scatter", "qq_plot", "manhattan", "lambda_gc"]

CHI2_1_MEDIAN = 0.454936423119572  # median of chi-square(1)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'hlmm[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def lambda_gc(t) -> float:
    """Genomic control inflation: median of t^2 over the median of chi-square(1)."""
    t = np.asarray(t, dtype=float)
    t = t[np.isfinite(t)]
    return float(np.median(t**2) / CHI2_1_MEDIAN) if t.size else float("nan")


def add_var_scatter(res: dict, path: str, slope: float | None = None) -> str:
    """Scatter of log-linear variance effects against additive effects, as in the tutorial."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ok = np.isfinite(res["add"]) & np.isfinite(res["var"])
    ax.scatter(res["add"][ok], res["var"][ok], s=8, alpha=0.6)
    if slope is not None and ok.any():
        x = np.linspace(res["add"][ok].min(), res["add"][ok].max(), 2)
        ax.plot(x, slope * x, color="C3", label=f"mean-variance slope r = {slope:.3g}")
        ax.legend()
    ax.set_xlabel("additive effect")
    ax.set_ylabel("log-linear variance effect")
    return _save(plt, fig, path)


def qq_plot(res: dict, path: str) -> str:
    """QQ plot of -log10 p-values of the additive, variance (and dispersion) statistics."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for name in ("add", "var", "dispersion"):
        key = f"{name}_t"
        if key not in res:
            continue
        t = res[key][np.isfinite(res[key])]
        if not t.size:
            continue
        observed = np.sort(neglog10_pval(t**2, 1))[::-1]
        expected = -np.log10((np.arange(1, t.size + 1) - 0.5) / t.size)
        ax.scatter(expected, observed, s=8, label=f"{name} (λGC = {lambda_gc(t):.2f})")
        top = max(top, expected.max(), observed.max())
    ax.plot([0, top], [0, top], color="grey", lw=1)
    ax.set_xlabel("expected −log10 p")
    ax.set_ylabel("observed −log10 p")
    ax.legend()
    return _save(plt, fig, path)


def manhattan(res: dict, path: str) -> str:
    """Manhattan plots of -log10 p-values along the genome, one panel per statistic."""
    plt = _pyplot()
    names = [n for n in ("add", "var", "dispersion") if f"{n}_pval" in res]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.6 * len(names)), sharex=True, squeeze=False)
    chrom = np.asarray(res.get("chr", np.ones(len(res["SNP"]))), dtype=str)
    pos = np.asarray(res.get("pos", np.arange(len(res["SNP"]))), dtype=float)
    order = sorted(set(chrom), key=lambda c: (0, int(c)) if c.isdigit() else (1, c))
    x = np.empty(len(pos))
    offset, ticks = 0.0, []
    for c in order:
        sel = chrom == c
        x[sel] = pos[sel] - pos[sel].min() + offset
        ticks.append((offset + x[sel].max()) / 2)
        offset = x[sel].max() + max(1.0, 0.02 * (pos.max() - pos.min() + 1))
    for ax, name in zip(axes[:, 0], names):
        y = res[f"{name}_pval"]
        for k, c in enumerate(order):
            sel = (chrom == c) & np.isfinite(y)
            ax.scatter(x[sel], y[sel], s=6, color=f"C{k % 2}")
        ax.set_ylabel(f"{name} −log10 p")
    axes[-1, 0].set_xticks(ticks)
    axes[-1, 0].set_xticklabels(order)
    axes[-1, 0].set_xlabel("chromosome")
    return _save(plt, fig, path)
