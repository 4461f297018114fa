"""CHOCO-SGD with top-k compression (SPEC 4.7).

State per node: the public copy ``xhat`` and ``s``, the weighted sum of the
neighbours' public copies, both starting at 0. Each round::

    q    = TopK_alpha(x - xhat)      # keep |.| >= k-th largest (ties kept); k = 0: keep all
    xhat = xhat + q
    s    = s + sum_j w_ij q_j + w_ii q_i
    x    = x + gamma * (s - xhat)

The message carries the non-zero entries of ``q`` as float32 values with int64
indices, so each sent value costs 4 + 8 bytes (SPEC decisions table).

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

from jwins_jax import accounting, gossip, sparsify
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
    k: jax.Array  # () int32 round(alpha * N)
    gamma: jax.Array  # () float32 consensus step size


@struct.dataclass
class ChocoState:
    xhat: jax.Array  # (n, N) public copies
    s: jax.Array  # (n, N) weighted sums of neighbours' public copies


def choco(n_params: int, alpha: float = 0.1, gamma: float = 0.5) -> Sharing:
    """Builds CHOCO-SGD with top-``alpha`` compression and step size ``gamma``."""

    def hparams(alpha: float, gamma: float) -> ChocoHyper:
        k = sparsify.k_from_alpha(alpha, n_params)
        return ChocoHyper(k=jnp.int32(k), gamma=jnp.float32(gamma))

    def init(x0: jax.Array) -> ChocoState:
        zeros = jnp.zeros_like(as_stack(x0))
        return ChocoState(xhat=zeros, s=zeros)

    def step(
        state: ChocoState,
        x: jax.Array,
        key: jax.Array,
        table: NeighborTable,
        hp,
        inputs: RoundInputs | None = None,
    ):
        """One round; with faults (``inputs.online`` given) ``s`` is recomputed."""
        del key
        faults = inputs is not None and inputs.online is not None
        x = as_stack(x)
        n = x.shape[0]
        diff = x - state.xhat
        keep = sparsify.threshold_mask(jnp.abs(diff), jnp.full((n,), hp.k))
        q = jnp.where(keep, diff, 0.0)
        xhat = state.xhat + q
        if faults:
            s = gossip.mix(table, xhat)  # s_i = sum_j W_t,ij xhat_j
        else:
            s = state.s + gossip.mix(table, q)
        x_new = x + hp.gamma * (s - xhat)
        nnz = jnp.sum(q != 0, axis=1, dtype=jnp.int32)
        stats = make_stats(
            table, nnz, accounting.CHOCO_INDEX_BYTES * nnz, jnp.zeros((n,), bool)
        )
        return x_new, state.replace(xhat=xhat, s=s), stats

    params = {"alpha": alpha, "gamma": gamma}
    # x - xhat, |.|, q, ranking; then xhat += q, s += w_ii q_i, x += gamma (s - xhat)
    cost = Cost(
        pre=3.0 * n_params + ranking_flops(n_params),
        post=5.0 * n_params,
        per_value=2.0,
    )
    return Sharing("choco", n_params, init, step, hparams, params, cost=cost)
