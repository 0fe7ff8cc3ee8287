#!/usr/bin/env python
"""Thin wrapper: `python bin/hlmm_merge.py ...` runs the installed hlmm's hlmm_merge."""
import sys

from hlmm.cli.hlmm_merge import main

if __name__ == "__main__":
    sys.exit(main())
