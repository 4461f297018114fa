"""Sweeps: spec parsing, grouping, batching, one program per group, resume,
divergence, bad input, and vmapped configs equal to the same configs run alone."""

import csv
import errno
import json
import os
import pathlib

import jax
import numpy as np
import pytest

from jwins_jax import cli, resources, results, runner
from jwins_jax import experiment as ex
from jwins_jax import sweep as sw
from jwins_jax.config import Config
from jwins_jax.errors import RunFailed
from jwins_jax.results import RunLog, read_metrics

BASE = {
    "nodes": 6,
    "topology": "ring",
    "partition": "dirichlet",
    "rounds": 4,
    "eval_every": 2,
    "local_steps": 1,
    "batch_size": 8,
    "test_subset": 64,
}


def _spec(tmp_path, **extra):
    data = {"name": "t", "base": {**BASE, "out_dir": str(tmp_path)}}
    data.update(extra)
    return data


def _csv(root: pathlib.Path) -> list[dict]:
    with open(root / "sweep.csv") as f:
        return list(csv.DictReader(f))


class _Traces:
    """Counts how often the round loop is traced (compiled)."""

    def __init__(self, monkeypatch):
        self.count = 0
        original = ex.Experiment.advance

        def counted(exp_self, *args, **kwargs):
            self.count += 1
            return original(exp_self, *args, **kwargs)

        monkeypatch.setattr(ex.Experiment, "advance", counted)


# ------------------------------------------------------------------- parsing
def test_grid_and_explicit_configs_expand_and_group(tmp_path):
    spec = sw.parse_spec(
        _spec(
            tmp_path,
            grid={"lr": [0.05, 0.1], "seed": [1, 2]},
            configs=[
                {"sharing": "full"},
                {"sharing": "jwins", "alpha_list": [[0.1, 1.0], [0.2]]},
                {"sharing": "choco", "alpha": [0.1, 0.2]},
            ],
        )
    )
    assert len(spec.configs) == 4 + 8 + 8
    assert spec.axes[:3] == ["sharing", "alpha_list", "lr"] or set(spec.axes) >= {
        "sharing",
        "alpha_list",
        "alpha",
        "lr",
        "seed",
    }
    groups = spec.groups()
    # full: one group; jwins: two alpha-list lengths; choco: one group (alpha traced)
    assert sorted(len(g) for g in groups) == [4, 4, 4, 8]
    names = [sc.config.name for sc in spec.configs]
    assert len(set(names)) == len(names) and names[0].startswith("000-sharing=full")
    text = sw.describe(spec, batch=3)
    assert "group 3" in text and "batches: 3 of <= 3" in text


def test_auto_batch_follows_free_memory(tmp_path):
    spec = sw.parse_spec(_spec(tmp_path, grid={"seed": [1, 2, 3, 4]}))
    exp = ex.build_experiment(
        spec.configs[0].config, ex.load_data(spec.configs[0].config)
    )
    per = sw.state_bytes(exp)
    assert per > 6 * exp.n_params * 4 * 0.99  # at least the (n, N) models
    assert sw.auto_batch(exp, 4, free=1) == 1
    assert sw.auto_batch(exp, 4, free=10**12) == 4
    assert sw.auto_batch(exp, 4, free=int(2 * sw.MEMORY_FACTOR * per * 2)) == 2


BAD_SPECS = [
    ({"grid": {"learning_rate": [0.1]}}, "unknown field grid.'learning_rate'"),
    ({"grid": {"lr": []}}, "grid.lr is empty"),
    ({"grid": {"lr": 0.1}}, "grid.lr must be a non-empty list"),
    ({"grid": {"lr": ["fast"]}}, "lr='fast' is not allowed"),
    ({"grid": {"lr": [-1.0]}}, "lr=-1.0 is not allowed"),
    ({"grid": {"rounds": [2, 4]}, "one_program": True}, "rounds is a static option"),
    (
        {"grid": {"alpha_list": [0.1, 0.2]}},
        "grid.alpha_list must be a non-empty list of lists",
    ),
    ({"configs": []}, "configs is empty"),
    ({"configs": {"sharing": "full"}}, "configs must be an array of tables"),
    ({"speed": 3}, "unknown key 'speed'"),
    ({"configs": [{"sharing": "gossip"}]}, "sharing='gossip' is unknown"),
    ({"batch": 0}, "batch=0 is not allowed"),
    ({"targets": [80, 120]}, "targets=[80, 120] is not allowed"),
    ({"targets": 80}, "targets=80 is not allowed"),
    ({"grid": {"dynamic": ["false"]}}, "dynamic='false' is not allowed"),
]


@pytest.mark.parametrize("extra,message", BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_bad_specs_are_one_line_exit_2_and_write_nothing(
    tmp_path, capsys, extra, message
):
    path = tmp_path / "spec.json"
    out = tmp_path / "out"
    path.write_text(json.dumps(_spec(out, **extra)))
    code = cli.main(["sweep", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not out.exists(), "nothing may be written for a bad spec"


def test_invalid_toml_spec(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text("[base\nnodes = 4\n")
    assert cli.main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is not valid" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ running
def _run_alone(configs: list[Config], root: pathlib.Path) -> dict[str, list[dict]]:
    """Each config run on its own (unbatched program, shared between the configs)."""
    ds = ex.load_data(configs[0])
    exp = ex.build_experiment(configs[0], ds)
    progs = runner.programs(exp)
    out = {}
    for c in configs:
        inputs = ex.build_inputs(c, ds)
        hp = ex.hparams(exp, c)
        run_dir = root / c.name
        run_dir.mkdir(parents=True)
        log = RunLog.create(c, run_dir, {})
        state = progs.init(jax.random.PRNGKey(c.seed), hp)
        runner.execute(exp, progs, state, hp, inputs, [log])
        out[c.name] = read_metrics(run_dir)
    return out


# Two values of every traced option of the strategies with a state (JWINS's
# accumulator and drawn alphas, CHOCO-SGD's estimates), the static ones fixed. Every
# built-in's traced options are checked vmapped at the step level by the contract kit
# (test_sharing_contract.py); here the whole sweep path: batching, stacked inputs,
# per-config seeds, learning rates and networks.
PAIRS = {
    "jwins": (
        {"alpha_list": [0.1, 0.2, 1.0], "level": 2},
        {"alpha_list": [0.3, 0.4, 1.0], "level": 2, "metadata_cap": 0.35},
    ),
    "choco": ({"alpha": 0.1, "gamma": 0.4}, {"alpha": 0.3, "gamma": 0.8}),
}


@pytest.mark.parametrize("sharing", list(PAIRS))
def test_vmapped_sweep_equals_each_config_alone(tmp_path, sharing):
    """Seeds (so partitions and graphs), learning rates, the strategy's traced
    options and the simulated network differ inside one batch; every config's
    metrics, simulated time included, equal its run alone."""
    a, b = PAIRS[sharing]
    net_a = {"bandwidth_mbps": 10.0, "latency_ms": 5.0}
    net_b = {"bandwidth_mbps": 1000.0, "downlink_mbps": 50.0, "node_spread": 0.5}
    data = _spec(
        tmp_path / "sweep",
        configs=[
            {"sharing": sharing, "seed": 1, "lr": 0.05, **a, **net_a},
            {"sharing": sharing, "seed": 7, "lr": 0.02, "momentum": 0.5, **b, **net_b},
        ],
    )
    data["base"].update(
        topology="small_world",
        degree=2,
        rounds=3,
        momentum=0.1,
        nodes=5,
        test_subset=16,
    )
    spec = sw.parse_spec(data)
    assert len(spec.groups()) == 1, "traced options only: one program"
    summaries = sw.run_sweep(spec, batch=2)
    assert [s["status"] for s in summaries] == ["finished", "finished"]
    alone = _run_alone([sc.config for sc in spec.configs], tmp_path / "alone")
    for sc in spec.configs:
        vmapped = read_metrics(spec.directory / sc.config.name)
        single = alone[sc.config.name]
        assert [r["round"] for r in vmapped] == [r["round"] for r in single] == [2, 3]
        for x, y in zip(vmapped, single):
            assert x["bytes_per_node"] == y["bytes_per_node"]
            assert x["test_acc"]["mean"] == pytest.approx(
                y["test_acc"]["mean"], abs=0.02
            )
            assert x["train_loss"]["mean"] == pytest.approx(
                y["train_loss"]["mean"], rel=1e-4
            )
            assert x["consensus_distance"] == pytest.approx(
                y["consensus_distance"], rel=1e-3, abs=1e-7
            )
            for k in ("min", "mean", "max"):
                assert x["sim_time_s"][k] == pytest.approx(y["sim_time_s"][k], rel=1e-6)
    first, second = (
        read_metrics(spec.directory / sc.config.name)[-1] for sc in spec.configs
    )
    assert first["train_loss"]["mean"] != second["train_loss"]["mean"]
    assert first["sim_time_s"]["mean"] != second["sim_time_s"]["mean"]


def test_one_program_per_group_padding_resume_and_outputs(tmp_path, monkeypatch):
    traces = _Traces(monkeypatch)
    targets = [5.0, 20.0, 99.9]
    spec = sw.parse_spec(
        _spec(tmp_path, grid={"lr": [0.05, 0.1, 0.2]}, batch=2, targets=targets)
    )
    summaries = sw.run_sweep(spec)
    # the round loop is traced once (for both batches, the second one padded)
    assert traces.count == 1
    assert all(s["status"] == "finished" for s in summaries)
    root = spec.directory
    rows = _csv(root)
    assert [r["status"] for r in rows] == ["finished"] * 3
    assert [r["lr"] for r in rows] == ["0.05", "0.1", "0.2"]
    assert {r["method"] for r in rows} == {"full"}
    # bytes and simulated time at the first evaluation at or above each target
    # accuracy, from each config's metrics.jsonl
    for r in rows:
        recs = read_metrics(root / r["name"])
        axes = {"bytes": "bytes_per_node", "sim_time_s": "sim_time_s"}
        for prefix, key in axes.items():
            for t in targets:
                hit = [x for x in recs if x["test_acc"]["mean"] >= t]
                want = "" if not hit else hit[0][key]
                want = want["mean"] if isinstance(want, dict) else want
                assert r[f"{prefix}_to_{t:g}"] == str(want), (r, t)
    for name in (
        "accuracy_vs_bytes.png",
        "accuracy_vs_time.png",
        "accuracy_vs_lr.png",
        "accuracy_vs_rounds_0.png",
    ):
        assert (root / name).stat().st_size > 1000, name
    # running it again skips everything
    before = {p: p.stat().st_mtime_ns for p in root.glob("*/metrics.jsonl")}
    traces.count = 0
    sw.run_sweep(spec)
    assert traces.count == 0
    assert before == {p: p.stat().st_mtime_ns for p in root.glob("*/metrics.jsonl")}
    # an unfinished config (here: its summary is gone) runs again, alone
    (root / spec.configs[1].config.name / "summary.json").unlink()
    sw.run_sweep(spec)
    assert traces.count == 1  # a batch of one compiles the unbatched program
    after = {p: p.stat().st_mtime_ns for p in root.glob("*/metrics.jsonl")}
    changed = [p.parent.name for p in after if after[p] != before[p]]
    assert changed == [spec.configs[1].config.name]
    # another sweep under the same name is refused
    other = sw.parse_spec(_spec(tmp_path, grid={"lr": [0.3]}))
    with pytest.raises(Exception, match="holds a different sweep"):
        sw.run_sweep(other)


def test_diverged_config_is_marked_and_the_batch_goes_on(tmp_path):
    spec = sw.parse_spec(_spec(tmp_path, grid={"lr": [0.05, 1e9]}))
    summaries = sw.run_sweep(spec, batch=2)
    assert [s["status"] for s in summaries] == ["finished", "diverged"]
    rows = _csv(spec.directory)
    assert [r["status"] for r in rows] == ["finished", "diverged"]
    # the healthy config ran all its rounds next to the diverged one
    assert read_metrics(spec.directory / spec.configs[0].config.name)[-1]["round"] == 4
    assert summaries[1]["error"] and "NaN" in summaries[1]["error"]


def test_interrupted_batch_is_recorded_and_resumed(tmp_path, monkeypatch):
    spec = sw.parse_spec(_spec(tmp_path, grid={"seed": [1, 2]}))
    original = RunLog.record
    calls = {"n": 0}

    def interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RunLog, "record", interrupt)
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(spec, batch=2)
    statuses = [
        json.loads((spec.directory / sc.config.name / "summary.json").read_text())[
            "status"
        ]
        for sc in spec.configs
    ]
    assert statuses == ["interrupted", "interrupted"]
    assert [r["status"] for r in _csv(spec.directory)] == ["interrupted", "interrupted"]
    monkeypatch.setattr(RunLog, "record", original)
    # run again, the disk fills up: the message says so and how to go on
    real_append, appends = results.append_line, {"n": 0}

    def append_line(path, obj):
        appends["n"] += 1
        if appends["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_append(path, obj)

    monkeypatch.setattr(results, "append_line", append_line)
    with pytest.raises(RunFailed) as failed:
        sw.run_sweep(spec, batch=2)
    text = str(failed.value)
    assert text.startswith("the disk is full (No space left on device) writing ")
    assert "free space, then run the same sweep again to finish" in text
    assert text.endswith("summary.json records this")
    assert [r["status"] for r in _csv(spec.directory)] == ["failed", "failed"]
    monkeypatch.setattr(results, "append_line", real_append)
    summaries = sw.run_sweep(spec, batch=2)
    assert [s["status"] for s in summaries] == ["finished", "finished"]


def test_sweep_command_dry_run_and_run(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(
        f'name = "cli"\n[base]\nnodes = 6\ntopology = "ring"\nrounds = 2\neval_every = 2\n'
        f'local_steps = 1\ntest_subset = 32\nout_dir = "{tmp_path / "out"}"\n'
        f"[grid]\nseed = [1, 2]\n"
    )
    assert cli.main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 configs" in out and "group 0" in out
    assert not (tmp_path / "out").exists()
    assert cli.main(["sweep", str(path), "--quiet", "--lr", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "000-seed=1" in out and "finished" in out
    config = json.loads(
        (tmp_path / "out" / "sweep-cli" / "000-seed=1" / "config.json").read_text()
    )
    assert config["lr"] == 0.1 and config["seed"] == 1
    assert np.isfinite(float(_csv(tmp_path / "out" / "sweep-cli")[0]["final_test_acc"]))


@pytest.mark.parametrize(
    "path",
    sorted(
        (pathlib.Path(__file__).resolve().parents[1] / "experiments" / "sweeps").glob(
            "*.toml"
        )
    )
    + sorted(resources.path("sweeps").glob("*.toml")),
    ids=lambda p: p.name,
)
def test_shipped_sweep_specs_parse(path):
    spec = sw.load_spec(path)
    assert len(spec.configs) >= 2
    assert "group 0" in sw.describe(spec)
