"""Pick variants of a results table by a -log10 p-value column (stage 1 of the two-stage workflow), one
ID per line for hlmm_chr --extract: those at least a threshold, or the top K.

``python pick_variants.py stage1.models.gz var_pval_robust --min 7.3 > picked.txt``
``python pick_variants.py stage1.models.gz var_pval_robust --top 5 > picked.txt``
"""

import argparse
import sys

import numpy as np

from hlmm.results import read_models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("results")
    p.add_argument("column")
    p.add_argument("--min", type=float, default=None, help="keep the variants with column >= this")
    p.add_argument("--top", type=int, default=None, help="keep the variants with the K largest values")
    args = p.parse_args(argv)
    res = read_models(args.results)
    values = np.nan_to_num(res[args.column], nan=-np.inf)
    if args.top is not None:
        picked = res["SNP"][np.argsort(-values, kind="stable")[: args.top]]
    else:
        picked = res["SNP"][values >= args.min]
    print("\n".join(picked))
    print(f"picked {len(picked)} of {len(res['SNP'])} variants by {args.column}", file=sys.stderr)


if __name__ == "__main__":
    main()
