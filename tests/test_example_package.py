"""The example strategy package (examples/jwins_relthresh) as a user installs it.

The package is built offline from a copy of its sources and installed without its
dependencies into a temporary target directory; with that directory on
``PYTHONPATH`` its entry point registers ``relthresh``. Then its own test runs (the
contract kit and its byte counts) and ``jwins compare --strategies jwins,relthresh``
runs it next to JWINS.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "jwins_relthresh"


def _run(cmd: list[str], cwd: pathlib.Path, env: dict[str, str], timeout=600):
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited with {result.returncode}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[pathlib.Path, dict[str, str]]:
    """The example installed into a target directory; returns (sources, env)."""
    root = tmp_path_factory.mktemp("example")
    src = root / "src"
    shutil.copytree(
        EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    target = root / "target"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(src),
        ],
        root,
        env,
    )
    assert (target / "jwins_relthresh" / "__init__.py").is_file()
    paths = [str(target), str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return src, env


def test_its_own_test_passes_with_the_contract_kit(installed):
    src, env = installed
    out = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        src,
        env,
    )
    assert "3 passed" in out.stdout


def test_jwins_compare_runs_it_next_to_jwins(installed, tmp_path):
    _, env = installed
    out = _run(
        [
            sys.executable,
            "-m",
            "jwins_jax.cli",
            "compare",
            "--strategies",
            "jwins,relthresh",
            "--nodes",
            "8",
            "--topology",
            "ring",
            "--rounds",
            "4",
            "--eval-every",
            "2",
            "--local-steps",
            "1",
            "--test-subset",
            "32",
            "--level",
            "2",
            "--tau",
            "0.3",
            "--out-dir",
            "out",
            "--name",
            "cmp",
            "--quiet",
        ],  # fmt: skip
        tmp_path,
        env,
    )
    assert "relthresh" in out.stdout
    comparison = json.loads((tmp_path / "out" / "cmp" / "comparison.json").read_text())
    assert set(comparison) == {"jwins", "relthresh"}
    for summary in comparison.values():
        assert summary["status"] == "finished"
        assert 0 < summary["final"]["bytes_per_node"]
    assert comparison["relthresh"]["sharing_params"]["tau"] == 0.3
