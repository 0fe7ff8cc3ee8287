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

import os as _os

# numba's parallel kernels run on OpenMP threads (its "omp" layer, without TBB), which by default
# spin for a while after each parallel region. The threads that decode .pgen blocks and add the
# compiled sums (hlmm.io.pgen, hlmm.engines._kernels_classes.run_ranges) then share the cores
# with a spinning thread: at n = 100,000 on 2 cores, decoding 41 dosage variants on two threads
# took 0.135-0.146 ms per variant, more than on one (0.115), and 0.075-0.095 with passive waits;
# the score screen on a .pgen of dosages took 0.30 ms per variant against 0.205 (docs/performance.rst).
# Set before numba loads the OpenMP library (it reads it then); a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# As in 1.2.0a1, ``import hlmm`` makes ``hlmm.hetlm`` and ``hlmm.hetlmm`` available.
from hlmm import hetlm, hetlmm  # noqa: E402

__all__ = ["hetlm", "hetlmm", "__version__"]
