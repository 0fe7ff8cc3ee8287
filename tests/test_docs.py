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
    out = subprocess.run([sys.executable, str(REPO / "bin" / "hlmm_chr.py"), "--help"], capture_output=True, text=True).stdout
    assert documented and all(opt in out for opt in documented), documented - set(re.findall(r"--\w+", out))
