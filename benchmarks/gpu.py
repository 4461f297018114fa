"""The accelerator section (``make bench-gpu``): what a GPU user wants to know.

On the default JAX device, in this order, within a time budget (``--quick`` runs it
small on a CPU, which is how the tests keep it working):

* ``paper``: the paper's CIFAR-10 JWINS run at its size (synthetic CIFAR-shaped
  data: 96 nodes x 520 samples, GN-LeNet, tau 3, b 8, the paper's graph): seconds per
  round and per evaluation of all 96 models on 10,000 test images, and the run of
  2,166 rounds with 103 evaluations extrapolated from them;
* ``train_chunk``: the same round with the nodes trained in groups of 8, 32 or all 96
  (``jwins_jax/platform.py``'s per-backend default should follow it);
* ``rounds``: rounds per second of full sharing and JWINS for every workload at
  n = 96, 1,024 and 4,096 (training data tiled so every node holds 4 minibatches;
  a point whose state would not fit in a third of the device memory is skipped, and
  every point once the budget is spent).
"""

from __future__ import annotations

import time
from typing import Any

import jax

from benchmarks.report import paper_run_s
from benchmarks.rounds import PAPER, RoundBench, tiled, workload
from benchmarks.timing import interleave
from jwins_jax.data import load_dataset
from jwins_jax.models import get_model


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"


def paper_run(quick: bool) -> list[dict[str, Any]]:
    """The paper-scale CIFAR-10-shaped run and its ``train_chunk`` variants."""
    nodes, per_node, test = (8, 16, 64) if quick else (96, 520, 10_000)
    train = nodes * per_node
    data = load_dataset(
        "synthetic_cifar", synthetic_size=train, test_fraction=test / (train + test)
    )
    base = workload("cifar", "jwins", nodes, partition="iid", test_subset=0)
    rows = []
    for chunk in (0,) if quick else (8, 32, 0):
        bench = RoundBench(base.replace(train_chunk=chunk), 2, data)
        calls, _ = bench.parts(None, None, None, which=("eval",))
        row = {"item": "paper", **bench.row, "train_chunk": chunk or nodes}
        ways = [lambda: {"round": bench.round(), "eval": calls["eval"]()}]
        row.update(interleave(ways, 1 if quick else 2))
        row["images_per_s"] = nodes * test / row["eval_s"]
        row["paper_run_min"] = paper_run_s(row["round_s"], row["eval_s"]) / 60
        print(f"[gpu] paper run, train_chunk {chunk}: {row['paper_run_min']:.1f} min")
        rows.append(row)
    return rows


def rounds_table(quick: bool, budget_s: float) -> list[dict[str, Any]]:
    """Rounds per second per workload, strategy and n, in order, within the budget."""
    sizes = (8,) if quick else (96, 1024, 4096)
    names = ("digits",) if quick else ("digits", *PAPER)
    try:
        memory = jax.devices()[0].memory_stats()["bytes_limit"]
    except Exception:  # noqa: BLE001 - no statistics on this backend
        memory = None
    rows, start = [], time.perf_counter()
    for n in sizes:
        for name in names:
            for strategy in ("jwins",) if quick else ("full", "jwins"):
                row = {"item": "rounds", "workload": name, "n": n, "strategy": strategy}
                rows.append(row)
                config = workload(name, strategy, n, partition="iid", test_subset=64)
                state = 4 * n * get_model(config.resolved().model).num_params
                state *= 4 if strategy == "jwins" else 2
                if time.perf_counter() - start > budget_s:
                    row["error"] = "time budget spent"
                elif memory is not None and state > memory / 3:
                    row["error"] = f"state of about {state / 2**30:.0f} GiB"
                else:
                    try:
                        bench = RoundBench(
                            config, 2, tiled(config, 4 * config.batch_size)
                        )
                        row.update(bench.row)
                        row.update(interleave([lambda: {"round": bench.round()}], 2))
                        del bench
                    except Exception as err:  # noqa: BLE001 - out of memory: record it
                        row["error"] = _error(err)
                print(
                    f"[gpu] {name} n={n} {strategy}: {row.get('round_s')}", flush=True
                )
    return rows


def gpu(opts: Any) -> list[dict[str, Any]]:
    """The ``gpu`` section."""
    print(f"[gpu] {jax.devices()[0].device_kind}", flush=True)
    return paper_run(opts.quick) + rounds_table(opts.quick, opts.gpu_budget_s)
