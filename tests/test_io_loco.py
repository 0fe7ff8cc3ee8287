"""hlmm.io.loco: regenie step-1 prediction lists and .loco files, read back and every error."""

from __future__ import annotations

import gzip
import os
import re

import numpy as np
import pytest

from hlmm.io._base import InputError
from hlmm.io.loco import PRED_CHROMOSOMES, LocoPredictions, loco_line, read_loco, read_pred_list

ALL = range(1, 24)


def write_loco(path, tokens, rows, na=None, gz=False, newline="\n"):
    """A .loco file as regenie writes it: the header, then ``chrom v1 ... vN `` per line (6 significant
    digits, a trailing space); ``rows`` maps a chromosome to its values, ``na`` to a mask of NA values."""
    lines = ["FID_IID " + " ".join(tokens)]
    for chrom, v in rows.items():
        cells = np.char.mod("%.6g", np.asarray(v, dtype=float)).astype(object)
        if na is not None and chrom in na:
            cells[na[chrom]] = "NA"
        lines.append(f"{chrom} " + " ".join(cells) + " ")
    text = newline.join(lines) + newline
    opener = gzip.open if gz else open
    with opener(path, "wt") as f:
        f.write(text)
    return str(path)


def write_text(path, text, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt") as f:
        f.write(text)
    return str(path)


def as_written(v):
    """The values a file holds: each printed with 6 significant digits."""
    return np.array([float(f"{x:.6g}") for x in np.asarray(v).ravel()]).reshape(np.shape(v))


def one_line_error(match, func, *args, path=None, line=None):
    """Call ``func``, expect an InputError matching ``match`` in one line naming ``path`` (and ``line``)."""
    with pytest.raises(InputError, match=match) as info:
        func(*args)
    msg = str(info.value)
    assert "\n" not in msg
    if path is not None:
        assert str(path) in msg
    if line is not None:
        assert f", line {line}:" in msg
    return msg


@pytest.fixture
def family(tmp_path):
    """A 23-line file of 40 individuals, some NA, and its values."""
    rng = np.random.default_rng(7)
    n = 40
    fam = [(f"F{i}", f"I{i}") for i in range(n)]
    tokens = [f"{f}_{i}" for f, i in fam]
    values = rng.normal(scale=0.3, size=(23, n)) * 10.0 ** rng.integers(-4, 2, size=(23, n))
    na = {3: rng.random(n) < 0.2, 23: np.arange(n) % 7 == 0}
    path = write_loco(tmp_path / "fit_1.loco", tokens, dict(zip(ALL, values)), na=na)
    expected = as_written(values)
    for c, mask in na.items():
        expected[c - 1, mask] = np.nan
    return path, fam, expected


# ---------------------------------------------------------------------------------------------- values


def test_values_read_back_in_the_order_asked(family):
    path, fam, expected = family
    rng = np.random.default_rng(1)
    order = rng.permutation(len(fam))[:30]
    ids = [fam[i] for i in order]
    ids.insert(5, ("F999", "I999"))  # not in the file
    p = read_loco(path, ids, set(ALL))
    assert isinstance(p, LocoPredictions)
    assert p.path == path and p.chromosomes == tuple(ALL)
    assert p.values.shape == (23, 31) and p.values.dtype == np.float64
    assert p.present.dtype == bool and p.present.tolist() == [i != 5 for i in range(31)]
    assert np.isnan(p.values[:, 5]).all()
    got = np.delete(p.values, 5, axis=1)
    np.testing.assert_array_equal(got, expected[:, order])  # exact, NaN where NA
    assert np.isnan(got[2]).sum() == np.isnan(expected[2, order]).sum() > 0
    for c in ALL:
        np.testing.assert_array_equal(p.for_chromosome(c), p.values[c - 1])


def test_only_requested_lines_are_kept(family):
    path, fam, expected = family
    p = read_loco(path, fam, [23, 3, 3, 10])
    assert p.chromosomes == (3, 10, 23) and p.values.shape == (3, len(fam))
    np.testing.assert_array_equal(p.values, expected[[2, 9, 22]])
    np.testing.assert_array_equal(p.for_chromosome(23), expected[22])
    with pytest.raises(KeyError, match="chromosome line 1 was not read"):
        p.for_chromosome(1)


def test_no_chromosome_requested_still_checks_the_file(family, tmp_path):
    path, fam, _ = family
    p = read_loco(path, fam, set())
    assert p.chromosomes == () and p.values.shape == (0, len(fam)) and p.present.all()
    bad = write_text(tmp_path / "bad.loco", "FID_IID a_a b_b\n1 0.1 0.2\n2 0.1\n")
    one_line_error("line 3: 1 values, expected 2", read_loco, bad, [("a", "a")], set(), path=bad, line=3)


def test_na_and_nan_are_missing(tmp_path):
    path = write_text(tmp_path / "na.loco",
                      "FID_IID a_1 b_2 c_3 d_4 e_5 f_6\n1 NA NA 0.5 nan NaN -nan \n2\tNA\t1e-05\tNA\t-2\tNA\tNA\n")
    p = read_loco(path, [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "6")], [1, 2])
    np.testing.assert_array_equal(p.values, [[np.nan, np.nan, 0.5, np.nan, np.nan, np.nan],
                                             [np.nan, 1e-05, np.nan, -2, np.nan, np.nan]])


def test_regenie_layout_trailing_spaces_crlf_and_blank_lines(tmp_path):
    ids = [("100", "100"), ("101", "101"), ("102", "102")]
    rows = {c: [0.0123 * c, -0.233, 1.5e-7] for c in ALL}
    crlf = write_loco(tmp_path / "crlf.loco", ["100_100", "101_101", "102_102"], rows, newline="\r\n")
    p = read_loco(crlf, ids, set(ALL))
    np.testing.assert_array_equal(p.values, as_written(np.array(list(rows.values()))))
    blank = write_text(tmp_path / "blank.loco", "FID_IID 100_100\n\n1 0.5 \n   \n2 0.25\n\n")
    np.testing.assert_array_equal(read_loco(blank, ids[:1], [1, 2]).values, [[0.5], [0.25]])


def test_ids_with_underscores_are_joined_never_split(tmp_path):
    tokens = ["fam_1_fam_1_sib_2", "fam_1_fam_1_sib_3", "x_y", "fam_1_sib_2"]
    path = write_loco(tmp_path / "u.loco", tokens, {1: [1.0, 2.0, 3.0, 4.0]})
    ids = [("fam_1", "fam_1_sib_3"), ("fam_1", "fam_1_sib_2"), ("fam", "1_sib_2"), ("x", "y"),
           ("fam_1", "sib_3"), ("fam_1_fam_1", "sib"), ("1", "fam_1_sib_2"), ("x_y", "x_y")]
    p = read_loco(path, ids, [1])
    assert p.present.tolist() == [True, True, True, True, False, False, False, False]
    np.testing.assert_array_equal(p.values[0, :4], [2.0, 1.0, 4.0, 3.0])


def test_two_individuals_with_one_token_are_ambiguous(tmp_path):
    path = write_loco(tmp_path / "amb.loco", ["a_b_c", "d_e"], {1: [1.0, 2.0]})
    one_line_error(r"FID=a_b IID=c and FID=a IID=b_c both read as 'a_b_c'", read_loco, path,
                   [("a_b", "c"), ("d", "e"), ("a", "b_c")], [1], path=path)
    # absent from the file: nothing to tell apart; the same individual twice: the same values
    p = read_loco(path, [("x_y", "z"), ("x", "y_z"), ("d", "e"), ("d", "e")], [1])
    assert p.present.tolist() == [False, False, True, True]
    assert p.values[0, 2] == p.values[0, 3] == 2.0


def test_gzip_reads_like_plain(family, tmp_path):
    path, fam, expected = family
    with open(path, "rb") as f:
        data = f.read()
    gz = tmp_path / "fit_1.loco.gz"
    gz.write_bytes(gzip.compress(data))
    plain = read_loco(path, fam[::-1], set(ALL))
    packed = read_loco(str(gz), fam[::-1], set(ALL))
    np.testing.assert_array_equal(packed.values, plain.values)
    np.testing.assert_array_equal(packed.present, plain.present)
    # the magic bytes decide, not the name
    misnamed_gz = tmp_path / "gz_named.loco"
    misnamed_gz.write_bytes(gzip.compress(data))
    misnamed_plain = tmp_path / "plain_named.loco.gz"
    misnamed_plain.write_bytes(data)
    for p in (misnamed_gz, misnamed_plain):
        np.testing.assert_array_equal(read_loco(str(p), fam[::-1], set(ALL)).values, plain.values)


@pytest.mark.parametrize("label, line", [
    ("1", 1), ("chr22", 22), ("22", 22), ("X", 23), ("chrX", 23), ("x", 23), ("23", 23), ("XY", 23), ("PAR1", 23),
    ("PAR2", 23), ("MT", 23), ("chrM", 23), ("Y", 23), ("24", 23), ("25", 23), ("26", 23), ("CHR7", 7),
    ("Un", None), ("27", None), ("0", None), ("chrUn_gl000220", None), ("", None),
])
def test_loco_line(label, line):
    assert loco_line(label) == line


def test_pred_chromosomes_mapping():
    assert {k: PRED_CHROMOSOMES[k] for k in ("1", "22", "X", "Y", "XY", "MT", "M", "PAR1", "PAR2")} == {
        "1": 1, "22": 22, "X": 23, "Y": 23, "XY": 23, "MT": 23, "M": 23, "PAR1": 23, "PAR2": 23}
    assert PRED_CHROMOSOMES.get("UN") is None
    for label, line in PRED_CHROMOSOMES.items():
        assert loco_line(label) == loco_line("chr" + label.lower()) == line


# ---------------------------------------------------------------------------------------------- errors

IDS = [("a", "a"), ("b", "b")]
HEADER = "FID_IID a_a b_b\n"


@pytest.mark.parametrize("text, wanted, match, line", [
    ("", [1], r": file is empty$", None),
    ("\n  \n\n", [1], r": file is empty$", None),
    ("IID a_a b_b\n1 0 0\n", [1], r"first token is 'IID', expected FID_IID", 1),
    ("\ufeffFID a_a\n", [1], r"first token is 'FID', expected FID_IID", 1),
    ("FID_IID\n1\n", [1], r"the header FID_IID lists no individuals", 1),
    ("FID_IID a_a b_b c_c b_b a_a\n", [1], r"identifier 'b_b' appears twice in the header \(columns 3 and 5\)", 1),
    (HEADER + "1 0.1 0.2\n2 0.1\n", [1, 2], r"1 values, expected 2 \(one per individual of its header\)", 3),
    (HEADER + "1 0.1 0.2 0.3 \n", [1], r"3 values, expected 2", 2),
    (HEADER + "1 0.1 0.2\n2 0.1 0.2 0.3\n", [1], r"3 values, expected 2", 3),
    (HEADER + "1\n", [1], r"0 values, expected 2", 2),
    (HEADER + "1 0.1 abc\n", [1], r"value 'abc' at column 3 \(individual b_b\) is not a number", 2),
    (HEADER + "1 0,1 0.5\n", [1], r"value '0,1' at column 2 \(individual a_a\) is not a number", 2),
    (HEADER + "1 NA 1_0\n", [1], r"value '1_0' at column 3 \(individual b_b\) is not a number", 2),
    (HEADER + "1 NA. 0\n", [1], r"value 'NA\.' at column 2 \(individual a_a\) is not a number", 2),
    (HEADER + "1 0.5 -inf\n", [1], r"value '-inf' at column 3 \(individual b_b\) is not finite", 2),
    (HEADER + "1 0 0\nX 0 0\n", [1], r"first token 'X' is not a chromosome number 1-23", 3),
    (HEADER + "chr1 0 0\n", [1], r"first token 'chr1' is not a chromosome number 1-23", 2),
    (HEADER + "0 0 0\n", [1], r"first token '0' is not a chromosome number 1-23", 2),
    (HEADER + "24 0 0\n", [1], r"first token '24' is not a chromosome number 1-23", 2),
    (HEADER + "1.0 0 0\n", [1], r"first token '1\.0' is not a chromosome number 1-23", 2),
    (HEADER + "1 0 0\n2 0 0\n1 0 0\n", [2], r"a second line for chromosome 1 \(the first is line 2\)", 4),
    (HEADER + "1 0 0\n2 0 0\n", [1, 7], r": has no line for chromosome 7 \(needed for the variants on 7\)$", None),
    (HEADER + "1 0 0\n", [23],
     r"has no line for chromosome 23 \(needed for the variants on X, Y, XY, PAR1, PAR2 or MT\)", None),
    (HEADER, [2, 7, 9], r"has no lines for chromosomes 2, 7 and 9 \(needed for the variants on 2, 7 and 9\)", None),
])
def test_loco_errors(tmp_path, text, wanted, match, line):
    path = write_text(tmp_path / "bad_1.loco", text)
    one_line_error(match, read_loco, path, IDS, wanted, path=path, line=line)
    gz = write_text(tmp_path / "bad_1.loco.gz", text, gz=True)  # the same from a gzip file
    one_line_error(match, read_loco, gz, IDS, wanted, path=gz, line=line)


def test_missing_file_and_directory(tmp_path):
    path = str(tmp_path / "none_1.loco")
    one_line_error(r"LOCO file .*none_1\.loco: cannot read: no such file or directory", read_loco, path, IDS, [1],
                   path=path)
    one_line_error(r"cannot read: is a directory", read_loco, str(tmp_path), IDS, [1], path=tmp_path)


def test_bad_gzip(tmp_path):
    good = gzip.compress((HEADER + "".join(f"{c} 0.1 0.2\n" for c in ALL)).encode() * 1)
    garbage = tmp_path / "garbage.loco.gz"
    garbage.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    one_line_error(r"garbage\.loco\.gz, line 1: not a valid gzip file \(", read_loco, str(garbage), IDS, [1],
                   path=garbage, line=1)
    corrupt = tmp_path / "corrupt.loco.gz"
    corrupt.write_bytes(good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:])
    one_line_error(r"line 1: not a valid gzip file", read_loco, str(corrupt), IDS, [1], path=corrupt, line=1)
    truncated = tmp_path / "truncated.loco.gz"
    truncated.write_bytes(good[: len(good) - 12])
    one_line_error(r"truncated gzip file", read_loco, str(truncated), IDS, [1], path=truncated)
    magic_only = tmp_path / "magic.loco"
    magic_only.write_bytes(b"\x1f\x8b")
    one_line_error(r"line 1: truncated gzip file", read_loco, str(magic_only), IDS, [1], path=magic_only, line=1)


def test_truncated_gzip_names_its_line(tmp_path):
    rng = np.random.default_rng(3)
    tokens = [f"{i}_{i}" for i in range(2000)]
    write_loco(tmp_path / "big.loco", tokens, {c: rng.normal(size=2000) for c in ALL})
    data = gzip.compress((tmp_path / "big.loco").read_bytes())
    cut = tmp_path / "cut.loco.gz"
    cut.write_bytes(data[: len(data) // 2])
    msg = one_line_error(r"line \d+: truncated gzip file", read_loco, str(cut), [("1", "1")], set(ALL), path=cut)
    assert int(re.search(r"line (\d+)", msg).group(1)) > 2


def test_chromosome_argument_out_of_range(family):
    path, fam, _ = family
    with pytest.raises(ValueError, match="chromosome lines are 1-23"):
        read_loco(path, fam, [1, 24])


# ---------------------------------------------------------------------------------------------- pred list


@pytest.fixture
def regenie_out(tmp_path):
    """``out/fit_pred.list`` with an absolute path (y1), one relative to the list (y2), one relative to the
    working directory (y3) and empty lines."""
    out = tmp_path / "out"
    out.mkdir()
    for k in (1, 2, 3):
        write_text(out / f"fit_{k}.loco", HEADER + "1 0 0\n")
    lst = out / "fit_pred.list"
    lst.write_text(f"y1 {out / 'fit_1.loco'}\n\ny2 fit_2.loco\ny3   out/fit_3.loco  \n\n")
    return tmp_path, out, str(lst)


def test_pred_list_paths(regenie_out, monkeypatch):
    root, out, lst = regenie_out
    monkeypatch.chdir(root)
    got = read_pred_list(lst, ["y3", "y1", "y2"])
    assert got == {"y1": str(out / "fit_1.loco"), "y2": str(out / "fit_2.loco"), "y3": "out/fit_3.loco"}
    assert all(os.path.isfile(p) for p in got.values())
    # relative to the list's directory, from anywhere
    monkeypatch.chdir(out)
    assert read_pred_list(lst, ["y2"]) == {"y2": str(out / "fit_2.loco")}
    # the list's directory wins when both exist
    monkeypatch.chdir(root)
    write_text(root / "fit_2.loco", HEADER)
    assert read_pred_list(lst, ["y2"]) == {"y2": str(out / "fit_2.loco")}


def test_pred_list_ignores_traits_not_asked_for(regenie_out):
    _, out, lst = regenie_out
    assert read_pred_list(lst, ["y1"]) == {"y1": str(out / "fit_1.loco")}  # y3 would not be found from here
    assert read_pred_list(lst, []) == {}


def test_pred_list_relative_list_path(regenie_out, monkeypatch):
    root, out, _ = regenie_out
    monkeypatch.chdir(root)
    assert read_pred_list("out/fit_pred.list", ["y2"]) == {"y2": os.path.join("out", "fit_2.loco")}
    p = read_loco(read_pred_list("out/fit_pred.list", ["y2"])["y2"], IDS, [1])
    assert p.values.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("text, traits, match, line", [
    ("y1 a.loco extra\n", ["y1"], r"3 fields, expected 2 \(a phenotype name and the path of its \.loco file\)", 1),
    ("y1 a.loco\n\ny2\n", ["y1"], r"1 field, expected 2", 3),
    ("y1 a.loco\ny2 a.loco\ny1 a.loco\n", ["y2"], r"phenotype 'y1' is listed twice \(first on line 1\)", 3),
    ("y1 a.loco\ny3 a.loco\n", ["y1", "y2"], r" lists no prediction for phenotype 'y2' \(it lists: y1, y3\)$", None),
    ("\n", ["y1"], r" lists no prediction for phenotype 'y1' \(it lists: none\)$", None),
    ("".join(f"t{k} a.loco\n" for k in range(12)), ["y"], r"\(it lists: t0, t1, .*, t9 and 2 more\)$", None),
    ("y1 a.loco\ny2 gone.loco\n", ["y1", "y2"],
     r"line 2: the prediction file of phenotype 'y2' does not exist \(looked for .*gone\.loco or gone\.loco\)$", 2),
])
def test_pred_list_errors(tmp_path, monkeypatch, text, traits, match, line):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    write_text(d / "a.loco", HEADER)
    lst = write_text(d / "fit_pred.list", text)
    msg = one_line_error(match, read_pred_list, lst, traits, path=lst, line=line)
    assert msg.startswith(f"prediction list {lst}")


def test_pred_list_missing_file_and_absolute_path(tmp_path):
    lst = str(tmp_path / "none_pred.list")
    one_line_error(r"cannot read: no such file or directory", read_pred_list, lst, ["y1"], path=lst)
    gone = tmp_path / "gone_1.loco"
    lst = write_text(tmp_path / "fit_pred.list", f"y1 {gone}\n")
    one_line_error(rf"line 1: .* does not exist \(looked for {re.escape(str(gone))}\)$", read_pred_list, lst, ["y1"],
                   path=lst, line=1)
