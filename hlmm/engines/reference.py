"""The reference engine: one :meth:`hlmm.hetlm.model.optimize_model` (or hetlmm's) per variant, the
straightforward algorithm of hlmm 1.2.0a1 (``--engine reference``, and the mixed model with
covariates fitted per variant)."""

from __future__ import annotations

import numpy as np

from hlmm import hetlm, hetlmm
from hlmm.engines.base import PerVariant, genotype_row
from hlmm.io import GenotypeBlock
from hlmm.robust import hlm_sandwich

__all__ = ["ReferenceScanner", "reference_fit", "exposed_minor_alleles", "MIN_SANDWICH_MAC"]

#: With ``--robust --interaction``, variants with fewer minor alleles than this among the exposed
#: (:func:`exposed_minor_alleles`) get model-based standard errors for ``add`` and the G×E effects:
#: the sandwich is inflated there (benchmarks/calibration_gxe.py, rare part: λGC 1.53 below 20,
#: 1.06 for 20-50, 1.00 above 50; model-based 1.09, 0.94, 0.99).
MIN_SANDWICH_MAC = 50


class ReferenceScanner(PerVariant):
    """One ``optimize_model`` per variant (hlmm 1.2.0a1's algorithm)."""

    block_size = 16

    def __init__(self, spec, models: list) -> None:
        super().__init__(spec, models)
        if spec.random_effects:
            self.block_size, self.per_core = 1, True

    def fit_model(self, p: int, block: GenotypeBlock, todo: np.ndarray) -> list:
        m = self.models[p]
        return [reference_fit(m.y, m.X, m.V, genotype_row(block, j, m.subset), m.G, m.h2_start, self.spec.robust,
                              m.exposures) for j in todo]


def reference_fit(y, X, V, g, G=None, h2_start: float = 0.05, robust: bool = False,
                  exposures=None) -> tuple[dict | None, str | None]:
    """Fit one variant's model by :meth:`hlmm.hetlm.model.optimize_model` (or hetlmm's).

    With ``robust`` (HLM only) the standard errors are the sandwich estimator's
    (:func:`hlmm.robust.hlm_sandwich`), and the model-based ones ``add_se_model`` and
    ``var_se_model``. With ``exposures`` (n, K) the mean has ``g * E_k`` too (``g`` centred over
    the individuals with a call), and the fit gives ``gxe``, ``gxe_se`` and ``gxe_cov`` (the
    covariance of the effects of ``g`` and the ``g * E_k``).

    Returns
    -------
    (dict, None) or (None, reason)
    """
    called = ~np.isnan(g)
    gc = g[called] - g[called].mean()
    Xl = np.column_stack([X[called], gc] + ([] if exposures is None else [gc[:, None] * exposures[called]]))
    Vl = np.column_stack([V[called], gc])
    try:
        if G is None:
            fit = hetlm.model(y[called], Xl, Vl).optimize_model()
        else:
            fit = hetlmm.model(y[called], Xl, Vl, G[called]).optimize_model(h2_start)
    except ValueError as e:
        return None, str(e)
    if not fit["success"]:
        return None, fit.get("message", "optimisation failed")
    c = X.shape[1]  # the column of g in the mean design
    est = {
        "likelihood": fit["likelihood"],
        "add": fit["alpha"][c],
        "add_se": fit["alpha_se"][c],
        "var": fit["beta"][-1],
        "var_se": fit["beta_se"][-1],
    }
    alpha_cov = fit["alpha_cov"]
    if robust:
        cov = hlm_sandwich(y[called], Xl, Vl, fit["alpha"], fit["beta"])
        est["add_se_model"], est["var_se_model"] = est["add_se"], est["var_se"]
        est["var_se"] = np.sqrt(cov[-1, -1])
        rare = exposures is not None and exposed_minor_alleles(g[called], exposures[called]) < MIN_SANDWICH_MAC
        if rare:  # the sandwich of the mean's G terms is unreliable: keep them model-based
            est["gxe_model_se"] = 1
        else:
            est["add_se"] = np.sqrt(cov[c, c])
            alpha_cov = cov[: Xl.shape[1], : Xl.shape[1]]
    if exposures is not None:
        est["gxe"] = fit["alpha"][c + 1 :]
        est["gxe_se"] = np.sqrt(np.diag(alpha_cov)[c + 1 :])
        est["gxe_cov"] = alpha_cov[c:, c:]
    if not all(np.all(np.isfinite(v)) for v in est.values()):
        return None, "non-finite estimate or standard error"
    return est, None


def exposed_minor_alleles(g: np.ndarray, exposures: np.ndarray) -> float:
    """The fewest minor alleles (copies, or summed dosages) among the exposed, over the exposures.

    For a binary exposure (two values) the exposed are the individuals at its less frequent value;
    for any other, everyone (the variant's minor allele count).

    Parameters
    ----------
    g : ndarray, shape (n,)
        Genotypes (copies of A1 or dosages), no missing values.
    exposures : ndarray, shape (n, K)

    Returns
    -------
    float
    """
    out = np.inf
    for E in np.asarray(exposures).reshape(len(g), -1).T:
        values, counts = np.unique(E, return_counts=True)
        gs = g[E == values[np.argmin(counts)]] if len(values) == 2 else g
        a1 = float(gs.sum())
        out = min(out, a1, 2.0 * len(gs) - a1)
    return out
