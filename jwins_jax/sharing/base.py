"""The strategy interface shared by every sharing algorithm (DESIGN.md "House style").

A strategy is a factory returning a :class:`Sharing`: two pure functions over the
stacked node axis, in the spirit of optax's ``GradientTransformation``:

* ``init(x0) -> state`` with ``x0`` the ``(n, N)`` float32 initial models;
* ``step(state, x, key, table, **override) -> (x_new, state, stats)`` runs one
  communication round (SPEC 1.3 steps 5-8) on the models after local training.

``stats`` is a dict of ``(n,)`` arrays, the same keys for every strategy:

* ``value_bytes`` (int32): payload bytes node i sent this round, over all receivers;
* ``meta_bytes`` (int32): index / seed bytes node i sent this round, over all receivers;
* ``sent`` (int32): number of values in node i's message;
* ``full`` (bool): whether node i shared its whole model (or all coefficients).

Hyperparameters that do not change shapes live in the state as arrays (``state.hp``),
so a sweep can build several states and ``vmap`` over them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jwins_jax import accounting
from jwins_jax.topology import NeighborTable

Stats = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Sharing:
    """A sharing strategy as a pair of pure functions.

    Attributes:
        name: registry name of the strategy.
        n_params: N, the flat model length it was built for.
        init: ``x0 (n, N) -> state``.
        step: ``(state, x (n, N), key, table, **override) -> (x_new, state, stats)``.
        params: the resolved constructor parameters (for logs and results).
    """

    name: str
    n_params: int
    init: Callable[[jax.Array], Any]
    step: Callable[..., tuple[jax.Array, Any, Stats]]
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def make_stats(
    table: NeighborTable,
    sent: jax.Array,
    meta_per_message: jax.Array,
    full: jax.Array,
) -> Stats:
    """Per-node byte statistics for one round.

    Args:
        table: this round's neighbour table; ``table.degree`` is the number of
            receivers of each node's message (SPEC 1.3 step 6: one copy per receiver).
        sent: ``(n,)`` number of float32 values in each node's message.
        meta_per_message: ``(n,)`` metadata bytes of one message.
        full: ``(n,)`` bool, whether the node shared everything.
    """
    receivers = table.degree.astype(jnp.int32)
    sent = sent.astype(jnp.int32)
    return {
        "value_bytes": accounting.FLOAT_BYTES * sent * receivers,
        "meta_bytes": meta_per_message.astype(jnp.int32) * receivers,
        "sent": sent,
        "full": jnp.asarray(full, dtype=bool),
    }


def as_stack(x: jax.Array) -> jax.Array:
    """Checks and converts a stacked model matrix to ``(n, N)`` float32."""
    x = jnp.asarray(x, dtype=jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"expected stacked flat models of shape (n, N), got {x.shape}")
    return x
