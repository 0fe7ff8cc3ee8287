"""Time hlmm_chr against plink2 ``--glm`` on imputed dosages and hard calls, side by side, as whole processes.

plink2 --glm fits the mean model only (least squares of the trait on each variant); hlmm_chr fits
the mean and log-variance effects of each variant by maximum likelihood (Wald, the default) or
tests them by score tests under the null model (``--test score``). Both read the same genotypes
in the formats a GWAS meets: a .pgen of dosages, the .bgen made from it, and .bed hard calls.

Data (simulated once, seeded, and kept in ``--workdir``; remade only when a file is missing or the
sizes changed): n individuals (default 100,000) and m variants (default 6,000) on chromosome 1,
each with an allele frequency uniform in [0.05, 0.5] for its counted allele (A1 of the .bed, ALT
of the .pgen and .bgen, allele "A"; the other is "G"). The same genotypes g ~ Binomial(2, p) are
written as

* ``dos.pgen`` (+ .pvar, .psam; with pgenlib's PgenWriter): dosages g + N(0, 0.1) for a random
  30% of the calls, clipped to [0, 2]; no missing dosages (as imputed data);
* ``hard.bed`` (with hlmm.io.BedWriter): the hard calls g, no missing calls;
* ``miss.bed``: the hard calls with a random 0.5% of the calls missing;
* ``dos.bgen`` (+ dos.sample): ``plink2 --pfile dos --export bgen-1.2 bits=8 ref-first``, the
  layout of UK Biobank's imputed data (zlib-compressed 8-bit probabilities). Both programs read
  it with ``--sample dos.sample`` (ID_1/ID_2 = FID/IID; the IDs embedded in the .bgen are
  FID_IID), plink2 with ``--bgen dos.bgen ref-first`` so that ALT stays the second allele;
* ``pheno.txt`` (FID IID trait: one standard normal trait), ``pheno10.txt`` (ten, t0..t9) and
  ``cov.txt`` (two standard normal covariates c1 c2, used with ``--covariates``).

Runs (``--what``; each program on each data set):

``pgen``        dos.pgen;
``bed``         hard.bed and miss.bed;
``bgen``        dos.bgen;
``phenotypes``  dos.pgen with the ten traits of pheno10.txt (plink2 reads all the columns,
                hlmm_chr ``--all_phenotypes``);
``pgen8``       dos8.pgen, one trait and the ten: ``plink2 --bgen dos.bgen ref-first --sample
                dos.sample --make-pgen``, UK Biobank's 8-bit dosages as a user converts them for
                plink2 (a dosage is then one of at most 511 values, about 330 distinct per
                variant, against about 9,100 in dos.pgen; made once);
``pgen3``       dos3.pgen, one trait and the ten: dos.pgen's dosages rounded to 3 decimals, as
                imputation servers write a VCF's DS field (Minimac4) and ``plink2 --vcf ...
                dosage=DS`` imports it (a dosage is then one of at most 2,001 values, about 1,100
                distinct per variant here; written with pgenlib, which puts each on the 1/16384
                grid as plink2 does; made once);
``bed5``        hard5.bed and miss5.bed: hard.bed's and miss.bed's m variants five times over (5m
                variants, rs0 to rs<5m-1>, made once), so that k1 may be up to 5m: at about 0.1 ms
                per hard-call variant, 5,400 variants add half a second to a whole process,
                within the noise of its start-up.

The programs: ``plink2 --glm allow-no-covars --threads T`` (T = ``--plink-threads``, default 2;
``--covar cov.txt`` and ``hide-covar`` instead with ``--covariates``) on the first k variants
(``--snps rs0-rs<k-1>``); ``hlmm_chr GENO 0 k PHENO OUT --quiet`` (Wald, the defaults) and with
``--test score`` (``--mean_covar cov.txt --var_covar cov.txt`` with ``--covariates``); and with
``--compare PATH`` the same two hlmm_chr runs of another checkout (``PYTHONPATH=PATH``,
``PATH/bin/hlmm_chr.py``), labelled "baseline". Every run's outputs are checked to hold k rows
per trait.

For each run the marginal time per variant is

    (t[k1] - t[k0]) / (k1 - k0)

with ``t`` the median wall time over ``--repeats`` whole processes on the first k variants, so that
start-up, reading the phenotypes and the null fits cancel. Runs are interleaved: in every repeat
every run at k0, then every run at k1 (after one untimed warm-up of each, which compiles numba's
caches and fills the page cache; an edit of hlmm's kernels during the measurement makes numba
compile again, which shows as an outlier). Peak memory is GNU time's maximum resident set size of the run, the
largest over the repeats at k1. The ratio column is the time per variant over that of the
"plink2 --glm" row on the same data (blank unless both are positive); a warning lists the runs whose
walls at k0 and k1 differ by less than 0.5 s or three times their spread over the repeats.

plink2 reads a .bgen by first converting all of it to a temporary .pgen (whatever ``--snps``
says), so with ``--snps`` the conversion is in both t[k0] and t[k1] and cancels from its marginal
time. The ``bgen`` runs therefore add "plink2 --glm, .bgen of k": plink2 on ``dos_first<k>.bgen``
(+ .sample), the first k variants exported as dos.bgen was (made once per k), whose marginal time
includes the conversion, as a whole-chromosome run would.

``--profile`` runs one hlmm_chr process each (Wald and ``--test score``, on dos.pgen unless
``--profile-data`` says otherwise, k1 variants) under ``py-spy record --format raw`` (sampling
``--profile-rate`` Hz; the raw stacks are kept in ``--workdir`` for flame graphs) and prints where
the time goes. Each sample's stack is read from the innermost Python frame outwards and counted in
the first group whose pattern (a regular expression on ``file:function``, e.g.
``hlmm/results.py:MemberFile.write``) matches a frame, the groups tried in this order:

``jit+imports``   ``numba/``, ``llvmlite/``, ``importlib``: loading numba's cached kernels and
                  lazy imports during the scan (a fixed cost);
``compression``   ``gzip.py``, ``zlib``, ``results.py:_member`` (gzip.compress of a block's text),
                  ``results.py:MemberFile.write`` (the write and fsync of the member);
``formatting``    anything else in ``hlmm/results.py`` (numbers to text, result tables);
``decode``        ``hlmm/io/`` (pgenlib, .bgen's zlib inflate and 8-bit decode, .bed unpacking),
                  ``pgenlib``;
``sums``          class and dosage sums: ``hlmm/engines/classes.py``, ``_kernels_classes.py``,
                  ``_kernels_score.py``, ``engines/score.py:*._power_products`` (which calls numba's
                  ``centred_power_sums``);
``newton``        Newton fits: ``hlmm/engines/_hlm_fits.py``, ``_kernels_hlm.py``,
                  ``hlm_classes.py:*._fit_ragged`` (which calls ``fit_dosage_classes``);
``score stats``   ``hlmm/score.py``, ``engines/score.py:*._score`` (the statistics from the sums);
``other scan``    the rest of the scan loop;

and a stack without a frame of the scan loop (``run_blocks``, ``_scan_blocks``, ``compute_block``)
counts as ``start-up`` (imports, reading the inputs, null fits). Numba-compiled kernels have no
Python frames: py-spy charges their time to the Python line that calls them, hence the call-site
patterns. ``--profile-native`` adds native frames to the raw file (for flame graphs) but the
groups read Python frames only. start-up and jit+imports are printed in seconds, the other groups in ms
per variant (their seconds of samples / k1) and as shares of the scan.

Examples (the table in docs/performance.rst; making the data takes ~2 min at n = 100,000, m = 6,000,
extrapolated from smaller runs)::

    python benchmarks/bench_dosages.py --rst docs/_dosages_table.rst --json dosages.json
    python benchmarks/bench_dosages.py --what pgen bgen --compare ../hlmm-main
    python benchmarks/bench_dosages.py --profile

A smoke run::

    python benchmarks/bench_dosages.py --n 5000 --m 600 --k 100 600 --repeats 1 --workdir /tmp/bd
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hlmm.io import BedWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_original import REPO, build_in_place, run_once  # noqa: E402

WHAT = ("pgen", "bed", "bgen", "phenotypes", "pgen8", "pgen3", "bed5")
TRAITS10 = [f"t{j}" for j in range(10)]


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def plink2() -> str:
    return shutil.which("plink2") or "plink2"


def data_files(workdir: Path) -> list:
    return [workdir / f for f in ("dos.pgen", "dos.pvar", "dos.psam", "hard.bed", "hard.bim", "hard.fam", "miss.bed",
                                  "miss.bim", "miss.fam", "dos.bgen", "dos.sample", "pheno.txt", "pheno10.txt",
                                  "cov.txt")]


def simulate(workdir: Path, n: int, m: int, seed: int = 1, block: int = 128) -> dict:
    """Write the data sets of the module docstring in ``workdir`` unless they are there; returns their stamp."""
    stamp = workdir / "simulated.json"
    want = {"n": n, "m": m, "seed": seed, "dosage_sd": 0.1, "dosage_fraction": 0.3, "missing": 0.005}
    if stamp.exists():
        have = json.loads(stamp.read_text())
        if {k: have.get(k) for k in want} == want and all(f.exists() for f in data_files(workdir)):
            return have
    import pgenlib

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    ids = [(f"f{i}", f"i{i}") for i in range(n)]
    pw = pgenlib.PgenWriter(str(workdir / "dos.pgen").encode(), n, m, False, dosage_present=True)
    with BedWriter(str(workdir / "hard"), ids) as hard, BedWriter(str(workdir / "miss"), ids) as miss:
        for j0 in range(0, m, block):
            b = min(block, m - j0)
            p = rng.uniform(0.05, 0.5, b)
            g = rng.binomial(2, p[:, None], (b, n)).astype(float)  # variant-major, copies of A ("A1", ALT)
            # dosages: expected counts from noisy genotype probabilities (imputation-like), as bench_features
            dos = np.clip(g + rng.normal(0, 0.1, (b, n)) * (rng.random((b, n)) < 0.3), 0, 2).astype(np.float32)
            for k in range(b):
                pw.append_dosages(dos[k])
            hard.write(g.T)
            g[rng.random((b, n)) < 0.005] = np.nan
            miss.write(g.T)
    pw.close()
    (workdir / "dos.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n" + "".join(
        f"1\t{1000 * (j + 1)}\trs{j}\tG\tA\n" for j in range(m)))
    (workdir / "dos.psam").write_text("#FID\tIID\n" + "".join(f"{a}\t{b}\n" for a, b in ids))
    Y = rng.standard_normal((n, 10))
    C = rng.standard_normal((n, 2))
    (workdir / "pheno.txt").write_text("FID IID trait\n" + "".join(f"f{i} i{i} {Y[i, 0]:.10g}\n" for i in range(n)))
    (workdir / "pheno10.txt").write_text("FID IID " + " ".join(TRAITS10) + "\n" + "".join(
        f"f{i} i{i} " + " ".join(f"{v:.10g}" for v in Y[i]) + "\n" for i in range(n)))
    (workdir / "cov.txt").write_text("FID IID c1 c2\n" + "".join(
        f"f{i} i{i} {C[i, 0]:.10g} {C[i, 1]:.10g}\n" for i in range(n)))
    t1 = time.perf_counter()
    cmd = [plink2(), "--pfile", str(workdir / "dos"), "--export", "bgen-1.2", "bits=8", "ref-first",
           "--threads", "2", "--out", str(workdir / "dos")]
    run_once(cmd, None, workdir / "export_bgen.log")
    have = {**want, "seconds_write": round(t1 - t0, 1), "seconds_bgen": round(time.perf_counter() - t1, 1),
            "bgen_command": "plink2 --pfile dos --export bgen-1.2 bits=8 ref-first"}
    stamp.write_text(json.dumps(have))
    return have


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------
@dataclass
class Run:
    data: str
    program: str
    cmd: list  # with "{k}" and "{k-1}" placeholders
    env: dict | None
    outputs: list  # files (with "{k}") that must hold k data rows each
    plink: bool = False
    walls: dict = field(default_factory=dict)
    rss: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def tag(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", f"{self.data}_{self.program}").strip("_")

    def at(self, k: int) -> list:
        return [str(c).replace("{k}", str(k)).replace("{k-1}", str(k - 1)) for c in self.cmd]

    def outputs_at(self, k: int) -> list:
        return [Path(str(o).replace("{k}", str(k))) for o in self.outputs]


def python_env(path: Path) -> dict:
    env = {key: v for key, v in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(path)
    return env


def build_runs(args) -> list:
    w = args.workdir
    data = {  # label: (what, plink2's genotype flags, hlmm_chr's genotype file + flags, phenotype file, traits)
        "dos.pgen": ("pgen", ["--pfile", w / "dos"], [w / "dos.pgen"], "pheno.txt", ["trait"]),
        "hard.bed": ("bed", ["--bfile", w / "hard"], [w / "hard.bed"], "pheno.txt", ["trait"]),
        "miss.bed": ("bed", ["--bfile", w / "miss"], [w / "miss.bed"], "pheno.txt", ["trait"]),
        "dos.bgen": ("bgen", ["--bgen", w / "dos.bgen", "ref-first", "--sample", w / "dos.sample"],
                     [w / "dos.bgen", "--sample", w / "dos.sample"], "pheno.txt", ["trait"]),
        "dos.pgen, 10 traits": ("phenotypes", ["--pfile", w / "dos"], [w / "dos.pgen", "--all_phenotypes"],
                                "pheno10.txt", TRAITS10),
        "hard5.bed": ("bed5", ["--bfile", w / "hard5"], [w / "hard5.bed"], "pheno.txt", ["trait"]),
        "miss5.bed": ("bed5", ["--bfile", w / "miss5"], [w / "miss5.bed"], "pheno.txt", ["trait"]),
        "dos8.pgen": ("pgen8", ["--pfile", w / "dos8"], [w / "dos8.pgen"], "pheno.txt", ["trait"]),
        "dos8.pgen, 10 traits": ("pgen8", ["--pfile", w / "dos8"], [w / "dos8.pgen", "--all_phenotypes"],
                                 "pheno10.txt", TRAITS10),
        "dos3.pgen": ("pgen3", ["--pfile", w / "dos3"], [w / "dos3.pgen"], "pheno.txt", ["trait"]),
        "dos3.pgen, 10 traits": ("pgen3", ["--pfile", w / "dos3"], [w / "dos3.pgen", "--all_phenotypes"],
                                 "pheno10.txt", TRAITS10),
    }
    hlmms = [("hlmm_chr", REPO)]
    if args.compare:
        build_in_place(args.compare.resolve())
        hlmms.append(("baseline hlmm_chr", args.compare.resolve()))
    plink_env = {key: v for key, v in os.environ.items() if key != "PYTHONPATH"}
    runs = []
    for label, (what, pflags, hflags, pheno, traits) in data.items():
        if what not in args.what:
            continue
        out = w / "out" / re.sub(r"[^A-Za-z0-9]+", "_", label)
        cov = ["--covar", w / "cov.txt"] if args.covariates else []
        glm = ["--glm", "hide-covar" if args.covariates else "allow-no-covars"]
        prefix = f"{out}_plink2_{{k}}"
        runs.append(Run(label, "plink2 --glm", [plink2(), *pflags, "--pheno", w / pheno, *cov, *glm,
                                                "--snps", "rs0-rs{k-1}", "--threads", str(args.plink_threads),
                                                "--out", prefix], plink_env,
                        [f"{prefix}.{t}.glm.linear" for t in traits], plink=True))
        if what == "bgen":  # plink2 imports the whole .bgen first: a .bgen of just k variants counts that too
            prefix = f"{out}_plink2_kbgen_{{k}}"
            runs.append(Run(label, "plink2 --glm, .bgen of k", [
                plink2(), "--bgen", w / "dos_first{k}.bgen", "ref-first", "--sample", w / "dos_first{k}.sample",
                "--pheno", w / pheno, *cov, *glm, "--threads", str(args.plink_threads), "--out", prefix],
                plink_env, [f"{prefix}.{t}.glm.linear" for t in traits]))
        cov = ["--mean_covar", w / "cov.txt", "--var_covar", w / "cov.txt"] if args.covariates else []
        for name, path in hlmms:
            for test in ([], ["--test", "score"]):
                prefix = f"{out}_{name.replace(' ', '_')}_{'_'.join(test[1:]) or 'wald'}_{{k}}"
                program = f"{name}{' --test score' if test else ''}"
                outs = [f"{prefix}.models.gz"] if len(traits) == 1 else [f"{prefix}.{t}.models.gz" for t in traits]
                runs.append(Run(label, program, [sys.executable, path / "bin" / "hlmm_chr.py", hflags[0], "0", "{k}",
                                                 w / pheno, prefix, "--quiet", *hflags[1:], *cov, *test],
                                python_env(path), outs))
    return runs


def first_bgens(workdir: Path, ks: tuple) -> None:
    """dos_first{k}.bgen (+ .sample): the first k variants of dos.pgen, exported as dos.bgen is."""
    for k in ks:
        if not (workdir / f"dos_first{k}.bgen").exists() or not (workdir / f"dos_first{k}.sample").exists():
            run_once([plink2(), "--pfile", str(workdir / "dos"), "--snps", f"rs0-rs{k - 1}", "--export", "bgen-1.2",
                      "bits=8", "ref-first", "--threads", "2", "--out", str(workdir / f"dos_first{k}")], None,
                     workdir / "export_bgen.log")


def repeated_beds(workdir: Path, times: int = 5) -> None:
    """hard5.bed and miss5.bed (+ .bim, .fam): the variants of hard.bed and miss.bed ``times`` times
    over, renamed rs0, rs1, ... with increasing positions (made once)."""
    for name in ("hard", "miss"):
        out = workdir / f"{name}{times}"
        if all(out.with_suffix(e).exists() for e in (".bed", ".bim", ".fam")):
            continue
        bim = [line.split("\t") for line in (workdir / f"{name}.bim").read_text().splitlines()]
        m = len(bim)
        with open(out.with_suffix(".bim.tmp"), "w") as f:
            for c in range(times):
                for i, cols in enumerate(bim):
                    f.write("\t".join([cols[0], f"rs{c * m + i}", cols[2], str(1000 * (c * m + i + 1)), *cols[4:]])
                            + "\n")
        body = (workdir / f"{name}.bed").read_bytes()
        with open(out.with_suffix(".bed.tmp"), "wb") as f:
            f.write(body[:3])
            for _ in range(times):
                f.write(body[3:])
        shutil.copyfile(workdir / f"{name}.fam", out.with_suffix(".fam"))
        os.replace(out.with_suffix(".bim.tmp"), out.with_suffix(".bim"))
        os.replace(out.with_suffix(".bed.tmp"), out.with_suffix(".bed"))


def pgen8(workdir: Path) -> None:
    """dos8.pgen (+ .pvar, .psam): dos.bgen's 8-bit dosages converted by plink2 (made once)."""
    if not all((workdir / f"dos8.{e}").exists() for e in ("pgen", "pvar", "psam")):
        run_once([plink2(), "--bgen", str(workdir / "dos.bgen"), "ref-first", "--sample", str(workdir / "dos.sample"),
                  "--make-pgen", "--threads", "2", "--out", str(workdir / "dos8")], None, workdir / "make_pgen8.log")


def pgen3(workdir: Path, block: int = 64) -> None:
    """dos3.pgen (+ .pvar, .psam): dos.pgen's dosages rounded to 3 decimals (made once)."""
    if all((workdir / f"dos3.{e}").exists() for e in ("pgen", "pvar", "psam")):
        return
    import pgenlib

    reader = pgenlib.PgenReader(str(workdir / "dos.pgen").encode())
    n, m = reader.get_raw_sample_ct(), reader.get_variant_ct()
    tmp = workdir / "dos3.pgen.tmp"
    writer = pgenlib.PgenWriter(str(tmp).encode(), n, m, False, dosage_present=True)
    buf = np.empty((block, n), dtype=np.float64)
    for j0 in range(0, m, block):
        b = min(block, m - j0)
        reader.read_dosages_range(j0, j0 + b, buf[:b])
        for row in np.round(buf[:b], 3):
            writer.append_dosages(row)
    writer.close()
    reader.close()
    for e in ("pvar", "psam"):
        shutil.copyfile(workdir / f"dos.{e}", workdir / f"dos3.{e}")
    os.replace(tmp, workdir / "dos3.pgen")


def count_rows(path: Path) -> int:
    """Data rows of a plink2 report (lines not starting with #) or of an hlmm_chr .models.gz (all but the header)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as f:
            return sum(1 for _ in f) - 1
    with open(path) as f:
        return sum(1 for line in f if not line.startswith("#"))


def execute(run: Run, k: int, log: Path) -> tuple[float, float] | None:
    """Run at k variants and check its outputs; None (and ``run.error``) if it failed."""
    outs = run.outputs_at(k)
    for o in outs:
        o.unlink(missing_ok=True)
    try:
        wall, mb = run_once(run.at(k), run.env, log)
    except SystemExit as e:
        run.error = str(e).splitlines()[0] + f" (see {log})"
        return None
    for o in outs:
        rows = count_rows(o) if o.exists() else None
        if rows != k:
            run.error = f"{o.name}: {'missing' if rows is None else f'{rows} rows'}, expected {k} (see {log})"
            return None
    return wall, mb


def summarise(runs: list, k0: int, k1: int) -> list:
    rows, plink = [], {}
    for r in runs:
        row = {"data": r.data, "program": r.program, "command": shlex.join(r.at(k1)), "error": r.error}
        if not r.error and r.walls.get(k0) and r.walls.get(k1):
            a, b = statistics.median(r.walls[k0]), statistics.median(r.walls[k1])
            per = (b - a) / (k1 - k0)
            row.update({"wall_k0": a, "wall_k1": b, "walls": {str(k): v for k, v in r.walls.items()},
                        "ms_per_variant": 1e3 * per, "variants_per_s": 1 / per if per > 0 else None,
                        "peak_mb": max(r.rss[k1]), "peak_mb_k0": max(r.rss[k0])})
            if r.plink:
                plink[r.data] = 1e3 * per
        rows.append(row)
    for row in rows:
        ref = plink.get(row["data"])
        row["vs_plink2"] = row["ms_per_variant"] / ref if ref and ref > 0 and row.get("ms_per_variant", 0) > 0 else None
    return rows


def fmt(row: dict) -> list:
    if "ms_per_variant" not in row:
        return [row["data"], row["program"], "failed", "", "", "", "", ""]
    rate = f"{row['variants_per_s']:,.0f}" if row["ms_per_variant"] > 0 else "—"  # noise when not above 0
    return [row["data"], row["program"], f"{row['wall_k0']:.2f}", f"{row['wall_k1']:.2f}",
            f"{row['ms_per_variant']:.3f}", rate, f"{row['peak_mb']:,.0f}",
            "" if row["vs_plink2"] is None else f"{row['vs_plink2']:.2f}"]


def print_table(rows: list, k0: int, k1: int) -> None:
    head = ["data", "program", f"wall k0={k0} (s)", f"wall k1={k1} (s)", "ms/variant", "variants/s", "peak MB",
            "x plink2"]
    body = [fmt(r) for r in rows]
    width = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    line = "  ".join
    print("\n" + line(h.ljust(wd) if i < 2 else h.rjust(wd) for i, (h, wd) in enumerate(zip(head, width))))
    for b in body:
        print(line(c.ljust(wd) if i < 2 else c.rjust(wd) for i, (c, wd) in enumerate(zip(b, width))))
    noisy = []
    for r in rows:
        if r["error"]:
            print(f"failed: {r['data']}, {r['program']}: {r['error']}")
        elif "walls" in r:
            spread = max(max(w) - min(w) for w in r["walls"].values())
            if r["wall_k1"] - r["wall_k0"] < max(0.5, 3 * spread):
                noisy.append(f"{r['data']} {r['program']}")
    if noisy:
        print(f"warning: the walls at k1 and k0 differ by less than 0.5 s or 3x their spread over the repeats, so the "
              f"time per variant is mostly noise (use larger k or n), for: {'; '.join(noisy)}")


def conditions(args, stamp: dict) -> str:
    cov = "two covariates (mean and variance)" if args.covariates else "no covariates"
    return (f"n = {args.n:,} individuals, m = {stamp['m']:,} variants with allele frequencies uniform in [0.05, 0.5]; "
            "dos.pgen: dosages g + N(0, 0.1) at 30% of the calls, clipped to [0, 2], no missing; hard.bed: hard "
            f"calls, no missing; miss.bed: 0.5% missing calls; dos.bgen: ``{stamp['bgen_command']}`` (as UK "
            f"Biobank's: zlib, 8 bits; read with --sample dos.sample); one standard normal trait (ten for '10 "
            f"traits'), {cov}. "
            + ("hard5.bed and miss5.bed: hard.bed's and miss.bed's variants five times over "
               f"({5 * stamp['m']:,} variants). " if "bed5" in args.what else "")
            + ("dos8.pgen: dos.bgen's 8-bit dosages converted by plink2 --make-pgen. " if "pgen8" in args.what else "")
            + ("dos3.pgen: dos.pgen's dosages rounded to 3 decimals (as imputation servers write DS). "
               if "pgen3" in args.what else "")
            + "Marginal time per variant "
            f"between k0 = {args.k[0]:,} and k1 = {args.k[1]:,} variants, medians of {args.repeats} interleaved "
            f"whole-process runs; peak resident memory at k1. plink2 --glm (mean model only) with "
            f"--threads {args.plink_threads}; hlmm_chr with its defaults (one process). {machine()}.")


def machine() -> str:
    try:
        ver = subprocess.run([plink2(), "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        ver = "plink2 ?"
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    return (f"{platform.node()}, {os.cpu_count()} CPUs ({cpu()}), load {os.getloadavg()[0]:.2f}; Python "
            f"{platform.python_version()}; {ver}; hlmm at {commit or '?'}")


def cpu() -> str:
    """The processor's model name, family and model (/proc/cpuinfo), and the vectors of hlmm's
    compiled kernels on it: the same code takes several times as long on AVX2 as on AVX-512
    machines where it is not written for both (docs/performance.rst)."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = info.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{info.get('model name', platform.processor() or '?')}, family {info.get('cpu family', '?')} "
            f"model {info.get('model', '?')}, {isa}")


def write_rst(path: Path, rows: list, args, stamp: dict, argv: list) -> None:
    cmdline = shlex.join(["python", "benchmarks/bench_dosages.py", *argv])
    out = [f"Measured with ``{cmdline}``: {conditions(args, stamp)}", "",
           ".. list-table::", "   :header-rows: 1", "",
           "   * - data", "     - program", f"     - wall, {args.k[0]:,} variants (s)",
           f"     - wall, {args.k[1]:,} variants (s)", "     - ms / variant", "     - variants / s",
           "     - peak MB", "     - time / plink2's"]
    for r in rows:
        cells = fmt(r)
        out.append(f"   * - {cells[0]}")
        out += [f"     - {c or '—'}" if i else f"     - ``{c}``" for i, c in enumerate(cells[1:])]
    path.write_text("\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------
# Profile
# ----------------------------------------------------------------------------------------------
GROUPS = [  # (group, regex on "file:function" of a frame), tried in this order from the innermost frame out
    ("jit+imports", r"(^|/)(numba|llvmlite)/|importlib"),
    ("compression", r"(^|/)gzip\.py:|zlib|results\.py:(_member|MemberFile\.write)$"),
    ("formatting", r"hlmm/results\.py:"),
    ("decode", r"hlmm/io/|pgenlib"),
    ("sums", r"hlmm/engines/(classes|_kernels_classes|_kernels_score)\.py:|engines/score\.py:(\w+\.)?_power_products$"),
    ("newton", r"hlmm/engines/(_hlm_fits|_kernels_hlm)\.py:|hlm_classes\.py:(\w+\.)?_fit_ragged$"),
    ("score stats", r"hlmm/score\.py:|engines/score\.py:(\w+\.)?_score$"),
]
SCAN = re.compile(r":(\w+\.)?(run_blocks|_scan_blocks|compute_block)$")
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):\d+\)$")  # Python frames; native ones have no line
FIXED = ("start-up", "jit+imports")  # reported in seconds, the rest in ms per variant


def classify(stack: list) -> str:
    """The group of one sample's stack (outermost frame first); see the module docstring."""
    frames = [f"{mt['file']}:{mt['func']}" for mt in map(FRAME.match, stack) if mt]
    if not any(SCAN.search(f) for f in frames):
        return "start-up"
    for f in reversed(frames):
        for name, pattern in GROUPS:
            if re.search(pattern, f):
                return name
    return "other scan"


def profile(args, runs: list, k: int) -> dict:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not found on PATH (pip install py-spy)")
    label = {"pgen": "dos.pgen", "bed": "hard.bed", "bgen": "dos.bgen", "miss": "miss.bed"}[args.profile_data]
    result = {}
    names = ["start-up", *(g for g, _ in GROUPS), "other scan"]  # start-up, jit+imports, the per-variant groups
    for r in runs:
        if r.data != label or r.program not in ("hlmm_chr", "hlmm_chr --test score"):
            continue
        raw = args.workdir / f"profile_{r.tag}.txt"
        cmd = [spy, "record", "--format", "raw", "--rate", str(args.profile_rate), "-o", str(raw),
               *(["--native"] if args.profile_native else []), "--", *r.at(k)]
        wall, mb = run_once(cmd, None, args.workdir / f"profile_{r.tag}.log")
        secs = dict.fromkeys(names, 0.0)
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack:
                secs[classify(stack.split(";"))] += int(count) / args.profile_rate
        result[r.program] = {"wall": wall, "peak_mb": mb, "k": k, "seconds": secs, "command": shlex.join(cmd)}
        print(f"\nprofile: {r.program} on {label}, k = {k:,}: wall {wall:.1f} s under py-spy "
              f"({sum(secs.values()):.1f} s sampled at {args.profile_rate} Hz; {raw})")
        for g in FIXED:
            print(f"  {g:<16}{secs[g]:>9.2f} s")
        scan = sum(v for g, v in secs.items() if g not in FIXED)
        for g in ("decode", "sums", "newton", "score stats", "formatting", "compression", "other scan"):
            print(f"  {g:<16}{1e3 * secs[g] / k:>9.3f} ms/variant {100 * secs[g] / scan if scan else 0:>6.1f}%")
        print(f"  {'per-variant sum':<16}{1e3 * scan / k:>9.3f} ms/variant")
    return result


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> list:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", nargs="+", choices=WHAT, default=None,
                   help="which data sets (default all but bed5; none with --profile alone)")
    p.add_argument("--n", type=int, default=100_000, help="individuals (default 100,000)")
    p.add_argument("--m", type=int, default=6_000, help="variants simulated (default 6,000; at least k1)")
    p.add_argument("--k", type=int, nargs=2, default=(600, 6000), help="the two numbers of variants (k0 k1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--plink-threads", type=int, default=2, help="plink2 --threads (default 2)")
    p.add_argument("--covariates", action="store_true", help="use cov.txt's two covariates in every run")
    p.add_argument("--compare", type=Path, default=None, help="another hlmm checkout to run as the baseline")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed first run of each")
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "_data" / "dosages")
    p.add_argument("--json", type=Path, default=None, help="write the rows (and the profile) here")
    p.add_argument("--rst", type=Path, default=None, help="write an RST list-table here")
    p.add_argument("--profile", action="store_true", help="profile hlmm_chr (Wald and score) under py-spy")
    p.add_argument("--profile-data", choices=("pgen", "bgen", "bed", "miss"), default="pgen")
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    p.add_argument("--profile-native", action="store_true", help="py-spy --native (native frames)")
    args = p.parse_args(argv)
    if shutil.which("plink2") is None:
        raise SystemExit("plink2 not found on PATH (Debian: apt-get install plink2)")
    if args.compare and not (args.compare / "bin" / "hlmm_chr.py").is_file():
        p.error(f"--compare: no {args.compare / 'bin' / 'hlmm_chr.py'}")
    args.k = tuple(sorted(args.k))
    k0, k1 = args.k
    if args.what is None:
        args.what = [] if args.profile else [w for w in WHAT if w != "bed5"]
    most = 5 * args.m if args.what == ["bed5"] else args.m
    if not 0 < k0 < k1 <= most:
        p.error(f"need 0 < k0 < k1 <= {'5m' if most > args.m else 'm'}, got k = {args.k}, m = {args.m}")
    (args.workdir / "out").mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    stamp = simulate(args.workdir, args.n, args.m, args.seed)
    print(f"data: n = {args.n:,}, m = {args.m:,} ({args.workdir}; {time.perf_counter() - t0:.1f} s; made in "
          f"{stamp['seconds_write']:.1f} s + {stamp['seconds_bgen']:.1f} s for the .bgen); {machine()}")
    if "bgen" in args.what:
        first_bgens(args.workdir, args.k)
    if "pgen8" in args.what:
        pgen8(args.workdir)
    if "pgen3" in args.what:
        pgen3(args.workdir)
    if "bed5" in args.what:
        repeated_beds(args.workdir)
    runs = build_runs(args)
    if args.profile and args.profile_data not in args.what:
        profile_args = argparse.Namespace(**{**vars(args), "what": [{"miss": "bed"}.get(args.profile_data,
                                                                                       args.profile_data)]})
        profile_runs = build_runs(profile_args)
    else:
        profile_runs = runs
    for r in runs:
        pythonpath = f"PYTHONPATH={r.env['PYTHONPATH']} " if "PYTHONPATH" in r.env else ""
        print(f"  {r.data}, {r.program}: {pythonpath}{shlex.join(r.at(k1))}")

    logs = args.workdir / "logs"
    logs.mkdir(exist_ok=True)
    if not args.no_warmup:
        for r in runs:
            execute(r, k0, logs / f"{r.tag}_warmup.txt")
    for rep in range(args.repeats):
        for k in (k0, k1):
            for r in runs:
                if r.error:
                    continue
                res = execute(r, k, logs / f"{r.tag}_{k}.txt")
                if res is None:
                    print(f"  repeat {rep + 1}: {r.data}, {r.program}, k = {k}: FAILED: {r.error}", flush=True)
                    continue
                r.walls.setdefault(k, []).append(res[0])
                r.rss.setdefault(k, []).append(res[1])
                print(f"  repeat {rep + 1}: {r.data:>19}  {r.program:<32} k = {k:>6}: {res[0]:7.2f} s, "
                      f"peak {res[1]:6.0f} MB", flush=True)
    rows = summarise(runs, k0, k1)
    if rows:
        print_table(rows, k0, k1)
        print(f"\n{conditions(args, stamp)}")
    prof = profile(args, profile_runs, k1) if args.profile else None
    if args.json:
        args.json.write_text(json.dumps({"argv": argv, "data": stamp, "conditions": conditions(args, stamp),
                                         "rows": rows, "profile": prof}, indent=1))
    if args.rst and rows:
        write_rst(args.rst, rows, args, stamp, argv)
    if any(r["error"] for r in rows):
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()
