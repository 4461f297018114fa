"""Simulated time: a clock per node, advanced by compute and network in every round.

The simulator counts every byte exactly; this module turns the bytes, the model's
compute and the nodes' speeds into time, on the node axis inside the jitted round,
like gossip itself. The model (also in the README, "Simulated time"):

**Rounds** are synchronous as in the original system (SPEC 1.3): a node trains, sends
its message to each current neighbour, and starts its next round only after its own
copies are out and every neighbour's message of the round is in. Nodes are not
globally synchronised: every node has its own clock, and a slow node delays only
those that wait for it (its neighbours in the next round, theirs in the one after).

**Per node** i: compute speed ``g_i`` (FLOP/s), uplink ``U_i`` and downlink ``D_i``
(bytes/s); **per link** a one-way latency ``lam`` (the same on every link). From the
options: ``g = node_gflops * 1e9``, ``U = bandwidth_mbps * 1e6 / 8``, ``D =
downlink_mbps * 1e6 / 8`` (``downlink_mbps`` defaults to ``bandwidth_mbps``), ``lam =
latency_ms / 1000``. A profile file (CSV ``node,compute,up,down`` in GFLOP/s, Mbit/s,
Mbit/s) replaces the uniform values of the nodes it lists; a spread ``s`` then
multiplies every node's g, U and D by independent log-normal factors
``exp(s z - s^2 / 2)`` (mean 1; z ~ N(0, 1) drawn once per node from ``spread_seed``,
a seed of its own); a straggler trace (CSV ``round,node,factor``) multiplies node i's
compute time in round t by the product ``f_i(t)`` of the factors it lists for (t, i).

**One round** at an online node i starting at ``S_i``, with ``m_i = value_bytes_i +
meta_i`` (4 bytes per float32 value) the bytes of one copy of its message (the
counts of ``bytes_per_node``), ``k_i`` the copies it sends (``receivers``: its online
neighbours, over links up or down), ``h_i`` the copies it receives (``delivered``:
links up) and ``v_i`` the values it receives (``received``)::

    R_i = S_i + f_i (F_train + F_pre) / g_i                  # trained, message built
    r_ij = min(U_i / k_i, D_j / h_j)   (link up)              # a copy's rate: equal
         = U_i / k_i                   (link down)            # fixed shares of the
    E_i = R_i + max_j m_i / r_ij                              # uplink and downlink
    A_ji = R_j + m_j / r_ji + lam      (j's copy arrives at i)
    S_i' = max(E_i, max_j A_ji) + f_i (F_post + F_recv v_i) / g_i

``F_train = 3 x forward FLOPs per sample x batch x local steps``
(:attr:`~jwins_jax.models.ModelSpec.forward_flops`); ``F_pre``, ``F_post`` and
``F_recv`` are the strategy's own compute (:class:`~jwins_jax.sharing.base.Cost`:
transforms, ranking, selection, averaging). An **offline** node does nothing and is
not waited for (``S_i' = S_i``); a **failed link** carries nothing and is not waited
for, but the sender's copy over it still takes its share of the uplink (the byte
counters count it as sent).

**Precision.** Inside the program the clocks are float32 offsets from a base that
moves with the network: after each round the smallest clock of the nodes that took
part is subtracted from all and returned as the round's ``clock_shift``; the host
adds the shifts up in float64 (:class:`Clock`). Offsets stay as small as the spread
between nodes, so a clock keeps its resolution however long the run.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jwins_jax.errors import ConfigError
from jwins_jax.options import read_text_file
from jwins_jax.topology import NeighborTable

MBIT = 1e6 / 8  # bytes per second in one Mbit/s
GFLOP = 1e9


@struct.dataclass
class TimeHyper:
    """The traced parameters of the clock (sweeps vmap over them)."""

    node_gflops: jax.Array  # () float32 compute speed per node, GFLOP/s
    bandwidth_mbps: jax.Array  # () float32 uplink per node, Mbit/s
    downlink_mbps: jax.Array  # () float32 downlink per node, Mbit/s
    latency_ms: jax.Array  # () float32 one-way latency of every link
    node_spread: jax.Array  # () float32 sigma of the log-normal per-node factors
    spread_seed: jax.Array  # () uint32 seed of the per-node factors


def hparams(
    node_gflops: float,
    bandwidth_mbps: float,
    downlink_mbps: float,
    latency_ms: float,
    node_spread: float = 0.0,
    spread_seed: int = 0,
) -> TimeHyper:
    """The clock's parameters as the arrays a round takes."""
    return TimeHyper(
        node_gflops=jnp.float32(node_gflops),
        bandwidth_mbps=jnp.float32(bandwidth_mbps),
        downlink_mbps=jnp.float32(downlink_mbps),
        latency_ms=jnp.float32(latency_ms),
        node_spread=jnp.float32(node_spread),
        spread_seed=jnp.uint32(spread_seed),
    )


@dataclasses.dataclass(frozen=True)
class Work:
    """FLOPs of one round at one node (static: they follow the model and strategy).

    Attributes:
        train: local training, ``3 x forward FLOPs x batch x local steps``.
        pre: the strategy's work before sending.
        post: its fixed work after receiving.
        per_value: its work per value received.
    """

    train: float
    pre: float = 0.0
    post: float = 0.0
    per_value: float = 0.0


def round_work(forward_flops: float, batch_size: int, local_steps: int, cost) -> Work:
    """The :class:`Work` of a round: training from the model, the rest from ``cost``.

    Args:
        forward_flops: the model's forward FLOPs per sample.
        batch_size: b.
        local_steps: tau.
        cost: the strategy's :class:`~jwins_jax.sharing.base.Cost`.
    """
    train = 3.0 * float(forward_flops) * batch_size * local_steps
    return Work(train, float(cost.pre), float(cost.post), float(cost.per_value))


# ------------------------------------------------------------------- node speeds
@struct.dataclass
class Speeds:
    """Every node's speeds in base units."""

    flops: jax.Array  # (n,) float32 FLOP/s
    up: jax.Array  # (n,) float32 uplink bytes/s
    down: jax.Array  # (n,) float32 downlink bytes/s


def node_speeds(hp: TimeHyper, n: int, profile: jax.Array | None = None) -> Speeds:
    """The nodes' speeds: uniform values, the profile's where it lists a node, spread.

    Args:
        hp: the clock's parameters.
        n: the number of nodes.
        profile: ``(n, 3)`` float32 GFLOP/s, up and down Mbit/s per node, NaN where
            the profile does not list the node (:func:`read_profile`), or None.
    """
    base = jnp.stack([hp.node_gflops, hp.bandwidth_mbps, hp.downlink_mbps])
    values = jnp.broadcast_to(base, (n, 3))
    if profile is not None:
        values = jnp.where(jnp.isnan(profile), values, profile)
    z = jax.random.normal(jax.random.PRNGKey(hp.spread_seed), (n, 3))
    s = hp.node_spread
    values = values * jnp.exp(s * z - 0.5 * s * s)
    return Speeds(
        flops=values[:, 0] * GFLOP, up=values[:, 1] * MBIT, down=values[:, 2] * MBIT
    )


def straggler_factor(trace: jax.Array | None, t: jax.Array, n: int) -> jax.Array:
    """``(n,)`` each node's compute-time factor in round ``t`` (1 when not listed).

    Args:
        trace: ``(K, 3)`` float32 rows ``(round, node, factor)`` (:func:`read_trace`),
            or None.
        t: the round (traced).
        n: the number of nodes.
    """
    if trace is None:
        return jnp.ones((n,), jnp.float32)
    hit = trace[:, 0] == t.astype(jnp.float32)
    factor = jnp.where(hit, trace[:, 2], 1.0)
    return (
        jnp.ones((n,), jnp.float32).at[trace[:, 1].astype(jnp.int32)].multiply(factor)
    )


# ----------------------------------------------------------------------- the round
def advance(
    clock: jax.Array,
    speeds: Speeds,
    work: Work,
    latency_s: jax.Array,
    table: NeighborTable,
    stats: dict[str, jax.Array],
    factor: jax.Array,
    link_up: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One round of every node's clock (the module docstring's formulas).

    Args:
        clock: ``(n,)`` float32 offsets of the nodes' clocks at the round's start.
        speeds: the nodes' speeds.
        work: the round's FLOPs.
        latency_s: () one-way link latency in seconds.
        table: the round's neighbour table (before faults).
        stats: the round's per-node statistics: ``sent`` (or ``value_bytes``),
            ``meta_bytes``, ``receivers``, ``delivered``, ``received`` and
            ``online``.
        factor: ``(n,)`` the round's straggler factors.
        link_up: ``(n, D)`` bool, whether each table entry's link is up (both ends
            agree), or None when no link fails.

    Returns:
        ``(clock, shift, compute)``: the new offsets, relative to the smallest new
        clock of the nodes that took part (``shift``, a float32 scalar, is how far
        that base moved), and ``(n,)`` each node's compute seconds in the round.
    """
    n = clock.shape[0]
    idx = table.idx
    online = stats["online"]
    edges = idx != jnp.arange(n, dtype=idx.dtype)[:, None]
    present = edges & online[:, None] & online[idx]
    alive = present if link_up is None else present & link_up
    if "value_bytes" in stats:
        values = stats["value_bytes"].astype(jnp.float32)
    else:
        values = 4.0 * stats["sent"].astype(jnp.float32)
    size = values + stats["meta_bytes"].astype(jnp.float32)
    up_share = speeds.up / jnp.maximum(stats["receivers"], 1).astype(jnp.float32)
    down_share = speeds.down / jnp.maximum(stats["delivered"], 1).astype(jnp.float32)
    compute_pre = factor * (work.train + work.pre) / speeds.flops
    compute_post = (
        factor
        * (work.post + work.per_value * stats["received"].astype(jnp.float32))
        / speeds.flops
    )
    ready = clock + compute_pre
    # i's copy to its c-th neighbour j = idx[i, c]: rate min(U_i/k_i, D_j/h_j)
    rate_out = jnp.where(
        alive, jnp.minimum(up_share[:, None], down_share[idx]), up_share[:, None]
    )
    sending = jnp.where(present, size[:, None] / rate_out, 0.0)
    sent_by = ready + jnp.max(sending, axis=1, initial=0.0)
    # j's copy to i: rate min(U_j/k_j, D_i/h_i); the graph is undirected, so i's
    # table row lists exactly the nodes that send to i
    rate_in = jnp.minimum(up_share[idx], down_share[:, None])
    arrival = ready[idx] + size[idx] / rate_in + latency_s
    waited = jnp.max(jnp.where(alive, arrival, -jnp.inf), axis=1)
    end = jnp.maximum(sent_by, waited) + compute_post
    new = jnp.where(online, end, clock)
    shift = jnp.min(jnp.where(online, new, jnp.inf))
    shift = jnp.where(jnp.any(online), shift, 0.0)
    compute = jnp.where(online, compute_pre + compute_post, 0.0)
    return new - shift, shift, compute


# ------------------------------------------------------------------- host side
class Clock:
    """The host's float64 view of the clocks: the base the offsets are relative to.

    The base grows by every round's ``clock_shift``; node i's clock is ``base +
    offset_i``. ``compute`` accumulates each node's compute seconds.
    """

    def __init__(self, n: int, base: float = 0.0, compute=None):
        self.base = float(base)
        self.compute = (
            np.zeros(n, np.float64)
            if compute is None
            else np.array(compute, np.float64)
        )

    def add(self, per_round: dict[str, np.ndarray]) -> np.ndarray | None:
        """Adds rounds' ``clock_shift`` and ``compute_s``; returns the last offsets.

        Args:
            per_round: ``clock_shift`` ``(R,)``, ``compute_s`` and ``clock`` ``(R, n)``.
        """
        if "clock_shift" not in per_round:
            return None
        shifts = np.asarray(per_round["clock_shift"], np.float64)
        self.base += float(shifts.sum())
        self.compute += np.asarray(per_round["compute_s"], np.float64).sum(axis=0)
        return np.asarray(per_round["clock"], np.float64)[-1]

    def absolute(self, offsets: np.ndarray) -> np.ndarray:
        """Every node's clock in seconds (float64)."""
        return self.base + np.asarray(offsets, np.float64)

    def state(self) -> dict:
        """The clock as JSON-ready numbers (float64 values round-trip exactly)."""
        return {"base": self.base, "compute": self.compute.tolist()}


# --------------------------------------------------------------------- files
def _csv_rows(path: str | pathlib.Path, what: str, header: tuple[str, ...]):
    """Yields ``(line number, fields)`` of a CSV file, skipping blanks, ``#`` comments
    and a first line equal to ``header``."""
    text = read_text_file(path, f"{what} {str(path)!r}")
    first = True
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if first and tuple(f.lower() for f in fields) == header:
            first = False
            continue
        first = False
        if len(fields) != len(header):
            raise ConfigError(
                f"{what} {str(path)!r} line {number}: expected {len(header)} "
                f"comma-separated fields {','.join(header)}, got {_show(line)}"
            )
        yield number, fields


def _show(text: str) -> str:
    text = repr(text)
    return text if len(text) <= 40 else text[:37] + "..."


def _node(token: str, n: int, where: str) -> int:
    if not (token.isascii() and token.isdigit()) or not int(token) < n:
        raise ConfigError(
            f"{where}: node {_show(token)} is not allowed: node ids are integers in "
            f"0..{n - 1} (nodes={n})"
        )
    return int(token)


def _number(token: str, name: str, where: str, low: float = 0.0) -> float:
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > low):
        raise ConfigError(
            f"{where}: {name} {_show(token)} is not allowed: {name} must be a finite "
            f"number > {low:g}"
        )
    return value


PROFILE_HEADER = ("node", "compute", "up", "down")
TRACE_HEADER = ("round", "node", "factor")


def read_profile(path: str | pathlib.Path, n: int) -> np.ndarray:
    """Reads a node profile: ``node,compute,up,down`` (GFLOP/s, Mbit/s, Mbit/s).

    A header line ``node,compute,up,down`` is optional; ``#`` starts a comment. Each
    node is listed at most once; nodes not listed keep the uniform options.

    Returns:
        ``(n, 3)`` float32, NaN for the nodes not listed.

    Raises:
        ConfigError: a missing file or a malformed line (one line naming the file,
            the line and what is allowed).
    """
    out = np.full((n, 3), np.nan, np.float32)
    for number, fields in _csv_rows(path, "node_profile", PROFILE_HEADER):
        where = f"node_profile {str(path)!r} line {number}"
        node = _node(fields[0], n, where)
        if not np.isnan(out[node, 0]):
            raise ConfigError(f"{where}: node {node} is listed twice")
        out[node] = [
            _number(fields[1], "compute (GFLOP/s)", where),
            _number(fields[2], "up (Mbit/s)", where),
            _number(fields[3], "down (Mbit/s)", where),
        ]
    return out


def read_trace(path: str | pathlib.Path, n: int, rounds: int) -> np.ndarray:
    """Reads a straggler trace: ``round,node,factor`` lines.

    In round ``round`` (from 0) node ``node``'s compute time is multiplied by
    ``factor`` (> 0; several lines for one round and node multiply). Rounds past the
    run's end are ignored. A header ``round,node,factor`` is optional.

    Returns:
        ``(K, 3)`` float32 rows ``(round, node, factor)``.

    Raises:
        ConfigError: a missing file or a malformed line.
    """
    rows = []
    for number, fields in _csv_rows(path, "straggler_trace", TRACE_HEADER):
        where = f"straggler_trace {str(path)!r} line {number}"
        token = fields[0]
        if not (token.isascii() and token.isdigit() and len(token) <= 9):
            raise ConfigError(
                f"{where}: round {_show(token)} is not allowed: rounds are integers "
                ">= 0"
            )
        node = _node(fields[1], n, where)
        factor = _number(fields[2], "factor", where)
        if int(token) < rounds:
            rows.append((int(token), node, factor))
    return np.asarray(rows, np.float32).reshape(-1, 3)


__all__ = [
    "Clock",
    "Speeds",
    "TimeHyper",
    "Work",
    "advance",
    "hparams",
    "node_speeds",
    "read_profile",
    "read_trace",
    "round_work",
    "straggler_factor",
]
