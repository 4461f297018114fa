"""End-to-end round times, the per-node comparison and the machine reference (issue 4).

For each model (digits CNN on digits, GN-LeNet on synthetic CIFAR-shaped data; batch
8, tau = 3, the paper's 96-node graph) and each strategy (``full``, ``jwins``) this
measures, in one process:

* local training: ``sim.train_all`` (vmapped ``local_train`` in groups of
  ``train_chunk`` nodes), jitted;
* sharing step: the strategy's ``step`` jitted alone, on the trained models;
* evaluation: ``Experiment.evaluate``;
* the whole round: ``Experiment.advance`` over R rounds (one compiled loop, donated
  state), divided by R; the trace counter shows that repeats do not recompile;
* the per-node way (:mod:`pernode`): the same rounds node by node, split into
  training and sharing.

The machine reference is the FLOP rate of a jitted 2048 x 2048 float32 matmul; local
training is stated as a fraction of it (3x the analytic forward FLOPs per sample,
times batch x tau x n per round).
"""

from __future__ import annotations

import time
from typing import Any

import harness
import jax
import jax.numpy as jnp
import numpy as np
from pernode import (
    PerNodeNetwork,
    elias_gamma_bytes,
    forward_flops,
    relative_error,
)

from jwins_jax import accounting, compiler, gossip, sparsify, wavelets
from jwins_jax.config import Config
from jwins_jax.sharing import strategy_defaults
from jwins_jax.data.batches import sample_batches
from simulation import BenchSim as Simulation
from jwins_jax.sparsify import k_from_alpha

# model -> (dataset, learning rate): the paper's CIFAR lr for GN-LeNet (SPEC 3).
MODELS: dict[str, tuple[str, float]] = {
    "digits_cnn": ("digits", 0.05),
    "gn_lenet": ("synthetic_cifar", 0.01),
}
STRATEGIES = ("full", "jwins")
PAPER_ROUNDS = 2166  # CIFAR, SPEC 3
PAPER_TEST_AFTER = 21
PAPER_TEST_SAMPLES = 10_000
PAPER_TRAIN_PER_NODE = 520


def matmul_reference(size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """FLOP rate of a jitted ``size x size`` float32 matmul (2 size^3 FLOPs)."""
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (size, size), jnp.float32)
    b = jax.random.normal(kb, (size, size), jnp.float32)
    stats, _ = harness.time_compiled(jnp.matmul, (a, b), repeats)
    stats["size"] = size
    stats["flops"] = 2 * size**3
    stats["gflops"] = stats["flops"] / stats["median_s"] / 1e9
    stats["gflops_best"] = stats["flops"] / stats["min_s"] / 1e9
    return stats


def base_config(model: str, nodes: int, test_subset: int) -> Config:
    """The benchmark configuration of a model (paper graph when nodes == 96)."""
    dataset, lr = MODELS[model]
    return Config(
        nodes=nodes,
        topology="edges" if nodes == 96 else "regular",
        degree=min(4, nodes - 1),
        dataset=dataset,
        model=model,
        partition="dirichlet",
        local_steps=3,
        batch_size=8,
        lr=lr,
        seed=90,
        test_subset=test_subset,
        eval_every=1,
        rounds=1,
    )


def _advance_rounds(sim: Simulation, rounds: int, repeats: int) -> dict[str, Any]:
    """Times ``sim.advance(state, rounds)``; per-round stats, compile apart."""
    state = sim.init(jax.random.PRNGKey(0))
    t0 = time.perf_counter()
    state, metrics = sim.advance(state, rounds)
    harness.block((state, metrics))
    first = time.perf_counter() - t0
    traces = sim.trace_count
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = sim.advance(state, rounds)
        harness.block((state, metrics))
        times.append((time.perf_counter() - t0) / rounds)
    stats = harness.summarize(times)
    stats["rounds_per_call"] = rounds
    stats["first_call_s"] = first
    stats["compile_s"] = max(first - rounds * stats["median_s"], 0.0)
    stats["retraces_after_first_call"] = sim.trace_count - traces
    stats["finite"] = bool(np.all(np.isfinite(np.asarray(state.x))))
    return stats


def _pernode_rounds(
    sim: Simulation, sharing: str, repeats: int, check: bool
) -> dict[str, Any]:
    """Runs 1 + repeats per-node rounds; times each phase; checks the first round."""
    c = sim.config
    state = sim.init(jax.random.PRNGKey(0))
    jw = strategy_defaults("jwins")  # full sharing leaves the JWINS options unset
    net = PerNodeNetwork(
        sim,
        state,
        c.alpha_list or jw["alpha_list"],
        jw["metadata_cap"] if c.metadata_cap is None else c.metadata_cap,
        c.wavelet or jw["wavelet"],
        c.level or jw["level"],
    )
    rows: dict[str, list[float]] = {
        "round": [],
        "train": [],
        "share": [],
        "batches": [],
    }
    out: dict[str, Any] = {}
    for r in range(1 + repeats):
        t0 = time.perf_counter()
        ids, w = sample_batches(
            jax.random.PRNGKey(100 + r), sim.node_data, c.local_steps, c.batch_size
        )
        ids, w = np.asarray(ids), np.asarray(w)
        t1 = time.perf_counter()
        net.train(ids, w)
        t2 = time.perf_counter()
        before = net.stacked() if (check and r == 0) else None
        if sharing == "jwins":
            alphas = net.share_jwins()
        else:
            net.share_full()
        t3 = time.perf_counter()
        if r == 0:
            out["first_round_s"] = t3 - t0
            if before is not None:
                out["check"] = _check_against_vectorized(
                    sim,
                    sharing,
                    state.x,
                    before,
                    net.stacked(),
                    alphas if sharing == "jwins" else None,
                )
            continue
        rows["batches"].append(t1 - t0)
        rows["train"].append(t2 - t1)
        rows["share"].append(t3 - t2)
        rows["round"].append(t3 - t0)
    for name, times in rows.items():
        out[name] = harness.summarize(times)
    return out


def _check_against_vectorized(
    sim: Simulation,
    sharing: str,
    x0: jax.Array,
    before: np.ndarray,
    after: np.ndarray,
    alphas: list[float] | None,
) -> dict[str, Any]:
    """The vectorized step on the per-node round's input must give its output."""
    if sharing == "jwins":
        share_state = sim.sharing.init(x0)
        x_new, _, _ = compiler.jit(sim.share_step)(
            share_state,
            jnp.asarray(before),
            jax.random.PRNGKey(0),
            alphas=jnp.asarray(alphas, jnp.float32),
        )
    else:
        x_new = compiler.jit(gossip.mix)(sim.table, jnp.asarray(before))
    err = relative_error(np.asarray(x_new), after)
    return {"max_relative_error": err, "ok": bool(err < 1e-4)}


def share_breakdown(
    sim: Simulation, state: Any, x: jax.Array, repeats: int
) -> dict[str, Any]:
    """The JWINS sharing step part by part, vectorized and per node, on trained models.

    Parts and how often one step runs them: the wavelet forward transform (3x: the
    models, their change, the post-averaging change), the inverse (1x), the per-node
    top-k selection, the fill-with-own gossip and the Elias-gamma byte count (1x each).
    """
    c = sim.config
    tr = wavelets.make_wavelet_transform(
        sim.n_params, c.wavelet, c.level, backend=c.wavelet_backend
    )
    n = x.shape[0]
    coef = compiler.jit(tr.forward)(x)
    rng = np.random.default_rng(0)
    partial = [a for a in c.alpha_list if a < c.metadata_cap]
    k = np.array([k_from_alpha(a, tr.m) for a in rng.choice(partial, n)], np.int32)
    score = jnp.abs(coef)
    k_dev = jnp.asarray(k)
    mask = sparsify.topk_mask(score, k_dev)
    counts = {"forward": 3, "inverse": 1, "select": 1, "gossip": 1, "bytes": 1}
    vec = {
        "forward": harness.time_compiled(tr.forward, (x,), repeats)[0],
        "inverse": harness.time_compiled(tr.inverse, (coef,), repeats)[0],
        "select": harness.time_compiled(
            lambda sc, kk: sparsify.topk_mask(sc, kk), (score, k_dev), repeats
        )[0],
        "gossip": harness.time_compiled(
            gossip.mix_masked, (sim.table, coef, mask), repeats
        )[0],
        "bytes": harness.time_compiled(accounting.elias_gamma_bytes, (mask,), repeats)[
            0
        ],
    }
    net = PerNodeNetwork(sim, state, c.alpha_list, c.metadata_cap, c.wavelet, c.level)
    rows = [r.copy() for r in np.asarray(x)]
    coefs = [np.array(r) for r in np.asarray(coef)]
    abs_coefs = [np.abs(r) for r in coefs]
    masks = np.asarray(mask)
    picked = [np.flatnonzero(masks[i]) for i in range(n)]

    def dec_all():
        return [net.dec(r) for r in rows]

    def rec_all():
        return [net.rec(z) for z in coefs]

    def select_all():
        m = tr.m
        out = []
        for i in range(n):
            top = np.argpartition(abs_coefs[i], m - k[i])[m - k[i] :]
            top.sort()
            out.append(top)
        return out

    def gossip_all():
        out = []
        for i in range(n):
            z = net.self_weight[i] * coefs[i]
            for j, wij in zip(net.neighbors[i], net.weights[i], strict=True):
                q = coefs[i].copy()
                q[picked[j]] = coefs[j][picked[j]]
                z = z + wij * q
            out.append(z)
        return out

    def bytes_all():
        return [elias_gamma_bytes(p) for p in picked]

    per = {
        name: harness.time_host(fn, repeats)[0]
        for name, fn in (
            ("forward", dec_all),
            ("inverse", rec_all),
            ("select", select_all),
            ("gossip", gossip_all),
            ("bytes", bytes_all),
        )
    }
    for stats in per.values():
        stats.pop("first_s", None)
    return {
        "n": n,
        "N": sim.n_params,
        "M": tr.m,
        "transform": tr.name,
        "per_step": counts,
        "vectorized": vec,
        "pernode": per,
        "sum_vectorized_s": sum(counts[p] * vec[p]["median_s"] for p in counts),
        "sum_pernode_s": sum(counts[p] * per[p]["median_s"] for p in counts),
    }


def run_model(model: str, opts: Any, matmul: dict[str, Any]) -> dict[str, Any]:
    """All end-to-end measurements of one model."""
    nodes = opts.nodes
    test_subset = opts.test_subset if model == "gn_lenet" else 0
    base = base_config(model, nodes, test_subset)
    sims = {"full": Simulation(base.replace(sharing="full"))}
    sims["jwins"] = Simulation(
        base.replace(sharing="jwins"), dataset=sims["full"].dataset
    )
    sim = sims["full"]
    c = sim.config
    res: dict[str, Any] = {
        "config": {
            "model": model,
            "dataset": c.dataset,
            "nodes": nodes,
            "topology": c.topology,
            "local_steps": c.local_steps,
            "batch_size": c.batch_size,
            "n_params": sim.n_params,
            "test_samples": int(sim.y_test.shape[0]),
            "mean_train_samples_per_node": float(
                np.mean(np.asarray(sim.node_data.size))
            ),
            "advance_rounds": opts.advance_rounds,
        }
    }
    print(f"[e2e] {model}: n={nodes}, N={sim.n_params}", flush=True)
    state = sim.init(jax.random.PRNGKey(0))
    ids, w = sample_batches(
        jax.random.PRNGKey(1), sim.node_data, c.local_steps, c.batch_size
    )
    train, (x_trained, _, _) = harness.time_compiled(
        sim.train_all, (state.x, state.opt, ids, w), opts.repeats
    )
    # The machine is shared: take the reference rate again right after training.
    adjacent = matmul_reference(repeats=opts.repeats + 2)
    reference = max(matmul["gflops"], adjacent["gflops"])
    fwd = forward_flops(model)
    flops = 3 * fwd * c.batch_size * c.local_steps * nodes
    train["flops_per_round"] = flops
    train["gflops"] = flops / train["median_s"] / 1e9
    train["matmul_gflops_adjacent"] = adjacent["gflops"]
    train["matmul_gflops_reference"] = reference
    train["fraction_of_matmul"] = train["gflops"] / reference
    res["forward_flops_per_sample"] = fwd
    res["train"] = train
    print(f"[e2e] {model}: train {train['median_s']:.3f} s", flush=True)
    evaluate, _ = harness.time_compiled(sim.evaluate, (state,), opts.repeats)
    res["evaluate"] = evaluate
    print(f"[e2e] {model}: evaluate {evaluate['median_s']:.3f} s", flush=True)
    for name in STRATEGIES:
        s = sims[name]
        share_state = s.init(jax.random.PRNGKey(0)).share
        share, _ = harness.time_compiled(
            s.share_step,
            (share_state, x_trained, jax.random.PRNGKey(2)),
            opts.repeats,
        )
        harness.free()
        rnd = _advance_rounds(s, opts.advance_rounds, opts.round_repeats)
        harness.free()
        per = _pernode_rounds(s, name, opts.pernode_repeats, check=True)
        entry = {"share": share, "round": rnd, "pernode": per}
        entry["ratios"] = {
            "round": per["round"]["median_s"] / rnd["median_s"],
            "train": per["train"]["median_s"] / train["median_s"],
            "share": per["share"]["median_s"] / share["median_s"],
        }
        entry["share_fraction_of_round"] = share["median_s"] / rnd["median_s"]
        entry["pernode_train_gflops"] = flops / per["train"]["median_s"] / 1e9
        entry["pernode_train_fraction_of_matmul"] = (
            entry["pernode_train_gflops"] / reference
        )
        if name == "jwins":
            entry["share_breakdown"] = share_breakdown(
                s, state, x_trained, opts.repeats
            )
        res[name] = entry
        print(
            f"[e2e] {model}/{name}: round {rnd['median_s']:.3f} s vs per-node "
            f"{per['round']['median_s']:.3f} s; share {share['median_s']:.4f} s vs "
            f"{per['share']['median_s']:.4f} s",
            flush=True,
        )
    res["paper_scale_estimate"] = paper_scale_estimate(res)
    return res


def paper_scale_estimate(res: dict[str, Any]) -> dict[str, Any]:
    """Minutes for the paper's CIFAR run (2,166 JWINS rounds, 96 nodes) at these speeds.

    Evaluation every 21 rounds (103 evaluations at a fixed interval) is extrapolated
    linearly in evaluated samples to the 10,000-image test set and 520 training
    samples per node.
    """
    cfg = res["config"]
    round_s = res["jwins"]["round"]["median_s"] * 96 / cfg["nodes"]
    evaluated = cfg["test_samples"] + cfg["mean_train_samples_per_node"]
    eval_s = (
        res["evaluate"]["median_s"]
        * ((PAPER_TEST_SAMPLES + PAPER_TRAIN_PER_NODE) / evaluated)
        * 96
        / cfg["nodes"]
    )
    n_evals = PAPER_ROUNDS // PAPER_TEST_AFTER
    return {
        "rounds": PAPER_ROUNDS,
        "evaluations": n_evals,
        "rounds_only_min": PAPER_ROUNDS * round_s / 60,
        "evaluation_min": n_evals * eval_s / 60,
        "total_min": (PAPER_ROUNDS * round_s + n_evals * eval_s) / 60,
    }


def run(opts: Any, matmul: dict[str, Any]) -> dict[str, Any]:
    """The end-to-end section for every requested model."""
    out: dict[str, Any] = {
        "settings": {
            "nodes": opts.nodes,
            "repeats": opts.repeats,
            "round_repeats": opts.round_repeats,
            "pernode_repeats": opts.pernode_repeats,
            "advance_rounds": opts.advance_rounds,
            "test_subset_gn_lenet": opts.test_subset,
        },
        "models": {},
    }
    for model in opts.models:
        out["models"][model] = run_model(model, opts, matmul)
        harness.free()
    return out
