"""Covariate designs: intercept, z-scoring for fitting, and conversion back to original units.

A design ``[1, x_1, ..., x_k]`` is fitted as ``[1, z_1, ..., z_k]`` with ``z_j = (x_j - m_j) / s_j``.
Because ``a_0 + sum_j a_j z_j = (a_0 - sum_j a_j m_j / s_j) + sum_j (a_j / s_j) x_j``, effects in
the original units are ``T a`` for a fixed matrix ``T``, and their covariance is ``T C T'``. The
same holds for log-linear variance effects, with the variance covariates' own ``m`` and ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Design", "make_design"]


@dataclass
class Design:
    """A standardised design matrix with an intercept in column 0.

    Attributes
    ----------
    matrix : ndarray, shape (n, k + 1)
        ``[1, z_1, ..., z_k]``.
    names : list of str
        ``["Intercept", name_1, ...]``.
    center, scale : ndarray, shape (k,)
        Means and standard deviations of the original columns.
    """

    matrix: np.ndarray
    names: list
    center: np.ndarray
    scale: np.ndarray

    @property
    def transform(self) -> np.ndarray:
        """Matrix ``T`` mapping effects on the standardised design to original units."""
        k = self.center.shape[0]
        T = np.eye(k + 1)
        T[0, 1:] = -self.center / self.scale
        T[1:, 1:] = np.diag(1.0 / self.scale)
        return T

    def to_original_units(self, effects: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Effects and standard errors in the covariates' own units.

        Parameters
        ----------
        effects : ndarray, shape (k + 1,)
        cov : ndarray, shape (k + 1, k + 1)

        Returns
        -------
        effects, se : ndarray, shape (k + 1,)
        """
        T = self.transform
        return T @ effects, np.sqrt(np.diag(T @ cov @ T.T))


#: A column whose standard deviation is below this fraction of its largest absolute value is
#: constant (a scale-free rule: covariates in any units, e.g. around 1e-13, are accepted).
CONSTANT_RTOL = 1e-10


def is_constant(values: np.ndarray) -> bool:
    """Whether a vector is constant by :data:`CONSTANT_RTOL` (scale-free)."""
    return not np.std(values) > CONSTANT_RTOL * np.abs(values).max()


def make_design(values: np.ndarray | None, names: list | None, n: int, what: str = "covariates") -> Design:
    """Build ``[1, z_1, ..., z_k]`` from covariate values (or an intercept alone).

    Raises
    ------
    ValueError
        If a covariate is constant or the covariates are collinear (with the intercept).
    """
    if values is None or values.shape[1] == 0:
        return Design(np.ones((n, 1)), ["Intercept"], np.zeros(0), np.ones(0))
    center = values.mean(axis=0)
    scale = values.std(axis=0)
    for j, s in enumerate(scale):
        if not s > CONSTANT_RTOL * np.abs(values[:, j]).max():
            raise ValueError(f"{what}: '{names[j]}' is constant over the individuals used, so collinear with the"
                             " intercept")
    Z = (values - center) / scale
    matrix = np.column_stack([np.ones(n), Z])
    rank = np.linalg.matrix_rank(matrix)
    if rank < matrix.shape[1]:
        raise ValueError(
            f"{what}: the {values.shape[1]} covariates and the intercept are collinear"
            f" (rank {rank} of {matrix.shape[1]} columns)"
        )
    return Design(matrix, ["Intercept"] + list(names), center, scale)


def random_effects_design(values: np.ndarray, copy: bool = True, return_scaling: bool = False):
    """Random-effect design from genotypes: impute, drop, z-score, and scale by 1/sqrt(l).

    Missing values are replaced by the column mean; columns with no calls or no variance are
    dropped; each remaining column is z-scored and the matrix divided by sqrt(l).

    Parameters
    ----------
    values : ndarray, shape (n, l0)
        NaN for missing values.
    copy : bool
        If False and ``values`` is float64, it is standardised in place (saving a copy of an
        n x l0 matrix).

    Returns
    -------
    G : ndarray, shape (n, l)
    kept : ndarray of bool, shape (l0,)
        Which input columns were kept.
    center, scale : ndarray, shape (l,)
        With ``return_scaling``: ``G = (values_imputed - center) / scale`` for the kept columns.
    """
    values = np.array(values, dtype=float, copy=copy or None)
    l0 = values.shape[1]
    kept = np.zeros(l0, dtype=bool)
    center, scale = np.zeros(l0), np.ones(l0)
    for j0 in range(0, l0, 64):
        blk = values[:, j0 : j0 + 64]
        missing = np.isnan(blk)
        n_called = (~missing).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(missing, 0.0, blk).sum(axis=0) / n_called
        np.copyto(blk, np.broadcast_to(means, blk.shape), where=missing)
        blk -= means
        sd = np.sqrt((blk * blk).mean(axis=0))
        ok = (n_called > 0) & (sd > CONSTANT_RTOL * np.abs(means))
        kept[j0 : j0 + 64] = ok
        blk /= np.where(ok, sd, 1.0)
        center[j0 : j0 + 64], scale[j0 : j0 + 64] = means, sd
    G = values if kept.all() else values[:, kept]
    G /= np.sqrt(max(G.shape[1], 1))
    if return_scaling:
        return G, kept, center[kept], scale[kept] * np.sqrt(max(G.shape[1], 1))
    return G, kept
