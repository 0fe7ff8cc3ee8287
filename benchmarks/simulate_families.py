"""Simulate a cohort of sibships with a polygenic trait, for testing leave-one-chromosome-out (LOCO) predictions.

Example::

    python benchmarks/simulate_families.py --families 4000 --sibs 4 --chromosomes 21 --snps-per-chr 500 \\
        --h2 0.6 --test-snps 1500 --seed 1 --out DIR

Model
-----
* Founders: two parents per family, each with two haplotypes per chromosome, alleles drawn independently
  (Hardy-Weinberg and linkage equilibrium) with minor allele frequency p ~ Uniform(0.05, 0.5) per SNP; the
  minor allele is A1 (the counted allele).
* Sibs: ``--sibs`` children per family by Mendelian transmission. Chromosomes segregate independently. Within a
  chromosome, by default (``--morgans 0``) there is no recombination: each meiosis passes on one whole parental
  haplotype. With ``--morgans L > 0`` each meiosis has Poisson(L) crossovers at uniform positions along the
  chromosome (Haldane map, no interference). Parents are not written out.
* Trait: ``y = sum_c G_c + e`` with ``G_c = Z_c beta_c`` on chromosomes 1..``--chromosomes``, where ``Z`` holds
  genotypes standardised with the true founder frequencies, ``(g - 2p) / sqrt(2p(1 - p))``, and every one of the
  ``--snps-per-chr`` SNPs of every chromosome has an effect (infinitesimal): ``beta ~ N(0, 1)``, rescaled so that
  ``sum(beta**2) = h2`` (the expected genetic variance in the founder population); ``e ~ N(0, 1 - h2)``
  independently per person. An environment ``E ~ N(0, 1)`` is written to covar.txt; it adds ``--env-effect * E``
  to y (default 0: no effect) and has no interaction with any SNP.
* Chromosome 1 also carries ``--test-snps`` null SNPs (no effect on y), interleaved with its causal SNPs and
  transmitted together with them; they are written only to test.bed, to be scanned against the LOCO predictions.

Output (in ``--out DIR``)
-------------------------
* ``geno.bed/.bim/.fam``: the causal SNPs of all chromosomes (``--snps-per-chr`` each), e.g. for regenie step 1.
* ``test.bed/.bim/.fam``: the chromosome-1 null test SNPs.
* ``pheno.txt``: ``FID IID y`` with a header line.
* ``covar.txt``: ``FID IID E`` with a header line.
* ``true_loco.txt``: the true LOCO genetic values ``G - G_c`` in regenie's .loco layout: a first line ``FID_IID``
  followed by the N sample identifiers ``FID_IID`` (FID and IID joined by ``_``, in .fam order); then one line
  per chromosome c = 1..``--chromosomes``: ``c`` followed by the N values; space separated.
* ``true_pred.list``: one line ``y <absolute path of true_loco.txt>`` (regenie's ``--pred`` list).
* ``true_g.txt``: ``FID IID G G_1 ... G_C`` with a header, the per-chromosome genetic values.
* ``sim.json``: the parameters, the realised variance components and the run time.

IDs: FID = ``fam{k}``, IID = ``fam{k}_sib{j}`` -- the IIDs contain ``_`` on purpose, so that a joined
``FID_IID`` token cannot be split back into FID and IID at an underscore.
"""

import argparse
import json
import os
import time

import numpy as np

from hlmm.io import BedWriter

CHROM_BP = 100_000_000  # length of each simulated chromosome in base pairs


def _transmit(rng, haps, pos, morgans, s):
    """Genotypes of ``s`` sibs per family from parental haplotypes.

    haps : int8 array (F, 2, 2, M): family, parent, haplotype, SNP.
    pos : SNP positions (M,) in base pairs.
    Returns (F, s, M) int8 genotypes.
    """
    f, _, _, m = haps.shape
    # which parental haplotype each meiosis (family, sib, parent) passes on, per SNP
    sel = rng.integers(0, 2, size=(f, s, 2, 1), dtype=np.int8)
    if morgans > 0:
        k = rng.poisson(morgans, size=(f, s, 2))
        frac = pos / CHROM_BP
        switch = np.zeros((f, s, 2, m), dtype=np.int8)
        for r in range(int(k.max(initial=0))):
            x = rng.uniform(0.0, 1.0, size=(f, s, 2, 1))
            active = (k > r)[..., None]
            switch ^= (active & (x < frac)).astype(np.int8)
        sel = sel ^ switch
    else:
        sel = np.broadcast_to(sel, (f, s, 2, m))
    h0 = haps[:, None, :, 0, :]  # (F, 1, 2, M)
    h1 = haps[:, None, :, 1, :]
    alleles = np.where(sel == 1, h1, h0)  # (F, S, 2, M)
    return alleles.sum(axis=2, dtype=np.int8)


def _write(writer, geno, names, chrom, pos, block=100):
    """Append SNPs to a BedWriter in blocks of ``block`` SNPs (A1 = the minor, counted allele)."""
    for j0 in range(0, geno.shape[1], block):
        j1 = min(j0 + block, geno.shape[1])
        b = j1 - j0
        writer.write(geno[:, j0:j1].astype(float), snp=names[j0:j1], chrom=[chrom] * b, pos=list(pos[j0:j1]),
                     A1=["A"] * b, A2=["G"] * b)


def _fmt(values):
    return " ".join(f"{v:.8g}" for v in values)


def simulate(args):
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    nf, ns, nc, m = args.families, args.sibs, args.chromosomes, args.snps_per_chr
    n = nf * ns
    fids = [f"fam{k}" for k in range(nf) for _ in range(ns)]
    iids = [f"fam{k}_sib{j}" for k in range(nf) for j in range(ns)]
    ids = list(zip(fids, iids))

    beta = rng.standard_normal((nc, m))
    beta *= np.sqrt(args.h2 / np.sum(beta**2))
    g_chr = np.zeros((n, nc))
    test_geno = None
    with BedWriter(os.path.join(args.out, "geno"), ids) as w:
        for c in range(nc):
            m_all = m + (args.test_snps if c == 0 else 0)
            pos = np.sort(rng.choice(CHROM_BP, size=m_all, replace=False)) + 1
            is_test = np.zeros(m_all, dtype=bool)
            if c == 0 and args.test_snps:
                is_test[rng.choice(m_all, size=args.test_snps, replace=False)] = True
            p = rng.uniform(0.05, 0.5, m_all)
            haps = (rng.random((nf, 2, 2, m_all)) < p).astype(np.int8)
            geno = _transmit(rng, haps, pos, args.morgans, ns).reshape(n, m_all)
            del haps
            causal = geno[:, ~is_test]
            pc = p[~is_test]
            z = (causal - 2 * pc) / np.sqrt(2 * pc * (1 - pc))
            g_chr[:, c] = z @ beta[c]
            _write(w, causal, [f"c{c + 1}_{j}" for j in range(m)], str(c + 1), pos[~is_test])
            if c == 0 and args.test_snps:
                test_geno = (geno[:, is_test], pos[is_test])
    if test_geno is not None:
        t = args.test_snps
        with BedWriter(os.path.join(args.out, "test"), ids) as w:
            _write(w, test_geno[0], [f"t{j}" for j in range(t)], "1", test_geno[1])

    g = g_chr.sum(axis=1)
    env = rng.standard_normal(n)
    noise = rng.standard_normal(n) * np.sqrt(1.0 - args.h2)
    y = g + noise + args.env_effect * env

    with open(os.path.join(args.out, "pheno.txt"), "w") as f:
        f.write("FID IID y\n")
        f.writelines(f"{a} {b} {v:.8g}\n" for (a, b), v in zip(ids, y))
    with open(os.path.join(args.out, "covar.txt"), "w") as f:
        f.write("FID IID E\n")
        f.writelines(f"{a} {b} {v:.8g}\n" for (a, b), v in zip(ids, env))
    with open(os.path.join(args.out, "true_g.txt"), "w") as f:
        f.write("FID IID G " + " ".join(f"G_{c + 1}" for c in range(nc)) + "\n")
        f.writelines(f"{a} {b} {_fmt([gi, *gc])}\n" for (a, b), gi, gc in zip(ids, g, g_chr))
    loco_path = os.path.abspath(os.path.join(args.out, "true_loco.txt"))
    with open(loco_path, "w") as f:
        f.write("FID_IID " + " ".join(f"{a}_{b}" for a, b in ids) + "\n")
        for c in range(nc):
            f.write(f"{c + 1} {_fmt(g - g_chr[:, c])}\n")
    with open(os.path.join(args.out, "true_pred.list"), "w") as f:
        f.write(f"y {loco_path}\n")

    info = {
        "args": vars(args),
        "n": n,
        "var_y": float(np.var(y)),
        "var_g": float(np.var(g)),
        "realised_h2": float(np.var(g) / np.var(y)),
        "var_g_chr": [float(v) for v in np.var(g_chr, axis=0)],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    with open(os.path.join(args.out, "sim.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", type=int, default=4000, help="number of families (default 4000)")
    p.add_argument("--sibs", type=int, default=4, help="sibs per family (default 4)")
    p.add_argument("--chromosomes", type=int, default=21, help="chromosomes 1..C (default 21)")
    p.add_argument("--snps-per-chr", type=int, default=500, help="causal SNPs per chromosome (default 500)")
    p.add_argument("--h2", type=float, default=0.6, help="heritability, in [0, 1) (default 0.6)")
    p.add_argument("--test-snps", type=int, default=1500, help="null test SNPs on chromosome 1 (default 1500)")
    p.add_argument("--morgans", type=float, default=0.0,
                   help="genetic length of each chromosome in Morgans; 0 (default) = no recombination")
    p.add_argument("--env-effect", type=float, default=0.0, help="main effect of E on y (default 0)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", required=True, help="output directory (created if needed)")
    args = p.parse_args(argv)
    if not 0 <= args.h2 < 1:
        p.error("--h2 must be in [0, 1)")
    if min(args.families, args.sibs, args.chromosomes, args.snps_per_chr) < 1 or args.test_snps < 0:
        p.error("--families, --sibs, --chromosomes and --snps-per-chr must be positive; --test-snps >= 0")
    if args.morgans < 0:
        p.error("--morgans must be >= 0")
    info = simulate(args)
    print(f"wrote {args.out}: {info['n']} individuals ({args.families} families x {args.sibs} sibs), "
          f"{args.chromosomes} x {args.snps_per_chr} SNPs in geno.bed, {args.test_snps} in test.bed; "
          f"realised h2 {info['realised_h2']:.3f}; {info['seconds']} s")


if __name__ == "__main__":
    main()
