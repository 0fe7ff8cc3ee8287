"""Parallel, distributed and resumable scans: identical output, nothing lost."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from datasets import make_dataset

from hlmm import runner
from hlmm.cli import hlmm_chr, hlmm_merge
from hlmm.columns import MODELS
from hlmm.results import read_models

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("scale"), n=500, m=12, seed=7)


def chr_run(ds, prefix, *extra, start=0, end=12):
    return hlmm_chr.main([ds.bed, str(start), str(end), ds.pheno, str(prefix), "--quiet", *map(str, extra)])


def raw(prefix):
    return Path(f"{prefix}.models.gz").read_bytes()


@pytest.mark.parametrize("extra", [[], ["--random_gts", "RANDOM"], ["--mean_covar", "COVAR", "--fit_covariates"]])
def test_n_jobs__byte_identical_to_serial(ds, tmp_path, extra):
    extra = [ds.random if e == "RANDOM" else ds.covar if e == "COVAR" else e for e in extra]
    assert chr_run(ds, tmp_path / "serial", "--block_size", 3, *extra) == 0
    assert chr_run(ds, tmp_path / "par", "--block_size", 3, "--n_jobs", 2, *extra) == 0
    assert raw(tmp_path / "serial") == raw(tmp_path / "par")


def test_kill_9_then_resume__identical_to_uninterrupted_run(ds, tmp_path):
    args = [ds.bed, "0", "12", ds.pheno, None, "--random_gts", ds.random, "--engine", "reference",
            "--block_size", "1"]
    whole = tmp_path / "whole"
    assert hlmm_chr.main([str(a) if a is not None else str(whole) for a in args] + ["--quiet"]) == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "bin" / "hlmm_chr.py")] + [str(a) if a is not None else str(killed) for a in args]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    side = Path(f"{killed}.models.gz.partial.json")
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(side.read_text())["position"] >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads(side.read_text())
    assert 3 <= state["position"] < 12, "the run finished before it could be killed"
    assert not Path(f"{killed}.models.gz").exists()
    # what the killed run left is a valid gzip of complete rows
    partial = gzip.decompress(Path(f"{killed}.models.gz.partial").read_bytes()).decode().splitlines()
    assert partial[0].startswith("SNP\t") and len(partial) - 1 >= state["position"]
    assert all(len(line.split("\t")) == len(partial[0].split("\t")) == len(MODELS) for line in partial)
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    assert raw(killed) == raw(whole)
    assert json.loads(Path(f"{killed}.models.json").read_text())["finished"]
    assert not side.exists() and not Path(f"{killed}.models.gz.partial").exists()


def test_resume__finished_run_does_nothing(ds, tmp_path, capsys):
    assert chr_run(ds, tmp_path / "o") == 0
    before = raw(tmp_path / "o")
    assert hlmm_chr.main([ds.bed, "0", "12", ds.pheno, str(tmp_path / "o"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "already complete" in err and "nothing to do" in err
    assert raw(tmp_path / "o") == before


def test_resume__with_changed_options_or_inputs_is_refused(ds, tmp_path, monkeypatch, capsys):
    real = runner.compute_block
    calls = {"k": 0}

    def interrupt(*a, **k):
        calls["k"] += 1
        if calls["k"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "compute_block", interrupt)
    assert chr_run(ds, tmp_path / "o", "--block_size", 4) == 130  # stopped after the first block
    monkeypatch.setattr(runner, "compute_block", real)
    capsys.readouterr()
    assert hlmm_chr.main([ds.bed, "0", "12", ds.pheno, str(tmp_path / "o"), "--block_size", "4", "--resume",
                          "--min_maf", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "different inputs or options" in err and "min_maf" in err
    assert hlmm_chr.main([ds.bed, "0", "12", ds.pheno, str(tmp_path / "o"), "--block_size", "4", "--resume",
                          "--phen_index", "2"]) == 2
    assert "phenotype" in capsys.readouterr().err
    # a finished run resumed with other options is refused too, and left as it was
    assert chr_run(ds, tmp_path / "f") == 0
    before = raw(tmp_path / "f")
    assert hlmm_chr.main([ds.bed, "0", "12", ds.pheno, str(tmp_path / "f"), "--resume", "--min_maf", "0.2"]) == 2
    assert "different inputs or options" in capsys.readouterr().err
    assert raw(tmp_path / "f") == before


def test_resume__without_earlier_run_starts_new(ds, tmp_path):
    assert chr_run(ds, tmp_path / "a", "--resume") == 0
    assert chr_run(ds, tmp_path / "b") == 0
    assert raw(tmp_path / "a") == raw(tmp_path / "b")


def test_merge__ranges_in_snp_order(ds, tmp_path):
    assert chr_run(ds, tmp_path / "r2", start=7, end=12) == 0
    assert chr_run(ds, tmp_path / "r1", start=0, end=7) == 0
    assert chr_run(ds, tmp_path / "whole") == 0
    out = tmp_path / "all.models.gz"
    inputs = [f"{tmp_path / 'r2'}.models.gz", f"{tmp_path / 'r1'}.models.gz"]
    assert hlmm_merge.main([*inputs, "-o", str(out), "--quiet"]) == 0
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(raw(tmp_path / "whole"))
    assert list(read_models(str(out))["SNP"]) == [f"rs{j}" for j in range(12)]


def test_merge__gap_and_overlap_detected(ds, tmp_path, capsys):
    assert chr_run(ds, tmp_path / "a", start=0, end=4) == 0
    assert chr_run(ds, tmp_path / "b", start=5, end=12) == 0
    assert chr_run(ds, tmp_path / "c", start=3, end=12) == 0
    files = {k: f"{tmp_path / k}.models.gz" for k in "abc"}
    capsys.readouterr()
    assert hlmm_merge.main([files["a"], files["b"], "-o", str(tmp_path / "m.gz")]) == 2
    err = capsys.readouterr().err
    assert "gap: variants 4..4" in err
    assert hlmm_merge.main([files["a"], files["c"], "-o", str(tmp_path / "m.gz")]) == 2
    assert "overlap: variants 3..3" in capsys.readouterr().err
    assert not (tmp_path / "m.gz").exists()


def test_merge__refuses_incomplete_input(ds, tmp_path, capsys):
    assert chr_run(ds, tmp_path / "a", start=0, end=6) == 0
    assert chr_run(ds, tmp_path / "b", start=6, end=12) == 0
    side = Path(f"{tmp_path / 'b'}.models.json")
    state = json.loads(side.read_text())
    state["finished"] = False
    side.write_text(json.dumps(state))
    inputs = [f"{tmp_path / 'a'}.models.gz", f"{tmp_path / 'b'}.models.gz"]
    assert hlmm_merge.main([*inputs, "-o", str(tmp_path / "m.gz")]) == 2
    assert "incomplete" in capsys.readouterr().err


class Flaky:
    """compute_block that fails on block 3 (once, always, or by killing its worker process).

    Picklable, so worker processes get it; the marker file makes "once" hold across processes.
    """

    def __init__(self, marker_dir, mode):
        self.marker_dir, self.mode = str(marker_dir), mode

    def __call__(self, job, b0, b1):
        marker = Path(self.marker_dir, f"block{b0}")
        if b0 == 3 and (self.mode == "always" or not marker.exists()):
            marker.touch()
            if self.mode == "die":
                os._exit(3)
            raise RuntimeError("injected failure")
        return REAL_COMPUTE(job, b0, b1)


REAL_COMPUTE = runner.compute_block


def _flaky(marker_dir, mode):
    return Flaky(marker_dir, mode)


@pytest.mark.parametrize("n_jobs,mode", [(1, "once"), (2, "once"), (2, "die")])
def test_failing_block__retried_once_output_unchanged(ds, tmp_path, monkeypatch, n_jobs, mode):
    assert chr_run(ds, tmp_path / "ref", "--block_size", 3) == 0
    monkeypatch.setattr(runner, "compute_block", _flaky(tmp_path, mode))
    assert chr_run(ds, tmp_path / "o", "--block_size", 3, "--n_jobs", n_jobs) == 0
    assert raw(tmp_path / "o") == raw(tmp_path / "ref")


def test_failing_block__twice_gives_nan_rows_and_run_completes(ds, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "compute_block", _flaky(tmp_path, "always"))
    assert hlmm_chr.main([ds.bed, "0", "12", ds.pheno, str(tmp_path / "o"), "--block_size", "3"]) == 0
    err = capsys.readouterr().err
    assert "retrying once" in err and "failed twice" in err
    res = read_models(f"{tmp_path / 'o'}.models.gz")
    assert len(res["SNP"]) == 12
    assert np.isnan(res["add"][3:6]).all() and np.isfinite(res["add"][:3]).all()
    assert json.loads(Path(f"{tmp_path / 'o'}.models.json").read_text())["failed_blocks"][0][:2] == [3, 6]


def test_dask_local_cluster__identical_to_serial(ds, tmp_path):
    distributed = pytest.importorskip("distributed")
    assert chr_run(ds, tmp_path / "serial", "--block_size", 3, "--random_gts", ds.random) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert chr_run(ds, tmp_path / "dask", "--block_size", 3, "--random_gts", ds.random,
                       "--dask_scheduler", cluster.scheduler_address) == 0
    assert raw(tmp_path / "serial") == raw(tmp_path / "dask")


def test_merge__two_chromosomes_of_different_files_in_genomic_order(tmp_path):
    from hlmm.io import write_bed

    rng = np.random.default_rng(4)
    n = 400
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    for c in (2, 10):
        write_bed(str(tmp_path / f"chr{c}"), rng.binomial(2, 0.3, (n, 5)).astype(float), ids=ids,
                  snp=[f"c{c}_{j}" for j in range(5)], chrom=[str(c)] * 5, pos=[100 * (j + 1) for j in range(5)])
    (tmp_path / "p.txt").write_text(
        "".join(f"f{i} i{i} {v!r}\n" for i, v in enumerate(rng.standard_normal(n).tolist())))
    for c in (2, 10):
        assert hlmm_chr.main([str(tmp_path / f"chr{c}.bed"), "0", "5", str(tmp_path / "p.txt"),
                              str(tmp_path / f"r{c}"), "--quiet"]) == 0
    out = tmp_path / "all.models.gz"
    assert hlmm_merge.main([f"{tmp_path / 'r10'}.models.gz", f"{tmp_path / 'r2'}.models.gz", "-o", str(out),
                            "--quiet"]) == 0
    res = read_models(str(out))
    assert list(res["chr"]) == ["2"] * 5 + ["10"] * 5
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(raw(tmp_path / "r2")) + b"".join(
        gzip.decompress(raw(tmp_path / "r10")).splitlines(keepends=True)[1:])
    desc = json.loads(Path(str(out)[: -len(".gz")] + ".json").read_text())
    assert desc["finished"] and len(desc["parts"]) == 2
    # a different phenotype cannot be merged in
    (tmp_path / "q.txt").write_text(
        "".join(f"f{i} i{i} {v!r}\n" for i, v in enumerate(rng.standard_normal(n).tolist())))
    assert hlmm_chr.main([str(tmp_path / "chr10.bed"), "0", "5", str(tmp_path / "q.txt"), str(tmp_path / "q10"),
                          "--quiet"]) == 0
    assert hlmm_merge.main([f"{tmp_path / 'r2'}.models.gz", f"{tmp_path / 'q10'}.models.gz", "-o",
                            str(tmp_path / "bad.models.gz")]) == 2
