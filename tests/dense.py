"""Brute-force dense references: n x n covariance matrices, used only by the tests."""

import numpy as np
from scipy.stats import multivariate_normal


def dense_cov(V, beta, G=None, h2=0.0):
    S = np.diag(np.exp(V @ beta))
    if G is not None:
        S = S + h2 * G @ G.T
    return S


def dense_loglik(y, X, V, alpha, beta, G=None, h2=0.0):
    """log N(y; X alpha, h2 G G' + diag(exp(V beta))) by scipy on the dense covariance."""
    return multivariate_normal(X @ alpha, dense_cov(V, beta, G, h2)).logpdf(y)


def dense_gls(y, X, V, beta, G=None, h2=0.0):
    """Generalised least squares with an explicitly inverted dense covariance."""
    Si = np.linalg.inv(dense_cov(V, beta, G, h2))
    return np.linalg.solve(X.T @ Si @ X, X.T @ Si @ y)
