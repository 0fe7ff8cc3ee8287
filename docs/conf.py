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
exclude_patterns = ["_build"]
html_theme = "alabaster"
