"""Partial sharing by ranked change: top-k, wavelet top-k and JWINS (SPEC 4.2, 4.4, 4.5).

The three strategies are one pipeline that differs only in its transform ``T`` and its
cut-off policy (DESIGN.md "Compose, don't duplicate"):

=========  ===================  ==============================  =================
strategy   transform ``T``      cut-off per node and round      index metadata
=========  ===================  ==============================  =================
topk       identity (L = N)     fixed ``alpha``                 4-byte raw int32
wavelet    DWT (L = M > N)      fixed ``alpha``                 Elias-gamma
jwins      DWT (L = M > N)      ``alpha`` drawn from a list     Elias-gamma
=========  ===================  ==============================  =================

One round at node i (``x`` is the model after local training, ``r`` the model after the
previous averaging, ``A`` the accumulator)::

    P = T(x);  D = T(x - r)
    score: none -> D;  accumulate -> A += D, A;  legacy -> D + A;  magnitude -> |P|
    alpha >= metadata_cap -> send all L values of P, A = 0
    otherwise             -> S = top-round(alpha L) of |score| (ties: lower index),
                             A[S] = 0, send P[S]
    Z_i = P_i + sum_j w_ij 1[S_j] (P_j - P_i)      # receivers fill with their own
    x_post = T^-1(Z)[:N];  legacy: A += T(x_post - r);  r = x_post

Decisions and readings of SPEC (documented here as the source of truth):

* ``k = round(alpha * L)`` with Python's round-half-to-even in float64, computed on the
  host for every value of the alpha list. When per-node alphas are passed to ``step``
  explicitly, values equal to an entry of the list use that entry's host ``k``; other
  values use ``round(alpha * L)`` in float32 (exact except within float32 rounding of
  a half-way point).
* ``alpha >= metadata_cap`` is a full share (``>=`` as in the original). A full share
  costs ``4 L`` value bytes and no metadata.
* Elias-gamma metadata is 0 bytes for ``k = 0`` (nothing is sent) and 16 bytes for
  ``k = 1``, where the original coder crashes (SPEC 10.9).
* JWINS draws each node's alpha uniformly from the list with the run's ``jax.random``
  key (split per round and per node) instead of CPython's ``random.seed(uid)``.
* The MH weights use the current round's degrees for every strategy, JWINS included
  (the original sends JWINS's static-file degree, SPEC 4.5; on static graphs the two
  coincide).
* With ``selection="magnitude"`` the accumulator (if any) is still updated and
  rewound, as in the original, but the ranking uses ``|P|``.
* A round in which no node sends anything (k = 0 everywhere) skips the averaging
  and inverts ``P`` itself; this equals the masked average except that a ``-0.0``
  coefficient stays ``-0.0`` instead of becoming ``+0.0``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jwins_jax import accounting, gossip, sparsify, wavelets
from jwins_jax.sharing.base import (
    Cost,
    RoundInputs,
    Sharing,
    as_stack,
    make_stats,
    ranking_flops,
)
from jwins_jax.topology import NeighborTable

# JWINS's alpha list of the shipped configs (SPEC 4.5).
PAPER_ALPHA_LIST = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)
TOPK_PARAMS = ("alpha", "metadata_cap", "accumulation", "topk_method")
WAVELET_PARAMS = (
    "alpha",
    "metadata_cap",
    "wavelet",
    "level",
    "accumulation",
    "selection",
    "wavelet_backend",
    "topk_method",
)
JWINS_PARAMS = ("alpha_list",) + WAVELET_PARAMS[1:]


@struct.dataclass
class PartialHyper:
    alphas: jax.Array  # (A,) float32 the alpha list (A = 1 for a fixed alpha)
    ks: jax.Array  # (A,) int32 round(alpha * L) for each entry, Python rounding
    cap: jax.Array  # () float32 metadata_cap


@struct.dataclass
class PartialState:
    ref: jax.Array  # (n, N) model after the previous averaging (r_i = p_i)
    acc: jax.Array  # (n, L) accumulated change; (n, 0) without accumulation


@dataclasses.dataclass(frozen=True)
class _Pipeline:
    name: str
    transform: wavelets.Transform
    accumulation: str
    selection: str
    index_coding: str  # "raw" (int32 indices) or "elias"
    draw: bool  # draw alpha per node from the list, or use the single fixed alpha
    topk_method: str


def _build(pipe: _Pipeline, n_params: int, params: dict) -> Sharing:
    tr = pipe.transform
    length = tr.m
    accumulate = pipe.accumulation != "none"

    def hparams(
        alpha_list: Sequence[float] = (), metadata_cap: float = 1.0, alpha=None
    ) -> PartialHyper:
        alphas = tuple(alpha_list) if alpha is None else (alpha,)
        return PartialHyper(
            alphas=jnp.asarray(np.asarray(alphas, np.float32)),
            ks=jnp.asarray(
                [sparsify.k_from_alpha(a, length) for a in alphas], jnp.int32
            ),
            cap=jnp.float32(metadata_cap),
        )

    def init(x0: jax.Array) -> PartialState:
        x0 = as_stack(x0)
        n = x0.shape[0]
        acc = jnp.zeros((n, length if accumulate else 0), jnp.float32)
        return PartialState(ref=x0, acc=acc)

    def cutoff(hp: PartialHyper, key, n: int, alphas):
        if alphas is not None:
            alphas = jnp.broadcast_to(jnp.asarray(alphas, jnp.float32), (n,))
            k_float = jnp.round(alphas * length).astype(jnp.int32)
            hit = alphas[:, None] == hp.alphas[None, :]
            k_list = jnp.max(jnp.where(hit, hp.ks[None, :], -1), axis=1)
            return alphas, jnp.where(k_list >= 0, k_list, k_float)
        if pipe.draw:
            choice = jax.random.randint(key, (n,), 0, hp.alphas.shape[0])
            return hp.alphas[choice], hp.ks[choice]
        return jnp.broadcast_to(hp.alphas[0], (n,)), jnp.broadcast_to(hp.ks[0], (n,))

    def step(
        state: PartialState,
        x: jax.Array,
        key: jax.Array,
        table: NeighborTable,
        hp: PartialHyper,
        inputs: RoundInputs | None = None,
    ):
        inputs = RoundInputs() if inputs is None else inputs
        x = as_stack(x)
        n = x.shape[0]
        coef = tr.forward(x)  # (n, L) P
        acc = state.acc
        if pipe.selection == "change" or accumulate:
            change = tr.forward(x - state.ref)  # (n, L) T(x - r)
            if pipe.accumulation == "accumulate":
                acc = acc + change
                score = acc
            elif pipe.accumulation == "legacy":
                score = change + acc
            else:
                score = change
        if pipe.selection == "magnitude":
            score = coef
        alpha, k = cutoff(hp, key, n, inputs.alphas)
        full = alpha >= hp.cap
        if inputs.mask is not None:  # a given selection replaces the ranked one
            mask = jnp.asarray(inputs.mask, bool) | full[:, None]
        else:
            k = jnp.where(full, length, k)
            mask = sparsify.topk_mask(
                jnp.abs(score), k, method=pipe.topk_method, k_max=length
            )
        if accumulate:
            acc = jnp.where(mask, 0.0, acc)  # rewind; a full share resets all
        # When no node sends anything there is nothing to average. The conditional
        # also makes XLA write Z to memory before the inverse transform reads it:
        # otherwise XLA:CPU inlines the neighbour gathers into every filter tap of
        # the inverse and recomputes them (n = 96, N = 89,834: mixing + inverse took
        # 28 ms that way, 13 ms with the conditional).
        mixed = jax.lax.cond(
            jnp.any(mask), lambda: gossip.mix_masked(table, coef, mask), lambda: coef
        )
        x_new = tr.inverse(mixed)
        if pipe.accumulation == "legacy":
            acc = acc + tr.forward(x_new - state.ref)
        sent = jnp.sum(mask, axis=1, dtype=jnp.int32)
        if pipe.index_coding == "elias":
            meta = accounting.elias_gamma_bytes(mask)
        else:
            meta = accounting.RAW_INDEX_BYTES * sent
        meta = jnp.where(full, 0, meta)
        stats = make_stats(table, sent, meta, full)
        return x_new, state.replace(ref=x_new, acc=acc), stats

    return Sharing(
        pipe.name,
        n_params,
        init,
        step,
        hparams,
        params,
        {"coefficients": length},
        cost=_cost(pipe, n_params),
    )


def _cost(pipe: _Pipeline, n_params: int) -> Cost:
    """The pipeline's arithmetic per node and round (see :class:`Cost`)."""
    tr, length = pipe.transform, pipe.transform.m
    pre = tr.flops + 2 * length + ranking_flops(length)  # P; |score|, rewind; rank
    if pipe.selection == "change" or pipe.accumulation != "none":
        pre += n_params + tr.flops + length  # T(x - r), accumulate
    post = tr.flops  # the inverse
    if pipe.accumulation == "legacy":
        post += n_params + tr.flops + length  # A += T(x_post - r)
    return Cost(pre=pre, post=post, per_value=3.0)  # Z += w (P_j - P_i)


def topk(
    n_params: int,
    alpha: float = 0.1,
    metadata_cap: float = 1.0,
    accumulation: str = "none",
    topk_method: str = "auto",
) -> Sharing:
    """PartialModel: top-k of the model change in parameter space (SPEC 4.2)."""
    pipe = _Pipeline(
        "topk",
        wavelets.identity_transform(n_params),
        accumulation,
        "change",
        "raw",
        draw=False,
        topk_method=topk_method,
    )
    params = {
        "alpha": alpha,
        "metadata_cap": metadata_cap,
        "accumulation": accumulation,
        "topk_method": topk_method,
    }
    return _build(pipe, n_params, params)


def _wavelet_pipeline(name: str, n_params: int, draw: bool, params: dict) -> Sharing:
    """Builds the wavelet-domain pipeline shared by wavelet and jwins."""
    wavelets.validate_wavelet(params["wavelet"], params["level"], n_params)
    tr = wavelets.make_wavelet_transform(
        n_params, params["wavelet"], params["level"], backend=params["wavelet_backend"]
    )
    pipe = _Pipeline(
        name,
        tr,
        params["accumulation"],
        params["selection"],
        "elias",
        draw=draw,
        topk_method=params["topk_method"],
    )
    return _build(pipe, n_params, params)


def wavelet(
    n_params: int,
    alpha: float = 0.1,
    metadata_cap: float = 1.0,
    wavelet: str = "sym2",
    level: int = 4,
    accumulation: str = "none",
    selection: str = "change",
    wavelet_backend: str = "auto",
    topk_method: str = "auto",
) -> Sharing:
    """Wavelet top-k with a fixed alpha (SPEC 4.4)."""
    params = dict(locals())
    del params["n_params"]
    return _wavelet_pipeline("wavelet", n_params, False, params)


def jwins(
    n_params: int,
    alpha_list: Sequence[float] = PAPER_ALPHA_LIST,
    metadata_cap: float = 0.5,
    wavelet: str = "sym2",
    level: int = 4,
    accumulation: str = "legacy",
    selection: str = "change",
    wavelet_backend: str = "auto",
    topk_method: str = "auto",
) -> Sharing:
    """JWINS: wavelet top-k with alpha drawn per node and round from a list (SPEC 4.5).

    The defaults are the paper's configuration: sym2, level 4, alpha list
    ``[0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0]``, metadata_cap 0.5 (so only 1.0 is a
    full share), change-based selection with legacy accumulation.

    ``step(..., inputs=RoundInputs(alphas=(n,) array))`` uses the given per-node
    alphas for the round instead of drawing them.
    """
    params = dict(locals())
    del params["n_params"]
    params["alpha_list"] = tuple(alpha_list)
    return _wavelet_pipeline("jwins", n_params, True, params)
