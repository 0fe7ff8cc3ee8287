"""The tutorial pipeline end to end at a small size, as `make tutorial` runs it."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hlmm.results import read_models

REPO = Path(__file__).resolve().parents[1]


def run(cmd, cwd):
    r = subprocess.run([sys.executable, *cmd], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stderr + r.stdout


def test_tutorial_pipeline__small(tmp_path):
    for script in ("simulate_genotypes.py", "phenotype_simulation.py"):
        shutil.copy(REPO / "examples" / script, tmp_path)
    run(["simulate_genotypes.py", "--n", "3000", "--snps", "60"], tmp_path)
    run(["phenotype_simulation.py"], tmp_path)
    y = np.loadtxt(tmp_path / "test_phenotype.fam", usecols=2)
    assert len(y) == 3000 and abs(np.mean(y)) < 0.01 and abs(np.std(y) - 1) < 0.02  # inverse-normal
    chr_py = str(REPO / "bin" / "hlmm_chr.py")
    run([chr_py, "test.bed", "0", "60", "test_phenotype.fam", "test"], tmp_path)
    run([chr_py, "test.bed", "0", "5", "test_phenotype.fam", "test_random", "--random_gts", "random.bed"], tmp_path)
    out = run([str(REPO / "bin" / "hlmm_dispersion.py"), "test.models.gz", "--plot", "--report", "test_0"], tmp_path)
    assert "median add_t^2" in out and "KS test" in out and "test_0: dispersion" in out
    res = read_models(str(tmp_path / "test.dispersion.gz"))
    assert len(res["SNP"]) == 60 and np.isfinite(res["dispersion"]).sum() >= 55
    # every SNP has a mean effect: additive statistics are inflated
    assert np.nanmedian(res["add_t"] ** 2) > 0.456
    assert (tmp_path / "test_random.null_h2.txt").exists()
    assert len(read_models(str(tmp_path / "test_random.models.gz"))["SNP"]) == 5
    for name in ("add_var", "qq", "manhattan"):
        assert (tmp_path / f"test.{name}.png").stat().st_size > 5000


def test_phenotype_simulation__heritability_and_dispersion_effect():
    sys.path.insert(0, str(REPO / "examples"))
    from phenotype_simulation import simulate_gamma_phenotype

    rng = np.random.default_rng(0)
    n, m = 200_000, 50
    g = rng.binomial(2, rng.uniform(0.05, 0.95, m), (n, m)).astype(float)
    y = simulate_gamma_phenotype(g, 0.10, 0.3, rng)
    # the mean effects explain 10% of the variance of the untransformed trait
    assert 1 / np.var(y) == pytest.approx(0.10, rel=0.05)
    # the first SNP's dispersion effect: variance ratio per copy beyond the mean-variance relation
    hom0, hom2 = g[:, 0] == 0, g[:, 0] == 2
    ratio = (np.var(y[hom2]) / np.mean(y[hom2])) / (np.var(y[hom0]) / np.mean(y[hom0]))
    assert np.log(ratio) / 2 == pytest.approx(0.3, abs=0.03)
