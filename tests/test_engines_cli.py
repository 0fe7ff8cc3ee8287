"""The fast and reference engines give the same numbers on varied data."""

import numpy as np
import pytest
from datasets import make_dataset

from hlmm.cli import hlmm_chr
from hlmm.results import read_models


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("engines"), n=800, m=12, seed=3, missing_rate=0.02)


def run_both(ds, tmp_path, *extra):
    out = {}
    for engine in ("reference", "fast"):
        prefix = tmp_path / engine
        argv = [ds.bed, "0", "12", ds.pheno, str(prefix), "--engine", engine, "--quiet", *map(str, extra)]
        assert hlmm_chr.main(argv) == 0
        out[engine] = read_models(f"{prefix}.models.gz")
    return out["reference"], out["fast"]


def assert_same(ref, fast):
    assert list(ref["SNP"]) == list(fast["SNP"])
    np.testing.assert_array_equal(ref["n"], fast["n"])
    np.testing.assert_allclose(ref["frequency"], fast["frequency"], rtol=1e-12)
    nan_ref, nan_fast = np.isnan(ref["add"]), np.isnan(fast["add"])
    np.testing.assert_array_equal(nan_ref, nan_fast)
    ok = ~nan_ref
    assert ok.sum() >= 5
    np.testing.assert_allclose(fast["likelihood"][ok], ref["likelihood"][ok], rtol=1e-6)
    for col in ("add", "add_se", "var", "var_se", "add_t", "var_t", "add_pval", "var_pval", "av_pval"):
        np.testing.assert_allclose(fast[col][ok], ref[col][ok], rtol=1e-5, atol=1e-5, err_msg=col)


def test_default_mode__engines_agree_with_missing_calls_and_filters(ds, tmp_path):
    assert_same(*run_both(ds, tmp_path, "--mean_covar", ds.covar, "--var_covar", ds.covar))


def test_filter_boundaries__engines_agree(ds, tmp_path):
    # MAF filter just below the rare SNP's frequency, missingness filter just above 10%
    assert_same(*run_both(ds, tmp_path, "--min_maf", 0.005, "--max_missing", 10.5))


def test_fit_covariates__engines_agree(ds, tmp_path):
    assert_same(*run_both(ds, tmp_path, "--mean_covar", ds.covar, "--var_covar", ds.covar, "--fit_covariates"))


def test_random_effects__engines_agree(ds, tmp_path):
    assert_same(*run_both(ds, tmp_path, "--random_gts", ds.random))
