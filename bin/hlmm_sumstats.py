#!/usr/bin/env python
"""Thin wrapper: `python bin/hlmm_sumstats.py ...` runs the installed hlmm's hlmm_sumstats."""
import sys

from hlmm.cli.hlmm_sumstats import main

if __name__ == "__main__":
    sys.exit(main())
