"""The simulated clock against its event-driven reference, its properties, its inputs."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import experiment as ex
from jwins_jax import simtime
from jwins_jax.config import Config
from jwins_jax.errors import ConfigError
from jwins_jax.testing.reference import simclock as ref
from jwins_jax.topology import neighbor_table

# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def digits():
    from jwins_jax.data import load_dataset

    return load_dataset("digits")


def _random_graph(rng, n, p):
    """An irregular undirected graph with every node of degree >= 1."""
    adj = np.triu(rng.random((n, n)) < p, 1)
    adj = adj | adj.T
    for i in range(n):
        if not adj[i].any():
            j = (i + 1) % n
            adj[i, j] = adj[j, i] = True
    return adj


def _round_inputs(rng, adj, online, down, sizes_sent, meta):
    """The per-node statistics a round hands the clock, counted here by loops."""
    n = len(adj)
    receivers = np.zeros(n, np.int32)
    delivered = np.zeros(n, np.int32)
    received = np.zeros(n, np.int32)
    for i in range(n):
        if not online[i]:
            continue
        for j in np.flatnonzero(adj[i]):
            if not online[j]:
                continue
            receivers[i] += 1
            if frozenset((i, int(j))) not in down:
                delivered[i] += 1
                received[i] += sizes_sent[j]
    sent = np.where(online, sizes_sent, 0).astype(np.int32)
    meta = np.where(online, meta, 0).astype(np.int32)
    return {
        "sent": sent,
        "meta_bytes": meta,
        "receivers": receivers,
        "delivered": delivered,
        "received": received,
        "online": np.asarray(online),
    }


def _link_up(table, down):
    idx = np.asarray(table.idx)
    up = np.ones(idx.shape, bool)
    for i in range(idx.shape[0]):
        for c, j in enumerate(idx[i]):
            if frozenset((i, int(j))) in down:
                up[i, c] = False
    return jnp.asarray(up)


def _speeds(nodes):
    return simtime.Speeds(
        flops=jnp.asarray([s.flops for s in nodes], jnp.float32),
        up=jnp.asarray([s.up for s in nodes], jnp.float32),
        down=jnp.asarray([s.down for s in nodes], jnp.float32),
    )


def _run_vectorized(nodes, rounds, stats, tables, ups, work, latency):
    """Every round through ``simtime.advance``; absolute clocks as the host keeps them."""
    n = len(nodes)
    step = jax.jit(simtime.advance, static_argnums=2)
    clock = jnp.zeros((n,), jnp.float32)
    host = simtime.Clock(n)
    out = [np.zeros(n)]
    computes = []
    for t, spec in enumerate(rounds):
        clock, shift, compute = step(
            clock,
            _speeds(nodes),
            work,
            jnp.float32(latency),
            tables[t],
            {k: jnp.asarray(v) for k, v in stats[t].items()},
            jnp.asarray(spec.factor, jnp.float32),
            ups[t],
        )
        offsets = host.add(
            {
                "clock_shift": np.asarray(shift)[None],
                "compute_s": np.asarray(compute)[None],
                "clock": np.asarray(clock)[None],
            }
        )
        out.append(host.absolute(offsets))
        computes.append(np.asarray(compute))
    return np.stack(out), np.stack(computes)


def _scenario(seed, n=12, rounds=8, churn=0.15, link_failure=0.2):
    """Random rounds: irregular graphs, heterogeneous nodes, JWINS-like message sizes
    (per-node alphas, full shares), churn, failed links and stragglers."""
    rng = np.random.default_rng(seed)
    nodes = [
        ref.NodeSpec(
            flops=float(rng.uniform(2e9, 2e10)),
            up=float(rng.uniform(1e6, 5e7)),
            down=float(rng.uniform(1e6, 5e7)),
        )
        for _ in range(n)
    ]
    work = simtime.Work(train=3e8, pre=4e6, post=2e6, per_value=3.0)
    alphas = np.array([0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0])
    m_coef = 90_000
    specs, stats, tables, ups = [], [], [], []
    d_max = n - 1
    for _ in range(rounds):
        adj = _random_graph(rng, n, 0.3)
        online = rng.random(n) >= churn
        online[rng.integers(n)] = True
        down = {
            frozenset((i, int(j)))
            for i in range(n)
            for j in np.flatnonzero(adj[i])
            if i < j and rng.random() < link_failure
        }
        a = alphas[rng.integers(len(alphas), size=n)]
        full = a >= 0.5
        sent = np.where(full, m_coef, np.round(a * m_coef)).astype(np.int64)
        meta = np.where(full, 0, rng.integers(100, 9000, size=n))
        st = _round_inputs(rng, adj, online, down, sent, meta)
        factor = np.where(rng.random(n) < 0.2, rng.uniform(1.5, 4.0, n), 1.0)
        specs.append(
            ref.RoundSpec(
                neighbors=[set(map(int, np.flatnonzero(r))) for r in adj],
                online=[bool(v) for v in online],
                down=down,
                message_bytes=[int(4 * s + m) for s, m in zip(sent, meta)],
                received_values=[int(v) for v in st["received"]],
                factor=[float(f) for f in factor],
                train_flops=work.train,
            )
        )
        stats.append(st)
        table = neighbor_table(adj, d_max=d_max)
        tables.append(table)
        ups.append(_link_up(table, down))
    cost = ref.StrategyCost(pre=work.pre, post=work.post, per_value=work.per_value)
    return nodes, specs, stats, tables, ups, work, cost


# ------------------------------------------------------------ the reference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clock_equals_the_event_driven_reference(seed):
    """Irregular graphs, heterogeneous nodes, per-node message sizes, churn, failed
    links and stragglers: every node's clock after every round, and its compute."""
    nodes, specs, stats, tables, ups, work, cost = _scenario(seed)
    latency = 0.003
    want, want_compute = ref.simulate(nodes, specs, cost, latency)
    got, got_compute = _run_vectorized(nodes, specs, stats, tables, ups, work, latency)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(got_compute, want_compute, rtol=2e-6, atol=1e-9)
    assert want[-1].max() > 1.0  # the scenario is not trivially small


def test_clock_equals_the_reference_without_faults():
    nodes, specs, stats, tables, _, work, cost = _scenario(7, churn=0, link_failure=0)
    want, _ = ref.simulate(nodes, specs, cost, 0.0)
    got, _ = _run_vectorized(nodes, specs, stats, tables, [None] * 8, work, 0.0)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


# ------------------------------------------------------------- properties


def test_infinite_bandwidth_and_zero_latency_leave_compute_only():
    nodes, specs, stats, tables, ups, work, _ = _scenario(3)
    fast = [ref.NodeSpec(s.flops, math.inf, math.inf) for s in nodes]
    clocks, compute = _run_vectorized(fast, specs, stats, tables, ups, work, 0.0)
    # each online node waits for its slowest live neighbour's compute, never longer
    flops = np.array([s.flops for s in nodes])
    s = np.zeros(len(nodes))
    for t, spec in enumerate(specs):
        f = np.asarray(spec.factor)
        ready = s + f * (work.train + work.pre) / flops
        new = s.copy()
        for i in range(len(nodes)):
            if not spec.online[i]:
                continue
            waits = [
                ready[j]
                for j in spec.neighbors[i]
                if spec.online[j] and frozenset((i, j)) not in spec.down
            ]
            post = f[i] * (work.post + work.per_value * stats[t]["received"][i])
            new[i] = max([ready[i]] + waits) + post / flops[i]
        s = new
        np.testing.assert_allclose(clocks[t + 1], s, rtol=2e-6)


def test_doubling_every_bandwidth_never_lengthens_a_round():
    for seed in range(4):
        nodes, specs, stats, tables, ups, work, _ = _scenario(10 + seed)
        fast = [ref.NodeSpec(s.flops, 2 * s.up, 2 * s.down) for s in nodes]
        slow_clock, _ = _run_vectorized(nodes, specs, stats, tables, ups, work, 1e-3)
        fast_clock, _ = _run_vectorized(fast, specs, stats, tables, ups, work, 1e-3)
        assert np.all(fast_clock <= slow_clock * (1 + 1e-6) + 1e-6)
        assert np.any(fast_clock[-1] < slow_clock[-1] * (1 - 1e-3))


def test_a_slow_node_delays_its_neighbours_then_theirs(tmp_path, digits):
    """On a ring, node 0 ten times slower in round 0: its neighbours wait for it in
    round 0 and start round 1 late, the nodes two hops away start round 2 late, and
    so on around the ring."""
    slow, even = tmp_path / "slow.csv", tmp_path / "even.csv"
    slow.write_text("node,compute,up,down\n0,0.1,100,100\n")
    even.write_text("node,compute,up,down\n0,1,100,100\n")
    base = Config(
        nodes=8,
        topology="ring",
        rounds=4,
        eval_every=4,
        local_steps=1,
        test_subset=16,
        node_gflops=1.0,
        latency_ms=0.0,
    )
    clocks = {}
    step = None
    for name, path in (("slow", slow), ("even", even)):
        c = base.replace(node_profile=str(path)).validate()
        exp, inputs, hp = ex.build(c, dataset=digits)
        step = step or jax.jit(exp.round_step)  # one program: the profile is an input
        state = exp.init(jax.random.PRNGKey(0), hp)
        base_s, rows = 0.0, []
        for _ in range(4):
            state, m = step(state, hp, inputs)
            base_s += float(m["clock_shift"])
            rows.append(base_s + np.asarray(m["clock"], np.float64))
        clocks[name] = np.stack(rows)
    # node 0's slowness lasts every round; the delay's front moves one hop a round
    late = clocks["slow"] - clocks["even"] > 1e-6
    hops = np.array([0, 1, 2, 3, 4, 3, 2, 1])  # distance from node 0 on the ring
    for t in range(4):
        np.testing.assert_array_equal(late[t], hops <= t + 1, err_msg=f"round {t}")


def test_precision_of_long_runs():
    """10**6 simulated seconds: 1 ms steps and 1 ms differences between nodes are
    kept exactly (to a microsecond) on the host's float64 clock."""
    n = 4
    adj = np.roll(np.eye(n, dtype=bool), 1, 1)
    adj = adj | adj.T
    table = neighbor_table(adj)
    stats = {
        "sent": jnp.zeros(n, jnp.int32),
        "meta_bytes": jnp.zeros(n, jnp.int32),
        "receivers": jnp.full(n, 2, jnp.int32),
        "delivered": jnp.full(n, 2, jnp.int32),
        "received": jnp.zeros(n, jnp.int32),
        "online": jnp.ones(n, bool),
    }
    inf = jnp.full(n, jnp.inf, jnp.float32)

    @functools.partial(jax.jit, static_argnums=3)
    def rounds(clock, flops, train, count):
        work = simtime.Work(train=1.0)

        def body(carry, _):
            clock = carry
            factor = train * jnp.ones(n, jnp.float32)
            clock, shift, _ = simtime.advance(
                clock,
                simtime.Speeds(flops=flops, up=inf, down=inf),
                work,
                jnp.float32(0.0),
                table,
                stats,
                factor,
            )
            return clock, shift

        return jax.lax.scan(body, clock, None, length=count)

    host = simtime.Clock(n)
    clock = jnp.zeros(n, jnp.float32)
    ones = jnp.ones(n, jnp.float32)
    # 10 rounds of 10**5 s each
    clock, shifts = rounds(clock, ones, jnp.float32(1e5), 10)
    host.base += float(np.asarray(shifts, np.float64).sum())
    assert host.absolute(np.asarray(clock))[0] == pytest.approx(1e6, rel=1e-6)
    start = host.absolute(np.asarray(clock)).copy()
    # then 1 ms rounds: each adds exactly 1 ms
    clock, shifts = rounds(clock, ones, jnp.float32(1e-3), 1000)
    host.base += float(np.asarray(shifts, np.float64).sum())
    np.testing.assert_allclose(host.absolute(np.asarray(clock)) - start, 1.0, atol=1e-6)
    # node 0 1 ms slower than the others for one round: a 1 ms lead survives at 1e6 s
    slow = ones.at[0].set(0.5)
    clock, shifts = rounds(clock, slow, jnp.float32(1e-3), 1)
    host.base += float(np.asarray(shifts, np.float64).sum())
    now = host.absolute(np.asarray(clock))
    assert now[0] - now[2] == pytest.approx(1e-3, abs=1e-6)  # node 2: two hops away


# ------------------------------------------------------------------ files


def test_profile_and_trace_files(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("node,compute,up,down\n# a comment\n3, 2.5, 10, 20\n0,1,1,1\n")
    prof = simtime.read_profile(p, 4)
    np.testing.assert_array_equal(prof[3], [2.5, 10, 20])
    assert np.isnan(prof[1]).all() and np.isnan(prof[2]).all()
    t = tmp_path / "t.csv"
    t.write_text("round,node,factor\n2,1,3.0\n2,1,2\n5,0,4\n99,0,2\n")
    rows = simtime.read_trace(t, 4, rounds=10)
    f = simtime.straggler_factor(jnp.asarray(rows[:3]), jnp.int32(2), 4)
    np.testing.assert_array_equal(np.asarray(f), [1, 6, 1, 1])
    assert rows.shape == (3, 3)  # round 99 is past the run


def test_profile_sets_speeds_and_spread_has_mean_one(tmp_path):
    prof = np.full((4000, 3), np.nan, np.float32)
    prof[0] = [1.0, 8.0, 16.0]
    hp = simtime.hparams(10.0, 100.0, 50.0, 1.0)
    sp = simtime.node_speeds(hp, 4000, jnp.asarray(prof))
    assert float(sp.flops[0]) == pytest.approx(1e9)
    assert float(sp.up[0]) == pytest.approx(1e6)
    assert float(sp.down[1]) == pytest.approx(50 * 1e6 / 8)
    spread = simtime.node_speeds(hp.replace(node_spread=jnp.float32(0.5)), 4000)
    ratio = np.asarray(spread.flops) / 1e10
    assert np.mean(ratio) == pytest.approx(1.0, rel=0.05)
    assert np.std(np.log(ratio)) == pytest.approx(0.5, rel=0.05)
    other = simtime.node_speeds(
        hp.replace(node_spread=jnp.float32(0.5), spread_seed=jnp.uint32(1)), 4000
    )
    assert not np.allclose(np.asarray(other.up), np.asarray(spread.up))


BAD_FILES = [
    ("profile", "node,compute,up\n", "expected 4 comma-separated fields"),
    ("profile", "0,1,1,1\n0,2,2,2\n", "line 2: node 0 is listed twice"),
    ("profile", "9,1,1,1\n", "node '9' is not allowed"),
    ("profile", "x,1,1,1\n", "node 'x' is not allowed"),
    ("profile", "1,0,1,1\n", "compute (GFLOP/s) '0' is not allowed"),
    ("profile", "1,1,-3,1\n", "up (Mbit/s) '-3' is not allowed"),
    ("profile", "1,1,1,nan\n", "down (Mbit/s) 'nan' is not allowed"),
    ("trace", "1,2\n", "expected 3 comma-separated fields"),
    ("trace", "-1,0,2\n", "round '-1' is not allowed"),
    ("trace", "1,0,0\n", "factor '0' is not allowed"),
    ("trace", "1,7,2\n", "node '7' is not allowed"),
]


@pytest.mark.parametrize("kind,text,message", BAD_FILES)
def test_bad_files_name_the_line(tmp_path, kind, text, message):
    path = tmp_path / "f.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match="line") as err:
        if kind == "profile":
            simtime.read_profile(path, 4)
        else:
            simtime.read_trace(path, 4, 10)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "field,value",
    [
        ("bandwidth_mbps", 0.0),
        ("bandwidth_mbps", -5.0),
        ("downlink_mbps", 0.0),
        ("node_gflops", -1.0),
        ("latency_ms", -0.5),
        ("node_spread", -0.1),
    ],
)
def test_bad_time_options(field, value):
    with pytest.raises(ConfigError, match=field):
        Config(**{field: value}).validate()


def test_downlink_follows_the_uplink():
    c = Config(bandwidth_mbps=7.0).validate()
    assert c.downlink_mbps == 7.0
    assert c.replace(bandwidth_mbps=9.0).validate().downlink_mbps == 9.0
    assert c.replace(lr=0.1).validate().downlink_mbps == 7.0
    own = Config(bandwidth_mbps=7.0, downlink_mbps=3.0).validate()
    assert own.downlink_mbps == 3.0
    assert own.replace(bandwidth_mbps=9.0).validate().downlink_mbps == 3.0
