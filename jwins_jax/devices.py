"""The node axis over devices and processes (issues 11 and 17, ``jax.sharding``).

With several devices (GPUs, TPU cores, forced host devices, or the devices of several
processes joined by ``jax.distributed``), a run keeps its ``(n, ...)`` arrays
(models, optimizer and strategy states, each node's sample ids and neighbour lists)
split along the node axis over a one-dimensional mesh ``("nodes",)``; the data and the
hyperparameters are replicated. XLA partitions the compiled round accordingly and
inserts the transfers that gossip needs (a neighbour's row lives on another device).
The results are those of a single device, up to the order of floating-point sums.

JAX shards an axis only into equal parts, so the mesh uses the largest number of
devices that divides n (n = 96 on 8 devices: 8; n = 6 on 4 devices: 3; a prime n: 1,
i.e. no sharding). A batched sweep shards the node axis of every config the same way.
``shard_nodes = false`` keeps everything on the default device.

**Several processes** (one per host, or several on one host): every process runs the
same command after :func:`initialize` (``jwins run --coordinator HOST:PORT
--num-processes P --process-id I``). Every process builds the same inputs from the
config and hands over its own shards (:func:`place`, ``make_array_from_callback``);
the mesh takes the same number of devices from every process (every process must
take part in every program), so n must be a multiple of P. Per-round statistics and
evaluations leave the program replicated, so every process reads them locally; only
process 0 writes results (:func:`is_primary`), and host decisions that must agree
(the run directory's name, which sweep configs are finished, the batch size) are
made on process 0 and sent to all (:func:`on_primary`). A stop request (Ctrl-C,
SIGTERM) on any process stops all of them after the same round (:func:`any_process`).
CPU devices of several processes exchange data with gloo (JAX's CPU collectives,
``jax_cpu_collectives_implementation``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jwins_jax.errors import ConfigError


class ProcessFailure(RuntimeError):
    """Another process of a multi-process run stopped or failed."""


# ------------------------------------------------------------------- processes
def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins JAX's distributed runtime (before the first JAX computation).

    Arguments left None are taken from JAX's environment (``JAX_COORDINATOR_ADDRESS``)
    or detected by JAX on a cluster manager (Slurm, Open MPI, Kubernetes, Cloud TPU).
    On the CPU, cross-process collectives use gloo unless
    ``JAX_CPU_COLLECTIVES_IMPLEMENTATION`` chooses otherwise (jaxlib's default is
    gloo too; it is set explicitly so a changed default cannot leave a CPU run
    without collectives). This is a process-wide setting: entry points call it.

    Raises:
        ConfigError: a bad address, count or id, or no coordinator reached.
    """
    from jwins_jax.hostmem import accelerator_expected

    if num_processes is not None and num_processes < 1:
        raise ConfigError(
            f"--num-processes={num_processes} is not allowed: give a positive integer"
        )
    if process_id is not None and num_processes is not None:
        if not 0 <= process_id < num_processes:
            raise ConfigError(
                f"--process-id={process_id} is not allowed with --num-processes="
                f"{num_processes}: it must be in 0..{num_processes - 1}"
            )
    if coordinator is not None and ":" not in coordinator:
        raise ConfigError(
            f"--coordinator={coordinator!r} is not allowed: give HOST:PORT "
            "(process 0's address and a free port)"
        )
    if not accelerator_expected() and not os.environ.get(
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION"
    ):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # A survivor of a lost process reports it (ProcessFailure, a failed summary)
    # instead of being terminated by the runtime as soon as the loss is noticed;
    # this also lets barrier() notice a lost process.
    jax.config.update("jax_enable_recoverability", True)
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
        )
    except (ValueError, TypeError, RuntimeError) as err:
        text = " ".join(str(err).split())[:200]
        raise ConfigError(
            "cannot join the processes (--coordinator, --num-processes, "
            f"--process-id): {text}"
        ) from None
    global _joined
    _joined = True


_joined = False


def joined() -> bool:
    """Whether this process joined a multi-process run (:func:`initialize`)."""
    return _joined


def process_count() -> int:
    """The number of processes of this run (1 without ``jax.distributed``)."""
    return jax.process_count()


def is_primary() -> bool:
    """Whether this process writes results: process 0."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process got here, however long they take.

    Collectives between processes give up after about 30 s (gloo on the CPU), so a
    collective that follows work of uneven length (loading data, compiling) is
    preceded by this barrier. It is ``multihost_utils.live_devices``, which also
    notices a process that died (by JAX's heartbeat) instead of waiting for it.

    Raises:
        ProcessFailure: a process died before it got here.
    """
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils

    try:
        with multihost_utils.live_devices(jax.devices()) as live:
            pass
    except multihost_utils.ProcessFailureError as err:
        raise ProcessFailure(
            f"another of the {process_count()} processes stopped or failed before "
            f"{name} (devices {sorted(d.id for d in err.failed_devices)})"
        ) from err
    if len(live) < len(jax.devices()):
        raise ProcessFailure(
            f"another of the {process_count()} processes stopped or failed before "
            f"{name}"
        )


def leave() -> None:
    """Ends this process's part in a multi-process run, all processes together.

    Every process waits for the others at a last barrier; then the others leave the
    distributed runtime first, and process 0, which hosts its coordinator, waits
    until they are gone (a process that leaves after the coordinator is terminated
    by the runtime).
    """
    if not _joined:
        return
    from jax.experimental import multihost_utils

    try:
        barrier("the end")
    except ProcessFailure:
        pass
    if not is_primary():
        jax.distributed.shutdown()
        return
    try:
        with multihost_utils.live_devices(jax.devices()):
            pass  # returns when every other process has left (or died)
    except multihost_utils.ProcessFailureError:
        pass


def share(value: Any) -> Any:
    """Process 0's JSON-able ``value``, on every process (a collective)."""
    if process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = json.dumps(value).encode() if is_primary() else b""
    barrier("share")
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
    buf = np.zeros(max(256, 1 << (size - 1).bit_length()), np.uint8)  # few shapes
    if is_primary():
        buf[:size] = np.frombuffer(data, np.uint8)
    buf = multihost_utils.broadcast_one_to_all(buf)
    return json.loads(bytes(np.asarray(buf, np.uint8)[:size]).decode())


def on_primary(fn: Callable[[], Any]) -> Any:
    """``fn()`` run on process 0, its JSON-able result (or its error) on all.

    A ConfigError on process 0 is raised on every process; another failure there is
    raised there and as :class:`ProcessFailure` on the others.
    """
    if process_count() == 1:
        return fn()
    payload: dict[str, Any] = {}
    error: BaseException | None = None
    if is_primary():
        try:
            payload = {"value": fn()}
        except ConfigError as err:
            payload = {"config_error": str(err)}
        except Exception as err:  # noqa: BLE001 - reported to the others, re-raised
            payload, error = {"failed": f"{type(err).__name__}: {err}"}, err
    payload = share(payload)
    if error is not None:
        raise error
    if "config_error" in payload:
        raise ConfigError(payload["config_error"])
    if "failed" in payload:
        raise ProcessFailure(f"process 0 failed: {payload['failed']}")
    return payload["value"]


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on any process (a collective)."""
    if process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    # No barrier: this follows a block (a collective), so the processes are in step
    # but for their host work on its outputs; a barrier would hide a lost process
    # until JAX's heartbeat notices it.
    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())


# ------------------------------------------------------------------------ mesh
def node_mesh(n: int, enabled: bool = True) -> Mesh | None:
    """A ``("nodes",)`` mesh over the most devices that divide ``n`` (None: one).

    With several processes every process contributes the same number of devices
    (the most that keeps the total a divisor of n).

    Raises:
        ConfigError: several processes and ``shard_nodes`` off, or n not a multiple
            of the number of processes.
    """
    procs = process_count()
    if procs == 1:
        if not enabled:
            return None
        devices = jax.devices()
        count = max(k for k in range(1, len(devices) + 1) if n % k == 0)
        if count <= 1:
            return None
        return Mesh(np.array(devices[:count]), ("nodes",))
    if not enabled:
        raise ConfigError(
            f"shard_nodes=false is not allowed with {procs} processes: the node axis "
            "is split over every process's devices"
        )
    local = jax.local_device_count()
    fits = [m for m in range(local, 0, -1) if n % (procs * m) == 0]
    if not fits:
        raise ConfigError(
            f"nodes={n} is not allowed with {procs} processes: the node axis is split "
            f"evenly over the processes, so nodes must be a multiple of {procs}"
        )
    per = fits[0]
    chosen = []
    for p in range(procs):
        own = sorted(
            (d for d in jax.devices() if d.process_index == p), key=lambda d: d.id
        )
        chosen.extend(own[:per])
    return Mesh(np.array(chosen), ("nodes",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _rule(mesh: Mesh, n: int, axis: int):
    spec = P(*([None] * axis + ["nodes"]))

    def pick(leaf: Any) -> NamedSharding:
        shape = getattr(leaf, "shape", ())
        if len(shape) > axis and shape[axis] == n:
            return NamedSharding(mesh, spec)
        return NamedSharding(mesh, P())

    return pick


def state_shardings(abstract_state: Any, mesh: Mesh, n: int, axis: int = 0) -> Any:
    """Shardings of a SimState: the node axis of every per-node leaf split (models,
    optimizer and strategy states, clocks), the key and the round counter
    replicated."""
    rep = replicated(mesh)
    return jax.tree.map(_rule(mesh, n, axis), abstract_state).replace(
        key=rep, round=rep
    )


def place(tree: Any, rule: Callable[[Any], NamedSharding]) -> Any:
    """Every leaf as a global array with ``rule(leaf)``'s sharding.

    Each process hands over only its own shards, cut from its copy of the leaf (every
    process computed the same values), so this works across processes too.
    """

    def put(leaf):
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, rule(leaf), lambda i: host[i])

    return jax.tree.map(put, tree)


def place_replicated(tree: Any, mesh: Mesh) -> Any:
    """``tree`` replicated on every device of ``mesh`` (hyperparameters, keys)."""
    rep = replicated(mesh)
    return place(tree, lambda _: rep)


def place_inputs(inputs: Any, mesh: Mesh, n: int, axis: int = 0) -> Any:
    """Puts the per-node inputs sharded along the node axis, the data replicated."""
    pick = _rule(mesh, n, axis)
    rep = replicated(mesh)
    per_node = ("nodes", "tests", "graph")
    return inputs.replace(
        **{
            f: place(getattr(inputs, f), pick if f in per_node else lambda _: rep)
            for f in ("train_x", "train_y", "test_x", "test_y", *per_node)
        },
        churn_schedule=place_replicated(inputs.churn_schedule, mesh),
    )
