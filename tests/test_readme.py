"""The README's code is real: its Python blocks run, and .ci/run reads its commands from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[tuple[str, str]]:
    """(prelude file or "", code) for each ```lang block; a block preceded by
    <!-- readme-prelude: FILE --> runs after FILE, which sets up what it assumes exists."""
    pat = rf"(?:<!-- readme-prelude: (\S+) -->\n)?```{lang}\n(.*?)```"
    return re.findall(pat, README, flags=re.S)


@pytest.mark.parametrize("i", range(len(_blocks("python"))))
def test_python_blocks_run(i: int, tmp_path: Path) -> None:
    prelude, code = _blocks("python")[i]
    if prelude:
        code = (ROOT / prelude).read_text() + "\n" + code
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=600)


@pytest.mark.parametrize("marker", ["setup", "test", "main"])
def test_ci_markers_precede_a_command_block(marker: str) -> None:
    m = re.search(rf"<!-- ci:{marker} -->\n```bash\n(.+?)\n", README)
    assert m and m.group(1).strip(), f"README lacks a command after <!-- ci:{marker} -->"


def test_ci_runs_the_readme_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    for marker in ("setup", "test", "main"):
        assert f"readme_cmd{'s' if marker == 'main' else ''} {marker}" in ci
