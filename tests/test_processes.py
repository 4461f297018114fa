"""Several processes (jax.distributed) on this machine: 2 processes of 2 CPU devices
each (gloo collectives) give the metrics of one process; a lost process or a Ctrl-C
stops both with a truthful summary.

Every case starts ``python -m jwins_jax.cli`` twice, as a user would on two hosts.
The configs differ only in their rounds, which the compiled block does not depend
on, so the processes share the persistent compilation cache of the session.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from jwins_jax import runner
from jwins_jax import sweep as sw
from jwins_jax.config import Config
from jwins_jax.results import read_metrics, read_summary

FLAGS = {
    "nodes": 8,
    "topology": "ring",
    "eval_every": 2,
    "local_steps": 1,
    "test_subset": 64,
    "lr": 0.1,
    "sharing": "full",
    "eval_nodes": 4,  # a sampled evaluation: the same nodes in every process
    "rounds": 4,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(command: list[str], flags: dict) -> list[str]:
    out = list(command)
    for k, v in flags.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


def _start(argv: list[str], cwd) -> list[subprocess.Popen]:
    """Process 1 then process 0 of ``jwins ARGV`` joined over a local coordinator."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    port = _free_port()
    procs = []
    for pid in (1, 0):
        cmd = [sys.executable, "-m", "jwins_jax.cli", *argv]
        cmd += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
        cmd += ["--process-id", str(pid), "--quiet"]
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs[::-1]  # [process 0, process 1]


def _finish(procs, timeout=600) -> list[tuple[int, str, str]]:
    results = []
    for i, p in enumerate(procs):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise AssertionError(f"process {i} did not end: {err[-3000:]}") from None
        results.append((p.returncode, out, err))
    return results


def _assert_same_metrics(a: list[dict], b: list[dict]) -> None:
    """Equal up to the order of floating-point sums (as tests/test_devices.py)."""
    assert [r["round"] for r in a] == [r["round"] for r in b]
    for x, y in zip(a, b):
        assert x["bytes_per_node"] == y["bytes_per_node"]
        assert x["eval_nodes"] == y["eval_nodes"]
        assert x["test_acc"]["mean"] == pytest.approx(y["test_acc"]["mean"], abs=0.05)
        assert x["train_loss"]["mean"] == pytest.approx(
            y["train_loss"]["mean"], rel=1e-4
        )
        assert x["consensus_distance"] == pytest.approx(
            y["consensus_distance"], rel=1e-3, abs=1e-7
        )


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The metrics of the config run in this one process (one device)."""
    out = tmp_path_factory.mktemp("single")
    runner.run_config(Config(**FLAGS, name="one", out_dir=str(out)))
    return read_metrics(out / "one")


def test_sweep_batch_over_two_processes_equals_one(tmp_path, single):
    """A batch of two configs (lr 0.1 and 0.2) vmapped over 2 processes: the lr = 0.1
    config gives the metrics of the same config run in one process (a config of a
    batch equals the config alone, tests/test_sweep.py)."""
    spec = {
        "name": "two",
        "batch": 2,
        "base": {**FLAGS, "out_dir": str(tmp_path / "multi")},
        "grid": {"lr": [0.1, 0.2]},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    (rc0, _, err0), (rc1, _, err1) = _finish(_start(["sweep", str(path)], tmp_path))
    assert rc0 == 0 and rc1 == 0, err0[-2000:] + err1[-2000:]
    root = tmp_path / "multi" / "sweep-two"
    assert (root / "sweep.csv").is_file()
    names = [sc.config.name for sc in sw.parse_spec(spec).configs]
    first, second = (read_metrics(root / name) for name in names)
    _assert_same_metrics(first, single)
    assert [r["round"] for r in second] == [2, 4]
    assert second[-1]["train_loss"]["mean"] != first[-1]["train_loss"]["mean"]


def _wait_for_metrics(run_dir, procs, count, timeout=300) -> list[dict]:
    start = time.time()
    while len(read_metrics(run_dir)) < count:
        assert all(p.poll() is None for p in procs), "a process ended early"
        assert time.time() - start < timeout, "no evaluation came"
        time.sleep(0.2)
    return read_metrics(run_dir)


def test_run_over_two_processes_equals_one_stops_and_resumes_together(tmp_path, single):
    """One run over 2 processes: its first evaluations equal the run in one process;
    a Ctrl-C in process 0 stops both after the same round (checkpoint, interrupted
    summary, exit 130); resumed over 2 processes, it fails with a truthful summary
    when process 1 is killed."""
    run_dir = tmp_path / "two"
    flags = {**FLAGS, "rounds": 100_000, "name": "two", "out_dir": str(tmp_path)}
    procs = _start(_argv(["run"], flags), tmp_path)
    try:
        records = _wait_for_metrics(run_dir, procs, len(single))
        procs[0].send_signal(signal.SIGINT)
        (rc0, _, err0), (rc1, _, err1) = _finish(procs, timeout=300)
    finally:
        for p in procs:
            p.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]  # one directory
    assert [r["eval_nodes"] for r in records[: len(single)]] == [4, 4]
    _assert_same_metrics(records[: len(single)], single)  # rounds do not matter
    assert rc0 == 130 and rc1 == 130, err0[-2000:] + err1[-2000:]
    assert "interrupted" in err0 and "interrupted" in err1
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and summary["processes"] == 2
    assert "stopped by Ctrl-C after round" in summary["error"]
    done = summary["rounds_done"]
    assert (run_dir / "checkpoints" / str(done)).is_dir()

    procs = _start(["run", "--resume", str(run_dir)], tmp_path)
    try:
        _wait_for_metrics(run_dir, procs, len(read_metrics(run_dir)) + 1)
        procs[1].kill()
        (rc0, _, err0), _ = _finish(procs, timeout=120)
    finally:
        for p in procs:
            p.kill()
    assert rc0 == 1
    assert "another of the 2 processes stopped or failed" in err0
    summary = read_summary(run_dir)
    assert summary["status"] == "failed" and summary["resumed"]
    assert "another of the 2 processes" in summary["error"]
    assert summary["rounds_done"] == read_metrics(run_dir)[-1]["round"] > done
