#!/usr/bin/env python
"""Thin wrapper: `python bin/hlmm_chr.py ...` runs the installed hlmm's hlmm_chr."""
import sys

from hlmm.cli.hlmm_chr import main

if __name__ == "__main__":
    sys.exit(main())
