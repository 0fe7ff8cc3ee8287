"""Plots: PNGs for one and several chromosomes, lambda_GC, the QQ band and clipping, genomic order."""

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("matplotlib")

from hlmm import plots  # noqa: E402
from hlmm.results import neglog10_pval  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def scan(chroms, m=600, seed=0, hits=0):
    """A results table over the given chromosomes; ``hits`` SNPs with huge additive statistics."""
    rng = np.random.default_rng(seed)
    chrom = np.array(chroms)[np.sort(rng.integers(0, len(chroms), m))]
    pos = rng.integers(1, 50_000_000, m)
    add_t, var_t = rng.standard_normal(m), rng.standard_normal(m)
    add_t[:hits] = 20.0 + np.arange(hits)
    disp_t = var_t - 0.3 * add_t
    res = {"SNP": np.array([f"rs{j}" for j in range(m)]), "chr": chrom, "pos": pos,
           "add": add_t * 0.01, "var": var_t * 0.01, "add_t": add_t, "var_t": var_t, "dispersion_t": disp_t}
    for name in ("add", "var", "dispersion"):
        res[f"{name}_pval"] = neglog10_pval(res[f"{name}_t"] ** 2, 1)
    res["add_t"][5] = res["add_pval"][5] = np.nan  # a SNP without an estimate
    return res


@pytest.mark.parametrize("chroms", [["7"], ["2", "10", "X"]], ids=["one chromosome", "three chromosomes"])
def test_pngs__written_for_one_and_several_chromosomes_and_values_beyond_the_axes(tmp_path, chroms):
    res = scan(chroms, hits=4)
    written = [plots.qq_plot(res, str(tmp_path / "qq.png"), title="t"),
               plots.manhattan(res, str(tmp_path / "m.png"), gw_threshold=1e-6, title="t"),
               plots.add_var_scatter(res, str(tmp_path / "av.png"), 0.5, title="t", robust_slope=0.4)]
    for path in written:
        data = open(path, "rb").read()
        assert data[:8] == PNG and len(data) > 20_000, path


def test_lambda_gc__median_chi2_over_its_null_median():
    t = np.random.default_rng(1).standard_normal(5001) * 1.1
    t[3] = np.nan
    direct = np.median(t[np.isfinite(t)] ** 2) / stats.chi2.ppf(0.5, 1)
    assert plots.lambda_gc(t) == pytest.approx(direct, rel=1e-12)
    assert plots.lambda_gc(t) == pytest.approx(1.21, abs=0.08)


def test_qq__axis_limit_and_clipping_count():
    m = 2000
    rng = np.random.default_rng(2)
    t = rng.standard_normal(m)
    t[:7] = [6, 7, 8, 9, 10, 15, 30]
    q = plots.qq_data(t)
    # the smallest of m uniform p-values is Beta(1, m): its 2.5% quantile is 1 - 0.975^(1/m)
    limit = -np.log10(1 - 0.975 ** (1 / m))
    assert q["limit"] == pytest.approx(limit, rel=1e-9)
    observed = -np.log10(stats.chi2.sf(t**2, 1))
    assert int(q["clipped"].sum()) == int((observed > limit).sum()) >= 5
    assert q["expected"].max() < q["limit"]
    np.testing.assert_allclose(np.sort(q["observed"]), np.sort(observed), rtol=1e-9)


def test_qq__band_covers_the_order_statistics_of_null_p_values():
    m, reps = 50, 4000
    q = plots.qq_data(np.zeros(m))
    p = np.sort(np.random.default_rng(3).uniform(size=(reps, m)), axis=1)
    neglog = -np.log10(p)  # smallest p (largest -log10 p) first, as qq_data orders them
    for k in (0, 24, 49):
        inside = (neglog[:, k] >= q["lower"][k]) & (neglog[:, k] <= q["upper"][k])
        assert inside.mean() == pytest.approx(0.95, abs=0.015), k


def test_manhattan_positions__genomic_order_with_positions_within_each_chromosome():
    chrom = np.array(["X", "10", "2", "X", "2", "10", "MT"])
    pos = np.array([500, 300, 900, 100, 200, 100, 7])
    x, order, centres = plots.genome_positions(chrom, pos)
    assert order == ["2", "10", "X", "MT"]
    blocks = [x[chrom == c] for c in order]
    assert all(a.max() < b.min() for a, b in zip(blocks, blocks[1:]))
    for c in order:
        sel = chrom == c
        np.testing.assert_allclose(x[sel] - x[sel].min(), pos[sel] - pos[sel].min())
    assert centres == sorted(centres)
