"""Small dense linear-algebra helpers shared by the models and scan engines."""

from __future__ import annotations

import contextlib

import numpy as np
from scipy.linalg import blas

#: log(2 pi), the constant of every Gaussian log-likelihood here.
LOG_2PI = float(np.log(2 * np.pi))

#: Rows processed at a time by the n x l products, bounding their temporaries to
#: ROW_CHUNK x l floats (32 MB at l = 500).
ROW_CHUNK = 8192


def weighted_gram(G: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
    """``G' diag(a) G`` (``G' G`` if ``a`` is None).

    Rows are processed in chunks of :data:`ROW_CHUNK`, so the temporaries stay small. With
    non-negative weights each chunk is a symmetric rank-k update (half the flops of a general
    product); weights of both signs take a general product.

    Parameters
    ----------
    G : ndarray, shape (n, l)
    a : ndarray, shape (n,), optional

    Returns
    -------
    ndarray, shape (l, l)
        Symmetric.
    """
    n_rows = G.shape[0]
    out = np.zeros((G.shape[1], G.shape[1]))
    signed = a is not None and not np.all(a >= 0)
    for r0 in range(0, n_rows, ROW_CHUNK):
        sl = slice(r0, min(r0 + ROW_CHUNK, n_rows))
        Gc = G[sl]
        if a is None:
            out += syrk(Gc)
        elif signed:
            out += Gc.T @ (a[sl, None] * Gc)
        else:
            out += syrk(Gc * np.sqrt(a[sl])[:, None])
    return 0.5 * (out + out.T) if signed else out


def class_outer_sum(weights: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``sum_k weights_k z_k z_k'`` with ``z_k = (1, g_k)`` over the genotype classes k of each
    variant: shape (b, 2, 2) from ``weights`` and ``g`` of shape (b, K)."""
    s0 = weights.sum(axis=1)
    s1 = (weights * g).sum(axis=1)
    s2 = (weights * g * g).sum(axis=1)
    return np.stack([np.stack([s0, s1], -1), np.stack([s1, s2], -1)], -2)


def rows_quadratic(G: np.ndarray, lower_factor: np.ndarray) -> np.ndarray:
    """``q_i = g_i' M^-1 g_i`` for every row of G, given the lower Cholesky factor of M.

    Computed as column sums of ``(L^-1 G')^2`` a chunk of rows at a time.
    """
    from scipy.linalg import solve_triangular

    q = np.empty(G.shape[0])
    for r0 in range(0, G.shape[0], ROW_CHUNK):
        sl = slice(r0, min(r0 + ROW_CHUNK, G.shape[0]))
        B = solve_triangular(lower_factor, G[sl].T, lower=True, check_finite=False)
        q[sl] = np.einsum("ij,ij->j", B, B)
    return q


def syrk(A: np.ndarray) -> np.ndarray:
    """``A' A`` by a symmetric rank-k update (both triangles filled)."""
    A = np.ascontiguousarray(A, dtype=float)
    if A.shape[0] == 0:
        return np.zeros((A.shape[1],) * 2)
    # A.T is Fortran-ordered (l x n): C = A.T @ A without a copy; fill the lower triangle
    C = blas.dsyrk(1.0, A.T, trans=0, lower=0)
    il = np.tril_indices_from(C, -1)
    C[il] = C.T[il]
    return C


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
