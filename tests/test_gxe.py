"""G×E and G×G in the heteroskedastic model (--interaction, --interaction_snp): against nlme's ML fits
of the same model (tests/data/r_reference/gxe_fits.tsv, made by make_gxe_reference.R; these tests do
not need R), plink2 --glm interaction on a homoskedastic trait, the reference engine, and broken
inputs as real processes."""

import csv
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import write_table

from hlmm.cli import hlmm_chr
from hlmm.columns import interaction_columns, names
from hlmm.results import read_models

REF = Path(__file__).resolve().parent / "data" / "r_reference"
REPO = Path(__file__).resolve().parents[1]


def nlme_fits(name: str) -> dict:
    with open(REF / name) as f:
        rows = list(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"))
    return {(r["variant"], r.get("exposure", "")): r for r in rows}


COLUMNS = ["FID", "IID", "x1", "sex", "E", "B", "E2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Covariate files: the variance's x1 and sex; the mean's x1, sex and the exposures of each model of
    the R fits (E; B; E and E2)."""
    d = tmp_path_factory.mktemp("gxe")
    covar = [line.split() for line in (REF / "gxe_covar.txt").read_text().splitlines()]

    def write(name, cols):
        (d / name).write_text("".join(" ".join(row[COLUMNS.index(c)] for c in cols) + "\n" for row in covar))

    write("var.txt", ["FID", "IID", "x1", "sex"])
    for exposures in (["E"], ["B"], ["E", "E2"]):
        write(f"mean_{'_'.join(exposures)}.txt", ["FID", "IID", "x1", "sex", *exposures])
    write("mean.txt", ["FID", "IID", "x1", "sex", "E"])
    return d


def scan(tmp_path, files, name, *extra, mean="mean.txt"):
    argv = [str(REF / "gxe.bed"), "0", "6", str(REF / "gxe_pheno.txt"), str(tmp_path / name), "--quiet",
            "--min_maf", "0.01", "--mean_covar", str(files / mean), "--var_covar", str(files / "var.txt"),
            *map(str, extra)]
    assert hlmm_chr.main(argv) == 0
    return read_models(f"{tmp_path / name}.models.gz")


@pytest.mark.parametrize("exposure", ["E", "B"])
def test_fit_covariates__rows_equal_nlme_gls_ml(tmp_path, files, exposure):
    """nlme::gls(method = "ML", weights = varComb(varExp(~x1), varExp(~sex), varExp(~E), varExp(~g))) of
    y ~ x1 + sex + E + g + g*E (and with B for E): estimates within 1e-4
    of their SEs, SEs (the expected information, nlme's vcov without its N/(N - p)) within 1e-4
    relative, maximised log-likelihoods within 1e-9 relative."""
    ref = nlme_fits("gxe_fits.tsv")
    res = scan(tmp_path, files, exposure, "--interaction", exposure, "--fit_covariates", mean=f"mean_{exposure}.txt")
    for j, snp in enumerate(res["SNP"]):
        r = ref.get((snp, exposure))
        if r is None:  # the R fits have the covariates of the exposure in use only
            continue
        assert int(r["n"]) == res["n"][j]
        for ours, key in (("add", "mean_g"), ("gxe", "mean_gxe"), ("var", "var_g")):
            se = float(r[f"{key}_se_exp"])
            assert abs(res[ours][j] - float(r[key])) < 1e-4 * se, (snp, ours, res[ours][j], r[key])
            assert res[f"{ours}_se"][j] == pytest.approx(se, rel=1e-4), (snp, ours)
        assert res["likelihood"][j] == pytest.approx(float(r["loglik"]), rel=1e-9)


def test_two_exposures__rows_equal_nlme_and_joint_tests(tmp_path, files):
    ref = nlme_fits("gxe2_fits.tsv")
    res = scan(tmp_path, files, "two", "--interaction", "E,E2", "--fit_covariates", mean="mean_E_E2.txt")
    assert names(interaction_columns(["E", "E2"])) == [c for c in res if c.startswith(("gxe", "joint"))]
    for j, snp in enumerate(res["SNP"]):
        r = ref.get((snp, ""))
        if r is None:
            continue
        for ours, key in (("gxe_E", "mean_gxe1"), ("gxe_E2", "mean_gxe2"), ("add", "mean_g")):
            assert abs(res[ours][j] - float(r[key])) < 1e-4 * float(r[f"{key}_se_exp"]), (snp, ours)
    # the K-df and joint tests are Wald tests with the estimates' covariance: >= each 1-df test's chi^2
    from scipy import stats

    chi2 = stats.chi2.isf(10.0 ** -res["gxe_pval"], 2)
    assert np.all(chi2 >= np.fmax(res["gxe_E_t"] ** 2, res["gxe_E2_t"] ** 2) - 1e-6)


def test_default_mode__class_engine_equals_reference_engine(tmp_path, files):
    fast = scan(tmp_path, files, "fast", "--interaction", "E")
    ref = scan(tmp_path, files, "ref", "--interaction", "E", "--engine", "reference")
    for c in ("n", "add", "add_se", "var", "var_se", "gxe", "gxe_se", "gxe_pval", "joint_pval", "likelihood",
              "var_adapt", "var_se_adapt"):
        np.testing.assert_allclose(fast[c], ref[c], rtol=1e-7, err_msg=c)


def test_homoskedastic_trait__gxe_agrees_with_plink2_least_squares(tmp_path, files):
    """plink2 --glm omit-ref interaction on y_flat (simulated without variance effects): the HLM's g*E
    estimate is least squares' up to the weights of its fitted variance effects, which are noise
    here: within 0.25 of its SE (measured 0.04-0.17 SE, the largest for the variant whose estimated
    variance effect has |t| 1.2), and its SE within 5% of plink2's (measured 0.96-1.03)."""
    with open(REF / "gxe_plink2.tsv") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    head = rows[0]
    plink = {r[head.index("ID")]: (float(r[head.index("BETA")]), float(r[head.index("SE")])) for r in rows[1:]
             if r[head.index("TEST")] == "ADDxE"}
    covar = (REF / "gxe_covar.txt").read_text().splitlines()
    (tmp_path / "mean.txt").write_text("".join(" ".join(line.split()[:5]) + "\n" for line in covar))
    argv = [str(REF / "gxe.bed"), "0", "6", str(REF / "gxe_pheno.txt"), str(tmp_path / "flat"), "--quiet",
            "--min_maf", "0.01", "--mean_covar", str(tmp_path / "mean.txt"), "--phen_index", "2", "--interaction", "E",
            "--fit_covariates"]
    assert hlmm_chr.main(argv) == 0
    res = read_models(f"{tmp_path / 'flat'}.models.gz")
    for j, snp in enumerate(res["SNP"]):
        beta, se = plink[snp]
        assert abs(res["gxe"][j] - beta) < 0.25 * res["gxe_se"][j], (snp, res["gxe"][j], beta)
        assert res["gxe_se"][j] == pytest.approx(se, rel=0.05), (snp, res["gxe_se"][j], se)


def test_interaction_snp__equals_its_genotype_as_an_exposure_column(tmp_path, files):
    """G×G: --interaction_snp g2 gives the rows of --interaction with g2's genotype as a covariate column
    (the individuals without a call at g2 left out)."""
    from hlmm.io import open_bed

    src = open_bed(str(REF / "gxe.bed"))
    g2 = src.read_dosages(np.arange(src.n_samples), 1, 2)[0]
    mean = np.loadtxt(files / "mean.txt", skiprows=1, usecols=(2, 3, 4))
    write_table(tmp_path / "m2.txt", src.samples, np.column_stack([mean, g2]), header=["x1", "sex", "E", "G2"])
    a = scan(tmp_path, files, "gxg", "--interaction_snp", "g2")
    argv = [str(REF / "gxe.bed"), "0", "6", str(REF / "gxe_pheno.txt"), str(tmp_path / "byhand"), "--quiet",
            "--min_maf", "0.01", "--mean_covar", str(tmp_path / "m2.txt"), "--var_covar", str(files / "var.txt"),
            "--interaction", "G2"]
    assert hlmm_chr.main(argv) == 0
    b = read_models(f"{tmp_path / 'byhand'}.models.gz")
    for c in ("add", "gxe", "gxe_se", "var"):
        np.testing.assert_allclose(a[c], b[c], rtol=1e-10, equal_nan=True, err_msg=c)


def _dense_hlm_null(y, X, V):
    """The null HLM's maximum-likelihood fit by a generic optimiser on the dense likelihood."""
    from scipy import optimize

    def nll(theta):
        a, b = theta[: X.shape[1]], theta[X.shape[1] :]
        eta = V @ b
        return 0.5 * np.sum(eta + (y - X @ a) ** 2 * np.exp(-eta))

    start = np.concatenate([np.linalg.lstsq(X, y, rcond=None)[0], np.zeros(V.shape[1])])
    fit = optimize.minimize(nll, start, method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000})
    fit = optimize.minimize(nll, fit.x, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-14,
                                                                     "maxiter": 20_000})
    return fit.x[: X.shape[1]], fit.x[X.shape[1] :]


@pytest.mark.parametrize("robust", [False, True])
@pytest.mark.parametrize("fit_covariates", [False, True])
def test_score_screen__equals_dense_weighted_least_squares_under_the_null(tmp_path, robust, fit_covariates):
    """--test score --interaction E: the rows are the weighted least-squares fit of the null residuals on
    (g, g E) with the covariates projected out, at the null's weights (generic optimiser on the dense
    likelihood), missing calls mean-imputed; standard errors model-based or, with --robust, HC0
    sandwich of that regression. Estimates within 1e-4 SE, SEs within 1e-4 relative. In the default
    mode, as its Wald fits, the response is the null model's standardised residual and the
    covariates are not projected out again."""
    from hlmm.io import BedWriter

    rng = np.random.default_rng(11)
    n, m = 1500, 12
    x, E = rng.standard_normal(n), rng.standard_normal(n)
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    G[rng.random((n, m)) < 0.03] = np.nan
    g0 = np.nan_to_num(G[:, 0] - np.nanmean(G[:, 0]))
    y = 0.3 * x + 0.5 * E + 0.5 * g0 * E + 0.3 * np.nan_to_num(G[:, 1]) + np.exp(0.25 * E) * rng.standard_t(5, n)
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    with BedWriter(str(tmp_path / "g"), ids) as w:
        w.write(G)
    write_table(tmp_path / "covar.txt", ids, np.column_stack([x, E]), header=["x", "E"])
    write_table(tmp_path / "pheno.txt", ids, y[:, None], header=["y"])
    argv = [str(tmp_path / "g.bed"), "0", str(m), str(tmp_path / "pheno.txt"), str(tmp_path / "s"), "--quiet",
            "--mean_covar", str(tmp_path / "covar.txt"), "--interaction", "E", "--test", "score"]
    argv += (["--robust"] if robust else []) + (["--fit_covariates"] if fit_covariates else [])
    assert hlmm_chr.main(argv) == 0
    res = read_models(str(tmp_path / "s.models.gz"))
    X = np.column_stack([np.ones(n), x, E])
    V = np.column_stack([np.ones(n), E])
    alpha, beta = _dense_hlm_null(y, X, V)
    w = np.exp(-V @ beta)
    r = y - X @ alpha
    if not fit_covariates:
        r, X = r * np.sqrt(w), np.ones((n, 1))
        r = r - r.mean()
        w = np.full(n, 1 / np.mean(r**2))
    for j in range(m):
        g = np.nan_to_num(G[:, j] - np.nanmean(G[:, j]))
        Z = np.column_stack([g, g * E])
        sw = np.sqrt(w)
        Xw, Zw = sw[:, None] * X, sw[:, None] * Z
        Zt = Zw - Xw @ np.linalg.lstsq(Xw, Zw, rcond=None)[0]  # X projected out (weighted)
        info = Zt.T @ Zt
        theta = np.linalg.solve(info, Zt.T @ (sw * r))
        cov = np.linalg.inv(info)
        if robust:
            meat = (Zt * (sw * r)[:, None] ** 2).T @ Zt
            cov = cov @ meat @ cov
        se = np.sqrt(np.diag(cov))
        for k, key in enumerate(("add", "gxe")):
            assert abs(res[key][j] - theta[k]) < 1e-4 * se[k], (j, key, res[key][j], theta[k])
            assert res[f"{key}_se"][j] == pytest.approx(se[k], rel=1e-4), (j, key)
        chi2 = theta[1] ** 2 / cov[1, 1]
        from hlmm.pvalues import neglog10_pval

        assert res["gxe_pval"][j] == pytest.approx(neglog10_pval(np.array([chi2]), 1)[0], rel=1e-3)
    assert res["gxe_pval"][0] > 5  # the simulated G×E
    assert set(res["test"]) == {"score"}


def test_score_screen__equals_regenie_step2_hlm_interaction_rows(tmp_path):
    """regenie v4.1.2 step 2 --interaction E --rare-mac 1e9 (its HLM test for every variant;
    tests/data/r_reference/make_gxe_regenie.sh) is the score screen with --fit_covariates, once E^2 is
    among the mean and the variance covariates as regenie puts it: ADD-INT_SNP = add, ADD-INT_SNPxE =
    gxe and ADD-INT_2DF = joint_pval: estimates within 1e-4 SE (measured 1e-5 SE at most: regenie
    fits its null by BFGS to its own tolerance), SEs and -log10 p within 1e-4 relative."""
    rows = [line.split() for line in (REF / "gxe_regenie.regenie").read_text().splitlines()]
    head = rows[0]
    ref = {(r[head.index("ID")], r[head.index("TEST")]): r for r in rows[1:]}
    covar = [line.split() for line in (REF / "gxe_covar.txt").read_text().splitlines()]
    (tmp_path / "mean.txt").write_text("".join(" ".join(r[:5] + [("Esq" if k == 0 else repr(float(r[4]) ** 2))])
                                               + "\n" for k, r in enumerate(covar)))
    (tmp_path / "var.txt").write_text("".join(" ".join(r[:2] + [("Esq" if k == 0 else repr(float(r[4]) ** 2))])
                                              + "\n" for k, r in enumerate(covar)))
    argv = [str(REF / "gxe.bed"), "0", "6", str(REF / "gxe_pheno.txt"), str(tmp_path / "s"), "--quiet",
            "--min_maf", "0.01", "--mean_covar", str(tmp_path / "mean.txt"), "--var_covar",
            str(tmp_path / "var.txt"), "--interaction", "E", "--test", "score", "--fit_covariates"]
    assert hlmm_chr.main(argv) == 0
    res = read_models(str(tmp_path / "s.models.gz"))
    col = {k: head.index(k) for k in ("BETA", "SE", "LOG10P", "N")}
    assert len(res["SNP"]) == 6
    for j, snp in enumerate(res["SNP"]):
        for test, key in (("ADD-INT_SNP", "add"), ("ADD-INT_SNPxE", "gxe")):
            r = ref[snp, test]
            assert int(r[col["N"]]) == res["n"][j]
            assert abs(res[key][j] - float(r[col["BETA"]])) < 1e-4 * res[f"{key}_se"][j], (snp, key)
            assert res[f"{key}_se"][j] == pytest.approx(float(r[col["SE"]]), rel=1e-4), (snp, key)
        assert res["joint_pval"][j] == pytest.approx(float(ref[snp, "ADD-INT_2DF"][col["LOG10P"]]), rel=1e-4,
                                                     abs=1e-5), snp


def test_score_screen__refit_rows_are_the_wald_rows(tmp_path, files):
    """--refit 0 refits every row: they equal the Wald scan's (the default mode's G×E engine)."""
    wald = scan(tmp_path, files, "wald", "--interaction", "E")
    refit = scan(tmp_path, files, "refit", "--interaction", "E", "--test", "score", "--refit", "0")
    assert set(refit["test"]) == {"wald"}
    for c in ("add", "add_se", "var", "var_se", "gxe", "gxe_se", "gxe_pval", "joint_pval", "likelihood"):
        np.testing.assert_allclose(refit[c], wald[c], rtol=1e-12, err_msg=c)


def test_mixed_model_with_interaction__equals_generic_optimiser_on_the_dense_likelihood(tmp_path):
    """--random_gts R --interaction E --fit_covariates: every row maximises the dense likelihood
    N(y; X a, h2 G G' + diag(exp(V b))) with g and g E in the mean and g in the log-variance (a generic
    optimiser; G the random genotypes, centred, in any common scale, which changes h2 only): maximised
    log-likelihood within 1e-7 relative, estimates within 1e-3 SE, SEs (the inverse of the observed
    information, by finite differences of the dense log-likelihood in (a, b, h2)) within 1e-3
    relative."""
    from dense import dense_cov
    from scipy import optimize

    from hlmm.io import BedWriter

    rng = np.random.default_rng(5)
    n, m, l = 300, 3, 20
    x, E = rng.standard_normal(n), rng.standard_normal(n)
    R = rng.binomial(2, rng.uniform(0.1, 0.5, l), (n, l)).astype(float)
    Gt = rng.binomial(2, rng.uniform(0.2, 0.5, m), (n, m)).astype(float)
    Rc = (R - R.mean(0)) / R.std(0)
    y = (0.3 * x + 0.5 * E + 0.4 * (Gt[:, 0] - Gt[:, 0].mean()) * E + Rc @ rng.normal(0, 0.15, l)
         + np.exp(0.25 * E) * rng.standard_normal(n))
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    for name, gts in (("t", Gt), ("r", R)):
        with BedWriter(str(tmp_path / name), ids) as w:
            w.write(gts)
    write_table(tmp_path / "covar.txt", ids, np.column_stack([x, E]), header=["x", "E"])
    write_table(tmp_path / "pheno.txt", ids, y[:, None], header=["y"])
    argv = [str(tmp_path / "t.bed"), "0", str(m), str(tmp_path / "pheno.txt"), str(tmp_path / "o"), "--quiet",
            "--mean_covar", str(tmp_path / "covar.txt"), "--interaction", "E", "--random_gts",
            str(tmp_path / "r.bed"), "--fit_covariates"]
    assert hlmm_chr.main(argv) == 0
    res = read_models(str(tmp_path / "o.models.gz"))
    for j in range(m):
        g = Gt[:, j] - Gt[:, j].mean()
        X = np.column_stack([np.ones(n), x, E, g, g * E])
        V = np.column_stack([np.ones(n), E, g])

        def profile(theta, X=X, V=V):
            beta, h2 = theta[:-1], 1 / (1 + np.exp(-theta[-1]))
            S = dense_cov(V, beta, Rc, h2)
            Si = np.linalg.inv(S)
            XtSi = X.T @ Si
            cov = np.linalg.inv(XtSi @ X)
            alpha = cov @ (XtSi @ y)
            r = y - X @ alpha
            logdet = np.linalg.slogdet(S)[1]
            return -0.5 * (n * np.log(2 * np.pi) + logdet + r @ Si @ r), alpha, cov

        best = optimize.minimize(lambda t: -profile(t)[0], np.zeros(4), method="BFGS", options={"gtol": 1e-9})
        best = optimize.minimize(lambda t: -profile(t)[0], best.x, method="Nelder-Mead",
                                 options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000})
        ll, alpha, _ = profile(best.x)
        assert res["likelihood"][j] == pytest.approx(ll, rel=1e-7), j
        full = np.concatenate([alpha, best.x[:-1], [1 / (1 + np.exp(-best.x[-1]))]])

        def loglik(t, X=X, V=V):
            S = dense_cov(V, t[5:8], Rc, t[8])
            r = y - X @ t[:5]
            return -0.5 * (np.linalg.slogdet(S)[1] + r @ np.linalg.solve(S, r))

        h = 1e-4 * np.maximum(np.abs(full), 0.1)
        H = np.empty((9, 9))
        for a in range(9):
            for b in range(a, 9):
                f = [loglik(full + sa * h[a] * np.eye(9)[a] + sb * h[b] * np.eye(9)[b])
                     for sa, sb in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
                H[a, b] = H[b, a] = (f[0] - f[1] - f[2] + f[3]) / (4 * h[a] * h[b])
        se = np.sqrt(np.diag(np.linalg.inv(-H)))
        for key, k in (("add", 3), ("gxe", 4), ("var", 7)):
            assert abs(res[key][j] - full[k]) < 1e-3 * se[k], (j, key, res[key][j], full[k])
            assert res[f"{key}_se"][j] == pytest.approx(se[k], rel=1e-3), (j, key, res[f"{key}_se"][j], se[k])
    assert res["gxe_pval"][0] > 3


def test_robust_rare_variants__model_based_gxe_se_below_the_minor_allele_count(tmp_path):
    """--robust --interaction: variants with fewer than 50 minor alleles among the exposed (the rarer
    level of a binary E) keep model-based SEs for add and G×E (the sandwich is inflated there), the
    others get the sandwich; the log counts them."""
    from hlmm.engines.reference import MIN_SANDWICH_MAC
    from hlmm.io import BedWriter

    rng = np.random.default_rng(2)
    n, m = 5000, 20
    E = (rng.random(n) < 0.1).astype(float)
    x = rng.standard_normal(n)
    G = rng.binomial(2, np.r_[np.full(10, 0.003), np.full(10, 0.2)], (n, m)).astype(float)
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    with BedWriter(str(tmp_path / "g"), ids) as w:
        w.write(G)
    write_table(tmp_path / "c.txt", ids, np.column_stack([x, E]), header=["x", "E"])
    write_table(tmp_path / "p.txt", ids, (0.3 * x + 0.5 * E + np.exp(0.25 * E) * rng.standard_normal(n))[:, None],
                header=["y"])
    base = [tmp_path / "g.bed", 0, m, tmp_path / "p.txt"]
    out = {}
    for name, extra in (("model", []), ("robust", ["--robust"])):
        r = _cli(*base, tmp_path / name, "--mean_covar", tmp_path / "c.txt", "--interaction", "E", "--min_maf",
                 "0.0001", *extra)
        assert r.returncode == 0, r.stderr
        out[name] = (read_models(str(tmp_path / f"{name}.models.gz")), r.stderr)
    exposed = G[E == 1]
    mac = np.minimum(exposed.sum(0), 2 * len(exposed) - exposed.sum(0))
    rare = mac < MIN_SANDWICH_MAC
    assert 0 < rare.sum() < m
    model, robust = out["model"][0], out["robust"][0]
    for key in ("gxe_se", "add_se"):
        np.testing.assert_allclose(robust[key][rare], model[key][rare], rtol=1e-10)
        assert np.all(np.abs(robust[key][~rare] / model[key][~rare] - 1) > 1e-6)
    assert f"{int(rare.sum())} rows: add and G×E standard errors model-based" in out["robust"][1]


def _cli(*argv):
    return subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), *map(str, argv)], capture_output=True,
                          text=True)


def test_bad_interaction_inputs__one_line_exit_2_nothing_written(tmp_path, files):
    covar = (REF / "gxe_covar.txt").read_text().splitlines()
    const = [covar[0] + " C"] + [line + " 1.0" for line in covar[1:]]
    (tmp_path / "const.txt").write_text("\n".join(const) + "\n")
    na = [covar[0] + " N"] + [line + " NA" for line in covar[1:]]
    (tmp_path / "na.txt").write_text("\n".join(na) + "\n")
    dup = [covar[0] + " E_copy"] + [line + " " + line.split()[4] for line in covar[1:]]
    (tmp_path / "dup.txt").write_text("\n".join(dup) + "\n")
    base = [REF / "gxe.bed", 0, 6, REF / "gxe_pheno.txt"]
    cases = {
        "absent": (["--mean_covar", files / "mean.txt", "--interaction", "Z"], "not a column"),
        "no_covar": (["--interaction", "E"], "no mean covariate file"),
        "constant": (["--mean_covar", tmp_path / "const.txt", "--interaction", "C"], "constant"),
        "missing": (["--mean_covar", tmp_path / "na.txt", "--interaction", "N"], "missing for every"),
        "collinear": (["--mean_covar", tmp_path / "dup.txt", "--interaction", "E"], "collinear"),
        "no_snp": (["--interaction_snp", "rs999"], "no variants"),
        "score_hlmm": (["--mean_covar", files / "mean.txt", "--interaction", "E", "--test", "score", "--random_gts",
                        REF / "gxe.bed"], "score"),
    }
    for name, (extra, expected) in cases.items():
        r = _cli(*base, tmp_path / f"o_{name}", *extra)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and "Traceback" not in r.stderr, (name, r.stderr)
        assert err[-1].startswith("hlmm_chr: error:") and expected in err[-1], (name, err[-1])
        assert not list(tmp_path.glob(f"o_{name}*")), name
    # a K the sample cannot support: 30 individuals, 6 exposures
    small = ["FID IID y y_flat"] + (REF / "gxe_pheno.txt").read_text().splitlines()[1:31]
    (tmp_path / "small.txt").write_text("\n".join(small) + "\n")
    r = _cli(REF / "gxe.bed", 0, 6, tmp_path / "small.txt", tmp_path / "o_k", "--mean_covar", REF / "gxe_covar.txt",
             "--interaction", "x1,sex,E,B,E2", "--fit_covariates", "--min_maf", "0.01")
    assert r.returncode == 2 and "can support" in r.stderr.splitlines()[-1], r.stderr


def test_gxe_columns__written_after_the_others_and_in_the_header(tmp_path, files):
    scan(tmp_path, files, "cols", "--interaction", "E")
    header = gzip.decompress((tmp_path / "cols.models.gz").read_bytes()).decode().split("\n", 1)[0].split("\t")
    assert header[-5:] == names(interaction_columns(["E"]))
