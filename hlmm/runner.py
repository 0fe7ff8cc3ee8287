"""Running a scan: blocks of SNPs computed serially, in worker processes or on a Dask cluster,
written in SNP order, each block a complete gzip member, with a sidecar that makes runs resumable.

The numerics are in :mod:`hlmm.scan`; this module only schedules blocks, retries failures and
keeps the output consistent:

* a block that raises (or whose worker dies) is retried once; if it fails again its SNPs get NaN
  rows, the error is logged and the run goes on;
* after every block is written and flushed to disk, the sidecar ``outprefix.models.json`` records
  the next SNP and the byte length of the file, so ``--resume`` truncates any partial write and
  continues where the run stopped, producing a file identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from hlmm import __version__
from hlmm._bedkernels import read_packed
from hlmm._linalg import blas_threads_for
from hlmm.io import BedFileset, InputError
from hlmm.results import COLUMNS, ModelsWriter, stats_table
from hlmm.scan import ScanSettings, empty_stats, scan_block, scan_packed

log = logging.getLogger("hlmm")

SIDECAR_SUFFIX = ".json"


@dataclass
class ScanJob:
    """Everything needed to compute any block of a scan (picklable, sent once per worker)."""

    bed: BedFileset
    rows: np.ndarray
    y: np.ndarray
    X: np.ndarray
    V: np.ndarray
    G: object  # None, an ndarray, or hlmm._fast_hlmm.Totals
    settings: ScanSettings


def compute_block(job: ScanJob, b0: int, b1: int) -> tuple[dict, list]:
    """Stats and problems of SNPs ``b0:b1``. BLAS runs single-threaded, so results do not depend
    on how blocks are distributed."""
    with blas_threads_for(0):
        if job.settings.engine == "reference":
            genotypes = job.bed.read(job.rows, b0, b1)
            return scan_block(job.y, job.X, job.V, genotypes, job.settings, _dense(job.G))
        packed = read_packed(job.bed.path, job.bed.n_individuals, b0, b1)
        return scan_packed(job.y, job.X, job.V, packed, job.rows, job.bed.n_individuals, job.settings, job.G)


def _dense(G):
    return getattr(G, "G", G)


def failed_block(b: int, error: str) -> tuple[dict, list]:
    return empty_stats(b), [(j, f"block failed twice: {error}") for j in range(b)]


# ----------------------------------------------------------------------------------------------
# Sidecar: what the run is, and how far it got
# ----------------------------------------------------------------------------------------------
def fingerprint(args, paths: dict) -> dict:
    """Inputs (content hashes of text files, size and mtime of BED files) and result-relevant
    options of a run."""
    inputs = {}
    for role, path in paths.items():
        if not path:
            continue
        if path.endswith((".bed", ".bim", ".fam")) or role.startswith("genotype") or role.startswith("random_bed"):
            st = os.stat(path)
            inputs[role] = {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        else:
            with open(path, "rb") as f:
                inputs[role] = {"path": os.path.abspath(path), "sha256": hashlib.sha256(f.read()).hexdigest()}
    options = {k: getattr(args, k) for k in (
        "start", "end", "whole_chr", "phen_index", "missing_char", "fit_covariates", "h2_init", "min_maf",
        "max_missing", "no_h2_estimate", "engine", "block_size", "random_gts_txt")}
    return {"inputs": inputs, "options": options}


@dataclass
class Sidecar:
    path: str
    run: dict
    start: int
    stop: int
    next_snp: int
    bytes: int
    version: str = __version__
    finished: bool = False
    failed_blocks: list = field(default_factory=list)

    def save(self) -> None:
        tmp = self.path + ".partial"
        with open(tmp, "w") as f:
            json.dump({"hlmm_version": self.version, "run": self.run, "start": self.start, "stop": self.stop,
                       "next_snp": self.next_snp, "bytes": self.bytes, "finished": self.finished,
                       "columns": COLUMNS, "failed_blocks": self.failed_blocks}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: str) -> "Sidecar":
        try:
            with open(path) as f:
                d = json.load(f)
            return cls(path, d["run"], d["start"], d["stop"], d["next_snp"], d["bytes"], d["hlmm_version"],
                       d["finished"], d.get("failed_blocks", []))
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"run description {path}: unreadable ({e})") from None


def differences(a: dict, b: dict, prefix: str = "") -> list:
    """Keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += differences(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}")
    return out


# ----------------------------------------------------------------------------------------------
# Executors
# ----------------------------------------------------------------------------------------------
class _Serial:
    def __init__(self, job):
        self.job, self.fn = job, compute_block

    def submit(self, b0, b1):
        try:
            return ("ok", self.fn(self.job, b0, b1))
        except Exception as e:  # noqa: BLE001 - any failure of a block is retried, then reported
            return ("error", f"{type(e).__name__}: {e}")

    def result(self, handle):
        return handle

    def close(self):
        pass


_WORKER_JOB: ScanJob | None = None


def _worker_init(job):
    global _WORKER_JOB
    _WORKER_JOB = job


def _worker_call(fn, b0, b1):
    return fn(_WORKER_JOB, b0, b1)


class _Processes:
    """Worker processes, started by spawn (fork is unsafe once numba's OpenMP threads run); each
    receives the job once, through its initializer."""

    def __init__(self, job, n_jobs):
        import multiprocessing as mp

        self.job, self.n_jobs, self.fn = job, n_jobs, compute_block
        self.ctx = mp.get_context("spawn")
        self._start()

    def _start(self):
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(self.n_jobs, mp_context=self.ctx, initializer=_worker_init, initargs=(self.job,))

    def submit(self, b0, b1):
        return self.pool.submit(_worker_call, self.fn, b0, b1)

    def result(self, fut):
        from concurrent.futures.process import BrokenProcessPool

        try:
            return ("ok", fut.result())
        except BrokenProcessPool as e:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._start()
            return ("broken", f"worker process died: {e}")
        except Exception as e:  # noqa: BLE001
            return ("error", f"{type(e).__name__}: {e}")

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Dask:
    """Blocks as tasks on an existing Dask cluster; the job is scattered to workers once."""

    def __init__(self, job, address):
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--dask_scheduler needs dask: pip install 'hlmm[dask]'") from None
        try:
            self.client = Client(address, timeout="30s")
        except (OSError, TimeoutError) as e:
            raise InputError(f"--dask_scheduler {address}: cannot connect ({e})") from None
        self.fn = compute_block
        self.job = self.client.scatter(job, broadcast=True)

    def submit(self, b0, b1):
        return self.client.submit(self.fn, self.job, b0, b1, retries=1, pure=False)

    def result(self, fut):
        try:
            return ("ok", fut.result())
        except Exception as e:  # noqa: BLE001
            return ("failed", f"{type(e).__name__}: {e}")

    def close(self):
        self.client.close()


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def run_scan(job: ScanJob, out_path: str, start: int, stop: int, block_size: int, run_id: dict,
             n_jobs: int = 1, dask_scheduler: str | None = None, resume: bool = False, append: bool = False,
             progress=None) -> dict:
    """Compute SNPs ``start:stop`` block by block and write them to ``out_path`` in order.

    Returns
    -------
    dict
        ``rows`` written by this call, ``failed`` fits, ``failed_blocks``, ``resumed_from``.
    """
    sidecar_path = out_path[: -len(".gz")] + SIDECAR_SUFFIX if out_path.endswith(".gz") else out_path + SIDECAR_SUFFIX
    first = start
    if resume and not os.path.exists(sidecar_path):
        resume = False
    if resume:
        side = Sidecar.load(sidecar_path)
        if side.finished:
            log.info(f"{out_path} is already complete ({side.stop - side.start} SNPs); nothing to do")
            return {"rows": 0, "failed": 0, "failed_blocks": [], "resumed_from": None, "finished_before": True}
        first = side.next_snp
        writer = ModelsWriter(out_path, resume_bytes=side.bytes)
        log.info(f"resuming {out_path} at SNP {first} ({first - side.start} of {side.stop - side.start} done)")
    else:
        writer = ModelsWriter(out_path, append=append)
        side = Sidecar(sidecar_path, run_id, start, stop, start, writer.tell())
        if not append:
            side.save()
    blocks = [(b0, min(b0 + block_size, stop)) for b0 in range(first, stop, block_size)]
    if dask_scheduler:
        ex = _Dask(job, dask_scheduler)
    elif n_jobs > 1:
        ex = _Processes(job, n_jobs)
    else:
        ex = _Serial(job)
    # blocks in flight: memory is bounded by window x block size
    window = 64 if dask_scheduler else (2 * n_jobs if n_jobs > 1 else 1)
    attempts = {}
    pending = deque()
    todo = deque(blocks)
    n_rows = n_failed = 0
    failed_blocks = list(side.failed_blocks)
    try:
        while todo or pending:
            while todo and len(pending) < window:
                b0, b1 = todo.popleft()
                pending.append((b0, b1, ex.submit(b0, b1)))
            b0, b1, handle = pending.popleft()
            status, value = ex.result(handle)
            if status != "ok":
                attempts[b0] = attempts.get(b0, 0) + 1
                if status in ("error", "broken") and attempts[b0] < 2:
                    log.warning(f"SNPs {b0}..{b1 - 1}: {value}; retrying once")
                    if status == "broken":  # every block in flight was lost with the pool
                        lost = [(c0, c1) for c0, c1, _ in pending]
                        pending.clear()
                        todo.extendleft(reversed(lost))
                    pending.appendleft((b0, b1, ex.submit(b0, b1)))
                    continue
                log.error(f"SNPs {b0}..{b1 - 1}: failed twice ({value}); their rows have NaN estimates")
                failed_blocks.append([b0, b1, value])
                value = failed_block(b1 - b0, value)
            stats, problems = value
            for j, why in problems:
                if not why.startswith("block failed"):
                    log.warning(f"SNP {job.bed.snp[b0 + j]}: fit failed ({why}); its row has NaN estimates")
            n_failed += len(problems)
            info = {"SNP": job.bed.snp[b0:b1], "chr": job.bed.chrom[b0:b1], "pos": job.bed.pos[b0:b1],
                    "A1": job.bed.A1[b0:b1], "A2": job.bed.A2[b0:b1]}
            writer.write_block(stats_table(info, stats))
            n_rows += b1 - b0
            if not append:
                side.next_snp, side.bytes, side.failed_blocks = b1, writer.tell(), failed_blocks
                side.finished = b1 == stop
                side.save()
            if progress is not None:
                progress.update(b1 - b0)
    finally:
        ex.close()
        writer.close()
    if not append and not blocks:
        side.finished = True
        side.save()
    return {"rows": n_rows, "failed": n_failed, "failed_blocks": failed_blocks,
            "resumed_from": first if resume else None, "finished_before": False}
