"""Small dense linear-algebra helpers shared by the models and scan engines."""

from __future__ import annotations

import contextlib

import numpy as np
from scipy.linalg import blas


def weighted_gram(G: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
    """``G' diag(a) G`` (``G' G`` if ``a`` is None) by symmetric rank-k updates.

    With non-negative weights this is one symmetric rank-k update (n l^2 flops, half of a
    general matrix product); weights of both signs take a general product.

    Parameters
    ----------
    G : ndarray, shape (n, l)
    a : ndarray, shape (n,), optional

    Returns
    -------
    ndarray, shape (l, l)
        Symmetric.
    """
    if a is None:
        return _syrk(G)
    if np.all(a >= 0):
        return _syrk(G * np.sqrt(a)[:, None])
    out = G.T @ (a[:, None] * G)
    return 0.5 * (out + out.T)


def _syrk(A: np.ndarray) -> np.ndarray:
    A = np.ascontiguousarray(A, dtype=float)
    if A.shape[0] == 0:
        return np.zeros((A.shape[1],) * 2)
    # A.T is Fortran-ordered (l x n): C = A.T @ A without a copy
    C = blas.dsyrk(1.0, A.T, trans=0, lower=0)
    return np.triu(C) + np.triu(C, 1).T


#: Below this many flops per likelihood evaluation (n * l^2), BLAS runs single-threaded inside
#: the optimisers: OpenBLAS thread start-up then costs more than it saves. Measured on a 2-core
#: machine: one thread was 8x faster at n=400, l=60 and 1.4x faster at n=10,000, l=500; two
#: threads were 1.2x faster at n=20,000, l=500.
SINGLE_THREAD_FLOPS = 3e9

_controller = None


def blas_threads_for(flops: float):
    """Context manager limiting BLAS to one thread for problems below ``SINGLE_THREAD_FLOPS``."""
    global _controller
    if flops >= SINGLE_THREAD_FLOPS:
        return contextlib.nullcontext()
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
