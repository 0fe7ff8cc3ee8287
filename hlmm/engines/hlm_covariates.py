"""HLM with the covariates fitted for each variant (``--fit_covariates``): Newton steps whose
likelihood, gradient and Hessian come from compiled passes over the individuals
(:func:`hlmm.engines._hlm_fits.fit_covariate_snp`)."""

from __future__ import annotations

import numpy as np

from hlmm.engines import _hlm_fits
from hlmm.engines.base import PerVariant, genotype_row
from hlmm.io import GenotypeBlock

__all__ = ["HLMCovariateScanner"]


class HLMCovariateScanner(PerVariant):
    """HLM with covariates fitted for each variant, by compiled passes over the individuals."""

    block_size = 64

    def __init__(self, spec, models: list) -> None:
        super().__init__(spec, models)
        self.arrays = [tuple(np.ascontiguousarray(a, dtype=float) for a in (m.y, m.X, m.V)) for m in models]

    def fit_model(self, p: int, block: GenotypeBlock, todo: np.ndarray) -> list:
        m = self.models[p]
        y, X, V = self.arrays[p]
        beta_start = m.beta_start
        if beta_start is None:
            beta_start = np.linalg.lstsq(V, np.full(m.n, np.log(np.var(m.y))), rcond=None)[0]
        return [_hlm_fits.fit_covariate_snp(y, X, V, genotype_row(block, j, m.subset), beta_start, self.spec.robust)
                for j in todo]
