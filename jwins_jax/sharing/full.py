"""Full sharing, the D-PSGD baseline (SPEC 4.1).

Every node sends its whole model to every neighbour and takes the Metropolis-Hastings
weighted average ``x_i <- w_ii x_i + sum_j w_ij x_j``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jwins_jax import gossip
from jwins_jax.sharing.base import Cost, RoundInputs, Sharing, as_stack, make_stats
from jwins_jax.topology import NeighborTable

PARAMS: tuple[str, ...] = ()


@struct.dataclass
class FullState:
    """Full sharing keeps no state of its own."""


def full(n_params: int) -> Sharing:
    """Builds the full-sharing strategy for models of ``n_params`` values."""

    def init(x0: jax.Array) -> FullState:
        as_stack(x0)
        return FullState()

    def step(
        state: FullState,
        x: jax.Array,
        key: jax.Array,
        table: NeighborTable,
        hp,
        inputs: RoundInputs | None = None,
    ):
        del key, hp, inputs
        x = as_stack(x)
        n = x.shape[0]
        x_new = gossip.mix(table, x)
        stats = make_stats(
            table,
            sent=jnp.full((n,), x.shape[1], jnp.int32),
            meta_per_message=jnp.zeros((n,), jnp.int32),
            full=jnp.ones((n,), bool),
        )
        return x_new, state, stats

    # w_ii x_i, then w_ij x_j added per value received
    cost = Cost(pre=0.0, post=float(n_params), per_value=2.0)
    return Sharing("full", n_params, init, step, lambda: {}, {}, cost=cost)
