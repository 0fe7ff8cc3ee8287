#!/bin/sh
# plink2 reference for the G×E test on the homoskedastic phenotype y_flat: ordinary least squares
#   y_flat ~ 1 + ADD + x1 + sex + E + ADDxE
# per variant, individuals without a call left out (OBS_CT). Writes gxe_plink2.tsv (plink2's
# .glm.linear report, unchanged: tab-separated, header line starting with #CHROM, 6 significant digits).
#
#   cd tests/data/r_reference && sh make_gxe_plink2.sh        # made with PLINK v2.00a3.5 AVX2 (9 Aug 2022)
#
# --glm interaction adds ADD x covariate terms for every covariate; --parameters keeps, of
# 1 ADD, 2 x1, 3 sex, 4 E, 5 ADDxx1, 6 ADDxsex, 7 ADDxE, the terms 1-4 and 7 (no hide-covar, so
# the rows ADD, x1, sex, E, ADDxE are all reported; the intercept is not).
#
# Allele: with --bfile, plink2 reads the .bim's 5th column (A1, here T) as ALT and the 6th (C) as
# REF. By default --glm counts the NON-MAJOR allele (for g4, where T has frequency 0.524, it would
# count C: A1 = C, ADD and ADDxE change sign and E changes). 'omit-ref' makes it count ALT = the
# .bim's A1 = T for every variant, as hlmm does; the A1 column of the report says T throughout.
#
# ADD is plink2's raw (uncentred) allele count, so: ADD and ADDxE equal the coefficients of the
# centred g and g*E (hlmm's parameterisation); the E row is E's effect at g = 0 copies, which is
# (E's effect with centred g) - mean(g) * ADDxE; SEs are the usual OLS SEs (residual df N - 6),
# P from the t distribution with N - 6 df. Checked against R's lm().
set -e
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
plink2 --bfile gxe \
  --pheno gxe_pheno.txt --pheno-name y_flat \
  --covar gxe_covar.txt --covar-name x1 sex E \
  --glm omit-ref interaction cols=chrom,pos,ref,alt,a1freq,test,nobs,beta,se,tz,p,err \
  --parameters 1-4,7 \
  --threads 1 --out "$tmp/gxe" > /dev/null
cp "$tmp/gxe.y_flat.glm.linear" gxe_plink2.tsv
