"""Derive BGEN fixtures that plink2 cannot write, by editing a plink2-written BGEN v1.2 file.

``python bgen_edit.py strip-samples IN.bgen OUT.bgen``
    Drop the sample-identifier block (header flag bit 31 cleared, first-variant offset reduced).
``python bgen_edit.py add-multiallelic IN.bgen OUT.bgen``
    Insert, after the first variant, one tri-allelic variant ``multi3`` (alleles A, C, G) with
    8-bit probabilities, unphased and diploid, zlib-compressed, so that readers can be tested
    on a multi-allelic site (plink2 2.00a3.5 refuses to export multi-allelic BGEN).

Both commands keep everything else byte for byte. Only the standard library and numpy are used.
"""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np


def _variant_end(buf: bytes, pos: int, compressed: bool) -> int:
    """Return the offset just past the layout-2 variant block that starts at ``pos``."""
    for _ in range(3):  # SNP id, rsid, chromosome
        (length,) = struct.unpack_from("<H", buf, pos)
        pos += 2 + length
    pos += 4  # position
    (n_alleles,) = struct.unpack_from("<H", buf, pos)
    pos += 2
    for _ in range(n_alleles):
        (length,) = struct.unpack_from("<I", buf, pos)
        pos += 4 + length
    (c,) = struct.unpack_from("<I", buf, pos)
    return pos + 4 + c


def strip_samples(src: str, dst: str) -> None:
    buf = open(src, "rb").read()
    (offset, lh) = struct.unpack_from("<II", buf, 0)
    (flags,) = struct.unpack_from("<I", buf, lh)  # last 4 bytes of the header block
    if not flags >> 31:
        raise SystemExit(f"{src}: has no sample identifier block")
    (lsi,) = struct.unpack_from("<I", buf, 4 + lh)
    header = bytearray(buf[4 : 4 + lh])
    struct.pack_into("<I", header, lh - 4, flags & 0x7FFFFFFF)
    rest = buf[4 + lh + lsi :]
    with open(dst, "wb") as out:
        out.write(struct.pack("<I", offset - lsi))
        out.write(header)
        out.write(rest)


def add_multiallelic(src: str, dst: str) -> None:
    buf = open(src, "rb").read()
    (offset, lh, m, n) = struct.unpack_from("<IIII", buf, 0)
    (flags,) = struct.unpack_from("<I", buf, lh)
    if (flags & 3) != 1 or ((flags >> 2) & 15) != 2:
        raise SystemExit(f"{src}: expected a zlib-compressed layout-2 BGEN (v1.2)")
    first = 4 + offset
    second = _variant_end(buf, first, True)

    # genotype probabilities: 6 unphased diploid genotypes of 3 alleles, 5 stored values per sample
    rng = np.random.default_rng(7)
    geno = rng.integers(0, 6, size=n)  # index of the genotype with probability 1
    probs = np.zeros((n, 6), dtype=np.uint8)
    probs[np.arange(n), geno] = 255
    missing = rng.random(n) < 0.05
    probs[missing] = 0
    ploidy = np.where(missing, 0x82, 0x02).astype(np.uint8)
    data = struct.pack("<IHBB", n, 3, 2, 2) + ploidy.tobytes() + bytes([0, 8]) + probs[:, :5].tobytes()
    comp = zlib.compress(data)
    block = b"".join(
        [
            struct.pack("<H", 0),
            struct.pack("<H", 6) + b"multi3",
            struct.pack("<H", 1) + b"1",  # chromosome 1, between the first two variants
            struct.pack("<I", 10_500),
            struct.pack("<H", 3),
            b"".join(struct.pack("<I", 1) + a for a in (b"A", b"C", b"G")),
            struct.pack("<II", len(comp) + 4, len(data)),
            comp,
        ]
    )
    header = bytearray(buf[4 : 4 + lh])
    struct.pack_into("<I", header, 4, m + 1)
    with open(dst, "wb") as out:
        out.write(buf[:4])
        out.write(header)
        out.write(buf[4 + lh : second])
        out.write(block)
        out.write(buf[second:])


if __name__ == "__main__":
    command, src, dst = sys.argv[1:4]
    {"strip-samples": strip_samples, "add-multiallelic": add_multiallelic}[command](src, dst)
