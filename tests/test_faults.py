"""Nothing lost, nothing half-written (issue 10): output-side faults, trustworthy resume, odd inputs.

Real processes, real signals and a real full file system (a small tmpfs, mounted when the tests
run as root; skipped, saying why, where mounting is not allowed).
"""

import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from datasets import make_dataset, write_table

from hlmm.cli import fit_hlmm_model, hlmm_chr, hlmm_merge
from hlmm.results import read_models

REPO = Path(__file__).resolve().parents[1]
PAGE = 4096


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("faults"), n=400, m=120, l=10, seed=3)


def cli(*argv, env=None):
    """Run hlmm_chr as a process; returns (exit status, stderr)."""
    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), *map(str, argv)], capture_output=True,
                       text=True, env=env)
    return r.returncode, r.stderr


def one_line_error(err: str, prog: str = "hlmm_chr") -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def content(path) -> bytes:
    return gzip.decompress(Path(path).read_bytes())


# ----------------------------------------------------------------------------------------------
# A real full disk
# ----------------------------------------------------------------------------------------------
@contextmanager
def small_fs(size_kb: int = 64):
    d = tempfile.mkdtemp(prefix="hlmm_tmpfs_")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", d], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield Path(d)
    finally:
        subprocess.run(["umount", d], check=False)
        os.rmdir(d)


def fill(fs: Path, leave_pages: int) -> Path:
    """Fill the file system with a filler file, then free ``leave_pages`` pages."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * PAGE)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave_pages * PAGE))
    return filler


def outputs(fs: Path) -> list:
    return sorted(p.name for p in fs.iterdir() if p.name != "filler")


def test_disk_full__at_start_leaves_nothing(ds):
    with small_fs() as fs:
        fill(fs, 0)
        status, err = cli(ds.bed, 0, 120, ds.pheno, fs / "o", "--block_size", 1)
        assert status == 2
        line = one_line_error(err)
        assert "no space left on device" in line and str(fs) in line
        assert outputs(fs) == []


def test_disk_full__mid_run_keeps_rows_and_resume_finishes_identically(ds, tmp_path):
    ref = tmp_path / "ref"
    assert cli(ds.bed, 0, 120, ds.pheno, ref, "--block_size", 1)[0] == 0
    with small_fs() as fs:
        filler = fill(fs, 3)
        status, err = cli(ds.bed, 0, 120, ds.pheno, fs / "o", "--block_size", 1)
        assert status == 2
        line = one_line_error(err)
        assert "no space left on device" in line and "--resume" in line and "rows written so far" in line
        assert outputs(fs) == ["o.models.gz.partial", "o.models.gz.partial.json"]  # the resumable state only
        state = json.loads((fs / "o.models.gz.partial.json").read_text())
        assert 0 < state["position"] < 120
        filler.unlink()
        status, err = cli(ds.bed, 0, 120, ds.pheno, fs / "o", "--block_size", 1, "--resume")
        assert status == 0, err
        assert (fs / "o.models.gz").read_bytes() == Path(f"{ref}.models.gz").read_bytes()
        assert outputs(fs) == ["o.models.gz", "o.models.json"]


def test_disk_full__rerun_over_finished_results_keeps_them_intact(ds):
    with small_fs() as fs:
        assert cli(ds.bed, 0, 120, ds.pheno, fs / "o")[0] == 0
        before = {p: (fs / p).read_bytes() for p in ("o.models.gz", "o.models.json")}
        filler = fill(fs, 2)
        status, err = cli(ds.bed, 0, 120, ds.pheno, fs / "o", "--min_maf", "0.1", "--block_size", 1)
        assert status == 2 and "no space left on device" in one_line_error(err)
        assert {p: (fs / p).read_bytes() for p in ("o.models.gz", "o.models.json")} == before
        status, err = cli(ds.bed, 0, 120, ds.pheno, fs / "o", "--resume")  # the finished run is still complete
        assert status == 0 and "already complete" in err
        filler.unlink()
        assert cli(ds.bed, 0, 120, ds.pheno, fs / "o", "--min_maf", "0.1")[0] == 0
        assert (fs / "o.models.gz").read_bytes() != before["o.models.gz"]


def test_disk_full__fit_hlmm_model_one_line_and_no_files(ds):
    with small_fs() as fs:
        fill(fs, 0)
        r = subprocess.run([sys.executable, str(REPO / "bin" / "fit_hlmm_model.py"), ds.pheno, str(fs / "fit"),
                            "--mean_covar", ds.covar], capture_output=True, text=True)
        assert r.returncode == 2
        assert "no space left on device" in one_line_error(r.stderr, "fit_hlmm_model")
        assert outputs(fs) == []


# ----------------------------------------------------------------------------------------------
# Resume checks the results file against its description
# ----------------------------------------------------------------------------------------------
def test_resume__deleted_results_file_is_refused(ds, tmp_path):
    assert hlmm_chr.main([ds.bed, "0", "20", ds.pheno, str(tmp_path / "o"), "--quiet"]) == 0
    os.remove(tmp_path / "o.models.gz")
    status, err = cli(ds.bed, 0, 20, ds.pheno, tmp_path / "o", "--resume")
    assert status == 2
    line = one_line_error(err)
    assert "is missing" in line and "rerun without --resume" in line


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_resume__shortened_or_modified_results_file_is_refused(ds, tmp_path, damage):
    assert hlmm_chr.main([ds.bed, "0", "20", ds.pheno, str(tmp_path / "o"), "--quiet"]) == 0
    path = tmp_path / "o.models.gz"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    status, err = cli(ds.bed, 0, 20, ds.pheno, tmp_path / "o", "--resume")
    assert status == 2
    assert "does not match" in one_line_error(err)


def _wait_for(predicate, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _position(path) -> int:
    try:
        return json.loads(Path(path).read_text())["position"]
    except (OSError, ValueError, KeyError):
        return -1


SLOW = ["--engine", "reference", "--block_size", "1"]  # the reference mixed model: ~0.1 s per variant


def test_two_runs_on_one_output__the_second_refuses_at_once(ds, tmp_path):
    args = [sys.executable, str(REPO / "bin" / "hlmm_chr.py"), ds.bed, "0", "60", ds.pheno, str(tmp_path / "o"),
            "--random_gts", ds.random, *SLOW]
    first = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: _position(tmp_path / "o.models.gz.partial.json") >= 1)
        first.send_signal(signal.SIGSTOP)  # hold the first run mid-scan, holding its lock
        status, err = cli(*args[2:])
        assert status == 2
        assert "another run is writing it" in one_line_error(err)
    finally:
        first.send_signal(signal.SIGCONT)
        _, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert len(read_models(str(tmp_path / "o.models.gz"))["SNP"]) == 60


def _children(pid: int) -> list:
    """Linux: the processes whose parent is ``pid``."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{pid}\n" in status.read_text():
                out.append(int(status.parent.name))
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_during_a_rerun__finished_results_stay_intact(ds, tmp_path):
    assert hlmm_chr.main([ds.bed, "0", "30", ds.pheno, str(tmp_path / "o"), "--quiet"]) == 0
    before = {p: (tmp_path / p).read_bytes() for p in ("o.models.gz", "o.models.json")}
    args = [sys.executable, str(REPO / "bin" / "hlmm_chr.py"), ds.bed, "0", "30", ds.pheno, str(tmp_path / "o"),
            "--random_gts", ds.random, *SLOW, "--n_jobs", "2"]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: _position(tmp_path / "o.models.gz.partial.json") >= 2)
    workers = _children(proc.pid) if sys.platform.startswith("linux") else []
    proc.kill()
    proc.wait()
    # its worker processes end with it (they stayed, idle, before PR_SET_PDEATHSIG)
    assert not sys.platform.startswith("linux") or workers
    assert _wait_for(lambda: not any(_alive(w) for w in workers), 30), [w for w in workers if _alive(w)]
    assert {p: (tmp_path / p).read_bytes() for p in ("o.models.gz", "o.models.json")} == before
    # the interrupted new run resumes to the same file as an uninterrupted one
    assert cli(*args[2:], "--resume")[0] == 0
    assert cli(*args[2:6], tmp_path / "whole", *args[7:])[0] == 0
    assert content(tmp_path / "o.models.gz") == content(tmp_path / "whole.models.gz")


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_with_two_workers__no_traceback_and_resume_identical(ds, tmp_path, sig, status):
    args = [ds.bed, "0", "120", ds.pheno, str(tmp_path / "o"), "--random_gts", ds.random, *SLOW, "--n_jobs", "2"]
    # SIGINT as from a terminal's Ctrl-C: a test run in the background of a non-interactive shell
    # (as CI may be) inherits SIGINT ignored, and Python then keeps ignoring it
    proc = subprocess.Popen([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), *args], stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert _wait_for(lambda: _position(tmp_path / "o.models.gz.partial.json") >= 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "results already written are kept" in err
    assert not (tmp_path / "o.models.gz").exists()
    assert cli(*args, "--resume")[0] == 0
    assert cli(*args[:4], tmp_path / "whole", *args[5:])[0] == 0
    assert content(tmp_path / "o.models.gz") == content(tmp_path / "whole.models.gz")


def test_out_of_memory_at_start_up__one_line_error_and_no_files(ds, tmp_path):
    """A MemoryError outside the blocks (raised, in a real process, by the null model's set-up, as
    numpy raises it when an allocation fails) ends the run with one line naming it and exit status
    2, no traceback and no output file. (A block that runs out of memory is retried once and then
    reported with NaN rows, as any failing block: runner.run_blocks.)"""
    args = [ds.bed, "0", "120", ds.pheno, str(tmp_path / "o")]
    driver = (
        "import sys\n"
        "from hlmm import pipeline\n"
        "def phenotype_model(*a, **kw):\n"
        "    raise MemoryError('Unable to allocate 2.24 GiB for an array with shape (6000, 100000)')\n"
        "pipeline.phenotype_model = phenotype_model\n"
        "from hlmm.cli import hlmm_chr\n"
        "sys.exit(hlmm_chr.main(sys.argv[1:]))\n"
    )
    r = subprocess.run([sys.executable, "-c", driver, *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    line = one_line_error(r.stderr)
    assert "out of memory: Unable to allocate 2.24 GiB" in line and "--block_size" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# --append
# ----------------------------------------------------------------------------------------------
def test_append__refuses_other_analyses_and_files_that_are_not_results(ds, tmp_path):
    o = str(tmp_path / "o")
    assert hlmm_chr.main([ds.bed, "0", "6", ds.pheno, o, "--quiet"]) == 0
    status, err = cli(ds.bed, 6, 12, ds.pheno, o, "--append", "--min_maf", "0.1")
    assert status == 2 and "different inputs or options" in one_line_error(err)
    status, err = cli(ds.bed, 6, 12, ds.pheno, o, "--append", "--phen_index", "2")
    assert status == 2 and "different inputs or options" in one_line_error(err)
    status, err = cli(ds.bed, 3, 8, ds.pheno, o, "--append")
    assert status == 2 and "overlap" in one_line_error(err)
    (tmp_path / "plain.models.gz").write_text("SNP\tn\nrs1\t3\n")
    status, err = cli(ds.bed, 6, 12, ds.pheno, tmp_path / "plain", "--append")
    assert status == 2 and "refusing to append" in one_line_error(err)
    assert (tmp_path / "plain.models.gz").read_text() == "SNP\tn\nrs1\t3\n"
    # a matching analysis appends, and the file is the whole range's
    assert cli(ds.bed, 6, 12, ds.pheno, o, "--append")[0] == 0
    assert hlmm_chr.main([ds.bed, "0", "12", ds.pheno, str(tmp_path / "w"), "--quiet"]) == 0
    assert content(f"{o}.models.gz") == content(tmp_path / "w.models.gz")
    desc = json.loads(Path(f"{o}.models.json").read_text())
    assert desc["ranges"] == [[0, 6], [6, 12]] and desc["finished"]


# ----------------------------------------------------------------------------------------------
# Output paths
# ----------------------------------------------------------------------------------------------
def test_output_paths__directories_and_missing_directories_are_one_line_errors(ds, tmp_path):
    (tmp_path / "d.models.gz").mkdir()
    cases = [
        ([ds.bed, 0, 2, ds.pheno, tmp_path / "d"], "is a directory"),
        ([ds.bed, 0, 2, ds.pheno, str(tmp_path) + "/"], "ends in '/'"),
        ([ds.bed, 0, 2, ds.pheno, tmp_path / "no" / "o"], "does not exist"),
    ]
    for argv, expected in cases:
        status, err = cli(*argv)
        assert status == 2 and expected in one_line_error(err), (argv, err)
    assert hlmm_chr.main([ds.bed, "0", "2", ds.pheno, str(tmp_path / "a"), "--quiet"]) == 0
    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_merge.py"), str(tmp_path / "a.models.gz"), "-o",
                        str(tmp_path / "no" / "m.models.gz")], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in one_line_error(r.stderr, "hlmm_merge")


def test_unreachable_dask_scheduler__one_line_error(ds, tmp_path):
    status, err = cli(ds.bed, 0, 4, ds.pheno, tmp_path / "o", "--dask_scheduler", "tcp://127.0.0.1:9")
    assert status == 2
    assert "--dask_scheduler tcp://127.0.0.1:9: cannot connect" in one_line_error(err)
    assert not list(tmp_path.glob("o.*"))  # no results, and no partial results or run state either


# ----------------------------------------------------------------------------------------------
# Options that can never pass
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option,value,expected", [
    ("--min_maf", "0.6", "fraction in [0, 0.5)"),
    ("--min_maf", "5", "did you mean 0.05"),
    ("--max_missing", "0", "percentage in (0, 100]"),
    ("--max_missing", "-1", "percentage in (0, 100]"),
    ("--max_missing", "101", "percentage in (0, 100]"),
])
def test_options__out_of_range_refused(ds, tmp_path, option, value, expected):
    status, err = cli(ds.bed, 0, 2, ds.pheno, tmp_path / "o", option, value)
    assert status == 2 and expected in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_options__help_states_units():
    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), "--help"], capture_output=True, text=True)
    text = " ".join(r.stdout.split())
    assert "a fraction in [0, 0.5)" in text and "a percentage in (0, 100]" in text
    assert "a prefix, not a file name" in text and "gzipped tab-separated" in text


def test_every_variant_filtered__says_so_loudly(ds, tmp_path):
    status, err = cli(ds.bed, 0, 10, ds.pheno, tmp_path / "o", "--min_maf", "0.499")
    assert status == 0
    assert "WARNING: every one of the 10 variants was filtered or failed" in err


# ----------------------------------------------------------------------------------------------
# Odd but valid inputs
# ----------------------------------------------------------------------------------------------
def test_byte_order_mark__first_individual_kept(ds, tmp_path):
    text = Path(ds.pheno).read_text()
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert hlmm_chr.main([ds.bed, "0", "5", str(tmp_path / "bom.txt"), str(tmp_path / "b"), "--quiet"]) == 0
    assert hlmm_chr.main([ds.bed, "0", "5", ds.pheno, str(tmp_path / "p"), "--quiet"]) == 0
    assert content(tmp_path / "b.models.gz") == content(tmp_path / "p.models.gz")


def test_comma_separated_and_non_utf8_tables__messages_say_why(ds, tmp_path):
    rows = Path(ds.pheno).read_text().splitlines()
    (tmp_path / "comma.txt").write_text("\n".join(",".join(r.split()) for r in rows) + "\n")
    status, err = cli(ds.bed, 0, 2, tmp_path / "comma.txt", tmp_path / "o")
    assert status == 2 and "comma-separated" in one_line_error(err)
    raw = Path(ds.pheno).read_bytes().split(b"\n")
    raw[4] = raw[4] + b" \xff"
    (tmp_path / "latin.txt").write_bytes(b"\n".join(raw))
    status, err = cli(ds.bed, 0, 2, tmp_path / "latin.txt", tmp_path / "o")
    line = one_line_error(err)
    assert status == 2 and "line 5" in line and "not UTF-8" in line


def _scaled_copy(ds, path, phenotype_scale, covariate_scale):
    n = len(ds.y)
    ids = [(f"F{i}", f"I{i}") for i in range(n)]
    write_table(path / "p.txt", ids, ds.y * phenotype_scale)
    write_table(path / "c.txt", ids, ds.covariates * covariate_scale)


def test_tiny_units__fitted_and_equal_to_the_same_data_in_other_units(ds, tmp_path):
    for name, ps, cs in (("unit", 1.0, 1.0), ("tiny", 1e-13, 1e-13)):
        d = tmp_path / name
        d.mkdir()
        _scaled_copy(ds, d, ps, cs)
        assert hlmm_chr.main([ds.bed, "0", "8", str(d / "p.txt"), str(d / "o"), "--mean_covar", str(d / "c.txt"),
                              "--var_covar", str(d / "c.txt"), "--quiet"]) == 0
    unit, tiny = (read_models(str(tmp_path / d / "o.models.gz")) for d in ("unit", "tiny"))
    # the default mode standardises the phenotype: the same statistics in any units
    for col in ("add", "add_se", "var", "var_se", "add_pval", "var_pval"):
        np.testing.assert_allclose(tiny[col], unit[col], rtol=1e-6, err_msg=col)
    n_unit = np.loadtxt(tmp_path / "unit" / "o.null_mean_effects.txt", usecols=(1, 2))
    n_tiny = np.loadtxt(tmp_path / "tiny" / "o.null_mean_effects.txt", usecols=(1, 2))
    np.testing.assert_allclose(n_tiny[0], 1e-13 * n_unit[0], rtol=1e-6)  # intercept in phenotype units
    np.testing.assert_allclose(n_tiny[1:], n_unit[1:], rtol=1e-6)  # per covariate unit: scales cancel


def test_huge_phenotype__refused_clearly(ds, tmp_path):
    _scaled_copy(ds, tmp_path, 1e307, 1.0)
    status, err = cli(ds.bed, 0, 2, tmp_path / "p.txt", tmp_path / "o")
    line = one_line_error(err)
    assert status == 2 and "rescale it" in line and "p.txt" in line


def test_null_model_failures__name_the_files_and_the_cause(ds, tmp_path):
    n = len(ds.y)
    ids = [(f"F{i}", f"I{i}") for i in range(n)]
    y = np.nan_to_num(ds.y, nan=0.0)
    write_table(tmp_path / "p.txt", ids, y)
    write_table(tmp_path / "same.txt", ids, np.column_stack([2 * y + 1, ds.covariates[:, 0]]))
    status, err = cli(ds.bed, 0, 2, tmp_path / "p.txt", tmp_path / "o", "--mean_covar", tmp_path / "same.txt")
    line = one_line_error(err)
    assert status == 2 and "linear function of the mean covariates" in line and "same.txt" in line
    small = tmp_path / "small.txt"
    write_table(small, ids[:30], y[:30])
    rng = np.random.default_rng(0)
    write_table(tmp_path / "many.txt", ids, rng.standard_normal((n, 14)))
    status, err = cli(ds.bed, 0, 2, small, tmp_path / "o", "--mean_covar", tmp_path / "many.txt", "--var_covar",
                      tmp_path / "many.txt")
    line = one_line_error(err)
    assert status == 2 and "more than 30 individuals can support" in line and "many.txt" in line


# ----------------------------------------------------------------------------------------------
# hlmm_merge
# ----------------------------------------------------------------------------------------------
def _rewrite(path: Path, data: bytes) -> None:
    """Replace a results file and update its description's size and CRC, as a consistent file."""
    path.write_bytes(data)
    side = Path(str(path)[: -len(".gz")] + ".json")
    desc = json.loads(side.read_text())
    desc.update(bytes=len(data), crc32=zlib.crc32(data))
    side.write_text(json.dumps(desc))


def test_merge__different_columns_name_the_file(ds, tmp_path):
    assert hlmm_chr.main([ds.bed, "0", "6", ds.pheno, str(tmp_path / "a"), "--quiet"]) == 0
    assert hlmm_chr.main([ds.bed, "6", "12", ds.pheno, str(tmp_path / "b"), "--quiet"]) == 0
    b = tmp_path / "b.models.gz"
    raw = b.read_bytes()
    d = zlib.decompressobj(wbits=31)
    header = d.decompress(raw)
    _rewrite(b, gzip.compress(header.replace(b"A2", b"A3"), mtime=0) + d.unused_data)
    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_merge.py"), str(tmp_path / "a.models.gz"), str(b),
                        "-o", str(tmp_path / "m.models.gz")], capture_output=True, text=True)
    line = one_line_error(r.stderr, "hlmm_merge")
    assert r.returncode == 2 and str(b) in line and "columns differ" in line
    assert not (tmp_path / "m.models.gz").exists()


@pytest.mark.parametrize("update_description", [False, True])
def test_merge__corrupted_member_of_the_right_size_is_refused(ds, tmp_path, update_description):
    assert hlmm_chr.main([ds.bed, "0", "6", ds.pheno, str(tmp_path / "a"), "--block_size", "2", "--quiet"]) == 0
    assert hlmm_chr.main([ds.bed, "6", "12", ds.pheno, str(tmp_path / "b"), "--quiet"]) == 0
    a = tmp_path / "a.models.gz"
    data = bytearray(a.read_bytes())
    data[-12] ^= 0x55  # inside the last member's compressed data: same size
    if update_description:
        _rewrite(a, bytes(data))
    else:
        a.write_bytes(bytes(data))
    assert hlmm_merge.main([str(a), str(tmp_path / "b.models.gz"), "-o", str(tmp_path / "m.models.gz")]) == 2
    assert not (tmp_path / "m.models.gz").exists()


def test_fit_hlmm_model__null_failure_names_files(ds, tmp_path, capsys):
    n = len(ds.y)
    ids = [(f"F{i}", f"I{i}") for i in range(n)]
    y = np.nan_to_num(ds.y, nan=0.0)
    write_table(tmp_path / "p.txt", ids, y)
    write_table(tmp_path / "same.txt", ids, 3 * y)
    assert fit_hlmm_model.main([str(tmp_path / "p.txt"), str(tmp_path / "f"), "--mean_covar",
                                str(tmp_path / "same.txt")]) == 2
    err = capsys.readouterr().err
    assert "linear function of the mean covariates" in err and "same.txt" in err


def test_resume_and_append__refuse_a_file_with_other_columns(ds, tmp_path):
    """A partial or finished file of an earlier version (its rows without the adaptive columns,
    its run description without their names) is neither resumed nor appended to: one line, exit 2,
    the file unchanged."""
    import json

    o = tmp_path / "o"
    assert hlmm_chr.main([ds.bed, "0", "6", ds.pheno, str(o), "--quiet"]) == 0
    desc = tmp_path / "o.models.json"
    d = json.loads(desc.read_text())
    d["run"]["options"]["columns"] = d["run"]["options"]["columns"][:-3]  # as written before var_adapt existed
    desc.write_text(json.dumps(d))
    before = (tmp_path / "o.models.gz").read_bytes()
    status, err = cli(ds.bed, 6, 12, ds.pheno, o, "--append")
    assert status == 2 and "different inputs or options (options.columns)" in one_line_error(err)
    del d["run"]["options"]["columns"]  # an earlier version's description has no column list at all
    desc.write_text(json.dumps(d))
    status, err = cli(ds.bed, 6, 12, ds.pheno, o, "--append")
    assert status == 2 and "columns" in one_line_error(err)
    assert (tmp_path / "o.models.gz").read_bytes() == before
