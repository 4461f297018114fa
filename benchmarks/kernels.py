"""The sharing step's kernels on ``(n, N)`` float32 stacks, against the per-node way.

Four families, each kernel of the package timed in turns with the same work done node
by node with NumPy and PyWavelets in a baseline process of its own
(:mod:`benchmarks.baseline`, ``kernels``), and checked against the baseline's output:

* ``wavelet``: forward + inverse transform (sym2, level 4) of every backend of
  :mod:`jwins_jax.wavelets`; checked: the coefficients equal PyWavelets', the round
  trip gives the models back;
* ``select``: top-k masks with a per-node k (JWINS's partial alphas drawn per node),
  every method of :data:`jwins_jax.sparsify.METHODS`; checked: the same masks;
* ``gossip``: one MH averaging step (``gossip.mix`` on the neighbour table,
  ``mix_bcoo``, ``mix_dense``), and ``gossip_masked``: the fill-with-own averaging of
  selected entries that partial sharing uses (``mix_masked``); checked: the same
  averages (float32 rounding).

:func:`measure` times one size and is all a command needs; :func:`kernels` walks the
size grid, smallest first, skipping a size whose input exceeds the memory budget and a
kernel whose time, extrapolated from the previous size, exceeds the time budget.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.baseline import Baseline
from benchmarks.timing import compiled, device_call, interleave
from jwins_jax import gossip, sparsify, wavelets
from jwins_jax.topology import PAPER_GRAPH, make_graph, neighbor_table

WAVELET = {"wavelet": "sym2", "level": 4}
PARTIAL_ALPHAS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
MASK_DENSITY = 0.3  # sender masks of the masked gossip


def graph(n: int) -> np.ndarray:
    """The paper's graph at n = 96, a random 4-regular graph otherwise."""
    if n == 96:
        return make_graph("edges", 96, edges_file=str(PAPER_GRAPH))
    return make_graph("regular", n, degree=min(4, n - 1), seed=0)


def _families(x, k, adjacency, mask) -> dict[str, dict[str, tuple]]:
    """family -> kernel -> (function, arguments)."""
    big_n = x.shape[1]
    table = neighbor_table(adjacency)
    out: dict[str, dict[str, tuple]] = {"wavelet": {}, "select": {}}
    for backend in ("polyphase", "jaxwt"):
        tr = wavelets.make_wavelet_transform(big_n, backend=backend, **WAVELET)

        def both(v, tr=tr):
            coef = tr.forward(v)
            return coef, tr.inverse(coef)

        out["wavelet"][backend] = (both, (x,))
    k_dev, k_max = jnp.asarray(k), int(k.max())
    for method in sparsify.METHODS:
        fn = functools.partial(sparsify.topk_mask, method=method, k_max=k_max)
        out["select"][method] = (fn, (jnp.abs(x), k_dev))
    out["gossip"] = {
        "mix": (gossip.mix, (table, x)),
        "mix_bcoo": (gossip.mix_bcoo, (gossip.bcoo_matrix(table), x)),
        "mix_dense": (gossip.mix_dense, (gossip.dense_matrix(table), x)),
    }
    out["gossip_masked"] = {"mix_masked": (gossip.mix_masked, (table, x, mask))}
    return out


def _check(family: str, got: Any, want: np.ndarray, x: np.ndarray) -> float:
    """Relative error of a kernel's output against the per-node output."""
    if family == "select":
        return float(np.mean(np.asarray(got) != want))
    if family == "wavelet":
        coef, recon = (np.asarray(a) for a in got)
        err = np.max(np.abs(coef - want)) / np.max(np.abs(want))
        return float(max(err, np.max(np.abs(recon - x)) / np.max(np.abs(x))))
    return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


def measure(n: int, big_n: int, repeats: int, skip=lambda key: False) -> list[dict]:
    """One row per family at one size: every kernel and the per-node way.

    Args:
        n, big_n: the stack's shape.
        repeats: timed turns.
        skip: ``(family, kernel) -> bool``; skipped kernels are not run.

    Returns:
        Flat rows: ``n``, ``N``, ``family``, ``<kernel>_s`` (median; min, max, n),
        ``compile_<kernel>_s``, ``<kernel>_error`` (0 for equal masks) and
        ``<kernel>_ok``, ``pernode_s`` ...
    """
    x = jax.random.normal(jax.random.PRNGKey(n * 7919 + big_n), (n, big_n))
    rng = np.random.default_rng(n + big_n)
    alphas = rng.choice(PARTIAL_ALPHAS, n)
    k = np.array([sparsify.k_from_alpha(a, big_n) for a in alphas], np.int32)
    adjacency = graph(n)
    mask = jax.random.uniform(jax.random.PRNGKey(5), x.shape) < MASK_DENSITY
    host = np.asarray(x)
    base = Baseline(
        "kernels",
        {"wavelet": WAVELET},
        {"x": host, "k": k, "adjacency": adjacency, "mask": np.asarray(mask)},
    )
    rows = []
    try:
        for family, kernels in _families(x, k, adjacency, mask).items():
            row: dict[str, Any] = {"n": n, "N": big_n, "family": family}
            calls, programs = [], {}
            for name, (fn, args) in kernels.items():
                if skip((family, name)):
                    row[f"{name}_skipped"] = True
                    continue
                programs[name], row[f"compile_{name}_s"] = compiled(fn, *args)
                call = device_call(programs[name], *args)
                calls.append(lambda name=name, call=call: {name: call()})
            calls.append(lambda family=family: {"pernode": base(family)[family]})
            row.update(interleave(calls, repeats))
            want = base.fetch()[family]
            for name, (_, args) in kernels.items():
                if name in programs:
                    err = _check(family, programs[name](*args), want, host)
                    row[f"{name}_error"], row[f"{name}_ok"] = err, err < 1e-5
            rows.append(row)
    finally:
        base.close()
    return rows


def sizes(quick: bool) -> list[tuple[int, int]]:
    """The (n, N) grid, by input size."""
    if quick:
        return [(8, 2_000)]
    grid = [(n, m) for m in (10**4, 10**5, 10**6, 10**7) for n in (16, 96, 384, 1024)]
    return sorted(grid + [(96, 89_834)], key=lambda p: (p[0] * p[1], p[1]))


def kernels(opts: Any) -> list[dict[str, Any]]:
    """The ``kernels`` section over :func:`sizes`, within the budgets."""
    rows: list[dict[str, Any]] = []
    last: dict[tuple[str, str], tuple[int, float]] = {}

    def skip(key: tuple[str, str], elements: int) -> bool:
        if key not in last:
            return False
        size, seconds = last[key]
        return seconds * elements / size > opts.kernel_time_budget

    for n, big_n in sizes(opts.quick):
        if 4 * n * big_n > opts.kernel_mem_gib * 2**30:
            rows.append({"n": n, "N": big_n, "family": "all", "skipped": "memory"})
            continue
        print(f"[kernels] n={n} N={big_n}", flush=True)
        elements = n * big_n
        for row in measure(n, big_n, opts.repeats, lambda key: skip(key, elements)):
            for key in row:
                if key.endswith("_s") and not key.startswith(("compile_", "pernode")):
                    name = key[: -len("_s")]
                    if f"{name}_min_s" in row:
                        last[(row["family"], name)] = (elements, row[key])
            rows.append(row)
    return rows
