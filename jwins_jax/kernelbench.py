"""Kernel benchmark of the sharing blocks on the device at hand: ``jwins bench-kernels``.

Times the kernels a sharing round is made of, on ``(n, N)`` float32 stacks of random
models, for the sizes asked for, built-in and registered:

* **transform**: the wavelet (sym2, level 4) forward and inverse of both backends,
  and the transforms of registered strategies (:attr:`Sharing.blocks`);
* **ranking**: the built-in scores (change with each accumulation mode, magnitude)
  on the identity transform, i.e. their own arithmetic, and registered scores with
  their own transform;
* **selection**: per-node top-k at JWINS's partial alphas (0.1 ... 0.4, drawn per
  node) by every method of :func:`jwins_jax.sparsify.topk_mask` (bisection, sort,
  ``lax.top_k``: exact), ``lax.approx_max_k`` (not exact: its recall against the
  exact mask is measured), CHOCO's threshold, Bernoulli masks, and registered
  selections;
* **fill**: the fill rules (fill with own, masked average) and full gossip on a
  random 4-regular graph (the paper's graph at n = 96) with the neighbour table,
  ``BCOO`` and dense forms.

The command compares our kernels with each other. It has no per-node NumPy /
PyWavelets way of the original system: timed in this process, after JAX has started
its thread pools, such loops are not an honest baseline (issue 15). The benchmark
suite (``benchmarks/kernels.py``) runs them in a fresh process of its own and passes
them here as ``baseline`` (:class:`Baseline`), so that they are timed in turns with
our kernels by the same timer.

For every kernel and size: the compile time (lower + compile, apart), the median,
minimum and maximum of the steady-state calls after a warm-up, and the compiled
program's memory (``memory_analysis()``: arguments, outputs, temporaries). The
kernels of one family at one size are timed in turns (one call of each, then the
next turn), so load that comes and goes falls on all of them. Each output is checked
(transforms against PyWavelets, selections for being a valid top-k of the asked
size, fills against a NumPy loop), so a fast wrong kernel shows as such. Sizes whose
working set does not fit in the device's free memory, and kernels whose time
extrapolated from the previous size exceeds the time budget, are skipped and say so.

The timer (:func:`wall`, :func:`interleave`, :func:`summary`, :func:`compiled`,
:func:`device_call`) is the package's one timing loop; the benchmark suite times its
rounds with it too.

:func:`run` returns the rows (a dict, as written to ``kernels.json``); :func:`write`
writes ``kernels.csv``, ``kernels.json`` and ``time_vs_N.png`` (time against N per
family and n), :func:`table` formats the printed table and :func:`fastest` names the
fastest correct kernel of a family at a size.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jwins_jax import compiler, gossip, sharing, sparsify, topology, wavelets
from jwins_jax.sharing import blocks

PRESETS: dict[str, dict[str, Any]] = {
    "default": {"sizes": (10**5, 10**6, 10**7), "nodes": (1, 96, 1024), "repeats": 5},
    "small": {"sizes": (10**3, 10**4), "nodes": (1, 8), "repeats": 3},
}
FAMILIES = ("transform", "ranking", "selection", "fill")
PARTIAL_ALPHAS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)  # JWINS's list without the full share
WAVELET, LEVEL = "sym2", 4
MASK_DENSITY = 0.3  # the senders' masks of the fill kernels
WORKING_SET = 8  # a kernel's memory is taken as this many (n, N) float32 arrays


@dataclasses.dataclass
class Kernel:
    """One timed kernel.

    Attributes:
        family: one of :data:`FAMILIES`.
        name: what it is, e.g. ``"topk bisect"``.
        exactness: ``"exact"``, ``"approximate"``, ``"random"`` or ``"as declared"``
            (a registered block: unchecked).
        source: ``"built-in"`` or a registered strategy's name.
        build: ``(data) -> (fn, args, check)``: a jittable function of ``args`` and
            ``check(output) -> dict`` of correctness facts (``correct`` and more).
        min_nodes: the smallest n it makes sense for.
    """

    family: str
    name: str
    exactness: str
    source: str
    build: Callable[[Any], tuple[Any, tuple, Callable[[Any], dict[str, Any]]]]
    min_nodes: int = 1


@dataclasses.dataclass
class Data:
    """The inputs of one size (:func:`make_data`): models, scores, per-node k, a
    graph and the senders' masks of the fill kernels."""

    x: jax.Array  # (n, N) float32 models
    score: jax.Array  # (n, N) float32 |x|
    k: np.ndarray  # (n,) int32 per-node counts at JWINS's partial alphas
    alphas: np.ndarray  # (n,) float32 the alphas of k
    mask: jax.Array  # (n, N) bool senders' masks, density MASK_DENSITY
    table: topology.NeighborTable | None  # None for n < 3
    adj: np.ndarray | None  # (n, n) bool adjacency; None for n < 3

    @property
    def host_score(self) -> np.ndarray:
        return np.asarray(self.score)


# ------------------------------------------------------------------------ checks
def _valid_topk(mask: np.ndarray, score: np.ndarray, k: np.ndarray) -> bool:
    """Each row keeps exactly k entries and none it drops beats one it keeps."""
    if not np.array_equal(mask.sum(axis=1), k):
        return False
    for b in range(mask.shape[0]):
        kept, dropped = score[b][mask[b]], score[b][~mask[b]]
        if kept.size and dropped.size and dropped.max() > kept.min():
            return False
    return True


def _kth(score: np.ndarray, k: np.ndarray) -> np.ndarray:
    m = score.shape[1]
    return np.array(
        [
            np.partition(row, m - kk)[m - kk] if kk else np.inf
            for row, kk in zip(score, k)
        ]
    )


def _recall(mask: np.ndarray, score: np.ndarray, k: np.ndarray) -> float:
    """Fraction of the exact top-k entries the mask holds (ties count as hits)."""
    kth = _kth(score, k)
    hits = sum(int(np.sum(score[b][mask[b]] >= kth[b])) for b in range(len(k)))
    return min(1.0, hits / max(1, int(np.sum(k))))


def _topk_check(data: Data) -> Callable[[Any], dict[str, Any]]:
    def check(mask):
        mask = np.asarray(mask)
        return {"correct": _valid_topk(mask, data.host_score, data.k)}

    return check


# ----------------------------------------------------------------------- kernels
def _wavelet_kernels(backend: str) -> list[Kernel]:
    def tr(data):
        return wavelets.make_wavelet_transform(
            data.x.shape[1], WAVELET, LEVEL, backend=backend
        )

    def forward(data):
        import pywt

        row = np.array(data.x[0])  # PyWavelets needs a writable buffer
        ref = pywt.coeffs_to_array(pywt.wavedec(row, WAVELET, level=LEVEL))[0]

        def check(out):
            err = float(np.max(np.abs(np.asarray(out[0]) - ref)))
            rel = err / max(float(np.max(np.abs(ref))), 1e-30)
            return {"correct": rel < 1e-5, "rel_error": rel}

        return tr(data).forward, (data.x,), check

    def inverse(data):
        t = tr(data)
        coef = t.forward(data.x)

        def check(out):
            err = float(jnp.max(jnp.abs(out - data.x)) / jnp.max(jnp.abs(data.x)))
            return {"correct": err < 1e-5, "rel_error": err}

        return t.inverse, (coef,), check

    label = f"wavelet {WAVELET}/{LEVEL} {backend}"
    return [
        Kernel("transform", f"{label} forward", "exact", "built-in", forward),
        Kernel("transform", f"{label} inverse", "exact", "built-in", inverse),
    ]


def _score_kernel(by: str, accumulation: str) -> Kernel:
    def build(data):
        n, big_n = data.x.shape
        tr = blocks.identity(big_n)
        block = blocks.score(tr, by, accumulation)
        state = block.init(0.5 * data.x)
        if accumulation != "none":
            state = state.replace(acc=0.1 * data.x)

        def fn(state, x):
            return block.rank(state, x, tr.forward(x))[0]

        def check(out):
            return {"correct": bool(np.all(np.asarray(out) >= 0))}

        return fn, (state, data.x), check

    return Kernel("ranking", f"{by}/{accumulation}", "exact", "built-in", build)


def _topk_kernel(method: str) -> Kernel:
    def build(data):
        k_max = int(data.k.max())

        def fn(score, k):
            return sparsify.topk_mask(score, k, method=method, k_max=k_max)

        return fn, (data.score, jnp.asarray(data.k)), _topk_check(data)

    label = method if method != "auto" else f"auto (= {sparsify._default_method()})"
    return Kernel("selection", f"topk {label}", "exact", "built-in", build)


def _approx_kernel() -> Kernel:
    def build(data):
        k_max = int(data.k.max())

        def fn(score, k):
            return sparsify.approx_topk_mask(score, k, k_max)

        def check(mask):
            mask = np.asarray(mask)
            return {
                "correct": _valid_topk(mask, data.host_score, data.k),
                "recall": _recall(mask, data.host_score, data.k),
            }

        return fn, (data.score, jnp.asarray(data.k)), check

    return Kernel("selection", "lax.approx_max_k", "approximate", "built-in", build)


def _threshold_kernel() -> Kernel:
    def build(data):
        def check(mask):
            mask = np.asarray(mask)
            kth = _kth(data.host_score, data.k)
            ok = all(
                mask[b].sum() >= data.k[b]
                and np.array_equal(mask[b], data.host_score[b] >= kth[b])
                for b in range(len(data.k))
            )
            return {"correct": ok}

        fn = sparsify.threshold_mask
        return fn, (data.score, jnp.asarray(data.k)), check

    name = "threshold (CHOCO: >= k-th largest)"
    return Kernel("selection", name, "exact", "built-in", build)


def _bernoulli_kernel() -> Kernel:
    def build(data):
        n, big_n = data.x.shape
        alphas = jnp.asarray(data.alphas, jnp.float32)

        def fn(key, alpha):
            return sparsify.bernoulli_mask(key, (n, big_n), alpha)

        def check(mask):
            count = np.asarray(mask).sum(axis=1)
            expect = data.alphas * big_n
            sigma = np.sqrt(big_n * data.alphas * (1 - data.alphas))
            return {"correct": bool(np.all(np.abs(count - expect) <= 6 * sigma + 1))}

        return fn, (jax.random.PRNGKey(0), alphas), check

    return Kernel("selection", "bernoulli", "random", "built-in", build)


def _fill_kernel(name: str) -> Kernel:
    def build(data):
        n, big_n = data.x.shape
        fill = (
            blocks.fill_with_own()
            if name == "fill_with_own"
            else blocks.masked_average(big_n)
        )
        mask = data.mask
        w = topology.mh_matrix(data.adj)
        host_x, host_m = np.asarray(data.x), np.asarray(mask)

        def fn(table, x, mask):
            return fill.mix(table, x, x, mask)

        def check(out):
            ref = np.empty_like(host_x)
            for i in range(n):
                nbrs = np.flatnonzero(data.adj[i])
                if name == "fill_with_own":
                    z = host_x[i].copy()
                    for j in nbrs:
                        z += np.float32(w[i, j]) * np.where(
                            host_m[j], host_x[j] - host_x[i], 0
                        )
                else:
                    num = np.float32(w[i, i]) * host_x[i]
                    den = np.full(big_n, w[i, i], np.float32)
                    for j in nbrs:
                        num = num + np.where(
                            host_m[j], np.float32(w[i, j]) * host_x[j], 0
                        )
                        den = den + np.where(host_m[j], np.float32(w[i, j]), 0)
                    z = num / den
                ref[i] = z
            err = float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))
            return {"correct": err < 1e-5, "rel_error": err}

        return fn, (data.table, data.x, mask), check

    return Kernel("fill", name, "exact", "built-in", build, min_nodes=3)


def _mix_kernel(form: str) -> Kernel:
    def build(data):
        w = topology.mh_matrix(data.adj)
        host = np.asarray(data.x)
        ref = np.stack(  # neighbour by neighbour: no dense (n, n) product
            [
                sum(w[i, j] * host[j].astype(np.float64) for j in np.flatnonzero(row))
                for i, row in enumerate(w != 0)
            ]
        )

        def check(out):
            err = float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))
            return {"correct": err < 1e-5, "rel_error": err}

        if form == "table":
            return gossip.mix, (data.table, data.x), check
        if form == "bcoo":
            return gossip.mix_bcoo, (gossip.bcoo_matrix(data.table), data.x), check
        return gossip.mix_dense, (gossip.dense_matrix(data.table), data.x), check

    return Kernel("fill", f"full mix ({form})", "exact", "built-in", build, min_nodes=3)


def builtin_kernels() -> list[Kernel]:
    """The built-in kernels, by family."""
    out = _wavelet_kernels("polyphase") + _wavelet_kernels("jaxwt")
    for by, acc in (
        ("change", "none"),
        ("change", "accumulate"),
        ("change", "legacy"),
        ("magnitude", "none"),
    ):
        out.append(_score_kernel(by, acc))
    out += [_topk_kernel(m) for m in sparsify.METHODS if m != "auto"]
    out += [_approx_kernel(), _threshold_kernel(), _bernoulli_kernel()]
    out += [_fill_kernel("fill_with_own"), _fill_kernel("masked_average")]
    out += [_mix_kernel(f) for f in ("table", "bcoo", "dense")]
    return out


def fastest(
    result: dict[str, Any], family: str, n: int, big_n: int, exact: bool = True
) -> str | None:
    """The fastest correct kernel of a family at one size (exact ones only by
    default: not ``approximate``, ``random`` or ``as declared``)."""
    best, best_t = None, math.inf
    for r in result["rows"]:
        if (r["family"], r["n"], r["N"]) != (family, n, big_n) or "median_s" not in r:
            continue
        if not r.get("correct") or (exact and r["exactness"] != "exact"):
            continue
        if r["median_s"] < best_t:
            best, best_t = _label(r), r["median_s"]
    return best


def registered_kernels() -> list[Kernel]:
    """The transforms, scores and selections of registered (non built-in)
    strategies composed from blocks, built with their default parameters."""
    builtin_names = {
        "transform": {f"{WAVELET}/{LEVEL}/polyphase", f"{WAVELET}/{LEVEL}/jaxwt"},
        "ranking": {
            f"{b}/{a}" for b in blocks.SCORES for a in blocks.ACCUMULATION_MODES
        },
        "selection": {f"topk/{m}" for m in sparsify.METHODS}
        | {"threshold", "bernoulli"},
    }
    out = []
    for name in sharing.strategies():
        if name in sharing.STRATEGIES:
            continue
        out += _strategy_kernels(name, builtin_names)
    return out


def _strategy_kernels(name: str, builtin_names: dict[str, set[str]]) -> list[Kernel]:
    def built(data):
        sh = sharing.make_sharing(name, data.x.shape[1])
        if sh.blocks is None:
            raise ValueError(f"{name} is not composed from blocks")
        return sh

    def probe() -> Any:
        try:
            return sharing.make_sharing(name, 10_000).blocks
        except Exception:  # noqa: BLE001 - a strategy that cannot be built is skipped
            return None

    found = probe()
    if found is None:
        return []
    out = []
    if found.transform.name not in builtin_names["transform"] | {"identity"}:

        def forward(data):
            tr = built(data).blocks.transform
            return tr.forward, (data.x,), lambda out: {"correct": True}

        def inverse(data):
            tr = built(data).blocks.transform
            coef = tr.forward(data.x)

            def check(out):
                err = float(jnp.max(jnp.abs(out - data.x)) / jnp.max(jnp.abs(data.x)))
                return {"correct": err < 1e-4, "rel_error": err}

            return tr.inverse, (coef,), check

        label = found.transform.name
        out.append(Kernel("transform", f"{label} forward", "exact", name, forward))
        out.append(Kernel("transform", f"{label} inverse", "exact", name, inverse))
    if found.score is not None and found.score.name not in builtin_names["ranking"]:

        def rank(data):
            sh = built(data)
            state = sh.init(data.x)

            def fn(state, x, hp):
                coef = sh.blocks.transform.forward(x)
                return sh.blocks.score.rank(state.score, x, coef, hp.get("score"))[0]

            return fn, (state, 1.01 * data.x, sh.hp), lambda out: {"correct": True}

        out.append(Kernel("ranking", found.score.name, "exact", name, rank))
    if found.selection.name not in builtin_names["selection"]:

        def select(data):
            sh = built(data)
            sel = sh.blocks.selection
            inputs = sharing.RoundInputs()

            def fn(score, key, hp):
                return sel.select(score, key, hp.get("select"), inputs)[0]

            args = (data.score, jax.random.PRNGKey(0), sh.hp)
            return fn, args, lambda out: {"correct": True, "kept": _kept(out)}

        out.append(
            Kernel("selection", found.selection.name, "as declared", name, select)
        )
    return out


def _kept(mask) -> float:
    return float(np.mean(np.asarray(mask)))


# ------------------------------------------------------------------------ timing
Durations = dict[str, float]


def wall(call: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call takes with its result ready (``block_until_ready``), and
    the result."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(call())
    return time.perf_counter() - t0, out


def compiled(fn: Callable[..., Any], *args: Any, donate: tuple[int, ...] = ()):
    """``compiler.jit(fn)`` lowered and compiled for ``args``: (program, seconds)."""
    t0 = time.perf_counter()
    program = compiler.jit(fn, donate_argnums=donate).lower(*args).compile()
    return program, time.perf_counter() - t0


def device_call(program: Callable[..., Any], *args: Any) -> Callable[[], float]:
    """A zero-argument call of a compiled program that returns its seconds."""
    return lambda: wall(lambda: program(*args))[0]


def adapted_repeats(first_s: float, repeats: int) -> int:
    """Timed calls after a first call of ``first_s`` seconds: more for calls under
    10 ms (about 0.1 s in all, at most 20), one for calls over 5 s."""
    if first_s < 0.01:
        return max(repeats, min(20, int(0.1 / max(first_s, 1e-4))))
    return 1 if first_s > 5.0 else max(1, repeats)


def interleave(
    calls: Sequence[Callable[[], Durations]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Calls every way in turn: ``warmup`` untimed turns, then ``repeats`` timed.

    Args:
        calls: the ways, each a call returning the durations it measured,
            ``{name: seconds}`` (a call in another process reports its own).
        repeats: timed turns.
        warmup: untimed turns first.

    Returns:
        ``{name: [seconds of each timed turn]}``.
    """
    for _ in range(warmup):
        for call in calls:
            call()
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for call in calls:
            for name, seconds in call().items():
                times.setdefault(name, []).append(seconds)
    return times


def summary(times: Sequence[float], prefix: str = "") -> dict[str, Any]:
    """``median_s``, ``min_s``, ``max_s``, ``spread`` ((max - min) / median) and
    ``repeats`` of some timed calls, each key prefixed with ``prefix``."""
    median = statistics.median(times)
    spread = (max(times) - min(times)) / median if median > 0 else 0.0
    values = {
        "median_s": median,
        "min_s": min(times),
        "max_s": max(times),
        "spread": spread,
        "repeats": len(times),
    }
    return {prefix + k: v for k, v in values.items()}


def memory(program) -> dict[str, int]:
    """A compiled program's ``memory_analysis()`` in bytes (empty where the backend
    reports none): arguments, outputs, temporaries, their total less aliasing."""
    try:
        m = program.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports it
        return {}
    if m is None:
        return {}
    out = {
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "temp_bytes": int(m.temp_size_in_bytes),
    }
    total = out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"]
    out["total_bytes"] = total - int(m.alias_size_in_bytes)
    peak = int(getattr(m, "peak_memory_in_bytes", 0) or 0)
    if peak > 0:
        out["peak_bytes"] = peak
    return out


@dataclasses.dataclass
class Baseline:
    """The same work as a kernel done another way, timed in turns with it.

    The benchmark suite's per-node NumPy / PyWavelets loops in a process of their
    own are such ways (``benchmarks/kernels.py``). A row of a kernel with a baseline
    gains ``baseline`` (its name), :func:`summary` of its times prefixed
    ``baseline_`` and what ``compare`` returns.

    Attributes:
        name: what it is; the kernels of a family given baselines of one name at a
            size share one (it runs once per turn).
        call: runs it once; returns its seconds (measured where it runs).
        compare: ``(kernel output) -> facts`` comparing the kernel's output with
            the baseline's; called after the baseline's first call.
    """

    name: str
    call: Callable[[], float]
    compare: Callable[[Any], dict[str, Any]]


BaselineFor = Callable[[Kernel, Data], "Baseline | None"]


def measure_family(
    kernels: Sequence[Kernel],
    data: Data,
    repeats: int,
    baseline: BaselineFor | None = None,
) -> list[dict[str, Any]]:
    """Times kernels (of one family) at one size in turns, with their baselines.

    Each baseline is called once, then each kernel is compiled (the compile time
    apart) and called once: that call is its warm-up, and its output is checked and
    compared with its baseline's. Then every kernel and distinct baseline is called
    in turns, :func:`adapted_repeats` of the slowest first call times.

    Returns:
        Per kernel, the facts of its row: ``compile_s``, :func:`memory`, the
        checks, :func:`summary` of its times and its baseline's; or ``error``.
    """
    paired = [None if baseline is None else baseline(k, data) for k in kernels]
    others = {b.name: b for b in paired if b is not None}
    first = [other.call() for other in others.values()]
    facts: list[dict[str, Any]] = []
    calls = []
    for i, (kernel, other) in enumerate(zip(kernels, paired)):
        try:
            fn, args, check = kernel.build(data)
            program, compile_s = compiled(fn, *args)
            seconds, out = wall(lambda p=program, a=args: p(*a))
            row = {"compile_s": compile_s, **memory(program), **check(out)}
            if other is not None:
                row["baseline"] = other.name
                row.update(other.compare(out))
            del out
        except Exception as err:  # noqa: BLE001 - one kernel failing is a row
            text = " ".join(str(err).split())[:200]
            facts.append({"error": f"{type(err).__name__}: {text}"})
            continue
        first.append(seconds)
        facts.append(row)
        calls.append(lambda i=i, p=program, a=args: {i: wall(lambda: p(*a))[0]})
    calls += [lambda b=b: {b.name: b.call()} for b in others.values()]
    count = adapted_repeats(max(first, default=0.0), repeats)
    times = interleave(calls, count, warmup=0) if calls else {}
    for i, (row, other) in enumerate(zip(facts, paired)):
        if i in times:
            row.update(summary(times[i]))
            if other is not None:
                row.update(summary(times[other.name], "baseline_"))
    return facts


def measure(kernel: Kernel, data: Data, repeats: int) -> dict[str, Any]:
    """Compile time, steady-state times, memory and checks of one kernel."""
    return measure_family([kernel], data, repeats)[0]


def free_bytes() -> int:
    """Free memory of the default device (host RAM on CPU)."""
    from jwins_jax.sweep import free_memory_bytes

    return free_memory_bytes()


def graph(n: int) -> np.ndarray:
    """``(n, n)`` adjacency: the paper's graph at n = 96, a random 4-regular graph
    (complete below 5 nodes) otherwise."""
    if n == 96:
        return topology.make_graph("edges", 96, edges_file=str(topology.PAPER_GRAPH))
    return topology.make_graph("regular", n, degree=min(4, n - 1), seed=0)


def make_data(n: int, big_n: int, seed: int = 0) -> Data:
    """The inputs of one size: random models, JWINS's partial alphas drawn per
    node, the paper's graph at n = 96 (a random 4-regular graph otherwise; none for
    n < 3) and the senders' masks."""
    key = jax.random.PRNGKey(seed + n * 7919 + big_n)
    x = jax.random.normal(key, (n, big_n), jnp.float32)
    rng = np.random.default_rng(seed + n + big_n)
    alphas = rng.choice(PARTIAL_ALPHAS, n)
    k = np.array([sparsify.k_from_alpha(a, big_n) for a in alphas], np.int32)
    mask = jax.random.uniform(jax.random.PRNGKey(seed + 5), x.shape) < MASK_DENSITY
    adj = graph(n) if n >= 3 else None
    table = None if adj is None else topology.neighbor_table(adj)
    return Data(x, jnp.abs(x), k, alphas.astype(np.float32), mask, table, adj)


def run(
    sizes: Sequence[int] = PRESETS["default"]["sizes"],
    nodes: Sequence[int] = PRESETS["default"]["nodes"],
    *,
    repeats: int = 5,
    families: Sequence[str] = FAMILIES,
    registered: bool = True,
    time_budget_s: float = 30.0,
    memory_bytes: int | None = None,
    seed: int = 0,
    baseline: BaselineFor | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Times every kernel at every ``(n, N)``; the benchmark's one implementation.

    Args:
        sizes: model lengths N.
        nodes: node counts n.
        repeats: timed turns (up to 20 for a family whose calls all take under
            10 ms, one where one takes over 5 s).
        families: which of :data:`FAMILIES` to time.
        registered: also time the blocks of registered strategies.
        time_budget_s: skip a kernel whose call, extrapolated linearly in ``n N``
            from its previous size, would take longer.
        memory_bytes: memory available (default: the device's free memory); a size
            whose working set (:data:`WORKING_SET` arrays of ``n x N`` float32)
            exceeds it is skipped.
        seed: seed of the random models.
        baseline: ``(kernel, data) -> Baseline | None``, the other way of doing a
            kernel's work to time in turns with it (see :class:`Baseline`).
        log: where progress lines go (None: nowhere).

    Returns:
        ``{"settings": ..., "environment": ..., "rows": [...]}``: a row per kernel
        and size with ``family``, ``kernel``, ``exactness``, ``source``, ``n``,
        ``N`` and either the measurements, ``skipped`` (the reason) or ``error``.
    """
    say = log or (lambda text: None)
    kernels = builtin_kernels() + (registered_kernels() if registered else [])
    memory = free_bytes() if memory_bytes is None else int(memory_bytes)
    last: dict[str, tuple[int, float]] = {}
    rows: list[dict[str, Any]] = []
    for big_n in sorted(sizes):
        for n in sorted(nodes):
            need = WORKING_SET * 4 * n * big_n
            base = {"n": n, "N": big_n}
            if need > memory:
                reason = (
                    f"does not fit: about {need / 2**30:.1f} GiB needed, "
                    f"{memory / 2**30:.1f} GiB free"
                )
                say(f"n={n} N={big_n}: skipped, {reason}")
                rows += [
                    _row(k, base, skipped=reason)
                    for k in kernels
                    if k.family in families
                ]
                continue
            say(f"n={n} N={big_n}")
            data = make_data(n, big_n, seed)
            for family in families:
                timed = []
                for kernel in (k for k in kernels if k.family == family):
                    skip = _skip(kernel, n, big_n, last, time_budget_s)
                    if skip:
                        rows.append(_row(kernel, base, skipped=skip))
                        continue
                    timed.append(kernel)
                for kernel, facts in zip(
                    timed, measure_family(timed, data, repeats, baseline)
                ):
                    if "median_s" in facts:
                        last[_key(kernel)] = (n * big_n, facts["median_s"])
                    rows.append(_row(kernel, base, **facts))
            del data
    return {
        "settings": {
            "sizes": sorted(sizes),
            "nodes": sorted(nodes),
            "repeats": repeats,
            "families": list(families),
            "time_budget_s": time_budget_s,
            "memory_bytes": memory,
            "wavelet": f"{WAVELET}/{LEVEL}",
            "partial_alphas": list(PARTIAL_ALPHAS),
            "mask_density": MASK_DENSITY,
        },
        "environment": environment(),
        "rows": rows,
    }


def _key(kernel: Kernel) -> str:
    return f"{kernel.family}/{kernel.source}/{kernel.name}"


def _skip(kernel: Kernel, n: int, big_n: int, last: dict, budget_s: float) -> str:
    """Why a kernel is not timed at a size ("" if it is)."""
    if n < kernel.min_nodes:
        return f"needs n >= {kernel.min_nodes}"
    if _key(kernel) in last:
        size, secs = last[_key(kernel)]
        estimate = secs * n * big_n / size
        if estimate > budget_s:
            return f"estimated {estimate:.1f} s per call > budget {budget_s:g} s"
    return ""


def _row(kernel: Kernel, base: dict[str, Any], **values: Any) -> dict[str, Any]:
    return {
        "family": kernel.family,
        "kernel": kernel.name,
        "exactness": kernel.exactness,
        "source": kernel.source,
        **base,
        **values,
    }


def environment() -> dict[str, Any]:
    """Device, versions and date of a measurement."""
    dev = jax.devices()[0]
    kind = str(dev.device_kind)
    return {
        "device": dev.platform if kind == dev.platform else f"{dev.platform}: {kind}",
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


# ----------------------------------------------------------------------- outputs
CSV_COLUMNS = (
    "family",
    "kernel",
    "source",
    "exactness",
    "n",
    "N",
    "compile_s",
    "median_s",
    "min_s",
    "max_s",
    "spread",
    "repeats",
    "argument_bytes",
    "output_bytes",
    "temp_bytes",
    "total_bytes",
    "correct",
    "recall",
    "rel_error",
    "skipped",
    "error",
)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g}" if seconds < 1 else f"{seconds * 1e3:,.0f}"


def _mib(count: int | None) -> str:
    return "-" if count is None else f"{count / 2**20:.3g}"


def table(result: dict[str, Any]) -> str:
    """The printed table: one line per kernel and size."""
    header = (
        "family",
        "kernel",
        "n",
        "N",
        "compile s",
        "median ms",
        "min-max ms",
        "memory MiB",
        "exact",
        "check",
    )
    lines = [header]
    for r in result["rows"]:
        if "median_s" in r:
            spread = f"{_ms(r['min_s'])}-{_ms(r['max_s'])}"
            compile_s = f"{r['compile_s']:.2f}"
            check = "ok" if r.get("correct") else "WRONG"
            if r.get("recall") is not None:
                check = f"recall {r['recall']:.4f}"
            if r.get("kept") is not None:
                check += f", kept {100 * r['kept']:.0f}%"
            timing = (compile_s, _ms(r["median_s"]), spread, _mib(r.get("total_bytes")))
        else:
            why = r.get("skipped") or r.get("error") or "?"
            timing, check = (
                ("-", "-", "-", "-"),
                ("skipped: " if "skipped" in r else "error: ") + why,
            )
        lines.append(
            (
                r["family"],
                _label(r),
                str(r["n"]),
                f"{r['N']:,}",
                *timing,
                r["exactness"],
                check,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write(
    result: dict[str, Any], directory: str | pathlib.Path
) -> dict[str, pathlib.Path]:
    """Writes ``kernels.json``, ``kernels.csv`` and ``time_vs_N.png`` into
    ``directory``; returns their paths."""
    import csv

    from jwins_jax.results import write_json

    directory = pathlib.Path(directory)
    paths = {
        "json": directory / "kernels.json",
        "csv": directory / "kernels.csv",
        "plot": directory / "time_vs_N.png",
    }
    write_json(paths["json"], result)
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in result["rows"]:
            writer.writerow(
                {k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS}
            )
    plot(result, paths["plot"])
    return paths


def plot(result: dict[str, Any], path: str | pathlib.Path) -> None:
    """Median time against N (log-log), a panel per family (rows) and n (columns)."""
    from jwins_jax.results import _pyplot

    plt = _pyplot()
    every = result["rows"]
    rows = [r for r in every if "median_s" in r]
    families = [f for f in FAMILIES if any(r["family"] == f for r in rows)]
    nodes = sorted({r["n"] for r in rows})
    if not families or not nodes:
        return
    fig, axes = plt.subplots(
        len(families),
        len(nodes),
        figsize=(4.2 * len(nodes), 3.2 * len(families)),
        squeeze=False,
    )
    for i, family in enumerate(families):
        for j, n in enumerate(nodes):
            ax = axes[i][j]
            mine = [r for r in rows if r["family"] == family and r["n"] == n]
            if not mine:
                why = {
                    r.get("skipped") or r.get("error") or "not run"
                    for r in every
                    if r["family"] == family and r["n"] == n
                }
                ax.set_title(f"{family}, n = {n}", fontsize=9)
                ax.text(
                    0.5,
                    0.5,
                    "\n".join(sorted(why)) or "not run",
                    ha="center",
                    va="center",
                    fontsize=8,
                    transform=ax.transAxes,
                    wrap=True,
                )
                ax.set_axis_off()
                continue
            for label in dict.fromkeys(_label(r) for r in mine):
                pts = sorted(
                    (r["N"], r["median_s"]) for r in mine if _label(r) == label
                )
                ax.plot(
                    [p[0] for p in pts], [p[1] for p in pts], marker="o", label=label
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{family}, n = {n}", fontsize=9)
            ax.set_xlabel("N (values per node)", fontsize=8)
            ax.set_ylabel("median time per call (s)", fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
    env = result.get("environment", {})
    fig.suptitle(
        f"jwins bench-kernels: {env.get('device', '')}, jax {env.get('jax', '')}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(r: dict[str, Any]) -> str:
    if r["source"] == "built-in":
        return r["kernel"]
    return f"{r['source']}: {r['kernel']}"


__all__ = [
    "FAMILIES",
    "PRESETS",
    "Baseline",
    "Data",
    "Kernel",
    "adapted_repeats",
    "builtin_kernels",
    "compiled",
    "device_call",
    "fastest",
    "graph",
    "interleave",
    "make_data",
    "measure",
    "measure_family",
    "memory",
    "plot",
    "registered_kernels",
    "run",
    "summary",
    "table",
    "wall",
    "write",
]
