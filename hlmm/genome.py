"""Chromosomes: their labels, codes and genomic order, decided here for every output.

Labels may carry a ``chr`` prefix. Autosomes are 1-22; the others follow PLINK's numeric codes:
X = 23, Y = 24, XY (the pseudo-autosomal regions, in X coordinates; also PAR1 and PAR2) = 25,
MT (also M) = 26. Genomic order is 1-22, X, Y, XY, MT, then other contigs by name.
"""

from __future__ import annotations

__all__ = ["chromosome_key", "plink_code"]

#: PLINK's numeric codes of the named chromosomes.
NAMED = {"X": 23, "Y": 24, "XY": 25, "PAR1": 25, "PAR2": 25, "MT": 26, "M": 26}


def plink_code(label: str) -> int:
    """PLINK's numeric code of a chromosome label (1-26), 0 for other contigs.

    Examples
    --------
    >>> [plink_code(c) for c in ("1", "chr22", "X", "23", "chrX", "PAR1", "MT", "Un")]
    [1, 22, 23, 23, 23, 25, 26, 0]
    """
    c = label[3:] if label.lower().startswith("chr") else label
    if c.isdigit():
        k = int(c)
        return k if 1 <= k <= 26 else 0
    return NAMED.get(c.upper(), 0)


def chromosome_key(label: str) -> tuple:
    """Sort key putting chromosome labels in genomic order: 1-22, X, Y, XY, MT, then others by name.

    Examples
    --------
    >>> sorted(["X", "10", "2", "MT", "chr1", "Y", "Un", "XY"], key=chromosome_key)
    ['chr1', '2', '10', 'X', 'Y', 'XY', 'MT', 'Un']
    """
    code = plink_code(label)
    return (0, code, "") if code else (1, 0, label)
