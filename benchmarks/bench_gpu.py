"""The accelerator benchmark (``make bench-gpu``): what a GPU user wants to know, in
minutes.

On the default JAX device (a GPU when one is there; the same code runs on CPU in
``--quick`` mode for the tests), in this order of priority, within a time budget:

1. ``paper``: the paper-scale CIFAR-10-shaped JWINS run (synthetic CIFAR data of
   CIFAR-10's size: 96 nodes x 520 samples, 10,000 test images, GN-LeNet, tau 3,
   batch 8, the paper graph). One evaluation block (21 rounds, then all 96 models on
   the 10,000 test images) is timed after compilation and the full run (2,166 rounds,
   103 blocks and a final 3 rounds) is extrapolated from it;
2. ``rounds``: rounds per second of full sharing and JWINS for every model at
   n = 96, 1,024 and 4,096 nodes (stand-in data tiled so every node holds data; IID
   partition; a point whose state would not fit in a third of the device memory is
   skipped, and so is every point once the time budget is spent);
3. ``evaluation``: test images per second when evaluating 96 GN-LeNet models;
4. ``train_chunk``: GN-LeNet JWINS rounds per second at n = 96 with the nodes trained
   in groups of 8, 32 or all 96 at once (the per-backend default of
   ``jwins_jax/platform.py`` should follow this).

Everything is one compiled program per point (``runner.programs``), timed with
``block_until_ready`` after a warm-up, compile time apart.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from simulation import time_blocks

from jwins_jax import evaluation, experiment, runner
from jwins_jax.config import Config
from jwins_jax.data import load_dataset
from jwins_jax.models import get_model

# model -> (stand-in dataset, learning rate)
MODELS = {
    "digits_cnn": ("digits", 0.05),
    "gn_lenet": ("synthetic_cifar", 0.01),
    "femnist_cnn": ("synthetic_femnist", 0.01),
    "celeba_cnn": ("synthetic_celeba", 0.001),
    "shakespeare_lstm": ("synthetic_shakespeare", 0.5),
    "movielens_mf": ("synthetic_movielens", 0.1),
}
PAPER = {"rounds": 2166, "eval_every": 21, "train_per_node": 520, "test": 10_000}


def _tiled(ds, count: int):
    """The dataset with its training split repeated to at least ``count`` samples."""
    reps = -(-count // len(ds.y_train))
    if reps <= 1:
        return ds
    tile = lambda a: None if a is None else np.concatenate([a] * reps)  # noqa: E731
    users = (
        None
        if ds.users_train is None
        else np.concatenate(
            [ds.users_train + k * (int(ds.users_train.max()) + 1) for k in range(reps)]
        )
    )
    return dataclasses.replace(
        ds, x_train=tile(ds.x_train), y_train=tile(ds.y_train), users_train=users
    )


def _device_memory() -> int | None:
    try:
        stats = jax.devices()[0].memory_stats() or {}
        return int(stats.get("bytes_limit", 0)) or None
    except Exception:  # noqa: BLE001 - no statistics on this backend
        return None


def paper_run(quick: bool) -> dict[str, Any]:
    """The paper-scale CIFAR-10-shaped JWINS run, one block timed, the rest scaled."""
    nodes = 8 if quick else 96
    per_node = 16 if quick else PAPER["train_per_node"]
    test = 64 if quick else PAPER["test"]
    every = 2 if quick else PAPER["eval_every"]
    train = nodes * per_node
    ds = load_dataset(
        "synthetic_cifar", synthetic_size=train, test_fraction=test / (train + test)
    )
    c = Config(
        nodes=nodes,
        topology="edges" if nodes == 96 else "ring",
        dataset="synthetic_cifar",
        partition="iid",
        sharing="jwins",
        local_steps=3,
        batch_size=8,
        lr=0.01,
        rounds=PAPER["rounds"],
        eval_every=every,
    )
    exp, inputs, hp = experiment.build(c, dataset=ds)
    progs = runner.programs(exp)
    state = progs.init(jax.random.PRNGKey(0), hp)
    t0 = time.perf_counter()
    state, per_round, ev = progs.block(state, hp, inputs, jnp.int32(every))
    jax.block_until_ready(ev)
    first = time.perf_counter() - t0
    times = []
    for _ in range(1 if quick else 2):
        t0 = time.perf_counter()
        state, per_round, ev = progs.block(state, hp, inputs, jnp.int32(every))
        jax.block_until_ready(ev)
        times.append(time.perf_counter() - t0)
    block_s = float(np.median(times))
    blocks = PAPER["rounds"] / every
    return {
        "nodes": nodes,
        "test_images": int(inputs.test_y.shape[0]),
        "eval_every": every,
        "rounds": PAPER["rounds"],
        "first_block_s": first,
        "block_s": block_s,
        "extrapolated_run_s": first + (blocks - 1) * block_s,
        "test_acc_after_two_blocks": float(np.mean(np.asarray(ev["test_acc"]))),
    }


def rounds_table(quick: bool, budget_s: float) -> list[dict[str, Any]]:
    """Rounds per second per model, strategy and n, in order, within the budget."""
    sizes = (8,) if quick else (96, 1024, 4096)
    models = ("digits_cnn",) if quick else tuple(MODELS)
    memory = _device_memory()
    rows, start = [], time.perf_counter()
    for n in sizes:
        for model in models:
            dataset_name, lr = MODELS[model]
            base = load_dataset(dataset_name)
            for sharing in ("full", "jwins"):
                row = {"model": model, "n": n, "sharing": sharing}
                rows.append(row)
                if time.perf_counter() - start > budget_s:
                    row["skipped"] = "time budget spent"
                    continue
                c = Config(
                    nodes=n,
                    topology="edges" if n == 96 else "regular",
                    degree=4,
                    dataset=dataset_name,
                    model=model,
                    partition="iid",
                    sharing=sharing,
                    local_steps=3,
                    batch_size=8,
                    lr=lr,
                    rounds=4,
                    eval_every=2,
                    test_subset=64,
                )
                n_params = get_model(model).num_params
                state_bytes = 4 * n * n_params * (4 if sharing == "jwins" else 2)
                if memory is not None and state_bytes > memory / 3:
                    row["skipped"] = f"state of about {state_bytes / 2**30:.0f} GiB"
                    continue
                try:
                    row.update(time_blocks(c, _tiled(base, 8 * n), 2, 2))
                except Exception as err:  # noqa: BLE001 - record and go on
                    row["error"] = (
                        f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
                    )
                print(
                    f"[gpu] {model} n={n} {sharing}: "
                    f"{row.get('rounds_per_s', 0):.2f} rounds/s",
                    flush=True,
                )
    return rows


def evaluation_throughput(quick: bool) -> dict[str, Any]:
    """Test images per second when every one of 96 GN-LeNet models is evaluated."""
    nodes, test = (4, 64) if quick else (96, PAPER["test"])
    ds = load_dataset(
        "synthetic_cifar",
        synthetic_size=max(8 * nodes, 64),
        test_fraction=test / (test + max(8 * nodes, 64)),
    )
    c = Config(
        nodes=nodes,
        topology="edges" if nodes == 96 else "ring",
        dataset="synthetic_cifar",
        partition="iid",
        rounds=1,
        eval_every=1,
    )
    exp, inputs, hp = experiment.build(c, dataset=ds)
    x = jnp.broadcast_to(
        exp.model.init_flat(jax.random.PRNGKey(0)), (nodes, exp.n_params)
    )
    fn = jax.jit(
        lambda x: evaluation.shared_metrics(
            exp.model, exp.task, x, inputs.test_x, inputs.test_y
        )
    )
    t0 = time.perf_counter()
    jax.block_until_ready(fn(x))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(fn(x))
    dt = time.perf_counter() - t0
    images = nodes * int(inputs.test_y.shape[0])
    return {
        "nodes": nodes,
        "test_images": int(inputs.test_y.shape[0]),
        "s": dt,
        "compile_s": max(first - dt, 0.0),
        "images_per_s": images / dt,
    }


def train_chunk_table(quick: bool) -> list[dict[str, Any]]:
    """Rounds per second of GN-LeNet JWINS at n = 96 per node-group size."""
    model, nodes, chunks = (
        ("digits_cnn", 8, (2, 0)) if quick else ("gn_lenet", 96, (8, 32, 0))
    )
    dataset_name, lr = MODELS[model]
    base = load_dataset(dataset_name)
    rows = []
    for chunk in chunks:
        c = Config(
            nodes=nodes,
            topology="edges" if nodes == 96 else "ring",
            dataset=dataset_name,
            model=model,
            partition="iid",
            sharing="jwins",
            local_steps=3,
            batch_size=8,
            lr=lr,
            rounds=4,
            eval_every=2,
            test_subset=64,
            train_chunk=chunk,
        )
        row = {"train_chunk": chunk or nodes, "model": model, "n": nodes}
        try:
            row.update(time_blocks(c, _tiled(base, 8 * nodes), 2, 2))
        except Exception as err:  # noqa: BLE001 - e.g. out of memory: record it
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        rows.append(row)
    return rows


def run(opts: Any) -> dict[str, Any]:
    """The accelerator section (everything above, within ``opts``' time budget)."""
    quick = bool(getattr(opts, "quick", False))
    budget = 60.0 if quick else float(getattr(opts, "gpu_budget_s", None) or 300.0)
    dev = jax.devices()[0]
    out: dict[str, Any] = {
        "device": str(dev.device_kind),
        "platform": dev.platform,
        "device_count": jax.device_count(),
    }
    print(f"[gpu] {dev.device_kind} ({dev.platform})", flush=True)
    out["paper"] = paper_run(quick)
    print(
        f"[gpu] paper-scale run: {out['paper']['extrapolated_run_s'] / 60:.1f} min "
        "(extrapolated)",
        flush=True,
    )
    out["evaluation"] = evaluation_throughput(quick)
    out["train_chunk"] = train_chunk_table(quick)
    out["rounds"] = rounds_table(quick, budget)
    return out
