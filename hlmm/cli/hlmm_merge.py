"""hlmm_merge: merge the outputs of hlmm_chr runs on SNP ranges into one file, in SNP order.

Each input must have its run description (``prefix.models.json``, written by hlmm_chr) and be
complete. The ranges must come from the same genotype file, phenotype and options, and must
tile a range without gaps or overlaps. The merged file is the inputs' gzip members concatenated
(one header), with its own run description, so merged files can be merged again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import zlib

from hlmm.cli._common import log, run_main
from hlmm.io import InputError
from hlmm.runner import Sidecar, differences

RANGE_KEYS = ("start", "end", "whole_chr")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hlmm_merge", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", help="range outputs, e.g. out_*.models.gz")
    p.add_argument("-o", "--out", required=True, help="merged output, e.g. all.models.gz")
    p.add_argument("--quiet", action="store_true")
    return p


def sidecar_path(models: str) -> str:
    return (models[: -len(".gz")] if models.endswith(".gz") else models) + ".json"


def header_length(path: str) -> tuple[int, bytes]:
    """Byte length and text of the first gzip member (the header) of a results file."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    d = zlib.decompressobj(wbits=31)
    try:
        text = d.decompress(data)
    except zlib.error as e:
        raise InputError(f"results file {path}: not gzip ({e})") from None
    if not d.eof:
        raise InputError(f"results file {path}: its header is not a complete gzip member")
    return len(data) - len(d.unused_data), text


def run(args) -> None:
    if os.path.abspath(args.out) in {os.path.abspath(p) for p in args.inputs}:
        raise InputError(f"output {args.out} is also an input")
    parts = []
    for path in args.inputs:
        if not os.path.exists(path):
            raise InputError(f"results file {path}: no such file")
        side_path = sidecar_path(path)
        if not os.path.exists(side_path):
            raise InputError(f"results file {path}: no run description {side_path} (written by hlmm_chr)")
        side = Sidecar.load(side_path)
        if not side.finished:
            raise InputError(f"results file {path}: incomplete (stopped at SNP {side.next_snp} of {side.start}..{side.stop - 1});"
                             " finish it with hlmm_chr --resume")
        if os.path.getsize(path) != side.bytes:
            raise InputError(f"results file {path}: size {os.path.getsize(path)} differs from the {side.bytes} bytes recorded")
        parts.append((side.start, side.stop, path, side))
    parts.sort(key=lambda t: (t[0], t[1]))
    ref = parts[0][3].run
    strip = lambda run: {**run, "options": {k: v for k, v in run["options"].items() if k not in RANGE_KEYS}}  # noqa: E731
    for _, _, path, side in parts[1:]:
        diff = differences(strip(ref), strip(side.run))
        if diff:
            raise InputError(f"results file {path}: run differs from {parts[0][2]} ({', '.join(diff)})")
    for (s0, e0, p0, _), (s1, e1, p1, _) in zip(parts, parts[1:]):
        if s1 > e0:
            raise InputError(f"gap: SNPs {e0}..{s1 - 1} are in neither {p0} ({s0}..{e0 - 1}) nor {p1} ({s1}..{e1 - 1})")
        if s1 < e0:
            raise InputError(f"overlap: SNPs {s1}..{min(e0, e1) - 1} are in both {p0} ({s0}..{e0 - 1}) and {p1} ({s1}..{e1 - 1})")
    headers = [header_length(p) for _, _, p, _ in parts]
    if any(h[1] != headers[0][1] for h in headers):
        raise InputError("results files have different columns")
    tmp = args.out + ".partial"
    with open(tmp, "wb") as out:
        with open(parts[0][2], "rb") as f:
            out.write(f.read(headers[0][0]))
        for (_, _, path, _), (hlen, _) in zip(parts, headers):
            with open(path, "rb") as f:
                f.seek(hlen)
                shutil.copyfileobj(f, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
        size = out.tell()
    os.replace(tmp, args.out)
    run_desc = {**ref, "options": {**ref["options"], "start": parts[0][0], "end": parts[-1][1], "whole_chr": False}}
    merged = Sidecar(sidecar_path(args.out), run_desc, parts[0][0], parts[-1][1], parts[-1][1], size, finished=True,
                     failed_blocks=[b for *_, s in parts for b in s.failed_blocks])
    merged.save()
    log.info(f"merged {len(parts)} files, SNPs {parts[0][0]}..{parts[-1][1] - 1}, into {args.out}")


def main(argv=None) -> int:
    return run_main("hlmm_merge", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
