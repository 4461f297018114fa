"""The benchmark suite: ``--quick`` runs every section end to end (no timing asserted).

What is asserted: every section writes flat rows with the fields its report needs;
the per-node baseline ran without JAX and computed our round (trained models, shared
models, byte counts) and our kernels' outputs; the round without the clock is the
round with it less the clock; the report has every section and replaces its
generated block instead of growing; quick mode leaves RESULTS.md alone. Plus the
timer's pieces: turns alternate, other busy processes are counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from benchmarks import report, timing
from jwins_jax import kernelbench, sparsify

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SECTIONS = report.SECTIONS


def _digest(path: pathlib.Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    before = _digest(RESULTS)
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)]
    cmd += ["--results", str(out / "R.md")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = {s: json.loads((out / f"{s}.json").read_text()) for s in SECTIONS}
    return {"data": data, "report": (out / "R.md").read_text(), "before": before}


def test_sections_write_flat_rows_with_their_environment(quick):
    for name, section in quick["data"].items():
        env = section["env"]
        assert env["jax"] and env["device_kind"] and len(env["load_average"]) == 3, name
        assert section["rows"], name
        for row in section["rows"]:
            flat = (str, int, float, bool, type(None))
            assert all(isinstance(v, flat) for v in row.values()), (name, row)
            assert "error" not in row, (name, row)


def test_e2e_baseline_ran_apart_and_computed_our_round(quick):
    rows = quick["data"]["e2e"]["rows"]
    assert [r["strategy"] for r in rows] == ["full", "jwins"]
    for r in rows:
        assert r["base_jax_imported"] is False and r["base_torch_threads"] >= 1
        for way in ("ours", "base"):
            for part in ("round", "train", "share", "eval"):
                assert r[f"{way}_{part}_min_s"] <= r[f"{way}_{part}_s"], (way, part)
        assert r["ours_round_n"] == r["base_round_n"] >= 1
        assert r["check_train_error"] < 1e-4 and r["check_share_error"] < 1e-4
        assert r["check_bytes_equal"] is True
        assert {"load_before", "load_after", "busy_others"} <= set(r)
        assert r["finite"] is True


def test_kernels_are_bench_kernels_and_equal_the_per_node_outputs(quick):
    rows = quick["data"]["kernels"]["rows"]
    assert [r["family"] for r in rows] == [
        k.family for k in kernelbench.builtin_kernels()
    ]
    paired = {}
    for r in rows:
        assert r["correct"] is True and r["min_s"] <= r["median_s"] <= r["max_s"], r
        if "baseline" in r:
            paired.setdefault(r["baseline"], []).append(r["kernel"])
            assert r["baseline_median_s"] > 0 and r["baseline_repeats"] >= 1
            if r["exactness"] == "exact":
                assert r["baseline_error"] < 1e-5, r
    topk = [f"topk {m}" for m in sparsify.METHODS if m != "auto"]
    assert paired == {
        "per node wavelet_forward": [
            "wavelet sym2/4 polyphase forward",
            "wavelet sym2/4 jaxwt forward",
        ],
        "per node wavelet_inverse": [
            "wavelet sym2/4 polyphase inverse",
            "wavelet sym2/4 jaxwt inverse",
        ],
        "per node topk": [*topk, "lax.approx_max_k"],
        "per node fill_with_own": ["fill_with_own"],
        "per node mix": [f"full mix ({f})" for f in ("table", "bcoo", "dense")],
    }


def test_clock_section_times_the_round_with_and_without_the_clock(quick):
    (row,) = quick["data"]["clock"]["rows"]
    assert row["model"] == "digits_cnn" and row["strategy"] == "jwins"
    assert row["clock_n"] == row["no_clock_n"] == 2
    assert row["turn_ratio"] > 0
    # the clock moved in the one program only, and both trained the same models
    assert row["clock_shift_s"] > 0 and row["no_clock_shift_s"] == 0
    assert row["models_rel_diff"] < 1e-6


def test_points_ran_in_processes_of_their_own(quick):
    scaling = quick["data"]["scaling"]["rows"]
    assert {r["kind"] for r in scaling} == {"round", "share"}
    for r in scaling:
        assert r["peak_rss_bytes"] >= r["start_rss_bytes"] > 0
    devices = quick["data"]["devices"]["rows"]
    assert [r["devices"] for r in devices] == [1, 2]
    assert all(r["finite"] for r in devices)


def test_sweep_measures_every_way(quick):
    (row,) = quick["data"]["sweep"]["rows"]
    assert row["k"] == 2 and row["rounds"] == 4
    ways = ("processes", "sequential", "vmapped", "first_process", "startup")
    assert all(f"{w}_s" in row for w in ways)
    # K processes each start up and run: together they take longer than one start
    assert row["processes_s"] > row["startup_s"]


def test_report_has_every_section_and_leaves_results_alone(quick):
    text = quick["report"]
    for title in report.TITLES.values():
        assert f"### {title}" in text, title
    assert text.count("<!-- generated: ") == 1
    assert _digest(RESULTS) == quick["before"]


def test_report_update_replaces_the_devices_block(tmp_path):
    path = tmp_path / "R.md"
    path.write_text(f"# Results\n\nTargets.\n\n{report.HERE_MARK}\n\nReadings.\n")
    report.update(path, "first\n", "cpu full")
    report.update(path, "other device\n", "gpu full")
    report.update(path, "second\n", "cpu full")
    text = path.read_text()
    assert text.startswith("# Results\n\nTargets.\n") and text.endswith("Readings.\n")
    assert "first" not in text and text.count("second") == 1
    assert text.index("other device") < text.index("second") < text.index("Readings")


def test_interleave_alternates_the_ways_and_counts_other_busy_processes():
    order = []
    calls = [lambda: order.append("a") or {"a": 1.0}, lambda: order.append("b") or {}]
    # a busy process that is not ours: started by a process that exits at once
    spin = "import subprocess as s, sys; print(s.Popen([sys.executable, '-c', "
    spin += "'while True: pass'], stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"
    run = subprocess.run([sys.executable, "-c", spin], capture_output=True, text=True)
    other = int(run.stdout)
    mine = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        row = timing.interleave(calls + [lambda: time.sleep(0.8) or {}], 2)
        ours = timing.our_processes(timing._processes())
    finally:
        os.kill(other, signal.SIGKILL)
        mine.kill()
    assert order == ["a", "b"] * 3
    assert row["a_s"] == 1.0 and row["a_n"] == 2
    assert mine.pid in ours and other not in ours and os.getpid() in ours
    assert row["busy_others"] >= 1  # the other one
