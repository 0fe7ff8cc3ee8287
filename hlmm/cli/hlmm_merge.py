"""hlmm_merge: merge the results of hlmm_chr runs into one file.

Each input must have its run description (``prefix.models.json``, written by hlmm_chr), be
complete and intact (size, CRC-32 and every gzip member checked), and have the same columns.
Inputs must come from the same phenotype, covariates and options. Ranges of one genotype file
must tile without gaps or overlaps and are put in variant order; results of different genotype
files (say, one per chromosome) are concatenated in genomic order. The merged file is the
inputs' gzip members concatenated (one header), with its own run description, so merged files
can be merged again.
"""

from __future__ import annotations

import os
import sys
import zlib

from hlmm.cli._common import check_output, log, parser, run_main
from hlmm.genome import chromosome_key
from hlmm.io import InputError, os_reason
from hlmm.results import check_gzip_members, file_crc, write_atomic
from hlmm.runstate import SELECTION_OPTIONS, description_path, differences, load_description


def build_parser():
    p = parser("hlmm_merge", __doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("inputs", nargs="+", help="results of hlmm_chr runs, e.g. out_*.models.gz")
    p.add_argument("-o", "--out", required=True, help="merged output, e.g. all.models.gz (its run description goes "
                                                      "to all.models.json)")
    p.add_argument("--quiet", action="store_true", help="No log messages; errors are still printed")
    return p


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


def first_row(path: str, header_bytes: int) -> list:
    """The first data row's fields (empty if the file has no rows)."""
    with open(path, "rb") as f:
        f.seek(header_bytes)
        data = f.read(1 << 20)
    if not data:
        return []
    text = zlib.decompressobj(wbits=31).decompress(data)
    return text.split(b"\n", 1)[0].decode().split("\t")


def parts_of(desc: dict) -> list:
    """``[genotype file, start, stop]`` of every range a results file holds."""
    if "parts" in desc:
        return desc["parts"]
    geno = next((v["path"] for k, v in sorted(desc["run"]["inputs"].items()) if k.startswith("genotypes")), "")
    return [[geno, s, e] for s, e in desc.get("ranges", [[desc["start"], desc["stop"]]])]


def _strip(run: dict) -> dict:
    """The run without what legitimately differs between merged inputs: ranges and genotype files."""
    return {"inputs": {k: v for k, v in run["inputs"].items() if not k.startswith("genotypes")},
            "options": {k: v for k, v in run["options"].items() if k not in SELECTION_OPTIONS}}


def _check_input(path: str) -> dict:
    if not os.path.exists(path):
        raise InputError(f"results file {path}: no such file")
    side = description_path(path)
    if not os.path.exists(side):
        raise InputError(f"results file {path}: no run description {side} (written by hlmm_chr)")
    desc = load_description(side)
    if not desc["finished"]:
        raise InputError(f"results file {path}: incomplete (its run did not finish); finish it with hlmm_chr --resume")
    size = os.path.getsize(path)
    if size != desc["bytes"]:
        raise InputError(f"results file {path}: size {size} differs from the {desc['bytes']} bytes recorded in {side}")
    if "crc32" in desc and file_crc(path, size) != desc["crc32"]:
        raise InputError(f"results file {path}: its CRC-32 differs from the one recorded in {side}"
                         " (modified or corrupted)")
    try:
        check_gzip_members(path)
    except ValueError as e:
        raise InputError(f"results file {path}: {e}") from None
    except OSError as e:
        raise InputError(f"results file {path}: cannot read: {os_reason(e)}") from None
    return desc


def run(args) -> None:
    check_output(args.out, args.inputs)
    items = []
    for path in args.inputs:
        desc = _check_input(path)
        hlen, header = header_length(path)
        items.append({"path": path, "desc": desc, "hlen": hlen, "header": header, "parts": parts_of(desc)})
    ref = items[0]
    for it in items[1:]:
        if it["header"] != ref["header"]:
            raise InputError(f"results file {it['path']}: its columns differ from those of {ref['path']}")
        diff = differences(_strip(ref["desc"]["run"]), _strip(it["desc"]["run"]))
        if diff:
            raise InputError(f"results file {it['path']}: its analysis differs from that of {ref['path']}"
                             f" ({', '.join(diff)})")
        if it["desc"].get("se") != ref["desc"].get("se"):
            raise InputError(f"results file {it['path']}: holds {it['desc'].get('se', 'model-based')} standard errors,"
                             f" {ref['path']} {ref['desc'].get('se', 'model-based')}; they cannot be mixed")
    # inputs from the same genotype file must tile its variants; files are ordered by genome position
    by_file = {}
    for it in items:
        files = {p[0] for p in it["parts"]}
        key = next(iter(files)) if len(files) == 1 else None
        it["sort"] = (min(p[1] for p in it["parts"]) if key is not None else 0)
        by_file.setdefault(key, []).append(it)
    for key, group in by_file.items():
        if key is None:
            continue
        geno = [{k: v for k, v in it["desc"]["run"]["inputs"].items() if k.startswith("genotypes")} for it in group]
        for it, g in zip(group[1:], geno[1:]):
            if g != geno[0]:
                raise InputError(f"results file {it['path']}: genotype file {key} changed between its run and that of"
                                 f" {group[0]['path']} ({', '.join(differences(geno[0], g))})")
        group.sort(key=lambda it: it["sort"])
        spans = [(min(p[1] for p in it["parts"]), max(p[2] for p in it["parts"]), it["path"]) for it in group]
        for (s0, e0, p0), (s1, e1, p1) in zip(spans, spans[1:]):
            if s1 > e0:
                raise InputError(f"gap: variants {e0}..{s1 - 1} of {key} are in neither {p0} ({s0}..{e0 - 1})"
                                 f" nor {p1} ({s1}..{e1 - 1})")
            if s1 < e0:
                raise InputError(f"overlap: variants {s1}..{min(e0, e1) - 1} of {key} are in both {p0}"
                                 f" ({s0}..{e0 - 1}) and {p1} ({s1}..{e1 - 1})")
    groups = list(by_file.values())
    if len(groups) > 1:
        def position(group):
            row = first_row(group[0]["path"], group[0]["hlen"])
            cols = group[0]["header"].decode().rstrip("\n").split("\t")
            if not row or "chr" not in cols:
                return ((2, 0, ""), 0)
            return (chromosome_key(row[cols.index("chr")]), int(row[cols.index("pos")]))
        groups.sort(key=position)
    ordered = [it for g in groups for it in g]
    def content():
        with open(ordered[0]["path"], "rb") as f:
            yield f.read(ordered[0]["hlen"])  # one header
        for it in ordered:
            with open(it["path"], "rb") as f:
                f.seek(it["hlen"])
                while chunk := f.read(1 << 20):
                    yield chunk

    size, crc = write_atomic(args.out, content(), "output")
    parts = [p for it in ordered for p in it["parts"]]
    run_desc = {**ref["desc"]["run"], "options": {**ref["desc"]["run"]["options"], "start": None, "end": None,
                                                  "whole_chr": False}}
    merged = {**{k: v for k, v in ref["desc"].items() if k not in ("run", "parts", "ranges")}, "run": run_desc,
              "start": min(p[1] for p in parts), "stop": max(p[2] for p in parts), "bytes": size, "crc32": crc,
              "finished": True, "parts": parts,
              "failed_blocks": [b for it in ordered for b in it["desc"].get("failed_blocks", [])]}
    import json

    write_atomic(description_path(args.out), json.dumps(merged, indent=1).encode(), "run description")
    files = f"{len(by_file)} genotype file{'s' if len(by_file) > 1 else ''}"
    log.info(f"merged {len(ordered)} files ({files}) into {args.out}")


def main(argv=None) -> int:
    return run_main("hlmm_merge", run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
