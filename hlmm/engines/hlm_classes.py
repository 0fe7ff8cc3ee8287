"""HLM in the default mode from genotype-class statistics, every phenotype in one pass.

In the default mode a variant's model is ``X = V = [1, g]`` on the adjusted phenotype, whose
likelihood depends on the data only through per-class counts and sums of y and y^2 (three
classes for hard calls, the distinct dosages for dosages); one compiled pass gives them for every
phenotype, and every variant of a block is fitted at once (:mod:`hlmm.engines._hlm_fits` for
hard calls, :func:`hlmm.engines._kernels_hlm.fit_dosage_classes` per variant for dosages). With
``robust``, the sandwich standard errors need per-class sums of y^3 and y^4 too
(:func:`hlmm.robust.hlm_sandwich_classes`).

The two Newton fits (numpy over padded classes, compiled over each variant's distinct dosages:
the C library's, or numba's without it) are kept deliberately: the numpy one fits a whole block of
hard calls in a few vectorised steps, the compiled one handles any number of classes per variant;
``tests/test_engines.py`` holds them to the same estimates.
"""

from __future__ import annotations

import numpy as np

from hlmm import _optimize
from hlmm._linalg import LOG_2PI
from hlmm.engines import _hlm_fits, _kernels_hlm
from hlmm.engines.base import MODEL_SE_KEYS, STATUS, Scanner, summarised
from hlmm.engines.classes import ClassMoments, extra_centred_sums
from hlmm.io import GenotypeBlock
from hlmm.robust import hlm_sandwich_classes

__all__ = ["HLMClassScanner"]


class HLMClassScanner(Scanner):
    """HLM in the default mode, from genotype-class statistics, all phenotypes in one pass."""

    block_size = 256

    def scan(self, block: GenotypeBlock) -> list:
        robust = self.spec.robust
        moms = self.classes.moments(block, [(m.subset, m.y) for m in self.models], 4 if robust else 2,
                                    [None if m.adaptive is None else m.adaptive.h for m in self.models])
        outs = [summarised(block.multiallelic, mom, m.n, self.spec) for mom, m in zip(moms, self.models)]
        idx = [np.flatnonzero(o["status"] == STATUS["ok"]) for o in outs]
        if not any(i.size for i in idx):
            return outs
        if moms[0].ragged:
            self._fit_ragged(moms, outs, idx, robust)
            return self._adaptive(block, outs, moms)
        cnt = np.concatenate([mom.counts[i] for mom, i in zip(moms, idx)])
        s1 = np.concatenate([mom.sums[i, :, 0] for mom, i in zip(moms, idx)])
        s2 = np.concatenate([mom.sums[i, :, 1] for mom, i in zip(moms, idx)])
        values = None if moms[0].values is None else np.concatenate([mom.values[i] for mom, i in zip(moms, idx)])
        fit = _hlm_fits.fit_classes(cnt, s1, s2, values)
        if robust:
            fit["add_se_model"], fit["var_se_model"] = fit["add_se"], fit["var_se"]
            fit["add_se"], fit["var_se"] = self._sandwich_se(moms, idx, fit)
        k = 0
        for o, i in zip(outs, idx):
            sl = slice(k, k + i.size)
            for key in ("likelihood", "add", "add_se", "var", "var_se") + (MODEL_SE_KEYS if robust else ()):
                o[key][i] = fit[key][sl]
            bad = i[~fit["success"][sl]]
            o["status"][bad] = STATUS["failed"]
            o["problems"] += [(int(j), "optimisation did not converge") for j in bad]
            k += i.size
        return self._adaptive(block, outs, moms)

    def _adaptive(self, block: GenotypeBlock, outs: list, moms: list) -> list:
        """The adaptive variance columns from the class sums of ``h`` of the same pass."""
        return self.adaptive(block, outs, extra_centred_sums(moms))

    @classmethod
    def _fit_ragged(cls, moms: list, outs: list, idx: list, robust: bool) -> None:
        """Dosages: every variant's fit over its distinct dosages, the phenotypes of the same counts
        (the same individuals) in one compiled call."""
        groups: dict = {}
        for t, mom in enumerate(moms):
            groups.setdefault(id(mom.counts_root), []).append(t)
        for ts in groups.values():
            first = moms[ts[0]]
            fits = _kernels_hlm.fit_dosage_classes(
                first.offsets, first.values, first.counts, [moms[t].sums[:, 0] for t in ts],
                [moms[t].sums[:, 1] for t in ts], 200, _optimize.DECREMENT_RTOL, _optimize.STALL_RTOL,
                _optimize.LOCAL_RTOL, _optimize.F_NOISE_RTOL)
            for t, fit in zip(ts, fits):
                cls._fitted_ragged(moms[t], outs[t], idx[t], robust, fit)

    @staticmethod
    def _fitted_ragged(mom: ClassMoments, o: dict, ok: np.ndarray, robust: bool, fit: np.ndarray) -> None:
        """Dosages: one phenotype's columns from its fits over each variant's distinct dosages
        (``fit``, :func:`hlmm.engines._kernels_hlm.fit_dosage_classes`)."""
        good = ok[fit[ok, 7] == 1.0]
        bad = ok[fit[ok, 7] != 1.0]
        n = o["n"]  # the calls per variant, as summarised() counted them
        o["likelihood"][good] = -0.5 * (fit[good, 0] + n[good] * LOG_2PI)
        o["add"][good], o["var"][good] = fit[good, 2], fit[good, 4]
        o["add_se"][good], o["var_se"][good] = np.sqrt(fit[good, 5]), np.sqrt(fit[good, 6])
        if robust:
            o["add_se_model"][good], o["var_se_model"][good] = o["add_se"][good], o["var_se"][good]
            for j in good:
                seg = slice(mom.offsets[j], mom.offsets[j + 1])
                c = mom.counts[seg]
                g = mom.values[seg] - (c * mom.values[seg]).sum() / c.sum()
                ps = np.concatenate([c[:, None], mom.sums[seg]], axis=1)[None]
                cov = hlm_sandwich_classes(g[None], ps, fit[j, 1:3][None], fit[j, 3:5][None])[0]
                o["add_se"][j], o["var_se"][j] = np.sqrt(cov[1, 1]), np.sqrt(cov[3, 3])
        o["status"][bad] = STATUS["failed"]
        o["problems"] += [(int(j), "optimisation did not converge") for j in bad]

    @staticmethod
    def _sandwich_se(moms: list, idx: list, fit: dict) -> tuple[np.ndarray, np.ndarray]:
        ps = np.concatenate([np.concatenate([m.counts[i][:, :, None], m.sums[i]], axis=2) for m, i in zip(moms, idx)])
        raw = np.concatenate([m.class_values()[i] if m.values is not None else np.broadcast_to(np.arange(3.0),
                              (i.size, 3)) for m, i in zip(moms, idx)])
        n = ps[:, :, 0].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            g = raw - ((ps[:, :, 0] * raw).sum(1) / n)[:, None]
        cov = hlm_sandwich_classes(np.where(ps[:, :, 0] > 0, g, 0.0), ps, np.nan_to_num(fit["alpha"]),
                                   np.nan_to_num(fit["beta"]))
        with np.errstate(invalid="ignore"):
            return np.sqrt(cov[:, 1, 1]), np.sqrt(cov[:, 3, 3])
