"""Tests of the mixing operators (SPEC 4.0-4.2, 9)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import gossip, topology

M = 37  # vector length per node


def graphs():
    return {
        "paper": topology.read_edges(topology.PAPER_GRAPH),
        "star": topology.star(9),
        "ring": topology.ring(16),
        "torus": topology.torus(16),
        "small_world": topology.small_world(20, 2, 0.5, seed=3),
        "regular": topology.regular(24, 5, seed=1),
    }


GRAPHS = graphs()


def random_x(n: int, seed: int = 0, m: int = M) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (n, m), jnp.float32) * 3.0 + 1.0


def masked_reference(adj, p, mask):
    """Per-node loop the way the original receiver works (SPEC 4.2).

    Each receiver starts every neighbour's vector from its own copy, overwrites the
    entries the neighbour sent, then takes the MH weighted average.
    """
    w = topology.mh_matrix(adj)
    p = np.asarray(p, dtype=np.float64)
    mask = np.asarray(mask)
    out = np.empty_like(p)
    for i in range(adj.shape[0]):
        total = w[i, i] * p[i]
        for j in np.flatnonzero(adj[i]):
            received = p[i].copy()
            received[mask[j]] = p[j][mask[j]]
            total = total + w[i, j] * received
        out[i] = total
    return out


@pytest.mark.parametrize("name", list(GRAPHS))
def test_mix_equals_dense_product(name):
    adj = GRAPHS[name]
    table = topology.neighbor_table(adj)
    x = random_x(adj.shape[0])
    expected = topology.mh_matrix(adj) @ np.asarray(x, dtype=np.float64)
    out = jax.jit(gossip.mix)(table, x)
    assert out.shape == x.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_mix_with_padded_table_and_trailing_axes():
    adj = GRAPHS["star"]
    table = topology.neighbor_table(adj, d_max=10)
    x = random_x(9, seed=1, m=12)
    expected = topology.mh_matrix(adj) @ np.asarray(x, dtype=np.float64)
    np.testing.assert_allclose(gossip.mix(table, x), expected, rtol=1e-5, atol=1e-5)
    cube = x.reshape(9, 3, 4)
    np.testing.assert_allclose(
        gossip.mix(table, cube).reshape(9, 12), expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", ["paper", "star"])
def test_dense_and_bcoo_agree(name):
    adj = GRAPHS[name]
    table = topology.neighbor_table(adj)
    x = random_x(adj.shape[0], seed=2)
    w = gossip.dense_matrix(table)
    np.testing.assert_allclose(w, topology.mh_matrix(adj), atol=1e-7)
    dense = jax.jit(gossip.mix_dense)(w, x)
    sparse_out = jax.jit(gossip.mix_bcoo)(gossip.bcoo_matrix(table), x)
    np.testing.assert_allclose(sparse_out, dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gossip.bcoo_matrix(table).todense(), w, atol=1e-7)
    np.testing.assert_allclose(gossip.mix(table, x), dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["paper", "star", "small_world"])
def test_mix_masked_limits_and_reference(name):
    adj = GRAPHS[name]
    n = adj.shape[0]
    table = topology.neighbor_table(adj)
    p = random_x(n, seed=3)
    masked = jax.jit(gossip.mix_masked)
    ones = jnp.ones((n, M), bool)
    np.testing.assert_allclose(
        masked(table, p, ones), gossip.mix(table, p), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(masked(table, p, jnp.zeros((n, M), bool)), p)
    mask = jax.random.bernoulli(jax.random.key(4), 0.3, (n, M))
    out = masked(table, p, mask)
    assert out.dtype == jnp.float32 and out.shape == (n, M)
    np.testing.assert_allclose(
        out, masked_reference(adj, p, mask), rtol=1e-5, atol=1e-5
    )


def test_mix_masked_uses_the_senders_mask():
    # Path 0 - 1 - 2: node 1 sends entry 0 only; nodes 0 and 2 send nothing.
    adj = np.zeros((3, 3), dtype=bool)
    adj[0, 1] = adj[1, 0] = adj[1, 2] = adj[2, 1] = True
    table = topology.neighbor_table(adj)
    p = jnp.array([[0.0, 0.0], [3.0, 3.0], [6.0, 6.0]])
    mask = jnp.array([[False, False], [True, False], [False, False]])
    out = gossip.mix_masked(table, p, mask)
    # w_01 = w_12 = 1/3: nodes 0 and 2 move a third of the way to node 1 on entry 0.
    np.testing.assert_allclose(out, [[1.0, 0.0], [3.0, 3.0], [5.0, 6.0]], atol=1e-6)


@pytest.mark.parametrize("name", list(GRAPHS))
def test_full_sharing_preserves_network_mean(name):
    adj = GRAPHS[name]
    table = topology.neighbor_table(adj)
    x = random_x(adj.shape[0], seed=5)
    mixed = x
    for _ in range(5):
        mixed = gossip.mix(table, mixed)
    np.testing.assert_allclose(mixed.mean(axis=0), x.mean(axis=0), atol=1e-5)


def test_partial_sharing_need_not_preserve_mean():
    adj = GRAPHS["star"]
    table = topology.neighbor_table(adj)
    x = random_x(9, seed=6)
    mask = jax.random.bernoulli(jax.random.key(7), 0.5, x.shape)
    out = gossip.mix_masked(table, x, mask)
    assert np.abs(np.asarray(out.mean(axis=0) - x.mean(axis=0))).max() > 1e-3


@pytest.mark.parametrize("name", list(GRAPHS))
def test_gossip_contracts_at_the_spectral_rate(name):
    adj = GRAPHS[name]
    w = topology.mh_matrix(adj)
    eig = np.sort(np.abs(np.linalg.eigvalsh(w)))
    assert eig[-1] == pytest.approx(1.0)
    lam = eig[-2]  # second-largest eigenvalue modulus
    assert lam < 1.0  # connected and aperiodic
    table = topology.neighbor_table(adj)
    step = jax.jit(gossip.mix)
    x = random_x(adj.shape[0], seed=8)
    dist0 = float(gossip.consensus_distance(x))
    for t in range(1, 31):
        x = step(table, x)
        dist = float(gossip.consensus_distance(x))
        assert dist <= lam ** (2 * t) * dist0 * (1 + 1e-4) + 1e-9 * dist0, (t, dist)
    assert dist < dist0


def test_consensus_distance():
    x = random_x(6, seed=9)
    xn = np.asarray(x, dtype=np.float64)
    expected = np.mean(np.sum((xn - xn.mean(axis=0)) ** 2, axis=1))
    assert float(gossip.consensus_distance(x)) == pytest.approx(expected, rel=1e-5)
    same = jnp.broadcast_to(x[:1], x.shape)
    assert float(gossip.consensus_distance(same)) == pytest.approx(0.0, abs=1e-10)
    assert gossip.consensus_distance(x).shape == ()


def test_mixing_with_graphs_drawn_inside_scan():
    """A fresh random regular graph per step, drawn inside the scan, mixes like the
    dense W of the same graph."""
    key = jax.random.PRNGKey(2)
    x0 = random_x(12, seed=10)

    def table(t):
        return topology.random_regular_table(jax.random.fold_in(key, t), 12, 3)

    @jax.jit
    def run(x):
        def body(x, t):
            return gossip.mix(table(t), x), gossip.consensus_distance(x)

        return jax.lax.scan(body, x, jnp.arange(7))

    x, dists = run(x0)
    expected = np.asarray(x0, dtype=np.float64)
    graphs = set()
    for t in range(7):
        tab = jax.jit(table)(t)
        graphs.add(np.asarray(tab.idx).tobytes())
        expected = np.asarray(gossip.dense_matrix(tab), np.float64) @ expected
    assert len(graphs) == 7
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x.mean(axis=0), x0.mean(axis=0), atol=1e-5)
    assert dists.shape == (7,) and (np.diff(np.asarray(dists)) <= 1e-6).all()


def test_mix_traces_once_per_shape():
    table = topology.neighbor_table(GRAPHS["ring"])
    traces = []

    @jax.jit
    def step(table, p, mask):
        traces.append(1)
        return gossip.mix_masked(table, p, mask)

    for seed in range(3):
        p = random_x(16, seed=seed)
        mask = jax.random.bernoulli(jax.random.key(seed), 0.5, p.shape)
        step(table, p, mask).block_until_ready()
    order = np.random.default_rng(0).permutation(16)
    relabelled = topology.ring(16)[np.ix_(order, order)]
    other = topology.neighbor_table(relabelled)
    assert not np.array_equal(other.idx, table.idx)
    step(other, p, mask).block_until_ready()  # same shapes, different graph
    assert len(traces) == 1
