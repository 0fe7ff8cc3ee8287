"""The documentation runs as written: the README's Python blocks and the scripts' --help."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_readme_quick_start_is_two_make_commands():
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make \w+", quick, flags=re.M)
    assert commands == ["make tutorial", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_documented_options_exist_in_scripts():
    documented = set(re.findall(r"``(--\w+)", (REPO / "docs" / "hlmm_chr.rst").read_text()))
    out = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), "--help"], capture_output=True,
                         text=True).stdout
    assert documented and all(opt in out for opt in documented), documented - set(re.findall(r"--\w+", out))


def test_column_tables_in_the_docs_come_from_the_registry():
    from hlmm import columns

    hlmm_chr = (REPO / "docs" / "hlmm_chr.rst").read_text()
    assert ".. include:: _generated/models_columns.rst" in hlmm_chr
    assert ".. include:: _generated/dispersion_columns.rst" in (REPO / "docs" / "dispersion.rst").read_text()
    table = columns.rst_table(columns.MODELS)
    for c in columns.MODELS:
        assert f"\n{c.name} " in table and c.doc in table
    # no hand-written copy of a column description elsewhere in the docs
    for page in (REPO / "docs").glob("*.rst"):
        assert "maximum of the log-likelihood (NaN" not in page.read_text(), page
