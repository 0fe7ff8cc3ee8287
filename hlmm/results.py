"""Results files: p-values, formatting blocks of rows, and writing and reading ``.models.gz``.

The columns come from :mod:`hlmm.columns`. A ``.models.gz`` file is a sequence of complete gzip
members: one with the header, then one per block of rows, so a file cut after any member is a
valid gzip file of complete rows. Where the files live during a run, and when they become final,
is decided by :mod:`hlmm.runstate`.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from hlmm import columns as C
from hlmm.io import OutputError, os_reason
from hlmm.pvalues import neglog10_pval, wald_chi2
from hlmm.robust import robust_statistics

try:  # ISA-L's gzip at level 1: 0.74 against zlib's 2.16 us per row of 26 columns, 3% smaller; optional
    from isal.igzip import compress as _gzip_compress
except ImportError:
    _gzip_compress = gzip.compress

__all__ = [
    "neglog10_pval",
    "stats_table",
    "format_block",
    "header_member",
    "block_member",
    "MemberFile",
    "read_models",
    "write_table",
    "write_effects",
    "write_atomic",
    "Tally",
]

TEXT = {c.name for c in C.MODELS + C.DISPERSION if c.kind == "str"}
INTEGER = {c.name for c in C.MODELS + C.DISPERSION if c.kind == "int"}


def stats_table(variant_info: dict, stats: dict, moments=None, exposures=()) -> dict:
    """Every column of :data:`hlmm.columns.MODELS` for one block of rows.

    Parameters
    ----------
    variant_info : dict
        The ``variant`` columns (``SNP``, ``chr``, ``pos``, ``A1``, ``A2``).
    stats : dict
        The ``stats`` columns as arrays; ``av_chi2`` (optional) replaces the joint statistic
        ``add_t^2 + var_t^2`` where the two are correlated (robust score tests);
        ``add_se_model`` and ``var_se_model`` (optional) are the model-based standard errors where
        ``add_se`` and ``var_se`` are not (``--robust``).
    moments : hlmm.robust.ResidualMoments, optional
        Of the phenotype's null model, for the robust columns (NaN without).
    exposures : sequence of str
        With G×E terms: the exposures, whose columns (:func:`hlmm.columns.interaction_columns`)
        come from the ``gxe``, ``gxe_se`` and ``gxe_cov`` statistics.

    Returns
    -------
    dict
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        add_t = stats["add"] / stats["add_se"]
        var_t = stats["var"] / stats["var_se"]
        av = add_t**2 + var_t**2
        if stats.get("av_chi2") is not None:  # score rows; NaN where a row holds a Wald fit
            av = np.where(np.isnan(stats["av_chi2"]), av, stats["av_chi2"])
        cols = dict(variant_info)
        b = len(stats["add"])
        for c in C.MODELS:  # a statistic a scanner does not give: NaN (or NA)
            if c.source == "stats" and c.name not in stats:
                cols[c.name] = np.full(b, "NA") if c.kind == "str" else np.full(b, np.nan)
        cols.update({k: v for k, v in stats.items() if C.by_name(k) is not None})
        cols["add_t"] = add_t
        cols["var_t"] = var_t
        cols["add_pval"] = neglog10_pval(add_t**2, 1)
        cols["var_pval"] = neglog10_pval(var_t**2, 1)
        cols["av_pval"] = neglog10_pval(av, 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            cols["var_pval_adapt"] = neglog10_pval((cols["var_adapt"] / cols["var_se_adapt"]) ** 2, 1)
        if moments is not None:
            rob = robust_statistics(stats["add"], stats.get("add_se_model", stats["add_se"]), stats["var"],
                                    stats.get("var_se_model", stats["var_se"]), moments)
            cols["var_se_robust"] = rob["var_se_robust"]
            cols["var_pval_robust"] = neglog10_pval(rob["var_chi2_robust"], 1)
            cols["av_pval_robust"] = neglog10_pval(rob["av_chi2_robust"], 2)
            cols["add_var_cor"] = rob["add_var_cor"]
        else:
            for c in ("var_se_robust", "var_pval_robust", "av_pval_robust", "add_var_cor"):
                cols[c] = np.full(b, np.nan)
        if exposures:
            cols.update(_interaction_table(stats, list(exposures), b))
    return cols


def _interaction_table(stats: dict, exposures: list, b: int) -> dict:
    """The G×E columns (:func:`hlmm.columns.interaction_columns`) of a block."""
    K = len(exposures)
    gxe = stats.get("gxe", np.full((b, K), np.nan)).reshape(b, K)
    se = stats.get("gxe_se", np.full((b, K), np.nan)).reshape(b, K)
    cov = stats.get("gxe_cov", np.full((b, K + 1, K + 1), np.nan))
    out = {}
    t = gxe / se
    for k, e in enumerate(exposures):
        stem = "gxe" if K == 1 else f"gxe_{e}"
        out[stem], out[f"{stem}_se"], out[f"{stem}_t"] = gxe[:, k], se[:, k], t[:, k]
        out[f"{stem}_pval"] = neglog10_pval(t[:, k] ** 2, 1)
    if K > 1:
        out["gxe_pval"] = neglog10_pval(wald_chi2(gxe, cov[:, 1:, 1:]), K)
    out["joint_pval"] = neglog10_pval(wald_chi2(np.column_stack([stats["add"], gxe]), cov), K + 1)
    return out


class Tally:
    """λGC, genome-wide significant counts and top variants of the rows of a scan, accumulated block by
    block in bounded memory (a histogram of −log10 p-values and the best few rows).

    Parameters
    ----------
    columns : dict of str to str
        Label -> −log10 p column of 1 degree of freedom.
    top : int
        Variants kept per column.

    Examples
    --------
    >>> import numpy as np
    >>> t = Tally({"add": "add_pval"})
    >>> t.update({"SNP": np.array(["a", "b", "c"]), "add_pval": np.array([0.1, 9.0, np.nan])})
    >>> t.n["add"], t.top_variants("add"), t.significant["add"]
    (2, [('b', 9.0), ('a', 0.1)], 1)
    """

    #: Width and upper end of the histogram's bins of −log10 p (beyond: the last bin).
    BIN, END = 1e-4, 20.0
    #: −log10 of the genome-wide significance level, 5e-8.
    GENOME_WIDE = -np.log10(5e-8)

    def __init__(self, columns: dict, top: int = 3) -> None:
        self.columns, self.k = dict(columns), top
        size = int(round(self.END / self.BIN)) + 1
        self.hist = {label: np.zeros(size, dtype=np.int64) for label in columns}
        self.n = dict.fromkeys(columns, 0)
        self.significant = dict.fromkeys(columns, 0)
        self._top = {label: [] for label in columns}

    def update(self, cols: dict) -> None:
        """Add a block of rows (columns as :func:`stats_table` gives them)."""
        for label, col in self.columns.items():
            L = np.asarray(cols[col], dtype=float)
            ok = np.flatnonzero(np.isfinite(L))
            if not ok.size:
                continue
            bins = np.minimum((L[ok] / self.BIN).astype(np.int64), len(self.hist[label]) - 1)
            # O(rows), not O(bins): a bincount over the 200,001 bins per block had cost 7% of a 10-trait scan
            np.add.at(self.hist[label], np.maximum(bins, 0), 1)
            self.n[label] += ok.size
            self.significant[label] += int((L[ok] >= self.GENOME_WIDE).sum())
            best = ok[np.argsort(-L[ok], kind="stable")[: self.k]]
            merged = self._top[label] + [(str(cols["SNP"][j]), float(L[j])) for j in best]
            self._top[label] = sorted(merged, key=lambda x: -x[1])[: self.k]

    def lambda_gc(self, label: str) -> float:
        """λGC (median chi-square(1) over its null median) of the rows so far; NaN without rows."""
        if not self.n[label]:
            return float("nan")
        c = np.cumsum(self.hist[label])
        median = (int(np.searchsorted(c, (self.n[label] + 1) / 2)) + 0.5) * self.BIN
        from scipy import stats

        return float(stats.chi2.isf(10.0**-median, 1) / stats.chi2.median(1))

    def top_variants(self, label: str) -> list:
        """``(SNP, −log10 p)`` of the best rows so far, best first."""
        return list(self._top[label])


def _format(col: str, values) -> tuple[str, list]:
    """A column's ``%`` conversion and its values for it: floats as ``.10g``, non-finite as NaN."""
    if col in TEXT:
        return "%s", [str(v) for v in values]
    if col in INTEGER:
        return "%d", [int(v) for v in values]
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():  # formatted with the row (``%.10g`` equals ``format(v, '.10g')``)
        return "%.10g", values.tolist()
    out = [f"{v:.10g}" for v in values.tolist()]
    for i in np.flatnonzero(~finite):
        out[i] = "NaN"
    return "%s", out


def format_block(cols: dict, columns: list) -> str:
    """Tab-separated text of a block of rows (no header)."""
    conversions, values = zip(*(_format(c, cols[c]) for c in columns))
    row = "\t".join(conversions) + "\n"  # one % per row: 2x faster than a format per value
    return "".join([row % r for r in zip(*values)])


def _member(text: str) -> bytes:
    # level 1: 7x faster than 6, 10% larger (zlib); the same text whichever library compresses it
    return _gzip_compress(text.encode(), compresslevel=1, mtime=0)


def header_member(columns: list) -> bytes:
    """The gzip member holding the header line."""
    return _member("\t".join(columns) + "\n")


def block_member(cols: dict, columns: list) -> bytes:
    """The gzip member holding a block of rows (empty bytes for no rows)."""
    return _member(format_block(cols, columns)) if len(cols[columns[0]]) else b""


class MemberFile:
    """An append-only file of gzip members, each written whole and flushed to disk.

    It keeps the byte length and CRC-32 of its content, which the run state records after
    every block so that a resumed run can check the file against them.

    Parameters
    ----------
    path : str
    truncate_to : int, optional
        Open an existing file and discard everything after its first ``truncate_to`` bytes
        (the part recorded as complete); by default create the file (empty).
    crc : int
        CRC-32 of the kept part, with ``truncate_to``.
    """

    def __init__(self, path: str, truncate_to: int | None = None, crc: int = 0) -> None:
        self.path = path
        try:
            if truncate_to is None:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                self.size, self.crc = 0, 0
            else:
                self._fd = os.open(path, os.O_WRONLY)
                os.ftruncate(self._fd, truncate_to)
                os.lseek(self._fd, 0, os.SEEK_END)
                self.size, self.crc = truncate_to, crc
        except OSError as e:
            raise OutputError(f"results file {path}: cannot write: {os_reason(e)}") from None

    def write(self, data: bytes) -> None:
        """Append ``data`` and flush it to disk."""
        if not data:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as e:
            raise OutputError(f"results file {self.path}: cannot write: {os_reason(e)}") from None
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def file_crc(path: str, size: int) -> int:
    """CRC-32 of the first ``size`` bytes of a file."""
    crc = 0
    with open(path, "rb") as f:
        left = size
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
    return crc


def check_gzip_members(path: str) -> None:
    """Decompress a whole file of gzip members, checking every member's CRC and length.

    Raises
    ------
    ValueError
        Naming the byte offset of the first bad member.
    """
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        try:
            d.decompress(data[pos:])
        except zlib.error as e:
            raise ValueError(f"corrupt gzip member at byte {pos} ({e})") from None
        if not d.eof:
            raise ValueError(f"truncated gzip member at byte {pos}")
        pos = len(data) - len(d.unused_data)


def read_models(path: str) -> dict:
    """Read a results table (``.models.gz``, ``.dispersion.gz``) into a dict of column arrays.

    Text columns are str, integer columns int64, others float64 (unknown columns float).
    """
    with gzip.open(path, "rt") as f:
        text = f.read()
    lines = text.splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:] if line]
    out = {}
    for j, name in enumerate(header):
        vals = [r[j] for r in rows]
        if name in TEXT:
            out[name] = np.array(vals, dtype=str)
        elif name in INTEGER:
            out[name] = np.array(vals, dtype=np.int64)
        else:
            out[name] = np.array(vals, dtype=float)
    return out


def write_atomic(path: str, data, what: str = "output file") -> tuple[int, int]:
    """Write ``data`` to ``path`` so that the file appears only when complete.

    Parameters
    ----------
    path : str
    data : bytes or iterable of bytes
        The content, whole or in chunks (streamed, for large files).
    what : str
        What the file is, for messages.

    Returns
    -------
    size, crc32 : int
        Of the content written.

    Raises
    ------
    OutputError
        One line naming the path and the problem (disk full, a directory in the way, ...).
    """
    tmp = path + ".partial"
    chunks = (data,) if isinstance(data, bytes | bytearray | memoryview) else data
    size = crc = 0
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(21, "is a directory")
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
                crc = zlib.crc32(chunk, crc)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise OutputError(f"{what} {path}: cannot write: {os_reason(e)}") from None
    return size, crc


def write_table(path: str, cols: dict, columns: list) -> None:
    """Write a whole results table (header and rows) as one gzip member, atomically."""
    text = "\t".join(columns) + "\n" + format_block(cols, columns)
    write_atomic(path, gzip.compress(text.encode(), compresslevel=6, mtime=0), "results file")


def write_effects(path: str, names: list, estimates, ses) -> None:
    """Write ``name<TAB>estimate<TAB>se`` lines, atomically."""
    text = "".join(f"{name}\t{format(float(est), '.10g')}\t{format(float(se), '.10g')}\n"
                   for name, est, se in zip(names, np.atleast_1d(estimates), np.atleast_1d(ses)))
    write_atomic(path, text.encode(), "output file")
