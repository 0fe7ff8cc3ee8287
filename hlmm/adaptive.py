"""The adaptive variance test: an efficient score for the log-variance effect, chosen from the null
model's residuals (the ``var_adapt``, ``var_se_adapt`` and ``var_pval_adapt`` columns).

Why
---
The HLM's variance test compares squared residuals between genotypes. Its efficiency relative to
the best test is ``1 / (kurtosis - 1)`` of a normal trait's: for a Student t with 5 degrees of
freedom (kurtosis 9) it keeps 25% of the information a t5 model has about a scale change, and
tests built on ranks or quantiles (QUAIL, Brown-Forsythe) find more variance QTLs on such traits.
The pooled-moment robust columns (:mod:`hlmm.robust`) make the test valid there, not efficient.

The test
--------
Let ``z_i`` be the null model's standardised residuals (scaled to ``mean z^2 = 1``; the residuals
of :mod:`hlmm.robust`). For a function ``f``, a variant with genotypes ``g`` (centred over the
calls, missing calls mean-imputed) and log-variance effect ``b`` per copy scales the residuals by
``exp(b g_i / 2)``, so that ``T_f = sum_i g_i f(z_i)`` has, to first order in ``b``::

    E T_f = b * s_f * sum_i g_i^2,   s_f = 1/2 mean_i z_i f'(z_i),
    Var T_f = v_f * sum_i g_i^2,     v_f = the variance of f(z) (under the null, given the trait's
                                     values: the permutation argument of hlmm.robust)

and ``T_f / sqrt(v_f sum g^2)`` is a valid test of ``b = 0`` for any ``f`` fixed by the residuals
alone. Its efficacy (the noncentrality per unit of ``b^2 sum g^2``) is ``s_f^2 / v_f``; it is
largest when ``f`` is the scale score ``-1 - z p'(z) / p(z)`` of the residuals' density ``p``. For
a normal trait that is ``z^2`` (the HLM's own test); for a Student t with ``nu`` degrees of
freedom it is proportional to ``z^2 / (c + z^2)``, ``c = nu - 2`` on the standardised scale,
bounded, so that a few extreme residuals no longer dominate. We use that family::

    f_c(z) = c z^2 / (c + z^2),    c in GRID (c = inf: f = z^2),

and take the ``c`` whose estimated efficacy ``s_c^2 / v_c`` is largest, keeping ``c = inf`` unless the
best gains at least 1% (:data:`MIN_GAIN`). The choice depends on the
residuals alone, not on any variant, so the permutation argument still holds: the test is
calibrated for any residual distribution for which the sum over individuals is near normal. For a
normal trait the choice is ``inf``, and the test is the squared-residual score test.

Mean effects
------------
The residuals ``z`` are the null model's, so a variant's mean effect ``a`` shifts them by ``d g``
(``d = a`` times the residuals' scale per unit of the trait, :attr:`AdaptiveScore.shift`):
``f(z + d g) = f(z) + d g f'(z) + d^2 g^2 f''(z) / 2 + ...``. Both terms are removed:

* the first by using ``h(z) = f(z) - mean f' * z`` in place of ``f`` (under the null
  ``sum g^2 f'(z)`` is ``mean f' sum g^2`` to first order, and ``sum g z`` estimates
  ``d sum g^2``);
* the second by subtracting ``1/2 mean f'' * d^2 sum g^3``, with ``d`` from the variant's ``add``.

So a variant with only a mean effect is not called a variance QTL (on skewed traits, where
``mean f' != 0``, as much as on symmetric ones).

Estimate and standard error
---------------------------
``var_adapt = T / (s sum g^2)`` estimates the log-variance effect per copy of A1, on the same scale
as ``var`` (a one-step M-estimate from the null); ``var_se_adapt = sqrt(v) / (s sqrt(sum g^2))``;
``var_pval_adapt`` is the −log10 p of ``(var_adapt / var_se_adapt)^2`` on 1 df.

With covariates fitted per variant (``--fit_covariates``), ``h`` is residualised on the variance
covariates, so that ``sum g h`` is that of the genotypes with the covariates projected out; the
variance uses the centred genotypes' ``sum g^2``, which makes the test conservative by the share of
a variant's variance the variance covariates explain (about nothing for principal components).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> normal = AdaptiveScore.from_residuals(rng.standard_normal(50_000))
>>> t5 = AdaptiveScore.from_residuals(rng.standard_t(5, 50_000))
>>> float(normal.c), 1 <= t5.c <= 8
(inf, True)
>>> bool(t5.efficacy > 1.5 * t5.efficacy_squares)   # more information than the squared residuals
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AdaptiveScore", "GRID", "MIN_GAIN", "score_family"]

#: The tuning constants tried, ``inf`` being the squared residual itself.
GRID = (np.inf, 64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0, 0.5, 0.25)
#: Another member replaces the squared residual only if its estimated efficacy is at least this
#: many times larger (for a normal trait the estimates differ by noise alone).
MIN_GAIN = 1.01


def score_family(z: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``f_c(z) = c z^2 / (c + z^2)`` (``z^2`` for ``c = inf``) and its first two derivatives."""
    z = np.asarray(z, dtype=float)
    if np.isinf(c):
        return z**2, 2.0 * z, np.full_like(z, 2.0)
    w = c + z**2
    return c * z**2 / w, 2.0 * c**2 * z / w**2, 2.0 * c**2 * (c - 3.0 * z**2) / w**3


@dataclass(frozen=True, eq=False)
class AdaptiveScore:
    """The adaptive variance score of a phenotype's null model (module docstring).

    Attributes
    ----------
    c : float
        The chosen member of the family (``inf``: squared residuals).
    h : ndarray, shape (n,)
        Per-individual scores ``f_c(z) - mean f_c' * z``, centred (and residualised on the variance
        covariates when they are fitted per variant).
    sd : float
        Standard deviation of ``h`` (``sqrt(v)``).
    slope : float
        ``s = 1/2 mean z f_c'(z)``: the expected score per unit of variance effect and of ``sum g^2``.
    curvature : float
        ``1/2 mean f_c''(z)``: the second-order effect of a mean shift.
    shift : float
        Change in ``z`` per unit of the variant's ``add`` (``1 / sd`` of the trait's residuals).
    efficacy, efficacy_squares : float
        ``s^2 / v`` of the chosen ``c`` and of ``c = inf``.
    """

    c: float
    h: np.ndarray
    sd: float
    slope: float
    curvature: float
    shift: float
    efficacy: float
    efficacy_squares: float

    @classmethod
    def from_residuals(cls, z, shift: float = 1.0, V: np.ndarray | None = None, grid=GRID) -> "AdaptiveScore":
        """Choose the score from the null model's standardised residuals.

        Parameters
        ----------
        z : array_like, shape (n,)
            Standardised residuals (scaled here to ``mean z^2 = 1``).
        shift : float
            Change in ``z`` (before that scaling) per unit of a variant's ``add``.
        V : ndarray, shape (n, v), optional
            Variance covariates to residualise ``h`` on (covariates fitted per variant); the default
            centres it.
        grid : sequence of float

        Raises
        ------
        ValueError
            If ``z`` is empty, not finite or all zero.
        """
        z = np.asarray(z, dtype=float).reshape(-1)
        if z.size < 2 or not np.isfinite(z).all():
            raise ValueError("residuals must be an array of at least 2 finite values")
        s2 = float(np.mean(z**2))
        if not s2 > 0:
            raise ValueError("residuals are all zero")
        z = z / np.sqrt(s2)
        tried = []
        for c in grid:
            f, f1, f2 = score_family(z, c)
            h = f - float(np.mean(f1)) * z
            h -= h.mean()
            v = float(np.mean(h**2))
            s = 0.5 * float(np.mean(z * f1))
            tried.append((s * s / v if v > 0 else 0.0, c, h, s, 0.5 * float(np.mean(f2))))
        best = max(tried, key=lambda t: t[0])
        squares = [t for t in tried if np.isinf(t[1])]
        eff_inf = squares[0][0] if squares else np.nan
        if squares and not best[0] > MIN_GAIN * eff_inf:
            best = squares[0]  # a normal trait's estimated gains are noise: keep the HLM's own score
        eff, c, h, s, curv = best
        if V is not None and V.shape[1] > 1:
            h = h - V @ np.linalg.lstsq(V, h, rcond=None)[0]
        return cls(float(c), np.ascontiguousarray(h), float(np.sqrt(np.mean(h**2))), s, curv,
                   float(shift) / np.sqrt(s2), float(eff), float(eff_inf))

    def statistics(self, sgh, sgg, sggg, add) -> tuple[np.ndarray, np.ndarray]:
        """``var_adapt`` and ``var_se_adapt`` of variants.

        Parameters
        ----------
        sgh, sgg, sggg : array_like, shape (b,)
            ``sum_i g_i h_i``, ``sum_i g_i^2`` and ``sum_i g_i^3`` over the individuals with a call
            (``g`` centred over them).
        add : array_like, shape (b,)
            The variants' additive effects (for the second-order mean correction; NaN is taken as 0).

        Returns
        -------
        var_adapt, var_se_adapt : ndarray, shape (b,)
            NaN where ``sum g^2`` is 0.
        """
        sgh, sgg, sggg, add = (np.asarray(a, dtype=float) for a in (sgh, sgg, sggg, add))
        d = np.nan_to_num(add) * self.shift
        with np.errstate(invalid="ignore", divide="ignore"):
            t = sgh - self.curvature * d * d * sggg
            est = np.where(sgg > 0, t / (self.slope * sgg), np.nan)
            se = np.where(sgg > 0, self.sd / (abs(self.slope) * np.sqrt(sgg)), np.nan)
        return est, se

    def describe(self) -> str:
        """One line for the log."""
        what = "squared residuals" if np.isinf(self.c) else f"c z^2 / (c + z^2), c = {self.c:g}"
        gain = self.efficacy / self.efficacy_squares if self.efficacy_squares > 0 else np.nan
        return f"adaptive variance score: {what} ({gain:.2f} times the information of squared residuals)"
