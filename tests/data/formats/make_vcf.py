"""Write the seeded VCFs that the dosage and multi-allelic fixtures derive from.

``python make_vcf.py OUTDIR`` writes

* ``dos.vcf``: 120 samples x 24 variants (chromosomes 1 and 22) with only a ``DS`` FORMAT field:
  dosages of ALT with up to 5 decimals, exact 0/1/2, the ties 0.5 and 1.5, and about 5% missing
  (``.``). Sample IDs are ``FID_IID`` (imported with ``--id-delim _``); a third have FID == IID.
* ``multi.vcf``: 20 samples x 4 variants of hard calls (``GT``), the second tri-allelic.
  plink2 2.00a3.5 cannot import a multi-allelic site together with ``dosage=DS``.
* ``phased.vcf`` + ``phased.sex``: 40 samples x 6 variants of phased hard calls, 3 on chromosome 1
  and 3 on chrX outside the PARs, where the males (every second sample) are haploid; about 5%
  missing. ``phased.sex`` gives plink2 the sexes (``--update-sex``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HEADER = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"


def sample_ids(n: int) -> list[str]:
    return [f"s{i:03d}_s{i:03d}" if i % 3 == 0 else f"fam{i // 3:03d}_ind{i:03d}" for i in range(n)]


def write_dosage_vcf(path: Path, rng: np.random.Generator) -> None:
    n, m = 120, 24
    bases = np.array(["A", "C", "G", "T"])
    with open(path, "w") as f:
        f.write('##fileformat=VCFv4.2\n##contig=<ID=1>\n##contig=<ID=22>\n'
                '##FORMAT=<ID=DS,Number=A,Type=Float,Description="Dosage of ALT">\n')
        f.write(HEADER + "\t".join(sample_ids(n)) + "\n")
        for j in range(m):
            chrom, pos = ("1", 5_000 + 700 * j) if j < 14 else ("22", 16_000_000 + 900 * j)
            ref, alt = rng.choice(bases, size=2, replace=False)
            p = rng.uniform(0.1, 0.6)
            ds = np.clip(rng.binomial(2, p, n) + rng.normal(0, 0.25, n), 0, 2)
            text = [f"{x:.5f}".rstrip("0").rstrip(".") if x not in (0.0, 2.0) else f"{x:.0f}" for x in ds]
            for i in rng.choice(n, 6, replace=False):
                text[i] = rng.choice(["0", "1", "2", "0.5", "1.5", "1.0"])
            for i in np.flatnonzero(rng.random(n) < 0.05):
                text[i] = "."
            f.write(f"{chrom}\t{pos}\tds{j:02d}\t{ref}\t{alt}\t.\t.\t.\tDS\t" + "\t".join(text) + "\n")


def write_multi_vcf(path: Path, rng: np.random.Generator) -> None:
    n = 20
    rows = [("1", 100, "bi1", "A", "G", 2), ("1", 200, "tri2", "C", "A,T", 3), ("1", 300, "bi3", "G", "T", 2),
            ("2", 400, "bi4", "T", "C", 2)]
    with open(path, "w") as f:
        f.write('##fileformat=VCFv4.2\n##contig=<ID=1>\n##contig=<ID=2>\n'
                '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        f.write(HEADER + "\t".join(sample_ids(n)) + "\n")
        for chrom, pos, vid, ref, alt, k in rows:
            gts = np.sort(rng.integers(0, k, size=(n, 2)), axis=1)
            text = [f"{a}/{b}" for a, b in gts]
            text[int(rng.integers(n))] = "./."
            f.write(f"{chrom}\t{pos}\t{vid}\t{ref}\t{alt}\t.\t.\t.\tGT\t" + "\t".join(text) + "\n")


def write_phased_vcf(path: Path, sex_path: Path, rng: np.random.Generator) -> None:
    n = 40
    ids = sample_ids(n)
    male = np.arange(n) % 2 == 1
    with open(sex_path, "w") as f:
        f.write("".join(f"{i.replace('_', ' ')} {1 if m else 2}\n" for i, m in zip(ids, male)))
    rows = [("1", 1_000 * (j + 1), f"ph{j}") for j in range(3)]
    rows += [("X", 5_000_000 + 1_000 * j, f"phx{j}") for j in range(3)]
    with open(path, "w") as f:
        f.write('##fileformat=VCFv4.2\n##contig=<ID=1>\n##contig=<ID=X>\n'
                '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        f.write(HEADER + "\t".join(ids) + "\n")
        for chrom, pos, vid in rows:
            haps = rng.random((n, 2)) < rng.uniform(0.2, 0.7)
            text = []
            for i in range(n):
                if rng.random() < 0.05:
                    text.append("." if chrom == "X" and male[i] else ".|.")
                elif chrom == "X" and male[i]:
                    text.append(str(int(haps[i, 0])))
                else:
                    text.append(f"{int(haps[i, 0])}|{int(haps[i, 1])}")
            f.write(f"{chrom}\t{pos}\t{vid}\tA\tG\t.\t.\t.\tGT\t" + "\t".join(text) + "\n")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    rng = np.random.default_rng(20240612)
    write_dosage_vcf(out / "dos.vcf", rng)
    write_multi_vcf(out / "multi.vcf", rng)
    write_phased_vcf(out / "phased.vcf", out / "phased.sex", rng)
