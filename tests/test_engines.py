"""hlmm.engines: each scanner against the reference scanner (one optimize_model per SNP) and the
dense score module, on arrays, blocks of every representation (packed .bed bytes, hard calls,
dosages); the choice table; the compiled kernels against numpy."""

from dataclasses import replace

import numpy as np
import pytest

from hlmm import hetlm, hetlmm, score
from hlmm.covariates import random_effects_design
from hlmm.engines import (
    STATUS,
    HLMClassScanner,
    HLMCovariateScanner,
    HLMMClassScanner,
    ReferenceScanner,
    ScoreScanner,
    make_scanner,
)
from hlmm.io import ArraySource, GenotypeBlock, open_bed, write_bed
from hlmm.model import ModelSpec
from hlmm.robust import hlm_sandwich
from hlmm.scan import NullFit, ScanModel

KEYS = ("likelihood", "add", "add_se", "var", "var_se")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(12)
    n, m, l = 700, 24, 30  # noqa: E741
    g = rng.binomial(2, rng.uniform(0.08, 0.5, m), (n, m)).astype(float)
    g[rng.random((n, m)) < 0.02] = np.nan
    g[:, 5] = 0.0  # monomorphic
    C = np.column_stack([rng.standard_normal(n), rng.integers(0, 2, n)])
    raw = rng.binomial(2, 0.3, (n, l)).astype(float)
    raw[rng.random((n, l)) < 0.01] = np.nan
    G, _, gc, gs = random_effects_design(raw, return_scaling=True)
    gi = np.nan_to_num(g)
    y = 0.3 * gi[:, 0] + 0.4 * C[:, 0] + G @ rng.normal(0, 1.0, l) + rng.standard_normal(n) * np.exp(
        0.5 * (0.4 * gi[:, 1] + 0.3 * C[:, 1]))
    dos = np.clip(np.where(np.isnan(g), np.nan, g + rng.normal(0, 0.15, (n, m))), 0, 2)
    return dict(n=n, m=m, g=g, C=C, G=G, gc=gc, gs=gs, y=y, dos=np.round(dos * 255) / 255, rng=rng)


def default_model(d, G=None, name="y", subset=None):
    y = d["y"] if subset is None else d["y"][subset]
    one = np.ones((len(y), 1))
    hl = hetlm.model(y, one, one).optimize_model()
    ys = (y - hl["alpha"][0]) * np.exp(-hl["beta"][0] / 2)
    null = None
    if G is not None:
        null = hetlmm.model(ys, one, one, G).optimize_model(0.05)
    else:
        null = hetlm.model(ys, one, one).optimize_model()
    rows = np.arange(d["n"]) if subset is None else np.flatnonzero(subset)
    return ScanModel(name, rows if subset is None else rows, ys, G=G, G_center=d["gc"] if G is not None else None,
                     G_scale=d["gs"] if G is not None else None, h2_start=null.get("h2", 0.05), null=NullFit.of(null))


def covariate_model(d, G=None):
    X = np.column_stack([np.ones(d["n"]), d["C"]])
    fit = hetlm.model(d["y"], X, X).optimize_model() if G is None else \
        hetlmm.model(d["y"], X, X, G).optimize_model(0.05)
    return ScanModel("y", np.arange(d["n"]), d["y"], X, X, G, h2_start=fit.get("h2", 0.05), beta_start=fit["beta"],
                     null=NullFit.of(fit))


def spec(models, **kw) -> ModelSpec:
    """The spec the test models were prepared for (covariates fitted per variant if X has them)."""
    return ModelSpec(random_effects=models[0].G is not None, fit_covariates=models[0].X.shape[1] > 1, **kw)


def build(cls, models, **kw):
    """Scanner ``cls`` of ``models`` with spec options ``kw``."""
    return cls(spec(models, **kw), models)


def make(models, has_dosages=False, **kw):
    return make_scanner(spec(models, **kw), models, has_dosages)


def block_of(genotypes, index=None):
    src = ArraySource(genotypes)
    index = np.arange(genotypes.shape[1]) if index is None else index
    blk = src.read_block(np.arange(genotypes.shape[0]), index)
    if src.has_dosages:
        blk.denominator = 255  # the test dosages are on the 8-bit bgen grid
    return blk


def assert_same(a: dict, b: dict, rtol=1e-6, keys=KEYS, min_ok=10):
    np.testing.assert_array_equal(a["n"], b["n"])
    np.testing.assert_array_equal(a["status"], b["status"])
    np.testing.assert_allclose(a["frequency"], b["frequency"], rtol=1e-12)
    ok = a["status"] == STATUS["ok"]
    assert ok.sum() >= min_ok
    for k in keys:
        np.testing.assert_allclose(a[k][ok], b[k][ok], rtol=rtol, atol=1e-9, err_msg=k)


@pytest.mark.parametrize("kind", ["hard", "dosage"])
def test_hlm_class_scanner__matches_reference(data, kind):
    g = data["g"] if kind == "hard" else data["dos"]
    m = default_model(data)
    blk = block_of(g)
    assert (blk.dosages is not None) == (kind == "dosage")
    fast = build(HLMClassScanner, [m]).scan(blk)[0]
    ref = build(ReferenceScanner, [m]).scan(blk)[0]
    assert_same(fast, ref)


def test_hlm_class_scanner__packed_bed_block_equals_decoded_block(data, tmp_path):
    write_bed(str(tmp_path / "t"), data["g"])
    bed = open_bed(str(tmp_path / "t.bed"))
    rows = np.arange(data["n"])
    m = default_model(data)
    packed = build(HLMClassScanner, [m]).scan(bed.read_block(rows, np.arange(data["m"])))[0]
    decoded = build(HLMClassScanner, [m]).scan(block_of(data["g"]))[0]
    for k in KEYS:
        np.testing.assert_array_equal(packed[k], decoded[k])


def test_dosage_classes__grid_and_sorted_distinct_values_agree(data):
    m = default_model(data)
    on_grid = build(HLMClassScanner, [m]).scan(block_of(data["dos"]))[0]
    blk = block_of(data["dos"])
    blk.denominator = 0  # no grid: distinct values by sorting
    sorted_ = build(HLMClassScanner, [m]).scan(blk)[0]
    for k in KEYS:
        np.testing.assert_allclose(on_grid[k], sorted_[k], rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("kind", ["g", "dos"])
def test_hlm_class_scanner__several_phenotypes_equal_separate_scans(data, kind):
    """Phenotypes scanned together, two of the same individuals (whose calls and frequencies, from
    the same column of the pass, are computed once for both) and one of a subset, with the
    adaptive variance columns (whose sums, for dosages, come from one pass over the class sums):
    the same bits as each scanned alone."""
    from hlmm.adaptive import AdaptiveScore

    rng = np.random.default_rng(3)
    sub = rng.random(data["n"]) < 0.8
    a, b = default_model(data, name="a"), default_model(data, name="b", subset=sub)
    c = replace(a, name="c", y=a.y[::-1].copy())
    models = [replace(m, adaptive=AdaptiveScore.from_residuals(m.y)) for m in (a, b, c)]
    blk = block_of(data[kind])
    joint = build(HLMClassScanner, models).scan(blk)
    for model, out in zip(models, joint):
        alone = build(HLMClassScanner, [model]).scan(blk)[0]
        assert np.isfinite(out["var_adapt"]).sum() > 5
        for k in KEYS + ("n", "frequency", "status", "var_adapt", "var_se_adapt"):
            assert out[k].tobytes() == alone[k].tobytes(), k


def test_hlm_covariate_scanner__matches_reference_hard_and_dosage(data):
    m = covariate_model(data)
    for g in (data["g"], data["dos"]):
        blk = block_of(g)
        assert_same(build(HLMCovariateScanner, [m]).scan(blk)[0], build(ReferenceScanner, [m]).scan(blk)[0])


def test_hlmm_class_scanner__matches_reference(data):
    m = default_model(data, data["G"])
    blk = block_of(data["g"][:, :10])
    fast = build(HLMMClassScanner, [replace(m)]).scan(blk)[0]
    ref = build(ReferenceScanner, [m]).scan(blk)[0]
    assert_same(fast, ref, rtol=2e-5, min_ok=8)
    # dosages: whole-number variants by genotype classes, the others by the reference algorithm
    dos = data["dos"][:, :10].copy()
    dos[:, :3] = data["g"][:, :3]
    blk = block_of(dos)
    assert list(blk.integral_rows()[:4]) == [True, True, True, False]
    assert_same(build(HLMMClassScanner, [replace(m)]).scan(blk)[0], build(ReferenceScanner, [m]).scan(blk)[0],
                rtol=2e-5, min_ok=8)


@pytest.mark.parametrize("scanner", [HLMClassScanner, HLMCovariateScanner])
def test_robust_wald__sandwich_of_the_fit(data, scanner):
    m = default_model(data) if scanner is HLMClassScanner else covariate_model(data)
    blk = block_of(data["g"])
    out = build(scanner, [m], robust=True).scan(blk)[0]
    plain = build(scanner, [m]).scan(blk)[0]
    ref = build(ReferenceScanner, [m], robust=True).scan(blk)[0]
    assert_same(out, ref)
    for k in ("likelihood", "add", "var"):  # robust changes the standard errors only
        np.testing.assert_array_equal(out[k], plain[k])
    # and the reference equals a direct sandwich of the SNP's hetlm fit
    X, V = m.X, m.V
    j = 0
    called = ~np.isnan(data["g"][:, j])
    gc = data["g"][called, j] - data["g"][called, j].mean()
    Xl, Vl = np.column_stack([X[called], gc]), np.column_stack([V[called], gc])
    fit = hetlm.model(m.y[called], Xl, Vl).optimize_model()
    cov = hlm_sandwich(m.y[called], Xl, Vl, fit["alpha"], fit["beta"])
    np.testing.assert_allclose([out["add_se"][j], out["var_se"][j]],
                               np.sqrt([cov[Xl.shape[1] - 1, Xl.shape[1] - 1], cov[-1, -1]]), rtol=1e-6)


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("robust", [False, True])
def test_score_scanner__equals_dense_score_module(data, mixed, robust):
    m = default_model(data, data["G"] if mixed else None)
    blk = block_of(data["g"])
    out = build(ScoreScanner, [m], test="score", robust=robust).scan(blk)[0]
    assert (out["test"] == "score").all() and np.isnan(out["likelihood"]).all()
    null = score.HLMMNull(m.y, m.X, m.V, m.G, m.null.alpha, m.null.beta, m.null.h2) if mixed else \
        score.HLMNull(m.y, m.X, m.V, m.null.alpha, m.null.beta)
    ref = score.score_test(null, score.mean_impute(data["g"]), robust=robust)
    ok = out["status"] == STATUS["ok"]
    for k in ("add", "add_se", "var", "var_se", "av_chi2"):
        np.testing.assert_allclose(out[k][ok], ref[k][ok], rtol=1e-9, err_msg=k)


def test_score_scanner__exact_integer_products_from_a_bed_block(data, tmp_path):
    # packed .bed bytes -> bit-plane popcounts for G'g; against the dense floating-point product
    write_bed(str(tmp_path / "t"), data["g"])
    bed = open_bed(str(tmp_path / "t.bed"))
    m = default_model(data, data["G"])
    sc = build(ScoreScanner, [m], test="score")
    assert sc.forms[0] is not None
    out = sc.scan(bed.read_block(np.arange(data["n"]), np.arange(data["m"])))[0]
    null = score.HLMMNull(m.y, m.X, m.V, m.G, m.null.alpha, m.null.beta, m.null.h2)
    ref = score.score_test(null, score.mean_impute(data["g"]))
    ok = out["status"] == STATUS["ok"]
    for k in ("add", "add_se", "var", "var_se"):
        np.testing.assert_allclose(out[k][ok], ref[k][ok], rtol=1e-10, err_msg=k)


@pytest.mark.parametrize("mixed", [False, True])
def test_refit__rows_identical_to_wald_rows(data, mixed):
    m = default_model(data, data["G"] if mixed else None)
    blk = block_of(data["g"][:, :12])
    wald = make([replace(m)]).scan(blk)[0]
    out = make([replace(m)], test="score", refit=1.0).scan(blk)[0]
    refitted = out["test"] == "wald"
    assert 1 <= refitted.sum() < 12  # SNPs 0 and 1 have effects
    for k in KEYS + ("n", "frequency"):
        np.testing.assert_array_equal(out[k][refitted], wald[k][refitted])
    assert np.isnan(out["likelihood"][~refitted]).all()


def test_make_scanner__chooses_by_the_spec_and_refuses_robust_wald_mixed_models(data):
    assert isinstance(make([default_model(data)]), HLMClassScanner)
    assert isinstance(make([covariate_model(data)]), HLMCovariateScanner)
    assert isinstance(make([default_model(data, data["G"])]), HLMMClassScanner)
    assert isinstance(make([default_model(data, data["G"])], has_dosages=True), HLMMClassScanner)
    assert isinstance(make([covariate_model(data, data["G"])]), ReferenceScanner)
    assert isinstance(make([default_model(data)], engine="reference"), ReferenceScanner)
    assert isinstance(make([default_model(data)], test="score"), ScoreScanner)
    with pytest.raises(ValueError, match="--test score"):
        make([default_model(data, data["G"])], robust=True)
    with pytest.raises(ValueError, match="random effects"):
        make_scanner(ModelSpec(), [default_model(data, data["G"])])


def test_multiallelic_and_filtered_variants__rows_with_reasons(data):
    blk = block_of(data["g"][:, :4])
    blk.multiallelic = np.array([False, True, False, False])
    out = build(HLMClassScanner, [default_model(data)], min_maf=0.2).scan(blk)[0]
    assert out["status"][1] == STATUS["multiallelic"] and np.isnan(out["add"][1])
    maf = np.minimum(np.nanmean(data["g"][:, :4], 0) / 2, 1 - np.nanmean(data["g"][:, :4], 0) / 2)
    for j in (0, 2, 3):
        assert (out["status"][j] == STATUS["maf"]) == (maf[j] <= 0.2)


def test_block_take__subset_of_variants(data):
    blk = block_of(data["g"])
    sub = blk.take(np.array([2, 7]))
    assert isinstance(sub, GenotypeBlock) and list(sub.index) == [2, 7]
    np.testing.assert_array_equal(sub.values(), blk.values()[:, [2, 7]])


@pytest.mark.parametrize("mixed", [False, True])
def test_score_and_wald__rank_variants_alike(mixed):
    """Near the null the score and Wald statistics differ by O_p(n^-1/2) relative: on 240 variants at
    n = 4,000 (every twelfth with a small mean or variance effect) their Spearman rank correlations
    exceed 0.995 for add_t^2 and var_t^2 (measured at n = 20,000 on the tutorial: 0.9999, 0.9998)."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(77)
    n, m, l = 4000, 240, 40  # noqa: E741
    g = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    g[rng.random((n, m)) < 0.01] = np.nan
    raw = rng.binomial(2, 0.3, (n, l)).astype(float)
    G, _, gc, gs = random_effects_design(raw, return_scaling=True)
    gi = np.nan_to_num(g - np.nanmean(g, axis=0))
    mean_fx = np.where(np.arange(m) % 12 == 0, 0.05, 0.0)
    var_fx = np.where(np.arange(m) % 12 == 6, 0.08, 0.0)
    y = gi @ mean_fx + G @ rng.normal(0, 0.8, l) + rng.standard_normal(n) * np.exp(gi @ var_fx / 2)
    d = dict(n=n, y=y, gc=gc, gs=gs)
    model = default_model(d, G if mixed else None)
    blk = block_of(g)
    wald = make([replace(model)]).scan(blk)[0]
    sc = make([replace(model)], test="score").scan(blk)[0]
    for k in ("add", "var"):
        tw, ts = wald[k] / wald[f"{k}_se"], sc[k] / sc[f"{k}_se"]
        rho = spearmanr(tw**2, ts**2).statistic
        assert rho > 0.995, (k, rho)


def test_popcount_products__equal_integer_matrix_product():
    """Bit-plane popcounts give R'C exactly, missing codes (-1) counting 0, for n not a multiple of 64
    and numbers of test variants not a multiple of 4."""
    from hlmm.engines import _kernels_score

    rng = np.random.default_rng(5)
    n = 1000 + 37
    R = rng.integers(0, 3, (n, 9)).astype(np.int8)
    C = rng.integers(-1, 3, (7, n)).astype(np.int8)
    A, B = _kernels_score.bitplanes(np.ascontiguousarray(R.T))
    U, V = _kernels_score.bitplanes(C)
    want = R.T.astype(np.int64) @ np.where(C < 0, 0, C).T.astype(np.int64)
    np.testing.assert_array_equal(_kernels_score.popcount_products(A, B, U, V), want)


def test_column_basis__reproduces_dependent_columns_and_keeps_independent_ones():
    from hlmm.engines import column_basis

    rng = np.random.default_rng(6)
    x, z = rng.standard_normal(50), rng.standard_normal(50)
    A = np.column_stack([np.ones(50), 3 * np.ones(50), x, 2 * x - 1, z, x * z])
    basis, coef = column_basis(A)
    np.testing.assert_array_equal(basis, A[:, [0, 2, 4, 5]])
    np.testing.assert_allclose(basis @ coef, A, rtol=0, atol=1e-13)
    full = rng.standard_normal((50, 5))
    basis, coef = column_basis(full)
    np.testing.assert_array_equal(basis, full)
    np.testing.assert_array_equal(coef, np.eye(5))


@pytest.mark.parametrize("q", [3, 11])
def test_class_moments_packed__equal_numpy_class_sums(q):
    """Both kernels (plain for q <= 8, tiled above) give each class's column sums, for n not a
    multiple of 4, and agree with the decoded-codes kernel to the last bit, on all individuals and
    on a subset."""
    from hlmm.engines import _kernels_classes

    rng = np.random.default_rng(3)
    n, b = 1003, 19
    codes = rng.integers(-1, 3, (b, n)).astype(np.int8)
    # pack: 2 copies -> 0b00, missing -> 0b01, 1 copy -> 0b10, 0 copies -> 0b11
    bits = np.select([codes == 2, codes == -1, codes == 1], [0, 1, 2], 3).astype(np.uint8)
    padded = np.zeros((b, 4 * ((n + 3) // 4)), np.uint8)
    padded[:, :n] = bits
    packed = (padded[:, 0::4] | padded[:, 1::4] << 2 | padded[:, 2::4] << 4 | padded[:, 3::4] << 6).astype(np.uint8)
    Y = rng.standard_normal((n, q))
    got = _kernels_classes.class_moments_packed(packed, Y)
    for k, cls in enumerate((0, 1, 2, -1)):
        want = np.stack([Y[codes[j] == cls].sum(axis=0) for j in range(b)])
        np.testing.assert_allclose(got[:, k], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got, _kernels_classes.class_moments_codes(codes, Y, np.arange(n)))
    # a subset of the individuals: the decoded kernel over them (with their places in the file)
    # and the packed one over the file with zero rows for the others agree to the last bit
    keep = np.sort(rng.choice(n, 700, replace=False))
    Yz = np.zeros_like(Y)
    Yz[keep] = Y[keep]
    sub = _kernels_classes.class_moments_codes(np.ascontiguousarray(codes[:, keep]), np.ascontiguousarray(Y[keep]),
                                               keep)
    np.testing.assert_array_equal(sub, _kernels_classes.class_moments_packed(packed, Yz))
    for k, cls in enumerate((0, 1, 2, -1)):
        want = np.stack([Y[keep][codes[j, keep] == cls].sum(axis=0) for j in range(b)])
        np.testing.assert_allclose(sub[:, k], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1003, 1000, 7])
def test_pack_codes__bytes_of_numpy_packing_and_class_sums_of_the_decoded_kernel(n):
    """Hard calls of other files are packed as a .bed's bytes (hlmm.io._kernels.pack_codes), on
    all individuals and on a subset (the others as no copy), missing as -1 or pgenlib's -9: the
    bytes of a plain numpy packing, which decode back to the calls, and whose packed class sums
    are the decoded-codes kernel's to the last bit."""
    from hlmm.engines import _kernels_classes
    from hlmm.io._kernels import decode_packed, pack_codes

    rng = np.random.default_rng(n)
    b = 13
    for rows in (np.arange(n), np.sort(rng.choice(n, max(1, 2 * n // 3), replace=False))):
        codes = rng.integers(-1, 3, (b, len(rows))).astype(np.int8)
        given = np.where((codes < 0) & (rng.random(codes.shape) < 0.5), -9, codes).astype(np.int8)
        got = pack_codes(given, rows, n)
        bits = np.full((b, 4 * ((n + 3) // 4)), 3, np.uint8)  # no copy where not in rows
        bits[:, rows] = np.select([codes == 2, codes == -1, codes == 1], [0, 1, 2], 3)
        want = (bits[:, 0::4] | bits[:, 1::4] << 2 | bits[:, 2::4] << 4 | bits[:, 3::4] << 6).astype(np.uint8)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(decode_packed(got, rows, n), codes)
        Y = np.zeros((n, 3))
        Y[rows] = rng.standard_normal((len(rows), 3))
        np.testing.assert_array_equal(_kernels_classes.class_moments_packed(got, Y),
                                      _kernels_classes.class_moments_codes(codes, np.ascontiguousarray(Y[rows]), rows))


def _pack_codes(codes):
    """.bed bytes of hard calls (b, n), -1 missing: 2 copies 0b00, missing 0b01, 1 copy 0b10, 0 copies 0b11."""
    b, n = codes.shape
    bits = np.select([codes == 2, codes == -1, codes == 1], [0, 1, 2], 3).astype(np.uint8)
    padded = np.zeros((b, 4 * ((n + 3) // 4)), np.uint8)
    padded[:, :n] = bits
    return (padded[:, 0::4] | padded[:, 1::4] << 2 | padded[:, 2::4] << 4 | padded[:, 3::4] << 6).astype(np.uint8)


def _lane_sums(codes, Y):
    """numpy, in the kernels' documented order: per class, 8 sums over the rows i % 8 = 0..7, each
    added in increasing i (cumsum adds in order), combined ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))."""
    b, n = codes.shape
    out = np.zeros((b, 4, Y.shape[1]))
    for j in range(b):
        for k, cls in enumerate((0, 1, 2, -1)):
            lanes = []
            for lane in range(8):
                rows = np.flatnonzero(codes[j, lane::8] == cls) * 8 + lane
                lanes.append(np.cumsum(Y[rows], axis=0)[-1] if rows.size else np.zeros(Y.shape[1]))
            l0, l1, l2, l3, l4, l5, l6, l7 = lanes
            out[j, k] = ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
    return out


def test_compiled_class_sums__built_for_the_tests():
    """``make test`` installs the package with its C kernel (``_classsums.c``); without it the tests
    below would check the numba kernels alone."""
    import os

    from hlmm.engines import _kernels_classes

    assert _kernels_classes.COMPILED or os.environ.get("HLMM_NO_COMPILED")


@pytest.mark.parametrize("n", [1, 5, 8, 13, 1003, 2100])
@pytest.mark.parametrize("q", [1, 3, 6, 9])
def test_class_sums__every_kernel_adds_in_the_documented_order(n, q):
    """The compiled kernel (if built), the numba kernels (plain and tiled) and the decoded-codes
    kernel give the same sums as numpy adding in the documented order, to the last bit: for n not
    a multiple of 8, across the compiled kernel's chunks of 1,024 individuals (n = 2,100) and its
    groups of 8 variants (23), variants with and without missing calls (the compiled kernel skips
    the missing class of the latter), 1 to 9 columns (taken four at a time), one and two threads,
    a design in either layout, and packed bytes that are not contiguous."""
    import numba

    from hlmm.engines import _kernels_classes as K

    rng = np.random.default_rng(n * 10 + q)
    b = 23
    codes = rng.integers(0, 3, (b, n)).astype(np.int8)
    codes[::2][rng.random((len(codes[::2]), n)) < 0.05] = -1  # missing calls in every other variant
    packed = _pack_codes(codes)
    Y = rng.standard_normal((n, q))
    Y[rng.random(n) < 0.2] = 0.0  # individuals left out: zero rows
    want = _lane_sums(codes, Y)
    design = K.packed_design(n, q)
    design[:n] = Y
    got = K.class_moments_packed(packed, design)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(K.class_moments_packed(packed, Y), want)
    np.testing.assert_array_equal(K._class_moments_plain(packed, Y), want)
    np.testing.assert_array_equal(K._class_moments_tiled(packed, Y), want)
    np.testing.assert_array_equal(K.class_moments_codes(codes, Y, np.arange(n)), want)
    # every other variant, from a view of the bytes, on one thread and on two
    threads = numba.get_num_threads()
    try:
        for t in sorted({1, threads}):
            numba.set_num_threads(t)
            np.testing.assert_array_equal(K.class_moments_packed(packed[::2], design), want[::2])
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("n", [1, 5, 31, 33, 257, 1003, 2100])
def test_class_sums__columns_of_zeros_and_ones_counted_to_the_last_bit(n, monkeypatch):
    """Columns of zeros and ones (such as the inclusion indicator, whose class sums are the counts)
    are counted by set bits in the compiled library (hlmm_class_counts) rather than added: the
    sums of numpy adding in the documented order, and the class counts, to the last bit; for n
    across the tails of 32-individual words, variants with and without missing calls, an
    indicator with zeros (individuals left out), one of all ones, and other columns between and
    after them, on one thread and on two."""
    import numba

    from hlmm.engines import _kernels_classes as K

    rng = np.random.default_rng(n)
    b = 21
    codes = rng.integers(0, 3, (b, n)).astype(np.int8)
    codes[1::2][rng.random((len(codes[1::2]), n)) < 0.1] = -1
    packed = _pack_codes(codes)
    included = (rng.random(n) < 0.8).astype(float)
    y = rng.standard_normal(n) * included
    Y = np.column_stack([included, y, np.ones(n), y**2, included])
    want = _lane_sums(codes, Y)
    for k, cls in enumerate((0, 1, 2, -1)):
        np.testing.assert_array_equal(want[:, k, 0], ((codes == cls) & (included == 1)).sum(axis=1))
    design = K.packed_design(n, Y.shape[1])
    design[:n] = Y
    calls = []
    if K.COMPILED:
        counts = K.LIBRARY.hlmm_class_counts
        monkeypatch.setattr(K.LIBRARY, "hlmm_class_counts", lambda *a: (calls.append(a[4]), counts(*a)))
    threads = numba.get_num_threads()
    try:
        for t in sorted({1, threads}):
            numba.set_num_threads(t)
            np.testing.assert_array_equal(K.class_moments_packed(packed, design), want)
            np.testing.assert_array_equal(K.class_moments_packed(packed, Y), want)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(K._class_moments_plain(packed, Y), want)
    assert not K.COMPILED or sorted(set(calls)) == [0, 2, 4]


def test_class_sums__same_rows_with_and_without_the_compiled_kernel(data, tmp_path):
    """Whole hlmm_chr processes on a .bed with missing calls, Wald and score, in blocks of 7 variants,
    with the compiled kernel and with ``HLMM_NO_COMPILED=1`` (the numba kernels): the same output,
    byte for byte."""
    import gzip
    import os
    import subprocess
    import sys
    from pathlib import Path

    rng = np.random.default_rng(11)
    n, m = 301, 40
    g = rng.binomial(2, rng.uniform(0.05, 0.5, m), (n, m)).astype(float)
    g[rng.random((n, m)) < 0.02] = np.nan
    write_bed(str(tmp_path / "g"), g)
    y = rng.standard_normal(n)
    (tmp_path / "p.txt").write_text("".join(f"f{i} i{i} {v}\n" for i, v in enumerate(y)))
    script = Path(__file__).resolve().parents[1] / "bin" / "hlmm_chr.py"
    outputs = {}
    for compiled in (True, False):
        env = {k: v for k, v in os.environ.items() if k != "HLMM_NO_COMPILED"}
        if not compiled:
            env["HLMM_NO_COMPILED"] = "1"
        for test in ("wald", "score"):
            out = tmp_path / f"{test}_{compiled}"
            argv = [str(tmp_path / "g.bed"), "0", str(m), str(tmp_path / "p.txt"), str(out), "--quiet", "--test", test,
                    "--block_size", "7"]
            r = subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            with gzip.open(f"{out}.models.gz", "rt") as f:
                outputs[test, compiled] = f.read()
    for test in ("wald", "score"):
        assert outputs[test, True].count("\n") == m + 1
        assert outputs[test, True] == outputs[test, False]


def test_dosage_classes__equal_numpy_groups_on_and_off_the_grid():
    """Each variant's classes are its distinct called dosages, with the column sums of their
    individuals, whether its dosages lie on the 1/16384 grid (binned) or not (sorted), in one block;
    with or without a class (dosage 0, or the missing calls) of at least a quarter of the individuals."""
    from hlmm.engines import _kernels_classes

    rng = np.random.default_rng(11)
    n, q = 503, 3
    on = rng.integers(0, 2 * 16384 + 1, n) / 16384
    off = on + 1e-3 * rng.random(n)
    few = rng.integers(0, 3, n).astype(float)
    # imputation-like: most at dosage 0 (the largest class, summed as the totals less the others)
    zeros = np.where(rng.random(n) < 0.8, 0.0, on)
    D = np.stack([on, off, few, zeros, on.copy()])
    D[rng.random(D.shape) < 0.05] = np.nan
    D[4, rng.random(n) < 0.6] = np.nan  # missing calls the largest class
    Y = rng.standard_normal((n, q))
    offsets, values, sums, missing = _kernels_classes.dosage_classes(D, Y, 16384)
    for j in range(D.shape[0]):
        called = ~np.isnan(D[j])
        want_vals, inv = np.unique(D[j, called], return_inverse=True)
        seg = slice(offsets[j], offsets[j + 1])
        np.testing.assert_array_equal(values[seg], want_vals)
        want = np.zeros((want_vals.size, q))
        np.add.at(want, inv, Y[called])
        np.testing.assert_allclose(sums[seg], want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(missing[j], Y[~called].sum(axis=0), rtol=1e-12, atol=1e-12)
    # per part (columns shared between parts, out of order, alone): each part's own C-contiguous
    # arrays, its columns' sums to the last bit
    parts = [[0, 1], [0, 2], [2], [2, 1, 0]]
    o2, v2, part_sums, part_missing = _kernels_classes.dosage_classes(D, Y, 16384, parts)
    np.testing.assert_array_equal(o2, offsets)
    np.testing.assert_array_equal(v2, values)
    for p, s, m in zip(parts, part_sums, part_missing):
        assert s.flags.c_contiguous and s.shape == (offsets[-1], len(p)) and m.shape == (D.shape[0], len(p))
        np.testing.assert_array_equal(s, sums[:, p])
        np.testing.assert_array_equal(m, missing[:, p])


def _assert_class_sums_in_individual_order(D, Y, parts, result):
    """``dosage_classes(D, Y, ..., parts)``'s ``result`` is numpy's: each variant's distinct called
    dosages, and every part's sums over each of them and over no call added in increasing
    individual (``np.add.at``, one running sum per class), to the last bit."""
    offsets, values, sums, missing = result
    x = D.astype(np.float64)
    q = Y.shape[1]
    for j in range(x.shape[0]):
        called = x[j] >= 0
        want_vals, inv = np.unique(x[j, called], return_inverse=True)
        seg = slice(offsets[j], offsets[j + 1])
        np.testing.assert_array_equal(values[seg], want_vals)
        want = np.zeros((want_vals.size, q))
        np.add.at(want, inv, Y[called])
        lost = np.zeros((1, q))
        np.add.at(lost, np.zeros((~called).sum(), dtype=np.intp), Y[~called])
        for p, s, m in zip(parts, sums, missing):
            assert s[seg].tobytes() == want[:, p].tobytes()
            assert m[j].tobytes() == lost[0, p].tobytes()


def _assert_same_bits(result, other):
    """Two results of ``dosage_classes`` (arrays, or lists of them) are the same bytes."""
    for a, c in zip(result, other):
        for u, v in zip(a if isinstance(a, list) else [a], c if isinstance(c, list) else [c]):
            assert u.tobytes() == v.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("q", [4, 8, 21, 70])
def test_dosage_classes__compiled_adds_each_class_in_order_like_numba(dtype, q, monkeypatch):
    """The compiled dosage class sums (if built; 4, 8, 21 and 70 columns: the wider than 8 summed
    eight columns at a time, 21 not a whole number of them, and a part of 70 columns wider than the
    kernel writes at a time; float32 and float64 dosages) give
    numpy's sums added in increasing individual (``np.add.at``), and numba's kernel's, to the last
    bit: variants on the grid (fine, 8-bit-like and hard calls, most at 0, 1 and 2) and off it,
    with missing calls (NaN, negative) and a variant without calls, n not a multiple of 4, one and
    two threads; 23 variants, more than one group of variants of a range of the kernel."""
    import numba

    from hlmm.engines import _kernels_classes

    rng = np.random.default_rng(q)
    n, b = 4003, 23
    g = rng.binomial(2, rng.uniform(0.05, 0.5, (b, 1)), (b, n)).astype(float)
    noisy = rng.random((b, n)) < 0.3
    D = np.where(noisy, np.clip(g + rng.normal(0, 0.1, (b, n)), 0, 2), g)
    D[:5] = rng.integers(0, 2 * 16384 + 1, (5, n)) / 16384  # about 3,600 classes: in chunks if q > 8
    D[: b // 2] = np.round(D[: b // 2] * 16384) / 16384  # the .pgen grid
    D[b // 2 : -4] = np.round(D[b // 2 : -4] * 255) / 255 * 16384 // 1 / 16384  # few distinct values
    D[-4] = g[-4] + 1e-3 * noisy[-4]  # off the grid
    D[-3] = np.nan
    D[rng.random((b, n)) < 0.02] = np.nan
    D[1, :3] = -9.0
    D = D.astype(dtype)
    Y = rng.standard_normal((n, q))
    Y[:, 0] = 1.0
    Y[::5, 1] = -0.0
    parts = [[0, 1, 2], [0, q - 1], [q - 1, 2]] + ([list(range(q))[::-1]] if q > 64 else [])
    threads = numba.get_num_threads()
    got = {}
    calls = []
    compiled = _kernels_classes._classes_compiled
    monkeypatch.setattr(_kernels_classes, "_classes_compiled", lambda *a: calls.append(1) or compiled(*a))
    chunks = []
    chunked = _kernels_classes._column_chunks
    monkeypatch.setattr(_kernels_classes, "_column_chunks", lambda Y: chunks.append(1) or chunked(Y))
    try:
        for t in sorted({1, threads}):
            numba.set_num_threads(t)
            got[t] = _kernels_classes.dosage_classes(D, Y, 16384, parts)
        assert len(calls) == (len(got) if _kernels_classes.COMPILED else 0)
        assert len(chunks) == (len(got) if _kernels_classes.COMPILED and q > 8 else 0)
        monkeypatch.setattr(_kernels_classes, "_dosage_classes_c", None)
        numba_kernel = _kernels_classes.dosage_classes(D, Y, 16384, parts)
    finally:
        numba.set_num_threads(threads)
    _assert_class_sums_in_individual_order(D, Y, parts, got[threads])
    for other in (*got.values(), numba_kernel):
        _assert_same_bits(other, got[threads])


def test_dosage_classes__chunks_of_eight_columns_in_groups_of_one_two_and_four_like_numpy():
    """A wide design (21 columns) over variants of about 10,000 classes (two variants' sums of a
    chunk of 8 columns fit the kernel's cache, three do not), 20,000 (one at a time) and 3,000
    (four), with a variant off the grid between them and missing calls: numpy's sums added in
    increasing individual, and numba's kernel's, to the last bit."""
    from hlmm.engines import _kernels_classes

    if not _kernels_classes.COMPILED:
        pytest.skip("the compiled library is not built here")
    rng = np.random.default_rng(21)
    n, q = 40_000, 21
    sizes = [10_000, 10_000, 20_000, 10_000, 3_000, 3_000, 3_000, 3_000, 10_000]
    D = np.stack([rng.choice(rng.choice(2 * 16384 + 1, k, replace=False), n) / 16384 for k in sizes])
    D[3] += 1e-3  # off the grid, between variants on it
    D[rng.random(D.shape) < 0.01] = np.nan
    D = D.astype(np.float32)
    Y = rng.standard_normal((n, q))
    Y[:, 0] = 1.0
    parts = [[0, 1 + 2 * t, 2 + 2 * t] for t in range(10)]
    result = _kernels_classes.dosage_classes(D, Y, 16384, parts)
    _assert_class_sums_in_individual_order(D, Y, parts, result)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_kernels_classes, "_dosage_classes_c", None)
        numba_kernel = _kernels_classes.dosage_classes(D, Y, 16384, parts)
    _assert_same_bits(numba_kernel, result)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dosage_classes__chunks_of_squares_like_numpy_and_numba(dtype, monkeypatch):
    """A wide design whose columns include squares of others (10 phenotypes' 1, y and y ** 2, with
    -0.0, a square column before its column, and a column that is a square but for one -0.0 or
    one last bit) is summed from chunks of four columns and their squares (fewer bytes, as many
    passes): numpy's sums added in increasing individual, numba's kernel's, and those of the
    chunks of the columns themselves, to the last bit. Variants of about 10,000 classes (groups of
    two), 20,000 (one) and 3,000 (four), a variant off the grid between them, missing calls; one
    and two threads, and two blocks of a range each."""
    import numba

    from hlmm.engines import _kernels_classes

    if not _kernels_classes.COMPILED:
        pytest.skip("the compiled library is not built here")
    rng = np.random.default_rng(44)
    n = 30_001
    sizes = [10_000, 10_000, 20_000, 10_000, 3_000, 3_000, 3_000, 3_000, 10_000, 9_000]
    D = np.stack([rng.choice(rng.choice(2 * 16384 + 1, k, replace=False), n) / 16384 for k in sizes])
    D[3] += 1e-3  # off the grid, between variants on it
    D[:, :7] = 1.0  # hard calls shared
    D[rng.random(D.shape) < 0.01] = np.nan
    D[5, ::3] = -9.0
    D = D.astype(dtype)
    y = rng.standard_normal((n, 10))
    y[::7, 2] = -0.0  # its squares +0.0, y * y to the last bit
    y[5, 7] = 0.0
    z = rng.standard_normal(n)
    columns = [np.ones(n)] + [c for t in range(10) for c in (y[:, t], y[:, t] ** 2)]
    columns += [y[:, 9] ** 2, y[:, 9] * 1.5, z**2, z]  # a square again; a square before its column
    Y = np.ascontiguousarray(np.column_stack(columns))
    Y[5, 16] = -0.0  # == y * y = +0.0, but not to the last bit: not a square
    Y[100, 18] = np.nextafter(Y[100, 18], 0)  # one last bit off: not a square
    q = Y.shape[1]
    parts = [[0, 1 + 2 * t, 2 + 2 * t] for t in range(10)] + [[21, 22, 0], [17, 18], [23, 24, 16]]
    made = _kernels_classes._square_chunks(Y)
    assert made is not None
    Yt, place = made
    assert Yt.shape == (4, n, 4)  # 16 of the 25 columns read (4 passes, as 25 columns 8 at a time)
    squares = [c for c in range(q) if place[c] % 8 >= 4]
    assert squares == [2, 4, 6, 8, 10, 12, 14, 20, 21]
    assert place[21] == place[20]
    got = {}
    threads = numba.get_num_threads()
    try:
        for t in sorted({1, threads}):
            numba.set_num_threads(t)
            got[t] = _kernels_classes.dosage_classes(D, Y, 16384, parts)
        halves = [_kernels_classes.dosage_classes(D[h], Y, 16384, parts) for h in (slice(0, 5), slice(5, None))]
        monkeypatch.setattr(_kernels_classes, "_square_chunks", lambda Y: None)
        plain = _kernels_classes.dosage_classes(D, Y, 16384, parts)
        monkeypatch.setattr(_kernels_classes, "_dosage_classes_c", None)
        numba_kernel = _kernels_classes.dosage_classes(D, Y, 16384, parts)
    finally:
        numba.set_num_threads(threads)
    _assert_class_sums_in_individual_order(D, Y, parts, got[threads])
    for other in (*got.values(), plain, numba_kernel):
        _assert_same_bits(other, got[threads])
    offsets, sums = got[threads][0], got[threads][2]
    for h, half in zip((slice(0, 5), slice(5, None)), halves):
        o = offsets[h.start] if h.start else 0
        for u, v in zip(half[2], sums):
            assert u.tobytes() == v[o : o + len(u)].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("den", [16384, 1024, 255])
def test_dosage_classes__compiled_grid_verdict_equals_numba_at_the_edges(dtype, den):
    """The compiled kernel's verdict (on the grid or not) and class counts equal numba's
    (``_grid_counts``, in double precision) for dosages at the edges: within and beyond 1e-6 of a
    grid unit (the float32 values on each side of it), half-way between grid values, at and past
    the grid's end 2 den + 1, -0.0, subnormal, infinite and huge values, each in the first eight
    dosages, the middle, and the padded last n % 8. float32 with a power-of-two ``den`` takes the
    single-precision pass of the kernel; the others its double-precision pass."""
    from hlmm.engines import _kernels_classes

    if not _kernels_classes.COMPILED:
        pytest.skip("the compiled library is not built here")
    tol32 = float(np.float32(1e-6))  # the largest float32 below 1e-6
    above32 = float(np.nextafter(np.float32(1e-6), np.float32(1)))
    edges = [-0.0, 1e-45, 3e-39, np.inf, -np.inf, 1e30, -1e-30, 2.0, 2 + 1 / den, (2 * den + 0.5) / den,
             (2 * den + 1) / den, (2 * den + 2) / den, 0.5 / den, (7 + 0.5) / den, (2 * den - 0.5) / den]
    for k in (0, 1, 3, den, 2 * den):
        for t in (0.5e-6, 0.999e-6, 1e-6, 1.001e-6, 2e-6, tol32, above32, 1e-5):
            edges += [(k + t) / den, (k - t) / den]
    rng = np.random.default_rng(den)
    n = 1003
    base = rng.integers(0, 2 * den + 1, n) / den
    rows = []
    for e in edges:
        for at in (2, 500, n - 1):
            row = base.copy()
            row[at] = e
            rows.append(row)
    D = np.array(rows).astype(dtype)
    on_grid = np.zeros(D.shape[0], dtype=np.uint8)
    counts = np.zeros(D.shape[0], dtype=np.int64)
    _kernels_classes._classes_compiled(D, den, on_grid, counts)
    want_grid, want_counts = _kernels_classes._grid_counts(D, den)
    assert not want_grid.all()
    assert want_grid.any() or (dtype == np.float32 and den == 255)  # k / 255 in float32: off by 1e-5 units
    np.testing.assert_array_equal(on_grid.astype(bool), want_grid)
    np.testing.assert_array_equal(counts[want_grid], want_counts[want_grid])


def test_dosage_classes__column_chunks_of_a_wide_design_made_once_per_design():
    """A design wider than COMPILED_DOSAGE_COLUMNS is summed from its columns eight at a time
    (zeros past the last), made once for the same design array and again for another."""
    from hlmm.engines import _kernels_classes

    if not _kernels_classes.COMPILED:
        pytest.skip("the compiled library is not built here")
    rng = np.random.default_rng(11)
    Y = rng.standard_normal((50, 17))
    chunks = _kernels_classes._column_chunks(Y)
    assert chunks.shape == (3, 50, 8) and chunks.flags.c_contiguous
    np.testing.assert_array_equal(np.concatenate(list(chunks), axis=1)[:, :17], Y)
    assert not chunks[2, :, 1:].any()
    assert _kernels_classes._column_chunks(Y) is chunks
    other = Y.copy()
    assert _kernels_classes._column_chunks(other) is not chunks
    assert _kernels_classes._column_chunks(Y) is chunks  # (the last two designs are kept)


def test_dosage_classes__sums_reuse_a_buffer_only_when_no_result_refers_to_it():
    """The sums' buffer of a thread is reused for its next call only once every view of the last
    results is gone: results kept while the next block is summed keep their numbers."""
    from hlmm.engines import _kernels_classes

    rng = np.random.default_rng(4)
    n = 3000
    D = (rng.integers(0, 2 * 16384 + 1, (6, n)) / 16384).astype(np.float32)
    E = (rng.integers(0, 2 * 16384 + 1, (6, n)) / 16384).astype(np.float32)
    Y = rng.standard_normal((n, 4))
    parts = [[0, 1], [2, 3]]
    first = _kernels_classes.dosage_classes(D, Y, 16384, parts)
    want = [s.copy() for s in first[2]]
    kept = first[2][1]  # one view of the first results, kept
    del first
    second = _kernels_classes.dosage_classes(E, Y, 16384, parts)
    assert not any(np.shares_memory(s, kept) for s in second[2])
    np.testing.assert_array_equal(kept, want[1])
    del kept
    third = _kernels_classes.dosage_classes(D, Y, 16384, parts)
    for s, w in zip(third[2], want):
        np.testing.assert_array_equal(s, w)
    if _kernels_classes.COMPILED:  # (numba's kernel without it: the same buffer, by the same rule)
        assert not any(np.shares_memory(s, t) for s in second[2] for t in third[2])
    del second
    fourth = _kernels_classes.dosage_classes(E, Y, 16384, parts)
    assert not any(np.shares_memory(s, t) for s in fourth[2] for t in third[2])
    address = fourth[2][0].__array_interface__["data"][0]
    del third, fourth
    fifth = _kernels_classes.dosage_classes(D, Y, 16384, parts)
    assert fifth[2][0].__array_interface__["data"][0] == address  # nothing referred to it: reused
    for s, w in zip(fifth[2], want):
        np.testing.assert_array_equal(s, w)


def test_dosage_classes__kept_buffers_are_freed_when_their_thread_ends(monkeypatch):
    """The compiled dosage class kernel's buffers (results and work areas), kept by each calling
    thread for its next blocks, are freed when that thread ends: every address it kept, once."""
    import gc
    import threading

    from hlmm.engines import _kernels_classes

    if not _kernels_classes.COMPILED:
        pytest.skip("the compiled library is not built here")
    freed = []
    real = _kernels_classes._free
    monkeypatch.setattr(_kernels_classes, "_free", lambda p: (freed.append(p), real(p)))
    rng = np.random.default_rng(5)
    D = (rng.integers(0, 3, (9, 501)) + (rng.random((9, 501)) < 0.3) * rng.integers(0, 100, (9, 501)) / 16384)
    D = np.minimum(D, 2.0).astype(np.float32)
    Y = rng.standard_normal((501, 4))
    kept = []

    def scan():
        _kernels_classes.dosage_classes(D, Y, 16384)
        kept.extend(int(a) for a in _kernels_classes._buffers.kept.state[:, [0, 2, 4]].ravel() if a)

    t = threading.Thread(target=scan)
    t.start()
    t.join()
    del t
    gc.collect()
    assert kept and sorted(freed) == sorted(kept)


def test_newton_fits__numpy_over_hard_calls_equals_compiled_over_distinct_dosages(data):
    """The two Newton fits of the default-mode HLM (numpy over padded classes, numba per variant
    over its distinct dosages) give the same fits for the same data: hard calls as codes, and as
    whole-number dosages."""
    m = default_model(data)
    codes = block_of(data["g"])
    assert codes.dosages is None
    dos = GenotypeBlock(codes.index, codes.rows, dosages=np.ascontiguousarray(data["g"].T), denominator=1)
    a = build(HLMClassScanner, [m]).scan(codes)[0]
    b = build(HLMClassScanner, [m]).scan(dos)[0]
    ok = a["status"] == STATUS["ok"]
    assert ok.sum() >= 20
    np.testing.assert_array_equal(a["status"], b["status"])
    for k in KEYS:
        np.testing.assert_allclose(a[k][ok], b[k][ok], rtol=1e-9, err_msg=k)


@pytest.mark.parametrize("lanes", [8, 4])
def test_compiled_exp__within_an_ulp_of_libm_and_its_limits(lanes):
    """The compiled library's vector exponential (``exp_8`` and ``exp_4``, in its Newton fits over
    dosage classes): within an ulp of libm's ``exp`` over the whole finite range, subnormal results
    included, +inf above and +0 below libm's limits, exact at 0; the 8-lane and 4-lane ones the
    same to the last bit."""
    from hlmm.engines import _kernels_classes

    lib = _kernels_classes.LIBRARY
    if lib is None:
        pytest.skip("the compiled library is not built")
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-760, 720, 400_000), rng.uniform(-40, 40, 400_000),
                        rng.uniform(-746, -707, 100_000), rng.uniform(705, 710, 100_000),
                        [0.0, -0.0, 1e-300, -1e-300, 709.782712893384, 709.7827128933841, -745.1332191019412,
                         -745.1332191019413, -708.39, 710.0, -746.0, 1e4, -1e4, np.inf, -np.inf]])
    y, other = np.empty_like(x), np.empty_like(x)
    lib.hlmm_exp(x.ctypes.data, y.ctypes.data, x.size, lanes)
    lib.hlmm_exp(x.ctypes.data, other.ctypes.data, x.size, 12 - lanes)
    np.testing.assert_array_equal(y, other)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    finite = np.isfinite(want) & (want > 0)
    ulps = np.abs(y[finite] - want[finite]) / np.spacing(want[finite])
    assert ulps.max() <= 1.0
    assert (ulps == 0).mean() > 0.8
    np.testing.assert_array_equal(y[~finite], want[~finite])  # +inf and +0 where libm's are
    assert y[x == 0].tolist() == [1.0, 1.0]


def _ragged_classes(rng, b):
    """Per-variant distinct dosages, counts and sums of y and y^2 (and a third column) of b variants:
    the 1/16384 grid, 8-bit-like, hard calls, and edge cases (one class, n <= 4, classes of count 0,
    one class of nonzero count among several)."""
    n = 3000
    offsets, values, counts, sums = [0], [], [], []
    for j in range(b):
        g = rng.binomial(2, rng.uniform(0.05, 0.5), n).astype(float)
        noisy = rng.random(n) < 0.3
        d = np.where(noisy, np.clip(g + rng.normal(0, 0.1, n), 0, 2), g)
        grid = (16384, 255, 1)[j % 3]
        d = np.round(d * grid) / grid
        y = 0.3 * d + rng.standard_normal(n) * np.exp(0.5 * (0.2 * j / b) * d)
        if j == b - 1:
            d[:] = 1.0  # one class
        if j == b - 2:
            d, y = d[:4], y[:4]  # n <= 4
        v, inv = np.unique(d, return_inverse=True)
        c = np.bincount(inv).astype(float)
        s = np.column_stack([np.bincount(inv, y), np.bincount(inv, y * y), np.bincount(inv, y**3)])
        if j % 4 == 2:  # classes whose individuals lack the phenotype (of another model's subset)
            empty = rng.random(v.size) < 0.2
            c[empty], s[empty] = 0.0, 0.0
        if j == b - 3:  # one class with individuals of the phenotype, the others without
            c[1:], s[1:] = 0.0, 0.0
        offsets.append(offsets[-1] + v.size)
        values.append(v)
        counts.append(c)
        sums.append(s)
    return np.array(offsets), np.concatenate(values), np.concatenate(counts), np.concatenate(sums)


@pytest.mark.parametrize("lanes", [8, 4])
@pytest.mark.parametrize("moment_classes", [10**9, 0])
def test_fit_dosage_classes__compiled_equals_numba_fits_on_any_thread_count(lanes, moment_classes, monkeypatch):
    """The Newton fits over distinct dosages by the compiled library (eight classes at a time, its
    own exponential; in one 8-wide vector or two 4-wide halves; by power sums, for every variant,
    with moment_classes 0) and by numba: the same variants fitted and failed, estimates within 1e-9
    (relative, or of the standard error for the location a0 near 0); the same to the last bit on
    one thread and on two, with the sums strided (columns of one array, with the counts or without)
    or contiguous, and in either width."""
    import numba

    from hlmm import _optimize
    from hlmm.engines import _kernels_classes, _kernels_hlm

    if _kernels_classes.LIBRARY is None:
        pytest.skip("the compiled library is not built")
    monkeypatch.setattr(_kernels_hlm, "MOMENT_CLASSES", moment_classes)
    offsets, values, counts, sums = _ragged_classes(np.random.default_rng(8), 29)
    rules = (200, _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL, _optimize.LOCAL_RTOL, _optimize.F_NOISE_RTOL)
    want = _kernels_hlm.fit_dosage_classes_numba(offsets, values, counts, sums[:, 0], sums[:, 1], *rules)
    threads = numba.get_num_threads()
    monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", 12 - lanes)
    got = [_kernels_hlm.fit_dosage_classes(offsets, values, counts, sums[:, 0], sums[:, 1], *rules)]
    monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", lanes)
    try:
        for t in sorted({1, 2, threads}):
            numba.set_num_threads(t)
            got.append(_kernels_hlm.fit_dosage_classes(offsets, values, counts, sums[:, 0], sums[:, 1], *rules))
            got.append(_kernels_hlm.fit_dosage_classes(offsets, values, counts, sums[:, 0].copy(), sums[:, 1].copy(),
                                                       *rules))
            whole = np.column_stack([counts, sums, np.full(len(counts), np.nan)])  # counts too a column
            got.append(_kernels_hlm.fit_dosage_classes(offsets, values, whole[:, 0], whole[:, 1], whole[:, 2], *rules))
    finally:
        numba.set_num_threads(threads)
    for other in got[1:]:
        np.testing.assert_array_equal(other, got[0])
    fit = got[0]
    np.testing.assert_array_equal(fit[:, 7], want[:, 7])
    np.testing.assert_array_equal(np.isnan(fit), np.isnan(want))
    ok = want[:, 7] == 1
    assert ok.sum() >= 24 and fit[-1, 7] == 0 and fit[-2, 7] == 0 and fit[-3, 7] == 0
    for k in (0, 2, 3, 4, 5, 6):
        np.testing.assert_allclose(fit[ok, k], want[ok, k], rtol=1e-9, err_msg=str(k))
    np.testing.assert_allclose(fit[ok, 1], want[ok, 1], rtol=0, atol=1e-9 * np.sqrt(want[ok, 5]).max())


@pytest.mark.parametrize("lanes", [8, 4])
@pytest.mark.parametrize("moment_classes", [10**9, 100])
def test_fit_dosage_classes__phenotypes_of_the_same_counts_in_one_call_as_each_alone(lanes, moment_classes,
                                                                                     monkeypatch):
    """Several phenotypes of the same counts fitted in one call (their classes, keys and centred
    dosages made once per variant): each the same to the last bit as in a call of its own, and
    within 1e-9 of numba's fits; with tables and without, by power sums past 100 classes and not,
    on one thread and on two (whose ranges split the variants elsewhere), the sums strided or
    contiguous. The phenotypes: the first model's, affine transforms of it and one of all zeros,
    whose fits fail between the others."""
    import numba

    from hlmm import _optimize
    from hlmm.engines import _kernels_classes, _kernels_hlm

    if _kernels_classes.LIBRARY is None:
        pytest.skip("the compiled library is not built")
    offsets, values, counts, sums = _ragged_classes(np.random.default_rng(8), 29)
    rules = (200, _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL, _optimize.LOCAL_RTOL, _optimize.F_NOISE_RTOL)
    s1, s2 = sums[:, 0], sums[:, 1]
    # y' = a y + b: sums a s1 + b c and a^2 s2 + 2 a b s1 + b^2 c
    phenotypes = [(s1, s2)] + [(a * s1 + b * counts, a * a * s2 + 2 * a * b * s1 + b * b * counts)
                               for a, b in ((0.5, 0.0), (-2.0, 3.0), (0.0, 0.0), (1.0, 10.0))]
    whole = np.column_stack([counts] + [c for p in phenotypes for c in p])  # (as the scanner's columns)
    monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", lanes)
    monkeypatch.setattr(_kernels_hlm, "MOMENT_CLASSES", moment_classes)  # (100: power sums past hard calls)
    threads = numba.get_num_threads()
    try:
        for table_classes in (300, 10**9):
            monkeypatch.setattr(_kernels_hlm, "TABLE_CLASSES", table_classes)
            alone = [_kernels_hlm.fit_dosage_classes(offsets, values, counts, a, c, *rules) for a, c in phenotypes]
            for t in sorted({1, 2, threads}):
                numba.set_num_threads(t)
                for cnt, s1s, s2s in ((counts, [a for a, _ in phenotypes], [c for _, c in phenotypes]),
                                      (whole[:, 0], list(whole[:, 1::2].T), list(whole[:, 2::2].T))):
                    together = _kernels_hlm.fit_dosage_classes(offsets, values, cnt, s1s, s2s, *rules)
                    assert together.shape == (len(phenotypes), 29, 8)
                    for got, want in zip(together, alone):
                        np.testing.assert_array_equal(got, want)
    finally:
        numba.set_num_threads(threads)
    for p, (a, c) in enumerate(phenotypes):
        want = _kernels_hlm.fit_dosage_classes_numba(offsets, values, counts, a, c, *rules)
        fit = alone[p]
        np.testing.assert_array_equal(fit[:, 7], want[:, 7])
        ok = want[:, 7] == 1
        if not ok.any():
            continue
        for k in (0, 2, 3, 4, 5, 6):
            np.testing.assert_allclose(fit[ok, k], want[ok, k], rtol=1e-9, err_msg=f"{p} {k}")
        np.testing.assert_allclose(fit[ok, 1], want[ok, 1], rtol=0, atol=1e-9 * np.sqrt(want[ok, 5]).max())
    fitted = np.array([f[:, 7] for f in alone])
    assert fitted[3].sum() == 0 and (fitted[[0, 1, 2, 4]].sum(axis=1) >= 24).all()  # all zeros: none fitted
    assert _kernels_hlm.fit_dosage_classes(offsets, values, counts, [], [], *rules).shape == (0, 29, 8)


@pytest.mark.parametrize("lanes", [8, 4])
def test_fit_dosage_classes__table_weights_on_the_grid_only_and_within_1e12_of_the_direct_fits(lanes, monkeypatch):
    """The compiled fits' weights from tables (variants of at least ``TABLE_CLASSES`` classes, all on
    the 1/16384 grid): estimates within 1e-12 (relative) of the fits with an exponential a class,
    the same variants fitted; the variants off the grid (8-bit dosages) or below the threshold the
    same to the last bit as without tables; either width the same bits."""
    from hlmm import _optimize
    from hlmm.engines import _kernels_classes, _kernels_hlm

    if _kernels_classes.LIBRARY is None:
        pytest.skip("the compiled library is not built")
    offsets, values, counts, sums = _ragged_classes(np.random.default_rng(8), 29)
    rules = (200, _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL, _optimize.LOCAL_RTOL, _optimize.F_NOISE_RTOL)
    sizes = np.diff(offsets)
    grid = np.arange(29) % 3 == 0  # _ragged_classes: 1/16384, 255, 1 in turn
    monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", lanes)

    def fit(table_classes):
        monkeypatch.setattr(_kernels_hlm, "TABLE_CLASSES", table_classes)
        return _kernels_hlm.fit_dosage_classes(offsets, values, counts, sums[:, 0], sums[:, 1], *rules)

    direct = fit(10**9)
    np.testing.assert_array_equal(direct, fit(_kernels_hlm.TABLE_CLASSES))  # (all below 1,024 classes here)
    threshold = 300
    assert (sizes[grid] >= threshold).sum() >= 8 and (sizes[~grid] < threshold).all()
    for table_classes in (threshold, 0):
        tables = fit(table_classes)
        monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", 12 - lanes)
        np.testing.assert_array_equal(fit(table_classes), tables)
        monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", lanes)
        used = (sizes >= table_classes) & np.array([np.all(values[offsets[j]:offsets[j + 1]] * 16384 % 1 == 0)
                                                     for j in range(29)])
        assert used[grid & (sizes >= threshold)].all() and not used[1:26:3].any()  # (the last three: edge cases)
        np.testing.assert_array_equal(tables[~used], direct[~used])
        np.testing.assert_array_equal(tables[:, 7], direct[:, 7])
        ok = used & (direct[:, 7] == 1)
        assert ok.sum() >= 8 and (tables[ok] != direct[ok]).any()  # the tables were used
        for k in (0, 2, 3, 4, 5, 6):
            np.testing.assert_allclose(tables[ok, k], direct[ok, k], rtol=1e-12, err_msg=str(k))
        np.testing.assert_allclose(tables[ok, 1], direct[ok, 1], rtol=0, atol=1e-12 * np.sqrt(direct[ok, 5]).max())


@pytest.mark.parametrize("lanes", [8, 4])
def test_fit_dosage_classes__power_sums_within_1e9_of_the_direct_fits_and_of_numba(lanes, monkeypatch):
    """The compiled fits by power sums (variants of at least ``MOMENT_CLASSES`` classes, on the
    1/16384 grid or off it), against the same fits with a pass of the classes per evaluation and
    against numba's: the same variants fitted, estimates within 1e-9 (F 1e-11; relative, or of the
    standard error for a0, a1 and b1 near 0). The variants: variance effects b1 from 0 to 1.5 (past
    |b1| max|g| = 0.3 the series does not reach, and the evaluations there are the direct ones),
    dosages on the grid and continuous, classes without individuals, means far from 0; either width
    the same bits, and the series used (bits differ)."""
    from hlmm import _optimize
    from hlmm.engines import _kernels_classes, _kernels_hlm

    if _kernels_classes.LIBRARY is None:
        pytest.skip("the compiled library is not built")
    rng = np.random.default_rng(21)
    n, offsets, values, counts, sums = 20000, [0], [], [], []
    effects = [0.0, 0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 0.05, 0.1, 0.0]
    for j, b1 in enumerate(effects):
        g = rng.binomial(2, rng.uniform(0.05, 0.5), n).astype(float)
        d = np.clip(g + rng.normal(0, 0.15, n) * (rng.random(n) < 0.4), 0, 2)
        d = d if j % 3 == 2 else np.round(d * 16384) / 16384  # continuous, else the .pgen grid
        y = (5.0 if j == 9 else 0.0) + 0.2 * d + rng.standard_normal(n) * np.exp(0.5 * b1 * d)
        v, inv = np.unique(d, return_inverse=True)
        c = np.bincount(inv).astype(float)
        s = np.column_stack([np.bincount(inv, y), np.bincount(inv, y * y)])
        if j % 4 == 1:  # classes without individuals of the phenotype
            empty = rng.random(v.size) < 0.2
            c[empty], s[empty] = 0.0, 0.0
        offsets.append(offsets[-1] + v.size)
        values.append(v)
        counts.append(c)
        sums.append(s)
    offsets, values = np.array(offsets), np.concatenate(values)
    counts, sums = np.concatenate(counts), np.concatenate(sums)
    assert np.diff(offsets).min() >= _kernels_hlm.MOMENT_CLASSES
    rules = (200, _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL, _optimize.LOCAL_RTOL, _optimize.F_NOISE_RTOL)
    monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", lanes)

    def fit(moment_classes):
        monkeypatch.setattr(_kernels_hlm, "MOMENT_CLASSES", moment_classes)
        return _kernels_hlm.fit_dosage_classes(offsets, values, counts, sums[:, 0], sums[:, 1], *rules)

    threshold = _kernels_hlm.MOMENT_CLASSES
    moments, direct = fit(threshold), fit(10**9)
    numba_fits = _kernels_hlm.fit_dosage_classes_numba(offsets, values, counts, sums[:, 0], sums[:, 1], *rules)
    monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", 12 - lanes)
    np.testing.assert_array_equal(fit(threshold), moments)
    # the columns apart (each contiguous: an interleaved copy of them) as side by side in rows
    np.testing.assert_array_equal(_kernels_hlm.fit_dosage_classes(offsets, values, counts, sums[:, 0].copy(),
                                                                  sums[:, 1].copy(), *rules), moments)
    assert (moments[:, 7] == 1).all() and (direct[:, 7] == 1).all() and (numba_fits[:, 7] == 1).all()
    assert (moments[:, :7] != direct[:, :7]).any(axis=1).sum() >= 8  # the series was used
    assert np.abs(moments[:, 4]).max() > 1.0  # (a variant past the series' reach)
    for want in (direct, numba_fits):
        np.testing.assert_allclose(moments[:, 0], want[:, 0], rtol=1e-11)
        np.testing.assert_allclose(moments[:, 3], want[:, 3], rtol=1e-9)
        for k, se in ((1, 5), (2, 5), (4, 6)):
            np.testing.assert_array_less(np.abs(moments[:, k] - want[:, k]), 1e-9 * np.sqrt(want[:, se]))
        for k in (5, 6):
            np.testing.assert_allclose(moments[:, k], want[:, k], rtol=1e-9)


@pytest.mark.parametrize("b1", [0.0, 0.3])
def test_fit_dosage_classes__power_sums_reach_the_dense_likelihoods_maximum(b1):
    """The compiled fit by power sums of a variant of ~4,700 classes on the 1/16384 grid, against a
    generic optimiser (BFGS, then Nelder-Mead) on the likelihood summed over the individuals:
    -2 log L no higher than the optimiser's and within 1e-12 of it, the estimates within 1e-5 of a
    standard error (the optimiser's own precision)."""
    from scipy.optimize import minimize

    from hlmm import _optimize
    from hlmm.engines import _kernels_classes, _kernels_hlm

    if _kernels_classes.LIBRARY is None:
        pytest.skip("the compiled library is not built")
    rng = np.random.default_rng(5)
    n = 20000
    d = np.clip(rng.binomial(2, 0.3, n) + rng.normal(0, 0.15, n) * (rng.random(n) < 0.4), 0, 2)
    d = np.round(d * 16384) / 16384
    y = 0.2 * d + rng.standard_normal(n) * np.exp(0.5 * b1 * d)
    v, inv = np.unique(d, return_inverse=True)
    assert v.size >= _kernels_hlm.MOMENT_CLASSES
    rules = (200, _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL, _optimize.LOCAL_RTOL, _optimize.F_NOISE_RTOL)
    fit = _kernels_hlm.fit_dosage_classes(np.array([0, v.size]), v, np.bincount(inv).astype(float),
                                          np.bincount(inv, y), np.bincount(inv, y * y), *rules)[0]
    g = d - d.mean()

    def dense(p):  # -2 log L - n log 2 pi, individual by individual
        eta = p[2] + p[3] * g
        return np.sum(eta + (y - p[0] - p[1] * g) ** 2 * np.exp(-eta))

    best = minimize(dense, [y.mean(), 0.0, np.log(y.var()), 0.0], method="BFGS", options={"gtol": 1e-10})
    best = minimize(dense, best.x, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-12, "maxiter": 20000})
    assert fit[7] == 1 and fit[0] <= best.fun * (1 + 1e-14)
    np.testing.assert_allclose(fit[0], best.fun, rtol=1e-12)
    assert abs(fit[2] - best.x[1]) < 1e-5 * np.sqrt(fit[5]) and abs(fit[4] - best.x[3]) < 1e-5 * np.sqrt(fit[6])


@pytest.mark.parametrize("lanes", [8, 4])
def test_fit_weights__tables_within_a_few_ulps_of_exp_and_exponentials_outside_their_rule(lanes):
    """The weights exp(-(b0 + b1 (g - gbar))) of the compiled fits over classes on the 1/16384 grid:
    from tables (|b1| <= 50, |b0 - b1 gbar| <= 600) within a few ulps of the exact exponential (long
    double), plus the argument's own rounding (|argument| ulps, as an exponential a class); outside
    that rule the fits' exponential of each class, the same bits as hlmm_exp; either width the
    same bits; no tables for dosages off the grid or outside 0 .. 2."""
    from hlmm.engines import _kernels_classes

    lib = _kernels_classes.LIBRARY
    if lib is None:
        pytest.skip("the compiled library is not built")
    m = np.unique(np.concatenate([np.arange(0, 32769, 7), [0, 127, 128, 129, 16383, 16384, 32640, 32767, 32768],
                                  np.random.default_rng(4).integers(0, 32769, 3000)]))
    g = m / 16384
    gbar = 0.6180339887
    for b0, b1, tables in [(0.3, 0.2, 1), (-4.0, -1.7, 1), (2.0, 49.0, 1), (-590.0, 3.0, 1), (0.1, -50.0, 1),
                           (0.0, 50.5, 0), (601.0, 0.0, 0), (300.0, -480.0, 0), (-1e3, 2.0, 0)]:
        w, other = np.empty(g.size), np.empty(g.size)
        assert lib.hlmm_fit_weights(b0, b1, gbar, g.ctypes.data, g.size, lanes, w.ctypes.data) == tables
        assert lib.hlmm_fit_weights(b0, b1, gbar, g.ctypes.data, g.size, 12 - lanes, other.ctypes.data) == tables
        np.testing.assert_array_equal(w, other)
        x = -(b0 + b1 * (g - gbar))
        if tables:
            exact = np.exp(-(np.longdouble(b0) + np.longdouble(b1) * (g.astype(np.longdouble) - np.longdouble(gbar))))
            ulps = np.abs(w - exact) / np.spacing(exact.astype(float))
            assert (ulps <= 4 + np.abs(x) + abs(b0 - b1 * gbar)).all(), (b0, b1, ulps.max())
        else:
            want = np.empty(g.size)
            lib.hlmm_exp(x.ctypes.data, want.ctypes.data, g.size, lanes)
            np.testing.assert_array_equal(w, want)
    for off in ([0.0, 0.1, 1.0], [0.0, -1 / 16384, 1.0], [0.0, 2.0 + 1 / 16384], [0.0, np.nan]):
        off = np.array(off)  # (off the grid, or outside 0 .. 2: no tables)
        assert lib.hlmm_fit_weights(0.3, 0.2, gbar, off.ctypes.data, off.size, lanes, w.ctypes.data) == -1


def test_centred_power_sums__equal_numpy_on_and_off_the_grid_with_missing_and_a_row_subset():
    """The dosage score kernel: calls, summed dosages and sum_i g_i^m B_i (m = 1, 2, 3) of the dosages
    centred over the calls (missing: NaN or negative, mean-imputed) equal numpy's, for dosages on
    the 1/16384 grid, off it, hard calls, all missing, over a subset of the block's rows."""
    from hlmm.engines import _kernels_score

    rng = np.random.default_rng(5)
    N, r = 611, 4
    on = rng.integers(0, 2 * 16384 + 1, N) / 16384
    off = np.clip(on + 1e-3 * rng.standard_normal(N), 0, 2)
    hard = rng.integers(0, 3, N).astype(float)
    D = np.stack([on, off, hard, np.full(N, np.nan), on[::-1].copy()])
    D[rng.random(D.shape) < 0.05] = np.nan
    D[1, :7] = -1.0  # a negative dosage is a missing call
    rows = np.sort(rng.choice(N, 500, replace=False)).astype(np.int64)
    B = rng.standard_normal((len(rows), r))
    n_called, a1, S = _kernels_score.centred_power_sums(D, rows, B)
    for j in range(D.shape[0]):
        d = D[j, rows]
        called = d >= 0
        assert n_called[j] == called.sum()
        if not called.any():
            assert a1[j] == 0 and np.all(S[j] == 0)
            continue
        np.testing.assert_allclose(a1[j], d[called].sum(), rtol=1e-13)
        g = np.where(called, d - d[called].mean(), 0.0)
        for k in (1, 2, 3):
            np.testing.assert_allclose(S[j, k - 1], (g**k) @ B, rtol=1e-10, atol=1e-10)


def _lanes(x):
    """numpy, in the kernels' documented order: 8 sums over the rows i % 8 = 0..7 of x (n, ...),
    each added in increasing i (cumsum adds in order), combined ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))."""
    lanes = [np.cumsum(x[lane::8], axis=0)[-1] if len(x[lane::8]) else np.zeros(x.shape[1:]) for lane in range(8)]
    l0, l1, l2, l3, l4, l5, l6, l7 = lanes
    return ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))


@pytest.mark.parametrize("lanes", [8, 4])
@pytest.mark.parametrize("n", [1, 7, 9, 500, 2003])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centred_power_sums__compiled_and_numba_add_in_the_documented_order(n, dtype, lanes, monkeypatch):
    """The compiled power sums (if built; in 8-wide vectors or 4-wide halves) and numba's give
    numpy's sums in the documented order, to the last bit, each product rounded on its own: float32
    and float64 dosages with missing calls (NaN, negative) and a variant without calls, all rows or
    a subset, 1 to 9 columns (padding zero columns included), one and two threads; every power
    asked of every column (the default), or a highest power per column, in decreasing order (the
    compiled kernel's own loops) or not, whose other sums are zero. 11 variants and up to 2,006
    rows: with more than four columns, more than one group of variants and one chunk of rows of
    the compiled kernel (and of the halves' 512 rows), and two or three chunks of four columns."""
    import numba

    from hlmm.engines import _kernels_classes, _kernels_score

    if _kernels_classes.LIBRARY is None and lanes == 4:
        pytest.skip("the compiled library is not built")
    monkeypatch.setattr(_kernels_classes, "VECTOR_LANES", lanes)

    rng = np.random.default_rng(n)
    N = n + 3
    b = 11
    D = np.clip(rng.binomial(2, 0.3, (b, N)) + rng.normal(0, 0.1, (b, N)) * (rng.random((b, N)) < 0.3), 0, 2)
    D[rng.random((b, N)) < 0.05] = np.nan
    D[1, :2] = -1.0
    D[2] = np.nan
    D = D.astype(dtype)
    threads = numba.get_num_threads()
    for rows in (np.arange(N), np.sort(rng.choice(N, n, replace=False))):
        rows = rows.astype(np.int64)
        for r in (1, 4, 6, 9):
            B = rng.standard_normal((len(rows), r))
            if r == 4:
                B[:, 3] = 0.0  # a padding column
            x = D[:, rows].astype(np.float64)
            want_a1 = np.zeros(b)
            want_S = np.zeros((b, 3, r))
            for j in range(b):
                ok = x[j] >= 0
                want_a1[j] = _lanes(np.where(ok, x[j], 0.0)[:, None])[0]
                if ok.any():
                    g = np.where(ok, x[j] - want_a1[j] / ok.sum(), 0.0)
                    want_S[j] = np.stack([_lanes(gm[:, None] * B) for gm in (g, g * g, g * g * g)])
            decreasing = np.sort(rng.integers(1, 4, r))[::-1]
            for powers in (None, decreasing, rng.integers(1, 4, r)):
                want = want_S.copy()
                if powers is not None:
                    want[:, np.arange(3)[:, None] >= np.asarray(powers)[None, :]] = 0.0
                try:
                    for t in sorted({1, threads}):
                        numba.set_num_threads(t)
                        for got in (_kernels_score.centred_power_sums(D, rows, B, powers),
                                    _kernels_score._centred_power_sums(D, rows, B, np.full(r, 3) if powers is None
                                                                       else np.asarray(powers, np.int64))):
                            np.testing.assert_array_equal(got[0], (x >= 0).sum(1))
                            np.testing.assert_array_equal(got[1], want_a1)
                            np.testing.assert_array_equal(got[2], want)
                finally:
                    numba.set_num_threads(threads)


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("robust", [False, True])
def test_score_scanner__dosage_blocks_equal_dense_score_module_at_any_block_boundary(data, mixed, robust):
    """Dosages (off the hard-call grid, with missing calls) go through the compiled dosage pass: the
    rows equal the dense score module's on mean-imputed dosages, whatever the block boundaries."""
    m = default_model(data, data["G"] if mixed else None)
    sc = build(ScoreScanner, [m], test="score", robust=robust)
    null = score.HLMMNull(m.y, m.X, m.V, m.G, m.null.alpha, m.null.beta, m.null.h2) if mixed else \
        score.HLMNull(m.y, m.X, m.V, m.null.alpha, m.null.beta)
    ref = score.score_test(null, score.mean_impute(data["dos"]), robust=robust)
    for bounds in ((0, data["m"]), (0, 7), (7, 8), (8, data["m"])):
        idx = np.arange(*bounds)
        out = sc.scan(block_of(data["dos"], idx))[0]
        ok = out["status"] == STATUS["ok"]
        assert ok.sum() >= min(5, len(idx) - 1)
        for k in ("add", "add_se", "var", "var_se", "av_chi2"):
            np.testing.assert_allclose(out[k][ok], ref[k][idx][ok], rtol=1e-9, err_msg=k)


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("adaptive", [False, True])
def test_score_scanner__block_read_in_parts_equals_the_block_whole(data, mixed, adaptive):
    """A block of dosages read in parts (as the runner reads dosages, ``scan_parts``) gives the rows
    of the block scanned whole, to the last bit: the statistics are computed once from the parts'
    sums (HLM), or per part and joined (random effects). Parts of 1, 6 and the rest, with a
    multiallelic variant, missing calls and a variant with no variation in the last part."""
    dos = data["dos"].copy()
    dos[:, -1] = 1.0  # monomorphic: filtered by MAF, in the last part
    G = data["G"] if mixed else None
    models = [default_model(data, G, name="a"), default_model(dict(data, y=data["y"] ** 2), G, name="b")]
    if adaptive:  # (the adaptive test of the null residuals, as the pipeline sets it)
        from hlmm.adaptive import AdaptiveScore

        for m in models:
            z = (m.y - m.X @ m.null.alpha) * np.exp(-(m.V @ m.null.beta) / 2)
            m.adaptive = AdaptiveScore.from_residuals(z, V=m.V)
    sc = build(ScoreScanner, models, test="score", robust=True)
    whole = block_of(dos)
    whole.multiallelic = np.zeros(data["m"], dtype=bool)
    whole.multiallelic[3] = True
    want = sc.scan(whole)
    parts = [np.arange(0, 1), np.arange(1, 7), np.arange(7, data["m"])]
    read = []

    def reader(part):
        read.append(part)
        return whole.take(part)

    got = sc.scan_parts(reader, parts)
    assert len(read) == 3
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        assert g["problems"] == w["problems"]
        for k in g:
            if k != "problems":
                np.testing.assert_array_equal(g[k], w[k], err_msg=k)
        assert g["status"][3] == STATUS["multiallelic"] and g["status"][-1] != STATUS["ok"]
        assert (g["status"] == STATUS["ok"]).sum() >= data["m"] - 3


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("robust", [False, True])
def test_score_scanner__dosage_sums_skipped_change_no_row(data, mixed, robust):
    """The dosage pass skips the sums ``sum g^m B[:, k]`` that no statistic reads (those whose
    coefficients are rounding): the rows equal those of a pass computing all 3 powers of every column,
    to 1e-13 (phenotypes side by side, one of the HLM's on a subset)."""
    from hlmm.engines import score as score_engine

    sub = np.random.default_rng(8).random(data["n"]) < 0.9
    G = data["G"] if mixed else None
    models = [default_model(data, G, name="a"), default_model(dict(data, y=data["y"] ** 2), G, name="b")]
    if not mixed:  # (the fixture's random effects are of all individuals)
        models.append(default_model(data, name="c", subset=sub))
    blk = block_of(data["dos"])
    sc = build(ScoreScanner, models, test="score", robust=robust)
    assert any((p < 3).any() for p in sc.powers)  # something is skipped
    got = sc.scan(blk)
    full = build(ScoreScanner, models, test="score", robust=robust)
    full.powers = [np.full_like(p, 3) for p in full.powers]
    want = full.scan(blk)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g["status"], w["status"])
        for k in ("add", "add_se", "var", "var_se", "av_chi2", "var_adapt", "var_se_adapt"):
            if k in g:
                np.testing.assert_allclose(g[k], w[k], rtol=1e-13, atol=0, err_msg=k)
    assert score_engine.COEFFICIENT_TOL < 1e-12  # far below column_basis's own 1e-12 reconstruction


def test_column_powers__highest_power_each_basis_column_is_read_at():
    """A basis column counts for a power when a column read at it has a coefficient on it beyond
    rounding: exact multiples and least-squares noise (1e-17) do not make it count."""
    from hlmm.engines.classes import column_basis
    from hlmm.engines.score import _column_powers

    rng = np.random.default_rng(3)
    n = 200
    one, e, t = np.ones(n), rng.standard_normal(n), rng.standard_normal(n)
    # C = [1 | 2e, t | 3 + 0e, e | 5] read at powers 1: (1, 2), 2: (3, 4), 3: (5,)
    A = np.column_stack([one, 2 * e, t, 3 * one, e, 5 * one])
    basis, coef = column_basis(A)
    assert basis.shape[1] == 3  # 1, e, t
    np.testing.assert_array_equal(_column_powers(coef, basis, [[1, 2], [3, 4], [5]]), [3, 2, 1])
    np.testing.assert_array_equal(_column_powers(coef, basis, [[1, 2], [], []]), [1, 1, 1])
    np.testing.assert_array_equal(_column_powers(coef, basis, [[], [2], [2]]), [1, 1, 3])
    # a coefficient of 1e-17 (as a least-squares fit leaves) does not count, 1e-6 does
    noisy = coef.copy()
    noisy[2, 3] = 1e-17
    np.testing.assert_array_equal(_column_powers(noisy, basis, [[], [3], []]), [2, 1, 1])
    noisy[2, 3] = 1e-6
    np.testing.assert_array_equal(_column_powers(noisy, basis, [[], [3], []]), [2, 1, 2])


def test_score_scanner__dosages_of_several_phenotypes_equal_separate_scans(data):
    """Phenotypes of the same individuals share the compiled dosage pass; another subset has its own:
    every model's rows equal its scan alone."""
    rng = np.random.default_rng(4)
    sub = rng.random(data["n"]) < 0.8
    models = [default_model(data, name="a"), default_model(data, name="b", subset=sub),
              default_model(dict(data, y=data["y"] ** 2), name="c")]
    blk = block_of(data["dos"])
    joint = build(ScoreScanner, models, test="score").scan(blk)
    for model, out in zip(models, joint):
        alone = build(ScoreScanner, [model], test="score").scan(blk)[0]
        for k in ("add", "add_se", "var", "var_se", "n", "frequency", "status"):
            np.testing.assert_allclose(out[k], alone[k], rtol=1e-13, err_msg=k)


def test_centred_segment_sums__equal_numpy_over_ragged_classes():
    """The adaptive test's per-variant sums over a block's distinct dosages (ragged classes, one
    variant without calls) equal the numpy computation over the individuals."""
    from hlmm.engines import _kernels_classes

    rng = np.random.default_rng(12)
    n = 401
    D = np.stack([rng.integers(0, 2 * 16384 + 1, n) / 16384, rng.integers(0, 3, n).astype(float),
                  np.full(n, np.nan), np.where(rng.random(n) < 0.7, 0.0, rng.random(n) * 2)])
    D[:, rng.random(n) < 0.05] = np.nan
    h = rng.standard_normal(n)
    offsets, values, sums, _ = _kernels_classes.dosage_classes(D, np.column_stack([np.ones(n), h]), 16384)
    out = _kernels_classes.centred_segment_sums(offsets, values, sums[:, 0].copy(), sums[:, 1].copy())
    for j in range(D.shape[0]):
        called = ~np.isnan(D[j])
        if not called.any():
            assert np.isnan(out[j]).all()
            continue
        g = D[j, called] - D[j, called].mean()
        np.testing.assert_allclose(out[j], [g @ h[called], g @ g, np.sum(g**3)], rtol=1e-10, atol=1e-10)
    # strided columns (as the engines pass them) give the same sums as contiguous copies
    np.testing.assert_array_equal(_kernels_classes.centred_segment_sums(offsets, values, sums[:, 0], sums[:, 1]), out)


def test_centred_combinations_sums__compiled_equal_numpy_and_numba_to_the_last_bit():
    """The adaptive test's centred sums of combinations of class sums, for 1 to 11 phenotypes of the
    same counts (phenotypes of 2, 3 and 5 terms, mixed; sums contiguous and strided), by the
    compiled library: within 1e-10 of numpy over the individuals (on and off the 1/16384 grid, with
    missing calls and a variant without), and the same to the last bit as numba's loop, on one
    thread and on two (the ranges of variants split between them)."""
    import numba

    from hlmm.engines import _kernels_classes

    rng = np.random.default_rng(21)
    n, b = 523, 13
    D = np.where(rng.random((b, n)) < 0.6, rng.integers(0, 3, (b, n)).astype(float),
                 rng.integers(0, 2 * 16384 + 1, (b, n)) / 16384)
    D[1::3] = np.where(rng.random((len(D[1::3]), n)) < 0.5, D[1::3], rng.random((len(D[1::3]), n)) * 2)  # off grid
    D[rng.random((b, n)) < 0.05] = np.nan
    D[6] = np.nan
    Y = rng.standard_normal((n, 11))
    widths = [3, 5, 3, 3, 2, 3, 5, 5, 3, 3, 3]
    cols = [np.ones(n)] + [Y[:, t] ** p for t in range(11) for p in range(1, widths[t])]
    parts, at = [], 1
    for w in widths:
        parts.append([0] + list(range(at, at + w - 1)))
        at += w - 1
    offsets, values, Ss, _ = _kernels_classes.dosage_classes(D, np.column_stack(cols), 16384, parts)
    Ss = [S if t % 4 else np.column_stack([S, np.zeros(len(S))])[:, :S.shape[1]] for t, S in enumerate(Ss)]
    assert not Ss[0].flags.c_contiguous and Ss[1].flags.c_contiguous
    coefs = [rng.standard_normal(w) for w in widths]
    ns = _kernels_classes.segment_count_sums(offsets, np.ascontiguousarray(Ss[0][:, 0]), values)
    for T in (1, 2, 4, 5, 11):
        # (numba's takes a tuple of arrays of one layout: contiguous copies)
        want = _kernels_classes.centred_combinations_sums_numba(
            offsets, values, tuple(np.ascontiguousarray(S) for S in Ss[:T]), tuple(coefs[:T]), ns)
        threads = numba.get_num_threads()
        try:
            for th in sorted({1, 2, threads}):
                numba.set_num_threads(th)
                got = _kernels_classes.centred_combinations_sums(offsets, values, Ss[:T], coefs[:T], ns)
                assert got.shape == (T, b, 3) and got.tobytes() == want.tobytes(), (T, th)
        finally:
            numba.set_num_threads(threads)
    for t in range(11):
        for j in range(b):
            called = ~np.isnan(D[j])
            if not called.any():
                assert np.isnan(got[t, j]).all()
                continue
            g = D[j, called] - D[j, called].mean()
            h = np.column_stack([np.ones(n)] + [Y[:, t] ** p for p in range(1, widths[t])])[called] @ coefs[t]
            np.testing.assert_allclose(got[t, j], [g @ h, g @ g, np.sum(g**3)], rtol=1e-10, atol=1e-10)


def test_segment_count_sums_and_combine_columns__equal_numpy():
    """Per variant over its ragged classes, the calls and the copies of A1 (counts and counts times
    values, added in class order as numpy's reduction of them is here); a combination of a few
    columns of per-class sums, term by term: the same to the last bit as the numpy expressions."""
    from hlmm.engines import _kernels_classes
    from hlmm.engines.classes import ClassMoments, _combination

    rng = np.random.default_rng(13)
    n = 611
    D = np.stack([rng.integers(0, 2 * 16384 + 1, n) / 16384, np.full(n, np.nan),
                  np.where(rng.random(n) < 0.7, 0.0, rng.random(n) * 2), rng.integers(0, 3, n).astype(float)])
    D[:, rng.random(n) < 0.05] = np.nan
    Y = rng.standard_normal((n, 3)) * [1.0, 3.0, 0.1]
    Y[:, 0] = 1.0
    offsets, values, sums, missing = _kernels_classes.dosage_classes(D, Y, 16384)
    got = _kernels_classes.segment_count_sums(offsets, sums[:, 0], values)
    for j in range(D.shape[0]):
        seg = slice(offsets[j], offsets[j + 1])
        n_j, a1_j = 0.0, 0.0
        for c, v in zip(sums[seg, 0], values[seg]):
            n_j, a1_j = n_j + c, a1_j + c * v
        assert got[j, 0] == n_j and got[j, 1] == a1_j
        called = ~np.isnan(D[j])
        assert n_j == called.sum() and np.isclose(a1_j, D[j, called].sum(), rtol=1e-12)
    mom = ClassMoments(sums[:, 0], sums[:, 1:], values, missing[:, 0], offsets)
    np.testing.assert_array_equal(mom.n_called, np.rint(got[:, 0]).astype(np.int64))
    np.testing.assert_array_equal(mom.a1_copies, got[:, 1])
    coef = np.array([0.7, -1.3, 2.9])
    want = (sums[:, 0] * coef[0] + sums[:, 1] * coef[1]) + sums[:, 2] * coef[2]
    np.testing.assert_array_equal(_combination(sums, coef), want)
    np.testing.assert_array_equal(_combination(sums[None], coef)[0], want)  # padded layout: numpy
    # the adaptive test's centred sums of the combination, in one pass: the same bits as in two
    two = _kernels_classes.centred_segment_sums(offsets, values, sums[:, 0], want)
    assert np.isnan(two[1]).all() and np.isfinite(two[[0, 2, 3]]).all()
    one = _kernels_classes.centred_combinations_sums(offsets, values, (sums,), (coef,), got)[0]
    assert one.tobytes() == two.tobytes()
    # several phenotypes of the same counts in one pass: each the same bits as alone
    other = sums.copy()
    other[:, 1:] = rng.standard_normal((sums.shape[0], 2))
    coef2 = np.array([-0.2, 0.5, 1.1])
    many = _kernels_classes.centred_combinations_sums(offsets, values, (sums, other, sums), (coef, coef2, coef2),
                                                      got)
    assert many.shape == (3, D.shape[0], 3)
    assert many[0].tobytes() == one.tobytes()
    alone = [_kernels_classes.centred_combinations_sums(offsets, values, (S,), (c,), got)[0]
             for S, c in ((other, coef2), (sums, coef2))]
    assert many[1].tobytes() == alone[0].tobytes()
    assert many[2].tobytes() == alone[1].tobytes()
    fused = ClassMoments(sums[:, 0], sums[:, 1:], values, missing[:, 0], offsets, None, (sums, coef))
    assert np.stack(fused.extra_centred_sums(), axis=1).tobytes() == two.tobytes()
    plain = ClassMoments(sums[:, 0], sums[:, 1:], values, missing[:, 0], offsets, want)
    assert np.stack(plain.extra_centred_sums(), axis=1).tobytes() == two.tobytes()
    assert ClassMoments(sums[:, 0], sums[:, 1:], values, missing[:, 0], offsets).extra_centred_sums() is None


@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_openmp_threads_wait_passively_unless_the_user_says(given):
    """``import hlmm`` sets OMP_WAIT_POLICY=PASSIVE before numba loads its OpenMP layer (whose
    spinning threads otherwise slow down the .pgen decoding and compiled-sum threads; see
    hlmm/__init__.py), and keeps a value the user set; numba's parallel kernels (``decode_packed``)
    run after it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = ("import os, numpy as np, hlmm\n"
            "from hlmm.io._kernels import decode_packed\n"
            "c = decode_packed(np.zeros((3, 1), np.uint8), np.arange(4), 4); assert (c == 2).all()\n"
            "print(os.environ['OMP_WAIT_POLICY'])\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (given or "PASSIVE")


def test_threads_by_work__small_calls_on_one_thread_same_numbers_threads_restored(monkeypatch):
    """A kernel given little work runs with one numba thread, and the caller's count is restored
    after it, even when it raises; the numbers are those of the kernel on every thread (each
    variant alone)."""
    import numba

    from hlmm.engines import _kernels_classes as kc

    rng = np.random.default_rng(21)
    b, per = 300, 7
    offsets = np.arange(b + 1) * per
    counts = rng.integers(0, 50, b * per).astype(float)
    values, hsums = rng.random(b * per) * 2, rng.standard_normal(b * per)
    seen = []
    spy = kc.threads_by_work(lambda *a: 1)(
        lambda *a: (seen.append(numba.get_num_threads()), kc.centred_segment_sums.kernel(*a))[1])
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        want = kc.centred_segment_sums.kernel(offsets, values, counts, hsums)  # on 2 threads
        for work in (kc.PARALLEL_WORK + 1, 0):  # above and below: threaded, then one thread
            monkeypatch.setattr(kc, "PARALLEL_WORK", work)
            np.testing.assert_array_equal(kc.centred_segment_sums(offsets, values, counts, hsums), want)
            np.testing.assert_array_equal(kc.segment_count_sums(offsets, counts, values),
                                          kc.segment_count_sums.kernel(offsets, counts, values))
            assert numba.get_num_threads() == 2
        monkeypatch.setattr(kc, "PARALLEL_WORK", 10)
        spy(offsets, values, counts, hsums)
        assert seen == [1] and numba.get_num_threads() == 2
        with pytest.raises(numba.core.errors.TypingError):
            kc.centred_segment_sums(offsets, "not an array", counts, hsums)
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("mixed", [False, True])
def test_score_scanner__keeps_the_basis_not_the_per_individual_columns(data, mixed):
    """The scanner builds each null's per-individual columns (13 of n for the HLM) for their basis
    and does not keep them, nor leaves them cached in the null: 104 MB for 10 phenotypes at
    n = 100,000. (Its rows are checked against the dense score module above.)"""
    m = default_model(data, data["G"] if mixed else None)
    sc = build(ScoreScanner, [m], test="score", robust=True)
    assert not hasattr(sc, "columns") and sc.nulls[0]._p._columns == {}
    assert list(sc.widths[0]) == [c.shape[1] for c in sc.nulls[0].columns(True)]


def test_score_scanner__mixed_models_share_gtg_in_batches_and_equal_the_dense_score_module(data, monkeypatch):
    """With random effects, ``G' D^-1 g`` is formed once for the phenotypes sharing G and gathered
    over the parts of a block in batches: with batches of 4 variants (flushed within parts), parts
    of hard calls (exact integer products) between parts of dosages, and a phenotype on a subset of
    the individuals (its own G), every phenotype's rows equal the dense score module's."""
    from hlmm.engines import score as score_engine

    monkeypatch.setattr(score_engine, "PRODUCT_VALUES", 4 * data["n"])
    geno = data["dos"].copy()
    geno[:, 9:15] = data["g"][:, 9:15]  # a part of hard calls
    sub = np.ones(data["n"], dtype=bool)
    sub[::7] = False
    models = [default_model(data, data["G"], name="a"),
              default_model(dict(data, y=data["y"] ** 2), data["G"], name="b"),
              default_model(data, data["G"][sub], name="c", subset=sub)]
    sc = build(ScoreScanner, models, test="score", robust=False)
    assert sorted(map(sorted, sc.design_groups())) == [[0, 1], [2]]
    whole = block_of(geno)
    parts = [np.arange(0, 3), np.arange(3, 9), np.arange(9, 15), np.arange(15, data["m"])]
    got = sc.scan_parts(whole.take, parts)
    for _, members in sc._dosage_groups():  # the joint bases of the power sums: built once
        assert sc._joint_basis(members) is sc._joint_basis(members)
    for m, out in zip(models, got):
        rows = m.subset
        null = score.HLMMNull(m.y, m.X, m.V, m.G, m.null.alpha, m.null.beta, m.null.h2)
        ref = score.score_test(null, score.mean_impute(geno[rows]))
        ok = out["status"] == STATUS["ok"]
        assert ok.sum() >= data["m"] - 2
        for k in ("add", "add_se", "var", "var_se", "av_chi2"):
            np.testing.assert_allclose(out[k][ok], ref[k][ok], rtol=1e-9, err_msg=f"{m.name} {k}")
    # hard calls (codes) with a design not in integer form: the floating-point products of codes
    hard = [models[0], replace(models[0], name="d", G=data["G"].copy(), G_center=None, G_scale=None)]
    sc = build(ScoreScanner, hard, test="score", robust=False)
    assert sc.forms[0] is not None and sc.forms[1] is None
    block = block_of(data["g"])
    assert block.dosages is None
    for m, out in zip(hard, sc.scan_parts(block.take, [np.arange(0, 10), np.arange(10, data["m"])])):
        null = score.HLMMNull(m.y, m.X, m.V, m.G, m.null.alpha, m.null.beta, m.null.h2)
        ref = score.score_test(null, score.mean_impute(data["g"]))
        ok = out["status"] == STATUS["ok"]
        assert ok.sum() >= data["m"] - 2
        for k in ("add", "add_se", "var", "var_se", "av_chi2"):
            np.testing.assert_allclose(out[k][ok], ref[k][ok], rtol=1e-9, err_msg=f"{m.name} {k}")


def test_gram_products__the_same_bits_on_one_and_two_threads_and_equal_the_product():
    """``G'g`` in two halves of G's columns: the same numbers on one thread and on two (each half
    is single-threaded BLAS), equal to numpy's product within rounding; for one variant and for
    a design of one column too."""
    import numba

    from hlmm.engines.score import gram_products

    rng = np.random.default_rng(3)
    threads = numba.get_num_threads()
    try:
        for n, l, b in [(5000, 31, 1), (5000, 31, 7), (20011, 200, 67), (300, 1, 3)]:
            G = rng.standard_normal((n, l))
            g = np.asfortranarray(rng.standard_normal((n, b)))
            got = []
            for t in sorted({1, min(2, threads)}):
                numba.set_num_threads(t)
                got.append(gram_products(G, g))
            for z in got[1:]:
                np.testing.assert_array_equal(z, got[0])
            np.testing.assert_allclose(got[0], G.T @ g, rtol=1e-12, atol=1e-12 * np.abs(G.T @ g).max())
    finally:
        numba.set_num_threads(threads)
