"""Time the compiled sums of genotype blocks at several design widths (columns per individual).

The class sums of dosages (``dosage_classes``: a scatter over the ~9,000 distinct dosages of each
variant) and the score test's power sums (``centred_power_sums``) on one block of imputation-like
dosages (30% of the calls perturbed by N(0, 0.1), on the 1/16384 grid), and the class sums of the
same block's hard calls, packed as in a .bed without missing calls (``class_moments_packed``) and
decoded (``class_moments_codes``); n = 100,000, 256 variants; medians of ``--repeats`` calls after
a warm-up. The figures behind :func:`hlmm.engines.classes.padded_width` and the hard-call kernels'
partial sums (docs/performance.rst)::

    python benchmarks/bench_kernels.py
    python benchmarks/bench_kernels.py --b 512 --widths 4 8 24 --repeats 7 --compare /tmp/head

``--scan-design`` makes the columns a scan's instead of standard normal ones: the inclusion
indicator (zeros for a random 10% of the individuals, left out) and normal columns that are zero
where it is, whose class sums the compiled kernel counts and adds (``hlmm_class_counts``); with
``--widths 3 4 21``, the columns of one phenotype (1, y, y^2), of 4, and of ten phenotypes::

    python benchmarks/bench_kernels.py --scan-design --widths 3 4 21 --compare /tmp/head

``--compare PATH`` also times the hard-call kernels of another checkout
(``PATH/hlmm/engines/_kernels_classes.py``, loaded from a copy as a module of its own), each call
interleaved with ours, and prints the ratio ours / baseline and the largest difference of the sums.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hlmm.engines import _kernels_classes, _kernels_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_original import build_in_place  # noqa: E402


def load_baseline(path: Path):
    """The ``_kernels_classes`` module of the checkout at ``path``, imported from a copy."""
    src = path / "hlmm" / "engines" / "_kernels_classes.py"
    if not src.is_file():
        raise SystemExit(f"--compare: no {src}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_kernels_"))
    shutil.copyfile(src, tmp / "baseline_kernels_classes.py")
    build_in_place(path)
    for lib in src.parent.glob("_classsums*.so"):  # its C kernel, found next to the module
        shutil.copyfile(lib, tmp / lib.name)
    sys.path.insert(0, str(tmp))
    return importlib.import_module("baseline_kernels_classes")


def hard_call_kernels(module, packed, codes, rows) -> dict:
    """The hard-call class-sum kernels of ``module``, as functions of the design ``Y``; the packed
    kernel reads it in the layout the module's scans give it (``packed_design``, if the module has
    one: column-major for the compiled kernel), made once per ``Y`` outside the timed call."""
    positions = "positions" in inspect.signature(module.class_moments_codes.py_func).parameters
    extra = (rows,) if positions else ()
    layout, memo = getattr(module, "packed_design", None), {}

    def design(Y):
        if layout is None:
            return Y
        if memo.get("Y") is not Y:
            D = layout(*Y.shape)
            D[: Y.shape[0]] = Y
            memo.update(Y=Y, D=D)
        return memo["D"]

    return {"class_moments_packed": lambda Y: module.class_moments_packed(packed, design(Y)),
            "class_moments_codes": lambda Y: module.class_moments_codes(codes, Y, *extra)}


def timed(f, Y) -> float:
    t = time.perf_counter()
    f(Y)
    return time.perf_counter() - t


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--b", type=int, default=256)
    p.add_argument("--widths", type=int, nargs="+", default=[3, 4, 21, 24])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compare", type=Path, help="another checkout whose hard-call kernels to time as the baseline")
    p.add_argument("--scan-design", action="store_true",
                   help="the first column an inclusion indicator (10%% zeros), the others zero where it is")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    n, b = args.n, args.b
    g = rng.binomial(2, rng.uniform(0.05, 0.5, b)[:, None], (b, n)).astype(np.float64)
    codes = g.astype(np.int8)
    bits = np.select([g == 2, g == 1], [0, 2], 3).astype(np.uint8)  # .bed codes: 00 two copies, 10 one, 11 none
    bits = np.concatenate([bits, np.full((b, -n % 4), 3, np.uint8)], axis=1)
    packed = (bits[:, 0::4] | bits[:, 1::4] << 2 | bits[:, 2::4] << 4 | bits[:, 3::4] << 6).astype(np.uint8)
    pert = rng.random((b, n)) < 0.3
    g[pert] = np.clip(g[pert] + rng.normal(0, 0.1, pert.sum()), 0, 2)
    D = (np.round(g * 16384) / 16384).astype(np.float32)
    rows = np.arange(n)
    ours = {"dosage_classes": lambda Y: _kernels_classes.dosage_classes(D, Y, 16384),
            "centred_power_sums": lambda Y: _kernels_score.centred_power_sums(D, rows, Y),
            **hard_call_kernels(_kernels_classes, packed, codes, rows)}
    base = hard_call_kernels(load_baseline(args.compare), packed, codes, rows) if args.compare else {}
    print(f"n = {n:,}, {b} variants; ms per variant (median of {args.repeats}); compiled hard-call kernel: "
          f"{getattr(_kernels_classes, 'COMPILED', False)}"
          + (f"; baseline {args.compare}" if base else ""))
    for q in args.widths:
        Y = np.ascontiguousarray(rng.standard_normal((n, q)))
        if args.scan_design:
            Y[:, 0] = rng.random(n) >= 0.1
            Y[:, 1:] *= Y[:, :1]
        out = []
        for name, f in ours.items():
            g0 = base.get(name)
            f(Y)  # compile / warm
            if g0 is not None:
                diff = np.abs(f(Y) - g0(Y)).max()
            ts, tb = [], []
            for _ in range(args.repeats):
                ts.append(timed(f, Y))
                if g0 is not None:
                    tb.append(timed(g0, Y))
            ms = 1e3 * np.median(ts) / b
            if g0 is None:
                out.append(f"{name} {ms:.3f}")
            else:
                mb = 1e3 * np.median(tb) / b
                out.append(f"{name} {ms:.3f} (baseline {mb:.3f}, ratio {ms / mb:.2f}, largest difference {diff:.1e})")
        print(f"  {q:>3} columns: " + ", ".join(out), flush=True)


if __name__ == "__main__":
    main()
