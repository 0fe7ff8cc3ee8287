"""Reading whitespace-separated text files: phenotype and covariate tables, ID and variant lists.

Every problem raises :class:`~hlmm.io.InputError` with one line naming the file, the line and the
problem. A UTF-8 byte-order mark is ignored; a comma-separated file gets a message that suggests
whitespace; a byte that is not UTF-8 gets a message naming its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from hlmm.io._base import InputError, os_reason

__all__ = ["Table", "read_table", "read_lines", "read_sample_list", "read_variant_list"]


def read_lines(path: str, what: str) -> Iterator[tuple[int, list]]:
    """Yield ``(line number, tokens)`` of the non-empty lines of a text file.

    Raises
    ------
    InputError
        Unreadable file, or a line that is not UTF-8 (naming the line).
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"{what} {path}: cannot read: {os_reason(e)}") from None
    with f:
        try:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(
                        f"{what} {path}: line {lineno}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8"
                        " text (is this a binary file, or saved in another encoding?)"
                    ) from None
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                tokens = line.split()
                if tokens:
                    yield lineno, tokens
        except OSError as e:
            raise InputError(f"{what} {path}: cannot read: {os_reason(e)}") from None


def _comma_hint(tokens: list) -> str:
    return " (the file looks comma-separated; hlmm reads whitespace-separated columns)" if any(
        "," in t for t in tokens) else ""


@dataclass
class Table:
    """A table of ``FID IID v1 v2 ...``.

    Attributes
    ----------
    path : str
    ids : list of (str, str)
        (FID, IID) per row.
    names : list of str
        Column names, from the header or numbered 1, 2, ... if there is none.
    values : ndarray, shape (n_rows, n_columns)
        Values with missing entries as NaN.
    what : str
        What the file is, for messages ("phenotype file", ...).
    """

    path: str
    ids: list
    names: list
    values: np.ndarray
    what: str = "file"
    index: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {iid: i for i, iid in enumerate(self.ids)}


def read_table(path: str, missing: str = "NA", what: str = "file") -> Table:
    """Read a whitespace-separated ``FID IID v1 v2 ...`` table.

    The first line is a header if any of its value columns is not numeric (and not the missing
    value string). Values equal to ``missing`` become NaN.

    Parameters
    ----------
    path : str
    missing : str
        Missing-value string.
    what : str
        What the file is, for error messages ("phenotype file", ...).

    Returns
    -------
    Table

    Raises
    ------
    InputError
        Unreadable or empty file, ragged rows, non-numeric or non-finite values, duplicated IDs.
    """
    lines = list(read_lines(path, what))
    if not lines:
        raise InputError(f"{what} {path}: file is empty")
    ncol = len(lines[0][1])
    if ncol < 3:
        raise InputError(f"{what} {path}: line {lines[0][0]} has {ncol} column{'s' if ncol != 1 else ''};"
                         f" expected FID, IID and at least one value{_comma_hint(lines[0][1])}")
    first = lines[0][1][2:]
    if any(not _is_number(x) and x != missing for x in first):
        names = first
        lines = lines[1:]
        if not lines:
            raise InputError(f"{what} {path}: file has a header but no data")
    else:
        names = [str(j + 1) for j in range(ncol - 2)]
    ids, values = [], np.empty((len(lines), ncol - 2))
    for row, (lineno, tok) in enumerate(lines):
        if len(tok) != ncol:
            raise InputError(f"{what} {path}: line {lineno} has {len(tok)} columns, expected {ncol}{_comma_hint(tok)}")
        ids.append((tok[0], tok[1]))
        for j, x in enumerate(tok[2:]):
            if x == missing:
                values[row, j] = np.nan
                continue
            try:
                val = float(x)
            except ValueError:
                raise InputError(
                    f"{what} {path}: line {lineno}, column {j + 3}: non-numeric value '{x}'"
                    f" (missing values must be written as '{missing}')"
                ) from None
            if not np.isfinite(val):
                raise InputError(f"{what} {path}: line {lineno}, column {j + 3}: value '{x}' is not finite")
            values[row, j] = val
    check_unique(ids, what, path)
    return Table(path, ids, list(names), values, what)


def _is_number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def check_unique(ids, what: str, path: str) -> None:
    """Raise if an (FID, IID) pair appears twice."""
    seen = set()
    for fid_iid in ids:
        if fid_iid in seen:
            raise InputError(f"{what} {path}: individual FID={fid_iid[0]} IID={fid_iid[1]} appears more than once")
        seen.add(fid_iid)


def read_sample_list(path: str, what: str) -> set:
    """Read a ``--keep``/``--remove`` file: ``FID IID`` per line, an optional ``#`` header line.

    Returns
    -------
    set of (str, str)
    """
    out = set()
    for lineno, tok in read_lines(path, what):
        if tok[0].startswith("#"):
            if lineno == 1 or not out:
                continue
            raise InputError(f"{what} {path}: line {lineno}: a '#' header line may only come first")
        if len(tok) < 2:
            raise InputError(f"{what} {path}: line {lineno} has 1 column; expected FID and IID{_comma_hint(tok)}")
        out.add((tok[0], tok[1]))
    if not out:
        raise InputError(f"{what} {path}: lists no individuals")
    return out


def read_variant_list(path: str, what: str) -> set:
    """Read an ``--extract``/``--exclude`` file: one variant ID per line (first column).

    Returns
    -------
    set of str
    """
    out = {tok[0] for _, tok in read_lines(path, what)}
    if not out:
        raise InputError(f"{what} {path}: lists no variants")
    return out


def read_sex_file(path: str, what: str = "--sex file") -> dict:
    """Read a sex file: ``FID IID sex`` per line (sex 1/M/male, 2/F/female; 0, NA, -9 unknown), an
    optional header line whose first field is ``FID`` or ``#FID``.

    Returns
    -------
    dict of (str, str) to int
        PLINK sex codes (1 male, 2 female, 0 unknown).

    Raises
    ------
    InputError
        One line naming the file and line: too few columns, a sex that is not one of the above, an
        individual listed twice, no individuals.
    """
    from hlmm.io._base import sex_code

    out = {}
    for lineno, tok in read_lines(path, what):
        if lineno == 1 and tok[0].lstrip("#").upper() == "FID":
            continue
        if len(tok) < 3:
            raise InputError(f"{what} {path}: line {lineno} has {len(tok)} columns; expected FID IID sex"
                             f"{_comma_hint(tok)}")
        code = sex_code(tok[2])
        if code == 0 and tok[2].upper() not in ("0", "NA", "-9", "U", "UNKNOWN"):
            raise InputError(f"{what} {path}: line {lineno}: sex '{tok[2]}' is not 1/M/male, 2/F/female or"
                             " 0/NA (unknown)")
        if (tok[0], tok[1]) in out:
            raise InputError(f"{what} {path}: individual FID={tok[0]} IID={tok[1]} appears more than once")
        out[(tok[0], tok[1])] = code
    if not out:
        raise InputError(f"{what} {path}: lists no individuals")
    return out
