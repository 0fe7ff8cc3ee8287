"""Running blocks of a scan serially, in worker processes or on a Dask cluster, in order.

The runner knows scanners and genotype sources only: each block is read from the source (in parts,
for dosages) and handed to the scanner's ``scan_parts``; results come back to the caller in block
order, however they were computed:

* a block that raises (or whose worker dies) is retried once; if it fails again its SNPs get
  NaN rows, the error is logged, and the run goes on;
* at most a few blocks are in flight, so memory does not grow with the number of SNPs;
* worker processes ignore Ctrl-C, so an interrupted run stops without their tracebacks.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections import deque
from dataclasses import dataclass

import numpy as np

from hlmm._linalg import blas_threads_for
from hlmm.engines.base import empty_results
from hlmm.io import InputError

__all__ = ["ScanJob", "compute_block", "read_size", "run_blocks", "open_executor"]

log = logging.getLogger("hlmm")


#: At most this many dosages are read and scanned at a time (16 MB as float32): a block of the
#: scan (the unit of output, of progress and of work sent to workers) is read in parts of at most
#: this size when it holds dosages. At n = 100,000 (3,000 .pgen dosage variants, whole processes)
#: reading 32 variants at a time took 0.83x the time of reading 256 for the Wald scan, 0.79x of
#: 512 for the score screen, and 0.83x of 256 for the Wald scan of an 8-bit .bgen, with the same
#: rows: such a part stays in cache and below glibc's largest threshold for allocating by mmap
#: (32 MB), so its pages are not requested from the kernel afresh every time. Writing the output
#: in parts this small instead had cost about 13 ms per part for 10 phenotypes.
DOSAGE_READ_VALUES = 2**22


@dataclass
class ScanJob:
    """Everything needed to compute any block (picklable; sent once to each worker).

    Attributes
    ----------
    source : GenotypeSource
    rows : ndarray of int64
        Sample rows of the scan.
    scanner : Scanner
    variants : ndarray of int64
        Selected variant indices; block ``(b0, b1)`` is ``variants[b0:b1]``.
    hard_calls : bool
    read_size : int, optional
        Variants read and scanned at a time within a block (default: the whole block); see
        :func:`read_size`.
    """

    source: object
    rows: np.ndarray
    scanner: object
    variants: np.ndarray
    hard_calls: bool = False
    read_size: int | None = None

    def __post_init__(self) -> None:
        # one read-only array, passed with every part: the readers and the scanners' caches then
        # know it unchanged by identity (:func:`hlmm.io.unchanged`) instead of comparing its n values
        # with their copy each time (0.02 ms per variant of one thread at n = 100,000, in parts of 41)
        self.rows = np.array(self.rows, dtype=np.int64)
        self.rows.flags.writeable = False

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.rows.flags.writeable = False  # (an unpickled array is writeable)


def read_size(n_individuals: int, dosages: bool) -> int | None:
    """Variants to read at a time: at most :data:`DOSAGE_READ_VALUES` dosages (41 variants at
    n = 100,000, at least 1), or None (whole blocks) for hard calls, whose blocks are small."""
    return max(1, DOSAGE_READ_VALUES // max(1, n_individuals)) if dosages else None


def compute_block(job: ScanJob, b0: int, b1: int) -> list:
    """Statistics of block ``b0:b1`` for every model, read and scanned ``job.read_size`` variants at
    a time. BLAS runs single-threaded, so results do not depend on how blocks are distributed."""
    step = max(1, job.read_size or (b1 - b0))
    # (an empty block is read once, as before)
    parts = [job.variants[a:min(a + step, b1)] for a in range(b0, max(b1, b0 + 1), step)]

    def read(part: np.ndarray):
        return job.source.read_block(job.rows, part, job.hard_calls)

    with blas_threads_for(0):
        return job.scanner.scan_parts(read, parts)


def failed_block(job: ScanJob, b: int, error: str) -> list:
    """NaN rows for a block that failed twice."""
    return [empty_results(b, job.scanner.spec, status="failed") for _ in job.scanner.models]


# ----------------------------------------------------------------------------------------------
# Executors
# ----------------------------------------------------------------------------------------------
class _Serial:
    """Blocks computed in this process, in order. For hard calls, on one helper thread: while this
    thread turns a block's results into rows and writes them (Python, under the GIL), the helper
    computes the next (reading and class sums in compiled code that releases the GIL), so that the
    writing no longer leaves a core idle; at most one block is computed ahead (``window``), so
    memory does not grow, and numba's threads in the helper are this thread's. Dosages are
    computed in this thread, as before: their blocks are read and summed in many parts, whose
    Python steps between kernels then waited for the GIL while the rows were written, and the Wald
    scan of ``dos.pgen`` took 1.08 times as long computed ahead (docs/performance.rst)."""

    def __init__(self, job):
        self.job, self.fn = job, compute_block
        self.ahead = job.read_size is None  # whole blocks: hard calls (runner.read_size)
        self.window = 2 if self.ahead else 1
        self.pool = None  # started at the first block

    def submit(self, b0, b1):
        if not self.ahead:
            return self._inline(b0, b1)
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hlmm-blocks")
        return self.pool.submit(self._compute, _numba_threads(), b0, b1)

    def _inline(self, b0, b1):
        return _outcome(lambda: self.fn(self.job, b0, b1))

    def _compute(self, threads, b0, b1):
        _set_numba_threads(threads)
        return self.fn(self.job, b0, b1)

    def result(self, handle):
        return _outcome(handle.result) if self.ahead else handle

    def close(self, cancel: bool = False):
        if self.pool is not None:
            # interrupted: the block being computed ends (compiled code cannot be stopped), the
            # next is not started
            self.pool.shutdown(wait=True, cancel_futures=cancel)
            self.pool = None


def _outcome(call) -> tuple:
    """``("ok", call())``, or ``("error", message)`` for a failure of the block, which is retried,
    then reported; an interruption or an error of the input is raised."""
    try:
        return ("ok", call())
    except (KeyboardInterrupt, InputError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a block is retried, then reported
        return ("error", f"{type(e).__name__}: {e}")


def _numba_threads() -> int | None:
    """numba's threads for this thread's parallel kernels (None without numba)."""
    try:
        import numba
    except ImportError:  # pragma: no cover
        return None
    return numba.get_num_threads()


def _set_numba_threads(threads: int | None) -> None:
    """numba's threads for this thread's parallel kernels (``numba.set_num_threads`` is per thread)."""
    if threads is not None:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


_WORKER_JOB: ScanJob | None = None


def _die_with_parent(parent: int) -> None:
    """Linux: ask the kernel for SIGTERM when the process that started this worker ends, so that no
    worker outlives a run killed by a signal it cannot handle (SIGKILL, the out-of-memory killer);
    before this, such workers stayed idle forever, ~200 MB each. Exits at once if that process
    ended before the request."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass
    if os.getppid() != parent:
        os._exit(1)


def _worker_init(job, threads: int, parent: int | None = None):
    global _WORKER_JOB
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if parent is not None:
        _die_with_parent(parent)
    _WORKER_JOB = job
    source = getattr(job, "source", None)
    if hasattr(source, "threads"):  # a reader's own threads (.bgen inflate): this worker's share of the cores
        source.threads = max(1, threads)
    try:
        _set_numba_threads(threads)
    except ImportError:  # pragma: no cover
        pass


def _worker_call(fn, b0, b1):
    return fn(_WORKER_JOB, b0, b1)


class _Processes:
    """Worker processes, started by spawn (fork is unsafe once numba's threads run); each
    receives the job once, through its initializer."""

    def __init__(self, job, n_jobs):
        import multiprocessing as mp

        self.job, self.n_jobs, self.fn = job, n_jobs, compute_block
        self.window = 2 * n_jobs
        self.threads = max(1, (os.cpu_count() or 1) // n_jobs)
        self.ctx = mp.get_context("spawn")
        self.pool = None  # started at the first block: nothing to start for a finished run

    def _start(self):
        from concurrent.futures import ProcessPoolExecutor

        # the workers are started by this thread (submit), and ended with this process (_die_with_parent)
        self.pool = ProcessPoolExecutor(self.n_jobs, mp_context=self.ctx, initializer=_worker_init,
                                        initargs=(self.job, self.threads, os.getpid()))

    def submit(self, b0, b1):
        if self.pool is None:
            self._start()
        return self.pool.submit(_worker_call, self.fn, b0, b1)

    def result(self, fut):
        from concurrent.futures.process import BrokenProcessPool

        try:
            return ("ok", fut.result())
        except BrokenProcessPool as e:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._start()
            return ("broken", f"worker process died: {e}")
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001
            return ("error", f"{type(e).__name__}: {e}")

    def close(self, cancel: bool = False):
        if self.pool is None:
            return
        if cancel:  # interrupted: stop the workers now rather than finishing their blocks
            for p in list(getattr(self.pool, "_processes", {}).values()):
                p.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Dask:
    """Blocks as tasks on an existing Dask cluster; the job is scattered to workers once."""

    window = 64

    def __init__(self, job, address):
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--dask_scheduler needs dask: pip install 'hlmm[dask]'") from None
        try:
            self.client = Client(address, timeout="10s")
        except Exception as e:  # noqa: BLE001 - distributed raises many kinds for a bad address
            raise InputError(f"--dask_scheduler {address}: cannot connect ({type(e).__name__}: {e})") from None
        self.fn = compute_block
        self.job = self.client.scatter(job, broadcast=True)

    def submit(self, b0, b1):
        return self.client.submit(self.fn, self.job, b0, b1, retries=1, pure=False)

    def result(self, fut):
        try:
            return ("ok", fut.result())
        except Exception as e:  # noqa: BLE001
            return ("failed", f"{type(e).__name__}: {e}")

    def close(self, cancel: bool = False):
        self.client.close()


def open_executor(job: ScanJob, n_jobs: int = 1, dask_scheduler: str | None = None, n_blocks: int = 2):
    """Where blocks are computed: a Dask cluster (connected now, so that a bad address fails before
    anything is written), worker processes (started at the first block) or this process."""
    if dask_scheduler:
        return _Dask(job, dask_scheduler)
    if n_jobs > 1 and n_blocks > 1:
        return _Processes(job, n_jobs)
    return _Serial(job)


def run_blocks(job: ScanJob, blocks: list, on_block, n_jobs: int = 1, dask_scheduler: str | None = None,
               executor=None) -> list:
    """Compute ``blocks`` and call ``on_block(b0, b1, outs, failure)`` for each, in order.

    Parameters
    ----------
    job : ScanJob
    blocks : list of (int, int)
    on_block : callable
        Receives the block's range, the scanner's results and, for a block that failed twice,
        the error (its results are then NaN rows).
    n_jobs : int
    dask_scheduler : str, optional
    executor : optional
        From :func:`open_executor` (instead of ``n_jobs`` and ``dask_scheduler``); closed here.

    Returns
    -------
    list
        ``[b0, b1, error]`` of the blocks that failed twice.
    """
    ex = executor if executor is not None else open_executor(job, n_jobs, dask_scheduler, len(blocks))
    window = ex.window
    attempts, failed = {}, []
    pending, todo = deque(), deque(blocks)
    interrupted = True
    try:
        while todo or pending:
            while todo and len(pending) < window:
                b0, b1 = todo.popleft()
                pending.append((b0, b1, ex.submit(b0, b1)))
            b0, b1, handle = pending.popleft()
            status, value = ex.result(handle)
            failure = None
            if status != "ok":
                attempts[b0] = attempts.get(b0, 0) + 1
                if status in ("error", "broken") and attempts[b0] < 2:
                    log.warning(f"variants {b0}..{b1 - 1} of the selection: {value}; retrying once")
                    if status == "broken":  # every block in flight was lost with the pool
                        lost = [(c0, c1) for c0, c1, _ in pending]
                        pending.clear()
                        todo.extendleft(reversed(lost))
                    pending.appendleft((b0, b1, ex.submit(b0, b1)))
                    continue
                log.error(f"variants {b0}..{b1 - 1} of the selection: failed twice ({value});"
                          " their rows have NaN estimates")
                failure = value
                failed.append([b0, b1, value])
                value = failed_block(job, b1 - b0, value)
            on_block(b0, b1, value, failure)
        interrupted = False
    finally:
        ex.close(cancel=interrupted)
    return failed
