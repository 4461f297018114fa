"""Per-node minibatch ids drawn inside jit (SPEC 2.1, 2.3).

Each round every node builds a fresh shuffled loader over its own samples (SPEC 2.1):
a uniformly random permutation of its ids, cut into minibatches of ``batch_size`` in
order. The last, short minibatch of a pass is an ordinary step with fewer valid
entries, unless ``drop_last`` (FEMNIST), which skips it. When a round needs more
steps than one pass holds, the node continues with a new permutation.

Nodes hold different numbers of samples, so their id lists are padded to a common
length ``L`` and a permutation of the valid positions is the argsort of hashed keys
with the padded positions keyed highest. Shapes stay static: the number of passes
drawn up front is bounded by the smallest node, ``ceil(steps / batches_per_pass(
min_size))``, which is static information carried by ``NodeData``.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jwins_jax.errors import ConfigError


@flax.struct.dataclass
class NodeData:
    """The training-sample ids owned by each node, padded to a common length.

    Attributes:
        index: Sample ids of each node; entries at positions ``>= size`` are 0.
        size: Number of valid entries of each row of ``index``.
        min_size: Static lower bound of ``size`` (the smallest node's sample
            count); it bounds the number of passes a round can need. 1 is always
            safe.
    """

    index: jax.Array  # (n, L) int32 training-sample ids of each node, padded with 0
    size: jax.Array  # (n,) int32 number of valid entries per node
    min_size: int = flax.struct.field(pytree_node=False, default=1)

    @property
    def num_nodes(self) -> int:
        """The number of nodes ``n``."""
        return int(self.index.shape[0])

    @property
    def max_size(self) -> int:
        """The padded length ``L`` (the largest node's sample count)."""
        return int(self.index.shape[1])


def node_data(parts: list[np.ndarray]) -> NodeData:
    """Packs a partition (see ``partition.partition``) into padded device arrays.

    Args:
        parts: ``n`` 1-D integer arrays of training-sample ids, each non-empty.

    Returns:
        ``NodeData`` with ``index`` ``(n, L)`` int32, ``L = max(len(part))``.

    Raises:
        ConfigError: No parts, or a node without samples.
    """
    if len(parts) == 0:
        raise ConfigError("the partition has no nodes: expected at least one part")
    sizes = np.asarray([len(part) for part in parts], dtype=np.int32)
    if sizes.min() < 1:
        empty = int(np.argmin(sizes))
        raise ConfigError(
            f"node {empty} has no training samples: every node needs at least one"
        )
    index = np.zeros((len(parts), int(sizes.max())), dtype=np.int32)
    for i, part in enumerate(parts):
        index[i, : len(part)] = np.asarray(part, dtype=np.int32)
    return NodeData(
        index=jnp.asarray(index), size=jnp.asarray(sizes), min_size=int(sizes.min())
    )


def batches_per_pass(
    size: int | jax.Array, batch_size: int, drop_last: bool = False
) -> int | jax.Array:
    """The number of minibatches in one pass over ``size`` samples.

    Args:
        size: Number of samples (a Python int or a traced integer array).
        batch_size: Minibatch size.
        drop_last: Whether a final short minibatch is skipped.

    Returns:
        ``size // batch_size`` with ``drop_last``, else ``ceil(size / batch_size)``.
    """
    return size // batch_size if drop_last else -(-size // batch_size)


def _check_static(steps: int, batch_size: int) -> None:
    for field, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(
                f"{field}={value!r} is not allowed: it must be an integer"
            )
        if value < 1:
            raise ConfigError(f"{field}={value} is not allowed: it must be >= 1")


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijective, well-mixing uint32 hash."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _position_keys(key: jax.Array, passes: int, length: int) -> jax.Array:
    """``(passes, length)`` uint32 sort keys; entry ``(p, j)`` depends only on
    ``key``, ``p`` and ``j``.

    So the permutation a node draws does not depend on how far its id list is padded
    or how many passes are drawn: configs stacked in a sweep (padded to the longest
    node list) draw exactly what they draw alone. Two ``jax.random`` words seed a
    MurmurHash3 finaliser over the positions (cheap to compile and run, unlike one
    threefry call per position).
    """
    k0, k1 = jax.random.bits(key, (2,), jnp.uint32)
    p = jnp.arange(passes, dtype=jnp.uint32)[:, None]
    j = jnp.arange(length, dtype=jnp.uint32)[None, :]
    inner = _fmix32(j * jnp.uint32(0x9E3779B9) + p * jnp.uint32(0x85EBCA77) + k1)
    return _fmix32(inner ^ k0)


@functools.partial(
    jax.jit, static_argnames=("steps", "passes", "batch_size", "drop_last")
)
def _batches(
    key: jax.Array,
    data: NodeData,
    steps: int,
    passes: int,
    batch_size: int,
    drop_last: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Ids and weights of the first ``steps`` minibatches over ``passes`` passes.

    Returns:
        ``ids`` ``(n, steps, batch_size)`` int32, ``weight`` of the same shape
        float32, and ``pass_of_step`` ``(n, steps)`` int32, the pass each step
        belongs to.
    """
    n, length = data.index.shape
    offsets = jnp.arange(batch_size, dtype=jnp.int32)  # (b,)

    def one_node(
        node_key: jax.Array, index: jax.Array, size: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        keys = _position_keys(node_key, passes, length)
        keys = jnp.where(jnp.arange(length) < size, keys, jnp.uint32(0xFFFFFFFF))
        perm = jnp.argsort(keys, axis=-1).astype(jnp.int32)  # (passes, L) valid first
        per_pass = batches_per_pass(size, batch_size, drop_last)  # traced, >= 1
        step = jnp.arange(steps, dtype=jnp.int32)  # (steps,)
        which = step // per_pass  # (steps,) pass of each step
        pos = (step % per_pass)[:, None] * batch_size + offsets  # (steps, b)
        valid = pos < size
        row = jnp.minimum(which, passes - 1)[:, None]  # only sample_pass clips here
        local = perm[row, jnp.minimum(pos, length - 1)]  # (steps, b)
        return index[local], valid.astype(jnp.float32), which

    node_keys = jax.random.split(key, n)
    return jax.vmap(one_node)(node_keys, data.index, data.size)


def sample_batches(
    key: jax.Array,
    data: NodeData,
    steps: int,
    batch_size: int,
    drop_last: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The minibatches of one round of local training at every node (SPEC 2.1).

    Node ``i`` takes its first ``steps`` minibatches from fresh uniformly random
    permutations of its ``size[i]`` samples (a new permutation whenever a pass is
    used up); nodes draw independently from ``key``. Jittable with ``steps``,
    ``batch_size`` and ``drop_last`` static.

    Args:
        key: PRNG key of this round.
        data: The nodes' sample ids.
        steps: Number of SGD steps (tau).
        batch_size: Minibatch size b.
        drop_last: Skip the final short minibatch of each pass (FEMNIST).

    Returns:
        ``(ids, weight)``: ``ids`` ``(n, steps, batch_size)`` int32 global sample
        ids and ``weight`` ``(n, steps, batch_size)`` float32, 1 for the entries of
        the minibatch and 0 for the padding of a short one (whose ids are
        arbitrary valid sample ids). A step's loss is the weighted mean.

    Raises:
        ConfigError: ``steps`` or ``batch_size`` below 1, or ``drop_last`` with a
            node holding fewer than ``batch_size`` samples.
    """
    _check_static(steps, batch_size)
    per_pass = batches_per_pass(data.min_size, batch_size, drop_last)
    if per_pass < 1:
        raise ConfigError(
            f"batch_size={batch_size} exceeds the {data.min_size} samples of the "
            "smallest node: with drop_last it would have no minibatch"
        )
    passes = -(-steps // per_pass)
    ids, weight, _ = _batches(key, data, steps, passes, batch_size, drop_last)
    return ids, weight


def sample_pass(
    key: jax.Array,
    data: NodeData,
    batch_size: int,
    drop_last: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The minibatches of one full shuffled pass at every node (SPEC 2.3).

    For the train-loss evaluation: every node's minibatches of one pass, padded to
    the largest node's count ``S = batches_per_pass(L, batch_size, drop_last)``.
    Steps past a node's own pass have weight 0 everywhere; a consumer averages the
    batch losses over the steps whose weight is not all zero.

    Args:
        key: PRNG key.
        data: The nodes' sample ids.
        batch_size: Minibatch size b.
        drop_last: Skip the final short minibatch (FEMNIST).

    Returns:
        ``(ids, weight)``, both ``(n, S, batch_size)``, as in ``sample_batches``.

    Raises:
        ConfigError: ``batch_size`` below 1, or ``drop_last`` with a node holding
            fewer than ``batch_size`` samples.
    """
    _check_static(1, batch_size)
    if batches_per_pass(data.min_size, batch_size, drop_last) < 1:
        raise ConfigError(
            f"batch_size={batch_size} exceeds the {data.min_size} samples of the "
            "smallest node: with drop_last it would have no minibatch"
        )
    steps = batches_per_pass(data.max_size, batch_size, drop_last)
    ids, weight, which = _batches(key, data, steps, 1, batch_size, drop_last)
    return ids, weight * (which == 0)[..., None]
