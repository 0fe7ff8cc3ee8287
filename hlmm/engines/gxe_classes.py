"""HLM with G×E terms in the default mode, from genotype-class sums, every phenotype in one pass.

With exposures ``E_1..E_K`` (``--interaction``), a variant's model on the adjusted phenotype has
``g`` and ``g*E_j`` in the mean and ``g`` in the log-variance; its likelihood depends on the data
only through per-class sums of ``1, y, y^2, E_j, E_j E_l, y E_j`` (:mod:`hlmm.engines._gxe_fits`).
One compiled pass over the block gives them for every phenotype
(:class:`hlmm.engines.classes.ClassStatistics`), and every variant of a block is fitted at once.
Hard calls only (three classes): dosages, robust standard errors, covariates fitted per variant
and mixed models go to the reference engine (:mod:`hlmm.engines.reference`).
"""

from __future__ import annotations

import numpy as np

from hlmm.engines._gxe_fits import fit_interaction_classes
from hlmm.engines.base import STATUS, Scanner, summarised
from hlmm.engines.classes import ClassMoments
from hlmm.io import GenotypeBlock

__all__ = ["HLMInteractionScanner"]


class HLMInteractionScanner(Scanner):
    """HLM with G×E terms in the default mode, from genotype-class sums (hard calls)."""

    block_size = 256

    def __init__(self, spec, models: list) -> None:
        super().__init__(spec, models)
        self.K = len(spec.interactions)
        self.parts = []
        for m in models:
            E = m.exposures
            pairs = [E[:, j] * E[:, k] for j in range(self.K) for k in range(j, self.K)]
            cols = np.column_stack([np.ones(m.n), m.y, m.y**2, E, *pairs, m.y[:, None] * E]
                                   + ([] if m.adaptive is None else [m.adaptive.h]))  # h last (hlmm.adaptive)
            self.parts.append((m.subset, cols))

    def scan(self, block: GenotypeBlock) -> list:
        K = self.K
        iu = np.triu_indices(K)
        outs, sums = [], []
        for m, cs in zip(self.models, self.classes.sums(block, self.parts)):
            S = cs.sums  # (b, 3, q): 1, y, y^2, E (K), E_j E_k (j <= k), y E (K)
            mom = ClassMoments(S[..., 0], S[..., 1:3], cs.values, cs.missing[:, 0], cs.offsets)
            o = summarised(block.multiallelic, mom, m.n, self.spec)
            ok = np.flatnonzero(o["status"] == STATUS["ok"])
            if ok.size:
                sEE = np.zeros(S.shape[:2] + (K, K))
                upper = S[..., 3 + K : 3 + K + len(iu[0])]
                sEE[..., iu[0], iu[1]] = upper
                sEE[..., iu[1], iu[0]] = upper
                fit = fit_interaction_classes(S[ok, :, 0], S[ok, :, 1], S[ok, :, 2], S[ok, :, 3 : 3 + K], sEE[ok],
                                              S[ok, :, 3 + K + len(iu[0]) : 3 + 2 * K + len(iu[0])])
                for key in ("likelihood", "add", "add_se", "var", "var_se", "gxe", "gxe_se"):
                    o[key][ok] = fit[key]
                o["gxe_cov"][ok] = fit["mean_cov"][:, 1:, 1:]
                bad = ok[~fit["success"]]
                o["status"][bad] = STATUS["failed"]
                o["problems"] += [(int(j), "optimisation did not converge") for j in bad]
            outs.append(o)
            sums.append(None if m.adaptive is None else cs.centred_sums(S[..., 0], S[..., -1]))
        return self.adaptive(block, outs, sums)
