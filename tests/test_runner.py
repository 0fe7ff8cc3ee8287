"""hlmm.runner: blocks come back in order however they are computed; failures are retried, then NaN."""

import numpy as np
import pytest

from hlmm import hetlm, runner
from hlmm.engines import STATUS, make_scanner
from hlmm.io import ArraySource
from hlmm.model import ModelSpec
from hlmm.scan import NullFit, ScanModel


def job(m=30):
    rng = np.random.default_rng(0)
    g = rng.binomial(2, 0.3, (200, m)).astype(float)
    y = rng.standard_normal(200)
    model = ScanModel("y", np.arange(200), y)
    return runner.ScanJob(ArraySource(g), np.arange(200), make_scanner(ModelSpec(), [model]), np.arange(m))


def collect(j, blocks, **kw):
    seen = []
    failed = runner.run_blocks(j, blocks, lambda b0, b1, outs, failure: seen.append((b0, b1, outs[0], failure)), **kw)
    return seen, failed


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_run_blocks__in_order_and_identical_serial_or_parallel(n_jobs):
    j = job()
    blocks = [(b, min(b + 7, 30)) for b in range(0, 30, 7)]
    seen, failed = collect(j, blocks, n_jobs=n_jobs)
    assert [(b0, b1) for b0, b1, _, _ in seen] == blocks and failed == []
    serial, _ = collect(j, blocks)
    for (_, _, a, _), (_, _, b, _) in zip(seen, serial):
        np.testing.assert_array_equal(a["add"], b["add"])


class FailOnce:
    def __init__(self):
        self.calls = {}

    def __call__(self, j, b0, b1):
        self.calls[b0] = self.calls.get(b0, 0) + 1
        if b0 == 7 and self.calls[b0] == 1:
            raise RuntimeError("flaky")
        return REAL(j, b0, b1)


REAL = runner.compute_block


def test_run_blocks__a_failing_block_is_retried_once(monkeypatch, caplog):
    monkeypatch.setattr(runner, "compute_block", FailOnce())
    seen, failed = collect(job(), [(0, 7), (7, 14), (14, 21)])
    assert failed == [] and [s[3] for s in seen] == [None, None, None]
    assert "retrying once" in caplog.text


def test_run_blocks__twice_failing_block_gives_nan_rows_and_goes_on(monkeypatch):
    def always(j, b0, b1):
        if b0 == 7:
            raise ValueError("broken")
        return REAL(j, b0, b1)

    monkeypatch.setattr(runner, "compute_block", always)
    seen, failed = collect(job(), [(0, 7), (7, 14), (14, 21)])
    assert failed == [[7, 14, "ValueError: broken"]]
    _, _, out, failure = seen[1]
    assert failure == "ValueError: broken" and np.isnan(out["add"]).all()
    assert (out["status"] == STATUS["failed"]).all() and np.isfinite(seen[2][2]["add"]).sum() > 0


def test_run_blocks__input_errors_are_not_retried(monkeypatch):
    from hlmm.io import InputError

    def bad(j, b0, b1):
        raise InputError("genotype file x: truncated")

    monkeypatch.setattr(runner, "compute_block", bad)
    with pytest.raises(InputError, match="truncated"):
        collect(job(), [(0, 7)])


def test_run_blocks__serial_computes_the_next_block_while_this_thread_writes(monkeypatch):
    """In this process, block k + 1 is computed on a helper thread while the caller handles block
    k, never more than one block ahead (memory does not grow), with the caller's numba threads;
    the results are the ones computed in the caller's thread, in order."""
    import threading
    import time

    import numba

    events, lock = [], threading.Lock()

    def compute(j, b0, b1):
        with lock:
            events.append(("start", b0, threading.current_thread() is threading.main_thread(),
                           numba.get_num_threads()))
        out = REAL(j, b0, b1)
        with lock:
            events.append(("done", b0))
        return out

    def on_block(b0, b1, outs, failure):
        with lock:
            events.append(("write", b0))
        time.sleep(0.2)  # the next block is computed meanwhile
        seen.append((b0, outs[0]))
        with lock:
            events.append(("written", b0))

    monkeypatch.setattr(runner, "compute_block", compute)
    j = job()
    blocks = [(b, min(b + 7, 30)) for b in range(0, 30, 7)]
    seen = []
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        runner.run_blocks(j, blocks, on_block)
    finally:
        numba.set_num_threads(threads)
    assert [b0 for b0, _ in seen] == [b0 for b0, _ in blocks]
    starts = [e for e in events if e[0] == "start"]
    assert all(not main and t == 1 for _, _, main, t in starts)
    for k in range(len(blocks) - 1):  # block k + 1 computed while block k's rows were written...
        assert events.index(("done", blocks[k + 1][0])) < events.index(("written", blocks[k][0]))
    for k in range(len(blocks) - 2):  # ...but block k + 2 started only after them
        assert events.index(("start", blocks[k + 2][0], False, 1)) > events.index(("written", blocks[k][0]))
    for b0, out in seen:
        want = REAL(j, b0, min(b0 + 7, 30))[0]
        np.testing.assert_array_equal(out["add"], want["add"])


def test_run_blocks__serial_dosages_computed_in_the_callers_thread(monkeypatch):
    """A job read in parts (dosages: runner.read_size) is computed in the caller's thread, one block
    at a time, as before."""
    import threading

    where = []

    def compute(j, b0, b1):
        where.append(threading.current_thread() is threading.main_thread())
        return REAL(j, b0, b1)

    monkeypatch.setattr(runner, "compute_block", compute)
    j = job()
    j.read_size = 3
    seen, failed = collect(j, [(0, 7), (7, 14)])
    assert where == [True, True] and [s[:2] for s in seen] == [(0, 7), (7, 14)] and failed == []


def test_run_blocks__serial_interrupted_stops_after_the_block_being_computed(monkeypatch):
    """Ctrl-C while a block is written: the exception reaches the caller, the block being computed
    ahead ends, and no later block is started."""
    import threading

    started = []

    def compute(j, b0, b1):
        started.append(b0)
        return REAL(j, b0, b1)

    def on_block(b0, b1, outs, failure):
        if b0 == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "compute_block", compute)
    with pytest.raises(KeyboardInterrupt):
        runner.run_blocks(job(), [(b, min(b + 7, 30)) for b in range(0, 30, 7)], on_block)
    assert started[:2] == [0, 7] and set(started) <= {0, 7, 14}  # (14 if it had started)
    assert not [t for t in threading.enumerate() if t.name.startswith("hlmm-blocks")]


@pytest.mark.parametrize("spec", [ModelSpec(), ModelSpec(test="score"), ModelSpec(robust=True)])
def test_compute_block__read_in_parts_gives_the_whole_blocks_results(spec):
    """A block read and scanned a few variants at a time (``read_size``, as for dosages) gives the
    rows of one read: the same arrays to the last bit, and each failure at its variant's position
    within the block. Dosages with a multi-allelic, a monomorphic and a failing variant in the later
    parts."""
    rng = np.random.default_rng(3)
    n, m = 300, 23
    g = np.clip(rng.binomial(2, 0.3, (n, m)) + rng.normal(0, 0.1, (n, m)) * (rng.random((n, m)) < 0.3), 0, 2)
    g = np.round(g * 255) / 255
    g[rng.random((n, m)) < 0.02] = np.nan
    g[:, 17] = 0.0  # monomorphic: filtered
    g[:, 19] = 1.0  # all heterozygous: one class, the fit fails (a problem at 19)
    y = rng.standard_normal(n) * np.exp(0.2 * np.nan_to_num(g[:, 3]))
    one = np.ones((n, 1))
    model = ScanModel("y", np.arange(n), y, null=NullFit.of(hetlm.model(y, one, one).optimize_model()))
    src = ArraySource(g)
    src.variants.n_alleles[11] = 3
    whole = runner.ScanJob(src, np.arange(n), make_scanner(spec, [model], True), np.arange(m))
    parts = runner.ScanJob(src, np.arange(n), whole.scanner, np.arange(m), read_size=4)
    a, b = runner.compute_block(whole, 2, 21)[0], runner.compute_block(parts, 2, 21)[0]
    assert a.keys() == b.keys() and a["status"][11 - 2] == STATUS["multiallelic"]
    assert a["status"][17 - 2] == STATUS["maf"] and a["status"][19 - 2] == STATUS["failed"]
    for key in a:
        if key == "problems":
            assert a[key] == b[key]
        else:
            np.testing.assert_array_equal(a[key], b[key])
    assert [j for j, _ in b["problems"]] == [19 - 2]
    problems = runner.compute_block(parts, 0, m)[0]["problems"]
    assert problems == runner.compute_block(whole, 0, m)[0]["problems"] and [j for j, _ in problems] == [19]


def test_concatenate_results__shifts_problems_by_the_parts_before():
    from hlmm.engines.base import concatenate_results, empty_results

    p1, p2 = empty_results(3, ModelSpec()), empty_results(2, ModelSpec())
    p1["problems"], p2["problems"] = [(1, "a")], [(0, "b"), (1, "c")]
    p2["add"][1] = 5.0
    out = concatenate_results([p1, p2])
    assert out["problems"] == [(1, "a"), (3, "b"), (4, "c")]
    assert out["add"].shape == (5,) and out["add"][4] == 5.0 and np.isnan(out["add"][:4]).all()


def test_read_size__dosages_only():
    assert runner.read_size(100_000, True) == runner.DOSAGE_READ_VALUES // 100_000 == 41
    assert runner.read_size(10**9, True) == 1 and runner.read_size(100_000, False) is None


def test_adaptive_columns__cache_entry_of_another_object_is_rebuilt():
    """The scanner's cache of [1, h] is keyed by the model's id; an entry left by another object
    under that id (as in a scanner unpickled in a worker, whose keys are the parent's ids) is not
    used: the model's own columns are built."""
    from types import SimpleNamespace

    from hlmm.engines.base import Scanner

    m = SimpleNamespace(n=3, adaptive=SimpleNamespace(h=np.array([1.0, 2.0, 3.0])))
    other = SimpleNamespace(n=3, adaptive=SimpleNamespace(h=np.array([9.0, 9.0, 9.0])))
    s = Scanner.__new__(Scanner)
    s._adaptive_cache = {id(m): (other, np.column_stack([np.ones(3), other.adaptive.h]))}
    np.testing.assert_array_equal(s._adaptive_columns(m), np.column_stack([np.ones(3), m.adaptive.h]))
    assert s._adaptive_cache[id(m)][0] is m
    assert s._adaptive_columns(m) is s._adaptive_columns(m)  # built once


def test_run_blocks__a_part_that_fails_fails_its_whole_block_and_is_retried():
    """Read in parts (``read_size``), a read that fails in the second part of a block makes the
    whole block fail: it is retried once (the same rows as an undisturbed run), and a block whose
    part always fails gets NaN rows for all its variants, not only the part's."""
    class Flaky(ArraySource):
        def __init__(self, g, fail_at, times):
            super().__init__(g)
            self.fail_at, self.left = fail_at, times

        def read_block(self, rows, index, hard_calls=False):
            if self.fail_at in index and self.left > 0:
                self.left -= 1
                raise OSError("read error")
            return super().read_block(rows, index, hard_calls)

    rng = np.random.default_rng(4)
    g = np.round(np.clip(rng.binomial(2, 0.3, (200, 30)) + rng.normal(0, 0.1, (200, 30)), 0, 2) * 255) / 255
    y = rng.standard_normal(200)
    scanner = make_scanner(ModelSpec(), [ScanModel("y", np.arange(200), y)], True)
    blocks = [(0, 10), (10, 20), (20, 30)]

    def scan(source):
        j = runner.ScanJob(source, np.arange(200), scanner, np.arange(30), read_size=4)
        return collect(j, blocks)

    clean, _ = scan(ArraySource(g))
    once, failed = scan(Flaky(g, 15, 1))  # 15: the second part (14-17) of block 10-20
    assert failed == []
    for (_, _, a, _), (_, _, b, _) in zip(clean, once):
        np.testing.assert_array_equal(a["add"], b["add"])
    always, failed = scan(Flaky(g, 15, 99))
    assert failed == [[10, 20, "OSError: read error"]]
    assert np.isnan(always[1][2]["add"]).all() and (always[1][2]["status"] == STATUS["failed"]).all()
    np.testing.assert_array_equal(always[2][2]["add"], clean[2][2]["add"])


def test_scan_job_rows_are_a_read_only_copy_also_when_unpickled():
    """The runner passes the job's rows with every part: one read-only int64 array, which the
    readers and caches then know unchanged by identity (hlmm.io._base.same_rows)."""
    import pickle

    rows = np.arange(200, dtype=np.int32)
    job = runner.ScanJob(ArraySource(np.zeros((3, 200))), rows, None, np.arange(3))
    assert job.rows is not rows and job.rows.dtype == np.int64 and not job.rows.flags.writeable
    rows[0] = 5  # the caller's array is not the job's
    assert job.rows[0] == 0
    again = pickle.loads(pickle.dumps(job))
    assert not again.rows.flags.writeable
    np.testing.assert_array_equal(again.rows, np.arange(200))
