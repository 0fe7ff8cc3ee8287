"""Command-line programs of hlmm; each module has a ``main()``."""
