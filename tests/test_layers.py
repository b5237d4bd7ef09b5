"""The layers are a rule of the code: the import contracts in ``pyproject.toml`` hold, and a wrong
import (a stage importing the CLI or another stage, ffmpeg run or described outside ``stages.ffmpeg``)
breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on ``project``'s own packages and contracts."""
    assert LINT_IMPORTS.exists(), "make test installs import-linter (the test extra)"
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=project, env=env, capture_output=True, text=True, check=False
    )


def test_the_import_contracts_are_kept():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "wrong", "reported"),
    [
        ("stages/fetch.py", "import pipeline.cli", "stages.fetch -> pipeline.cli"),
        ("stages/remux.py", "import stages.fetch", "stages.remux -> stages.fetch"),
        ("stages/merge.py", "import subprocess", "stages.merge -> subprocess"),
        ("pipeline/samples/composite.py", "import ffmpeg", "pipeline.samples.composite -> ffmpeg"),
    ],
    ids=["stage-imports-cli", "stage-imports-stage", "ffmpeg-outside-its-module", "argv-outside-its-module"],
)
def test_a_wrong_import_breaks_them(tmp_path, module, wrong, reported):
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    path = copy / module
    path.write_text(path.read_text() + f"\n{wrong}  # a wrong import, on purpose\n")
    done = lint_imports(copy)
    assert done.returncode != 0
    assert reported in done.stdout
