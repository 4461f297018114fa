"""Link failures and node churn, part of every simulated round (issue 11).

The original system has no fault model: a round is synchronous, every node sends to
all its current neighbours and then blocks until a message of the round has arrived
from **every** one of them (SPEC 1.3 steps 6-7), so a neighbour that never answers
blocks it forever. This module is our reading of "what if some nodes or links are
down", kept as close to SPEC 1.3 and 4.0 as that allows.

**Churn** (option ``churn`` = q, and ``churn_schedule``). In round t each node is
offline independently with probability q, and also when the schedule lists it for
round t. An offline node does nothing in the round: it neither trains (SPEC 1.3 step
2), nor sends, nor receives (steps 5-8); its model, optimizer state and strategy state
stay as they were at the end of round t-1, and it comes back in a later round where it
stopped. The nodes that take part in a round are known to all (as a peer sampler knows
who is alive, SPEC 6.4): the round's graph G_t is the configured graph (the round's
graph on dynamic topologies) without the offline nodes, and an online node sends one
copy of its message to each online neighbour.

**Link failures** (option ``link_failure`` = p). Each link {i, j} of G_t is down in
round t independently with probability p, and a link that is down carries no message
in either direction. The issue speaks of "each message dropped with probability p";
we drop the link instead of the single message, because the Metropolis-Hastings
weights ``w_ij = 1 / (1 + max(d_i, d_j))`` (SPEC 4.0) give a symmetric, doubly
stochastic W only on an undirected graph: if j heard i but i did not hear j, i's row
and j's row of W would disagree, W would no longer be symmetric and the network
average would drift. The surviving graph H_t (online nodes, links up) stays undirected.

**Averaging.** Receivers average over what arrived, with the MH weights of H_t:
``w_ij = 1 / (1 + max(h_i, h_j))`` with h the degrees in H_t and ``w_ii = 1 - sum_j
w_ij``. A node without surviving links keeps its own (trained) model. This is an
idealisation: j's degree in H_t is known to j only after the exchange (a real system
would need an extra small message, which is not counted in the bytes). The surviving
table is built on the device each round (:func:`surviving_table`); entries whose two
ends keep their degree keep the table's weight bit for bit, so with nothing down the
round is exactly the fault-free one.

**Bytes.** An online node sends ``receivers`` = its degree in G_t copies of its
message; a copy over a failed link is counted as sent (the sender transmitted it) but
not received. An offline node sends nothing (``sent``, ``value_bytes``,
``meta_bytes``, ``receivers`` are 0 and ``full`` is False). Two statistics are added
to every strategy's: ``delivered``, the number of the node's copies that arrived (its
degree in H_t), from which the host counts the received bytes exactly in 64 bits,
and ``received``, the number of values the node received (int32: exact while a node
receives fewer than 2**31 values in a round). ``online`` (bool) says who took part.

**Strategy state** follows the sender's view. Top-k, wavelet and JWINS rewind their
accumulator for what they sent and set their reference model to their post-averaging
model whether or not the copies arrived (SPEC 4.2 post-step), exactly as in a round
without faults. CHOCO-SGD (SPEC 4.7) keeps ``s_i = sum_j w_ij xhat_j + w_ii xhat_i``
by adding the increments it receives; a lost increment would leave i's copy of
``xhat_j`` behind for good. With faults enabled CHOCO therefore recomputes ``s_i`` from
the neighbours' current public copies over the surviving table (see
:mod:`jwins_jax.sharing.choco`), which is what a system that retransmits lost
increments reliably would hold.

**Randomness.** The fault draws use ``fold_in(round key, FAULT_STREAM)``, a stream
apart from the ones the round already splits off (batches, sharing), so switching
faults on changes no other random draw. Both ends of a link see the same draw: link
{i, j} uses ``uniform(fold_in(fold_in(key, min(i, j)), max(i, j)))``.

Whether faults are on at all (p > 0, q > 0 or a schedule) is static
(:attr:`jwins_jax.config.Config.faults_enabled`); p and q are traced hyperparameters
(:class:`FaultHyper`), so a sweep vmaps over them in one program. With faults off the
round runs the fault-free program.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jwins_jax.errors import ConfigError
from jwins_jax.options import read_text_file
from jwins_jax.sharing.base import RoundInputs, Sharing, Stats
from jwins_jax.topology import NeighborTable

# fold_in data of the fault stream of a round key (any constant apart from the splits).
FAULT_STREAM = 0x0FA17


@struct.dataclass
class FaultHyper:
    """The traced fault probabilities of a run."""

    link_failure: jax.Array  # () float32 p: probability that a link is down in a round
    churn: jax.Array  # () float32 q: probability that a node is offline in a round


def hparams(link_failure: float = 0.0, churn: float = 0.0) -> FaultHyper:
    """The fault probabilities as the arrays a round takes."""
    return FaultHyper(link_failure=jnp.float32(link_failure), churn=jnp.float32(churn))


# ------------------------------------------------------------------------- draws
def _edges(table: NeighborTable) -> jax.Array:
    """(n, D) bool: the table's real neighbour entries (padding holds the own id)."""
    own = jnp.arange(table.idx.shape[0], dtype=table.idx.dtype)[:, None]
    return table.idx != own


def draw(
    key: jax.Array,
    table: NeighborTable,
    hp: FaultHyper,
    offline: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Draws the round's offline nodes and failed links.

    Args:
        key: the round's fault key.
        table: the round's neighbour table, idx ``(n, D)``.
        hp: the fault probabilities.
        offline: ``(n,)`` bool nodes the schedule takes offline this round, or None.

    Returns:
        ``(online, link_up)``: ``(n,)`` bool nodes taking part, and ``(n, D)`` bool
        whether the link of each table entry is up, the same at both of its ends.
    """
    n = table.idx.shape[0]
    k_node, k_link = jax.random.split(key)
    online = jax.random.uniform(k_node, (n,)) >= hp.churn
    if offline is not None:
        online = online & ~offline
    own = jnp.arange(n, dtype=table.idx.dtype)[:, None]
    lo = jnp.minimum(own, table.idx)
    hi = jnp.maximum(own, table.idx)

    def pair(a, b):
        k = jax.random.fold_in(jax.random.fold_in(k_link, a), b)
        return jax.random.uniform(k)

    u = jax.vmap(jax.vmap(pair))(lo, hi)
    return online, u >= hp.link_failure


def _alive(table: NeighborTable, online: jax.Array, link_up: jax.Array) -> jax.Array:
    """(n, D) bool: the table entries whose link survives (both ends online, up)."""
    return _edges(table) & link_up & online[:, None] & online[table.idx]


def surviving_table(
    table: NeighborTable, online: jax.Array, link_up: jax.Array
) -> NeighborTable:
    """The table of the surviving graph H_t, with its MH weights.

    Args:
        table: the round's neighbour table, idx / weight ``(n, D)``.
        online: ``(n,)`` bool nodes taking part.
        link_up: ``(n, D)`` bool links up (symmetric: both entries of a link agree).

    Returns:
        The same idx with weight ``1 / (1 + max(h_i, h_j))`` on surviving links and 0
        elsewhere (padding included), ``self_weight = 1 - sum_j w_ij`` and degree h.
        Where neither end of a link changed degree, the table's own weight is kept
        bit for bit; a row whose whole neighbourhood kept its degrees keeps its self
        weight (so nothing down gives the input table back exactly).
    """
    idx = table.idx
    alive = _alive(table, online, link_up)
    degree = jnp.sum(alive, axis=1, dtype=jnp.int32)
    changed = degree != table.degree
    fresh = 1.0 / (1.0 + jnp.maximum(degree[:, None], degree[idx]).astype(jnp.float32))
    keep = ~changed[:, None] & ~changed[idx]
    weight = jnp.where(alive, jnp.where(keep, table.weight, fresh), 0.0)
    weight = weight.astype(table.weight.dtype)
    row_kept = ~changed & jnp.all(keep | ~_edges(table), axis=1)
    self_weight = jnp.where(
        row_kept, table.self_weight, 1.0 - jnp.sum(weight, axis=1)
    ).astype(table.self_weight.dtype)
    return NeighborTable(idx=idx, weight=weight, self_weight=self_weight, degree=degree)


# ---------------------------------------------------------------------- the round
def keep_offline(online: jax.Array, new: Any, old: Any) -> Any:
    """``new`` with the offline nodes' entries taken from ``old``.

    Per-node leaves have the node axis first (``(n, ...)``, the house convention);
    leaves without it (round counters) are taken from ``new``.
    """
    n = online.shape[0]

    def pick(a, b):
        if a.ndim == 0 or a.shape[0] != n:
            return a
        return jnp.where(online.reshape((n,) + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


def fault_free_stats(stats: Stats, table: NeighborTable) -> Stats:
    """A fault-free round's stats with ``delivered``, ``received`` and ``online``."""
    out = dict(stats)
    n = stats["sent"].shape[0]
    out["delivered"] = stats["receivers"]
    out["received"] = jnp.sum(
        jnp.where(_edges(table), stats["sent"][table.idx], 0), axis=1, dtype=jnp.int32
    )
    out["online"] = jnp.ones((n,), bool)
    return out


def sharing_step(
    sharing: Sharing,
    state: Any,
    x: jax.Array,
    key: jax.Array,
    table: NeighborTable,
    hp: Any,
    online: jax.Array,
    link_up: jax.Array,
    inputs: RoundInputs | None = None,
) -> tuple[jax.Array, Any, Stats]:
    """One gossip round with the given offline nodes and failed links.

    Args:
        sharing: the strategy.
        state: its state before the round.
        x: ``(n, N)`` models entering the gossip (an offline node's row is its model
            of the previous round: it did not train).
        key: the strategy's key of the round.
        table: the round's neighbour table (before faults).
        hp: the strategy's hyperparameters.
        online: ``(n,)`` bool nodes taking part.
        link_up: ``(n, D)`` bool links up, symmetric (see :func:`draw`).
        inputs: other round inputs for the strategy (e.g. forced ``alphas``); its
            ``online`` is set here.

    Returns:
        ``(x_new, state, stats)`` as a strategy's step, with the offline nodes' rows
        of ``x`` and of the state unchanged, and the stats of the module docstring.
    """
    live = surviving_table(table, online, link_up)
    inputs = RoundInputs() if inputs is None else inputs
    x_new, new_state, stats = sharing.step(
        state, x, key, live, hp, inputs.replace(online=online)
    )
    x_new = jnp.where(online[:, None], x_new, x)
    new_state = keep_offline(online, new_state, state)
    present = _edges(table) & online[:, None] & online[table.idx]
    sent = jnp.where(online, stats["sent"], 0).astype(jnp.int32)
    out = dict(stats)
    out["sent"] = sent
    out["meta_bytes"] = jnp.where(online, stats["meta_bytes"], 0).astype(jnp.int32)
    if "value_bytes" in stats:
        out["value_bytes"] = jnp.where(online, stats["value_bytes"], 0).astype(
            jnp.int32
        )
    out["full"] = stats["full"] & online
    out["receivers"] = jnp.sum(present, axis=1, dtype=jnp.int32)
    out["delivered"] = live.degree
    alive = _alive(table, online, link_up)
    out["received"] = jnp.sum(
        jnp.where(alive, sent[table.idx], 0), axis=1, dtype=jnp.int32
    )
    out["online"] = online
    return x_new, new_state, out


# ----------------------------------------------------------------- churn schedule
SCHEDULE_FORMAT = "'ROUND: NODE ...' or 'FIRST-LAST: NODE ...'"


def read_schedule(path: str | pathlib.Path, nodes: int, rounds: int) -> np.ndarray:
    """Reads a churn schedule file: which nodes are offline in which rounds.

    The format is one entry a line; ``#`` starts a comment and blank lines are
    skipped::

        # ROUND: NODE NODE ...     the nodes offline in that round (rounds from 0)
        # FIRST-LAST: NODE ...     ... in every round from FIRST to LAST inclusive
        3: 0 5
        10-19: 2, 7

    Node ids are separated by spaces or commas. A round may appear on several lines
    (its offline nodes are the union); rounds not listed have every node online;
    rounds from ``rounds`` on are ignored.

    Args:
        path: the file.
        nodes: n, the number of nodes (ids must be in ``0..n-1``).
        rounds: the run's rounds T.

    Returns:
        ``(K, 3)`` int32 rows ``(first round, last round, node)``.

    Raises:
        ConfigError: a missing or unreadable file or a malformed line, in one line
            naming the file, the line and what is allowed.
    """
    p = pathlib.Path(path)
    name = f"churn_schedule {str(p)!r}"
    text = read_text_file(p, name)
    rows: list[tuple[int, int, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{name} line {number}"
        head, sep, body = line.partition(":")
        if not sep:
            raise ConfigError(f"{where}: expected {SCHEDULE_FORMAT}, got {_show(line)}")
        first, last = _rounds(head.strip(), where)
        ids = [tok for tok in body.replace(",", " ").split()]
        for tok in ids:
            if not _is_int(tok) or not 0 <= int(tok) < nodes:
                raise ConfigError(
                    f"{where}: node {_show(tok)} is not allowed: node ids are integers "
                    f"in 0..{nodes - 1} (nodes={nodes})"
                )
        if first >= rounds:
            continue
        last = min(last, rounds - 1)
        rows.extend((first, last, int(tok)) for tok in ids)
    return np.asarray(rows, np.int32).reshape(-1, 3)


def _rounds(text: str, where: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not dash:
        last = first
    if not (_is_int(first) and _is_int(last)) or not 0 <= int(first) <= int(last):
        raise ConfigError(
            f"{where}: round {_show(text)} is not allowed: give a round >= 0 or a "
            "range FIRST-LAST with 0 <= FIRST <= LAST, then ':' and the offline nodes"
        )
    return int(first), int(last)


def _is_int(token: str) -> bool:
    """A non-negative decimal integer of at most 18 digits."""
    return token.isascii() and token.isdigit() and len(token) <= 18


def _show(text: str) -> str:
    text = repr(text)
    return text if len(text) <= 40 else text[:37] + "..."


def scheduled_offline(schedule: jax.Array, t: jax.Array, n: int) -> jax.Array:
    """``(n,)`` bool: the nodes the schedule takes offline in round ``t``.

    Args:
        schedule: ``(K, 3)`` int32 rows ``(first, last, node)`` (:func:`read_schedule`).
        t: the round, a traced int scalar.
        n: the number of nodes.
    """
    hit = (schedule[:, 0] <= t) & (t <= schedule[:, 1])
    marks = jnp.zeros((n,), jnp.int32).at[schedule[:, 2]].max(hit.astype(jnp.int32))
    return marks > 0
