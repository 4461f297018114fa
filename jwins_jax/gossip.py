"""Mixing operators on the stacked node axis (SPEC 4.0-4.2, 9).

Every node's vector is one row of an ``(n, ...)`` array. One gossip round with the
Metropolis-Hastings matrix W of the round's graph is

* full sharing (SPEC 4.1):  ``x_i <- w_ii x_i + sum_j w_ij x_j``, i.e. ``W @ x``;
* partial sharing with fill-with-own (SPEC 4.2, 9): every sender j ships the entries
  where its mask ``mask_j`` is set, the same to all its receivers, and receiver i uses
  its own value where nothing arrived:
  ``z_i = p_i + sum_j w_ij * mask_j * (p_j - p_i)``.

The default operators work on a :class:`~jwins_jax.topology.NeighborTable` and loop
over its D columns (a static Python loop), gathering one neighbour row per node at a
time, so no ``(n, D, M)`` array is ever built. Dense and ``BCOO`` versions are here
for tests and benchmarks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import sparse

from jwins_jax.topology import NeighborTable


def mix(table: NeighborTable, x: jax.Array) -> jax.Array:
    """Full-sharing gossip step ``W @ x`` (SPEC 4.1).

    Args:
        table: the round's neighbour table, idx / weight ``(n, D)``.
        x: ``(n, ...)`` stacked node vectors, usually ``(n, M)``.

    Returns:
        ``(n, ...)`` with ``out_i = w_ii x_i + sum_j w_ij x_j``, dtype of ``x``.
    """
    out = _rows(table.self_weight, x) * x
    for c in range(table.idx.shape[1]):
        out = out + _rows(table.weight[:, c], x) * x[table.idx[:, c]]
    return out


def mix_masked(
    table: NeighborTable,
    p: jax.Array,
    mask: jax.Array,
    values: jax.Array | None = None,
) -> jax.Array:
    """Partial-sharing gossip step with fill-with-own (SPEC 4.2, 9).

    Args:
        table: the round's neighbour table, idx / weight ``(n, D)``.
        p: ``(n, ...)`` stacked node vectors (models or transform coefficients).
        mask: ``(n, ...)`` bool, the SENDER's mask: row j marks the entries node j
            ships to every one of its neighbours.
        values: ``(n, ...)`` what row j's message carries at its masked entries as
            the receivers decode it (a lossy value codec changes it), or None: the
            entries of ``p`` themselves.

    Returns:
        ``(n, ...)`` with ``z_i = p_i + sum_j w_ij * mask_j * (v_j - p_i)`` (``v =
        values``, or ``p``). With an all-True mask and ``values=None`` this is
        :func:`mix`; with an all-False mask it is ``p``.
    """
    v = p if values is None else values
    out = p
    for c in range(table.idx.shape[1]):
        j = table.idx[:, c]
        delta = jnp.where(mask[j], v[j] - p, jnp.zeros((), p.dtype))
        out = out + _rows(table.weight[:, c], p) * delta
    return out


def dense_matrix(table: NeighborTable) -> jax.Array:
    """Dense mixing matrix of a table.

    Args:
        table: neighbour table, idx / weight ``(n, D)``, self_weight ``(n,)``.

    Returns:
        ``(n, n)`` W with the table's weights (padding adds 0 on the diagonal).
    """
    n = table.idx.shape[0]
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], table.idx.shape)
    w = jnp.zeros((n, n), table.weight.dtype).at[rows, table.idx].add(table.weight)
    return w + jnp.diag(table.self_weight)


def mix_dense(w: jax.Array, x: jax.Array) -> jax.Array:
    """Gossip step with a dense matrix.

    Args:
        w: ``(n, n)`` mixing matrix.
        x: ``(n, M)`` stacked node vectors.

    Returns:
        ``(n, M)`` ``W @ x``.
    """
    return w @ x


def bcoo_matrix(table: NeighborTable) -> sparse.BCOO:
    """Mixing matrix of a table as a sparse ``BCOO`` array.

    Args:
        table: neighbour table, idx / weight ``(n, D)``, self_weight ``(n,)``.

    Returns:
        ``(n, n)`` BCOO with ``n * (D + 1)`` stored entries: the table's neighbour
        entries (padding stored as zeros on the diagonal) and the diagonal.
    """
    n, width = table.idx.shape
    nodes = jnp.arange(n, dtype=table.idx.dtype)
    rows = jnp.concatenate([jnp.repeat(nodes, width), nodes])
    cols = jnp.concatenate([table.idx.reshape(-1), nodes])
    data = jnp.concatenate([table.weight.reshape(-1), table.self_weight])
    return sparse.BCOO((data, jnp.stack([rows, cols], axis=1)), shape=(n, n))


def mix_bcoo(w_bcoo: sparse.BCOO, x: jax.Array) -> jax.Array:
    """Gossip step with a ``BCOO`` matrix.

    Args:
        w_bcoo: ``(n, n)`` sparse mixing matrix.
        x: ``(n, M)`` stacked node vectors.

    Returns:
        ``(n, M)`` ``W @ x``.
    """
    return w_bcoo @ x


def consensus_distance(x: jax.Array) -> jax.Array:
    """Mean squared distance of the nodes to their average.

    Args:
        x: ``(n, ...)`` stacked node vectors.

    Returns:
        Scalar ``mean_i ||x_i - mean_j x_j||^2``.
    """
    centred = x - jnp.mean(x, axis=0, keepdims=True)
    return jnp.mean(jnp.sum(centred.reshape(x.shape[0], -1) ** 2, axis=1))


def _rows(values: jax.Array, like: jax.Array) -> jax.Array:
    """Reshapes ``(n,)`` per-node values to broadcast against ``like`` ``(n, ...)``."""
    return values.astype(like.dtype).reshape((-1,) + (1,) * (like.ndim - 1))
