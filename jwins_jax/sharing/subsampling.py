"""Random sampling ("SubSampling", SPEC 4.3).

Each node sends an independent Bernoulli(alpha) subset of its parameters every round;
no indices travel, only a seed from which receivers regenerate the mask. Receivers
overwrite their own values where the sender's mask is set and average with MH weights.

Decisions (SPEC decisions table): the mask is drawn from the run's ``jax.random`` key,
split per round and per node (the original used OS entropy, so it cannot be matched).
A message costs ``SEED_BYTES`` (8) of metadata; ``alpha > metadata_cap`` (strict, as
in the original) sends the whole model with no metadata.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jwins_jax import accounting, gossip, sparsify
from jwins_jax.sharing.base import Cost, RoundInputs, Sharing, as_stack, make_stats
from jwins_jax.topology import NeighborTable

PARAMS: tuple[str, ...] = ("alpha", "metadata_cap")


@struct.dataclass
class RandomHyper:
    alpha: jax.Array  # () float32 sampling probability
    cap: jax.Array  # () float32 metadata_cap


@struct.dataclass
class RandomState:
    """Random sampling keeps no state of its own (masks come from the round key)."""


def random_sampling(
    n_params: int, alpha: float = 0.1, metadata_cap: float = 1.0
) -> Sharing:
    """Builds random sampling with fraction ``alpha``."""

    def hparams(alpha: float, metadata_cap: float) -> RandomHyper:
        return RandomHyper(alpha=jnp.float32(alpha), cap=jnp.float32(metadata_cap))

    def init(x0: jax.Array) -> RandomState:
        as_stack(x0)
        return RandomState()

    def step(
        state: RandomState,
        x: jax.Array,
        key: jax.Array,
        table: NeighborTable,
        hp: RandomHyper,
        inputs: RoundInputs | None = None,
    ):
        x = as_stack(x)
        n = x.shape[0]
        full = jnp.broadcast_to(hp.alpha > hp.cap, (n,))
        mask = None if inputs is None else inputs.mask
        if mask is None:
            mask = sparsify.bernoulli_mask(key, x.shape, hp.alpha)
        mask = jnp.asarray(mask, bool) | full[:, None]
        x_new = gossip.mix_masked(table, x, mask)
        sent = jnp.sum(mask, axis=1, dtype=jnp.int32)
        meta = jnp.where(full, 0, accounting.SEED_BYTES)
        stats = make_stats(table, sent, meta, full)
        return x_new, state, stats

    params = {"alpha": alpha, "metadata_cap": metadata_cap}
    # one uniform draw per parameter; the fill and weighted add per value received
    cost = Cost(pre=float(n_params), post=0.0, per_value=3.0)
    return Sharing("random", n_params, init, step, hparams, params, cost=cost)
