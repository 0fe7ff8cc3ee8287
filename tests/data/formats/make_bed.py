"""Write the small seeded PLINK 1 fileset ``hard.bed/.bim/.fam`` that the other fixtures derive from.

Run as ``python make_bed.py OUTDIR``. The .bed bytes are written directly from numpy, so the
file does not depend on any PLINK version: 300 individuals x 40 variants on chromosomes 1 and 2,
about 3% missing calls (one variant 40%), one monomorphic variant, multi-base alleles, and
FID != IID for two thirds of the individuals.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

N_SAMPLES = 300
N_VARIANTS = 40
N_CHR1 = 25

# 2-bit .bed codes indexed by the number of copies of A1 (bim column 5); missing is 0b01
BED_CODE = np.array([0b11, 0b10, 0b00], dtype=np.uint8)
BED_MISSING = 0b01


def main(outdir: str) -> None:
    out = Path(outdir)
    rng = np.random.default_rng(20240611)

    # .fam: every third individual has FID == IID, the others belong to families of up to two
    with open(out / "hard.fam", "w") as fam:
        for i in range(N_SAMPLES):
            if i % 3 == 0:
                fid = iid = f"s{i:03d}"
            else:
                fid, iid = f"fam{i // 3:03d}", f"ind{i:03d}"
            sex = int(rng.integers(1, 3))
            fam.write(f"{fid} {iid} 0 0 {sex} -9\n")

    # .bim: A1 (column 5) and A2 (column 6) distinct; some indel-like multi-base alleles
    bases = np.array(["A", "C", "G", "T"])
    with open(out / "hard.bim", "w") as bim:
        for j in range(N_VARIANTS):
            chrom = 1 if j < N_CHR1 else 2
            pos = 10_000 + 1_000 * (j if j < N_CHR1 else j - N_CHR1) + int(rng.integers(0, 500))
            a1, a2 = rng.choice(bases, size=2, replace=False)
            if j % 11 == 5:
                a1 = a1 + "TG"  # insertion allele
            if j % 13 == 7:
                a2 = a2 + "CA"
            bim.write(f"{chrom}\trs{chrom}{j:04d}\t0\t{pos}\t{a1}\t{a2}\n")

    # genotypes: counts of A1 ~ Binomial(2, f), then missing calls
    freq = rng.uniform(0.05, 0.6, size=N_VARIANTS)
    counts = rng.binomial(2, freq[:, None], size=(N_VARIANTS, N_SAMPLES))
    counts[3] = 0  # monomorphic for A2
    miss = rng.random((N_VARIANTS, N_SAMPLES)) < 0.03
    miss[17] = rng.random(N_SAMPLES) < 0.4
    codes = BED_CODE[counts]
    codes[miss] = BED_MISSING

    n_bytes = (N_SAMPLES + 3) // 4
    padded = np.zeros((N_VARIANTS, 4 * n_bytes), dtype=np.uint8)  # padding codes are 0
    padded[:, :N_SAMPLES] = codes
    quads = padded.reshape(N_VARIANTS, n_bytes, 4)
    packed = quads[:, :, 0] | (quads[:, :, 1] << 2) | (quads[:, :, 2] << 4) | (quads[:, :, 3] << 6)
    with open(out / "hard.bed", "wb") as bed:
        bed.write(bytes([0x6C, 0x1B, 0x01]))
        bed.write(packed.astype(np.uint8).tobytes())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
