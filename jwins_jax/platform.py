"""Defaults that depend on the backend JAX runs on (CPU, GPU, TPU).

How many nodes train at once (``train_chunk``) and how evaluation is cut (samples
per forward pass, nodes per group) trade memory for speed differently per backend.
The CPU values were chosen from measurements on the project's 2-core CPU
(``benchmarks/RESULTS.md``: node groups of 8 train fastest and bound memory;
evaluation groups of 8 nodes on chunks of 128 samples). The accelerator values are
the natural starting point (all nodes in one vmap, larger chunks) but have not been
measured yet: ``make bench-gpu`` measures ``train_chunk`` on a GPU, and these values
follow its results once recorded.

Config fields left unset (``train_chunk = None``) take the value of the backend in use;
a value given explicitly always wins.
"""

from __future__ import annotations

import pathlib
import platform as _platform

import jax

DEFAULTS: dict[str, dict[str, int]] = {
    "cpu": {"train_chunk": 8, "eval_chunk": 128, "eval_group": 8},
    # not measured yet (no accelerator was at hand): see the module docstring
    "gpu": {"train_chunk": 0, "eval_chunk": 1024, "eval_group": 32},
    "tpu": {"train_chunk": 0, "eval_chunk": 1024, "eval_group": 32},
}


def backend() -> str:
    """The platform of JAX's default device: ``cpu``, ``gpu`` or ``tpu``."""
    name = jax.default_backend()
    return name if name in DEFAULTS else "gpu" if name in ("cuda", "rocm") else "cpu"


def default(name: str) -> int:
    """The default of ``name`` on the current backend."""
    return DEFAULTS[backend()][name]


def cpu_model() -> str:
    """The host CPU's model name (``/proc/cpuinfo``, else Python's description)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()
