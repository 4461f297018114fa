"""The event-driven reference of the simulated clock, pinned down by hand.

Each case writes out the simulated-time model's arithmetic: R = S + f (F_train + F_pre)
/ g; the copy i -> j at r_ij = min(U_i / k_i, D_j / h_j), or U_i / k_i over a link that
is down; E = R + max m / r; A_ji = R_j + m_j / r_ji + lam; W = max(E, A); S' = W + f
(F_post + F_recv v) / g. Numbers are chosen so every step is a short sum. The random
cases check the events against those six steps evaluated round by round.
"""

import math
import random

import numpy as np
import pytest

from jwins_jax.testing.reference.simclock import (
    ARRIVED,
    READY,
    START,
    NodeSpec,
    RoundSpec,
    StrategyCost,
    simulate,
)

INF = math.inf
NO_COST = StrategyCost(pre=0.0, post=0.0, per_value=0.0)


def _graph(n, edges):
    nbrs = [set() for _ in range(n)]
    for i, j in edges:
        nbrs[i].add(j)
        nbrs[j].add(i)
    return nbrs


def _round(n, edges, m, *, train=10.0, online=None, down=(), v=None, factor=None):
    return RoundSpec(
        neighbors=_graph(n, edges),
        online=[True] * n if online is None else online,
        down={frozenset(link) for link in down},
        message_bytes=[m] * n if np.isscalar(m) else list(m),
        received_values=[0] * n if v is None else list(v),
        factor=[1.0] * n if factor is None else list(factor),
        train_flops=train,
    )


def test_two_node_link():
    # node 0: g 10, U 100, D 100; node 1: g 5, U 50, D 200; one edge, k = h = 1.
    # F_train 20, F_pre 10, F_post 5, F_recv 1; m = (100, 50); v = (12, 25); lam 0.5.
    nodes = [NodeSpec(10.0, 100.0, 100.0), NodeSpec(5.0, 50.0, 200.0)]
    cost = StrategyCost(pre=10.0, post=5.0, per_value=1.0)
    rnd = _round(2, [(0, 1)], [100, 50], train=20.0, v=[12, 25])
    clocks, compute = simulate(nodes, [rnd, rnd], cost, 0.5)
    # round 0: R0 = 30/10 = 3, R1 = 30/5 = 6.
    #   r01 = min(100/1, 200/1) = 100: E0 = 3 + 100/100 = 4, A01 = 4 + 0.5 = 4.5
    #   r10 = min(50/1, 100/1) = 50:   E1 = 6 + 50/50 = 7,   A10 = 7 + 0.5 = 7.5
    #   S0 = max(4, 7.5) + (5 + 12)/10 = 9.2;  S1 = max(7, 4.5) + (5 + 25)/5 = 13
    # round 1: R0 = 12.2, E0 = 13.2, A01 = 13.7; R1 = 19, E1 = 20, A10 = 20.5
    #   S0 = 20.5 + 1.7 = 22.2;  S1 = max(20, 13.7) + 6 = 26
    np.testing.assert_allclose(clocks, [[0, 0], [9.2, 13], [22.2, 26]], rtol=1e-14)
    # compute: node 0 3 + 1.7 = 4.7, node 1 6 + 6 = 12, every round
    np.testing.assert_allclose(compute, [[4.7, 12], [4.7, 12]], rtol=1e-14)
    assert clocks.dtype == compute.dtype == np.float64


def test_three_node_line_with_a_slow_middle_node():
    # line 0 - 1 - 2; g = (10, 2, 10), F_train 10: compute 1 s, 5 s, 1 s.
    # U = D = 100, m = 100, lam 1. k = h = (1, 2, 1).
    #   r01 = r21 = min(100/1, 100/2) = 50 -> 2 s;  r10 = r12 = min(100/2, 100) = 50 -> 2 s
    nodes = [NodeSpec(g, 100.0, 100.0) for g in (10.0, 2.0, 10.0)]
    rnd = _round(3, [(0, 1), (1, 2)], 100)
    clocks, compute = simulate(nodes, [rnd] * 3, NO_COST, 1.0)
    # round 0: R = (1, 5, 1); E = (3, 7, 3); A01 = A21 = 1 + 2 + 1 = 4; A10 = A12 = 8
    #   W = (max(3, 8), max(7, 4, 4), max(3, 8)) = (8, 7, 8)
    # round 1: R = (9, 12, 9); E = (11, 14, 11); A01 = A21 = 12; A10 = A12 = 15
    #   W = (15, 14, 15)
    # round 2: R = (16, 19, 16); E = (18, 21, 18); A01 = A21 = 19; A10 = A12 = 22
    #   W = (22, 21, 22)
    expected = [[0, 0, 0], [8, 7, 8], [15, 14, 15], [22, 21, 22]]
    np.testing.assert_allclose(clocks, expected, rtol=1e-14)
    np.testing.assert_allclose(compute, [[1, 5, 1]] * 3, rtol=1e-14)


def test_a_slow_node_delays_the_far_node_a_round_later():
    # line 0 - 1 - 2 with node 0 slow: g = (1, 10, 10), F_train 10: 10 s, 1 s, 1 s.
    # infinite bandwidth, lam 0.5: A_ji = R_j + 0.5.
    slow = [NodeSpec(1.0, INF, INF)] + [NodeSpec(10.0, INF, INF)] * 2
    fast = [NodeSpec(10.0, INF, INF)] * 3
    rnd = _round(3, [(0, 1), (1, 2)], 100)
    clocks, _ = simulate(slow, [rnd] * 3, NO_COST, 0.5)
    # round 0: R = (10, 1, 1)
    #   W0 = max(10, 1.5) = 10; W1 = max(1, 10.5, 1.5) = 10.5; W2 = max(1, 1.5) = 1.5
    # round 1: R = (20, 11.5, 2.5)
    #   W0 = max(20, 12) = 20; W1 = max(11.5, 20.5, 3) = 20.5; W2 = max(2.5, 12) = 12
    # round 2: R = (30, 21.5, 13)
    #   W0 = max(30, 22) = 30; W1 = max(21.5, 30.5, 13.5) = 30.5; W2 = max(13, 22) = 22
    expected = [[0, 0, 0], [10, 10.5, 1.5], [20, 20.5, 12], [30, 30.5, 22]]
    np.testing.assert_allclose(clocks, expected, rtol=1e-14)
    # all fast: every node computes 1 s and waits 0.5 s for its neighbours' copies
    base, _ = simulate(fast, [rnd] * 3, NO_COST, 0.5)
    np.testing.assert_allclose(base, np.arange(4)[:, None] * [1.5, 1.5, 1.5])
    # node 1 is late from round 0 on, node 2 (two hops away) only from round 1 on
    late = clocks > base + 1e-9
    assert late[1].tolist() == [True, True, False]
    assert late[2].tolist() == [True, True, True]


def test_star_where_the_receivers_downlink_is_the_bottleneck():
    # centre 0, leaves 1, 2, 3; g = 10, F_train 10: R = 1 for all; lam 0, no post work.
    # U = (600, 200, 400, 50), D = (300, 1000, 100, 1000); m = (100, 200, 300, 100).
    # k = h = (3, 1, 1, 1).
    ups, downs = (600.0, 200.0, 400.0, 50.0), (300.0, 1000.0, 100.0, 1000.0)
    nodes = [NodeSpec(10.0, u, d) for u, d in zip(ups, downs)]
    rnd = _round(4, [(0, 1), (0, 2), (0, 3)], [100, 200, 300, 100])
    clocks, _ = simulate(nodes, [rnd], NO_COST, 0.0)
    # centre -> leaves: U0/3 = 200; r01 = min(200, 1000) = 200, r02 = min(200, 100) =
    #   100, r03 = 200: E0 = 1 + max(0.5, 1, 0.5) = 2; A01 = 1.5, A02 = 2, A03 = 1.5
    # leaves -> centre, D0/3 = 100: r10 = min(200, 100) = 100 -> A10 = 1 + 2 = 3;
    #   r20 = min(400, 100) = 100 -> A20 = 1 + 3 = 4; r30 = min(50, 100) = 50 -> A30 = 3
    # W0 = max(2, 3, 4, 3) = 4 (leaf 2's copy, throttled by the centre's downlink)
    # W1 = max(E1 = 3, 1.5) = 3; W2 = max(E2 = 4, 2) = 4; W3 = max(E3 = 3, 1.5) = 3
    np.testing.assert_allclose(clocks[1], [4, 3, 4, 3], rtol=1e-14)
    # the centre's downlink doubled (D0/3 = 200): A10 = 1 + 1 = 2, A20 = 1 + 1.5 = 2.5,
    # A30 = 3 (leaf 3's uplink); W0 = max(2, 2, 2.5, 3) = 3; E1 = 2, E2 = 2.5, E3 = 3
    nodes[0] = NodeSpec(10.0, 600.0, 600.0)
    clocks, _ = simulate(nodes, [rnd], NO_COST, 0.0)
    np.testing.assert_allclose(clocks[1], [3, 2, 2.5, 3], rtol=1e-14)


def test_a_link_that_is_down_is_not_waited_for_but_carries_the_copy_out():
    # triangle 0, 1, 2 with {0, 1} down; g = (10, 1, 10), F_train 10: R = (1, 10, 1).
    # U = (100, 100, 400), D = (100, 100, 400); m = 100; lam 0.25.
    # k = (2, 2, 2) (online neighbours, links up or down); h = (1, 1, 2).
    nodes = [
        NodeSpec(10.0, 100.0, 100.0),
        NodeSpec(1.0, 100.0, 100.0),
        NodeSpec(10.0, 400.0, 400.0),
    ]
    rnd = _round(3, [(0, 1), (0, 2), (1, 2)], 100, down=[(0, 1)])
    clocks, _ = simulate(nodes, [rnd], NO_COST, 0.25)
    # node 0: r01 = U0/2 = 50 (down) -> 2 s; r02 = min(50, 400/2) = 50 -> 2 s; E0 = 3
    #   from 2: r20 = min(400/2, 100/1) = 100 -> A20 = 1 + 1 + 0.25 = 2.25
    #   W0 = max(3, 2.25) = 3 (node 1, slow, is not waited for; without the lost copy
    #   on its uplink, r02 = min(100, 200) = 100 and W0 would be 2.25)
    # node 1: r10 = 50 (down), r12 = min(50, 200) = 50 -> E1 = 10 + 2 = 12
    #   from 2: r21 = min(200, 100/1) = 100 -> A21 = 2.25; W1 = 12
    # node 2: r20 = r21 = 100 -> E2 = 2; A02 = 1 + 2 + 0.25 = 3.25, A12 = 12.25
    #   W2 = 12.25
    np.testing.assert_allclose(clocks[1], [3, 12, 12.25], rtol=1e-14)


def test_an_offline_node_does_nothing_and_is_not_waited_for():
    # triangle, g = 10, F_train 10 (1 s), U = D = 100, m = 100, lam 0, F_post 10.
    # round 0: node 2 offline; round 1: all online.
    nodes = [NodeSpec(10.0, 100.0, 100.0)] * 3
    cost = StrategyCost(pre=0.0, post=10.0, per_value=0.0)
    edges = [(0, 1), (0, 2), (1, 2)]
    rounds = [
        _round(3, edges, 100, online=[True, True, False]),
        _round(3, edges, 100),
    ]
    clocks, compute = simulate(nodes, rounds, cost, 0.0)
    # round 0: k = h = (1, 1, -); r01 = r10 = 100 -> 1 s; R = (1, 1); E = A = 2;
    #   S = (2 + 1, 2 + 1, 0) = (3, 3, 0): node 2's clock stands still
    # round 1: k = h = 2, r = min(50, 50) = 50 -> 2 s; R = (4, 4, 1); E = (6, 6, 3);
    #   A from 0 and 1 = 6, from 2 = 3; W = (6, 6, 6); S = (7, 7, 7)
    np.testing.assert_allclose(clocks, [[0, 0, 0], [3, 3, 0], [7, 7, 7]], rtol=1e-14)
    np.testing.assert_allclose(compute, [[2, 2, 0], [2, 2, 2]], rtol=1e-14)


def test_infinite_bandwidth_and_zero_latency_leave_compute_time_only():
    # equal nodes and equal work: nobody waits, every clock is its compute seconds
    rng = random.Random(5)
    n, T = 6, 4
    nodes = [NodeSpec(2e9, INF, INF)] * n
    cost = StrategyCost(pre=3e6, post=1e6, per_value=10.0)
    rounds = []
    for _ in range(T):
        edges = [(i, j) for i in range(n) for j in range(i) if rng.random() < 0.5]
        rounds.append(
            _round(
                n,
                edges,
                [rng.randrange(8, 4000) for _ in range(n)],
                train=5e8,
                down=[e for e in edges if rng.random() < 0.3],
                v=[1000] * n,
            )
        )
    clocks, compute = simulate(nodes, rounds, cost, 0.0)
    # per round: (5e8 + 3e6 + 1e6 + 10 * 1000) / 2e9 = 0.252005 s
    np.testing.assert_allclose(compute, 0.252005, rtol=1e-14)
    np.testing.assert_allclose(clocks[1:], np.cumsum(compute, axis=0), rtol=1e-14)

    # unequal nodes: a node waits only for its slowest delivering neighbour's compute
    nodes = [NodeSpec(rng.uniform(1e9, 4e9), INF, INF) for _ in range(n)]
    factors = [[rng.choice([1.0, 1.0, 3.0]) for _ in range(n)] for _ in range(T)]
    for rnd, f in zip(rounds, factors):
        rnd.factor = f
        rnd.received_values = [rng.randrange(0, 5000) for _ in range(n)]
    clocks, compute = simulate(nodes, rounds, cost, 0.0)
    s = np.zeros(n)
    for t, rnd in enumerate(rounds):
        ready = [s[i] + rnd.factor[i] * (5e8 + 3e6) / nodes[i].flops for i in range(n)]
        heard = [
            [j for j in rnd.neighbors[i] if frozenset((i, j)) not in rnd.down]
            for i in range(n)
        ]
        post = [
            rnd.factor[i] * (1e6 + 10.0 * rnd.received_values[i]) / nodes[i].flops
            for i in range(n)
        ]
        s = np.array([max([ready[i]] + [ready[j] for j in heard[i]]) for i in range(n)])
        s = s + post
        np.testing.assert_allclose(clocks[t + 1], s, rtol=1e-14)
        np.testing.assert_allclose(compute[t], np.array(ready) - clocks[t] + post)


def test_a_node_several_rounds_ahead_queues_its_copy_at_the_neighbour():
    # nodes 0 (g 10: 1 s a round) and 1 (g 1: 10 s a round); U = D = 100, m = 100,
    # lam 0.5. Rounds 0-2 have no edge, round 3 links them.
    nodes = [NodeSpec(10.0, 100.0, 100.0), NodeSpec(1.0, 100.0, 100.0)]
    rounds = [_round(2, [], 100)] * 3 + [_round(2, [(0, 1)], 100)]
    log = []
    clocks, _ = simulate(nodes, rounds, NO_COST, 0.5, events=log)
    # rounds 0-2 alone: S0 = 1, 2, 3; S1 = 10, 20, 30
    # round 3: R0 = 4, E0 = 4 + 100/100 = 5, A01 = 5.5 (node 1 is still in round 0);
    #   R1 = 40, E1 = 41, A10 = 41.5; W0 = 41.5; W1 = max(41, 5.5) = 41
    expected = [[0, 0], [1, 10], [2, 20], [3, 30], [41.5, 41]]
    np.testing.assert_allclose(clocks, expected, rtol=1e-14)
    # the round-3 copy reached node 1 in its round 0 and waited there
    arrival = next(e for e in log if e.kind == ARRIVED and e.node == 1)
    assert (arrival.time, arrival.round, arrival.peer) == (5.5, 3, 0)
    starts = {e.round: e.time for e in log if e.kind == START and e.node == 1}
    assert starts[0] < arrival.time < starts[1]
    averaged = next(e for e in log if e.kind == READY and e.node == 1 and e.round == 3)
    assert averaged.time == 41.0
    # events are processed in time order
    assert all(a.time <= b.time for a, b in zip(log, log[1:]))


def _random_case(rng: random.Random, n: int, T: int):
    """Irregular time-varying graphs, heterogeneous nodes, per-node message sizes
    (4 values + metadata, as JWINS's alphas make them), churn and failed links."""
    nodes = [
        NodeSpec(
            rng.lognormvariate(21, 0.7),
            rng.choice([INF, rng.lognormvariate(13, 1.0)]),
            rng.lognormvariate(13, 1.0),
        )
        for _ in range(n)
    ]
    p = rng.uniform(0.2, 0.8)
    rounds = []
    for _ in range(T):
        edges = [(i, j) for i in range(n) for j in range(i) if rng.random() < p]
        online = [rng.random() < 0.8 for _ in range(n)]
        down = {frozenset(e) for e in edges if rng.random() < 0.2}
        values = [rng.randrange(0, 20000) for _ in range(n)]
        nbrs = _graph(n, edges)
        received = [
            sum(
                values[j]
                for j in nbrs[i]
                if online[i] and online[j] and frozenset((i, j)) not in down
            )
            for i in range(n)
        ]
        rounds.append(
            RoundSpec(
                neighbors=nbrs,
                online=online,
                down=down,
                message_bytes=[4 * v + rng.choice([0, 16, 48]) for v in values],
                received_values=received,
                factor=[rng.choice([1.0, 1.0, 1.0, 2.5]) for _ in range(n)],
                train_flops=rng.uniform(1e8, 1e9),
            )
        )
    cost = StrategyCost(rng.uniform(0, 1e7), rng.uniform(0, 1e7), rng.uniform(0, 50))
    return nodes, rounds, cost, rng.choice([0.0, rng.uniform(1e-4, 0.1)])


def _model_clock(nodes, rounds, cost, lam):
    """The model's six steps, round by round over all nodes (no events)."""
    n = len(nodes)
    S = [[0.0] * n]
    for rnd in rounds:
        s = S[-1]
        on = rnd.online
        recv = [[j for j in rnd.neighbors[i] if on[i] and on[j]] for i in range(n)]

        def up(i, j, rnd=rnd):
            return frozenset((i, j)) not in rnd.down

        deliv = [[j for j in recv[i] if up(i, j)] for i in range(n)]

        def rate(i, j, recv=recv, deliv=deliv, up=up):
            share = nodes[i].up / len(recv[i])
            return min(share, nodes[j].down / len(deliv[j])) if up(i, j) else share

        f, g, m = rnd.factor, [v.flops for v in nodes], rnd.message_bytes
        R = [s[i] + f[i] * (rnd.train_flops + cost.pre) / g[i] for i in range(n)]
        nxt = []
        for i in range(n):
            if not on[i]:
                nxt.append(s[i])
                continue
            E = R[i] + max([m[i] / rate(i, j) for j in recv[i]], default=0.0)
            A = [R[j] + m[j] / rate(j, i) + lam for j in deliv[i]]
            W = max([E] + A)
            v = rnd.received_values[i]
            nxt.append(W + f[i] * (cost.post + cost.per_value * v) / g[i])
        S.append(nxt)
    return np.array(S)


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_follow_the_model_in_any_tie_order(seed):
    rng = random.Random(seed)
    case = _random_case(rng, rng.randrange(2, 9), rng.randrange(1, 7))
    clocks, _ = simulate(*case)
    np.testing.assert_allclose(clocks, _model_clock(*case), rtol=1e-13, atol=0)
    shuffled, _ = simulate(*case, tie_seed=seed)
    np.testing.assert_array_equal(shuffled, clocks)


def test_ties_do_not_change_the_clocks():
    # integer times everywhere: many events share an instant
    rng = random.Random(11)
    n = 7
    nodes = [NodeSpec(float(rng.choice([1, 2])), 4.0, 8.0) for _ in range(n)]
    rounds = []
    for _ in range(5):
        edges = [(i, j) for i in range(n) for j in range(i) if rng.random() < 0.5]
        online = [rng.random() < 0.85 for _ in range(n)]
        down = [e for e in edges if rng.random() < 0.2]
        rounds.append(_round(n, edges, 8, train=2.0, online=online, down=down))
    base, _ = simulate(nodes, rounds, NO_COST, 1.0)
    for seed in range(5):
        log = []
        clocks, _ = simulate(nodes, rounds, NO_COST, 1.0, tie_seed=seed, events=log)
        np.testing.assert_array_equal(clocks, base)
    times = [e.time for e in log]
    assert len(times) - len(set(times)) > 20  # ties did occur


def test_doubling_every_bandwidth_never_lengthens_a_clock():
    shorter = 0
    for seed in range(10):
        rng = random.Random(100 + seed)
        nodes, rounds, cost, lam = _random_case(rng, rng.randrange(2, 9), 5)
        clocks, compute = simulate(nodes, rounds, cost, lam)
        faster = [NodeSpec(v.flops, 2 * v.up, 2 * v.down) for v in nodes]
        clocks2, compute2 = simulate(faster, rounds, cost, lam)
        assert (clocks2 <= clocks).all(), seed
        np.testing.assert_array_equal(compute2, compute)
        shorter += bool((clocks2 < clocks).any())
    assert shorter >= 8  # the cases do spend time on the network


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda nodes, rnd: setattr(nodes[0], "up", 0.0), r"nodes\[0\]\.up"),
        (lambda nodes, rnd: rnd.neighbors[0].discard(1), "not symmetric"),
        (lambda nodes, rnd: rnd.neighbors[0].add(0), r"neighbors\[0\] holds 0"),
        (lambda nodes, rnd: rnd.online.pop(), r"online has 2 entries"),
        (lambda nodes, rnd: rnd.down.add(frozenset((0, 5))), r"down holds"),
        (lambda nodes, rnd: rnd.factor.__setitem__(1, -1.0), r"factor\[1\]"),
    ],
)
def test_malformed_input_is_named(change, message):
    nodes = [NodeSpec(1.0, 1.0, 1.0) for _ in range(3)]
    rnd = _round(3, [(0, 1), (1, 2)], 8)
    change(nodes, rnd)
    with pytest.raises(ValueError, match=message):
        simulate(nodes, [rnd], NO_COST, 0.0)
