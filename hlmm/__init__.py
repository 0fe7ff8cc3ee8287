"""hlmm: heteroskedastic linear models and heteroskedastic linear mixed models for genetic data.

Modules
-------
hetlm
    Heteroskedastic linear model: fixed effects on the mean and on the log-variance.
hetlmm
    Heteroskedastic linear mixed model: adds random effects for a set of variables, with a
    likelihood whose cost is O(n l^2) for n individuals and l random-effect variables.
"""

__version__ = "2.0.0.dev0"

# As in 1.2.0a1, ``import hlmm`` makes ``hlmm.hetlm`` and ``hlmm.hetlmm`` available.
from hlmm import hetlm, hetlmm  # noqa: E402

__all__ = ["hetlm", "hetlmm", "__version__"]
