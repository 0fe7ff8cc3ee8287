#!/usr/bin/env python
"""Thin wrapper: `python bin/hlmm_dispersion.py ...` runs the installed hlmm's hlmm_dispersion."""
import sys

from hlmm.cli.hlmm_dispersion import main

if __name__ == "__main__":
    sys.exit(main())
