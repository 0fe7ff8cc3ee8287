"""Validation of model inputs at the library boundary.

Every check raises ``ValueError`` with a message that names the array and gives the numbers.
"""

from __future__ import annotations

import numpy as np


def as_response(y, name: str = "y") -> np.ndarray:
    """Return ``y`` as a finite 1-D float array."""
    y = np.asarray(y, dtype=float)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or one column), got an array of shape {y.shape}")
    if y.shape[0] == 0:
        raise ValueError(f"{name} has no observations")
    _check_finite(y, name)
    return y


def as_design(A, n: int, name: str, full_rank: bool = True) -> np.ndarray:
    """Return ``A`` as a finite 2-D float array with ``n`` rows.

    A 1-D array is taken as one column. With ``full_rank`` the columns must be linearly
    independent, since their effects are otherwise not identifiable.
    """
    A = np.asarray(A, dtype=float)
    if A.ndim == 1:
        A = A.reshape((-1, 1))
    if A.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got an array of shape {A.shape}")
    if A.shape[0] != n:
        raise ValueError(f"{name} has {A.shape[0]} rows but y has {n} observations")
    if A.shape[1] == 0:
        raise ValueError(f"{name} has no columns")
    _check_finite(A, name)
    if full_rank:
        if A.shape[1] > n:
            raise ValueError(
                f"{name} has {A.shape[1]} columns but only {n} rows: its effects are not identifiable"
            )
        rank = np.linalg.matrix_rank(A)
        if rank < A.shape[1]:
            raise ValueError(
                f"{name} has {A.shape[1]} columns but rank {rank}: its columns are collinear"
            )
    return np.ascontiguousarray(A)


def as_parameter(x, size: int, name: str) -> np.ndarray:
    """Return a parameter vector as a finite 1-D float array of the given size."""
    x = np.atleast_1d(np.asarray(x, dtype=float)).reshape(-1)
    if x.shape[0] != size:
        raise ValueError(f"{name} has {x.shape[0]} elements but the model has {size}")
    _check_finite(x, name)
    return x


def as_h2(h2, name: str = "h2") -> float:
    """Return a variance of random effects as a finite, non-negative float."""
    h2 = float(h2)
    if not np.isfinite(h2) or h2 < 0:
        raise ValueError(f"{name} must be finite and non-negative, got {h2}")
    return h2


def _check_finite(A: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(A)
    if bad.any():
        n_nan = int(np.isnan(A).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} infinite values")
