"""jwins_jax.analysis: loading runs, method keys, curves, reaching a target, fronts,
frames and tables, on run directories written here by hand (no simulation)."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from jwins_jax import analysis as an
from jwins_jax.config import Config
from jwins_jax.errors import ConfigError


def _record(rnd: int, acc: float, nbytes: float, clock: float | None = None) -> dict:
    rec = {
        "round": rnd,
        "test_acc": {"mean": acc, "std": 1.0, "min": acc - 2, "max": acc + 2},
        "bytes_per_node": nbytes,
        "meta_bytes_per_node": nbytes / 10,
    }
    if clock is not None:
        rec["sim_time_s"] = {"mean": clock, "min": clock - 1, "max": clock + 1}
    return rec


def _write_run(root: pathlib.Path, name: str, config: dict, records, status="finished"):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({**config, "name": name}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        summary = {"status": status, "rounds_done": records[-1]["round"]}
        summary["final"] = records[-1]
        (d / "summary.json").write_text(json.dumps(summary))
    return d


# Two seeds of JWINS and two of CHOCO-SGD; accuracy per evaluation and bytes.
ACC = {
    ("jwins", 1): [40.0, 70.0, 85.0, 91.0],
    ("jwins", 2): [45.0, 80.0, 88.0, 89.0],
    ("choco", 1): [30.0, 60.0, 90.0, 92.0],
    ("choco", 2): [35.0, 65.0, 70.0, 90.0],
}
STEP = {"jwins": 100.0, "choco": 300.0}  # bytes per node per evaluation


@pytest.fixture
def sweep_dir(tmp_path) -> pathlib.Path:
    root = tmp_path / "sweep-x"
    names = []
    for i, ((sharing, seed), accs) in enumerate(ACC.items()):
        cfg = {"sharing": sharing, "seed": seed, "nodes": 4}
        if sharing == "choco":
            cfg["alpha"] = 0.2
        step = STEP[sharing] + seed  # seeds send slightly different bytes
        recs = [
            _record(10 * (e + 1), a, step * (e + 1), clock=2.0 * (e + 1))
            for e, a in enumerate(accs)
        ]
        name = f"{i:03d}-{sharing}-{seed}"
        _write_run(root, name, cfg, recs)
        names.append({"name": name})
    names.append({"name": "004-never-started"})
    (root / "spec.json").write_text(json.dumps({"name": "x", "configs": names}))
    return root


def test_method_key_splits_accumulation_modes_from_the_defaults():
    key = lambda **kw: an.method_key(Config(**kw).resolved())  # noqa: E731
    assert key(sharing="topk") == "topk"
    assert key(sharing="topk", accumulation="none") == "topk"
    assert key(sharing="topk", accumulation="accumulate") == "topk_acc"
    assert key(sharing="topk", accumulation="legacy") == "topk_legacy"
    assert key(sharing="jwins") == "jwins"  # legacy accumulation is JWINS's own
    assert key(sharing="jwins", accumulation="none") == "jwins_noacc"
    assert key(sharing="wavelet", accumulation="accumulate") == "wavelet_acc"
    assert key(sharing="choco") == "choco" and key(sharing="full") == "full"


def test_budget_of_is_alpha_or_the_mean_of_the_alpha_list():
    assert an.budget_of(Config(sharing="full").resolved()) is None
    assert an.budget_of(Config(sharing="choco", alpha=0.25).resolved()) == 0.25
    jw = Config(sharing="jwins", alpha_list=(0.1, 0.2, 0.6)).resolved()
    assert an.budget_of(jw) == 0.3


@pytest.mark.parametrize("budget", [0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 1.0])
def test_scaled_alpha_list_has_the_budget_as_mean(budget):
    paper = an.PAPER_ALPHA_LIST
    lst = an.scaled_alpha_list(budget)
    assert len(lst) == len(paper) and all(0 < a <= 1 for a in lst)
    assert np.mean(lst) == pytest.approx(budget, abs=1e-4)
    ratios = [a / p for a, p in zip(lst, paper) if a < 1]
    if ratios:  # one scale factor for the entries below the cap of 1
        assert max(ratios) == pytest.approx(min(ratios), rel=1e-2)
    assert an.scaled_alpha_list(float(np.mean(paper))) == pytest.approx(paper, abs=2e-4)


def test_load_sweep_reads_started_runs_in_spec_order(sweep_dir):
    runs = an.load_sweep(sweep_dir)
    assert [r.name for r in runs] == sorted(p.name for p in sweep_dir.glob("00*"))
    assert [(r.method, r.config.seed) for r in runs] == list(ACC)
    assert [r.budget for r in runs] == [0.343, 0.343, 0.2, 0.2]
    assert all(r.status == "finished" and len(r.records) == 4 for r in runs)
    both = an.load_runs([sweep_dir, sweep_dir / "000-jwins-1"])
    assert [r.name for r in both] == [r.name for r in runs] + ["000-jwins-1"]
    with pytest.raises(ConfigError, match="neither a run directory"):
        an.load_runs([sweep_dir.parent])


def test_a_run_still_running_reads_its_last_record(tmp_path):
    d = _write_run(tmp_path, "r", {}, [_record(5, 50.0, 10.0)], status=None)
    run = an.load_run(d)
    assert run.status == "unknown" and run.summary is None
    assert run.final_value("test_acc") == 50.0 and run.method == "full"


def test_key_paths_take_a_summary_s_mean_and_read_missing_as_nan():
    rec = _record(10, 55.0, 123.0, clock=4.0)
    assert an.value(rec, "test_acc") == an.value(rec, "test_acc.mean") == 55.0
    assert an.value(rec, "test_acc.max") == 57.0
    assert an.value(rec, "sim_time_s") == 4.0
    assert math.isnan(an.value(_record(10, 55.0, 1.0), "sim_time_s"))
    assert math.isnan(an.value({"test_acc": {"mean": None}}, "test_acc"))


def test_curves_reach_and_best_within_follow_each_seed(sweep_dir):
    groups = an.group(an.load_sweep(sweep_dir))
    jw = groups[("jwins", 0.343)]
    c = an.curve(jw, x="bytes_per_node")
    assert c.seeds == 2
    for s, seed in enumerate((1, 2)):
        np.testing.assert_array_equal(c.y[s], ACC[("jwins", seed)])
        assert list(c.x[s]) == [(100.0 + seed) * (e + 1) for e in range(4)]
    np.testing.assert_allclose(c.y_std, np.std(c.y, axis=0, ddof=1))

    def first(seed, target, x):  # an independent loop over evaluations
        for e, a in enumerate(ACC[("jwins", seed)]):
            if a >= target:
                return x(seed, e)
        return None

    by_bytes = lambda seed, e: (100.0 + seed) * (e + 1)  # noqa: E731
    for target in (45.0, 80.0, 88.0, 89.0, 91.0):
        r = an.reach(c, target)
        want = [first(s, target, by_bytes) for s in (1, 2)]
        assert list(r.values) == want
        if None in want:
            assert not r.complete and r.mean is None and r.count == 1
        else:
            assert r.mean == pytest.approx(np.mean(want))
            assert r.std == pytest.approx(np.std(want, ddof=1))
    # the same rule on the simulated clock, and exactly at the target counts
    t = an.reach(an.curve(jw, x="sim_time_s"), 80.0)
    assert t.values == (6.0, 4.0)
    # best accuracy within 250 bytes: seed 1 has 2 evaluations there, seed 2 too
    assert an.best_within(c, 250.0).values == (70.0, 80.0)
    assert an.best_within(c, 50.0).values == (None, None)


def test_reach_columns_skip_axes_the_records_lack():
    recs = [_record(10, 50.0, 100.0), _record(20, 81.0, 200.0)]
    cols = an.reach_columns(recs, (50.0, 80.0, 90.0))
    assert cols == {"bytes_to_50": 100.0, "bytes_to_80": 200.0, "bytes_to_90": None}
    timed = [_record(10, 50.0, 100.0, clock=3.0), _record(20, 81.0, 200.0, clock=7.0)]
    cols = an.reach_columns(timed, (80.0,))
    assert cols == {"bytes_to_80": 200.0, "sim_time_s_to_80": 7.0}


def test_pareto_front_keeps_the_points_nothing_beats():
    pts = [(4.0, 70.0), (1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (2.0, 40.0), (5, 70)]
    want = [
        p
        for p in pts
        if not any(q[0] <= p[0] and q[1] > p[1] for q in pts)
        and not any(q[0] < p[0] and q[1] >= p[1] for q in pts)
    ]
    assert an.pareto_front(pts) == sorted(set(want))


def test_fronts_are_per_method(sweep_dir):
    fr = an.fronts(an.load_sweep(sweep_dir))
    assert set(fr) == {"jwins", "choco"}
    # JWINS's finals: (404, 91), (408, 89) -> only the first is on the front
    assert fr["jwins"] == [(404.0, 91.0)]
    assert fr["choco"] == [(1204.0, 92.0)]


def test_frames_have_one_row_per_run_and_per_evaluation(sweep_dir):
    pytest.importorskip("pandas")
    runs = an.load_sweep(sweep_dir)
    df = an.runs_frame(runs)
    assert len(df) == 4 and list(df["method"]) == [r.method for r in runs]
    assert list(df["test_acc_mean"]) == [ACC[k][-1] for k in ACC]
    assert list(df["seed"]) == [1, 2, 1, 2] and set(df["status"]) == {"finished"}
    m = an.metrics_frame(runs)
    assert len(m) == 16
    assert "sim_time_s_mean" in m.columns and "test_acc" not in m.columns
    sub = m[(m["method"] == "choco") & (m["seed"] == 2)]
    assert list(sub["test_acc_mean"]) == ACC[("choco", 2)]
    assert list(sub["round"]) == [10, 20, 30, 40]


def test_markdown_table_cells_read_back():
    text = an.markdown_table(["a", "b"], [[1, "x y"], [2.5, "-"]])
    lines = text.splitlines()
    assert lines[1] == "|---|---|"
    cells = [[c.strip() for c in li.strip("|").split("|")] for li in lines]
    assert cells[0] == ["a", "b"] and cells[2:] == [["1", "x y"], ["2.5", "-"]]
