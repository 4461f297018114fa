"""Local training and evaluation: the vectorized simulator against per-node PyTorch.

For each model (GN-LeNet, digits CNN) with n nodes (default 96), batch 8 and tau = 3
local SGD steps, this prints, measured in one process:

* **training per round**: ``training.train_all`` as the simulator runs it (inside a
  ``lax.scan`` over rounds, ``lax.map`` over groups of ``train_chunk`` nodes, vmap
  inside a group), jitted with ``compiler.jit``, against the original engine's way:
  PyTorch models trained node after node with ``torch.optim.SGD`` on the same
  minibatch ids (``torch_baseline.TorchNodes.train``);
* **evaluation**: every node's model on a shared test set, ``evaluation.
  shared_metrics`` (forward-only formulation, ``ModelSpec.apply_flat_eval``) against
  per-node PyTorch inference (``TorchNodes.evaluate``), and against the training
  formulation (``apply_flat``, chunks of 512: how evaluation ran before it had its
  own formulation);
* **compile times** (first call), reported apart: training, evaluation, and one
  round of training + JWINS sharing in a scan.

Timings are medians of repeats taken in turns (vectorized, PyTorch, vectorized, ...)
after a warm-up, each call waited for with ``block_until_ready``. Ratios above 1
mean the vectorized way is faster. Data are random inputs of the model's shape (the
speed does not depend on the values). Evaluation defaults to 1,000 test images;
``--test-samples 10000`` runs the full CIFAR-10 test-set size (minutes per call).

``--cache-test`` measures instead what the persistent compilation cache
(``jax_compilation_cache_dir``) gives a second process: two fresh subprocesses
compile the same programs (training + JWINS sharing round, evaluation) with one
cache directory, and their compile times are printed.

Usage::

    .venv/bin/python benchmarks/bench_train.py            # n = 96, both models
    .venv/bin/python benchmarks/bench_train.py --quick    # small, under a minute
    .venv/bin/python benchmarks/bench_train.py --cache-test

PyTorch is optional (``pip install -e '.[bench]'``); without it the PyTorch rows say
"not installed". PyTorch's OpenMP threads spin while they wait, which on a shared,
oversubscribed machine made its per-node loop 2-10x slower and erratic here; this
script sets ``OMP_WAIT_POLICY=PASSIVE`` (unless already set) before PyTorch loads, so
the baseline is not penalised by other processes' load.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before PyTorch loads OpenMP

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import harness
import torch_baseline as tb

from jwins_jax import compiler, evaluation, tasks, training
from jwins_jax.hostmem import tune_host_allocator
from jwins_jax.models import ModelSpec, get_model

MODELS = ("gn_lenet", "digits_cnn")
LR = {"gn_lenet": 0.01, "digits_cnn": 0.05}
TASK = tasks.CLASSIFICATION


# ------------------------------------------------------------------ set-up


def problem(
    spec: ModelSpec, n: int, tau: int, batch: int, train_size: int, test_size: int
) -> dict[str, Any]:
    """Random data of the model's input shape, minibatch ids and n distinct models."""
    rng = np.random.default_rng(0)
    shape = spec.input_shape
    x0 = np.asarray(spec.init_flat(jax.random.key(0)))
    return {
        "x": (x0 + 0.01 * rng.normal(size=(n, spec.num_params))).astype(np.float32),
        "train_x": rng.normal(size=(train_size, *shape)).astype(np.float32),
        "train_y": rng.integers(0, spec.num_classes, train_size).astype(np.int32),
        "test_x": rng.normal(size=(test_size, *shape)).astype(np.float32),
        "test_y": rng.integers(0, spec.num_classes, test_size).astype(np.int32),
        "ids": rng.integers(0, train_size, (n, tau, batch)).astype(np.int32),
        "w": np.ones((n, tau, batch), np.float32),
    }


def optimizer(lr: float):
    """Plain SGD, as the paper trains (no momentum, no weight decay)."""
    zero = jnp.float32(0.0)
    return training.make_optimizer(jnp.float32(lr), zero, zero, False)


def training_rounds(
    spec: ModelSpec,
    data_x: jax.Array,
    data_y: jax.Array,
    lr: float,
    chunk: int,
    rounds: int,
) -> Callable[..., Any]:
    """``rounds`` rounds of ``train_all`` in one ``lax.scan``, as the simulator runs."""
    tx = optimizer(lr)

    def run(x, opt, ids, w):
        def body(carry, _):
            x, opt = carry
            x, opt, loss = training.train_all(
                spec, TASK, tx, x, opt, data_x, data_y, ids, w, chunk
            )
            return (x, opt), loss

        return jax.lax.scan(body, (x, opt), None, length=rounds)

    return run


def training_and_sharing_round(
    spec: ModelSpec,
    data_x: jax.Array,
    data_y: jax.Array,
    lr: float,
    chunk: int,
    n: int,
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """One round of training + JWINS sharing (paper defaults) in a scan, and its args."""
    from jwins_jax.sharing import make_sharing
    from jwins_jax.topology import make_graph, neighbor_table

    graph = make_graph("edges", n) if n == 96 else make_graph("ring", n)
    table = neighbor_table(graph)
    sharing = make_sharing("jwins", n_params=spec.num_params)
    tx = optimizer(lr)

    def run(x, opt, share, key, ids, w):
        def body(carry, _):
            x, opt, share, key = carry
            key, k = jax.random.split(key)
            x, opt, _ = training.train_all(
                spec, TASK, tx, x, opt, data_x, data_y, ids, w, chunk
            )
            x, share, stats = sharing.step(share, x, k, table, sharing.hp)
            return (x, opt, share, key), stats["sent"]

        return jax.lax.scan(body, (x, opt, share, key), None, length=1)

    return run, (sharing.init,)


def evaluation_fn(spec: ModelSpec, forward: str) -> Callable[..., Any]:
    """``shared_metrics`` with the model's evaluation forward or its training one."""
    if forward == "eval":
        return lambda x, dx, dy: evaluation.shared_metrics(spec, TASK, x, dx, dy)
    return lambda x, dx, dy: training_forward_metrics(spec, x, dx, dy)


def training_forward_metrics(
    spec: ModelSpec, x: jax.Array, data_x: jax.Array, data_y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Evaluation as it ran before it had its own formulation: ``apply_flat``
    (the differentiable training model) node by node, chunks of 512 samples."""
    chunk = min(512, data_y.shape[0])
    pad = (-data_y.shape[0]) % chunk
    xs = jnp.pad(data_x, [(0, pad)] + [(0, 0)] * (data_x.ndim - 1))
    ys = jnp.pad(data_y, (0, pad))
    ws = jnp.pad(jnp.ones(data_y.shape, jnp.float32), (0, pad))
    k = xs.shape[0] // chunk
    xs, ys, ws = (
        xs.reshape((k, chunk) + xs.shape[1:]),
        ys.reshape(k, chunk),
        ws.reshape(k, chunk),
    )

    def node(flat):
        def body(carry, batch):
            xb, yb, wb = batch
            out = spec.apply_flat(flat, xb)
            loss, acc, total = carry
            return (
                loss + jnp.sum(TASK.loss(out, yb) * wb),
                acc + jnp.sum(TASK.correct(out, yb) * wb),
                total + jnp.sum(wb),
            ), None

        zero = jnp.zeros((), jnp.float32)
        return jax.lax.scan(body, (zero, zero, zero), (xs, ys, ws))[0]

    loss, acc, total = jax.lax.map(node, x)
    total = jnp.maximum(total, 1.0)
    return loss / total, 100.0 * acc / total


# ------------------------------------------------------------------ timing


def compile_timed(fn: Callable[..., Any], args: tuple[Any, ...], **jit_kw: Any):
    """``compiler.jit(fn)`` lowered and compiled ahead of time; (compiled, seconds)."""
    t0 = time.perf_counter()
    compiled = compiler.jit(fn, **jit_kw).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def interleaved(
    calls: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, list[float]]:
    """Times each zero-argument call ``repeats`` times, in turns, after one warm-up."""
    for call in calls.values():
        jax.block_until_ready(call())
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - t0)
    return times


def fmt(seconds: float | None) -> str:
    """A duration in s or ms."""
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"


# ------------------------------------------------------------------ sections


def bench_model(name: str, opts: argparse.Namespace) -> dict[str, Any]:
    """Training and evaluation of one model; returns the numbers it printed."""
    spec = get_model(name)
    n, tau, b = opts.nodes, opts.tau, opts.batch
    p = problem(spec, n, tau, b, opts.train_samples, opts.test_samples)
    dx, dy = jnp.asarray(p["train_x"]), jnp.asarray(p["train_y"])
    tx = optimizer(LR[name])
    x = jnp.asarray(p["x"])
    opt = jax.vmap(tx.init)(x)
    ids, w = jnp.asarray(p["ids"]), jnp.asarray(p["w"])
    res: dict[str, Any] = {"model": name, "n": n, "tau": tau, "batch": b}
    have_torch = tb.torch_available()

    # training
    rounds = opts.rounds
    train, res["compile_train_s"] = compile_timed(
        training_rounds(spec, dx, dy, LR[name], opts.train_chunk, rounds),
        (x, opt, ids, w),
    )
    calls: dict[str, Callable[[], Any]] = {"vectorized": lambda: train(x, opt, ids, w)}
    if have_torch:
        nodes = tb.TorchNodes(spec, p["x"], lr=LR[name])
        tx_t, ty_t = tb.nhwc_to_torch(p["train_x"]), tb.torch_labels(p["train_y"])
        calls["pytorch"] = lambda: nodes.train(tx_t, ty_t, p["ids"], p["w"])
    t = interleaved(calls, opts.repeats)
    res["train_vectorized_s"] = statistics.median(t["vectorized"]) / rounds
    res["train_pytorch_s"] = statistics.median(t["pytorch"]) if have_torch else None

    # evaluation
    tdx, tdy = jnp.asarray(p["test_x"]), jnp.asarray(p["test_y"])
    ev, res["compile_eval_s"] = compile_timed(
        evaluation_fn(spec, "eval"), (x, tdx, tdy)
    )
    old, res["compile_eval_training_forward_s"] = compile_timed(
        evaluation_fn(spec, "train"), (x, tdx, tdy)
    )
    calls = {
        "vectorized": lambda: ev(x, tdx, tdy),
        "training_forward": lambda: old(x, tdx, tdy),
    }
    if have_torch:
        ex_t, ey_t = tb.nhwc_to_torch(p["test_x"]), tb.torch_labels(p["test_y"])
        calls["pytorch"] = lambda: nodes.evaluate(ex_t, ey_t)
    t = interleaved(calls, opts.eval_repeats)
    res["eval_vectorized_s"] = statistics.median(t["vectorized"])
    res["eval_training_forward_s"] = statistics.median(t["training_forward"])
    res["eval_pytorch_s"] = statistics.median(t["pytorch"]) if have_torch else None
    res["test_samples"] = opts.test_samples
    got = np.asarray(ev(x, tdx, tdy)[1])
    res["eval_agrees_with_training_forward"] = bool(
        np.allclose(got, np.asarray(old(x, tdx, tdy)[1]), atol=0.2)
    )

    if opts.round_compile:
        run, (init,) = training_and_sharing_round(
            spec, dx, dy, LR[name], opts.train_chunk, n
        )
        share = jax.jit(init)(x)
        _, res["compile_round_s"] = compile_timed(
            run, (x, opt, share, jax.random.key(0), ids, w)
        )
    return res


def ratio(slow: float | None, fast: float | None) -> str:
    """``slow / fast`` as 'N.NNx' (or 'not installed')."""
    if slow is None or fast is None:
        return "not installed"
    return f"{slow / fast:.2f}x"


def print_model(r: dict[str, Any]) -> None:
    """The rows of one model."""
    torch_t = r["train_pytorch_s"]
    print(f"\n## {r['model']}: n = {r['n']}, batch {r['batch']}, tau = {r['tau']}\n")
    print("| what | vectorized (JAX) | per-node PyTorch | PyTorch / vectorized |")
    print("|---|---|---|---|")
    print(
        f"| training per round | {fmt(r['train_vectorized_s'])} | "
        f"{fmt(torch_t) if torch_t else 'not installed'} | "
        f"{ratio(torch_t, r['train_vectorized_s'])} |"
    )
    te = r["eval_pytorch_s"]
    print(
        f"| evaluation, {r['test_samples']:,} test samples x {r['n']} nodes | "
        f"{fmt(r['eval_vectorized_s'])} | {fmt(te) if te else 'not installed'} | "
        f"{ratio(te, r['eval_vectorized_s'])} |"
    )
    print(
        f"\nEvaluation with the training forward (apply_flat, chunks of 512): "
        f"{fmt(r['eval_training_forward_s'])}, "
        f"{r['eval_training_forward_s'] / r['eval_vectorized_s']:.2f}x the time of "
        f"the evaluation forward (same accuracies: "
        f"{r['eval_agrees_with_training_forward']})."
    )
    comp = (
        f"training {fmt(r['compile_train_s'])}, evaluation {fmt(r['compile_eval_s'])}"
    )
    if "compile_round_s" in r:
        comp += f", training + JWINS sharing round {fmt(r['compile_round_s'])}"
    print(f"First-call compile times: {comp}.")


def environment() -> dict[str, Any]:
    """The benchmark suite's environment record, with PyTorch's settings added."""
    return {
        **harness.environment(),
        "torch": tb.torch_version() if tb.torch_available() else "not installed",
        "torch_threads": tb.torch_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }


# ------------------------------------------------------------------ compile cache


def cache_child(opts: argparse.Namespace) -> None:
    """In a fresh process: compile the programs with the persistent cache on."""
    jax.config.update("jax_compilation_cache_dir", opts.cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    out = {}
    for name in opts.models:
        spec = get_model(name)
        p = problem(spec, opts.nodes, opts.tau, opts.batch, opts.train_samples, 64)
        dx, dy = jnp.asarray(p["train_x"]), jnp.asarray(p["train_y"])
        x = jnp.asarray(p["x"])
        opt = jax.vmap(optimizer(LR[name]).init)(x)
        ids, w = jnp.asarray(p["ids"]), jnp.asarray(p["w"])
        run, (init,) = training_and_sharing_round(
            spec, dx, dy, LR[name], opts.train_chunk, opts.nodes
        )
        share = jax.jit(init)(x)
        _, out[f"{name} round"] = compile_timed(
            run, (x, opt, share, jax.random.key(0), ids, w)
        )
        tdx, tdy = jnp.asarray(p["test_x"]), jnp.asarray(p["test_y"])
        _, out[f"{name} evaluation"] = compile_timed(
            evaluation_fn(spec, "eval"), (x, tdx, tdy)
        )
    print(json.dumps(out))


def cache_test(opts: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Two subprocesses, one cache directory: cold and warm compile times."""
    with tempfile.TemporaryDirectory() as cache:
        runs = []
        for _ in range(2):
            cmd = [sys.executable, __file__, "--cache-child", "--cache-dir", cache]
            proc = subprocess.run(
                cmd + argv, capture_output=True, text=True, check=True
            )
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("\n## Persistent compilation cache (two fresh processes, one cache dir)\n")
    print("| program | first process (cold cache) | second process (warm) |")
    print("|---|---|---|")
    for key in runs[0]:
        print(f"| {key} | {fmt(runs[0][key])} | {fmt(runs[1][key])} |")
    return {"cold": runs[0], "warm": runs[1]}


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="4 nodes, tau 1, tiny data (< 60 s)"
    )
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--nodes", type=int, default=96)
    ap.add_argument("--tau", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-chunk", type=int, default=8)
    ap.add_argument("--train-samples", type=int, default=5000)
    ap.add_argument("--test-samples", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2, help="rounds per timed scan")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--eval-repeats", type=int, default=3)
    ap.add_argument("--no-round-compile", dest="round_compile", action="store_false")
    ap.add_argument("--cache-test", action="store_true")
    ap.add_argument("--cache-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results to this file")
    opts = ap.parse_args(argv)
    opts.models = [m for m in opts.models.split(",") if m]
    if opts.quick:  # a smoke test of every row: tiny sizes, one SGD step
        opts.nodes = min(opts.nodes, 4)
        opts.tau = 1
        opts.train_samples = min(opts.train_samples, 256)
        opts.test_samples = min(opts.test_samples, 64)
        opts.rounds, opts.repeats, opts.eval_repeats = 1, 1, 1
        opts.round_compile = False
    return opts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # an entry point: the allocator settings the simulator's entry points use, before
    # the first JAX computation (the per-node PyTorch loop runs under them too)
    tune_host_allocator()
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    if opts.cache_child:
        cache_child(opts)
        return {}
    env = environment()
    print("# Local training and evaluation: vectorized vs per-node PyTorch\n")
    for key, value in env.items():
        print(f"* {key}: {value}")
    results: dict[str, Any] = {"env": env, "models": {}}
    if opts.cache_test:
        child = [a for a in argv if a != "--cache-test"]
        results["cache"] = cache_test(opts, child)
    else:
        for name in opts.models:
            r = bench_model(name, opts)
            results["models"][name] = r
            print_model(r)
    if opts.json:
        pathlib.Path(opts.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
