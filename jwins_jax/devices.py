"""Sharding the node axis over the local devices (issue 11, ``jax.sharding``).

With several local devices (GPUs, TPU cores, or forced host devices), a run keeps its
``(n, ...)`` arrays (models, optimizer and strategy states, each node's sample ids and
neighbour lists) split along the node axis over a one-dimensional mesh ``("nodes",)``;
the data and the hyperparameters are replicated. XLA partitions the compiled round
accordingly and inserts the transfers that gossip needs (a neighbour's row lives on
another device). The results are those of a single device, up to the order of
floating-point sums.

JAX shards an axis only into equal parts, so the mesh uses the largest number of
local devices that divides n (n = 96 on 8 devices: 8; n = 6 on 4 devices: 3; a prime
n: 1, i.e. no sharding). A batched sweep shards the node axis of every config the same
way. ``shard_nodes = false`` keeps everything on the default device.

Several machines: start one process per host with ``jax.distributed.initialize()``
(coordinator address, process count and id; see the README) before the first JAX
computation; ``jax.devices()`` then lists every host's devices and the same mesh spans
them.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def node_mesh(n: int, enabled: bool = True) -> Mesh | None:
    """A ``("nodes",)`` mesh over the most devices that divide ``n`` (None: one)."""
    if not enabled:
        return None
    devices = jax.devices()
    count = max(k for k in range(1, len(devices) + 1) if n % k == 0)
    if count <= 1:
        return None
    return Mesh(np.array(devices[:count]), ("nodes",))


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
    """Shardings of a SimState: the node axis of models, optimizer and strategy
    states split, the key and the round counter replicated."""
    pick = _rule(mesh, n, axis)
    rep = replicated(mesh)
    return abstract_state.replace(
        x=pick(abstract_state.x),
        opt=jax.tree.map(pick, abstract_state.opt),
        share=jax.tree.map(pick, abstract_state.share),
        key=rep,
        round=rep,
    )


def place_inputs(inputs: Any, mesh: Mesh, n: int, axis: int = 0) -> Any:
    """Puts the per-node inputs sharded along the node axis, the data replicated."""
    pick = _rule(mesh, n, axis)
    rep = replicated(mesh)

    def put(tree, rule):
        return jax.tree.map(lambda a: jax.device_put(a, rule(a)), tree)

    return inputs.replace(
        train_x=jax.device_put(inputs.train_x, rep),
        train_y=jax.device_put(inputs.train_y, rep),
        test_x=jax.device_put(inputs.test_x, rep),
        test_y=jax.device_put(inputs.test_y, rep),
        nodes=put(inputs.nodes, pick),
        tests=None if inputs.tests is None else put(inputs.tests, pick),
        graph=None if inputs.graph is None else put(inputs.graph, pick),
    )
