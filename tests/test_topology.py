"""Tests of graphs, Metropolis-Hastings weights and neighbour tables (SPEC 4.0, 6)."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import resources, topology
from jwins_jax.errors import ConfigError
from jwins_jax.gossip import dense_matrix

SIXTEEN = resources.path(resources.SMALL_GRAPH_NAME)


def assert_valid_mh(w: np.ndarray, adj: np.ndarray, atol: float = 1e-12) -> None:
    """W is symmetric, doubly stochastic, non-negative and supported on adj + I."""
    n = adj.shape[0]
    assert w.shape == (n, n)
    np.testing.assert_allclose(w, w.T, atol=atol)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=atol)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=atol)
    assert (w >= -atol).all()
    off = w * ~np.eye(n, dtype=bool)
    assert ((off > 0) == adj).all()


def edge_set(adj: np.ndarray) -> set[tuple[int, int]]:
    rows, cols = np.nonzero(np.triu(adj))
    return set(zip(rows.tolist(), cols.tolist()))


def table_to_dense(table) -> np.ndarray:
    """float64 W rebuilt from a table with a plain loop."""
    idx, weight = np.asarray(table.idx), np.asarray(table.weight, dtype=np.float64)
    n, width = idx.shape
    w = np.diag(np.asarray(table.self_weight, dtype=np.float64))
    for i in range(n):
        for c in range(width):
            w[i, idx[i, c]] += weight[i, c]
    return w


def contains_ring(adj: np.ndarray) -> bool:
    n = adj.shape[0]
    return bool(adj[np.arange(n), (np.arange(n) + 1) % n].all())


# ------------------------------------------------------------------- paper graphs


def test_paper_graph_matches_spec():
    adj = topology.read_edges(topology.PAPER_GRAPH)
    assert adj.shape == (96, 96)
    assert adj.dtype == bool
    assert (adj == adj.T).all() and not adj.diagonal().any()
    assert len(edge_set(adj)) == 190
    deg = adj.sum(axis=1)
    assert np.flatnonzero(deg == 3).tolist() == [15, 16, 42, 43]
    assert (np.delete(deg, [15, 16, 42, 43]) == 4).all()
    assert contains_ring(adj)
    assert topology.is_connected(adj)
    # A few rows of SPEC Appendix A.
    assert np.flatnonzero(adj[0]).tolist() == [1, 24, 26, 95]
    assert np.flatnonzero(adj[15]).tolist() == [14, 16, 26]
    assert np.flatnonzero(adj[42]).tolist() == [5, 41, 43]
    assert np.flatnonzero(adj[95]).tolist() == [0, 18, 51, 94]


def test_paper_graph_mh_weights():
    adj = topology.make_graph("edges", 96)  # edges_file defaults to the paper graph
    w = topology.mh_matrix(adj)
    assert w.dtype == np.float64
    assert_valid_mh(w, adj)
    quarter = {(15, 16), (42, 43)}
    for u, v in edge_set(adj):
        assert w[u, v] == pytest.approx(0.25 if (u, v) in quarter else 0.2)
    # Self weights: 1 - 4/5 for degree-4 nodes away from the special pairs.
    assert w[0, 0] == pytest.approx(0.2)
    assert w[15, 15] == pytest.approx(1 - 0.25 - 0.2 - 0.2)


def test_sixteen_node_file():
    adj = topology.read_edges(SIXTEEN, n=16)
    assert (adj.sum(axis=1) == 3).all()
    assert len(edge_set(adj)) == 24
    assert_valid_mh(topology.mh_matrix(adj), adj)
    np.testing.assert_allclose(topology.mh_matrix(adj)[adj], 0.25)


# --------------------------------------------------------------------- generators


GENERATED = [
    ("ring", 2, {}),
    ("ring", 7, {}),
    ("complete", 5, {}),
    ("star", 2, {}),
    ("star", 9, {}),
    ("torus", 9, {}),
    ("torus", 24, {}),
    ("regular", 16, {"degree": 3, "seed": 0}),
    ("regular", 16, {"degree": 3, "seed": 5}),
    ("regular", 96, {"degree": 5, "seed": 97}),
    ("regular", 30, {"degree": 2, "seed": 1}),
    ("regular", 12, {"degree": 9, "seed": 2}),
    ("regular", 10, {"degree": 1, "seed": 3}),
    ("small_world", 20, {"degree": 4, "seed": 0}),
    ("small_world", 50, {"degree": 6, "seed": 4, "beta": 0.5}),
    ("edges", 16, {"edges_file": SIXTEEN}),
]


@pytest.mark.parametrize("name, n, kwargs", GENERATED)
def test_generated_graphs_give_valid_mh_matrices(name, n, kwargs):
    adj = topology.make_graph(name, n, **kwargs)
    assert adj.shape == (n, n) and adj.dtype == bool
    assert (adj == adj.T).all() and not adj.diagonal().any()
    assert topology.is_connected(adj)
    assert_valid_mh(topology.mh_matrix(adj), adj)


def test_simple_generators_structure():
    assert (topology.ring(7).sum(axis=1) == 2).all()
    assert len(edge_set(topology.ring(2))) == 1
    assert (topology.complete(6).sum(axis=1) == 5).all()
    st = topology.star(6)
    assert st[0].sum() == 5 and (st[1:].sum(axis=1) == 1).all() and st[1:, 0].all()
    tor = topology.torus(12)  # 3 x 4 grid
    assert (tor.sum(axis=1) == 4).all()
    assert np.flatnonzero(tor[0]).tolist() == [1, 3, 4, 8]
    assert np.flatnonzero(tor[5]).tolist() == [1, 4, 6, 9]


def test_mh_matrix_by_hand_on_a_star():
    w = topology.mh_matrix(topology.star(4))  # hub degree 3, leaves degree 1
    expected = np.array(
        [
            [0.25, 0.25, 0.25, 0.25],
            [0.25, 0.75, 0.0, 0.0],
            [0.25, 0.0, 0.75, 0.0],
            [0.25, 0.0, 0.0, 0.75],
        ]
    )
    np.testing.assert_allclose(w, expected)


@pytest.mark.parametrize("n, d", [(16, 3), (96, 5), (20, 4), (11, 8), (8, 7), (40, 1)])
def test_regular_degrees_and_determinism(n, d):
    for seed in (0, 1):
        adj = topology.regular(n, d, seed)
        deg = adj.sum(axis=1)
        if (deg == d).all():
            assert topology.is_connected(adj)
        else:  # disconnected draw: the ring was added
            assert contains_ring(adj)
            assert ((deg >= d) & (deg <= d + 2)).all()
        np.testing.assert_array_equal(adj, topology.regular(n, d, seed))
    assert not np.array_equal(topology.regular(96, 5, 0), topology.regular(96, 5, 1))


def test_regular_with_degree_one_adds_the_ring():
    adj = topology.regular(10, 1, 0)  # a perfect matching is never connected
    assert contains_ring(adj) and topology.is_connected(adj)


def test_regular_is_close_to_uniform():
    # Labelled 2-regular graphs on 8 nodes: 2520 8-cycles, 672 with a 3-cycle + 5-cycle,
    # 315 with two 4-cycles, so a uniform draw has a triangle with prob. 672 / 3507.
    # (A naive incremental pairing gives about 0.30.)
    hits = 0
    trials = 600
    for seed in range(trials):
        a = topology._random_regular(8, 2, np.random.default_rng(seed)).astype(int)
        hits += np.trace(a @ a @ a) > 0
    assert abs(hits / trials - 672 / 3507) < 0.05


def test_small_world_contains_ring_and_rewires():
    lattice = topology.small_world(30, 2, 0.0, seed=0)
    assert (lattice.sum(axis=1) == 4).all()
    assert lattice[0, [1, 2, 28, 29]].all()
    rewired = topology.small_world(30, 2, 0.5, seed=0)
    assert contains_ring(rewired)
    assert not np.array_equal(rewired, lattice)
    assert len(edge_set(rewired)) >= 60  # rewiring keeps the count; the ring adds
    np.testing.assert_array_equal(rewired, topology.small_world(30, 2, 0.5, seed=0))


def test_is_connected():
    assert topology.is_connected(topology.ring(5))
    two_triangles = np.zeros((6, 6), dtype=bool)
    for u, v in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]:
        two_triangles[u, v] = two_triangles[v, u] = True
    assert not topology.is_connected(two_triangles)


# ------------------------------------------------------------------------- errors


def assert_one_line_config_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("4\n0 1\n1 2 3\n", ["line 3", "two node ids"]),
        ("4\n0 1\nx 2\n", ["line 3", "'x 2'"]),
        ("4\n0 1\n\n2 2\n", ["line 4", "self loop"]),
        ("4\n0 1\n1 4\n", ["line 3", "node id 4", "0..3"]),
        ("4\n-1 2\n", ["line 2", "node id -1"]),
        ("four\n0 1\n", ["line 1", "node count"]),
        ("4 5\n0 1\n", ["line 1", "node count"]),
        ("\n\n", ["empty"]),
    ],
)
def test_read_edges_errors(tmp_path, text, fragments):
    path = tmp_path / "bad.edges"
    path.write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        topology.read_edges(path)
    assert_one_line_config_error(excinfo, str(path), *fragments)


def test_read_edges_count_mismatch_and_missing_file(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        topology.read_edges(topology.PAPER_GRAPH, n=16)
    assert_one_line_config_error(excinfo, "has 96 nodes but nodes=16", "96_regular")
    missing = tmp_path / "nope.edges"
    with pytest.raises(ConfigError) as excinfo:
        topology.read_edges(missing)
    assert_one_line_config_error(excinfo, str(missing), "does not exist")


def test_read_edges_accepts_duplicates_and_blank_lines(tmp_path):
    path = tmp_path / "g.edges"
    path.write_text("3\n0 1\n1 0\n\n0 1\n 1   2 \n")
    adj = topology.read_edges(path)
    assert edge_set(adj) == {(0, 1), (1, 2)}


def test_make_graph_errors(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        topology.make_graph("hypercube", 8)
    assert_one_line_config_error(excinfo, "'hypercube'", "ring", "small_world")
    with pytest.raises(ConfigError) as excinfo:
        topology.make_graph("ring", 1)
    assert_one_line_config_error(excinfo, "nodes=1")
    path = tmp_path / "split.edges"
    path.write_text("5\n0 1\n1 2\n3 4\n")
    with pytest.raises(ConfigError) as excinfo:
        topology.make_graph("edges", 5, edges_file=path)
    assert_one_line_config_error(
        excinfo, f"graph 'edges' from {path} is disconnected", "nodes 3, 4"
    )
    with pytest.raises(ConfigError) as excinfo:
        topology.make_graph("edges", 16)  # the paper graph has 96 nodes
    assert_one_line_config_error(excinfo, "has 96 nodes but nodes=16")


@pytest.mark.parametrize(
    "call, fragments",
    [
        (lambda: topology.regular(5, 3, 0), ["nodes*degree even", "nodes=5"]),
        (lambda: topology.regular(6, 6, 0), ["degree=6", "1..5"]),
        (lambda: topology.regular(6, 0, 0), ["degree=0", "1..5"]),
        (lambda: topology.regular(6, 2, -1), ["seed=-1"]),
        (lambda: topology.torus(10), ["nodes=10", "divisor"]),
        (lambda: topology.torus(7), ["nodes=7"]),
        (lambda: topology.small_world(10, 5, 0.1, 0), ["k_over_2=5", "1..4"]),
        (lambda: topology.small_world(10, 2, 1.5, 0), ["beta=1.5", "[0, 1]"]),
        (lambda: topology.check_dynamic(9, 3), ["nodes*degree even", "nodes=9"]),
        (lambda: topology.check_dynamic(8, 1), ["degree=1", "2..7"]),
        (lambda: topology.check_dynamic(8, 8), ["degree=8", "2..7"]),
        (lambda: topology.neighbor_table(topology.complete(5), 3), ["d_max=3", "4"]),
    ],
)
def test_generator_errors(call, fragments):
    with pytest.raises(ConfigError) as excinfo:
        call()
    assert_one_line_config_error(excinfo, *fragments)


def test_write_read_round_trip(tmp_path):
    adj = topology.regular(20, 3, seed=4)
    path = tmp_path / "out.edges"
    topology.write_edges(adj, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "20"
    assert len(lines) == 1 + 2 * len(edge_set(adj))  # each edge in both directions
    np.testing.assert_array_equal(topology.read_edges(path, n=20), adj)
    topology.write_edges(topology.read_edges(topology.PAPER_GRAPH), path)
    np.testing.assert_array_equal(
        topology.read_edges(path), topology.read_edges(topology.PAPER_GRAPH)
    )


# ----------------------------------------------------------------- neighbour tables


def test_neighbor_table_layout():
    adj = topology.star(4)
    table = topology.neighbor_table(adj)
    assert table.idx.shape == (4, 3) and table.idx.dtype == jnp.int32
    assert table.weight.dtype == jnp.float32 and table.self_weight.dtype == jnp.float32
    assert table.degree.dtype == jnp.int32
    expected_idx = [[1, 2, 3], [0, 1, 1], [0, 2, 2], [0, 3, 3]]
    np.testing.assert_array_equal(table.idx, expected_idx)
    np.testing.assert_allclose(
        table.weight, [[0.25] * 3, [0.25, 0, 0], [0.25, 0, 0], [0.25, 0, 0]]
    )
    np.testing.assert_allclose(table.self_weight, [0.25, 0.75, 0.75, 0.75])
    np.testing.assert_array_equal(table.degree, [3, 1, 1, 1])


@pytest.mark.parametrize(
    "adj, pad",
    [
        (topology.read_edges(topology.PAPER_GRAPH), 0),
        (topology.star(7), 2),
        (topology.small_world(24, 3, 0.4, seed=1), 0),
        (topology.regular(16, 3, seed=2), 3),
    ],
)
def test_neighbor_table_dense_matrix_equals_mh(adj, pad):
    d_max = int(adj.sum(axis=1).max()) + pad
    table = topology.neighbor_table(adj, d_max=d_max if pad else None)
    assert table.idx.shape == (adj.shape[0], d_max)
    mh = topology.mh_matrix(adj)
    np.testing.assert_allclose(table_to_dense(table), mh, atol=1e-7)
    w = np.asarray(jax.jit(dense_matrix)(table))
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, mh, atol=1e-7)
    assert_valid_mh(w.astype(np.float64), adj, atol=1e-6)
    np.testing.assert_array_equal(table.degree, adj.sum(axis=1))
    idx = np.asarray(table.idx)
    padding = np.arange(d_max)[None, :] >= adj.sum(axis=1)[:, None]
    assert (idx[padding] == np.nonzero(padding)[0]).all()  # padded with the own id
    assert (np.asarray(table.weight)[padding] == 0).all()


def _bfs_connected(adj: np.ndarray) -> bool:
    seen, todo = {0}, [0]
    while todo:
        for j in np.flatnonzero(adj[todo.pop()]).tolist():
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return len(seen) == adj.shape[0]


@pytest.mark.parametrize("n, d", [(16, 2), (12, 5)])
def test_random_regular_table_draws_connected_d_regular_graphs(n, d):
    """Drawn inside jit: symmetric, no loops, every degree d, connected (2-regular
    draws are mostly several cycles, joined by switches), the MH weights of SPEC 4.0
    from the degrees, neighbours ascending; a key fixes the graph."""
    draws = 12
    keys = jax.random.split(jax.random.PRNGKey(n * d), draws)
    tables = jax.jit(jax.vmap(lambda k: topology.random_regular_table(k, n, d)))(keys)
    graphs = set()
    for t in range(draws):
        idx = np.asarray(tables.idx[t])
        weight = np.asarray(tables.weight[t], np.float64)
        assert idx.shape == (n, d)
        adj = np.zeros((n, n), bool)
        for i in range(n):
            assert (np.diff(idx[i]) > 0).all()  # distinct neighbours, ascending
            adj[i, idx[i]] = True
        assert (adj == adj.T).all() and not adj.diagonal().any()
        assert (adj.sum(axis=1) == d).all()
        assert (np.asarray(tables.degree[t]) == d).all()
        assert _bfs_connected(adj)
        np.testing.assert_allclose(weight, 1.0 / (1.0 + d), rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(tables.self_weight[t]), 1.0 - d / (1.0 + d), rtol=1e-6
        )
        w = table_to_dense(jax.tree.map(lambda a: a[t], tables))
        assert_valid_mh(w, adj, atol=1e-6)
        graphs.add(adj.tobytes())
    assert len(graphs) >= draws - 1  # fresh graphs (two 8-node draws may coincide)
    again = topology.random_regular_table(keys[3], n, d)
    np.testing.assert_array_equal(again.idx, tables.idx[3])


def test_random_regular_table_at_scale():
    """10,000 nodes of degree 4: every node has 4 distinct neighbours, symmetric."""
    n, d = 10_000, 4
    table = jax.jit(lambda k: topology.random_regular_table(k, n, d))(
        jax.random.PRNGKey(5)
    )
    idx = np.asarray(table.idx)
    assert (np.asarray(table.degree) == d).all()
    assert (np.diff(idx, axis=1) > 0).all() and (idx != np.arange(n)[:, None]).all()
    edges = {(i, int(j)) for i in range(n) for j in idx[i]}
    assert all((j, i) in edges for i, j in edges)


def test_paper_graph_is_a_resource_of_the_package():
    assert topology.PAPER_GRAPH.is_file()
    folder = pathlib.Path(topology.__file__).parent / "resources"
    assert topology.PAPER_GRAPH == folder / "96_regular.edges"
    assert resources.path(resources.SMALL_GRAPH_NAME) == folder / "16_regular.edges"
