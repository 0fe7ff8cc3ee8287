"""Plots of scan results: additive vs variance effects, QQ plots with lambda_GC, Manhattan plots.

Needs matplotlib (``pip install 'hlmm[plot]'``). Each plotting function writes one PNG and returns
its path; :func:`qq_data`, :func:`lambda_gc` and :func:`genome_positions` are the numbers behind
the plots.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from hlmm.genome import chromosome_key
from hlmm.pvalues import CHI2_1_MEDIAN, lambda_from_neglog10, lambda_gc, neglog10_pval

__all__ = ["add_var_scatter", "qq_plot", "qq_data", "pvalue_columns", "lambda_from_neglog10", "manhattan",
           "genome_positions", "chromosome_key", "lambda_gc", "CHI2_1_MEDIAN"]

STATISTICS = ("add", "var", "dispersion")
COLOURS = {"add": "C0", "var": "C1", "dispersion": "C2"}
MANHATTAN_COLOURS = ("#1f4e79", "#7fa7cf")  # alternate chromosomes
DPI = 150


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
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _thin(x: np.ndarray, y: np.ndarray, x_range: float, y_range: float, pixels: int = 2000) -> np.ndarray:
    """Indices of points that remain distinct on a grid of ``pixels`` cells per axis (all, for small data)."""
    if x.size <= 50_000:
        return np.arange(x.size)
    cells = np.round(x / (x_range / pixels)).astype(np.int64) * (pixels + 1) * 4 + np.round(
        y / (y_range / pixels)).astype(np.int64)
    return np.sort(np.unique(cells, return_index=True)[1])


def pvalue_columns(res: dict) -> dict:
    """The −log10 p-value column of each statistic a results table has: ``add_pval``,
    ``var_pval_adapt`` (``var_pval_robust``, then ``var_pval``, for results without it) and
    ``dispersion_pval``.

    Examples
    --------
    >>> pvalue_columns({"add_pval": [], "var_pval": [], "var_pval_robust": [], "var_pval_adapt": []})
    {'add': 'add_pval', 'var': 'var_pval_adapt'}
    >>> pvalue_columns({"add_pval": [], "var_pval": [], "var_pval_robust": []})["var"]
    'var_pval_robust'
    """
    out = {}
    for name in STATISTICS:
        for col in (f"{name}_pval_adapt", f"{name}_pval_robust", f"{name}_pval"):
            if col in res:
                out[name] = col
                break
    return out


def qq_data(t=None, level: float = 0.95, *, neglog10=None) -> dict:
    """The points, confidence band and axis limit of a QQ plot of -log10 p-values of t-statistics.

    The k-th smallest of m p-values drawn under the null is the k-th order statistic of m
    uniforms, Beta(k, m - k + 1): its quantiles give the band, its mean k / (m + 1) the expected
    value. Both axes end at ``limit``, the upper end of the band at k = 1 (the largest −log10 p the
    null makes plausible); observed values beyond it are ``clipped``, to be drawn at the edge.

    Parameters
    ----------
    t : array_like, shape (m,)
        t-statistics (NaNs dropped); p-values from chi-square(1) of t^2.
    level : float
        Coverage of the pointwise band.
    neglog10 : array_like, shape (m,), optional
        −log10 p-values of 1-df tests instead of ``t`` (NaNs dropped).

    Returns
    -------
    dict
        ``expected``, ``observed`` (−log10 p, largest first), ``lower``, ``upper`` (band, on
        the same −log10 scale), ``limit`` (float), ``clipped`` (bool array: observed > limit),
        ``lambda_gc`` (float).

    Examples
    --------
    >>> q = qq_data([0.1, 1.0, 40.0])
    >>> int(q["clipped"].sum()), bool(q["expected"][0] < q["limit"])
    (1, True)
    """
    if neglog10 is None:
        t = np.asarray(t, dtype=float)
        t = t[np.isfinite(t)]
        neglog10 = neglog10_pval(t**2, 1)
    neglog10 = np.asarray(neglog10, dtype=float)
    neglog10 = neglog10[np.isfinite(neglog10)]
    m = neglog10.size
    k = np.arange(1, m + 1)
    observed = np.sort(neglog10)[::-1]
    expected = -np.log10(k / (m + 1))
    tail = (1 - level) / 2
    upper = -np.log10(stats.beta.ppf(tail, k, m - k + 1))
    lower = -np.log10(stats.beta.ppf(1 - tail, k, m - k + 1))
    limit = float(upper[0]) if m else 1.0
    return {"expected": expected, "observed": observed, "lower": lower, "upper": upper, "limit": limit,
            "clipped": observed > limit, "lambda_gc": lambda_from_neglog10(neglog10)}


def qq_plot(res: dict, path: str, title: str | None = None, level: float = 0.95) -> str:
    """QQ plot of -log10 p-values of the additive, variance (and dispersion) statistics.

    The p-values are those of :func:`pvalue_columns`: for the variance effects the adaptive test's
    where the results have it.

    The x axis spans the expected values, the y axis up to the top of the band (:func:`qq_data`);
    observed values beyond it are drawn as triangles just below the top edge (one row of
    triangles per statistic), and the legend gives their number and each statistic's λGC.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    data = {name: qq_data(level=level, neglog10=res[col]) for name, col in pvalue_columns(res).items()}
    data = {name: q for name, q in data.items() if q["observed"].size}
    y_top = max((q["limit"] for q in data.values()), default=1.0)
    x_top = 1.03 * max((q["expected"][0] for q in data.values()), default=1.0)
    if data:
        widest = max(data.values(), key=lambda q: q["observed"].size)
        ax.fill_between(widest["expected"], widest["lower"], widest["upper"], color="0.85", lw=0,
                        label=f"{100 * level:.0f}% band under the null")
    ax.plot([0, x_top], [0, x_top], color="0.4", lw=1)
    row = 0  # rows of triangles, one per statistic with clipped points
    for name, q in data.items():
        inside = ~q["clipped"]
        keep = _thin(q["expected"][inside], q["observed"][inside], x_top, y_top)
        n_out = int(q["clipped"].sum())
        label = f"{name}: λGC = {q['lambda_gc']:.3f}" + (f"; {n_out} beyond the axis (▲)" if n_out else "")
        ax.scatter(q["expected"][inside][keep], q["observed"][inside][keep], s=7, color=COLOURS[name], label=label,
                   zorder=3)
        if n_out:
            edge = y_top * (0.985 - 0.03 * row)
            row += 1
            ax.scatter(q["expected"][q["clipped"]], np.full(n_out, edge), marker="^", s=36, color=COLOURS[name],
                       edgecolor="black", linewidth=0.5, zorder=4)
    ax.set_xlim(0, x_top)
    ax.set_ylim(0, y_top)
    ax.set_xlabel("expected −log10 p")
    ax.set_ylabel("observed −log10 p")
    ax.set_title(title or "QQ plot")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _save(plt, fig, path)


def genome_positions(chrom, pos, gap: float = 0.02) -> tuple[np.ndarray, list, list]:
    """x coordinates of a Manhattan plot: chromosomes in genomic order, base-pair positions within each.

    Each chromosome spans its variants' first to last position; chromosomes are separated by
    ``gap`` times the total span.

    Parameters
    ----------
    chrom : array_like of str, shape (m,)
    pos : array_like, shape (m,)

    Returns
    -------
    x : ndarray, shape (m,)
    order : list of str
        Chromosome labels in genomic order.
    centres : list of float
        x of each chromosome's centre, for its label.
    """
    chrom = np.asarray(chrom, dtype=str)
    pos = np.asarray(pos, dtype=float)
    order = sorted(set(chrom), key=chromosome_key)
    spans = {c: (pos[chrom == c].min(), pos[chrom == c].max()) for c in order}
    space = gap * max(sum(hi - lo for lo, hi in spans.values()), 1.0)
    x = np.empty(len(pos))
    offset, centres = 0.0, []
    for c in order:
        sel = chrom == c
        lo, hi = spans[c]
        x[sel] = pos[sel] - lo + offset
        centres.append(offset + (hi - lo) / 2)
        offset += hi - lo + space
    return x, order, centres


def manhattan(res: dict, path: str, gw_threshold: float = 5e-8, title: str | None = None) -> str:
    """Manhattan plots of -log10 p-values along the genome, one panel per statistic.

    The p-values are those of :func:`pvalue_columns`: for the variance effects the adaptive test's
    where the results have it.

    Chromosomes in genomic order in alternating colours, base-pair positions within each (in Mb
    for a single chromosome), and a dashed line at the genome-wide threshold ``gw_threshold``.
    """
    plt = _pyplot()
    columns = pvalue_columns(res)
    names = list(columns)
    m = len(res["SNP"])
    chrom = np.array([c[3:] if c.lower().startswith("chr") else c for c in np.asarray(res.get("chr", ["1"] * m),
                                                                                       dtype=str)])
    pos = np.asarray(res.get("pos", np.arange(1, m + 1)), dtype=float)
    x, order, centres = genome_positions(chrom, pos)
    single = len(order) == 1
    if single:
        x = pos / 1e6
    line = -np.log10(gw_threshold)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.7 * len(names) + 0.5), sharex=True, squeeze=False)
    x_range = float(np.ptp(x)) if m else 1.0
    for ax, name in zip(axes[:, 0], names):
        y = np.asarray(res[columns[name]], dtype=float)
        top = max(float(np.nanmax(y)) if np.isfinite(y).any() else 0.0, line) * 1.08
        for k, c in enumerate(order):
            sel = np.flatnonzero((chrom == c) & np.isfinite(y))
            keep = sel[_thin(x[sel], y[sel], x_range, top)]
            ax.scatter(x[keep], y[keep], s=5, color=MANHATTAN_COLOURS[k % 2], linewidths=0, rasterized=True)
        ax.axhline(line, color="C3", ls="--", lw=1)
        ax.annotate(f"p = {gw_threshold:g}", (1, line), xycoords=("axes fraction", "data"), xytext=(0, 2),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8, color="C3")
        ax.set_ylim(0, top)
        ax.set_ylabel(f"{name}: −log10 p" + (" (robust)" if columns[name].endswith("_robust") else
                                             " (adaptive test)" if columns[name].endswith("_adapt") else ""))
        ax.spines[["top", "right"]].set_visible(False)
    bottom = axes[-1, 0]
    if single:
        bottom.set_xlabel(f"position on chromosome {order[0]} (Mb)")
    else:
        bottom.set_xticks(centres)
        bottom.set_xticklabels(order, fontsize=8 if len(order) > 12 else 10)
        bottom.set_xlabel("chromosome")
        bottom.set_xlim(x.min() - 0.01 * x_range, x.max() + 0.01 * x_range)
    fig.suptitle(title or "Manhattan plot")
    return _save(plt, fig, path)


def add_var_scatter(res: dict, path: str, slope: float | None = None, title: str | None = None,
                    robust_slope: float | None = None) -> str:
    """Scatter of log-linear variance effects against additive effects.

    With the mean-variance slope (``slope``, a solid line) and, if given, the robust regression
    slope before the adjustment for the noise in ``add`` (``robust_slope``, dashed).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    ok = np.isfinite(res["add"]) & np.isfinite(res["var"])
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.scatter(res["add"][ok], res["var"][ok], s=7, alpha=0.6, color="C0", linewidths=0, rasterized=True)
    if slope is not None and ok.any():
        x = np.linspace(res["add"][ok].min(), res["add"][ok].max(), 2)
        ax.plot(x, slope * x, color="C3", label=f"mean-variance slope = {slope:.3g}")
        if robust_slope is not None:
            ax.plot(x, robust_slope * x, color="C3", ls="--", lw=1,
                    label=f"before the noise adjustment = {robust_slope:.3g}")
        ax.legend(loc="upper left", frameon=False, fontsize=9)
    ax.set_xlabel("additive effect (add)")
    ax.set_ylabel("log-linear variance effect (var)")
    ax.set_title(title or "variance vs additive effects")
    return _save(plt, fig, path)
