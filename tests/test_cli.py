"""The command line: end-to-end runs, results directory, and one-line errors (exit 2)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from jwins_jax import cli
from jwins_jax.config import Config

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = [
    "--nodes",
    "8",
    "--topology",
    "ring",
    "--partition",
    "iid",
    "--rounds",
    "40",
    "--eval-every",
    "20",
    "--local-steps",
    "2",
    "--batch-size",
    "16",
    "--lr",
    "0.1",
    "--seed",
    "1",
]


def _run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_end_to_end_learns_and_writes_results(tmp_path, capsys):
    code, out, err = _run(["run", *TINY, "--out-dir", str(tmp_path), "--quiet"], capsys)
    assert code == 0, err
    run_dir = pathlib.Path(out.strip().splitlines()[-1].split("results: ")[1])
    assert (run_dir / "config.json").is_file()
    assert (run_dir / "accuracy.png").stat().st_size > 1000
    records = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["round"] for r in records] == [20, 40]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    # 10 classes: chance is 10 %; a ring of 8 nodes on digits learns far beyond it.
    assert summary["final"]["test_acc"]["mean"] > 50.0
    assert summary["final"]["test_acc"]["min"] <= summary["final"]["test_acc"]["mean"]
    # full sharing on a ring: every node sends 4 N bytes to its 2 neighbours per round
    n_params = summary["n_params"]
    assert summary["final"]["bytes_per_node"] == pytest.approx(40 * 2 * 4 * n_params)
    assert summary["final"]["meta_bytes_per_node"] == 0
    assert "test acc" in out
    # simulated time at the default network (10 GFLOP/s, 100 Mbit/s, 1 ms): identical
    # nodes on a ring run in lockstep, each round the same closed form
    flops = 3 * 168_448 * 16 * 2 + n_params + 2 * 2 * n_params  # train; w_ii x; 2 msgs
    send = 4 * n_params / (100e6 / 8 / 2)  # two copies share the uplink
    per_round = flops / 10e9 + send + 1e-3
    for rec in records:
        assert rec["sim_time_s"]["min"] == pytest.approx(rec["round"] * per_round)
        assert rec["sim_time_s"]["max"] == pytest.approx(rec["round"] * per_round)
    assert summary["final"]["sim_compute_s"] == pytest.approx(40 * flops / 10e9)
    assert (run_dir / "accuracy_vs_time.png").stat().st_size > 1000


def test_config_file_and_flags_combine(tmp_path, capsys):
    cfg = tmp_path / "exp.json"
    cfg.write_text(
        json.dumps(
            {
                "nodes": 8,
                "topology": "ring",
                "rounds": 4,
                "eval_every": 2,
                "partition": "iid",
                "out_dir": str(tmp_path),
            }
        )
    )
    code, out, err = _run(
        ["run", "--config", str(cfg), "--rounds", "2", "--quiet", "--name", "x"], capsys
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "x" / "summary.json").read_text())
    assert summary["rounds_done"] == 2


def test_compare_writes_table_and_plot(tmp_path, capsys):
    code, out, err = _run(
        [
            "compare",
            "--strategies",
            "full,jwins",
            *TINY,
            "--rounds",
            "20",
            "--out-dir",
            str(tmp_path),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert "full" in out and "jwins" in out and "vs full" in out
    out_dir = pathlib.Path(out.strip().splitlines()[-1].split("results: ")[1])
    assert (out_dir / "accuracy_vs_bytes.png").is_file()
    comp = json.loads((out_dir / "comparison.json").read_text())
    ratio = (
        comp["jwins"]["final"]["bytes_per_node"]
        / comp["full"]["final"]["bytes_per_node"]
    )
    # JWINS sends on average well under half of the coefficients (SPEC 4.5: mean alpha 0.34
    # with one full share in seven), plus a little index metadata.
    assert 0.15 < ratio < 0.75


def _edges(tmp_path, text):
    p = tmp_path / "g.edges"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "text,nodes,message",
    [
        ("4\n0 1\n1 two\n", 4, "line 3"),
        ("4\n0 1\n1 1\n2 3\n", 4, "self loop"),
        ("5\n0 1\n1 2\n2 3\n3 4\n4 0\n", 4, "nodes=4"),
        ("4\n0 1\n2 3\n", 4, "disconnected"),
    ],
)
def test_bad_edges_files(tmp_path, capsys, text, nodes, message):
    path = _edges(tmp_path, text)
    code, out, err = _run(
        [
            "run",
            "--nodes",
            str(nodes),
            "--edges-file",
            path,
            "--rounds",
            "1",
            "--out-dir",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_console_script_help_lists_every_option():
    exe = pathlib.Path(sys.executable).with_name("jwins")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "jwins_jax.cli"]
    out = subprocess.run(
        cmd + ["run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for field in Config.fields():
        assert "--" + field.replace("_", "-") in out
    top = subprocess.run(
        cmd + ["--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "run" in top and "compare" in top


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "jwins_jax.cli",
        "run",
        "--topology",
        "nope",
        "--out-dir",
        str(tmp_path),
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "topology='nope' is unknown" in proc.stderr


def test_divergence_stops_and_keeps_metrics(tmp_path, capsys):
    code, out, err = _run(
        [
            "run",
            *TINY,
            "--lr",
            "1e8",
            "--rounds",
            "60",
            "--eval-every",
            "5",
            "--out-dir",
            str(tmp_path),
            "--name",
            "div",
            "--quiet",
        ],
        capsys,
    )
    assert code == 1
    assert "NaN or infinite" in err
    run_dir = tmp_path / "div"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 1
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"
