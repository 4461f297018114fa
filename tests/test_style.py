"""The code keeps one style: ruff's lint rules and formatter (settings in pyproject.toml)."""

import pathlib
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PATHS = ["jwins_jax", "benchmarks", "tests", "examples"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent)) or "ruff"
    return subprocess.run(
        [exe, *args, *PATHS], cwd=REPO, capture_output=True, text=True
    )


def test_lint_rules_pass():
    proc = _ruff("check", "--no-cache")
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_formatter_changes_nothing():
    proc = _ruff("format", "--check", "--no-cache")
    assert proc.returncode == 0, proc.stdout[-3000:]
