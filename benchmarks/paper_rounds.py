"""Seconds per JWINS round of every paper workload at the paper's settings.

Each workload is its ``experiments/<workload>_jwins_paper.toml`` config (96 nodes on
the paper's graph, the paper's partition, tau, batch size and learning rate, JWINS
with the paper's parameters; SPEC 3, 7.4, experiments/README.md) run on the
workload's stand-in dataset (``synthetic_cifar``, ``synthetic_femnist``, ...; no
download). A round's cost does not depend on the data's values or on how many
samples a node holds (every node trains tau minibatches of b samples and shares its
whole model), so the stand-ins give the paper's round time; evaluation is not
included (its cost depends on the real test sets).

For each workload this builds the experiment, compiles ``Experiment.advance`` of one
round ahead of time (the compile time is reported apart), then times calls of one
round (state donated), at most ``--repeats`` and no new call once ``--budget-s``
seconds of rounds were spent. The run-time column is the paper's round count T
times the median round time: hours of rounds for one run, without evaluation.

Usage::

    .venv/bin/python benchmarks/paper_rounds.py                # all five, ~10 min
    .venv/bin/python benchmarks/paper_rounds.py --workloads movielens --nodes 8
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import harness
import jax
import numpy as np
from simulation import BenchSim

from jwins_jax.config import Config
from jwins_jax.data import STAND_INS
from jwins_jax.hostmem import tune_host_allocator

EXPERIMENTS = HERE.parent / "experiments"
WORKLOADS = ("cifar", "femnist", "celeba", "shakespeare", "reddit", "movielens")


def paper_config(workload: str, nodes: int = 96) -> Config:
    """The workload's paper JWINS config on its stand-in dataset.

    Args:
        workload: one of :data:`WORKLOADS`.
        nodes: 96 (the paper's graph) or fewer (a random regular graph, for a
            quick check).
    """
    config = Config.from_file(EXPERIMENTS / f"{workload}_jwins_paper.toml")
    config = config.replace(dataset=STAND_INS[config.dataset])
    if nodes != config.nodes:
        config = config.replace(nodes=nodes, topology="regular", degree=4)
    return config


def measure(config: Config, repeats: int, budget_s: float) -> dict[str, Any]:
    """Compile time and time per round of one config (see the module docstring)."""
    sim = BenchSim(config)
    state = sim.init(jax.random.PRNGKey(0))
    t0 = time.perf_counter()
    run = sim.compile_advance(state, 1)
    compile_s = time.perf_counter() - t0
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget_s:
        t0 = time.perf_counter()
        state, metrics = run(state)
        harness.block((state, metrics))
        times.append(time.perf_counter() - t0)
    stats = harness.summarize(times, compile_s)
    c = sim.config
    stats.update(
        dataset=c.dataset,
        model=c.model,
        nodes=c.nodes,
        n_params=sim.n_params,
        local_steps=c.local_steps,
        batch_size=c.batch_size,
        lr=c.lr,
        paper_rounds=c.rounds,
        run_hours=c.rounds * stats["median_s"] / 3600,
        finite=bool(np.all(np.isfinite(np.asarray(state.x)))),
    )
    return stats


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    """The markdown table of the measured workloads."""
    header = (
        "| workload | model | N | tau | b | rounds T | compile | s / round | "
        "T rounds (h, no evaluation) |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        spread = (
            f" ({r['min_s']:.2f}-{r['max_s']:.2f}, {r['repeats']} rounds)"
            if r["repeats"] > 1
            else " (1 round)"
        )
        lines.append(
            f"| {name} | `{r['model']}` | {r['n_params']:,} | {r['local_steps']} | "
            f"{r['batch_size']} | {r['paper_rounds']:,} | {r['compile_s']:.0f} s | "
            f"{r['median_s']:.2f}{spread} | {r['run_hours']:.1f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    tune_host_allocator()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--nodes", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3, help="rounds timed at most")
    ap.add_argument(
        "--budget-s", type=float, default=100.0, help="no new round after this"
    )
    ap.add_argument("--json", help="also write the results to this file")
    opts = ap.parse_args(argv)
    env = harness.environment()
    print(
        f"# Seconds per JWINS round, paper settings ({env['date']}, "
        f"{env['device_kind']} / {env['cpu_model']} x{env['cpu_count']}, "
        f"jax {env['jax']}, load {env['load_average']})\n",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for name in [w for w in opts.workloads.split(",") if w]:
        if name not in WORKLOADS:
            raise SystemExit(f"unknown workload {name!r}; allowed: {WORKLOADS}")
        config = paper_config(name, opts.nodes)
        results[name] = measure(config, opts.repeats, opts.budget_s)
        harness.free()
        print(
            f"[{name}] {results[name]['median_s']:.2f} s / round, compile "
            f"{results[name]['compile_s']:.1f} s",
            flush=True,
        )
    print("\n" + "\n".join(table(results)))
    out = {"env": env, "results": results}
    if opts.json:
        harness.write_json(pathlib.Path(opts.json), out)
    return out


if __name__ == "__main__":
    main()
