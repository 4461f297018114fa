"""End to end: every workload's round against the original's engine, and paper rounds.

``e2e``: for each workload (digits and the paper's five on their stand-ins, 96 nodes
on the paper's graph, the paper's b, tau and learning rate) and strategy (full
sharing and JWINS; the three heavy models JWINS only, one repeat), our round
(``Experiment.advance`` as ``jwins run`` compiles it), its parts (local training,
the sharing step, the evaluation) and the per-node baseline (:mod:`benchmarks.baseline`:
PyTorch training and NumPy/PyWavelets sharing node by node, in a process of its own),
timed in turns. The baseline's first round is checked against ours: its trained
models against our training on the same minibatches, its shared models and byte
counts against our sharing step on its trained models with the same alphas.
FEMNIST runs tau = 4 instead of the paper's 47 here (training time grows linearly in
tau; ``paper`` measures the paper's tau).

``paper``: seconds per JWINS round of each paper workload at the paper's settings
(ours only; the run time of T rounds without evaluation).

``clock``: what the simulated clock (:mod:`jwins_jax.simtime`) costs. The GN-LeNet
JWINS round (96 nodes on the paper's graph, synthetic CIFAR stand-in, b = 8, tau =
3; quick: the digits CNN on a few nodes) as ``runner.programs(...).advance``
compiles it, timed in turns with the same program built without the clock: while
:func:`without_clock` is active (a benchmark-only patch, applied in this process
around one build and compile and undone after), ``simtime.advance`` is replaced by a
function that returns the clocks unchanged, so XLA drops the clock's work (speeds,
transfer times, the shift). Checked: the clock moved in the one and not in the
other, and both computed the same models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from collections.abc import Iterator
from typing import Any

import jax.numpy as jnp
import numpy as np

from benchmarks.baseline import Baseline
from benchmarks.rounds import PAPER, RoundBench, forward_flops, workload
from benchmarks.timing import Load, interleave, summarize
from jwins_jax import experiment, kernelbench, simtime
from jwins_jax.testing.reference.layout import ModelLayout

HEAVY = ("celeba", "shakespeare", "femnist")
CHANGES = {"femnist": {"local_steps": 4}, "cifar": {"test_subset": 256}}
CHANGES.update({w: {**CHANGES.get(w, {}), "test_subset": 64} for w in HEAVY})
REFERENCE_PARAMS = ("metadata_cap", "wavelet", "level", "accumulation", "selection")


def rel_error(got: Any, want: np.ndarray) -> float:
    """max |got - want| / max |want|."""
    want = np.asarray(want, np.float64)
    return float(
        np.max(np.abs(np.asarray(got) - want)) / max(np.max(np.abs(want)), 1e-30)
    )


def start_baseline(bench: RoundBench, ids, w, alphas, check: bool) -> Baseline:
    """The per-node baseline process of a built workload, given the same inputs."""
    c, inputs = bench.config, bench.inputs
    arrays = {
        "x0": np.asarray(bench.progs.init(bench.key, bench.hp).x),
        "ids": ids,
        "w": w,
        "adjacency": np.asarray(bench.adjacency),
        "train_x": np.asarray(inputs.train_x),
        "train_y": np.asarray(inputs.train_y),
        "test_x": np.asarray(inputs.test_x),
        "test_y": np.asarray(inputs.test_y),
        "nodes_index": np.asarray(inputs.nodes.index),
        "nodes_size": np.asarray(inputs.nodes.size),
    }
    if inputs.tests is not None:
        arrays["tests_index"] = np.asarray(inputs.tests.index)
        arrays["tests_size"] = np.asarray(inputs.tests.size)
    if alphas is not None:
        arrays["alphas"] = alphas
    params = c.sharing_params()
    meta = {
        "model": dataclasses.asdict(ModelLayout.of(bench.exp.model)),
        "sgd": {"lr": c.lr, "momentum": c.momentum, "weight_decay": c.weight_decay},
        "strategy": c.sharing,
        "params": {k: params[k] for k in REFERENCE_PARAMS if k in params},
        "check": check,
    }
    return Baseline("rounds", meta, arrays)


def checks(bench: RoundBench, programs: dict, out: dict, ids, w, alphas) -> dict:
    """The baseline's first round against ours (see the module docstring)."""
    s = bench.progs.init(bench.key, bench.hp)
    hp, inputs = bench.hp, bench.inputs
    trained = programs["train"](hp, inputs, s.x, s.opt, ids, w)[0]
    given = None if alphas is None else bench.given(alphas)
    x_new, _, stats = programs["share"](
        hp, inputs.graph, s.share, jnp.asarray(out["trained"]), bench.share_key, given
    )
    receivers = np.asarray(stats["receivers"], np.int64)
    values = 4 * np.asarray(stats["sent"], np.int64) * receivers
    meta = np.asarray(stats["meta_bytes"], np.int64) * receivers
    return {
        "check_train_error": rel_error(trained, out["trained"]),
        "check_share_error": rel_error(x_new, out["shared"]),
        "check_bytes_equal": bool(
            np.array_equal(values, out["value_bytes"])
            and np.array_equal(meta, out["meta_bytes"])
        ),
    }


def e2e_row(name: str, strategy: str, opts: Any) -> dict[str, Any]:
    """One workload and strategy, ours and the baseline in turns."""
    heavy = name in HEAVY
    config = workload(name, strategy, opts.nodes, **CHANGES.get(name, {}))
    bench = RoundBench(config, rounds=1 if heavy else opts.rounds)
    c, row = bench.config, {"workload": name, **bench.row}
    repeats = 1 if heavy else opts.repeats
    ids, w = bench.batches(1 + repeats)
    alphas = None
    if strategy == "jwins":
        rng = np.random.default_rng(0)
        alphas = rng.choice(c.alpha_list, (1 + repeats, c.nodes)).astype(np.float32)
    first = None if alphas is None else alphas[0]
    calls, programs = bench.parts(ids[0], w[0], first)
    row.update({k: v for k, v in programs.items() if k.startswith("compile_")})
    calls["round"] = bench.round
    ways = [lambda: {f"ours_{p}": f() for p, f in calls.items()}]
    base = None
    try:
        base = start_baseline(bench, ids, w, alphas, check=not heavy)
        both = lambda: {**base("round"), **base("eval")}  # noqa: E731
        ways.append(lambda: {f"base_{k}": v for k, v in both().items()})
        row.update({f"base_{k}": v for k, v in base.info.items() if k != "pid"})
    except RuntimeError as err:  # e.g. PyTorch is not installed
        row["base_error"] = str(err)
    row.update(interleave(ways, repeats))
    if base is not None:
        if not heavy:
            row.update(checks(bench, programs, base.fetch(), ids[0], w[0], first))
        base.close()
    flops = 3 * forward_flops(c.model) * c.batch_size * c.local_steps * c.nodes
    row["train_gflop"] = flops / 1e9
    for way in ("ours", "base"):
        if f"{way}_train_s" in row:
            row[f"{way}_train_gflops"] = row["train_gflop"] / row[f"{way}_train_s"]
    row["test_samples"] = int(bench.inputs.test_y.shape[0])
    row["train_per_node"] = float(np.mean(np.asarray(bench.inputs.nodes.size)))
    row["finite"] = bench.finite()
    print(f"[e2e] {name}/{strategy}: {_short(row)}", flush=True)
    return row


def _short(row: dict[str, Any]) -> str:
    text = f"round {row['ours_round_s']:.3f} s"
    if "base_round_s" in row:
        text += f" vs per-node {row['base_round_s']:.3f} s"
    return text


def e2e(opts: Any) -> list[dict[str, Any]]:
    """The ``e2e`` section: every requested workload and its strategies."""
    rows = []
    for name in opts.workloads:
        for strategy in ("jwins",) if name in HEAVY else ("full", "jwins"):
            try:
                rows.append(e2e_row(name, strategy, opts))
            except Exception as err:  # noqa: BLE001 - e.g. out of memory: go on
                error = f"{type(err).__name__}: {err}"[:300]
                rows.append({"workload": name, "strategy": strategy, "error": error})
    return rows


def paper(opts: Any) -> list[dict[str, Any]]:
    """The ``paper`` section: one JWINS round of each paper workload, paper tau."""
    rows = []
    for name in opts.paper:
        bench = RoundBench(workload(name, "jwins", opts.nodes))
        row = {"workload": name, **bench.row, "paper_rounds": bench.config.rounds}
        row.update(
            interleave([lambda: {"ours_round": bench.round()}], opts.paper_repeats)
        )
        row["run_hours"] = row["paper_rounds"] * row["ours_round_s"] / 3600
        print(f"[paper] {name}: {row['ours_round_s']:.2f} s per round", flush=True)
        rows.append(row)
    return rows


@contextlib.contextmanager
def without_clock() -> Iterator[None]:
    """Experiments traced meanwhile run no simulated clock (benchmark only).

    ``simtime.advance`` becomes a function returning the clocks unchanged, a zero
    shift and zero compute seconds; the original comes back on exit. Only programs
    traced inside the ``with`` block are affected.
    """
    original = simtime.advance

    def frozen(clock, *args, **kwargs):
        return clock, jnp.zeros((), clock.dtype), jnp.zeros_like(clock)

    simtime.advance = frozen
    try:
        yield
    finally:
        simtime.advance = original


def clock(opts: Any) -> list[dict[str, Any]]:
    """The ``clock`` section: the round with and without the clock, in turns."""
    if opts.quick:
        config = workload("digits", "jwins", opts.nodes, local_steps=1)
    else:
        config = workload("cifar", "jwins", 96)
    data = experiment.load_data(config)
    with_clock = RoundBench(config, opts.rounds, data)
    with without_clock():
        no_clock = RoundBench(config, opts.rounds, data)
    name = "digits" if opts.quick else "cifar"
    row = {"workload": name, **with_clock.row}
    row["compile_no_clock_round_s"] = no_clock.row["compile_round_s"]
    calls = [
        lambda: {"clock": with_clock.round()},
        lambda: {"no_clock": no_clock.round()},
    ]
    for call in calls:  # warm-up
        call()
    load = Load()
    times = kernelbench.interleave(calls, opts.clock_repeats, warmup=0)
    row.update(load.record())
    for way, values in times.items():
        row.update(summarize(way, values))
    turns = zip(times["clock"], times["no_clock"], strict=True)
    row["turn_ratio"] = statistics.median(a / b for a, b in turns)
    row["clock_shift_s"] = float(np.sum(with_clock.metrics["clock_shift"]))
    row["no_clock_shift_s"] = float(np.sum(no_clock.metrics["clock_shift"]))
    row["models_rel_diff"] = rel_error(no_clock.state.x, with_clock.state.x)
    print(f"[clock] {name}: with / without {row['turn_ratio']:.3f}", flush=True)
    return [row]


__all__ = ["PAPER", "clock", "e2e", "paper", "without_clock"]
