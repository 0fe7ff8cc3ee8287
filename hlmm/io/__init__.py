"""Reading inputs: genotype files of every format, phenotype and covariate tables, ID matching.

Every problem with an input raises :class:`InputError`, a ``ValueError`` whose message is one
line naming the file and the problem. This package is the only place that knows file formats:
:func:`open_genotypes` picks the reader from the file's extension and returns a
:class:`GenotypeSource`.

=========  ==========================  =======================================================
format     files                       counted allele (``A1`` in the output)
=========  ==========================  =======================================================
``.bed``   ``.bed``, ``.bim``, ``.fam``  A1, the .bim's 5th column (as PLINK)
``.pgen``  ``.pgen``, ``.pvar``, ``.psam``  ALT
``.bgen``  ``.bgen`` (+ ``.sample``)  the second allele
=========  ==========================  =======================================================

plink2 makes A1 the ALT allele, and ALT the second bgen allele, when it converts a .bed, so the
three give the same counts.
"""

from __future__ import annotations

import os

import numpy as np

from hlmm.io._base import (
    GenotypeBlock,
    GenotypeSource,
    InputError,
    OutputError,
    VariantTable,
    contiguous_runs,
    os_reason,
)
from hlmm.io.arrays import ArraySource
from hlmm.io.bed import BedSource, BedWriter, open_bed, write_bed
from hlmm.io.matching import IdRole, Matched, id_scheme, match_samples
from hlmm.io.text import Table, read_sample_list, read_sex_file, read_table, read_variant_list

__all__ = [
    "InputError",
    "OutputError",
    "VariantTable",
    "GenotypeBlock",
    "GenotypeSource",
    "ArraySource",
    "BedSource",
    "open_genotypes",
    "open_bed",
    "BedWriter",
    "write_bed",
    "Table",
    "read_table",
    "read_sample_list",
    "read_sex_file",
    "read_variant_list",
    "IdRole",
    "Matched",
    "match_samples",
    "id_scheme",
    "read_random_effects",
    "contiguous_runs",
    "os_reason",
    "GENOTYPE_FORMATS",
]

#: Genotype file extensions and what they need alongside.
GENOTYPE_FORMATS = {".bed": ".bim and .fam", ".pgen": ".pvar and .psam", ".bgen": "an optional .sample"}


def open_genotypes(path: str, sample: str | None = None, what: str = "genotype file") -> GenotypeSource:
    """Open a genotype file, choosing the reader from its extension.

    Parameters
    ----------
    path : str
        ``.bed``, ``.pgen`` or ``.bgen`` file (a .bed may also be given by its prefix, as in
        1.2.0a1).
    sample : str, optional
        ``.sample`` file with the sample IDs of a ``.bgen`` (default: the ``.sample`` file with
        the .bgen's prefix if there is one, else the IDs in the .bgen).
    what : str
        What the file is, for messages.

    Raises
    ------
    InputError
        Unknown extension, missing companion files, or a malformed or inconsistent file.
    """
    ext = os.path.splitext(path)[1].lower()
    if sample is not None and ext != ".bgen":
        raise InputError(f"--sample {sample}: only a .bgen genotype file takes a .sample file, not {path}")
    if ext == ".bed" or (ext not in GENOTYPE_FORMATS and os.path.isfile(path + ".bed")):
        return open_bed(path, what)
    if ext == ".pgen":
        from hlmm.io.pgen import open_pgen

        return open_pgen(path, what)
    if ext == ".bgen":
        from hlmm.io.bgen import open_bgen

        if sample is None and os.path.isfile(path[:-5] + ".sample"):
            sample = path[:-5] + ".sample"  # the usual companion, as bgen users keep it
        return open_bgen(path, sample, what)
    raise InputError(f"{what} {path}: unknown format; expected a .bed, .pgen or .bgen file")


def read_random_effects(source: GenotypeSource, rows: np.ndarray, chunk: int = 64, codes: bool = False) -> np.ndarray:
    """Genotypes of every variant of a random-effects file for samples ``rows``.

    With ``codes`` (for files of hard calls), int8 copies of the counted allele, -1 for missing:
    an eighth of the memory, and no floating-point pass over them.

    Returns
    -------
    ndarray, shape (len(rows), m), C order
        Copies of the counted allele (or dosages), NaN for missing (float64); or the int8 codes.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), source.n_variants), dtype=np.int8 if codes else np.float64)
    read = source.read_codes if codes else source.read_dosages
    for j0 in range(0, source.n_variants, chunk):
        j1 = min(j0 + chunk, source.n_variants)
        out[:, j0:j1] = read(rows, j0, j1).T
    return out
