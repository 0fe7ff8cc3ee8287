"""Sphinx configuration for the hlmm documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from hlmm import __version__  # noqa: E402

project = "hlmm"
author = "Alexander Thomas Ian Strudwick Young and the hlmm developers"
copyright = "2018, Alexander I. Young; 2026, the hlmm developers"
version = release = __version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"
exclude_patterns = ["_build", "_generated"]


def _write_generated(app) -> None:
    """Column tables from the one registry of output columns (hlmm.columns)."""
    from hlmm import columns

    out = os.path.join(os.path.dirname(__file__), "_generated")
    os.makedirs(out, exist_ok=True)
    for name, cols in (("models_columns.rst", columns.MODELS), ("dispersion_columns.rst", columns.DISPERSION)):
        text = columns.rst_table(cols)
        path = os.path.join(out, name)
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)


def setup(app):
    app.connect("builder-inited", _write_generated)
html_theme = "alabaster"
