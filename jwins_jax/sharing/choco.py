"""CHOCO-SGD with top-k compression (SPEC 4.7).

State per node: the public copy ``xhat`` and ``s``, the weighted sum of the
neighbours' public copies, both starting at 0. Each round::

    q    = TopK_alpha(x - xhat)      # keep |.| >= k-th largest (ties kept); k = 0: keep all
    xhat = xhat + q
    s    = s + sum_j w_ij q_j + w_ii q_i
    x    = x + gamma * (s - xhat)

The message carries the non-zero entries of ``q`` as float32 values with int64
indices, so each sent value costs 4 + 8 bytes (SPEC decisions table). CHOCO-SGD is not
a fill-with-own pipeline, so it is a strategy of its own, built from the public
blocks where they fit (:mod:`jwins_jax.sharing.blocks`): the
:func:`~jwins_jax.sharing.blocks.threshold` selection with a fixed alpha and no cap,
:func:`~jwins_jax.sharing.blocks.raw_values` and 8-byte
:func:`~jwins_jax.sharing.blocks.raw_indices`.

With faults (:mod:`jwins_jax.faults`; the round's ``RoundInputs.online`` is given) a
receiver misses the increments ``q_j`` sent over a failed link, so adding up what
arrived would leave its copy of ``xhat_j`` behind for good. Instead ``s`` is
recomputed every round from the public copies over the round's surviving table::

    s = sum_j w_ij xhat_j + w_ii xhat_i    # W_t of the surviving graph, after xhat += q

which is what each node holds when lost increments are retransmitted reliably (a
neighbour that comes back gets the sum of the increments it missed). It also keeps
``s = W_t xhat`` when W changes from round to round. The bytes count each round's
``q`` once per copy sent; the retransmissions this reading implies (up to a dense
vector after a long outage) are not counted, so CHOCO's bytes under faults are a lower
bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jwins_jax import accounting, gossip
from jwins_jax.sharing import blocks
from jwins_jax.sharing.base import (
    Cost,
    RoundInputs,
    Sharing,
    as_stack,
    make_stats,
    ranking_flops,
)
from jwins_jax.topology import NeighborTable

PARAMS: tuple[str, ...] = ("alpha", "gamma")


@struct.dataclass
class ChocoHyper:
    select: blocks.CutoffHyper  # alpha and k = round(alpha * N)
    gamma: jax.Array  # () float32 consensus step size


@struct.dataclass
class ChocoState:
    xhat: jax.Array  # (n, N) public copies
    s: jax.Array  # (n, N) weighted sums of neighbours' public copies


def choco(n_params: int, alpha: float = 0.1, gamma: float = 0.5) -> Sharing:
    """Builds CHOCO-SGD with top-``alpha`` compression and step size ``gamma``."""
    selection = blocks.threshold(blocks.fixed_alpha(n_params, cap=None))
    values = blocks.raw_values()
    indices = blocks.raw_indices(accounting.CHOCO_INDEX_BYTES)

    def hparams(alpha: float, gamma: float) -> ChocoHyper:
        return ChocoHyper(
            select=selection.hparams(alpha=alpha), gamma=jnp.float32(gamma)
        )

    def init(x0: jax.Array) -> ChocoState:
        zeros = jnp.zeros_like(as_stack(x0))
        return ChocoState(xhat=zeros, s=zeros)

    def compress(state: ChocoState, x: jax.Array, key, hp, inputs: RoundInputs):
        """``q`` (zero where nothing is sent), the entries sent and their bytes."""
        diff = x - state.xhat
        keep, _ = selection.select(jnp.abs(diff), key, hp.select, inputs)
        q = jnp.where(keep, diff, 0.0)
        nonzero = q != 0  # the entries the message carries
        q, value_bytes, _ = values.encode((), q, nonzero, key, None)
        return q, nonzero, value_bytes

    def message(state, x, key, hp, inputs=None):
        inputs = RoundInputs() if inputs is None else inputs
        q, nonzero, _ = compress(state, as_stack(x), key, hp, inputs)
        return q, nonzero

    def step(
        state: ChocoState,
        x: jax.Array,
        key: jax.Array,
        table: NeighborTable,
        hp,
        inputs: RoundInputs | None = None,
    ):
        """One round; with faults (``inputs.online`` given) ``s`` is recomputed."""
        inputs = RoundInputs() if inputs is None else inputs
        faults = inputs.online is not None
        x = as_stack(x)
        n = x.shape[0]
        q, nonzero, value_bytes = compress(state, x, key, hp, inputs)
        xhat = state.xhat + q
        if faults:
            s = gossip.mix(table, xhat)  # s_i = sum_j W_t,ij xhat_j
        else:
            s = state.s + gossip.mix(table, q)
        x_new = x + hp.gamma * (s - xhat)
        nnz = jnp.sum(nonzero, axis=1, dtype=jnp.int32)
        stats = make_stats(
            table,
            nnz,
            indices.size(nonzero),
            jnp.zeros((n,), bool),
            value_bytes=value_bytes,
        )
        return x_new, state.replace(xhat=xhat, s=s), stats

    params = {"alpha": alpha, "gamma": gamma}
    # x - xhat, |.|, q, ranking; then xhat += q, s += w_ii q_i, x += gamma (s - xhat)
    cost = Cost(
        pre=3.0 * n_params + ranking_flops(n_params),
        post=5.0 * n_params,
        per_value=2.0,
    )
    return Sharing(
        "choco", n_params, init, step, hparams, params, cost=cost, message=message
    )
