"""The benchmark suite's quick mode runs end to end and writes complete JSON (issue 4).

No timing assertions: only that every section ran, wrote the expected keys, that the
per-node baseline computes the same sharing step as the simulator, and that quick
mode leaves ``benchmarks/RESULTS.md`` alone.
"""

import hashlib
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _digest(path: pathlib.Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    before = _digest(RESULTS)
    results = out / "QUICK_RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--out",
            str(out / "json"),
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out / "json", "results": results, "before": before}


def _load(run, name):
    path = run["out"] / f"{name}.json"
    assert path.is_file(), f"{name}.json was not written"
    return json.loads(path.read_text())


def test_every_section_writes_its_json(quick_run):
    for name in (
        "machine",
        "e2e",
        "kernels",
        "scaling",
        "sweep",
        "devices",
        "gpu",
        "summary",
    ):
        assert (quick_run["out"] / f"{name}.json").is_file(), name
    machine = _load(quick_run, "machine")
    assert machine["quick"] is True
    for key in ("date", "device_kind", "backend", "cpu_model", "jax"):
        assert machine["env"][key], key
    assert machine["matmul"]["gflops"] > 0
    assert machine["matmul"]["size"] == 2048


def test_e2e_has_the_split_and_the_per_node_comparison(quick_run):
    e2e = _load(quick_run, "e2e")
    assert set(e2e["models"]) == {"digits_cnn"}
    res = e2e["models"]["digits_cnn"]
    for part in ("train", "evaluate"):
        assert res[part]["median_s"] > 0 and "compile_s" in res[part]
    assert res["train"]["fraction_of_matmul"] > 0
    assert res["forward_flops_per_sample"] == 2 * (
        64 * 16 * 9 + 16 * 16 * 32 * 9 + 1280
    )
    for strategy in ("full", "jwins"):
        entry = res[strategy]
        for part in ("share", "round"):
            assert entry[part]["median_s"] > 0 and "compile_s" in entry[part]
        assert entry["round"]["retraces_after_first_call"] == 0
        assert entry["round"]["finite"] is True
        for part in ("round", "train", "share"):
            assert entry["pernode"][part]["median_s"] > 0
            assert entry["ratios"][part] > 0
        # the per-node baseline does the same work as the vectorized step
        assert entry["pernode"]["check"]["ok"], entry["pernode"]["check"]
        torch_way = entry["pernode_torch"]
        if HAS_TORCH:  # PyTorch training per node, the same host sharing
            for part in ("round", "train", "share"):
                assert torch_way[part]["median_s"] > 0
                assert entry["ratios_torch"][part] > 0
            assert torch_way["check"]["ok"], torch_way["check"]
        else:
            assert "torch not installed" in torch_way["skipped"]
    parts = res["jwins"]["share_breakdown"]
    assert set(parts["vectorized"]) == set(parts["pernode"]) == set(parts["per_step"])
    assert parts["per_step"]["forward"] == 3
    assert parts["M"] > parts["N"] == res["config"]["n_params"]


def test_kernels_cover_every_family_and_method(quick_run):
    kernels = _load(quick_run, "kernels")
    (point,) = [p for p in kernels["points"] if "skipped" not in p]
    assert set(point["wavelet"]) == {"polyphase", "jaxwt", "pywt (per node)"}
    assert len(point["selection"]) == 6  # 4 METHODS entries, approx_max_k, NumPy
    assert any("argpartition" in name for name in point["selection"])
    assert {"mix (neighbour table)", "mix_bcoo", "mix_dense"} <= set(point["gossip"])
    for family in ("wavelet", "selection", "gossip"):
        for name, stats in point[family].items():
            if "approx" in name:
                continue  # approximate by design
            assert stats["correct"], (family, name)
        assert point["fastest"][family] in point[family]
    assert kernels["defaults"]["wavelet_auto"].endswith("polyphase")


def test_scaling_points_run_in_subprocesses_and_plot(quick_run):
    scaling = _load(quick_run, "scaling")
    kinds = {p["kind"] for p in scaling["points"]}
    assert kinds == {"round", "share"}
    for p in scaling["points"]:
        assert "error" not in p, p
        assert p["max_rss_bytes"] > p["rss_after_imports_bytes"] > 0
        assert p["time"]["median_s"] > 0
    assert (quick_run["out"] / "scaling.png").stat().st_size > 1000


def test_sweep_section_times_the_three_ways(quick_run):
    sweep = _load(quick_run, "sweep")
    (row,) = sweep["rows"]
    assert row["k"] == 2
    for way in ("vmapped", "sequential", "processes"):
        assert row[way]["wall_s"] > 0 and row[way]["configs_per_hour"] > 0
    assert row["processes"]["extrapolated"] is True  # one process timed, two scaled
    assert row["ratio_vs_processes"] > 0
    assert "### Sweeps" in quick_run["results"].read_text()


def test_devices_section_runs_one_process_per_device_count(quick_run):
    points = _load(quick_run, "devices")["points"]
    assert [p["devices"] for p in points] == [1, 2]
    for p in points:
        assert "error" not in p, p
        assert p["rounds_per_s"] > 0
    assert points[1]["mesh"] == 2  # 8 nodes split over the 2 forced devices
    assert "### Devices" in quick_run["results"].read_text()


def test_gpu_section_runs_reduced_on_cpu(quick_run):
    gpu = _load(quick_run, "gpu")
    assert gpu["paper"]["extrapolated_run_s"] > gpu["paper"]["block_s"] > 0
    assert gpu["evaluation"]["images_per_s"] > 0
    assert [r["sharing"] for r in gpu["rounds"]] == ["full", "jwins"]
    assert all(r["rounds_per_s"] > 0 and r["finite"] for r in gpu["rounds"])
    assert [r["train_chunk"] for r in gpu["train_chunk"]] == [2, 8]
    assert all(r["rounds_per_s"] > 0 for r in gpu["train_chunk"])
    assert "### Accelerator" in quick_run["results"].read_text()


def test_report_has_every_section(quick_run):
    summary = _load(quick_run, "summary")
    assert summary["quick"] is True
    assert set(summary["sections"]) >= {"machine", "e2e", "kernels", "scaling"}
    text = quick_run["results"].read_text()
    for heading in (
        "## ",
        "### Machine reference",
        "### End to end",
        "### Kernels",
        "### Scaling",
    ):
        assert heading in text, heading
    # quick mode with --results writes there, never to benchmarks/RESULTS.md
    assert _digest(RESULTS) == quick_run["before"]


def test_quick_mode_does_not_append_by_default():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(RUN.parent))
    try:
        spec.loader.exec_module(module)
        assert module.parse_args(["--quick"]).results is None
        assert module.parse_args([]).results == RESULTS
    finally:
        sys.path.remove(str(RUN.parent))


def test_e2e_covers_every_model_and_says_when_torch_is_missing(quick_run, monkeypatch):
    """Every registered model has a workload and a FLOP count; without PyTorch the
    per-node PyTorch way is reported as not installed, not as an error."""
    monkeypatch.syspath_prepend(str(RUN.parent))
    import bench_e2e
    import pernode
    import report
    import torch_baseline

    from jwins_jax.models import MODELS

    assert set(bench_e2e.MODELS) == set(MODELS)
    assert bench_e2e.models_of(type("O", (), {"models": ["all"]})) == list(
        bench_e2e.MODELS
    )
    for name, workload in bench_e2e.MODELS.items():
        assert pernode.forward_flops(name) > 0
        assert workload.local_steps <= workload.paper_local_steps
    monkeypatch.setattr(torch_baseline, "torch_available", lambda: False)
    plan = bench_e2e.plan_for(bench_e2e.MODELS["femnist_cnn"], None)  # no opts
    skipped = bench_e2e._pernode_torch_rounds(None, "jwins", plan, check=True)
    assert "torch not installed" in skipped["skipped"]
    e2e = _load(quick_run, "e2e")
    res = e2e["models"]["digits_cnn"]
    for strategy in ("full", "jwins"):
        res[strategy]["pernode_torch"] = skipped
        res[strategy].pop("ratios_torch", None)
    assert "torch not installed" in "\n".join(report.e2e_lines(e2e))


def test_paper_rounds_times_the_paper_configs_on_stand_ins(monkeypatch):
    monkeypatch.syspath_prepend(str(RUN.parent))
    import paper_rounds

    femnist = paper_rounds.paper_config("femnist")
    assert (femnist.dataset, femnist.nodes, femnist.local_steps) == (
        "synthetic_femnist",
        96,
        47,
    )
    assert (femnist.batch_size, femnist.sharing) == (16, "jwins")
    out = paper_rounds.main(
        ["--workloads", "movielens", "--nodes", "8", "--repeats", "1"]
    )
    r = out["results"]["movielens"]
    assert r["median_s"] > 0 and r["compile_s"] > 0 and r["finite"]
    assert (r["local_steps"], r["batch_size"], r["nodes"]) == (10, 16, 8)
    assert "| movielens |" in "\n".join(paper_rounds.table(out["results"]))


def test_per_node_top_k_breaks_ties_to_the_lower_index(monkeypatch):
    """SPEC's tie rule, as the simulator's selection (MovieLens has many ties)."""
    monkeypatch.syspath_prepend(str(RUN.parent))
    import numpy as np
    import pernode

    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 40))
        score = rng.integers(0, 3, m).astype(np.float32)
        k = int(rng.integers(0, m + 2))
        want = np.sort(np.argsort(-score, kind="stable")[:k])
        np.testing.assert_array_equal(pernode.top_k_indices(score, k), want)
