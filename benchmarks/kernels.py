"""The kernels section: ``jwins bench-kernels``' kernels against the per-node way.

Our kernels, their timer and their checks are :mod:`jwins_jax.kernelbench`'s (the
built-ins; registered strategies are left out). What this section adds is the
original's way: every kernel that has a counterpart in the original system is timed
in turns with that work done node by node with NumPy and PyWavelets, in a baseline
process of its own (:mod:`benchmarks.baseline`, ``kernels``, given the same
inputs), and its output is compared with the per-node output (``baseline_error``:
the fraction of mask entries that differ for selections, the relative error
otherwise):

* the wavelet forward and inverse of both backends: PyWavelets per node;
* the top-k selections (every method, and ``lax.approx_max_k``, whose masks may
  differ): the per-node top-k of :mod:`jwins_jax.testing.reference.sharing_ref`;
* ``fill_with_own``: the per-node fill-with-own MH average of what each neighbour
  sent;
* full mixing (neighbour table, BCOO, dense): the per-node MH average.

The rankings, CHOCO's threshold, Bernoulli masks and the masked average have no
counterpart there and are timed alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.baseline import Baseline
from jwins_jax import kernelbench as kb

WAVELET = {"wavelet": kb.WAVELET, "level": kb.LEVEL}
PER_NODE = (  # (family, start of the kernel's name, the baseline's command)
    ("transform", "wavelet", "wavelet_{}"),  # {}: forward or inverse
    ("selection", "topk", "topk"),
    ("selection", "lax.approx_max_k", "topk"),
    ("fill", "fill_with_own", "fill_with_own"),
    ("fill", "full mix", "mix"),
)


def command(kernel: kb.Kernel) -> str | None:
    """The baseline's command doing a built-in kernel's work node by node."""
    for family, start, cmd in PER_NODE:
        if kernel.family == family and kernel.name.startswith(start):
            return cmd.format(kernel.name.rsplit(" ", 1)[-1])
    return None


class PerNode:
    """The per-node way as :func:`jwins_jax.kernelbench.run`'s ``baseline``: one
    baseline process per size, started when a size's first kernel asks."""

    def __init__(self) -> None:
        self.base: Baseline | None = None
        self.size: tuple[int, int] | None = None
        self.outputs: dict[str, np.ndarray] = {}

    def __call__(self, kernel: kb.Kernel, data: kb.Data) -> kb.Baseline | None:
        cmd = None if kernel.source != "built-in" else command(kernel)
        if cmd is None:
            return None
        if self.size != data.x.shape:
            self.close()
            arrays = {
                "x": np.asarray(data.x),
                "k": data.k,
                "mask": np.asarray(data.mask),
            }
            arrays["adjacency"] = data.adj
            self.base = Baseline("kernels", {"wavelet": WAVELET}, arrays)
            self.size = data.x.shape
        base = self.base

        def compare(out: Any) -> dict[str, Any]:
            if cmd not in self.outputs:
                self.outputs.update(base.fetch())
            got, want = np.asarray(out), self.outputs[cmd]
            if want.dtype == bool:
                return {"baseline_error": float(np.mean(got != want))}
            err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30)
            return {"baseline_error": float(err)}

        return kb.Baseline(f"per node {cmd}", lambda: base(cmd)[cmd], compare)

    def close(self) -> None:
        """Ends the current baseline process."""
        if self.base is not None:
            self.base.close()
        self.base, self.size, self.outputs = None, None, {}


def sizes(quick: bool) -> list[tuple[list[int], list[int]]]:
    """The grids ``(sizes N, nodes n)``: every N and n, and the paper's GN-LeNet."""
    if quick:
        return [([2_000], [8])]
    return [([10**4, 10**5, 10**6, 10**7], [16, 96, 384, 1024]), ([89_834], [96])]


def kernels(opts: Any) -> list[dict[str, Any]]:
    """The ``kernels`` section: :func:`jwins_jax.kernelbench.run` over
    :func:`sizes` with the per-node way, within the time budget
    (``--kernel-time-budget``, seconds per call) and the memory our kernels may use
    (``--kernel-mem-gib``: kernelbench's working set, 8 ``(n, N)`` float32 arrays)."""
    rows: list[dict[str, Any]] = []
    per_node = PerNode()
    try:
        for big_ns, ns in sizes(opts.quick):
            result = kb.run(
                big_ns,
                ns,
                repeats=opts.repeats,
                registered=False,
                time_budget_s=opts.kernel_time_budget,
                memory_bytes=int(opts.kernel_mem_gib * 2**30),
                baseline=per_node,
                log=lambda text: print(f"[kernels] {text}", flush=True),
            )
            rows += result["rows"]
    finally:
        per_node.close()
    return rows
