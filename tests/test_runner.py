"""hlmm.runner: blocks come back in order however they are computed; failures are retried, then NaN."""

import numpy as np
import pytest

from hlmm import runner
from hlmm.engines import STATUS, make_scanner
from hlmm.io import ArraySource
from hlmm.model import ModelSpec
from hlmm.scan import ScanModel


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
