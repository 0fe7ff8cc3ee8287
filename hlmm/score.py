"""Score tests of a SNP's mean and variance effects under a null HLM or HLMM.

Parameterisation
----------------
The null model is an HLM (:mod:`hlmm.hetlm`) or HLMM (:mod:`hlmm.hetlmm`)::

    y ~ N(X alpha, Sigma),   Sigma = D (HLM)  or  h2 G G' + D (HLMM),   D = diag(d),  d = exp(V beta),

fitted once by maximum likelihood to ``(alpha, beta[, h2])``. A SNP with genotype vector ``g``
enters the mean as ``X alpha + g a`` and the log-variance as ``V beta + g b``. In scans ``g`` is
centred over the individuals with a call and missing calls are mean-imputed, i.e. ``g_i = 0``
where missing (:func:`mean_impute`). The score test of ``(a, b) = 0`` needs only the null fit,
so that a block of B SNPs costs a few n x B matrix products instead of B model fits.

Scores
------
With residuals ``r = y - X alpha``, ``e = Sigma^-1 r`` and ``P = Sigma^-1``, the scores at
``a = b = 0`` are::

    U_a = g' e,     U_b = 1/2 sum_i g_i d_i (e_i^2 - P_ii),

since ``dSigma/db = D diag(g)`` and ``dl/dphi = -1/2 tr(P Sigma_phi) + 1/2 e' Sigma_phi e``. For the
HLM, ``e_i = r_i / d_i`` and ``d_i P_ii = 1``.

Efficient information
---------------------
Under the expected (Fisher) information the mean parameters ``(alpha, a)`` and the variance
parameters ``theta = (beta[, h2])``, ``b`` are orthogonal, so estimating ``alpha`` affects only
``a``, and estimating ``theta`` only ``b``::

    I_a = g' P g - g' P X (X' P X)^-1 X' P g
    I_b = I_bb - I_btheta I_thetatheta^-1 I_thetab,    I_phipsi = 1/2 tr(P Sigma_phi P Sigma_psi).

Reported per SNP: ``add = U_a / I_a``, ``add_se = I_a^-1/2``, ``add_t = U_a / I_a^1/2`` (a
one-step estimate from the null, its standard error and the score statistic) and
``av_chi2 = U_a^2 / I_a + U_b^2 / I_b``, the 2-df statistic ``U' I^-1 U`` of ``a = b = 0`` (the
cross information is zero).

The variance test treats the additive effect as a nuisance, as the Wald test does: its score is
taken at the one-step estimate ``a^ = U_a / I_a`` (Neyman's C(alpha) test), i.e. with the
residuals ``r - a^ g~``, ``g~ = g - X gamma`` (the mean covariates' part of g projected out).
Otherwise a SNP's mean effect leaks into its variance score through the skewness of g
(``E U_b`` grows with ``a^2 sum g^3``), and the variance statistics of SNPs with mean effects
disagree with the Wald test's. With ``e(a^) = e - a^ P g~``::

    U_b(a^) = U_b - a^ sum_i g_i g~_i d_i e_i P_ii + 1/2 a^2 sum_i g_i g~_i^2 d_i P_ii^2,

exact for the HLM (``P g~ = D^-1 g~``). For the HLMM ``P g~`` is taken as ``rho P_ii g~_i`` with
``rho = g~'P g~ / sum_i g~_i^2 P_ii``, which makes ``g~'(P g~)`` exact: ``rho`` is about 1 for a SNP
unrelated to G (the off-diagonal part of P is then of relative order l/n) and well below 1 for a
SNP that the random effects absorb (a SNP of G or in LD with one), whose ``P g~`` the diagonal
part alone would overstate. The tests measure the error of the adjusted score against the
exact one on dense matrices.
Under ``b = 0`` its information is still ``I_b`` (the blocks are orthogonal): ``var = U_b(a^) /
I_b``, ``var_se = I_b^-1/2``, ``var_t = U_b(a^) / I_b^1/2``.

For the HLM, ``I_a = g'D^-1 g - g'D^-1 X (X'D^-1 X)^-1 X'D^-1 g`` and
``I_b = 1/2 (g'g - g'V (V'V)^-1 V'g)``, the information behind :class:`hlmm.hetlm.model`'s Wald
standard errors.

HLMM algebra in l dimensions
----------------------------
With ``S = G'D^-1 G``, ``M = I + h2 S = L L'`` and ``K = h2 M^-1`` (l x l)::

    P = D^-1 - D^-1 G K G' D^-1,     P G = D^-1 G M^-1,
    q_i = G_i' K G_i,                d_i P_ii = 1 - q_i / d_i.

Mean: with ``Z = G' D^-1 g`` (l x B for a block, the only per-SNP product of order n l) and
``C = G' D^-1 X``: ``g'Pg = g'D^-1 g - Z'KZ`` and ``X'Pg = X'D^-1 g - C'KZ``.

Variance: for diagonal perturbations ``Sigma_a = D diag(a)``, ``Sigma_c = D diag(c)``::

    tr(P Sigma_a P Sigma_c) = sum_i a_i c_i (1 - 2 q_i / d_i) + tr(K T_a K T_c),   T_a = G' diag(a/d) G,

and ``tr(K T_a K T_c) = sum_i (a_i / d_i) G_i' (K T_c K) G_i`` is linear in ``a`` when ``c`` is
fixed. With ``rho_ij = G_i' K T_j K G_i / d_i`` (T_j from column j of V) and
``eta_i = G_i' M^-2 G_i / d_i``, precomputed once per null::

    I_bbeta_j = 1/2 g' [V_j (1 - 2 q / d) + rho_j]        I_bh2 = 1/2 tr(M^-2 T_g) = 1/2 g' eta
    I_beta_j beta_k = 1/2 V_j' [V_k (1 - 2 q / d) + rho_k]  I_beta_j h2 = 1/2 V_j' eta
    I_h2h2 = 1/2 tr((M^-1 S)^2).

Only ``I_bb = 1/2 [sum_i g_i^2 (1 - 2 q_i / d_i) + tr(K T_g K T_g)]`` is quadratic in g. Writing
``tr(K T_g K T_g) = sum_ij g_i g_j W_ij`` with ``W_ij = (G_i' K G_j)^2 / (d_i d_j) = d_i d_j P_ij^2``
(i != j), the default keeps its diagonal::

    I_bb ~= 1/2 sum_i g_i^2 (d_i P_ii)^2,

dropping ``1/2 sum_{i != j} g_i g_j W_ij``. Size of what is dropped: for G with roughly
independent z-scored columns divided by sqrt(l) (as the scripts scale it), and ``kappa`` the
typical eigenvalue of K (``kappa ~ h2 / (1 + h2 n / (l d))``, so ``kappa <= l d / n``), the
off-diagonal entries are ``W_ij ~ kappa^2 (G_i'G_j)^2 / d^2`` with ``(G_i'G_j)^2`` of mean and
standard deviation about 1/l. For a centred g the mean of W contributes ``-w_bar sum_i g_i^2``
(``w_bar ~ kappa^2 / (l d^2)``) and the rest is a mean-zero quadratic form with standard
deviation about ``2 n sd(g)^2 kappa^2 / (l d^2)``. Relative to ``I_b ~ n sd(g)^2 / 2`` the dropped
term is therefore ``O(kappa^2 / (l d^2)) <= O(l / n^2)``: about 1e-7 at n = 100,000, l = 500, and
far below the diagonal correction that is kept (``(q/d)^2 ~ (l/n)^2``, 2.5e-5 there). A SNP that
is itself a column k of G (``g = sqrt(l) G_k``) adds a structured part: ``(T_g)_kk ~ n skew(g) /
(l d)``, so the dropped term grows by ``(kappa n / (l d))^2 skew(g)^2 / n <= skew(g)^2 / n``
relative (with the sign that makes the default I_b smaller than the exact one): 8.5e-5 for
allele frequency 0.05 and 5e-4 for 0.01 at n = 100,000. SNPs in LD with those of G are in
between. The tests measure both parts (random: 1.0-1.3 times ``2 kappa^2 / (l d^2)`` in
standard deviation; structured: 0.1-1.4 times the formula). ``exact=True`` computes the full
term as ``h2^2 ||Y diag(g/d) Y'||_F^2`` with ``Y = L^-1 G'``, at n l^2 per SNP.

Robust score tests
------------------
The model-based variance of ``U_b`` assumes normal residuals: with excess kurtosis k, the
variance of ``r_i^2 / d_i - 1`` is ``2 + k`` instead of 2, and var_t^2 (so lambda_GC) is
inflated by about ``1 + k/2`` (t5: k = 6; chi^2_3: k = 4). ``robust=True`` replaces ``Var(U)`` by the empirical
variance of the efficient score contributions. For the HLM these are independent over
individuals::

    u_i = ( g~_i e_i ,  1/2 g^_i (r_i^2 / d_i - 1) ),   e_i = r_i / d_i,
    g~ = g - X gamma,  gamma = (X'D^-1 X)^-1 X'D^-1 g,     g^ = g - V h,  h = (V'V)^-1 V' g,

i.e. the score contributions minus ``I_psitheta I_thetatheta^-1`` times the nuisance score
contributions (the projection uses the expected information, which equals the expected
Hessian whenever the mean and variance models are right, normal or not). ``V_u = sum_i u_i u_i'``
(2 x 2), ``add_t = U_a / V_aa^1/2``, ``var_t = U_b(a^) / V_bb^1/2`` (``V_bb`` at ``a = 0``,
conservative for SNPs with large mean effects), ``av_chi2 = U' V_u^-1 U``,
``add_se = V_aa^1/2 / I_a`` and ``var_se = V_bb^1/2 / I_b`` (so that ``add / add_se = add_t``).
``sum_i u_i = U`` at the null MLE, where ``X'e = 0`` and ``V'(r^2/d - 1) = 0``.

For the HLMM the scores are a linear and a quadratic form in correlated residuals. The
analogous per-individual contributions are::

    u_i = ( g~_i e_i ,  1/2 (g_i - V_i' h_beta) d_i (e_i^2 - P_ii) ),   e = Sigma^-1 r,
    g~ = g - X gamma,  gamma = (X'PX)^-1 X'P g,     (h_beta; h_h2) = I_thetatheta^-1 I_thetab,

each of mean zero, since ``E e_i^2 = P_ii``, and summing to ``U`` at an interior null MLE.
``V_u = sum_i u_i u_i'`` treats them as independent. What that ignores, and what is done:

* Mean score: ``E sum_i u_ai^2 = sum_i g~_i^2 P_ii`` for any residual distribution, whereas
  ``Var(U_a) = g~'P g~ = I_a``; the difference is the covariances ``g~_i g~_j P_ij`` (i != j),
  ``sum_i g~_i^2 P_ii - I_a = Z~'KZ~ - sum_i g~_i^2 q_i / d_i^2`` with ``Z~ = G'D^-1 g~``. For a SNP
  unrelated to G its relative size is ``O(sqrt(2 l) / n)``, but for a SNP in the span of G's
  leading directions (a SNP of G, in LD with one, or differentiated along the structure that G
  captures) ``I_a`` is shrunk by the random effects and the sum is not: without correction the
  robust add_t of SNPs of G was conservative by a factor of about 3.5 (V_aa / I_a = 12 at
  n = 2,000-4,000, l = 100-200, h2 = 0.5). Hence ``V_aa`` and ``V_ab`` are multiplied by
  ``I_a / sum_i g~_i^2 P_ii`` and its square root (u_ai scaled), which makes ``V_aa`` unbiased
  for ``I_a`` whenever the variance model is right, normal or not (the mean score is linear in
  r, so only a wrong variance model changes its variance). Under a wrong variance model the
  ratio is ``1 + O(sqrt(2 l) / n)`` for SNPs unrelated to G, which keep the plain sandwich, and
  a scale approximation for the others. The ratio is 1 for the HLM.
* Variance score: the covariances ``Cov(u_bi, u_bj) = 1/2 g^_i g^_j d_i d_j P_ij^2`` (normal
  case), the same off-diagonal terms as dropped from ``I_bb`` above, relative size
  ``O(kappa^2 / (l d^2)) <= O(l / n^2)`` plus at most ``skew(g)^2 / n`` for SNPs of G; under
  non-normal residuals their kurtosis terms are of the same relative order. Not corrected.
* The estimation of h2: the contribution ``-h_h2 u_h2,i`` is left out because the h2 score
  ``1/2 (e'GG'e - tr(G'PG))`` is not a sum of independent per-individual terms. Under the model
  ``V_bb`` then exceeds the variance of the efficient score by ``h_h2^2 I_h2h2`` (conservative),
  measured below 4e-7 relative for SNPs unrelated to G and for SNPs of G.

Both robust variants cost a few more columns in the same block products: still one pass over
the genotypes and no per-SNP work of order n l beyond ``Z``.

References
----------
The robust score test is the generalised score test of Boos (1992), "On generalized score
tests", The American Statistician 46, 327-333, with independent contributions for the HLM.

Examples
--------
>>> import numpy as np
>>> from hlmm import hetlm, score
>>> rng = np.random.default_rng(1)
>>> n = 2000
>>> X = np.column_stack([np.ones(n), rng.standard_normal(n)])
>>> y = X @ [1.0, 0.5] + rng.standard_normal(n)
>>> fit = hetlm.model(y, X, X).optimize_model()
>>> null = score.HLMNull(y, X, X, fit["alpha"], fit["beta"])
>>> g = score.mean_impute(rng.binomial(2, 0.3, (n, 4)).astype(float))
>>> out = score.score_test(null, g)
>>> sorted(out), out["av_chi2"].shape
(['add', 'add_se', 'add_t', 'av_chi2', 'var', 'var_se', 'var_t'], (4,))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from hlmm._checks import as_design, as_h2, as_parameter, as_response
from hlmm._linalg import ROW_CHUNK, blas_threads_for, weighted_gram

__all__ = ["HLMNull", "HLMMNull", "ScoreNull", "score_test", "mean_impute", "OUTPUT_KEYS"]

#: Keys of the dictionary returned by :func:`score_test`, each an array of length B.
OUTPUT_KEYS = ("add", "add_se", "add_t", "var", "var_se", "var_t", "av_chi2")

#: Efficient information below this fraction of the raw information (g'Pg for a, I_bb for b)
#: means that g is (numerically) in the span of the nuisance covariates: NaN statistics.
COLLINEAR_RTOL = 1e-9


@dataclass(frozen=True)
class _PerIndividual:
    """What a block of SNPs needs of the null model, per individual and in nuisance dimensions.

    Shapes: n individuals, c = columns of X, v = columns of V, k = number of variance nuisance
    parameters (v for the HLM, v + 1 for the HLMM).
    """

    X: np.ndarray  # (n, c)
    V: np.ndarray  # (n, v)
    w: np.ndarray  # (n,) 1 / d
    e: np.ndarray  # (n,) Sigma^-1 r
    t: np.ndarray  # (n,) 1/2 d (e^2 - P_ii): per-individual contribution to U_b per unit g
    Pdiag: np.ndarray  # (n,) P_ii
    dP2: np.ndarray  # (n,) (d_i P_ii)^2: I_bb (diagonal part) = 1/2 sum g^2 dP2
    omega: np.ndarray  # (n, k): I_btheta = g' omega
    cho_xpx: tuple  # Cholesky factor of X' P X (c x c)
    cho_info_theta: tuple  # Cholesky factor of I_thetatheta (k x k)
    _columns: dict = field(default_factory=dict, repr=False)

    def columns(self, robust: bool, keep: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights of the block products, built once per null and mode (kept unless ``keep`` is False).

        Linear columns (g' times these): ``w X | e | t | omega``, with ``robust``
        ``e^2 X | t^2 V | e t X | e t V | Pdiag X``, then ``h1 X | h2 X_j X_k (j <= k) | Pdiag X``. Square
        columns ((g^2)' times these): ``w | dP2``, with ``robust`` ``e^2 | t^2 | e t | Pdiag``,
        then ``h1 | h2 X | Pdiag``. Cube columns ((g^3)' times these): ``h2``. Here
        ``h1 = d e P_ii`` and ``h2 = d P_ii^2`` adjust the variance score for the one-step
        additive effect (with ``Pdiag X``, ``Pdiag`` for the mixed model's scale ``rho``).
        """
        if robust not in self._columns:
            lin = [self.w[:, None] * self.X, self.e[:, None], self.t[:, None], self.omega]
            sq = [self.w, self.dP2]
            if robust:
                f = self.robust_weights()
                lin += [f["e2"][:, None] * self.X, f["t2"][:, None] * self.V, f["et"][:, None] * self.X,
                        f["et"][:, None] * self.V, f["P"][:, None] * self.X]
                sq += [f["e2"], f["t2"], f["et"], f["P"]]
            h1, h2 = self.h1, self.h2
            c = self.X.shape[1]
            pairs = [self.X[:, j] * self.X[:, k] * h2 for j in range(c) for k in range(j, c)]
            lin += [h1[:, None] * self.X, np.column_stack(pairs), self.Pdiag[:, None] * self.X]
            sq += [h1, h2[:, None] * self.X, self.Pdiag]
            made = (np.column_stack(lin), np.column_stack(sq), h2[:, None].copy())
            if not keep:  # (a caller that keeps what it needs of them, as the score scanner its basis)
                return made
            self._columns[robust] = made
        return self._columns[robust]

    @property
    def h1(self) -> np.ndarray:
        """``d_i e_i P_ii`` (``r_i / d_i`` for the HLM)."""
        return self.e * np.sqrt(self.dP2)

    @property
    def h2(self) -> np.ndarray:
        """``d_i P_ii^2`` (``1 / d_i`` for the HLM)."""
        return self.dP2 * self.w

    def robust_weights(self) -> dict[str, np.ndarray]:
        """Per-individual weights of the robust variance: e^2, t^2, e t and P_ii."""
        return {"e2": self.e**2, "t2": self.t**2, "et": self.e * self.t, "P": self.Pdiag}


class HLMNull:
    """Null heteroskedastic linear model, prepared for score tests of many SNPs.

    Parameters
    ----------
    y : array_like, shape (n,)
        Phenotype.
    X : array_like, shape (n, c) or (n,)
        Mean covariates.
    V : array_like, shape (n, v) or (n,)
        Log-variance covariates.
    alpha : array_like, shape (c,)
        Null maximum likelihood estimate of the mean effects.
    beta : array_like, shape (v,)
        Null maximum likelihood estimate of the log-variance effects.

    Raises
    ------
    ValueError
        If shapes do not match or an input holds NaN or inf.

    Notes
    -----
    The statistics assume that ``(alpha, beta)`` maximise the null likelihood (for example
    :meth:`hlmm.hetlm.model.optimize_model`); they are not refitted here.
    """

    def __init__(self, y, X, V, alpha, beta) -> None:
        y = as_response(y)
        self.n = y.shape[0]
        X = as_design(X, self.n, "X")
        V = as_design(V, self.n, "V")
        alpha = as_parameter(alpha, X.shape[1], "alpha")
        beta = as_parameter(beta, V.shape[1], "beta")
        w = np.exp(-(V @ beta))
        r = y - X @ alpha
        omega = 0.5 * V
        self._p = _PerIndividual(
            X=X,
            V=V,
            w=w,
            e=w * r,
            t=0.5 * (w * r**2 - 1.0),
            Pdiag=w,
            dP2=np.ones(self.n),
            omega=omega,
            cho_xpx=_cho(X.T @ (w[:, None] * X), "X' D^-1 X"),
            cho_info_theta=_cho(V.T @ omega, "V'V / 2"),
        )

    def score_test(self, genotypes, *, robust: bool = False, exact: bool = False, GtDinv_g=None) -> dict:
        """Score tests of ``(a, b) = 0`` for a block of SNPs; see :func:`score_test`.

        ``exact`` has no effect (the HLM information has no approximation); ``GtDinv_g`` must be
        None, as the HLM has no random effects.
        """
        if GtDinv_g is not None:
            raise ValueError("GtDinv_g was given but the null model is an HLM, which has no random effects")
        g = _as_genotypes(genotypes, self.n)
        with blas_threads_for(_block_flops(self._p, g.shape[1])):
            return _statistics(self._p, *_block_products(self._p, g, robust), robust, None, None)

    def columns(self, robust: bool = False, keep: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-individual weights ``L`` (n, k1), ``Q`` (n, k2) and ``K`` (n, k3) whose block products
        ``g' L``, ``(g^2)' Q`` and ``(g^3)' K`` are all that the statistics need of the genotypes
        (built once and kept for the next call, unless ``keep`` is False)."""
        return self._p.columns(robust, keep)

    def standardised_residuals(self) -> np.ndarray:
        """``z_i = e_i / sqrt(P_ii)`` (``r_i / sqrt(d_i)`` for the HLM), of variance 1 under the model."""
        return self._p.e / np.sqrt(self._p.Pdiag)

    def from_products(self, lin: np.ndarray, sq: np.ndarray, cube: np.ndarray, *, robust: bool = False) -> dict:
        """Score tests from precomputed block products ``g' L``, ``(g^2)' Q`` and ``(g^3)' K`` of
        :meth:`columns` (for example from per-genotype-class sums): the same numbers as
        :meth:`score_test` on ``g``."""
        return _statistics(self._p, *(np.asarray(a, float) for a in (lin, sq, cube)), robust, None, None)


class HLMMNull:
    """Null heteroskedastic linear mixed model, prepared for score tests of many SNPs.

    Everything that does not depend on the SNP is computed here once, at O(n l^2) cost (a few
    passes over G): ``S``, the Cholesky factor of ``M``, ``e``, ``P_ii``, ``q``, ``eta``,
    ``rho`` and the nuisance information. Nothing n x n is formed.

    Parameters
    ----------
    y : array_like, shape (n,)
        Phenotype.
    X : array_like, shape (n, c) or (n,)
        Mean covariates.
    V : array_like, shape (n, v) or (n,)
        Log-variance covariates.
    G : array_like, shape (n, l) or (n,)
        Random-effect design, scaled as for :class:`hlmm.hetlmm.model`.
    alpha : array_like, shape (c,)
        Null maximum likelihood estimate of the mean effects.
    beta : array_like, shape (v,)
        Null maximum likelihood estimate of the log-variance effects.
    h2 : float
        Null maximum likelihood estimate of the random-effect variance.

    Raises
    ------
    ValueError
        If shapes do not match, an input holds NaN or inf, or h2 is negative.

    Notes
    -----
    The projection for estimating h2 is applied also when ``h2 = 0`` (on the boundary, where the
    h2 score need not vanish); for SNPs unrelated to G it is negligible either way.
    """

    def __init__(self, y, X, V, G, alpha, beta, h2) -> None:
        y = as_response(y)
        self.n = y.shape[0]
        X = as_design(X, self.n, "X")
        V = as_design(V, self.n, "V")
        self.G = as_design(G, self.n, "G", full_rank=False)
        self.l = self.G.shape[1]
        alpha = as_parameter(alpha, X.shape[1], "alpha")
        beta = as_parameter(beta, V.shape[1], "beta")
        self.h2 = as_h2(h2)
        with blas_threads_for(self.n * self.l**2 * (V.shape[1] + 3)):
            self._prepare(y, X, V, alpha, beta)

    def _prepare(self, y: np.ndarray, X: np.ndarray, V: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> None:
        h2 = self.h2
        v = V.shape[1]
        d = np.exp(V @ beta)
        w = 1.0 / d
        S = weighted_gram(self.G, w)
        M = h2 * S
        M[np.diag_indices_from(M)] += 1.0
        self._cho_M = _cho(M, "I + h2 G'D^-1 G")
        L = self._cho_M[0]
        r = y - X @ alpha
        m = linalg.cho_solve(self._cho_M, self.G.T @ (w * r))  # M^-1 G'D^-1 r
        e = w * (r - h2 * (self.G @ m))
        # T_j = G' diag(V_j / d) G for non-constant columns; a constant column c gives c S
        const = [bool(np.all(V[:, j] == V[0, j])) for j in range(v)]
        T = {j: weighted_gram(self.G, w * V[:, j]) for j in range(v) if not const[j]}
        q = np.empty(self.n)
        eta = np.empty(self.n)
        rho = np.empty((self.n, v))
        for r0 in range(0, self.n, ROW_CHUNK):
            sl = slice(r0, min(r0 + ROW_CHUNK, self.n))
            Y = linalg.solve_triangular(L, self.G[sl].T, lower=True, check_finite=False)  # L^-1 G_i
            W = linalg.solve_triangular(L, Y, lower=True, trans="T", check_finite=False)  # M^-1 G_i
            q[sl] = h2 * np.einsum("ij,ij->j", Y, Y)
            eta[sl] = np.einsum("ij,ij->j", W, W) * w[sl]
            for j in range(v):
                if const[j]:
                    # G_i' K S K G_i = h2 G_i'(M^-1 - M^-2) G_i = q_i - h2 d_i eta_i
                    rho[sl, j] = V[0, j] * (q[sl] - h2 * d[sl] * eta[sl]) * w[sl]
                else:
                    rho[sl, j] = h2**2 * np.einsum("ij,ij->j", W, T[j] @ W) * w[sl]
        dP = 1.0 - q * w  # d_i P_ii
        omega = np.empty((self.n, v + 1))
        omega[:, :v] = 0.5 * (V * (1.0 - 2.0 * q * w)[:, None] + rho)
        omega[:, v] = 0.5 * eta
        info_theta = np.empty((v + 1, v + 1))
        info_theta[:v, :] = V.T @ omega
        info_theta[v, :v] = info_theta[:v, v]
        MinvS = linalg.cho_solve(self._cho_M, S)
        info_theta[v, v] = 0.5 * np.einsum("ij,ji->", MinvS, MinvS)
        info_theta = 0.5 * (info_theta + info_theta.T)
        self._C = self.G.T @ (w[:, None] * X)  # G'D^-1 X (l x c)
        xpx = X.T @ (w[:, None] * X) - h2 * self._C.T @ linalg.cho_solve(self._cho_M, self._C)
        self._w = w
        #: ``D^-1``'s one value when D is a multiple of I (a variance model of an intercept alone, as in
        #: the default mode), else None: ``G'D^-1 g`` is then this times ``G'g``.
        self.constant_weight = float(w[0]) if np.all(w == w[0]) else None
        self._q = q
        self._Y: np.ndarray | None = None  # L^-1 G' (l x n), only for exact=True
        self._p = _PerIndividual(
            X=X,
            V=V,
            w=w,
            e=e,
            t=0.5 * d * (e**2 - w * dP),
            Pdiag=w * dP,
            dP2=dP**2,
            omega=omega,
            cho_xpx=_cho(xpx, "X' Sigma^-1 X"),
            cho_info_theta=_cho(info_theta, "the information of (beta, h2)"),
        )

    def gtdinv(self, genotypes) -> np.ndarray:
        """``Z = G' D^-1 g`` for a block of SNPs, the product that :func:`score_test` needs.

        Parameters
        ----------
        genotypes : array_like, shape (n, B)
            Centred, mean-imputed genotypes.

        Returns
        -------
        ndarray, shape (l, B)
        """
        g = _as_genotypes(genotypes, self.n)
        Z = np.zeros((self.l, g.shape[1]))
        buf = np.empty((min(ROW_CHUNK, self.n), g.shape[1]))
        with blas_threads_for(2.0 * self.n * self.l * g.shape[1]):
            for r0 in range(0, self.n, ROW_CHUNK):
                sl = slice(r0, min(r0 + ROW_CHUNK, self.n))
                Z += self.G[sl].T @ np.multiply(self._w[sl, None], g[sl], out=buf[: sl.stop - r0])
        return Z

    def score_test(self, genotypes, *, robust: bool = False, exact: bool = False, GtDinv_g=None) -> dict:
        """Score tests of ``(a, b) = 0`` for a block of SNPs; see :func:`score_test`."""
        g = _as_genotypes(genotypes, self.n)
        if GtDinv_g is None:
            Z = self.gtdinv(g)
        else:
            Z = np.asarray(GtDinv_g, dtype=float)
            if Z.shape != (self.l, g.shape[1]):
                raise ValueError(
                    f"GtDinv_g has shape {Z.shape} but G has {self.l} columns and the block {g.shape[1]} SNPs"
                )
        flops = _block_flops(self._p, g.shape[1]) + 2 * self.l**2 * g.shape[1]
        with blas_threads_for(flops * (1 + exact * self.l)):
            KZ = self.h2 * linalg.cho_solve(self._cho_M, Z)
            # g'Pg = g'D^-1 g - Z'KZ;  X'Pg = X'D^-1 g - C'KZ
            mean_correction = (np.einsum("ij,ij->j", Z, KZ), KZ.T @ self._C)
            bb_offdiag = self._bb_offdiagonal(g) if exact else None
            return _statistics(self._p, *_block_products(self._p, g, robust), robust, mean_correction, bb_offdiag)

    def columns(self, robust: bool = False, keep: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-individual weights ``L``, ``Q`` and ``K`` whose block products ``g' L``,
        ``(g^2)' Q`` and ``(g^3)' K``, with ``Z = G' D^-1 g``, are all that the statistics need
        (built once and kept for the next call, unless ``keep`` is False)."""
        return self._p.columns(robust, keep)

    def standardised_residuals(self) -> np.ndarray:
        """``z_i = e_i / sqrt(P_ii)`` with ``e = Sigma^-1 r``: of variance 1 under the model, and close
        to the noise ``epsilon_i / sqrt(d_i)`` when l << n."""
        return self._p.e / np.sqrt(self._p.Pdiag)

    def mean_shift(self) -> float:
        """The change in :meth:`standardised_residuals` per unit of a variant's mean effect, on average
        over individuals: ``(P g)_i / sqrt(P_ii)`` is about ``g_i sqrt(P_ii)``."""
        return float(np.mean(np.sqrt(self._p.Pdiag)))

    def from_products(self, lin: np.ndarray, sq: np.ndarray, cube: np.ndarray, GtDinv_g: np.ndarray, *,
                      robust: bool = False) -> dict:
        """Score tests from precomputed block products (see :meth:`columns`) and ``Z``: the same
        numbers as :meth:`score_test` (with ``exact=False``) on ``g``."""
        Z = np.asarray(GtDinv_g, dtype=float)
        with blas_threads_for(2 * self.l**2 * Z.shape[1]):
            KZ = self.h2 * linalg.cho_solve(self._cho_M, Z)
            mean_correction = (np.einsum("ij,ij->j", Z, KZ), KZ.T @ self._C)
            return _statistics(self._p, *(np.asarray(a, float) for a in (lin, sq, cube)), robust, mean_correction,
                               None)

    def _bb_offdiagonal(self, g: np.ndarray) -> np.ndarray:
        """1/2 sum_{i != j} g_i g_j W_ij for each SNP, at n l^2 per SNP (``exact=True``)."""
        if self._Y is None:
            self._Y = linalg.solve_triangular(self._cho_M[0], self.G.T, lower=True, check_finite=False)
        Y = self._Y
        out = np.empty(g.shape[1])
        diag = (g**2).T @ (self._q * self._w) ** 2
        for k in range(g.shape[1]):
            A = (Y * (g[:, k] * self._w)) @ Y.T  # L^-1 T_g L^-T
            out[k] = 0.5 * (self.h2**2 * np.sum(A * A) - diag[k])
        return out


#: A null model prepared for score tests.
ScoreNull = HLMNull | HLMMNull


def score_test(
    null: ScoreNull, genotypes, *, robust: bool = False, exact: bool = False, GtDinv_g=None
) -> dict[str, np.ndarray]:
    """Score tests of a SNP's mean effect ``a`` and log-variance effect ``b`` for a block of SNPs.

    Parameters
    ----------
    null : HLMNull or HLMMNull
        The null model at its maximum likelihood estimate.
    genotypes : array_like, shape (n, B) or (n,)
        Genotypes centred over the individuals with a call, with missing calls set to 0 (the
        mean): see :func:`mean_impute`.
    robust : bool
        Estimate the variance of the scores empirically from the efficient per-individual score
        contributions (valid for non-normal residuals), instead of the expected information.
    exact : bool
        HLMM only: compute the information of ``b`` exactly, at n l^2 per SNP, instead of
        dropping its off-diagonal part (relative error ``O(l / n^2)``, up to ``skew(g)^2 / n``
        for SNPs of G; see the module docstring). For tests and small problems.
    GtDinv_g : array_like, shape (l, B), optional
        HLMM only: ``G' diag(exp(-V beta)) g`` for the block, with the null's ``G`` and ``beta``
        and the genotypes as passed, if the caller has it (for example from exact integer
        products); otherwise computed here by :meth:`HLMMNull.gtdinv`.

    Returns
    -------
    dict of str to ndarray, shape (B,)
        ``add``, ``add_se``, ``add_t``, ``var``, ``var_se``, ``var_t``, ``av_chi2``: the one-step
        estimates ``U / I``, their standard errors, the score statistics (approximately N(0, 1)
        under the null) and the 2-df statistic (approximately chi^2_2). NaN for SNPs in the
        span of the covariates (for example monomorphic ones). With ``robust``, also
        ``add_se_model`` and ``var_se_model``, the model-based standard errors ``I^-1/2``.

    Raises
    ------
    ValueError
        If the genotypes have the wrong number of rows or hold NaN or inf.
    """
    return null.score_test(genotypes, robust=robust, exact=exact, GtDinv_g=GtDinv_g)


def mean_impute(genotypes) -> np.ndarray:
    """Centre each SNP over the individuals with a call and set missing calls (NaN) to 0.

    Parameters
    ----------
    genotypes : array_like, shape (n, B) or (n,)
        Allele counts, NaN where missing.

    Returns
    -------
    ndarray, shape (n, B)
        Float64; all zeros for a SNP with no calls.

    Examples
    --------
    >>> mean_impute([[0.0], [2.0], [np.nan]])[:, 0].tolist()
    [-1.0, 1.0, 0.0]
    """
    g = np.array(genotypes, dtype=float, ndmin=2)
    if g.shape[0] == 1 and np.ndim(genotypes) == 1:
        g = g.T
    called = ~np.isnan(g)
    count = called.sum(axis=0)
    mean = np.where(count > 0, np.nansum(g, axis=0) / np.maximum(count, 1), 0.0)
    return np.where(called, g - mean, 0.0)


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------
def _as_genotypes(genotypes, n: int) -> np.ndarray:
    g = np.asarray(genotypes, dtype=float)
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2 or g.shape[0] != n:
        raise ValueError(f"genotypes have shape {g.shape} but the null model has {n} individuals")
    with np.errstate(over="ignore", invalid="ignore"):
        col_sums = np.sum(g, axis=0)  # one pass without a temporary; the exact check only if needed
    if np.isfinite(col_sums).all():
        return g
    bad = ~np.isfinite(g)
    if bad.any():
        raise ValueError(
            f"genotypes hold {int(bad.sum())} NaN or infinite values in {int(bad.any(axis=0).sum())} SNPs; "
            "set missing calls to the mean (mean_impute)"
        )
    return g


def _projected_form(gFg, XFg, ZFg, gamma, h, XFZ) -> np.ndarray:
    """``sum_i (g_i - x_i'gamma)(g_i - z_i'h) f_i`` per SNP from ``g'Fg``, ``X'Fg``, ``Z'Fg``, ``X'FZ``.

    Shapes: gFg (B,), XFg (B, c), ZFg (B, v), gamma (c, B), h (v, B), XFZ (c, v).
    """
    return (gFg - np.einsum("bj,jb->b", XFg, gamma) - np.einsum("bj,jb->b", ZFg, h)
            + np.einsum("jb,jk,kb->b", gamma, XFZ, h))


def _block_flops(p: _PerIndividual, n_snps: int) -> float:
    """Flops of the block products, to choose the number of BLAS threads."""
    return 2.0 * p.X.shape[0] * n_snps * (p.columns(False)[0].shape[1] + 4)


def _cho(A: np.ndarray, name: str) -> tuple:
    try:
        return linalg.cho_factor(A, lower=True)
    except (linalg.LinAlgError, ValueError) as err:
        raise ValueError(f"{name} ({A.shape[0]} x {A.shape[1]}) is not positive definite") from err


def _block_products(p: _PerIndividual, g: np.ndarray, robust: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``g' L``, ``(g^2)' Q`` and ``(g^3)' K`` (see :meth:`_PerIndividual.columns`), a chunk of
    rows at a time."""
    lin, sq, cube = p.columns(robust)
    B = g.shape[1]
    out_lin = np.zeros((B, lin.shape[1]))
    out_sq = np.zeros((B, sq.shape[1]))
    out_cube = np.zeros((B, cube.shape[1]))
    n = g.shape[0]
    buf = np.empty((min(ROW_CHUNK, n), B))  # reused: a fresh temporary per chunk costs page faults
    for r0 in range(0, n, ROW_CHUNK):
        sl = slice(r0, min(r0 + ROW_CHUNK, n))
        gc = g[sl]
        g2 = np.multiply(gc, gc, out=buf[: gc.shape[0]])
        out_lin += gc.T @ lin[sl]
        out_sq += g2.T @ sq[sl]
        out_cube += (g2 * gc).T @ cube[sl]
    return out_lin, out_sq, out_cube


def _statistics(p: _PerIndividual, lin: np.ndarray, sq: np.ndarray, cube: np.ndarray, robust: bool,
                mean_correction, bb_offdiag) -> dict:
    """The statistics from the block products ``lin = g' L``, ``sq = (g^2)' Q`` and
    ``cube = (g^3)' K`` (see :meth:`_PerIndividual.columns`)."""
    c, v, k = p.X.shape[1], p.V.shape[1], p.omega.shape[1]
    gwX = lin[:, :c]
    Ua = lin[:, c]
    Ub = lin[:, c + 1]
    Ibt = lin[:, c + 2 : c + 2 + k]
    gPg = sq[:, 0].copy()
    xPg = gwX.copy()  # (B, c): X'Pg per SNP
    if mean_correction is not None:
        zkz, zkc = mean_correction
        gPg -= zkz
        xPg -= zkc
    gamma = linalg.cho_solve(p.cho_xpx, xPg.T)  # (c, B)
    Ia = gPg - np.einsum("bj,jb->b", xPg, gamma)
    Ibb = 0.5 * sq[:, 1]
    if bb_offdiag is not None:
        Ibb = Ibb + bb_offdiag
    h = linalg.cho_solve(p.cho_info_theta, Ibt.T)  # (k, B)
    Ib = Ibb - np.einsum("bj,jb->b", Ibt, h)
    # g in the span of the covariates: no information
    bad_a = ~(Ia > COLLINEAR_RTOL * np.abs(sq[:, 0]))
    bad_b = ~(Ib > COLLINEAR_RTOL * np.abs(Ibb))
    Ia = np.where(bad_a, np.nan, Ia)
    Ib = np.where(bad_b, np.nan, Ib)
    # The variance score with the additive effect at its one-step estimate a^ = U_a / I_a (a
    # nuisance of the variance test, as in the Wald test): residuals r - a^ g~, g~ = g - X gamma.
    q_extra = c * (c + 1) // 2
    L = lin.shape[1]
    h1X, h2XX, PXa = lin[:, L - 2 * c - q_extra : L - c - q_extra], lin[:, L - c - q_extra : L - c], lin[:, L - c :]
    Q = sq.shape[1]
    gh1, gh2X, gP = sq[:, Q - 2 - c], sq[:, Q - 1 - c : Q - 1], sq[:, Q - 1]
    g3h2 = cube[:, 0]
    iu = np.triu_indices(c)
    XXh2 = np.zeros((lin.shape[0], c, c))
    XXh2[:, iu[0], iu[1]] = h2XX
    XXh2[:, iu[1], iu[0]] = h2XX
    with np.errstate(invalid="ignore", divide="ignore"):
        a1 = Ua / Ia
        # P g~ taken as rho diag(P) g~, rho = g~'P g~ / sum_i g~_i^2 P_ii (1 for the HLM, where P is
        # diagonal; below 1 for a SNP that the random effects absorb)
        rho = 1.0
        if mean_correction is not None:
            diag = _projected_form(gP, PXa, PXa, gamma, gamma, p.X.T @ (p.Pdiag[:, None] * p.X))
            rho = np.where(diag > 0, Ia / diag, 1.0)
        gg_h1 = gh1 - np.einsum("bj,jb->b", h1X, gamma)
        gg2_h2 = g3h2 - 2.0 * np.einsum("bj,jb->b", gh2X, gamma) + np.einsum("jb,bjk,kb->b", gamma, XXh2, gamma)
        Ub_adj = np.where(bad_a, Ub, Ub - rho * a1 * gg_h1 + 0.5 * (rho * a1) ** 2 * gg2_h2)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if not robust:
            out["add"] = Ua / Ia
            out["add_se"] = 1.0 / np.sqrt(Ia)
            out["add_t"] = Ua / np.sqrt(Ia)
            out["var"] = Ub_adj / Ib
            out["var_se"] = 1.0 / np.sqrt(Ib)
            out["var_t"] = Ub_adj / np.sqrt(Ib)
            out["av_chi2"] = out["add_t"] ** 2 + Ub**2 / Ib
            return out
        # Efficient contributions u_i = ((g_i - x_i'gamma) e_i, (g_i - v_i'h_beta) t_i). With
        # F = diag(f), sum_i (g_i - x_i'gamma)(g_i - z_i'h) f_i = g'Fg - gamma'X'Fg - h'Z'Fg + gamma'X'FZ h.
        hb = h[:v]  # (v, B)
        o = c + 2 + k
        e2X, t2V, etX, etV, PX = np.split(lin[:, o : o + 3 * c + 2 * v], np.cumsum([c, v, c, v]), axis=1)
        ge2g, gt2g, getg, gPdg = sq[:, 2], sq[:, 3], sq[:, 4], sq[:, 5]
        f = p.robust_weights()
        Vaa = _projected_form(ge2g, e2X, e2X, gamma, gamma, p.X.T @ (f["e2"][:, None] * p.X))
        Vbb = _projected_form(gt2g, t2V, t2V, hb, hb, p.V.T @ (f["t2"][:, None] * p.V))
        Vab = _projected_form(getg, etX, etV, gamma, hb, p.X.T @ (f["et"][:, None] * p.V))
        # Full-to-diagonal ratio for the mean: E sum_i u_ai^2 = sum_i g~_i^2 P_ii (any residual
        # distribution), whereas Var(U_a) = I_a = g~'P g~; the ratio is 1 for the HLM.
        diag_a = _projected_form(gPdg, PX, PX, gamma, gamma, p.X.T @ (f["P"][:, None] * p.X))
        ratio_a = Ia / np.where(diag_a > 0, diag_a, np.nan)
        Vaa = Vaa * ratio_a
        Vab = Vab * np.sqrt(ratio_a)
        Vaa = np.where(Vaa > 0, Vaa, np.nan)
        Vbb = np.where(Vbb > 0, Vbb, np.nan)
        out["add"] = Ua / Ia
        out["add_se"] = np.sqrt(Vaa) / Ia
        out["add_se_model"] = 1.0 / np.sqrt(Ia)
        out["var_se_model"] = 1.0 / np.sqrt(Ib)
        out["add_t"] = Ua / np.sqrt(Vaa)
        out["var"] = Ub_adj / Ib
        out["var_se"] = np.sqrt(Vbb) / Ib
        out["var_t"] = Ub_adj / np.sqrt(Vbb)
        det = Vaa * Vbb - Vab**2
        chi2 = (Vbb * Ua**2 - 2.0 * Vab * Ua * Ub + Vaa * Ub**2) / det
        out["av_chi2"] = np.where((det > 0) & ~bad_a & ~bad_b, chi2, np.nan)
        out["add_t"] = np.where(bad_a, np.nan, out["add_t"])
        out["var_t"] = np.where(bad_b, np.nan, out["var_t"])
    return out
