"""Full sharing, the D-PSGD baseline (SPEC 4.1).

Every node sends its whole model to every neighbour and takes the Metropolis-Hastings
weighted average ``x_i <- w_ii x_i + sum_j w_ij x_j``.

With ``float_precision`` = K > 0 the models travel quantized
(:func:`jwins_jax.sharing.blocks.quantize`, SPEC 5.4): receivers average the decoded
models ``x^_j`` of their neighbours with their own exact model,
``x_i <- w_ii x_i + sum_j w_ij x^_j``, and each message costs the quantizer's exact
bytes instead of 4 per value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jwins_jax import gossip
from jwins_jax.sharing import blocks
from jwins_jax.sharing.base import Cost, RoundInputs, Sharing, as_stack, make_stats
from jwins_jax.topology import NeighborTable

PARAMS: tuple[str, ...] = ("float_precision",)


@struct.dataclass
class FullState:
    """Full sharing keeps no state of its own."""


def full(n_params: int, float_precision: int = 0) -> Sharing:
    """Builds the full-sharing strategy for models of ``n_params`` values."""
    codec = blocks.quantize(float_precision, n_params) if float_precision > 0 else None

    def init(x0: jax.Array) -> FullState:
        as_stack(x0)
        return FullState()

    def encode(x: jax.Array, key: jax.Array):
        """Every value of every model, as the receivers decode it; its bytes."""
        everything = jnp.ones(x.shape, bool)
        if codec is None:
            return x, everything, None
        decoded, value_bytes, _ = codec.encode((), x, everything, key, None)
        return decoded, everything, value_bytes

    def message(state, x, key, hp, inputs=None):
        decoded, everything, _ = encode(as_stack(x), key)
        return decoded, everything

    def step(
        state: FullState,
        x: jax.Array,
        key: jax.Array,
        table: NeighborTable,
        hp,
        inputs: RoundInputs | None = None,
    ):
        del hp, inputs
        x = as_stack(x)
        n = x.shape[0]
        decoded, _, value_bytes = encode(x, key)
        if codec is None:
            x_new = gossip.mix(table, x)
        else:  # the neighbours' decoded models, the node's own exact one
            x_new = gossip.mix(table, decoded) + table.self_weight[:, None] * (
                x - decoded
            )
        stats = make_stats(
            table,
            sent=jnp.full((n,), x.shape[1], jnp.int32),
            meta_per_message=jnp.zeros((n,), jnp.int32),
            full=jnp.ones((n,), bool),
            value_bytes=value_bytes,
        )
        return x_new, state, stats

    # w_ii x_i, then w_ij x_j added per value received
    cost = Cost(pre=0.0, post=float(n_params), per_value=2.0)
    if codec is not None:
        cost = cost + codec.cost
    return Sharing(
        "full",
        n_params,
        init,
        step,
        lambda: {},
        {"float_precision": float_precision},
        cost=cost,
        message=message,
    )
