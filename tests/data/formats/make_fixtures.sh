#!/usr/bin/env bash
# Fixtures for tests/test_io_pgen.py and tests/test_io_bgen.py.
#
# The tests read the committed files only: they need neither plink2 nor this script. This script
# records the exact commands that made every file here, so they can be remade and checked:
# run it from any directory with plink2 (v2.00a3.5 was used) and a Python with numpy on PATH
# (or PYTHON=...). The Python helpers are seeded, so the .bed, .vcf and the edited .bgen files
# come out byte for byte the same; plink2 output depends on the plink2 version.
#
#   hard.bed/.bim/.fam      300 samples x 40 variants of hard calls, written by make_bed.py
#   hard.pgen/.pvar/.psam   plink2 --make-pgen of hard.*          (ALT = the .bim's A1)
#   hard.bgen + hard.sample plink2 --export bgen-1.2 bits=8 ref-first   (allele 2 = A1)
#   hard13.bgen (+.sample)  the same as BGEN v1.3 (zstd)
#   hard_reflast.bgen       plink2's default allele order (REF last: allele 2 = A2)
#   hard_noids.bgen         hard.bgen without its sample-ID block (bgen_edit.py)
#   hard_multi.bgen         hard.bgen plus one tri-allelic variant after the first (bgen_edit.py)
#   hard_fidiid.bgen        hard.* with FID_IID embedded as each sample's ID and no .sample (id-paste=fid,iid)
#   dos.pgen/.pvar/.psam    plink2 --vcf dos.vcf dosage=DS --id-delim _ (dos.vcf from make_vcf.py)
#   dos.bgen + dos.sample   8-bit BGEN v1.2 of dos.*; dos16.bgen 16-bit v1.3; dos10.bgen 10-bit v1.2
#   dos_pgen.traw           dosages as stored in dos.pgen: plink2 --export Av (counts REF, 4 decimals)
#   dos_bgen.traw           dosages of dos.bgen as plink2 reads them back (--bgen ... --export Av)
#   multi.pgen/.pvar/.psam  plink2 --make-pgen of multi.vcf (hard calls, one tri-allelic variant)
#   phased.pgen/.pvar/.psam phased hard calls, chrX with haploid males (phased.vcf, phased.sex)
#   phased.bgen + .sample   plink2 --export bgen-1.2 bits=8 ref-first: phased, ploidy 1 and 2
#   phased.traw             plink2 --export Av of phased.pgen (counts REF; males 0/2 on chrX)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
P2="plink2 --silent --threads 1"

$PYTHON make_bed.py .
$P2 --bfile hard --make-pgen --out hard
$P2 --bfile hard --export bgen-1.2 bits=8 ref-first --out hard
$P2 --bfile hard --export bgen-1.3 bits=8 ref-first --out hard13
$P2 --bfile hard --export bgen-1.2 bits=8 --out hard_reflast
$PYTHON bgen_edit.py strip-samples hard.bgen hard_noids.bgen
$P2 --bfile hard --export bgen-1.2 bits=8 ref-first id-paste=fid,iid --out hard_fidiid && rm hard_fidiid.sample
$PYTHON bgen_edit.py add-multiallelic hard.bgen hard_multi.bgen

$PYTHON make_vcf.py .
$P2 --vcf dos.vcf dosage=DS --id-delim _ --make-pgen --out dos
$P2 --pfile dos --export bgen-1.2 bits=8 ref-first --out dos
$P2 --pfile dos --export bgen-1.3 bits=16 ref-first --out dos16
$P2 --pfile dos --export bgen-1.2 bits=10 ref-first --out dos10
$P2 --pfile dos --export Av --out dos_pgen
$P2 --bgen dos.bgen ref-first --sample dos.sample --export Av --out dos_bgen
$P2 --vcf multi.vcf --id-delim _ --make-pgen --out multi
$P2 --vcf phased.vcf --id-delim _ --update-sex phased.sex --make-pgen --out phased
$P2 --pfile phased --export bgen-1.2 bits=8 ref-first --out phased
$P2 --pfile phased --export Av --out phased

# the .sample files of hard13/hard_reflast and dos16/dos10 repeat hard.sample and dos.sample
rm -f ./*.log hard13.sample hard_reflast.sample dos16.sample dos10.sample dos.vcf multi.vcf phased.vcf phased.sex
