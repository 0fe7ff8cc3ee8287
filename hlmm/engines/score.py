"""Score tests of every variant under the null model (:mod:`hlmm.score`), with optional exact refits.

Everything the statistics need of a variant's genotypes is a sum, over its genotype classes, of
per-individual weights of the null model: one compiled pass gives them for every phenotype
(:class:`hlmm.engines.classes.ClassStatistics`). Missing calls are mean-imputed. A mixed model
also needs ``Z = G' D^-1 g``: in the default mode, with random effects and test variants from
genotype files (small integers), it is computed exactly by bit-plane popcounts
(:mod:`hlmm.engines._kernels_score`); otherwise by a floating-point product.

With ``spec.refit``, every variant with any of its -log10 p-values (``add_pval``,
``var_pval_adapt``, ``var_pval_robust``, ``av_pval_robust``) at least ``refit`` is fitted again by the Wald scanner of
the same model, whose row replaces the score row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from hlmm import score
from hlmm._linalg import blas_threads_for
from hlmm.columns import STATS
from hlmm.engines import _hlmm_fits, _kernels_classes, _kernels_score
from hlmm.engines._gxe_score import InteractionNull
from hlmm.engines.base import GXE_KEYS, MODEL_SE_KEYS, STATUS, Scanner, each_part, genotype_columns, summarised
from hlmm.engines.classes import ClassMoments, column_basis, padded_width
from hlmm.io import GenotypeBlock
from hlmm.pvalues import neglog10_pval, wald_chi2
from hlmm.robust import robust_statistics

__all__ = ["ScoreScanner"]


@dataclass(frozen=True)
class Calls:
    """Individuals with a call and copies of A1 (summed dosages) among them, per variant."""

    n_called: np.ndarray
    a1_copies: np.ndarray


@dataclass(frozen=True)
class _Sums:
    """All that the statistics of an HLM's score tests need of a block's genotypes (without refits):
    the variants' multiallelic flags, and per model their :class:`Calls` and power products."""

    multiallelic: np.ndarray
    calls: list
    powers: list

    @staticmethod
    def join(parts: list) -> _Sums:
        """The sums of consecutive parts of a block, as one."""
        if len(parts) == 1:
            return parts[0]
        calls = [Calls(np.concatenate([c.n_called for c in cs]), np.concatenate([c.a1_copies for c in cs]))
                 for cs in zip(*(p.calls for p in parts))]
        return _Sums(np.concatenate([p.multiallelic for p in parts]), calls,
                     [np.concatenate(ps) for ps in zip(*(p.powers for p in parts))])


#: With random effects and dosages, the centred genotypes of up to this many values (256 MB as
#: float64) are gathered from a block's parts before ``G'g`` is formed for all of them at once: a
#: product reads all of G (n x l), so products of few variants at a time wait on memory. At
#: n = 500,000 and l = 500 (G: 2 GB), ``G.T @ g`` on one thread took 55 ms per variant 8 at a time
#: (a part of 2^22 dosages), 21 ms 41 at a time and 12 ms 128 at a time; gram_products on two
#: threads 27, 11 and 6.1 ms (``python benchmarks/bench_hlmm_score.py --products``).
PRODUCT_VALUES = 2**25


class _Products:
    """``Z = G' D^-1 g`` of a block's variants for every model with random effects, gathered part by
    part (:meth:`add`) and read per model (:meth:`result`).

    Models with the same random-effect design (the same individuals) share one product per variant:
    in the default mode ``D = exp(beta_0) I``, so ``G' D^-1 g`` is a phenotype's scalar times
    ``G'g``. Genotypes that are small integers, with G in integer form, give ``G'g`` exactly by
    bit-plane popcounts (:mod:`hlmm.engines._kernels_score`), part by part; others (dosages) are
    centred, mean-imputed and gathered in a buffer of at most :data:`PRODUCT_VALUES` values, and
    ``G'g`` is formed for the whole buffer (:func:`gram_products`).
    """

    def __init__(self, scanner: ScoreScanner, n_variants: int) -> None:
        self.s = scanner
        self.offset = 0  # the block's variants before the next part
        self.groups = []
        for members in scanner.design_groups():
            m = scanner.models[members[0]]
            cap = max(1, min(n_variants, PRODUCT_VALUES // max(1, m.n)))
            self.groups.append(dict(members=members, cap=cap, buf=None, k=0, pending=[],
                                    index=[], columns={p: [] for p in members}))

    def add(self, block: GenotypeBlock, sums: _Sums) -> None:
        """What the products need of the next part of the block, with its sums."""
        for grp in self.groups:
            members = grp["members"]
            union = np.unique(np.concatenate([self.s._usable(p, sums) for p in members]))
            if union.size:
                m, form = self.s.models[members[0]], self.s.forms[members[0]]
                calls = sums.calls[members[0]]
                gbar = calls.a1_copies[union] / calls.n_called[union]  # (the usable have calls)
                if form is not None and block.integral_rows()[union].all():
                    self._flush(grp)  # the pending ones first: the columns stay in the variants' order
                    Gg = _integer_products(form, block, union, m.subset, gbar)
                    grp["index"].append(self.offset + union)
                    for p in members:  # default mode: D = exp(beta_0) I
                        grp["columns"][p].append(float(np.exp(-self.s.models[p].null.beta[0])) * Gg)
                else:
                    a = 0
                    while a < union.size:
                        if grp["k"] == grp["cap"]:
                            self._flush(grp)
                        b = min(union.size - a, grp["cap"] - grp["k"])
                        if grp["buf"] is None:  # columns of n contiguous values: whole parts copied at once
                            grp["buf"] = np.empty((m.n, grp["cap"]), order="F")
                        g = grp["buf"][:, grp["k"] : grp["k"] + b]
                        g[...] = genotype_columns(block, union[a : a + b], m.subset)
                        # centred over the calls by the sums' mean (the same whatever the part holds),
                        # missing calls imputed: 0
                        g -= gbar[a : a + b]
                        g[np.isnan(g)] = 0.0
                        grp["pending"].append(self.offset + union[a : a + b])
                        grp["k"] += b
                        a += b
        self.offset += len(sums.multiallelic)

    def _flush(self, grp: dict) -> None:
        """The products of the genotypes gathered in ``grp``'s buffer."""
        if not grp["k"]:
            return
        g = grp["buf"][:, : grp["k"]]
        members, nulls = grp["members"], self.s.nulls
        shared = None
        for p in members:
            w = nulls[p].constant_weight
            if w is None:  # D^-1 not a multiple of I: the model's own product
                grp["columns"][p].append(nulls[p].gtdinv(g))
                continue
            if shared is None:
                shared = gram_products(nulls[p].G, g)  # the group's one G (design_groups)
            grp["columns"][p].append(w * shared)
        grp["index"] += grp["pending"]
        grp["pending"], grp["k"] = [], 0

    def result(self, p: int, ok: np.ndarray) -> np.ndarray:
        """Model ``p``'s ``Z`` (l, len(ok)) of the block's variants ``ok`` (all gathered)."""
        grp = next(g for g in self.groups if p in g["members"])
        self._flush(grp)
        index = np.concatenate(grp["index"]) if grp["index"] else np.zeros(0, np.int64)
        Z = np.concatenate(grp["columns"][p], axis=1) if grp["columns"][p] else np.zeros((self.s.nulls[p].l, 0))
        order = np.argsort(index, kind="stable")
        at = np.searchsorted(index, ok, sorter=order)
        if ok.size and (at.max() >= index.size or not np.array_equal(index[order[at]], ok)):
            raise RuntimeError("internal: G'D^-1 g was not gathered for every variant tested")
        return Z[:, order[at]]


def gram_products(G: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``G'g`` (l, b) for ``G`` (n, l) and ``g`` (n, b), as two products of the halves of G's columns
    on two threads when numba has them. The halves are the same on any number of threads (each
    product is single-threaded BLAS), so the numbers do not depend on it."""
    l = G.shape[1]  # noqa: E741
    h = l // 2
    out = np.empty((l, g.shape[1]))

    def half(a: int, b: int) -> None:
        np.matmul(G[:, a:b].T, g, out=out[a:b])

    with blas_threads_for(0):
        if h and _kernels_classes.numba.get_num_threads() >= 2:
            other = _kernels_classes.thread_pool(1).submit(half, h, l)
            half(0, h)
            other.result()
        else:
            half(0, h)
            half(h, l)
    return out


def _integer_products(form, block: GenotypeBlock, idx: np.ndarray, subset: np.ndarray, gbar: np.ndarray) -> np.ndarray:
    """``G'g`` (l, b) of the centred, mean-imputed hard calls of variants ``idx``, exactly from the
    integer form of G (bit-plane popcounts)."""
    codes = block.hard_codes(idx)
    codes = np.ascontiguousarray(codes[:, subset]) if len(subset) != codes.shape[1] else codes
    A, B = form.planes()
    U, V = _kernels_score.bitplanes(codes)
    RC = _kernels_score.popcount_products(A, B, U, V).astype(np.float64)  # R' codes (missing as 0), exact
    Rm = _kernels_score.missing_row_sums(form.R, codes).astype(np.float64)  # R' 1_missing
    E = form.E
    Eg = _kernels_score.sparse_centred_products(E.indptr, E.indices, E.data, form.R.shape[1], codes, gbar)
    return (RC - gbar[None, :] * (form.column_sums()[:, None] - Rm) + Eg) / form.scale[:, None]


class ScoreScanner(Scanner):
    """Score tests of every variant under the null model, with optional exact refits (module docstring)."""

    block_size = 512

    def __init__(self, spec, models: list, has_dosages: bool = False) -> None:
        super().__init__(spec, models)
        # G×E terms (HLM only): their own linear and square columns, after the others
        self.gxe = [InteractionNull(m.y, m.X, m.V, m.null.alpha, m.null.beta, m.exposures, spec.robust)
                    for m in models] if spec.interactions else None
        # per model: the numbers of columns of L, Q, K (self.widths) and the class sums' basis of
        # [1 | L | Q | K (| G×E L | G×E Q)] and, last, the adaptive variance score h (hlmm.adaptive):
        # in the default mode most columns are constant or multiples of one another (15 columns, 4
        # independent, for the mixed model). The columns themselves are not kept (13 of n per
        # phenotype: 104 MB for 10 phenotypes at n = 100,000).
        self.nulls, self.forms, self.widths, self.bases, self.powers = [], [], [], [], []
        shared = {}  # phenotypes with the same individuals share G, and its integer form
        for p, m in enumerate(models):
            if m.null is None:
                raise ValueError(f"phenotype '{m.name}': the score test needs the null model's fit")
            form = None
            if not spec.random_effects:
                null = score.HLMNull(m.y, m.X, m.V, m.null.alpha, m.null.beta)
            else:
                null = m.score_null if m.score_null is not None else \
                    score.HLMMNull(m.y, m.X, m.V, m.G, m.null.alpha, m.null.beta, m.null.h2)
                if spec.default_mode and m.G_center is not None:
                    if id(m.G) not in shared:
                        shared[id(m.G)] = _hlmm_fits.integer_design(m.G, m.G_center, m.G_scale)
                    form = shared[id(m.G)]
            self.nulls.append(null)
            self.forms.append(form)
            cols = null.columns(spec.robust, keep=False)
            more = self.gxe[p].columns() if self.gxe else ()
            self.widths.append(tuple(c.shape[1] for c in cols))
            B, coef = column_basis(np.column_stack([np.ones(m.n), *cols, *more]
                                                   + ([] if m.adaptive is None else [m.adaptive.h])))
            del cols, more
            self.bases.append((B, coef))
            # the highest power of g each basis column is read at (dosages: the other sums are skipped)
            self.powers.append(_column_powers(coef, B, self._used_columns(p, m)))
        self.refit = None
        if spec.refit is not None:
            from hlmm.engines import make_scanner

            self.refit = make_scanner(spec.wald(), models, has_dosages)

    def scan(self, block: GenotypeBlock) -> list:
        sums = self._sums(block)
        products = None
        if self.spec.random_effects:
            products = _Products(self, block.n_variants)
            products.add(block, sums)
        outs = self._statistics(sums, products)
        if self.refit is not None:
            self._refit(block, outs)
        return outs

    def scan_parts(self, read, parts: list) -> list:
        """A block read in parts (:meth:`Scanner.scan_parts`): the statistics need only each part's
        sums, so they are computed once for the whole block (for 10 phenotypes of dosages, read 41
        variants at a time, per part they had cost a tenth of the scan). With random effects,
        ``G' D^-1 g`` of the parts' variants is gathered too (:class:`_Products`)."""
        if self.refit is not None:
            return super().scan_parts(read, parts)
        if not self.spec.random_effects:
            return self._statistics(_Sums.join(each_part(read, parts, self._sums)))
        products = _Products(self, sum(len(part) for part in parts))

        def part_sums(block: GenotypeBlock) -> _Sums:
            sums = self._sums(block)
            products.add(block, sums)
            return sums

        return self._statistics(_Sums.join(each_part(read, parts, part_sums)), products)

    def _sums(self, block: GenotypeBlock) -> _Sums:
        return _Sums(block.multiallelic, *self._power_products(block))

    def _statistics(self, sums: _Sums, products: _Products | None = None) -> list:
        """Every model's results from the block's sums (and, for random effects, its products)."""
        outs = []
        for p, (m, calls, powers) in enumerate(zip(self.models, sums.calls, sums.powers)):
            o = summarised(sums.multiallelic, calls, m.n, self.spec)
            ok = np.flatnonzero(o["status"] == STATUS["ok"])
            if ok.size:
                self._score(p, powers[ok], ok, o, None if products is None else products.result(p, ok))
            outs.append(o)
        # P[:, m, 0] = sum g^(m+1) (the column of ones), P[:, 0, -1] = sum g h
        return self.adaptive(None, outs, [None if m.adaptive is None else (P[:, 0, -1], P[:, 1, 0], P[:, 2, 0])
                                          for m, P in zip(self.models, sums.powers)])

    def design_groups(self) -> list:
        """Lists of the models (indices) whose null models have the same random-effect design G (one
        array: the same individuals), which share ``G'g`` (:class:`_Products`)."""
        groups = {}
        for p, null in enumerate(self.nulls):
            groups.setdefault(id(null.G), []).append(p)
        return list(groups.values())

    def _usable(self, p: int, sums: _Sums) -> np.ndarray:
        """The variants of ``sums`` that model ``p`` tests (status ok), as :meth:`_statistics` finds them."""
        o = summarised(sums.multiallelic, sums.calls[p], self.models[p].n, self.spec)
        return np.flatnonzero(o["status"] == STATUS["ok"])

    def _power_products(self, block: GenotypeBlock) -> tuple[list, list]:
        """Per model: the calls (:class:`Calls`), and ``sum_i g_i^m C[i, :]`` for m = 1, 2, 3 of every
        variant, shape (b, 3, q), over the columns ``C = [1 | L | Q | K (| G×E L | G×E Q)]`` (``g``
        centred over the calls, missing calls mean-imputed). Hard calls: from genotype-class sums
        (one compiled pass for every model); dosages: from a compiled pass per model over the
        dosages themselves (:func:`hlmm.engines._kernels_score.centred_power_sums`), as a
        variant's distinct dosages would be thousands of classes."""
        calls, powers = [], []
        if block.dosages is not None:
            # models of the same individuals share one pass, over their bases side by side
            for subset, members in self._dosage_groups():
                basis, column_powers, where = self._joint_basis(members)
                n_called, a1, S = _kernels_score.centred_power_sums(block.dosages, subset, basis, column_powers)
                for p, idx in zip(members, where):
                    calls.append((p, Calls(n_called, a1)))
                    powers.append((p, S[..., idx] @ self.bases[p][1]))
            order = np.argsort([p for p, _ in calls])
            return [calls[k][1] for k in order], [powers[k][1] for k in order]
        parts = [(m.subset, basis) for m, (basis, _) in zip(self.models, self.bases)]
        for (_, coef), cs in zip(self.bases, self.classes.sums(block, parts)):
            S = cs.sums @ coef
            mom = ClassMoments(S[..., 0], None, cs.values, (cs.missing @ coef)[:, 0], cs.offsets)
            with np.errstate(invalid="ignore", divide="ignore"):
                gbar = mom.a1_copies / mom.n_called
            gk = np.where(mom.counts > 0, mom.class_values() - cs.per_class(gbar), 0.0)
            calls.append(Calls(mom.n_called, mom.a1_copies))
            powers.append(np.stack([cs.reduce((gk**k)[..., None] * S) for k in (1, 2, 3)], axis=1))
        return calls, powers

    def _used_columns(self, p: int, model) -> list:
        """The columns of ``C = [1 | L | Q | K (| G×E L | G×E Q) (| h)]`` read at each power of g
        (1, 2, 3): by :meth:`_score`, :meth:`_score_gxe` and the adaptive test (``sum g h``,
        ``sum g^2``, ``sum g^3``)."""
        kL, kQ, kK = self.widths[p]
        start = 1 + kL + kQ + kK
        eL, eQ = (c.shape[1] for c in self.gxe[p].columns()) if self.gxe else (0, 0)
        used = [list(range(1, 1 + kL)) + list(range(start, start + eL)),
                list(range(1 + kL, 1 + kL + kQ)) + list(range(start + eL, start + eL + eQ)),
                list(range(1 + kL + kQ, start))]
        if model.adaptive is not None:
            last = start + eL + eQ
            used[0].append(last)
            used[1].append(0)
            used[2].append(0)
        return used

    def _dosage_groups(self) -> list:
        """``(rows, [model indices])`` of the models, grouped by their individuals."""
        if not hasattr(self, "_groups"):
            groups = []
            for p, m in enumerate(self.models):
                rows = np.asarray(m.subset, np.int64)
                for g_rows, members in groups:
                    if np.array_equal(g_rows, rows):
                        members.append(p)
                        break
                else:
                    groups.append((rows, [p]))
            self._groups = groups
        return self._groups

    def _joint_basis(self, members: list) -> tuple[np.ndarray, np.ndarray, list]:
        """The bases of models ``members`` side by side, each column once (the models' columns of
        ones, for one), ordered by the highest power of g any model reads it at (decreasing); those
        powers; and where each model's columns are in it (built once)."""
        key = tuple(members)
        cache = self.__dict__.setdefault("_joint_bases", {})
        if key not in cache:
            columns, powers, where, seen = [], [], [], {}
            for p in members:
                idx = []
                for col, power in zip(self.bases[p][0].T, self.powers[p]):
                    # found by a digest of its bytes (comparing every pair of columns had taken 2.2 s
                    # for 10 phenotypes at n = 100,000), then compared
                    digest = hashlib.blake2b(np.ascontiguousarray(col).data, digest_size=16).digest()
                    k = next((k for k in seen.get(digest, ()) if np.array_equal(columns[k], col)), None)
                    if k is None:
                        k = len(columns)
                        seen.setdefault(digest, []).append(k)
                        columns.append(col)
                        powers.append(power)
                    powers[k] = max(powers[k], power)
                    idx.append(k)
                where.append(np.array(idx, dtype=np.intp))
            # columns by decreasing power (the compiled sums' fast patterns), then as found
            order = np.argsort(-np.array(powers), kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            joint = np.column_stack([columns[k] for k in order])
            powers = np.array([powers[k] for k in order], dtype=np.int64)
            width = padded_width(joint.shape[1])
            # zero columns up to a multiple of 4: rows of whole 32-byte vectors for the compiled sums
            # (3 columns padded to 4: 0.30 against 0.39 ms per variant at n = 100,000)
            cache[key] = (np.ascontiguousarray(np.pad(joint, ((0, 0), (0, width - joint.shape[1])))),
                          np.pad(powers, (0, width - len(powers)), constant_values=1), [rank[w] for w in where])
        return cache[key]

    def _score(self, p: int, P: np.ndarray, ok: np.ndarray, o: dict, Z: np.ndarray | None) -> None:
        """The statistics of variants ``ok`` from their power products ``P`` (b_ok, 3, q) and, with
        random effects, their ``Z = G' D^-1 g`` (l, b_ok)."""
        kL, kQ, kK = self.widths[p]
        lin = P[:, 0, 1 : 1 + kL]
        sq = P[:, 1, 1 + kL : 1 + kL + kQ]
        cube = P[:, 2, 1 + kL + kQ : 1 + kL + kQ + kK]
        null = self.nulls[p]
        robust = self.spec.robust
        if not self.spec.random_effects:
            st = null.from_products(lin, sq, cube, robust=robust)
        else:
            st = null.from_products(lin, sq, cube, Z, robust=robust)
        for key in ("add", "add_se", "var", "var_se", "av_chi2") + (MODEL_SE_KEYS if robust else ()):
            o[key][ok] = st[key]
        if self.gxe is not None:
            self._score_gxe(p, P, ok, o, 1 + kL + kQ + kK)
        bad = ok[~(np.isfinite(st["add_se"]) & np.isfinite(st["var_se"]))]
        o["status"][bad] = STATUS["failed"]
        o["problems"] += [(int(j), "no information about the effect (collinear with the covariates)") for j in bad]

    def _score_gxe(self, p: int, P: np.ndarray, ok: np.ndarray, o: dict, start: int) -> None:
        """The G×E terms' statistics (:mod:`hlmm.engines._gxe_score`): ``add`` becomes the main effect
        at E = 0 fitted with them, its standard error from the same (K + 1)-dimensional score."""
        null = self.gxe[p]
        kL, kQ = (c.shape[1] for c in null.columns())
        theta, cov, cov_model = null.from_products(P[:, 0, start : start + kL], P[:, 1, start + kL : start + kL + kQ])
        o["add"][ok], o["gxe"][ok], o["gxe_cov"][ok] = theta[:, 0], theta[:, 1:], cov
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.einsum("bjj->bj", cov))
        o["add_se"][ok], o["gxe_se"][ok] = se[:, 0], se[:, 1:]
        if self.spec.robust:
            with np.errstate(invalid="ignore"):
                o["add_se_model"][ok] = np.sqrt(cov_model[:, 0, 0])
        o["av_chi2"][ok] = np.nan

    def _refit(self, block: GenotypeBlock, outs: list) -> None:
        threshold = self.spec.refit
        chosen = []
        for o, m in zip(outs, self.models):
            with np.errstate(invalid="ignore", divide="ignore"):
                stats = [(o["add"] / o["add_se"]) ** 2, (o["var"] / o["var_se"]) ** 2]
                joint = o["av_chi2"]
                if m.moments is not None:  # the p-values that are read: robust for the variance
                    rob = robust_statistics(o["add"], o.get("add_se_model", o["add_se"]), o["var"],
                                            o.get("var_se_model", o["var_se"]), m.moments)
                    stats[1], joint = rob["var_chi2_robust"], rob["av_chi2_robust"]
                if m.adaptive is not None:  # and the adaptive variance test
                    stats[1] = np.fmax(stats[1], (o["var_adapt"] / o["var_se_adapt"]) ** 2)
                top = np.fmax(np.fmax(neglog10_pval(stats[0], 1), neglog10_pval(stats[1], 1)),
                              neglog10_pval(joint, 2))
                if self.gxe is not None:  # and the G×E tests
                    K = o["gxe"].shape[1]
                    both = np.column_stack([o["add"], o["gxe"]])
                    top = np.fmax(np.fmax(top, neglog10_pval(wald_chi2(o["gxe"], o["gxe_cov"][:, 1:, 1:]), K)),
                                  neglog10_pval(wald_chi2(both, o["gxe_cov"]), K + 1))
            chosen.append((o["status"] == STATUS["ok"]) & (top >= threshold))
        union = np.flatnonzero(np.any(chosen, axis=0))
        if not union.size:
            return
        exact = self.refit.scan(block.take(union))
        for o, sel, e in zip(outs, chosen, exact):
            for k, j in enumerate(union):
                if not sel[j]:
                    continue
                for key in STATS + tuple(key for key in MODEL_SE_KEYS + GXE_KEYS if key in o) + ("status",):
                    o[key][j] = e[key][k]
                o["av_chi2"][j] = np.nan
            o["problems"] += [(int(union[k]), why) for k, why in e["problems"] if sel[union[k]]]


#: A basis column's coefficient in a column of ``C`` counts only if its part of that column is more
#: than this fraction of the column's largest entry: below it, it is the rounding of the least-squares
#: fit of :func:`~hlmm.engines.classes.column_basis` (about 1e-17 in a fit of exact multiples).
COEFFICIENT_TOL = 1e-14


def _column_powers(coef: np.ndarray, basis: np.ndarray, used: list) -> np.ndarray:
    """The highest power of g (1 to 3) at which each basis column enters a column of ``C`` that is
    read at that power (``used[m - 1]``: the columns read at power m); 1 if none.

    The power sums of a dosage then skip the sums ``sum g^m B[:, k]`` no statistic needs: a
    coefficient below :data:`COEFFICIENT_TOL` of its column is taken as zero (its term would change
    the column's sum by less than that fraction of its scale)."""
    big = np.abs(basis).max(axis=0)[:, None] * np.abs(coef)  # (r, q): each basis column's part
    scale = np.abs(basis @ coef).max(axis=0)  # (q,)
    counts = big > COEFFICIENT_TOL * np.maximum(scale, np.finfo(float).tiny)
    powers = np.ones(coef.shape[0], dtype=np.int64)
    for m, cols in enumerate(used, start=1):
        if cols:
            powers[counts[:, cols].any(axis=1)] = m
    return powers
