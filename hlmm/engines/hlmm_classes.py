"""HLMM in the default mode from genotype-class Gram matrices: per variant, rank-k updates over the
non-modal classes and Newton's method in l dimensions (:mod:`hlmm.engines._hlmm_fits`).

Variants whose dosages are not whole numbers have no genotype classes: they are fitted by the
reference algorithm (:func:`hlmm.engines.reference.reference_fit`), at O(n l^2) per likelihood
evaluation.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hlmm.engines import _hlm_fits, _hlmm_fits
from hlmm.engines.base import PerVariant, genotype_row
from hlmm.engines.reference import reference_fit
from hlmm.io import GenotypeBlock

__all__ = ["HLMMClassScanner"]


class HLMMClassScanner(PerVariant):
    """HLMM in the default mode, from genotype-class Gram matrices."""

    block_size = 8
    per_core = True

    def __init__(self, spec, models: list) -> None:
        forms = {}  # phenotypes with the same individuals share G, and its integer form
        for m in models:
            if id(m.G) not in forms and m.G_center is not None:
                forms[id(m.G)] = _hlmm_fits.integer_design(m.G, m.G_center, m.G_scale)
        self.totals = [_hlmm_fits.totals(m.y, m.G, m.G_center, m.G_scale, forms.get(id(m.G))) for m in models]
        # the totals keep what the engine needs of G: do not hold G itself (n x l) as well
        super().__init__(spec, [replace(m, G=None) for m in models])

    def fit_model(self, p: int, block: GenotypeBlock, todo: np.ndarray) -> list:
        m, tot = self.models[p], self.totals[p]
        integral = block.integral_rows()
        classes = todo[integral[todo]]
        codes = block.hard_codes(classes) if classes.size else np.zeros((0, len(m.subset)), np.int8)
        if len(m.subset) != codes.shape[1] or not np.array_equal(m.subset, np.arange(len(m.subset))):
            codes = np.ascontiguousarray(codes[:, m.subset])
        where = {int(j): k for k, j in enumerate(classes)}

        def fit(j):
            if int(j) not in where:  # non-integer dosages: no genotype classes
                return reference_fit(m.y, m.X, m.V, genotype_row(block, j, m.subset), tot.G, m.h2_start)
            cs = _hlmm_fits.class_stats(tot, codes[where[int(j)]])
            start = _hlm_fits.fit_classes(cs.n[None], cs.S1[None], cs.S2[None])
            if not start["success"][0]:
                return None, "no starting value: the model without random effects did not converge"
            beta0 = start["beta"][0]
            if m.null is not None and m.null.h2 is not None:
                # the variant's variance effect from the model without random effects, the residual
                # variance from the null mixed model: closer to the maximum than both from the HLM
                beta0 = np.array([m.null.beta[0], beta0[1]])
            return _hlmm_fits.fit_snp(cs, beta0, m.h2_start)

        return [fit(j) for j in todo]
