"""Kernel benchmarks of the sharing step on ``(n, N)`` float32 stacks (issue 4).

Three families, each against the per-node NumPy/PyWavelets way on the same data:

* wavelet forward + inverse (sym2, level 4, SPEC 4.4): the ``jaxwt`` and
  ``polyphase`` backends of :mod:`jwins_jax.wavelets`, and PyWavelets ``wavedec`` +
  ``coeffs_to_array`` / ``array_to_coeffs`` + ``waverec`` row by row;
* selection with a per-node k (JWINS's partial alphas 0.1 ... 0.4, drawn per node):
  every :data:`jwins_jax.sparsify.METHODS` entry, ``lax.approx_max_k`` plus a mask
  (for reference; approximate), and NumPy ``argpartition`` row by row;
* gossip (MH weights of the paper graph at n = 96, a random 4-regular graph
  otherwise): ``gossip.mix`` on the neighbour table, ``mix_bcoo``, ``mix_dense``,
  ``mix_masked`` (the partial-sharing form JWINS uses) and NumPy row by row.

Every output is checked (wavelets against PyWavelets, selections for being a valid
top-k of the requested size, gossip against the NumPy rows), so "fastest" below means
fastest among the correct kernels. Sizes whose input exceeds the memory budget are
skipped, and so is a kernel whose time, extrapolated from the previous size, exceeds
the time budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import harness
import jax
import jax.numpy as jnp
import numpy as np
import pywt
from jax import lax

from jwins_jax import gossip, sparsify, wavelets
from jwins_jax.topology import PAPER_GRAPH, make_graph, mh_matrix, neighbor_table

WAVELET = "sym2"
LEVEL = 4
PARTIAL_ALPHAS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)  # JWINS's list without the full share
MASK_DENSITY = 0.3  # sender masks of the masked gossip kernel


@dataclasses.dataclass
class Budget:
    """Skips kernels whose time, extrapolated from the last size, is too long."""

    seconds: float
    last: dict[str, tuple[int, float]] = dataclasses.field(default_factory=dict)

    def estimate(self, name: str, elements: int) -> float | None:
        if name not in self.last:
            return None
        size, secs = self.last[name]
        return secs * elements / size

    def record(self, name: str, elements: int, secs: float) -> None:
        self.last[name] = (elements, secs)


def sizes(quick: bool, mem_gib: float) -> list[dict[str, Any]]:
    """The (n, N) grid, smallest first, with skip reasons for oversized inputs."""
    if quick:
        grid = [(8, 2_000)]
    else:
        grid = [
            (n, big_n)
            for big_n in (10_000, 100_000, 1_000_000, 10_000_000)
            for n in (16, 96, 384, 1024)
        ]
        grid.append((96, 89_834))  # the paper's GN-LeNet at n = 96
    out = []
    for n, big_n in sorted(grid, key=lambda p: (p[0] * p[1], p[1])):
        nbytes = 4 * n * big_n
        entry = {"n": n, "N": big_n, "input_bytes": nbytes}
        if nbytes > mem_gib * 2**30:
            entry["skipped"] = f"input {nbytes / 2**30:.2f} GiB > budget {mem_gib} GiB"
        out.append(entry)
    return out


def _graph(n: int) -> np.ndarray:
    if n == 96:
        return make_graph("edges", 96, edges_file=str(PAPER_GRAPH))
    return make_graph("regular", n, degree=min(4, n - 1), seed=0)


def _measure(
    name: str,
    budget: Budget,
    elements: int,
    jitted: Callable[..., Any] | None,
    args: tuple[Any, ...],
    host: Callable[[], Any] | None,
    repeats: int,
) -> tuple[dict[str, Any], Any]:
    est = budget.estimate(name, elements)
    if est is not None and est > budget.seconds:
        return {
            "skipped": f"estimated {est:.1f} s per call > budget {budget.seconds} s"
        }, None
    if jitted is not None:
        stats, out = harness.time_compiled(jitted, args, repeats)
    else:
        stats, out = harness.time_host(host, repeats)
        stats["warmup_s"] = stats.pop("first_s")
    budget.record(name, elements, stats["median_s"])
    return stats, out


def _wavelet_kernels(
    x: jax.Array, budget: Budget, repeats: int
) -> dict[str, dict[str, Any]]:
    n, big_n = x.shape
    elements = n * big_n
    rows: dict[str, dict[str, Any]] = {}
    x0 = np.array(x[0])
    ref_coef = pywt.coeffs_to_array(pywt.wavedec(x0, WAVELET, level=LEVEL))[0]
    scale = float(np.max(np.abs(ref_coef)))
    for backend in ("polyphase", "jaxwt"):
        tr = wavelets.make_wavelet_transform(big_n, WAVELET, LEVEL, backend=backend)

        def both(v, tr=tr):
            coef = tr.forward(v)
            return coef[0], tr.inverse(coef)

        stats, out = _measure(
            f"wavelet/{backend}", budget, elements, both, (x,), None, repeats
        )
        if out is not None:
            coef0, recon = out
            err_fwd = float(np.max(np.abs(np.asarray(coef0) - ref_coef))) / scale
            err_rt = float(jnp.max(jnp.abs(recon - x)) / jnp.max(jnp.abs(x)))
            stats["forward_rel_error"] = err_fwd
            stats["roundtrip_rel_error"] = err_rt
            stats["correct"] = bool(err_fwd < 1e-5 and err_rt < 1e-5)
            del out, coef0, recon
        rows[backend] = stats
        harness.free()
    _, slices = pywt.coeffs_to_array(pywt.wavedec(x0, WAVELET, level=LEVEL))

    host = np.asarray(x)

    def per_node():
        last = None
        for i in range(n):
            row = host[i].copy()  # PyWavelets needs a writable buffer
            coef = pywt.coeffs_to_array(pywt.wavedec(row, WAVELET, level=LEVEL))[0]
            bands = pywt.array_to_coeffs(coef, slices, output_format="wavedec")
            last = pywt.waverec(bands, WAVELET)[:big_n]
        return last

    stats, out = _measure("wavelet/pywt", budget, elements, None, (), per_node, repeats)
    if out is not None:
        err = float(np.max(np.abs(out - host[n - 1]))) / scale
        stats["roundtrip_rel_error"] = err
        stats["correct"] = bool(err < 1e-5)
    rows["pywt (per node)"] = stats
    return rows


def _valid_topk(mask: np.ndarray, score: np.ndarray, k: np.ndarray) -> bool:
    """Each row keeps exactly k[b] entries and none it drops beats one it keeps."""
    if not np.array_equal(mask.sum(axis=1), k):
        return False
    for b in range(mask.shape[0]):
        kept, dropped = score[b][mask[b]], score[b][~mask[b]]
        if kept.size and dropped.size and dropped.max() > kept.min():
            return False
    return True


def _selection_kernels(
    score: jax.Array, k: np.ndarray, budget: Budget, repeats: int
) -> dict[str, dict[str, Any]]:
    n, big_n = score.shape
    elements = n * big_n
    k_dev = jnp.asarray(k, jnp.int32)
    k_max = int(k.max())
    rows: dict[str, dict[str, Any]] = {}
    host_score = np.asarray(score)

    def check(stats: dict[str, Any], mask: Any) -> None:
        if mask is not None:
            stats["correct"] = _valid_topk(np.asarray(mask), host_score, k)

    for method in sparsify.METHODS:
        kwargs = {"method": method, "k_max": k_max if method == "top_k" else None}

        def select(s, kk, kwargs=kwargs):
            return sparsify.topk_mask(s, kk, **kwargs)

        stats, mask = _measure(
            f"select/{method}", budget, elements, select, (score, k_dev), None, repeats
        )
        check(stats, mask)
        label = f"topk_mask {method!r}"
        if method == "auto":
            label += f" (= {sparsify._default_method()!r})"
        rows[label] = stats
        del mask
        harness.free()

    def approx(s, kk):
        _, idx = lax.approx_max_k(s, k_max)
        keep = jnp.arange(k_max, dtype=jnp.int32)[None, :] < kk[:, None]
        rows_ = jnp.arange(s.shape[0])[:, None]
        return jnp.zeros(s.shape, bool).at[rows_, idx].set(keep)

    stats, mask = _measure(
        "select/approx", budget, elements, approx, (score, k_dev), None, repeats
    )
    if mask is not None:
        mask = np.asarray(mask)
        exact = _valid_topk(mask, host_score, k)
        rows_checked = min(n, 4)
        hits = 0
        for b in range(rows_checked):
            kth = np.partition(host_score[b], big_n - k[b])[big_n - k[b]]
            hits += int(np.sum(host_score[b][mask[b]] >= kth))
        stats["recall_first_rows"] = hits / int(np.sum(k[:rows_checked]))
        stats["correct"] = exact
    rows["lax.approx_max_k + mask"] = stats
    del mask
    harness.free()

    def per_node():
        out = np.zeros((n, big_n), bool)
        for b in range(n):
            idx = np.argpartition(host_score[b], big_n - k[b])[big_n - k[b] :]
            out[b, idx] = True
        return out

    stats, mask = _measure(
        "select/numpy", budget, elements, None, (), per_node, repeats
    )
    check(stats, mask)
    rows["numpy argpartition (per node)"] = stats
    return rows


def _gossip_kernels(
    x: jax.Array, budget: Budget, repeats: int
) -> dict[str, dict[str, Any]]:
    n, big_n = x.shape
    elements = n * big_n
    adj = _graph(n)
    table = neighbor_table(adj)
    w = mh_matrix(adj)
    nbrs = [np.flatnonzero(adj[i]) for i in range(n)]
    host_x = np.asarray(x)
    mask = jax.random.uniform(jax.random.PRNGKey(5), x.shape) < MASK_DENSITY
    host_mask = np.asarray(mask)

    def numpy_rows(masked: bool) -> np.ndarray:
        out = np.empty_like(host_x)
        for i in range(n):
            if masked:
                z = host_x[i].copy()
                for j in nbrs[i]:
                    z += np.float32(w[i, j]) * np.where(
                        host_mask[j], host_x[j] - host_x[i], np.float32(0)
                    )
            else:
                z = np.float32(w[i, i]) * host_x[i]
                for j in nbrs[i]:
                    z = z + np.float32(w[i, j]) * host_x[j]
            out[i] = z
        return out

    rows: dict[str, dict[str, Any]] = {}
    stats, ref = _measure(
        "gossip/numpy", budget, elements, None, (), lambda: numpy_rows(False), repeats
    )
    stats["correct"] = True  # the reference the other kernels are checked against
    rows["numpy (per node)"] = stats
    if ref is None:  # without a reference nothing else can be checked
        ref = numpy_rows(False)
    scale = float(np.max(np.abs(ref)))
    kernels = [
        ("mix (neighbour table)", "gossip/mix", gossip.mix, (table, x)),
        ("mix_bcoo", "gossip/bcoo", gossip.mix_bcoo, (gossip.bcoo_matrix(table), x)),
        (
            "mix_dense",
            "gossip/dense",
            gossip.mix_dense,
            (gossip.dense_matrix(table), x),
        ),
    ]
    for label, key, fn, args in kernels:
        stats, out = _measure(key, budget, elements, fn, args, None, repeats)
        if out is not None:
            err = float(np.max(np.abs(np.asarray(out) - ref))) / scale
            stats["rel_error"] = err
            stats["correct"] = bool(err < 1e-5)
        rows[label] = stats
        del out
        harness.free()
    del ref
    stats, out = _measure(
        "gossip/masked",
        budget,
        elements,
        gossip.mix_masked,
        (table, x, mask),
        None,
        repeats,
    )
    if out is not None:
        ref = numpy_rows(True)
        err = float(np.max(np.abs(np.asarray(out) - ref))) / max(
            float(np.max(np.abs(ref))), 1e-30
        )
        stats["rel_error"] = err
        stats["correct"] = bool(err < 1e-5)
    rows["mix_masked (table; JWINS form, informational)"] = stats
    return rows


def fastest(
    rows: dict[str, dict[str, Any]], exclude: tuple[str, ...] = ()
) -> str | None:
    """Name of the fastest measured and correct kernel of a family."""
    best, best_t = None, float("inf")
    for name, stats in rows.items():
        if any(e in name for e in exclude) or "median_s" not in stats:
            continue
        if not stats.get("correct", False):
            continue
        if stats["median_s"] < best_t:
            best, best_t = name, stats["median_s"]
    return best


def run(opts: Any) -> dict[str, Any]:
    """The kernel section: every family at every size within the budgets."""
    budget = Budget(opts.kernel_time_budget)
    points = []
    for point in sizes(opts.quick, opts.kernel_mem_gib):
        n, big_n = point["n"], point["N"]
        if "skipped" in point:
            points.append(point)
            continue
        print(f"[kernels] n={n} N={big_n}", flush=True)
        key = jax.random.PRNGKey(n * 7919 + big_n)
        x = jax.random.normal(key, (n, big_n), jnp.float32)
        point["wavelet"] = _wavelet_kernels(x, budget, opts.repeats)
        harness.free()
        rng = np.random.default_rng(n + big_n)
        k = np.array(
            [sparsify.k_from_alpha(a, big_n) for a in rng.choice(PARTIAL_ALPHAS, n)],
            np.int32,
        )
        point["k"] = {
            "min": int(k.min()),
            "max": int(k.max()),
            "alphas": list(PARTIAL_ALPHAS),
        }
        point["selection"] = _selection_kernels(jnp.abs(x), k, budget, opts.repeats)
        harness.free()
        point["gossip"] = _gossip_kernels(x, budget, opts.repeats)
        del x
        harness.free()
        point["fastest"] = {
            "wavelet": fastest(point["wavelet"]),
            "selection": fastest(point["selection"], exclude=("approx",)),
            "gossip": fastest(point["gossip"], exclude=("masked",)),
        }
        points.append(point)
    return {
        "settings": {
            "wavelet": WAVELET,
            "level": LEVEL,
            "partial_alphas": list(PARTIAL_ALPHAS),
            "mask_density": MASK_DENSITY,
            "time_budget_s": opts.kernel_time_budget,
            "memory_budget_gib": opts.kernel_mem_gib,
            "repeats": opts.repeats,
        },
        "defaults": {
            "wavelet_auto": wavelets.make_wavelet_transform(1000, WAVELET, LEVEL).name,
            "selection_auto": sparsify._default_method(),
            "gossip_in_sharing": "mix / mix_masked (neighbour table)",
        },
        "points": points,
    }
