"""Tests of the results schema: p-values without underflow, the writer and reader."""

import gzip

import numpy as np
import pytest
from scipy.stats import chi2, norm

from hlmm.columns import MODELS, names
from hlmm.results import MemberFile, block_member, header_member, neglog10_pval, read_models, stats_table, write_effects

COLUMNS = names(MODELS)


def test_neglog10_pval__matches_scipy_where_representable():
    x = np.array([0.0, 0.5, 3.84, 20.0, 150.0, 1000.0])
    for df in (1, 2):
        np.testing.assert_allclose(neglog10_pval(x, df), -np.log10(chi2.sf(x, df)), rtol=1e-10, atol=1e-14)


def test_neglog10_pval__no_underflow_for_tiny_p():
    # 1 df: p = 2 Phi(-t); Mills ratio asymptotics for large t
    t = np.array([45.0, 60.0, 200.0])
    log_phi = norm.logpdf(t) - np.log(t) + np.log1p(-1 / t**2 + 3 / t**4 - 15 / t**6)
    expected = -(np.log(2) + log_phi) / np.log(10)
    np.testing.assert_allclose(neglog10_pval(t**2, 1), expected, rtol=1e-10)
    assert neglog10_pval(t**2, 1)[0] > 400  # p < 1e-400 stays finite
    # 2 df: p = exp(-x / 2); p = 1e-400 gives 400
    assert neglog10_pval(800 * np.log(10), 2) == pytest.approx(400.0, rel=1e-12)
    assert np.isnan(neglog10_pval(np.nan, 1))


def _block(k, start=0):
    info = {"SNP": np.array([f"rs{start + i}" for i in range(k)]), "chr": np.array(["1"] * k),
            "pos": np.arange(k) * 10, "A1": np.array(["A"] * k), "A2": np.array(["G"] * k)}
    stats = {"n": np.full(k, 100), "frequency": np.full(k, 0.3), "likelihood": np.full(k, -10.5),
             "add": np.linspace(-1, 1, k), "add_se": np.full(k, 0.1), "var": np.full(k, np.nan),
             "var_se": np.full(k, np.nan)}
    return stats_table(info, stats)


def test_writer__blocks_are_gzip_members_and_read_back(tmp_path):
    path = str(tmp_path / "x.models.gz")
    f = MemberFile(path)
    f.write(header_member(COLUMNS))
    f.write(block_member(_block(3), COLUMNS))
    f.write(block_member(_block(2, start=3), COLUMNS))
    f.close()
    raw = open(path, "rb").read()
    assert raw.count(b"\x1f\x8b\x08") == 3  # header + two blocks
    res = read_models(path)
    assert list(res) == COLUMNS
    assert list(res["SNP"]) == ["rs0", "rs1", "rs2", "rs3", "rs4"]
    np.testing.assert_allclose(res["add_t"][:3], [-10, 0, 10])
    assert np.isnan(res["var_t"]).all() and np.isnan(res["av_pval"]).all()
    # a file cut after the second member is still a valid gzip of complete rows
    members = raw.split(b"\x1f\x8b\x08")
    cut = b"\x1f\x8b\x08".join(members[:3])
    assert gzip.decompress(cut).decode().count("\n") == 4


@pytest.mark.parametrize("library", ["zlib", "isal"])
def test_block_member__one_gzip_member_of_the_text_from_either_library(monkeypatch, library):
    """A block's member is one gzip member (mtime 0) of the formatted rows, whether ISA-L (when
    installed) or zlib compresses it; members of both join into one readable file."""
    import subprocess

    from hlmm import results

    if library == "isal":
        igzip = pytest.importorskip("isal.igzip")
        monkeypatch.setattr(results, "_gzip_compress", igzip.compress)
    else:
        monkeypatch.setattr(results, "_gzip_compress", gzip.compress)
    cols = _block(40)
    member = block_member(cols, COLUMNS)
    text = results.format_block(cols, COLUMNS).encode()
    assert member[:4] == b"\x1f\x8b\x08\x00" and member[4:8] == b"\x00" * 4  # no name, mtime 0
    assert gzip.decompress(member) == text
    joined = header_member(COLUMNS) + member
    out = subprocess.run(["gzip", "-dc"], input=joined, capture_output=True, check=True).stdout
    assert out == ("\t".join(COLUMNS) + "\n").encode() + text


def test_write_effects__text_not_bytes(tmp_path):
    write_effects(str(tmp_path / "e.txt"), ["Intercept", "age"], np.array([1.5, -0.25]), np.array([0.1, 0.01]))
    assert (tmp_path / "e.txt").read_text() == "Intercept\t1.5\t0.1\nage\t-0.25\t0.01\n"


def test_format_block__equals_formatting_each_value():
    """Rows formatted a row at a time equal ``format(v, '.10g')`` per value, non-finite as NaN,
    text (even 'nan' or 'inf') untouched, integers as integers."""
    import math

    from hlmm.results import format_block

    vals = np.array([0.0, -0.0, 1e-5, 123456789012.0, 1 / 3, -2.5e-300, 5e-324, 1e300, np.nan, np.inf,
                     -np.inf, 7.0, 0.1 + 0.2])
    cols = {"SNP": np.array(["a_nan", "inf"] * 6 + ["x"], dtype=object), "n": np.arange(13.0),
            "add": vals, "var": vals[::-1].copy(), "add_se": np.linspace(0.1, 2, 13)}
    order = ["SNP", "n", "add", "var", "add_se"]

    def one(v):
        return f"{v:.10g}" if math.isfinite(v) else "NaN"

    want = "".join("\t".join([s, str(int(n)), one(a), one(v), one(e)]) + "\n"
                   for s, n, a, v, e in zip(cols["SNP"], cols["n"], cols["add"], cols["var"], cols["add_se"]))
    assert format_block(cols, order) == want
