"""Event-driven reference of the simulated clock: a discrete-event loop over one heap.

An independent oracle for the vectorized per-node clock. It imports only the standard
library and NumPy and shares no code with the package. It runs the network the way a
deployment of the original system does (SPEC 1.3): every node is an object with its
own clock, round counter and inbox, and moves through its rounds on its own; the only
coupling is the messages. Events, processed in time order from a heap:

* ``start``: a node begins round t at its clock ``S_i(t)``. An offline node does
  nothing that round and begins round t + 1 at the same instant.
* ``computed``: its local training and the strategy's pre-step are done,
  ``R_i = S_i(t) + f_i(t) (F_train + F_pre) / g_i``; one copy of its message starts to
  each of its ``k_i`` receivers (its online neighbours, over links up or down).
* ``sent``: the copy i -> j has left i's uplink, ``m_i / r_ij`` seconds after ``R_i``,
  with ``r_ij = min(U_i / k_i, D_j / h_j)`` over a link that is up and ``U_i / k_i``
  over a link that is down. Over a link that is up it arrives ``latency`` later; over a
  link that is down it is lost.
* ``arrived``: the copy reaches j. A copy of a round j has not reached yet waits in j's
  inbox until j gets there (SPEC 1.3 step 7: early messages of later rounds are queued).
* ``ready``: the node has all its copies out and every copy of the round it waits for
  (from its ``h_i`` online neighbours over links that are up) in; that instant is
  ``W_i``. It averages for ``f_i(t) (F_post + F_recv v_i) / g_i`` seconds and then
  starts round t + 1.

Events at the same instant pop in the order they were scheduled, or in an order
shuffled by ``tie_seed``; the clocks do not depend on it, because a node acts on a set
of events only once the whole set is in.

The shares are fixed for the whole round, as the model prescribes: a copy keeps its
rate ``r_ij`` from start to end, whether or not the other copies sharing its uplink or
downlink are still under way.

Readings: a pair listed in ``down`` that is not an edge of the round's graph changes
nothing; ``received_values`` of an offline node is ignored; infinite rates (``inf``
bandwidth) make sending take no time, infinite FLOP/s make compute take none.
"""

from __future__ import annotations

import heapq
import itertools
import math
import numbers
import random
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

START = "start"
COMPUTED = "computed"
SENT = "sent"
ARRIVED = "arrived"
READY = "ready"


@dataclass
class NodeSpec:
    """One node's hardware, in base units (``inf`` allowed for any of them).

    Attributes:
        flops: compute speed ``g_i`` in FLOP/s.
        up: uplink bandwidth ``U_i`` in bytes/s.
        down: downlink bandwidth ``D_i`` in bytes/s.
    """

    flops: float
    up: float
    down: float


@dataclass
class RoundSpec:
    """The inputs of one round, for all n nodes.

    Attributes:
        neighbors: the round's undirected graph before faults; ``neighbors[i]`` is the
            set of i's neighbours (symmetric, no self-loops).
        online: whether each node takes part in the round (churn).
        down: links that fail this round, both ways, as ``frozenset({i, j})``.
        message_bytes: ``m_i``, the bytes of one copy of node i's message.
        received_values: ``v_i``, the values node i receives in the round (the sum of
            the values of the copies that reach it); an input, not derived.
        factor: the straggler factor ``f_i(t)`` multiplying node i's compute time.
        train_flops: ``F_train``, the FLOPs of one round of local training.
    """

    neighbors: list[set[int]]
    online: list[bool]
    down: set[frozenset[int]]
    message_bytes: list[int]
    received_values: list[int]
    factor: list[float]
    train_flops: float


@dataclass
class StrategyCost:
    """The strategy's compute per round, in FLOPs.

    Attributes:
        pre: ``F_pre``, work before sending (transform, scoring, selection).
        post: ``F_post``, fixed work after receiving (inverse transform, state update).
        per_value: ``F_recv``, work per received value (the fill and weighted add).
    """

    pre: float
    post: float
    per_value: float


class Event(NamedTuple):
    """One processed event, as recorded in ``simulate(..., events=[])``.

    ``node`` is the node the event happens at (the sender for ``sent``, the receiver
    for ``arrived``); ``peer`` is the other end of the copy, -1 for node events.
    """

    time: float
    kind: str
    node: int
    round: int
    peer: int


class _Round:
    """The network's view of one round: who sends to whom, and at which rate."""

    def __init__(self, spec: RoundSpec, nodes: list[NodeSpec]):
        n = len(nodes)
        self.spec = spec
        self.hardware = nodes
        self.receivers = [
            sorted(j for j in spec.neighbors[i] if spec.online[j])
            if spec.online[i]
            else []
            for i in range(n)
        ]
        self.senders = [
            {j for j in self.receivers[i] if self.link_up(i, j)} for i in range(n)
        ]

    def link_up(self, i: int, j: int) -> bool:
        return frozenset((i, j)) not in self.spec.down

    def rate(self, i: int, j: int) -> float:
        """The fixed rate of the copy i -> j in bytes/s."""
        share = self.hardware[i].up / len(self.receivers[i])
        if not self.link_up(i, j):
            return share
        return min(share, self.hardware[j].down / len(self.senders[j]))


class _Node:
    """A node's own state: where it is in its rounds, its clock, its inbox."""

    def __init__(self, uid: int, hardware: NodeSpec, rounds: int):
        self.uid = uid
        self.hardware = hardware
        self.round = 0
        self.clocks: list[float] = []  # S_i(0), S_i(1), ...
        self.compute = np.zeros(rounds)  # seconds of compute per round
        self.inbox: dict[int, dict[int, float]] = {}  # round -> sender -> arrival time
        self.outgoing = 0  # copies of the current round still leaving the uplink
        self.waiting = False  # has started its copies and not yet averaged

    def seconds(self, flops: float, factor: float) -> float:
        return factor * flops / self.hardware.flops if flops else 0.0


class _Simulation:
    def __init__(self, nodes, rounds, cost, latency, tie_seed, events):
        self.rounds = [_Round(spec, nodes) for spec in rounds]
        self.nodes = [_Node(i, hw, len(rounds)) for i, hw in enumerate(nodes)]
        self.cost = cost
        self.latency = latency
        self.heap: list = []
        self.order = itertools.count()
        self.ties = random.Random(tie_seed) if tie_seed is not None else None
        self.events = events
        self.handlers = {
            START: self.start,
            COMPUTED: self.computed,
            SENT: self.sent,
            ARRIVED: self.arrived,
            READY: self.ready,
        }

    def schedule(self, time: float, kind: str, node: int, rnd: int, peer: int = -1):
        tie = self.ties.random() if self.ties else 0.0
        event = Event(time, kind, node, rnd, peer)
        heapq.heappush(self.heap, (time, tie, next(self.order), event))

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        for node in self.nodes:
            self.schedule(0.0, START, node.uid, 0)
        while self.heap:
            event = heapq.heappop(self.heap)[-1]
            if self.events is not None:
                self.events.append(event)
            self.handlers[event.kind](event)
        stuck = [v.uid for v in self.nodes if len(v.clocks) != len(self.rounds) + 1]
        if stuck:
            raise RuntimeError(f"nodes {stuck} never finished their rounds")
        clocks = np.array([v.clocks for v in self.nodes], dtype=np.float64).T
        compute = np.array([v.compute for v in self.nodes], dtype=np.float64).T
        return clocks, compute.reshape(len(self.rounds), len(self.nodes))

    def start(self, ev: Event):
        node = self.nodes[ev.node]
        assert node.round == ev.round and len(node.clocks) == ev.round
        node.clocks.append(ev.time)
        if ev.round == len(self.rounds):
            return
        spec = self.rounds[ev.round].spec
        if not spec.online[node.uid]:
            assert not node.inbox.get(ev.round), "a copy reached an offline node"
            node.round += 1
            self.schedule(ev.time, START, node.uid, node.round)
            return
        busy = node.seconds(spec.train_flops + self.cost.pre, spec.factor[node.uid])
        node.compute[ev.round] = busy
        self.schedule(ev.time + busy, COMPUTED, node.uid, ev.round)

    def computed(self, ev: Event):
        node, view = self.nodes[ev.node], self.rounds[ev.round]
        size = view.spec.message_bytes[node.uid]
        node.outgoing = len(view.receivers[node.uid])
        node.waiting = True
        for j in view.receivers[node.uid]:
            self.schedule(
                ev.time + size / view.rate(node.uid, j), SENT, node.uid, ev.round, j
            )
        self.check(node, ev.time)

    def sent(self, ev: Event):
        node, view = self.nodes[ev.node], self.rounds[ev.round]
        assert node.round == ev.round and node.outgoing > 0
        node.outgoing -= 1
        if view.link_up(ev.node, ev.peer):
            self.schedule(ev.time + self.latency, ARRIVED, ev.peer, ev.round, ev.node)
        self.check(node, ev.time)

    def arrived(self, ev: Event):
        node = self.nodes[ev.node]
        assert ev.round >= node.round, "a copy arrived after its round was averaged"
        assert ev.peer in self.rounds[ev.round].senders[ev.node]
        node.inbox.setdefault(ev.round, {})[ev.peer] = ev.time
        if ev.round == node.round:
            self.check(node, ev.time)

    def check(self, node: _Node, time: float):
        """Schedules the averaging once the copies are out and everything is in."""
        if not node.waiting or node.outgoing:
            return
        expected = self.rounds[node.round].senders[node.uid]
        if len(node.inbox.get(node.round, {})) == len(expected):
            node.waiting = False
            self.schedule(time, READY, node.uid, node.round)

    def ready(self, ev: Event):
        node, spec = self.nodes[ev.node], self.rounds[ev.round].spec
        got = node.inbox.pop(ev.round, {})
        assert set(got) == self.rounds[ev.round].senders[node.uid]
        assert all(arrival <= ev.time for arrival in got.values())
        flops = self.cost.post + self.cost.per_value * spec.received_values[node.uid]
        busy = node.seconds(flops, spec.factor[node.uid])
        node.compute[ev.round] += busy
        node.round += 1
        self.schedule(ev.time + busy, START, node.uid, node.round)


def _check_inputs(nodes, rounds, cost, latency):
    def positive(value, what):
        if not (
            isinstance(value, numbers.Real) and value > 0 and not math.isnan(value)
        ):
            raise ValueError(
                f"{what} must be a positive number (inf allowed), got {value!r}"
            )

    def finite(value, what):
        if not (isinstance(value, numbers.Real) and 0 <= value < math.inf):
            raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")

    n = len(nodes)
    if n < 1:
        raise ValueError("nodes: at least one node is needed")
    for i, hw in enumerate(nodes):
        for name in ("flops", "up", "down"):
            positive(getattr(hw, name), f"nodes[{i}].{name}")
    for name in ("pre", "post", "per_value"):
        finite(getattr(cost, name), f"cost.{name}")
    finite(latency, "latency")
    for t, spec in enumerate(rounds):
        for name in (
            "neighbors",
            "online",
            "message_bytes",
            "received_values",
            "factor",
        ):
            if len(getattr(spec, name)) != n:
                raise ValueError(
                    f"rounds[{t}].{name} has {len(getattr(spec, name))} entries, "
                    f"expected one per node ({n})"
                )
        finite(spec.train_flops, f"rounds[{t}].train_flops")
        for i in range(n):
            for j in spec.neighbors[i]:
                if not (isinstance(j, numbers.Integral) and 0 <= j < n and j != i):
                    raise ValueError(
                        f"rounds[{t}].neighbors[{i}] holds {j!r}; neighbours are "
                        f"other nodes' ids in [0, {n})"
                    )
                if i not in spec.neighbors[j]:
                    raise ValueError(
                        f"rounds[{t}].neighbors is not symmetric: {j} is a neighbour "
                        f"of {i} but not {i} of {j}"
                    )
            finite(spec.message_bytes[i], f"rounds[{t}].message_bytes[{i}]")
            finite(spec.received_values[i], f"rounds[{t}].received_values[{i}]")
            finite(spec.factor[i], f"rounds[{t}].factor[{i}]")
        for link in spec.down:
            ends = sorted(link)
            if len(ends) != 2 or not all(0 <= e < n for e in ends):
                raise ValueError(
                    f"rounds[{t}].down holds {set(link)!r}; a link is a pair of "
                    f"distinct node ids in [0, {n})"
                )


def simulate(
    nodes: list[NodeSpec],
    rounds: list[RoundSpec],
    cost: StrategyCost,
    latency: float,
    *,
    tie_seed: int | None = None,
    events: list[Event] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs the rounds as a discrete-event simulation and returns the per-node clocks.

    Args:
        nodes: one :class:`NodeSpec` per node.
        rounds: one :class:`RoundSpec` per round, in order.
        cost: the strategy's compute per round.
        latency: the one-way latency of every link, in seconds.
        tie_seed: None pops events of the same instant in the order they were
            scheduled; an int shuffles that order with ``random.Random(tie_seed)``
            (the clocks are the same either way).
        events: if a list, every processed :class:`Event` is appended to it in the
            order it was processed.

    Returns:
        The clocks ``S(t)`` for t = 0..T as a (T + 1, n) float64 array (row 0 is all
        zeros), and the compute seconds of each round (training and pre-step plus
        averaging; 0 for an offline node) as a (T, n) float64 array.

    Raises:
        ValueError: an input is malformed (the message names it).
    """
    _check_inputs(nodes, rounds, cost, latency)
    sim = _Simulation(nodes, rounds, cost, float(latency), tie_seed, events)
    return sim.run()
