"""Matching individuals across files by (FID, IID), by role.

Each input that lists individuals takes part under a role name (``"phenotype"``,
``"mean_covar"``, ``"var_covar"``, ``"random"``), with its IDs and which of its rows have
complete data. The reference (the genotype file's samples, or the phenotype file for
fit_hlmm_model) fixes the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hlmm.io._base import InputError

__all__ = ["IdRole", "Matched", "match_samples"]


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
                  remove: set | None = None, keep_what: str = "--keep", remove_what: str = "--remove") -> Matched:
    """Keep the reference individuals that every role lists with complete data.

    Parameters
    ----------
    reference_ids : list of (str, str)
    reference_what : str
    roles : dict of str to IdRole
    keep, remove : set of (str, str), optional
        Individuals to keep (all others dropped) and to remove.

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
    if keep is not None:
        keep_mask &= np.array([i in keep for i in reference_ids], dtype=bool)
        log.append(f"{keep_what} kept {int(keep_mask.sum())} of them")
        if not keep_mask.any():
            raise InputError(f"{keep_what}: none of its {len(keep)} individuals is in {reference_what}")
    if remove is not None:
        removed = keep_mask & np.array([i in remove for i in reference_ids], dtype=bool)
        keep_mask &= ~removed
        log.append(f"{remove_what} removed {int(removed.sum())}")
        if not keep_mask.any():
            raise InputError(f"{remove_what}: removes every remaining individual of {reference_what}")
    positions = {}
    for role, r in roles.items():
        idx = np.array([r.index.get(i, -1) for i in reference_ids], dtype=np.int64)
        present = idx >= 0
        n_common = int(present.sum())
        log.append(f"{len(r.ids)} individuals read from {r.what}; {n_common} in common with {reference_what}")
        if n_common == 0:
            raise InputError(f"{r.what}: no individuals in common with {reference_what} ({n_ref} individuals)")
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
