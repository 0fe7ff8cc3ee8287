"""Matching individuals across files by (FID, IID), by role.

Each input that lists individuals takes part under a role name (``"phenotype"``,
``"mean_covar"``, ``"var_covar"``, ``"random"``), with its IDs and which of its rows have
complete data. The reference (the genotype file's samples, or the phenotype file for
fit_hlmm_model) fixes the order.

Biobank genotype files often carry one identifier per sample: a .bgen's embedded IDs (read as IID
with FID ``"0"``) are then ``FID_IID`` joined, as plink2 writes them (``id-paste``) and regenie's
example data have them. With ``join`` (``--id_delim``) the reference's IIDs are matched as whole
tokens against the other files' ``FID + join + IID``; the tokens are never split, since FIDs and
IIDs may themselves contain the delimiter. :func:`id_scheme` finds out whether such a join with
``_`` matches when the (FID, IID) pairs do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hlmm.io._base import InputError

__all__ = ["IdRole", "Matched", "match_samples", "id_scheme", "no_match_hint", "AUTO_DELIMITER"]

#: The delimiter of joined ``FID_IID`` sample IDs that matching tries by itself.
AUTO_DELIMITER = "_"


def _key(fid_iid: tuple, join: str | None):
    return fid_iid if join is None else f"{fid_iid[0]}{join}{fid_iid[1]}"


def _reference_key(fid_iid: tuple, join: str | None):
    return fid_iid if join is None else fid_iid[1]


def _overlap(reference_ids: list, ids: list, join: str | None) -> int:
    keys = {_key(i, join) for i in ids}
    return sum(_reference_key(r, join) in keys for r in reference_ids)


def _ambiguous(ids: list, join: str) -> bool:
    """Whether joining gives two different (FID, IID) pairs the same token."""
    tokens = [_key(i, join) for i in set(ids)]
    return len(tokens) != len(set(tokens))


def id_scheme(reference_ids: list, ids: list) -> str | None:
    """How to match ``ids`` (an input's (FID, IID)) with the reference's: None for (FID, IID) pairs,
    or :data:`AUTO_DELIMITER` when the pairs match no one but the reference's IIDs match the
    inputs' ``FID_IID`` tokens unambiguously.

    Examples
    --------
    >>> id_scheme([("0", "f1_i1"), ("0", "f2_i2")], [("f1", "i1"), ("f2", "i2")])
    '_'
    >>> id_scheme([("f1", "i1")], [("f1", "i1")]) is None
    True
    """
    if _overlap(reference_ids, ids, None) or not _overlap(reference_ids, ids, AUTO_DELIMITER):
        return None
    return None if _ambiguous(ids, AUTO_DELIMITER) else AUTO_DELIMITER


def no_match_hint(reference_ids: list, ids: list) -> str:
    """What would match when the (FID, IID) pairs do not: the IIDs alone, or joined FID_IID tokens."""
    hints = []
    joined = _overlap(reference_ids, ids, AUTO_DELIMITER)
    if joined:
        hints.append(f"the genotype file's sample IDs are FID_IID tokens matching {joined} of them: give"
                     " --id_delim _")
    iids = {i for _, i in ids}
    by_iid = sum(r[1] in iids for r in reference_ids)
    if by_iid:
        hints.append(f"{by_iid} IIDs match but their FIDs differ: give the files the same FIDs (the genotype"
                     " file's)")
    return ("; " + "; ".join(hints)) if hints else ""


@dataclass
class IdRole:
    """The individuals of one input.

    Attributes
    ----------
    ids : list of (str, str)
    what : str
        Description with the path, for messages ("phenotype file pheno.txt").
    complete : ndarray of bool, shape (len(ids),), optional
        Rows whose data are complete; individuals on other rows are dropped.
    """

    ids: list
    what: str
    complete: np.ndarray | None = None
    index: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {iid: i for i, iid in enumerate(self.ids)}


@dataclass
class Matched:
    """The individuals used, in the reference order.

    Attributes
    ----------
    rows : ndarray of int64
        Indices into the reference IDs.
    ids : list of (str, str)
    index : dict of str to ndarray
        Per role, the row of each individual used in that role's input.
    log : list of str
        What was read, matched and dropped.
    """

    rows: np.ndarray
    ids: list
    index: dict
    log: list


def match_samples(reference_ids: list, reference_what: str, roles: dict, keep: set | None = None,
                  remove: set | None = None, keep_what: str = "--keep", remove_what: str = "--remove",
                  join: str | None = None) -> Matched:
    """Keep the reference individuals that every role lists with complete data.

    Parameters
    ----------
    reference_ids : list of (str, str)
    reference_what : str
    roles : dict of str to IdRole
    keep, remove : set of (str, str), optional
        Individuals to keep (all others dropped) and to remove.
    join : str, optional
        The reference's IIDs are ``FID + join + IID`` tokens of the other inputs' individuals.

    Returns
    -------
    Matched

    Raises
    ------
    InputError
        If no individual remains, naming the selection or input that removed the last ones.
    """
    n_ref = len(reference_ids)
    keep_mask = np.ones(n_ref, dtype=bool)
    log = [f"{n_ref} individuals in {reference_what}"]
    ref_keys = [_reference_key(i, join) for i in reference_ids]
    if keep is not None:
        keep = {_key(i, join) for i in keep}
        keep_mask &= np.array([i in keep for i in ref_keys], dtype=bool)
        log.append(f"{keep_what} kept {int(keep_mask.sum())} of them")
        if not keep_mask.any():
            raise InputError(f"{keep_what}: none of its {len(keep)} individuals is in {reference_what}")
    if remove is not None:
        remove = {_key(i, join) for i in remove}
        removed = keep_mask & np.array([i in remove for i in ref_keys], dtype=bool)
        keep_mask &= ~removed
        log.append(f"{remove_what} removed {int(removed.sum())}")
        if not keep_mask.any():
            raise InputError(f"{remove_what}: removes every remaining individual of {reference_what}")
    positions = {}
    for role, r in roles.items():
        index = r.index if join is None else {_key(i, join): k for k, i in enumerate(r.ids)}
        idx = np.array([index.get(i, -1) for i in ref_keys], dtype=np.int64)
        present = idx >= 0
        n_common = int(present.sum())
        log.append(f"{len(r.ids)} individuals read from {r.what}; {n_common} in common with {reference_what}")
        if n_common == 0:
            hint = no_match_hint(reference_ids, r.ids) if join is None else ""
            raise InputError(f"{r.what}: no individuals in common with {reference_what} ({n_ref} individuals){hint}")
        newly_absent = int((keep_mask & ~present).sum())
        if newly_absent:
            log.append(f"dropped {newly_absent} individuals not in {r.what}")
        keep_mask &= present
        if r.complete is not None:
            complete = np.zeros(n_ref, dtype=bool)
            complete[present] = r.complete[idx[present]]
            dropped = int((keep_mask & ~complete).sum())
            if dropped:
                log.append(f"dropped {dropped} individuals with missing values in {r.what}")
            keep_mask &= complete
        if not keep_mask.any():
            raise InputError(f"no individuals with complete data remain after matching {reference_what} with "
                             + ", ".join(x.what for x in list(roles.values())[: list(roles).index(role) + 1]))
        positions[role] = idx
    rows = np.flatnonzero(keep_mask)
    log.append(f"{rows.size} individuals used")
    return Matched(rows, [reference_ids[i] for i in rows], {k: v[rows] for k, v in positions.items()}, log)
