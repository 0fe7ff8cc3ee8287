#!/usr/bin/env python
"""Thin wrapper: `python bin/fit_hlmm_model.py ...` runs the installed hlmm's fit_hlmm_model."""
import sys

from hlmm.cli.fit_hlmm_model import main

if __name__ == "__main__":
    sys.exit(main())
