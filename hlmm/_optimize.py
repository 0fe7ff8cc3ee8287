"""A projected Newton minimiser for small, smooth problems with simple lower bounds.

The models here have few parameters (a handful of variance effects and h2), a cheap analytic
gradient and a Hessian that is either analytic or differenced from that gradient. Newton's method
with a backtracking line search then converges quadratically to the maximum likelihood, where
quasi-Newton methods with default tolerances stop short of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

FunGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]
Hessian = Callable[[np.ndarray], np.ndarray]

#: Stop when the Newton decrement (an estimate of f - min f) is below this times max(1, |f|).
DECREMENT_RTOL = 1e-18
#: Below this decrement (relative) the quadratic model is trusted and full Newton steps are taken
#: without the Armijo test, whose predicted decrease is then below the rounding error of f.
LOCAL_RTOL = 1e-10
#: Accept a stall (the decrement no longer shrinks) as convergence when it is below this.
STALL_RTOL = 1e-9
#: Rounding allowance on f (relative) for full steps in the local regime.
F_NOISE_RTOL = 1e-12


@dataclass
class NewtonResult:
    """Outcome of :func:`minimize_newton`."""

    x: np.ndarray
    fun: float
    grad: np.ndarray
    n_iter: int
    success: bool
    message: str
    warnflag: int


def projected_gradient(x: np.ndarray, g: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Gradient with the components that push against an active lower bound set to zero."""
    at_bound = (x <= lower) & (g > 0)
    return np.where(at_bound, 0.0, g)


def newton_direction(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Solve ``H p = -g``; where ``H`` is not positive definite, use |eigenvalues| (floored)."""
    try:
        c = np.linalg.cholesky(H)
        return -np.linalg.solve(c.T, np.linalg.solve(c, g))
    except np.linalg.LinAlgError:
        pass
    evals, evecs = np.linalg.eigh(0.5 * (H + H.T))
    scale = max(np.max(np.abs(evals)), 1e-300)
    evals = np.maximum(np.abs(evals), 1e-8 * scale)
    return -evecs @ ((evecs.T @ g) / evals)


def minimize_newton(
    fun_grad: FunGrad,
    hessian: Hessian,
    x0: np.ndarray,
    lower: np.ndarray | None = None,
    max_iter: int = 200,
) -> NewtonResult:
    """Minimise ``f`` by projected Newton steps with an Armijo backtracking line search.

    Parameters
    ----------
    fun_grad : callable
        ``x -> (f(x), grad f(x))``. A non-finite ``f`` marks ``x`` as infeasible.
    hessian : callable
        ``x -> H(x)``, the Hessian of ``f``, shape (p, p).
    x0 : ndarray, shape (p,)
        Starting point; it is projected onto the bounds.
    lower : ndarray, shape (p,), optional
        Lower bounds (``-inf`` for none).
    max_iter : int
        Maximum number of Newton iterations.

    Returns
    -------
    NewtonResult
        ``success`` is True when the Newton decrement, restricted to the free parameters, fell
        below ``DECREMENT_RTOL * max(1, |f|)``.
    """
    x = np.array(x0, dtype=float)
    p = x.shape[0]
    lower = np.full(p, -np.inf) if lower is None else np.asarray(lower, dtype=float)
    x = np.maximum(x, lower)
    f, g = fun_grad(x)
    if not np.isfinite(f) or not np.all(np.isfinite(g)):
        return NewtonResult(x, f, g, 0, False, "objective is not finite at the starting point", 2)
    stalls, last_decrement = 0, np.inf
    for it in range(1, max_iter + 1):
        free = ~((x <= lower) & (g > 0))
        step = np.zeros(p)
        if free.any():
            H = hessian(x)
            if not np.all(np.isfinite(H)):
                return NewtonResult(x, f, g, it, False, "Hessian is not finite", 2)
            step[free] = newton_direction(H[np.ix_(free, free)], g[free])
        decrement = -float(g @ step)
        scale = max(1.0, abs(f))
        if decrement <= DECREMENT_RTOL * scale:
            return NewtonResult(x, f, g, it - 1, True, "converged", 0)
        stalls = stalls + 1 if decrement > 0.5 * last_decrement else 0
        if stalls >= 3 and decrement <= STALL_RTOL * scale:
            return NewtonResult(x, f, g, it - 1, True, "converged (rounding-limited)", 0)
        last_decrement = decrement
        local = decrement <= LOCAL_RTOL * scale
        t = 1.0
        while True:
            x_new = np.maximum(x + t * step, lower)
            f_new, g_new = fun_grad(x_new)
            if np.isfinite(f_new) and (
                f_new <= f + 1e-4 * float(g @ (x_new - x))
                or (local and t == 1.0 and f_new <= f + F_NOISE_RTOL * scale)
            ):
                break
            t *= 0.5
            if t < 1e-14:
                if decrement <= STALL_RTOL * scale:
                    return NewtonResult(x, f, g, it, True, "converged (rounding-limited)", 0)
                return NewtonResult(x, f, g, it, False, "line search failed to decrease", 2)
        x, f, g = x_new, f_new, g_new
    return NewtonResult(x, f, g, max_iter, False, f"no convergence in {max_iter} iterations", 1)


def fd_hessian(
    grad: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    step: np.ndarray,
    lower: np.ndarray | None = None,
) -> np.ndarray:
    """Hessian by differencing an analytic gradient, symmetrised.

    Central differences, except for a parameter within ``step`` of its lower bound, which is
    differenced forwards so that the gradient is never evaluated outside the domain.
    """
    x = np.asarray(x, dtype=float)
    p = x.shape[0]
    lower = np.full(p, -np.inf) if lower is None else lower
    H = np.empty((p, p))
    g0 = None
    for j in range(p):
        e = np.zeros(p)
        e[j] = step[j]
        if x[j] - step[j] >= lower[j]:
            H[:, j] = (grad(x + e) - grad(x - e)) / (2 * step[j])
        else:
            if g0 is None:
                g0 = grad(x)
            H[:, j] = (grad(x + e) - g0) / step[j]
    return 0.5 * (H + H.T)
