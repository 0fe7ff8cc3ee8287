#!/bin/sh
# regenie step-2 reference for the G×E score screen: regenie's HLM interaction test (Young et al.
# 2018's model, which regenie uses for quantitative traits below --rare-mac; --rare-mac 1e9 makes it
# used for every variant) on y, without step-1 predictions (--ignore-pred). Writes
# gxe_regenie.regenie (regenie's report, unchanged: space-separated, 6 significant digits).
#
#   cd tests/data/r_reference && REGENIE=/path/to/regenie sh make_gxe_regenie.sh   # made with regenie v4.1.2
#
# regenie's null HLM has, for a continuous E, E and E^2 in the mean (with the covariates x1, sex)
# and (1, E, E^2) in the log-variance; each variant is then a weighted least-squares fit of the
# null residuals on (G, G*E) at the null's weights, covariates projected out, SEs with sigma^2 = 1.
# That is hlmm's score screen (--test score --interaction E --fit_covariates) with E^2 among the
# mean and the variance covariates (tests/test_gxe.py writes them). ALLELE1 (the counted allele)
# is the .bim's 5th column, hlmm's A1. Rows: ADD-CONDTL (E as a covariate only; not compared),
# ADD-INT_SNP (hlmm's add), ADD-INT_SNPxE (gxe), ADD-INT_2DF (joint_pval, LOG10P only).
set -e
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${REGENIE:-regenie}" --step 2 --bed gxe --phenoFile gxe_pheno.txt --phenoCol y \
  --covarFile gxe_covar.txt --covarColList x1,sex,E --interaction E --qt --ignore-pred \
  --rare-mac 1e9 --bsize 100 --threads 1 --out "$tmp/hlm" > /dev/null
cp "$tmp/hlm_y.regenie" gxe_regenie.regenie
