"""End-to-end round times of every model against the per-node ways (issues 4, 9, 10).

For each workload of :data:`MODELS` (the seven models of ``jwins_jax.models`` on their
stand-in datasets, 96 nodes on the paper's graph, the paper's batch size, tau and
learning rate: see the table) and each of its strategies (``full``, ``jwins``), this
measures, in one process:

* local training: ``sim.train_all`` (vmapped ``local_train`` in groups of
  ``train_chunk`` nodes), jitted;
* sharing step: the strategy's ``step`` jitted alone, on the trained models;
* evaluation: ``Experiment.evaluate``;
* the whole round: ``Experiment.advance`` over R rounds (one compiled loop, donated
  state), divided by R; the trace counter shows that repeats do not recompile;
* the per-node ways (:mod:`pernode`), the same rounds node by node, split into
  training and sharing (NumPy + PyWavelets, checked against the vectorized step):
  training with the simulator's own model jitted per node ("per-node JAX"), and
  training with PyTorch, the original system's engine ("per-node PyTorch", when
  PyTorch is installed; the section says "torch not installed" otherwise).

The workloads' settings follow SPEC 3 and 7.4 (experiments/README.md) with one
exception: FEMNIST runs tau = 4 local steps instead of the paper's 47, to keep the
section bounded (its training time grows linearly with tau, the rest of a round
does not; ``benchmarks/paper_rounds.py`` measures the paper's tau). The three heavy
workloads (FEMNIST, CelebA, Shakespeare: 1.7M / 30k / 2.7M parameters, 10-40 s a
round on 2 CPU cores) are measured with one repeat, JWINS only, without the sharing
breakdown and without the per-node check (memory): their programs are compiled
ahead of time, the first call after the compile is the measurement of training and
evaluation, the round is warmed up by one untimed round, and the per-node ways warm
up on one node instead of one round.

The machine reference is the FLOP rate of a jitted 2048 x 2048 float32 matmul; local
training is stated as a fraction of it (3x the analytic forward FLOPs per sample,
times batch x tau x n per round).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import harness
import jax
import jax.numpy as jnp
import numpy as np
import torch_baseline
from pernode import (
    PerNodeNetwork,
    TorchPerNodeNetwork,
    elias_gamma_bytes,
    forward_flops,
    relative_error,
    top_k_indices,
)
from simulation import BenchSim as Simulation

from jwins_jax import accounting, compiler, gossip, sparsify, wavelets
from jwins_jax.config import Config
from jwins_jax.data.batches import sample_batches
from jwins_jax.sharing import RoundInputs, strategy_defaults
from jwins_jax.sparsify import k_from_alpha


@dataclasses.dataclass(frozen=True)
class Workload:
    """How one model is benchmarked (SPEC 3, 7.2, 7.4; experiments/README.md).

    Attributes:
        dataset: the stand-in dataset (no download).
        partition: ``"dirichlet"`` (alpha 1) or ``"natural"`` (users over nodes).
        lr: SGD learning rate.
        batch_size: minibatch size b.
        local_steps: tau measured here.
        paper_local_steps: the paper's tau (differs where a cheaper tau is used).
        strategies: the sharing strategies measured.
        heavy: one repeat, compiled ahead of time, no sharing breakdown (see the
            module docstring).
        test_subset: test samples evaluated (0: all; None: ``--test-subset``).
        paper_estimate: whether to extrapolate the paper's CIFAR-10 run from it.
    """

    dataset: str
    partition: str
    lr: float
    batch_size: int
    local_steps: int
    paper_local_steps: int
    strategies: tuple[str, ...] = ("full", "jwins")
    heavy: bool = False
    test_subset: int | None = 0
    paper_estimate: bool = False


# SPEC 3's run-script values (experiments/README.md); MovieLens: its step config.
# The digits CNN has no paper workload: it runs CIFAR's b and tau with lr 0.05.
_HEAVY = {"strategies": ("jwins",), "heavy": True, "test_subset": 64}
MODELS: dict[str, Workload] = {
    "digits_cnn": Workload("digits", "dirichlet", lr=0.05, batch_size=8,
                           local_steps=3, paper_local_steps=3),
    "gn_lenet": Workload("synthetic_cifar", "dirichlet", lr=0.01, batch_size=8,
                         local_steps=3, paper_local_steps=3, test_subset=None,
                         paper_estimate=True),
    "movielens_mf": Workload("synthetic_movielens", "natural", lr=0.1,
                             batch_size=16, local_steps=10, paper_local_steps=10),
    "celeba_cnn": Workload("synthetic_celeba", "natural", lr=0.001, batch_size=8,
                           local_steps=8, paper_local_steps=8, **_HEAVY),
    "shakespeare_lstm": Workload("synthetic_shakespeare", "natural", lr=0.5,
                                 batch_size=16, local_steps=2, paper_local_steps=2,
                                 **_HEAVY),
    "reddit_rnn": Workload("synthetic_reddit", "natural", lr=1.0, batch_size=16,
                           local_steps=4, paper_local_steps=4, **_HEAVY),
    # cheaper than the paper's tau = 47, to keep the section bounded
    "femnist_cnn": Workload("synthetic_femnist", "natural", lr=0.01, batch_size=16,
                            local_steps=4, paper_local_steps=47, **_HEAVY),
}  # fmt: skip
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
    """The benchmark configuration of a model (paper graph when nodes == 96).

    Args:
        model: a key of :data:`MODELS`.
        nodes: number of nodes.
        test_subset: test samples where the workload does not fix them.
    """
    w = MODELS[model]
    return Config(
        nodes=nodes,
        topology="edges" if nodes == 96 else "regular",
        degree=min(4, nodes - 1),
        dataset=w.dataset,
        model=model,
        partition=w.partition,
        local_steps=w.local_steps,
        batch_size=w.batch_size,
        lr=w.lr,
        seed=90,
        test_subset=test_subset if w.test_subset is None else w.test_subset,
        eval_every=1,
        rounds=1,
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """Repeats of one workload's measurements (fewer for the heavy workloads)."""

    repeats: int
    warmup: int  # untimed calls of training and evaluation before their repeats
    advance_rounds: int
    round_repeats: int
    pernode_repeats: int
    warm_round: bool  # per-node ways: a whole untimed round (else one node)
    breakdown: bool


def plan_for(workload: Workload, opts: Any) -> Plan:
    """The repeats of a workload under the section's options."""
    if workload.heavy:
        return Plan(1, 0, 1, 1, 1, False, False)
    return Plan(
        opts.repeats,
        1,
        opts.advance_rounds,
        opts.round_repeats,
        opts.pernode_repeats,
        True,
        True,
    )


def _advance_rounds(sim: Simulation, plan: Plan) -> dict[str, Any]:
    """Times ``sim.advance(state, rounds)``; per-round stats, compile apart.

    With ``plan.warmup``, the first call goes through ``jax.jit`` (compile
    included) and the repeats show whether the loop is traced again; without, the
    program is compiled ahead of time (timed alone) and called once untimed (the
    first touch of the round's memory) before the timed calls.
    """
    rounds = plan.advance_rounds
    state = sim.init(jax.random.PRNGKey(0))
    t0 = time.perf_counter()
    if plan.warmup:

        def run(s: Any) -> Any:
            return sim.advance(s, rounds)

    else:
        run = sim.compile_advance(state, rounds)
    compile_s = time.perf_counter() - t0
    state, metrics = run(state)
    harness.block((state, metrics))
    first = time.perf_counter() - t0
    traces = sim.trace_count
    times = []
    for _ in range(plan.round_repeats):
        t0 = time.perf_counter()
        state, metrics = run(state)
        harness.block((state, metrics))
        times.append((time.perf_counter() - t0) / rounds)
    stats = harness.summarize(times)
    stats["rounds_per_call"] = rounds
    stats["first_call_s"] = first
    if plan.warmup:
        stats["compile_s"] = max(first - rounds * stats["median_s"], 0.0)
    else:
        stats["compile_s"] = compile_s
    stats["retraces_after_first_call"] = sim.trace_count - traces
    stats["finite"] = bool(np.all(np.isfinite(np.asarray(state.x))))
    return stats


def _pernode_rounds(
    sim: Simulation,
    sharing: str,
    plan: Plan,
    check: bool,
    network: type[PerNodeNetwork] = PerNodeNetwork,
) -> dict[str, Any]:
    """Per-node rounds: times each phase; checks the first round's sharing.

    Args:
        sim: the simulation whose model, data and graph the nodes use.
        sharing: ``"full"`` or ``"jwins"``.
        plan: ``pernode_repeats`` timed rounds, after one untimed round
            (``warm_round``) or after one node's training (``network.warm``).
        check: compare the first round's sharing with the vectorized step (the
            copy this needs is not timed).
        network: :class:`PerNodeNetwork` (JAX training per node) or
            :class:`TorchPerNodeNetwork` (PyTorch training per node).
    """
    c = sim.config
    state = sim.init(jax.random.PRNGKey(0))
    jw = strategy_defaults("jwins")  # full sharing leaves the JWINS options unset
    net = network(
        sim,
        state,
        c.alpha_list or jw["alpha_list"],
        jw["metadata_cap"] if c.metadata_cap is None else c.metadata_cap,
        c.wavelet or jw["wavelet"],
        c.level or jw["level"],
    )
    x0 = state.x if check else None
    del state  # the nodes hold their own copies (memory of the big models)

    def batches(r: int) -> tuple[np.ndarray, np.ndarray]:
        ids, w = sample_batches(
            jax.random.PRNGKey(100 + r),
            sim.node_data,
            c.local_steps,
            c.batch_size,
            sim.exp.drop_last,
        )
        return np.asarray(ids), np.asarray(w)

    rows: dict[str, list[float]] = {
        "round": [],
        "train": [],
        "share": [],
        "batches": [],
    }
    out: dict[str, Any] = {"network": network.__name__}
    if not plan.warm_round:
        t0 = time.perf_counter()
        net.warm(*batches(-1))
        out["warm_one_node_s"] = time.perf_counter() - t0
    for r in range(plan.pernode_repeats + int(plan.warm_round)):
        t0 = time.perf_counter()
        ids, w = batches(r)
        t1 = time.perf_counter()
        net.train(ids, w)
        t2 = time.perf_counter()
        before = net.stacked() if (check and r == 0) else None
        t_copy = time.perf_counter()  # the copy for the check is not timed
        alphas = net.share_jwins() if sharing == "jwins" else net.share_full()
        t3 = time.perf_counter()
        untimed = t_copy - t2
        if before is not None:
            out["check"] = _check_against_vectorized(
                sim, sharing, x0, before, net.stacked(), alphas
            )
            del before
        if r == 0 and plan.warm_round:
            out["first_round_s"] = t3 - t0 - untimed
            continue
        rows["batches"].append(t1 - t0)
        rows["train"].append(t2 - t1)
        rows["share"].append(t3 - t_copy)
        rows["round"].append(t3 - t0 - untimed)
    for name, times in rows.items():
        out[name] = harness.summarize(times)
    return out


def _pernode_torch_rounds(
    sim: Simulation, sharing: str, plan: Plan, check: bool
) -> dict[str, Any]:
    """:func:`_pernode_rounds` with PyTorch training, or why it did not run."""
    if not torch_baseline.torch_available():
        return {"skipped": f"torch not installed ({torch_baseline.INSTALL_HINT})"}
    out = _pernode_rounds(sim, sharing, plan, check, TorchPerNodeNetwork)
    out["torch"] = torch_baseline.torch_version()
    out["torch_threads"] = torch_baseline.torch_threads()
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
            RoundInputs(alphas=jnp.asarray(alphas, jnp.float32)),
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
        return [top_k_indices(abs_coefs[i], int(k[i])) for i in range(n)]

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
    workload = MODELS[model]
    plan = plan_for(workload, opts)
    nodes = opts.nodes
    base = base_config(model, nodes, opts.test_subset)
    first, *others = workload.strategies
    sims = {first: Simulation(base.replace(sharing=first))}
    for name in others:
        sims[name] = Simulation(base.replace(sharing=name), dataset=sims[first].dataset)
    sim = sims[first]
    c = sim.config
    res: dict[str, Any] = {
        "config": {
            "model": model,
            "dataset": c.dataset,
            "partition": c.partition,
            "nodes": nodes,
            "topology": c.topology,
            "local_steps": c.local_steps,
            "paper_local_steps": workload.paper_local_steps,
            "batch_size": c.batch_size,
            "lr": c.lr,
            "strategies": list(workload.strategies),
            "heavy": workload.heavy,
            "n_params": sim.n_params,
            "test_samples": int(sim.y_test.shape[0]),
            "mean_train_samples_per_node": float(
                np.mean(np.asarray(sim.node_data.size))
            ),
            "advance_rounds": plan.advance_rounds,
        },
        "plan": dataclasses.asdict(plan),
    }
    print(
        f"[e2e] {model}: n={nodes}, N={sim.n_params}, tau={c.local_steps}, "
        f"b={c.batch_size}",
        flush=True,
    )
    state = sim.init(jax.random.PRNGKey(0))
    ids, w = sample_batches(
        jax.random.PRNGKey(1),
        sim.node_data,
        c.local_steps,
        c.batch_size,
        sim.exp.drop_last,
    )
    train, (x_trained, _, _) = harness.time_compiled(
        sim.train_all, (state.x, state.opt, ids, w), plan.repeats, warmup=plan.warmup
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
    evaluate, _ = harness.time_compiled(
        sim.evaluate, (state,), plan.repeats, warmup=plan.warmup
    )
    res["evaluate"] = evaluate
    print(f"[e2e] {model}: evaluate {evaluate['median_s']:.3f} s", flush=True)
    # Only the sharing breakdown needs the initial state and the trained models
    # again: without it they are dropped as soon as possible, so that the big
    # models' (96, N) arrays (1 GB each for the LSTM) are not held twice.
    keep = plan.breakdown
    if not keep:
        del state
        harness.free()
    for i, name in enumerate(workload.strategies):
        s = sims[name]
        share_state = s.init(jax.random.PRNGKey(0)).share
        # always warmed up: the big models' first step pays for the first touch of
        # its temporaries (10 s instead of 13 s for the LSTM), and it is cheap
        share, _ = harness.time_compiled(
            s.share_step,
            (share_state, x_trained, jax.random.PRNGKey(2)),
            plan.repeats,
        )
        del share_state
        if not keep and i == len(workload.strategies) - 1:
            del x_trained
        harness.free()
        rnd = _advance_rounds(s, plan)
        harness.free()
        # The check runs the vectorized step next to the per-node nodes: skipped
        # for the heavy models (memory); the sharing is the same model-independent
        # code, checked on the other models in the same run.
        per = _pernode_rounds(s, name, plan, check=not workload.heavy)
        harness.free()
        per_torch = _pernode_torch_rounds(s, name, plan, check=not workload.heavy)
        harness.free()
        entry: dict[str, Any] = {
            "share": share,
            "round": rnd,
            "pernode": per,
            "pernode_torch": per_torch,
        }
        entry["ratios"] = _ratios(per, rnd, train, share)
        if "skipped" not in per_torch:
            entry["ratios_torch"] = _ratios(per_torch, rnd, train, share)
        entry["share_fraction_of_round"] = share["median_s"] / rnd["median_s"]
        for way, p in (("pernode", per), ("pernode_torch", per_torch)):
            if "train" in p:
                gflops = flops / p["train"]["median_s"] / 1e9
                entry[f"{way}_train_gflops"] = gflops
                entry[f"{way}_train_fraction_of_matmul"] = gflops / reference
        if name == "jwins" and plan.breakdown:
            entry["share_breakdown"] = share_breakdown(
                s, state, x_trained, opts.repeats
            )
        res[name] = entry
        torch_text = (
            f"{per_torch['round']['median_s']:.3f} s"
            if "round" in per_torch
            else per_torch["skipped"]
        )
        print(
            f"[e2e] {model}/{name}: round {rnd['median_s']:.3f} s vs per-node JAX "
            f"{per['round']['median_s']:.3f} s, per-node PyTorch {torch_text}; "
            f"share {share['median_s']:.4f} s vs {per['share']['median_s']:.4f} s",
            flush=True,
        )
    if workload.paper_estimate and "jwins" in res:
        res["paper_scale_estimate"] = paper_scale_estimate(res)
    return res


def _ratios(
    per: dict[str, Any],
    rnd: dict[str, Any],
    train: dict[str, Any],
    share: dict[str, Any],
) -> dict[str, float]:
    """Per-node time / vectorized time of the round, the training and the sharing."""
    return {
        "round": per["round"]["median_s"] / rnd["median_s"],
        "train": per["train"]["median_s"] / train["median_s"],
        "share": per["share"]["median_s"] / share["median_s"],
    }


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


def models_of(opts: Any) -> list[str]:
    """The requested models (``all``: every model of :data:`MODELS`)."""
    names = list(MODELS) if list(opts.models) == ["all"] else list(opts.models)
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise ValueError(
            f"--models {','.join(unknown)} unknown; allowed: {', '.join(MODELS)}"
        )
    return names


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
            "torch": (
                torch_baseline.torch_version()
                if torch_baseline.torch_available()
                else "not installed"
            ),
            "torch_threads": torch_baseline.torch_threads(),
        },
        "models": {},
    }
    for model in models_of(opts):
        t0 = time.perf_counter()
        out["models"][model] = run_model(model, opts, matmul)
        out["models"][model]["wall_s"] = time.perf_counter() - t0
        harness.free()
    return out
