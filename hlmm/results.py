"""The results schema: output columns, p-values, and writing and reading result files.

This module owns the column layout of ``.models.gz`` files; every writer and reader uses it.
"""

from __future__ import annotations

import gzip
import io
import os

import numpy as np
from scipy.special import log_ndtr

__all__ = [
    "COLUMNS",
    "DOCUMENTED_COLUMNS",
    "neglog10_pval",
    "ModelsWriter",
    "read_models",
    "write_effects",
]

#: The 13 columns of hlmm 1.2.0a1, in order.
DOCUMENTED_COLUMNS = [
    "SNP", "n", "frequency", "likelihood",
    "add", "add_se", "add_t", "add_pval",
    "var", "var_se", "var_t", "var_pval",
    "av_pval",
]
#: Our columns: the documented ones, then where the SNP is and which allele the effects count.
COLUMNS = DOCUMENTED_COLUMNS + ["chr", "pos", "A1", "A2"]
#: Columns that hlmm_dispersion appends.
DISPERSION_COLUMNS = ["dispersion", "dispersion_se", "dispersion_t", "dispersion_pval"]
TEXT_COLUMNS = {"SNP", "chr", "A1", "A2"}
INT_COLUMNS = {"n", "pos"}

LN10 = float(np.log(10.0))


def neglog10_pval(chi2_stat, df: int) -> np.ndarray:
    """-log10 of the chi-square upper tail probability, without underflow.

    For 1 degree of freedom ``p = 2 Phi(-sqrt(x))`` via ``log_ndtr``; for 2, ``p = exp(-x/2)``.
    A p-value of 1e-400 gives 400, not inf.

    Parameters
    ----------
    chi2_stat : array_like
    df : {1, 2}

    Returns
    -------
    ndarray
    """
    x = np.asarray(chi2_stat, dtype=float)
    if df == 1:
        return -(np.log(2.0) + log_ndtr(-np.sqrt(x))) / LN10
    if df == 2:
        return x / (2.0 * LN10)
    raise ValueError(f"df must be 1 or 2, got {df}")


def stats_table(snp_info: dict, stats: dict) -> dict:
    """Assemble the columns of one block of results.

    Parameters
    ----------
    snp_info : dict
        ``SNP``, ``chr``, ``pos``, ``A1``, ``A2`` arrays.
    stats : dict
        ``n``, ``frequency``, ``likelihood``, ``add``, ``add_se``, ``var``, ``var_se`` arrays.

    Returns
    -------
    dict
        Every column of :data:`COLUMNS`.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        add_t = stats["add"] / stats["add_se"]
        var_t = stats["var"] / stats["var_se"]
        cols = dict(snp_info)
        cols.update(stats)
        cols["add_t"] = add_t
        cols["var_t"] = var_t
        cols["add_pval"] = neglog10_pval(add_t**2, 1)
        cols["var_pval"] = neglog10_pval(var_t**2, 1)
        cols["av_pval"] = neglog10_pval(add_t**2 + var_t**2, 2)
    return cols


def _format(col: str, values) -> list:
    if col in TEXT_COLUMNS:
        return [str(v) for v in values]
    if col in INT_COLUMNS:
        return [str(int(v)) for v in values]
    return ["NaN" if not np.isfinite(v) else format(float(v), ".10g") for v in values]


def format_block(cols: dict, columns: list = COLUMNS) -> str:
    """Tab-separated text of a block of rows (no header)."""
    formatted = [_format(c, cols[c]) for c in columns]
    return "".join("\t".join(row) + "\n" for row in zip(*formatted))


class ModelsWriter:
    """Writes a ``.models.gz`` file one block at a time, each block a complete gzip member.

    A new file appears, atomically, already holding its header. Each block is compressed whole
    and written with one ``write`` call, then flushed to disk, so a run stopped at any point
    (even by ``kill -9``) leaves a valid gzip file of complete rows.

    Parameters
    ----------
    path : str
    append : bool
        Append to an existing file (without a header) instead of creating it.
    resume_bytes : int, optional
        Continue a file whose first ``resume_bytes`` bytes are complete, discarding the rest.
    """

    def __init__(self, path: str, append: bool = False, resume_bytes: int | None = None) -> None:
        self.path = path
        if resume_bytes is not None:
            size = os.path.getsize(path)
            if size < resume_bytes:
                raise ValueError(f"{path} has {size} bytes, fewer than the {resume_bytes} recorded as complete")
            self._fd = os.open(path, os.O_WRONLY)
            os.ftruncate(self._fd, resume_bytes)
            os.lseek(self._fd, 0, os.SEEK_END)
        elif append and os.path.exists(path) and os.path.getsize(path) > 0:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        else:
            tmp = path + ".partial"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            _write_all(fd, _member("\t".join(COLUMNS) + "\n"))
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, path)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def write_block(self, cols: dict) -> None:
        """Write a block of rows given by the columns of :func:`stats_table`."""
        if len(cols["SNP"]):
            _write_all(self._fd, _member(format_block(cols)))
            os.fsync(self._fd)

    def tell(self) -> int:
        """Bytes in the file (all of them complete gzip members)."""
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _member(text: str) -> bytes:
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_models(path: str) -> dict:
    """Read a ``.models.gz`` file into a dict of column arrays (text columns as str)."""
    with gzip.open(path, "rt") as f:
        text = f.read()
    lines = text.splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:] if line]
    out = {}
    for j, name in enumerate(header):
        vals = [r[j] for r in rows]
        if name in TEXT_COLUMNS:
            out[name] = np.array(vals, dtype=str)
        elif name in INT_COLUMNS:
            out[name] = np.array(vals, dtype=np.int64)
        else:
            out[name] = np.array(vals, dtype=float)
    return out


def write_table(path: str, cols: dict, columns: list) -> None:
    """Write a whole results table (header and rows) as one gzip member, atomically.

    The file appears under its name only when complete.
    """
    tmp = path + ".partial"
    text = "\t".join(columns) + "\n" + format_block(cols, columns)
    with open(tmp, "wb") as f:
        f.write(gzip.compress(text.encode(), compresslevel=6, mtime=0))
    os.replace(tmp, path)


def write_effects(path: str, names: list, estimates, ses) -> None:
    """Write ``name<TAB>estimate<TAB>se`` lines (as text, never byte literals)."""
    buf = io.StringIO()
    for name, est, se in zip(names, np.atleast_1d(estimates), np.atleast_1d(ses)):
        buf.write(f"{name}\t{format(float(est), '.10g')}\t{format(float(se), '.10g')}\n")
    with open(path, "w") as f:
        f.write(buf.getvalue())
