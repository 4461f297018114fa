"""Memory plans without running: ``jwins run --dry-run`` and ``jwins sweep --dry-run``.

A plan compiles the program a run would run (the block: ``eval_every`` rounds and an
evaluation, :meth:`~jwins_jax.experiment.Experiment.block`) from abstract shapes and
reads the compiled program's own memory analysis (``Compiled.memory_analysis()``:
arguments, outputs, temporaries, generated code, and what the donated state lets XLA
reuse). Nothing runs and nothing is written (the persistent compilation cache is not
used either).

**Extrapolation.** The block is compiled twice, at the config's n and at a larger
n' = max(4 n, 1,024), and the peak is taken on the line through the two:
``fixed + per_node * n``. The far point is large on purpose: below a few dozen nodes
the peak grows more slowly than it does later (measured on the digits CNN: 120 KiB
per node up to n = 32, 168 KiB from n = 64 on), so a slope taken at small n would
underestimate large runs. Linear in n: the state (models, optimizer
and strategy states), the per-node inputs (sample ids, neighbour tables) and the
temporaries of gossip and of the strategy's transform, which all have a leading node
axis. Fixed: the data (training and test sets), the generated code, and the buffers
that are cut into chunks of a fixed size: local training in groups of
``train_chunk`` nodes (unless 0: all nodes at once, then linear), evaluation in groups
of the backend's group size on chunks of its chunk samples, and an evaluation of
``eval_nodes`` sampled nodes. The largest n that fits a device memory M is
``(M - fixed) / per_node``. This is for one device; with the node axis split over D
devices, each holds the fixed part and 1/D of the per-node part, so about D times as
many nodes fit. The numbers come from this machine's compiler (its backend's buffer
assignment and fusion choices): another backend (a GPU plan made on a CPU) is an
estimate of the same program, not that compiler's exact figure.

A sweep batch of B configs shares the data and the code; its block is the ``vmap``
of the config's block, so its peak is fitted as ``shared + B * per_config`` from the
unbatched block (B = 1) and the batched block at B = 2.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import numpy as np

from jwins_jax.config import Config
from jwins_jax.errors import ConfigError
from jwins_jax.sweep import free_memory_bytes, state_bytes

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str, name: str = "size") -> int:
    """``"80GB"`` (10^9), ``"24GiB"`` (2^30), ``"512MiB"``, ``"1e9"`` as bytes.

    Raises:
        ConfigError: not a positive number with one of the units B, KB, MB, GB, TB,
            KiB, MiB, GiB, TiB.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ConfigError(
            f"{name}={text!r} is not allowed: give a positive size such as 80GB, "
            "24GiB or 512MiB (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def fmt_bytes(b: float) -> str:
    """Binary units, e.g. ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return f"{b:.0f} B" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TiB"


@dataclasses.dataclass(frozen=True)
class Memory:
    """The memory analysis of one compiled program, in bytes."""

    argument: int
    output: int
    temp: int
    alias: int
    code: int

    @property
    def peak(self) -> int:
        """Arguments + outputs - aliased (donated and reused) + temporaries + code."""
        return self.argument + self.output - self.alias + self.temp + self.code


def compiled_memory(compiled: Any) -> Memory:
    """:class:`Memory` of a ``jax.stages.Compiled``."""
    m = compiled.memory_analysis()
    return Memory(
        argument=int(m.argument_size_in_bytes),
        output=int(m.output_size_in_bytes),
        temp=int(m.temp_size_in_bytes),
        alias=int(m.alias_size_in_bytes),
        code=int(m.generated_code_size_in_bytes),
    )


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)


def _resized_inputs(inputs: Any, n_old: int, n_new: int, axis: int) -> Any:
    """Abstract inputs with the node axis of the per-node fields resized."""

    def resize(a):
        shape = list(np.shape(a))
        if len(shape) > axis and shape[axis] == n_old:
            shape[axis] = n_new
        return jax.ShapeDtypeStruct(tuple(shape), a.dtype)

    abstract = _abstract(inputs)
    return abstract.replace(
        **{
            f: jax.tree.map(resize, getattr(inputs, f))
            for f in ("nodes", "tests", "graph")
        }
    )


def block_memory(exp: Any, inputs: Any, hp: Any, n: int | None = None) -> Memory:
    """The compiled block's memory for ``exp`` at ``n`` nodes (default: its own).

    Only shapes are used: ``inputs`` and ``hp`` may be concrete or abstract.
    """
    from jwins_jax import compiler

    n = exp.nodes if n is None else n
    if n != exp.nodes:
        exp = dataclasses.replace(exp, config=exp.config.replace(nodes=n))
        inputs = _resized_inputs(inputs, exp_nodes(inputs), n, 0)
    hp_abs = _abstract(hp)
    key = jax.ShapeDtypeStruct((2,), np.uint32)
    state = jax.eval_shape(exp.init, key, hp_abs)
    block = compiler.jit(exp.block, donate_argnums=0)
    lowered = block.lower(state, hp_abs, _abstract(inputs), np.int32(1))
    return compiled_memory(lowered.compile())


def batch_memory(exp: Any, inputs: Any, hp: Any, batch: int) -> Memory:
    """The compiled block's memory for a sweep batch of ``batch`` copies of a config."""
    from jwins_jax import compiler
    from jwins_jax.experiment import inputs_axes, stack_hparams, stack_inputs

    stacked = stack_inputs([inputs] * batch)
    hps = stack_hparams([hp] * batch)
    key = jax.ShapeDtypeStruct((batch, 2), np.uint32)
    init = jax.vmap(exp.init, in_axes=(0, 0))
    state = jax.eval_shape(init, key, _abstract(hps))
    block = jax.vmap(exp.block, in_axes=(0, 0, inputs_axes(stacked), None))
    lowered = compiler.jit(block, donate_argnums=0).lower(
        state, _abstract(hps), _abstract(stacked), np.int32(1)
    )
    return compiled_memory(lowered.compile())


def exp_nodes(inputs: Any) -> int:
    return int(np.shape(inputs.nodes.size)[0])


def _far_n(exp: Any) -> int:
    """The node count of the second compile: 4 n, and at least 1,024 (even)."""
    far = max(4 * exp.nodes, 1024)
    return far + far % 2


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """A run's memory plan (bytes)."""

    n: int
    memory: Memory  # at n
    n2: int
    peak2: int  # peak at n2
    state: int  # the whole state at n

    @property
    def per_node(self) -> float:
        return (self.memory.peak - self.peak2) / (self.n - self.n2)

    @property
    def fixed(self) -> float:
        return self.memory.peak - self.per_node * self.n

    def max_nodes(self, device_memory: int) -> int | None:
        """The largest n whose peak fits ``device_memory`` (None: no n-growth seen)."""
        if self.per_node <= 0:
            return None
        return max(0, int((device_memory - self.fixed) // self.per_node))


def plan_run(exp: Any, inputs: Any, hp: Any) -> RunPlan:
    """Compiles the block at n and at a second n (see the module docstring)."""
    n2 = _far_n(exp)
    return RunPlan(
        n=exp.nodes,
        memory=block_memory(exp, inputs, hp),
        n2=n2,
        peak2=block_memory(exp, inputs, hp, n2).peak,
        state=state_bytes(exp),
    )


def default_device_memory() -> int:
    """The default device's free memory (host RAM available on a CPU)."""
    return free_memory_bytes()


def _memory_lines(m: Memory) -> list[str]:
    return [
        f"  arguments       {fmt_bytes(m.argument):>11}  (state, inputs, "
        "hyperparameters)",
        f"  outputs         {fmt_bytes(m.output):>11}  (new state, statistics, "
        "evaluation)",
        f"  aliased         {fmt_bytes(m.alias):>11}  (donated state reused for the "
        "new one)",
        f"  temporaries     {fmt_bytes(m.temp):>11}",
        f"  generated code  {fmt_bytes(m.code):>11}",
        f"  peak            {fmt_bytes(m.peak):>11}  (arguments + outputs - aliased "
        "+ temporaries + code)",
    ]


def describe_run(config: Config, device_memory: int | None = None) -> str:
    """The text of ``jwins run --dry-run``."""
    from jwins_jax import experiment as ex
    from jwins_jax import platform

    c = config.validate()
    exp, inputs, hp = ex.build(c)
    memory = device_memory if device_memory is not None else default_device_memory()
    where = "given" if device_memory is not None else "free on this device"
    p = plan_run(exp, inputs, hp)
    brings = ex.dataset_defaults_line(c)  # which values came from the dataset
    lines = [
        f"dry run of {c.name}: compiled, not run; nothing written",
        *([brings] if brings else []),
        f"block program ({exp.config.eval_every} rounds and an evaluation) at n = "
        f"{p.n}, compiled for {platform.backend()} "
        f"({jax.devices()[0].device_kind}):",
        *_memory_lines(p.memory),
        f"state: {fmt_bytes(p.state)}, {fmt_bytes(p.state / p.n)} per node (models "
        "and optimizer and strategy states)",
        f"fit over n = {p.n} and {p.n2}: {fmt_bytes(p.per_node)} per node + "
        f"{fmt_bytes(p.fixed)} fixed (data, code, chunked training and evaluation)",
    ]
    most = p.max_nodes(memory)
    if most is None:
        lines.append(
            f"device memory {fmt_bytes(memory)} ({where}): the peak does not grow "
            "with n here"
        )
    else:
        lines.append(
            f"device memory {fmt_bytes(memory)} ({where}): at most n = {most:,} "
            "nodes on one device; with the node axis over D devices about D times "
            "as many"
        )
    if most is not None and most < p.n:
        lines.append(
            f"this config (n = {p.n}) does not fit: {fmt_bytes(p.memory.peak)}"
        )
    return "\n".join(lines)


def describe_sweep(sweep: Any, batch: int | None, device_memory: int | None) -> str:
    """The memory plan part of ``jwins sweep --dry-run``: per group, the batch that
    fits the device memory."""
    from jwins_jax import experiment as ex
    from jwins_jax.sweep import plan

    memory = device_memory if device_memory is not None else default_device_memory()
    where = "given" if device_memory is not None else "free on this device"
    lines = [f"memory plan (compiled, not run) for {fmt_bytes(memory)} ({where}):"]
    datasets: dict[tuple, Any] = {}
    for g, (group, size) in enumerate(plan(sweep, batch)):
        first = group[0].config
        key = (first.dataset, first.data_dir)
        if key not in datasets:
            datasets[key] = ex.load_data(first)
        exp = ex.build_experiment(first, datasets[key])
        inputs = ex.build_inputs(first, datasets[key])
        hp = ex.hparams(exp, first)
        one = block_memory(exp, inputs, hp).peak
        two = batch_memory(exp, inputs, hp, 2).peak
        per_config = max(two - one, 1)
        shared = one - per_config
        fit = max(0, int((memory - shared) // per_config))
        chosen = size or "auto"
        lines.append(
            f"group {g}: n = {exp.nodes}, state {fmt_bytes(state_bytes(exp) / exp.nodes)}"
            f" per node; {fmt_bytes(per_config)} per config + {fmt_bytes(shared)} "
            f"shared; at most {fit:,} configs per batch fit (batch: {chosen})"
        )
    return "\n".join(lines)
