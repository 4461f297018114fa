"""The package as pip installs it: a wheel in a fresh environment, outside the checkout.

The wheel is built offline from a copy of the package's sources, installed without
its dependencies into a new virtual environment (which sees the test environment's
site-packages through a ``.pth`` file, so nothing is downloaded), and ``jwins run``
is started from a directory outside the checkout: the default paper graph must come
from inside the installed package, and so must ``jwins reproduce``'s sweep specs and
report template.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: pathlib.Path, env: dict[str, str], timeout: float = 300):
    result = subprocess.run(
        cmd,
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited with {result.returncode}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    return result


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["JAX_PLATFORMS"] = "cpu"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> pathlib.Path:
    """A fresh virtual environment holding only our wheel; returns its bin folder."""
    root = tmp_path_factory.mktemp("packaging")
    env = _clean_env()
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "jwins_jax",
        src / "jwins_jax",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    dist = root / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "-w",
            str(dist),
            str(src),
        ],
        root,
        env,
    )
    wheels = list(dist.glob("jwins_jax-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
    assert "jwins_jax/resources/96_regular.edges" in names
    assert "jwins_jax/resources/16_regular.edges" in names
    assert "jwins_jax/resources/reproduction_template.md" in names
    for spec in ("digits_claim1", "digits_claim2", "cifar10_claim1", "cifar10_claim2"):
        assert f"jwins_jax/resources/sweeps/{spec}.toml" in names

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    py = venv / "bin" / "python"
    purelib = _run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        root,
        env,
    ).stdout.strip()
    # The dependencies come from this environment, listed after the venv's own
    # site-packages, so the wheel's jwins_jax is the one imported.
    paths = sysconfig.get_paths()
    ours = dict.fromkeys(site.getsitepackages() + [paths["purelib"], paths["platlib"]])
    pathlib.Path(purelib, "test_dependencies.pth").write_text("\n".join(ours) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheels[0]),
        ],
        root,
        env,
    )
    return venv / "bin"


def test_installed_package_is_the_wheel_with_its_graph(installed, tmp_path):
    code = (
        "import jwins_jax, jwins_jax.topology as t; "
        "print(jwins_jax.__file__); print(t.PAPER_GRAPH); "
        "print(t.PAPER_GRAPH.is_file())"
    )
    out = _run([str(installed / "python"), "-c", code], tmp_path, _clean_env())
    module, graph, exists = out.stdout.split("\n")[:3]
    venv = installed.parent.resolve()
    assert pathlib.Path(module).resolve().is_relative_to(venv)
    assert pathlib.Path(graph).resolve().is_relative_to(venv)
    assert exists == "True"
    assert not pathlib.Path(module).resolve().is_relative_to(REPO)


@pytest.mark.parametrize(
    "flags",
    [
        ["--nodes", "8", "--topology", "ring", "--rounds", "2", "--eval-every", "1"],
        ["--rounds", "1", "--eval-every", "1"],  # 96 nodes on the paper's graph
    ],
    ids=["ring8", "paper_graph96"],
)
def test_jwins_run_works_from_another_directory(installed, tmp_path, flags):
    _run(
        [
            str(installed / "jwins"),
            "run",
            *flags,
            "--test-subset",
            "50",
            "--out-dir",
            "out",
            "--name",
            "r",
            "--quiet",
        ],
        tmp_path,
        _clean_env(),
    )
    summary = json.loads((tmp_path / "out" / "r" / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["rounds_done"] == int(flags[flags.index("--rounds") + 1])
    lines = (tmp_path / "out" / "r" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == summary["rounds_done"]
    assert json.loads(lines[-1])["bytes_per_node"] > 0


def test_jwins_reproduce_works_from_another_directory(installed, tmp_path):
    env = _clean_env()
    jwins = str(installed / "jwins")
    out = _run([jwins, "reproduce", "--help"], tmp_path, env).stdout
    assert "--output-dir" in out and "--report-only" in out
    args = [jwins, "reproduce", "--dry-run", "--rounds", "2", "--seeds", "1"]
    out = _run(args + ["--output-dir", "here"], tmp_path, env).stdout
    assert "sweep 'digits_claim1': 2 configs" in out
    assert "sweep 'digits_claim2': 24 configs" in out
    assert "here/REPRODUCTION.md" in out
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing
