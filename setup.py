"""Package metadata for hlmm; tool configuration lives in pyproject.toml."""
import re
from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "hlmm" / "__init__.py").read_text()).group(1)

setup(
    name="hlmm",
    version=VERSION,
    description="Heteroskedastic linear (mixed) models for genetic association scans of mean and variance",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["hlmm", "hlmm.*"]),
    # The hard-call class sums (hlmm/engines/_classsums.c), loaded with ctypes rather than imported:
    # optional, as hlmm falls back to numba kernels that give the same sums to the last bit
    ext_modules=[Extension("hlmm.engines._classsums", ["hlmm/engines/_classsums.c"],
                           extra_compile_args=["-O3", "-ffp-contract=off"], optional=True)],
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "threadpoolctl>=3",
        "tqdm>=4.60",  # progress bar on a terminal
        "pgenlib>=0.91",  # .pgen reader (plink2's own library)
        "zstandard>=0.19",  # BGEN v1.3 and .pvar.zst
        "numba>=0.59",  # compiled pass over packed .bed bytes (fast engine)
        "statsmodels>=0.14",  # robust regression for dispersion effects
    ],
    extras_require={
        # pysnptools (and six, which it imports without declaring it) run hlmm 1.2.0a1 in the
        # comparison tests and check our .bed decoding
        "test": ["pytest>=7", "numdifftools>=0.9.41", "statsmodels>=0.14", "matplotlib>=3.6", "sphinx>=7",
                 "dask[distributed]>=2024.1", "ruff>=0.5", "pysnptools>=0.5.10", "six", "pandas>=2",
                 "isal>=1.0"],  # and isal, so that the tests run both gzip libraries
        "plot": ["matplotlib>=3.6"],
        "docs": ["sphinx>=7"],
        "dask": ["dask[distributed]>=2024.1"],
        "fast": ["isal>=1.0"],  # faster inflate of .bgen blocks and gzip of the outputs
    },
    entry_points={
        "console_scripts": [
            "hlmm_chr=hlmm.cli.hlmm_chr:main",
            "fit_hlmm_model=hlmm.cli.fit_hlmm_model:main",
            "hlmm_dispersion=hlmm.cli.hlmm_dispersion:main",
            "hlmm_merge=hlmm.cli.hlmm_merge:main",
            "hlmm_sumstats=hlmm.cli.hlmm_sumstats:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
