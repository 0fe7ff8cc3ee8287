"""hlmm.pipeline: the run stage. scan_arrays and hlmm_chr give the same rows; Dask workers with several
threads give the serial rows for every format and test; options are checked before anything is
written."""

import gzip
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from datasets import make_dataset, write_table

from hlmm.cli import hlmm_chr
from hlmm.columns import MODELS, names
from hlmm.io import InputError, open_genotypes
from hlmm.model import ModelSpec
from hlmm.pipeline import Inputs, ScanOptions, prepare_scan, run_scan, scan_arrays
from hlmm.results import format_block
from hlmm.scan import ScanSettings

REPO = Path(__file__).resolve().parents[1]
FORMATS = Path(__file__).parent / "data" / "formats"


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("pipeline"), n=500, m=12, seed=9)


@pytest.mark.parametrize("settings", [{}, {"test": "score"}, {"robust": True}])
def test_scan_arrays__same_rows_as_hlmm_chr(ds, tmp_path, settings):
    """The same phenotype and genotypes through the command and through scan_arrays: every column
    equal as written (10 significant digits), the variant columns apart, which scan_arrays numbers
    itself."""
    argv = [ds.bed, "0", "12", ds.pheno, str(tmp_path / "o"), "--quiet"]
    argv += ["--test", "score"] if settings.get("test") else []
    argv += ["--robust"] if settings.get("robust") else []
    assert hlmm_chr.main(argv) == 0
    src = open_genotypes(ds.bed)
    g = src.read_dosages(np.arange(src.n_samples), 0, 12).T
    cols, _ = scan_arrays(ds.y, g, options=ScanOptions(settings=ScanSettings(**settings)))
    text = _text(tmp_path / "o.models.gz").splitlines()
    header = text[0].split("\t")
    for c in names(MODELS):
        if c in ("SNP", "chr", "pos", "A1", "A2"):
            continue
        k = header.index(c)
        written = [line.split("\t")[k] for line in text[1:]]
        assert format_block({c: cols[c]}, [c]).splitlines() == written, c


def test_run_scan__objects_frozen_during_the_scan_only(ds, tmp_path):
    """The objects alive before the scan are out of the collector's way while it runs (its progress
    calls see them frozen), and back after; a caller's own frozen objects stay frozen."""
    import gc

    seen = []

    class Progress:
        def start(self, total, done):
            pass

        def update(self, k):
            seen.append(gc.get_freeze_count())

        def close(self):
            pass

    assert gc.get_freeze_count() == 0
    run_scan(prepare_scan(Inputs(ds.pheno, ds.bed), ScanOptions()), str(tmp_path / "o"), n_jobs=1,
             progress=Progress())
    assert seen and min(seen) > 1000 and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen, seen[:] = gc.get_freeze_count(), []
        run_scan(prepare_scan(Inputs(ds.pheno, ds.bed), ScanOptions()), str(tmp_path / "p"), n_jobs=1,
                 progress=Progress())
        # (frozen objects may be freed meanwhile; the scan's own inputs were made after the freeze)
        assert seen and max(seen) <= frozen and gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def test_options__checked_once_by_the_spec_for_library_callers(ds):
    inputs = Inputs(ds.pheno, ds.bed, random_gts=ds.random)
    with pytest.raises(InputError, match="--refit refits score-test rows"):
        prepare_scan(inputs, ScanOptions(settings=ScanSettings(refit=3.0)))
    with pytest.raises(InputError, match="--test score"):
        prepare_scan(inputs, ScanOptions(settings=ScanSettings(robust=True)))
    with pytest.raises(InputError, match="--h2_init"):
        prepare_scan(inputs, ScanOptions(h2_init=-1.0))
    with pytest.raises(InputError, match="min_maf"):
        ModelSpec(min_maf=0.5)


def test_resume_with_append__refused_by_the_library(ds, tmp_path):
    prepared = prepare_scan(Inputs(ds.pheno, ds.bed), ScanOptions(end=3))
    with pytest.raises(InputError, match="--resume and --append"):
        run_scan(prepared, str(tmp_path / "o"), resume=True, append=True)
    assert not list(tmp_path.iterdir())


def test_unreachable_dask_scheduler__leaves_nothing_behind(ds, tmp_path):
    prepared = prepare_scan(Inputs(ds.pheno, ds.bed), ScanOptions(end=3))
    with pytest.raises(InputError, match="cannot connect"):
        run_scan(prepared, str(tmp_path / "o"), dask_scheduler="foo://nowhere")
    assert not list(tmp_path.iterdir())
    r = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), ds.bed, "0", "3", ds.pheno,
                        str(tmp_path / "c"), "--dask_scheduler", "foo://nowhere"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------
# Dask workers with several threads
# ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A real `dask scheduler` and one `dask worker --nthreads 2` on 127.0.0.1, as a user starts them."""
    pytest.importorskip("distributed")
    d = tmp_path_factory.mktemp("dask")
    port = _free_port()
    dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                             stdout=open(d / "scheduler.log", "w"), stderr=subprocess.STDOUT, env=env)
    worker = subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "2", "--nworkers", "1",
                               "--no-dashboard", "--host", "127.0.0.1"], stdout=open(d / "worker.log", "w"),
                              stderr=subprocess.STDOUT, env=env)
    address = f"tcp://127.0.0.1:{port}"
    try:
        from distributed import Client

        deadline = time.time() + 60
        while True:
            try:
                with Client(address, timeout="2s") as c:
                    if c.scheduler_info()["workers"]:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("dask cluster did not start: " + (d / "worker.log").read_text()[-2000:])
            time.sleep(0.5)
        yield address
    finally:
        for p in (worker, sched):
            p.terminate()
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def dosage_pheno(tmp_path_factory):
    d = tmp_path_factory.mktemp("threads")
    src = open_genotypes(str(FORMATS / "dos.pgen"))
    rng = np.random.default_rng(4)
    g = np.nan_to_num(src.read_dosages(np.arange(src.n_samples), 0, 2).T, nan=1.0)
    Y = np.column_stack([0.4 * g[:, 0] + rng.standard_normal(src.n_samples) * np.exp(0.3 * g[:, 1]),
                         rng.standard_normal(src.n_samples)])
    Y[rng.random(src.n_samples) < 0.1, 1] = np.nan  # the two phenotypes' samples differ
    write_table(d / "pheno.txt", src.samples, Y, header=["a", "b"])
    return d / "pheno.txt"


def _text(path) -> str:
    return gzip.decompress(Path(path).read_bytes()).decode()


@pytest.fixture(scope="module")
def big_pgen(tmp_path_factory):
    """20,000 x 600 imputation-like dosages (30% of calls perturbed, 1% missing), written by pgenlib,
    and a phenotype: the size at which two threads sharing one pgenlib reader gave other rows (17
    of 600 Wald rows and 1 score row differed at e2588a9)."""
    pgenlib = pytest.importorskip("pgenlib")
    d = tmp_path_factory.mktemp("bigpgen")
    n, m = 20_000, 600
    rng = np.random.default_rng(1)
    w = pgenlib.PgenWriter(str(d / "big.pgen").encode(), n, m, False, dosage_present=True)
    for _ in range(m):
        dos = rng.binomial(2, rng.uniform(0.1, 0.5), n).astype(np.float32)
        pert = rng.random(n) < 0.3
        dos[pert] = np.clip(dos[pert] + rng.normal(0, 0.2, pert.sum()), 0, 2)
        dos[rng.random(n) < 0.01] = -9
        w.append_dosages(dos)
    w.close()
    (d / "big.psam").write_text("#FID\tIID\n" + "".join(f"f{i}\ti{i}\n" for i in range(n)))
    (d / "big.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n" + "".join(f"1\t{j + 1}\tv{j}\tA\tG\n" for j in range(m)))
    (d / "big.pheno").write_text("FID IID y\n" + "".join(f"f{i} i{i} {v!r}\n" for i, v in
                                                         enumerate(rng.standard_normal(n).tolist())))
    return d


@pytest.mark.parametrize("test", ["wald", "score"])
def test_dask_worker_with_two_threads__serial_rows_of_a_large_dosage_pgen(dask_cluster, big_pgen, tmp_path, test):
    base = [str(big_pgen / "big.pgen"), "0", "600", str(big_pgen / "big.pheno")]
    opts = ["--quiet", "--block_size", "16", "--test", test]
    assert hlmm_chr.main([*base, str(tmp_path / "serial"), *opts]) == 0
    assert hlmm_chr.main([*base, str(tmp_path / "dask"), *opts, "--dask_scheduler", dask_cluster]) == 0
    assert _text(tmp_path / "serial.models.gz") == _text(tmp_path / "dask.models.gz")


@pytest.mark.parametrize("geno,extra", [
    ("dos.pgen", []), ("dos.pgen", ["--test", "score"]), ("dos.bgen", []), ("dos.bgen", ["--test", "score"]),
    ("hard.bed", []), ("hard.bed", ["--test", "score", "--random_gts", str(FORMATS / "hard.bed")]),
])
def test_dask_worker_with_two_threads__serial_rows(dask_cluster, dosage_pheno, tmp_path, geno, extra):
    """Blocks of one variant on a worker running two at once (each thread its own pgenlib reader,
    zstd context and class-statistics caches): the rows of a serial run, for both phenotypes."""
    base = [str(FORMATS / geno), "0", "40", str(dosage_pheno)]
    opts = ["--quiet", "--min_maf", "0.01", "--phen_index", "1,2", "--block_size", "1", *extra]
    assert hlmm_chr.main([*base, str(tmp_path / "serial"), *opts]) == 0
    assert hlmm_chr.main([*base, str(tmp_path / "dask"), *opts, "--dask_scheduler", dask_cluster]) == 0
    for name in ("a", "b"):
        assert _text(tmp_path / f"serial.{name}.models.gz") == _text(tmp_path / f"dask.{name}.models.gz")


def test_random_effects__held_once_for_phenotypes_with_the_same_individuals(ds, tmp_path):
    """Two phenotypes of the same individuals share one G (score scanner: its null models'; class
    scanner: the integer form of its totals), and the raw genotypes are held as int8; a phenotype
    with other individuals gets its own G."""
    pheno = tmp_path / "p.txt"
    y = np.column_stack([ds.y, 2 * ds.y, np.where(np.arange(len(ds.y)) % 5 == 0, np.nan, 1) * ds.y])
    ids = [(f"F{i}", f"I{i}") for i in range(len(ds.y))]
    write_table(pheno, ids, y, header=["a", "b", "c"])
    for test, check in (("score", lambda sc: (sc.nulls[0].G is sc.nulls[1].G, sc.nulls[0].G is sc.nulls[2].G)),
                        ("wald", lambda sc: (sc.totals[0].R is sc.totals[1].R, sc.totals[0].R is sc.totals[2].R))):
        prepared = prepare_scan(Inputs(str(pheno), ds.bed, phen_index=[1, 2, 3], random_gts=ds.random),
                                ScanOptions(settings=ScanSettings(test=test)))
        assert check(prepared.scanner) == (True, False), test
    from hlmm.inputs import match_inputs

    mt = match_inputs(Inputs(str(pheno), ds.bed, random_gts=ds.random), None, "")
    assert mt.random.dtype == np.int8 and mt.random.shape == (len(mt.ids), ds.random_genotypes.shape[1])


def test_scan_block_size__engine_default_capped_for_large_samples():
    """--block_size wins; otherwise the engine's block, lowered so that a block holds at most
    MAX_BLOCK_VALUES genotypes (n = 500,000: 134 variants instead of 512), never below 1."""
    from types import SimpleNamespace

    from hlmm.pipeline import MAX_BLOCK_VALUES, scan_block_size

    score, hlm = SimpleNamespace(block_size=512), SimpleNamespace(block_size=256)
    assert scan_block_size(None, score, 100_000) == 512 and scan_block_size(None, hlm, 131_072) == 256
    assert scan_block_size(None, score, 500_000) == MAX_BLOCK_VALUES // 500_000 == 134
    assert scan_block_size(None, hlm, 10**9) == 1
    assert scan_block_size(1000, score, 500_000) == 1000
