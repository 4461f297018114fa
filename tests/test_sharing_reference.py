"""Vectorised sharing steps against the per-node NumPy / PyWavelets reference.

Covers SPEC sections 4.0-4.5 and 4.7 and the byte accounting of SPEC 5 (as fixed by
the decisions table of SPEC.md). The first group of tests checks the reference
itself (weights, Elias sizes, wavelet layout, the closed forms of SPEC 4.2); the
second runs the package's ``make_sharing(...).step`` and the reference side by side
for several rounds with state carried, on irregular and changing graphs, and
compares the models every round (float32 tolerance) and the byte counts exactly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import resources
from jwins_jax.sharing import STRATEGIES, RoundInputs, make_sharing, message_bytes
from jwins_jax.testing.reference import elias
from jwins_jax.testing.reference import sharing_ref as ref
from jwins_jax.topology import neighbor_table

EDGES_16 = resources.path(resources.SMALL_GRAPH_NAME)
JWINS_ALPHAS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def random_graph(n: int, rng: np.random.Generator, max_degree: int = 5) -> list[set]:
    """A connected irregular graph with degrees between 1 and ``max_degree``.

    A random tree (each node attaches to an earlier node with spare degree) plus
    random extra edges; node ``n - 1`` is kept a leaf so degree 1 always occurs.
    """
    nb: list[set] = [set() for _ in range(n)]
    for v in range(1, n):
        choices = [u for u in range(v) if len(nb[u]) < max_degree]
        u = int(rng.choice(choices))
        nb[u].add(v)
        nb[v].add(u)
    for _ in range(3 * n):
        u, v = (int(a) for a in rng.choice(n - 1, size=2, replace=False))
        if len(nb[u]) < max_degree and len(nb[v]) < max_degree:
            nb[u].add(v)
            nb[v].add(u)
    return nb


def training_deltas(rng, rounds: int, n: int, n_params: int, scale: float = 0.5):
    """(rounds, n, N) float32 stand-ins for the change made by local training."""
    return (scale * rng.standard_normal((rounds, n, n_params))).astype(np.float32)


def initial_models(rng, n: int, n_params: int) -> np.ndarray:
    """(n, N) float32 initial models, identical on every node (SPEC 1.2)."""
    row = rng.standard_normal(n_params).astype(np.float32)
    return np.repeat(row[None], n, axis=0)


def run_reference(name, params, x0, graphs, deltas, per_round=None):
    """Runs the reference; returns the networks plus per-round pre/post models."""
    net = ref.make_network(name, x0, **params)
    x = np.asarray(x0, np.float32)
    pres, posts, stats = [], [], []
    for t, nb in enumerate(graphs):
        x_pre = (x + deltas[t]).astype(np.float32)
        inputs = per_round[t] if per_round else None
        x, st = net.step(x_pre, nb, inputs)
        pres.append(x_pre)
        posts.append(x)
        stats.append(st)
    return net, pres, posts, stats


# ---------------------------------------------------------------------------
# Self-checks of the reference
# ---------------------------------------------------------------------------


def test_edges_file_and_mh_weights():
    nb = ref.read_edges_file(str(EDGES_16))
    assert len(nb) == 16
    assert all(len(s) == 3 for s in nb)  # the 16-node file is 3-regular
    for nbrs in (nb, random_graph(12, np.random.default_rng(0))):
        w = ref.mh_matrix(nbrs)
        np.testing.assert_allclose(w, w.T, atol=1e-15)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
        assert (w >= 0).all()
    w16 = ref.mh_matrix(nb)
    assert w16[0, 12] == 0.25 and w16[0, 0] == 0.25


def test_random_graph_is_irregular_and_connected():
    nb = random_graph(14, np.random.default_rng(3))
    deg = [len(s) for s in nb]
    assert min(deg) == 1 and max(deg) <= 5 and len(set(deg)) >= 3
    seen, todo = {0}, [0]
    while todo:
        for j in nb[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    assert len(seen) == 14


def test_elias_encoder_writes_the_gamma_codes_and_reads_them_back():
    """The reference's NumPy encoder against the codes spelt out bit by bit."""
    rng = np.random.default_rng(1)
    assert elias.encode(np.array([], np.int32)) == b""
    assert len(elias.encode(np.array([7]))) == 16
    # gaps 1, 2, 3, 4 -> 1 + 3 + 3 + 5 = 12 bits -> 2 bytes + 16
    assert len(elias.encode(np.array([0, 1, 3, 6, 10]))) == 18
    for k in (1, 2, 3, 17, 100, 500):
        idx = np.sort(rng.choice(5000, size=k, replace=False))
        gaps = np.diff(idx)
        bits = "".join(
            "0" * (int(g).bit_length() - 1) + format(int(g), "b") for g in gaps
        )
        body = bytes(
            int(bits[i : i + 8].ljust(8, "0"), 2) for i in range(0, len(bits), 8)
        )
        encoded = elias.encode(idx)
        assert encoded[:-16] == body
        assert np.frombuffer(encoded[-16:], "<i8").tolist() == [idx[0], len(bits) + 128]
        np.testing.assert_array_equal(elias.decode(encoded), idx)


def test_topk_ties_go_to_lower_index_and_k_rounds_half_even():
    score = np.array([1, -3, 3, 2, -3, 3, 0], np.float32)
    np.testing.assert_array_equal(ref.topk_indices(score, 2), [1, 2])
    np.testing.assert_array_equal(ref.topk_indices(score, 4), [1, 2, 4, 5])
    np.testing.assert_array_equal(ref.topk_indices(score, 0), [])
    assert ref.count_k(0.25, 1242) == 310  # 310.5 -> even
    assert ref.count_k(0.25, 1238) == 310  # 309.5 -> even
    assert ref.count_k(0.1, 1011) == 101
    rng = np.random.default_rng(0)
    for _ in range(200):  # many ties: against a stable full sort
        m = int(rng.integers(1, 40))
        score = rng.integers(-2, 3, m).astype(np.float32)
        k = int(rng.integers(0, m + 1))
        want = np.sort(np.argsort(-np.abs(score), kind="stable")[:k])
        np.testing.assert_array_equal(ref.topk_indices(score, k), want)
        mags = np.sort(np.abs(score))[::-1]
        gap = mags[k - 1] - mags[k] if 0 < k < m else np.inf
        assert ref.cut_gap(score, k) == gap


def test_wavelet_layout_matches_appendix_b():
    tr = ref.WaveletTransform(30242, "sym2", 4)  # CelebA CNN
    assert tr.length == 30250
    assert ref.WaveletTransform(30242, "haar", 4).length == 30245
    x = np.random.default_rng(2).standard_normal(1001).astype(np.float32)
    tr = ref.WaveletTransform(1001)
    coeffs = tr.forward(x)
    assert coeffs.dtype == np.float32 and coeffs.shape == (tr.length,)
    np.testing.assert_allclose(tr.inverse(coeffs), x, atol=2e-6)


def test_reference_full_sharing_preserves_the_mean_and_matches_w():
    rng = np.random.default_rng(4)
    nb = random_graph(10, rng)
    x0 = initial_models(rng, 10, 257)
    deltas = training_deltas(rng, 1, 10, 257)
    _, pres, posts, stats = run_reference("full", {}, x0, [nb], deltas)
    w = ref.mh_matrix(nb)
    np.testing.assert_allclose(posts[0], w @ pres[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(posts[0].mean(0), pres[0].mean(0), atol=1e-5)
    deg = np.array([len(s) for s in nb])
    np.testing.assert_array_equal(stats[0].value_bytes, 4 * 257 * deg)
    np.testing.assert_array_equal(stats[0].meta_bytes, 0)


@pytest.mark.parametrize("name", ["topk", "wavelet"])
def test_reference_alpha_one_is_full_sharing(name):
    rng = np.random.default_rng(5)
    n, n_params = 9, 300
    graphs = [random_graph(n, rng) for _ in range(3)]
    x0 = initial_models(rng, n, n_params)
    deltas = training_deltas(rng, 3, n, n_params)
    params = {"alpha": 1.0, "accumulation": "legacy"}
    _, _, posts, stats = run_reference(name, params, x0, graphs, deltas)
    _, _, full_posts, _ = run_reference("full", {}, x0, graphs, deltas)
    for a, b, st in zip(posts, full_posts, stats):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        assert st.full.all() and (st.meta_bytes == 0).all()


def test_reference_random_uses_strict_cap():
    rng = np.random.default_rng(6)
    nb = random_graph(8, rng)
    x0 = initial_models(rng, 8, 50)
    mask = np.ones((8, 50), bool)
    net = ref.make_network("random", x0, alpha=1.0, metadata_cap=1.0)
    _, st = net.step(x0.copy(), nb, {"mask": mask})
    assert not st.full.any() and (st.meta_bytes > 0).all()  # alpha == cap: partial
    net = ref.make_network("random", x0, alpha=0.6, metadata_cap=0.5)
    _, st = net.step(x0.copy(), nb, {"mask": mask})
    assert st.full.all() and (st.meta_bytes == 0).all()


def test_reference_choco():
    rng = np.random.default_rng(7)
    n, n_params = 8, 120
    nb = random_graph(n, rng)
    w = ref.mh_matrix(nb)
    x0 = initial_models(rng, n, n_params)
    # alpha = 1, gamma = 1: the first round is exactly one full gossip step
    deltas = training_deltas(rng, 4, n, n_params)
    params = {"alpha": 1.0, "gamma": 1.0}
    _, pres, posts, _ = run_reference("choco", params, x0, [nb], deltas)
    np.testing.assert_allclose(posts[0], w @ pres[0], rtol=1e-5, atol=1e-5)
    # with a fixed graph, s_i stays the W-weighted sum of the public copies
    params = {"alpha": 0.3, "gamma": 0.4}
    net, *_ = run_reference("choco", params, x0, [nb] * 4, deltas)
    xhat = np.stack([nd.xhat for nd in net.nodes])
    s = np.stack([nd.s for nd in net.nodes])
    np.testing.assert_allclose(s, w @ xhat, rtol=1e-5, atol=1e-5)


def closed_form_scores(mode, tr, x0_row, pres, posts, sent_history, node):
    """SPEC 4.2 closed forms of node ``node``'s score in every round.

    Args:
        mode: accumulation mode.
        tr: the transform.
        x0_row: (N,) initial model.
        pres, posts: per-round (n, N) models before / after averaging.
        sent_history: per round, the node's sent indices, or None for a full share.
        node: node id.

    Returns:
        List of (L,) float64 expected scores, one per round.
    """
    length = tr.length
    last = np.full(length, -1)  # round of the last send of each coordinate
    out = []

    def t_of(v):
        return tr.forward(v).astype(np.float64)

    for t in range(len(pres)):
        pre_t = t_of(pres[t][node])
        prev_post = posts[t - 1][node] if t > 0 else x0_row
        if mode == "none":
            expected = pre_t - t_of(prev_post)
        elif mode == "legacy":
            # change since the start of the round of the last send, x0 if never
            expected = pre_t.copy()
            for lq in np.unique(last):
                base = posts[lq - 1][node] if lq >= 1 else x0_row
                sel = last == lq
                expected[sel] -= t_of(base)[sel]
        else:  # accumulate: training changes after the last send
            expected = np.zeros(length)
            changes = [
                t_of(pres[r][node] - (posts[r - 1][node] if r > 0 else x0_row))
                for r in range(t + 1)
            ]
            for q in range(length):
                expected[q] = sum(changes[r][q] for r in range(last[q] + 1, t + 1))
        out.append(expected)
        sent = sent_history[t]
        if sent is None:
            last[:] = t
        else:
            last[sent] = t
    return out


@pytest.mark.parametrize("mode", ["legacy", "accumulate", "none"])
@pytest.mark.parametrize("name", ["topk", "jwins"])
def test_reference_scores_follow_the_closed_forms(name, mode):
    rng = np.random.default_rng(8)
    n, n_params, rounds = 6, 131, 5
    graphs = [random_graph(n, rng) for _ in range(rounds)]
    x0 = initial_models(rng, n, n_params)
    deltas = training_deltas(rng, rounds, n, n_params)
    if name == "topk":
        params = {"alpha": 0.2, "accumulation": mode}
        per_round = None
    else:  # per-node alphas with full shares mixed in (cap 0.5)
        params = {"accumulation": mode}
        per_round = [
            {"alpha": [JWINS_ALPHAS[(t + i) % 7] for i in range(n)]}
            for t in range(rounds)
        ]
    net = ref.make_network(name, x0, **params)
    x = x0
    pres, posts, scores, sent = [], [], [], []
    for t in range(rounds):
        x_pre = (x + deltas[t]).astype(np.float32)
        x, _ = net.step(x_pre, graphs[t], per_round[t] if per_round else None)
        pres.append(x_pre)
        posts.append(x)
        scores.append([nd.last_score.copy() for nd in net.nodes])
        sent.append([nd.last_sent for nd in net.nodes])
    tr = net.nodes[0].transform
    for node in range(n):
        expected = closed_form_scores(
            mode, tr, x0[node], pres, posts, [s[node] for s in sent], node
        )
        for t in range(rounds):
            np.testing.assert_allclose(
                scores[t][node],
                expected[t],
                rtol=1e-4,
                atol=2e-5,
                err_msg=f"node {node} round {t}",
            )
    if name == "jwins":
        assert any(s is None for row in sent for s in row)  # full shares occurred


# ---------------------------------------------------------------------------
# Package against reference
# ---------------------------------------------------------------------------


def compare_runs(
    name,
    params,
    x0,
    graphs,
    deltas,
    per_round=None,
    wavelet_rounds_tol=False,
    also_full=False,
    d_max=5,
    follow_reference=False,
):
    """Runs the package and the reference side by side and compares every round.

    Each implementation starts the round from its own post-averaging model of the
    previous round plus the same training delta (with ``follow_reference``, both
    from the reference's: a lossy codec then sees the same values in both, so
    float32 round-off cannot move a value across a quantization step; the states
    still evolve apart).

    Args:
        name, params: package strategy and parameters.
        x0: (n, N) identical initial models.
        graphs: per-round neighbour sets (a new table is built every round).
        deltas: (rounds, n, N) training deltas.
        per_round: per-round dicts of package overrides (``mask`` / ``alphas``).
        wavelet_rounds_tol: allow the wavelet round-trip error to grow per round.
        also_full: also compare the models with a full-sharing reference run.
        d_max: width of the (padded) neighbour tables; all graphs here have
            degrees <= 5, and one width keeps the package from recompiling.

    Returns:
        ``(net, pkg_stats)``: the reference network and the package's per-round
        stats as NumPy dicts.
    """
    n_params = x0.shape[1]
    sh = make_sharing(name, n_params=n_params, **params)
    state = sh.init(jnp.asarray(x0))
    ref_params = {k: v for k, v in params.items() if k != "alpha_list"}
    net = ref.make_network(name, x0, **ref_params)
    full_net = ref.make_network("full", x0) if also_full else None
    x_pkg = np.asarray(x0, np.float32)
    x_ref = x_full = np.asarray(x0, np.float32)
    key = jax.random.PRNGKey(0)
    pkg_stats = []
    for t, nb in enumerate(graphs):
        override, ref_inputs = {}, None
        if per_round is not None:
            override = dict(per_round[t])
            if "mask" in override:
                ref_inputs = {"mask": override["mask"]}
                override["mask"] = jnp.asarray(override["mask"])
            if "alphas" in override:
                ref_inputs = {"alpha": [float(a) for a in override["alphas"]]}
                override["alphas"] = jnp.asarray(override["alphas"], jnp.float32)
        table = neighbor_table(ref.adjacency_from_neighbors(nb), d_max=d_max)
        x_pre_ref = (x_ref + deltas[t]).astype(np.float32)
        x_pre_pkg = x_pre_ref if follow_reference else (x_pkg + deltas[t])
        x_pre_pkg = np.asarray(x_pre_pkg, np.float32)
        out, state, stats = sh.step(
            state,
            jnp.asarray(x_pre_pkg),
            jax.random.fold_in(key, t),
            table,
            sh.hp,
            RoundInputs(**override),
        )
        x_pkg = np.asarray(out)
        stats = {k: np.asarray(v) for k, v in stats.items()}
        for field in ("sent", "meta_bytes", "receivers"):
            assert stats[field].dtype == np.int32, (field, stats[field].dtype)
        stats["value_bytes"], stats["meta_bytes"] = message_bytes(stats)
        pkg_stats.append(stats)
        x_ref, st = net.step(x_pre_ref, nb, ref_inputs)
        gaps = [getattr(nd, "last_gap", math.inf) for nd in net.nodes]
        where = f"{name} {params} round {t} (smallest cut margin {min(gaps):.2e})"
        assert x_pkg.dtype == np.float32 and x_pkg.shape == x_ref.shape
        scale = max(1.0, float(np.abs(x_ref).max()))
        atol = (1e-5 * (t + 1) if wavelet_rounds_tol else 1e-5) * scale
        np.testing.assert_allclose(x_pkg, x_ref, rtol=1e-5, atol=atol, err_msg=where)
        if full_net is not None:
            x_full, _ = full_net.step((x_full + deltas[t]).astype(np.float32), nb)
            np.testing.assert_allclose(
                x_pkg, x_full, rtol=1e-5, atol=atol, err_msg=f"vs full: {where}"
            )
        assert stats["full"].dtype == np.bool_
        for field in ("full", "sent", "value_bytes", "meta_bytes"):
            np.testing.assert_array_equal(
                stats[field], getattr(st, field), err_msg=f"{field}: {where}"
            )
    return net, pkg_stats


@pytest.fixture(scope="module")
def setting():
    """An irregular 12-node graph (degrees 1..5), odd N, 5 rounds of deltas."""
    rng = np.random.default_rng(10)
    n, n_params, rounds = 12, 777, 5
    graph = random_graph(n, rng)
    return {
        "graphs": [graph] * rounds,
        "x0": initial_models(rng, n, n_params),
        "deltas": training_deltas(rng, rounds, n, n_params),
    }


@pytest.fixture(scope="module")
def setting16():
    """The 16-node topology file, even N, 4 rounds."""
    rng = np.random.default_rng(11)
    n_params, rounds = 1234, 4
    graph = ref.read_edges_file(str(EDGES_16))
    return {
        "graphs": [graph] * rounds,
        "x0": initial_models(rng, 16, n_params),
        "deltas": training_deltas(rng, rounds, 16, n_params),
    }


def test_package_registry_names():
    assert set(STRATEGIES) == {
        "full",
        "random",
        "topk",
        "wavelet",
        "jwins",
        "fft",
        "choco",
    }


def test_full(setting, setting16):
    compare_runs("full", {}, **setting)
    compare_runs("full", {}, **setting16)


@pytest.mark.parametrize("mode", ["none", "accumulate", "legacy"])
def test_topk_accumulation_modes(setting, mode):
    net, _ = compare_runs("topk", {"alpha": 0.2, "accumulation": mode}, **setting)
    assert not any(st.full.any() for st in net.history)


def test_topk_alpha_at_the_cap_shares_fully(setting16):
    params = {"alpha": 0.3, "metadata_cap": 0.3, "accumulation": "legacy"}
    net, _ = compare_runs("topk", params, **setting16)
    assert all(st.full.all() for st in net.history)


def test_topk_ties_go_to_the_lower_index(setting):
    """Integer-valued changes: many exact ties at the cut (first round only)."""
    rng = np.random.default_rng(12)
    n, n_params = setting["x0"].shape
    graphs = setting["graphs"][:1]
    x0 = np.zeros((n, n_params), np.float32)
    deltas = rng.integers(-2, 3, size=(1, n, n_params)).astype(np.float32)
    for mode in ("none", "accumulate", "legacy"):
        params = {"alpha": 0.3, "accumulation": mode}
        net, _ = compare_runs("topk", params, x0, graphs, deltas)
        assert min(nd.last_gap for nd in net.nodes) == 0.0  # ties were present


@pytest.mark.parametrize(
    "params",
    [
        {"alpha": 0.15, "accumulation": "none"},
        {"alpha": 0.2, "accumulation": "accumulate"},
        {"alpha": 0.1, "accumulation": "legacy"},
        {"alpha": 0.25, "accumulation": "none", "selection": "magnitude"},
    ],
)
def test_wavelet(setting, params):
    compare_runs("wavelet", params, **setting, wavelet_rounds_tol=True)


def test_wavelet_haar_level3(setting16):
    params = {"alpha": 0.3, "wavelet": "haar", "level": 3, "accumulation": "legacy"}
    compare_runs("wavelet", params, **setting16, wavelet_rounds_tol=True)


@pytest.mark.parametrize("name", ["topk", "wavelet", "jwins"])
def test_alpha_one_equals_full_sharing(setting, name):
    params = {"alpha_list": (1.0,)} if name == "jwins" else {"alpha": 1.0}
    if name != "topk":
        params["accumulation"] = "legacy"
    # against the same strategy of the reference (bytes included) and, for the
    # models, against plain full sharing (the wavelet version sends M > N values)
    net, pkg_stats = compare_runs(
        name, params, **setting, wavelet_rounds_tol=True, also_full=True
    )
    n_params = setting["x0"].shape[1]
    length = n_params if name == "topk" else ref.WaveletTransform(n_params).length
    for st, stats in zip(net.history, pkg_stats):
        assert st.full.all() and (st.meta_bytes == 0).all()
        assert stats["full"].all() and (stats["sent"] == length).all()


def jwins_alphas(rng, rounds, n):
    """Per-round per-node alphas with at least one full share and one partial."""
    out = []
    for _ in range(rounds):
        a = rng.choice(JWINS_ALPHAS, size=n)
        a[rng.integers(n)] = 1.0
        a[rng.integers(n)] = 0.1
        out.append({"alphas": a.astype(np.float32)})
    return out


def test_jwins_mixed_alphas(setting16):
    rng = np.random.default_rng(13)
    per_round = jwins_alphas(rng, len(setting16["graphs"]), 16)
    net, _ = compare_runs(
        "jwins", {}, **setting16, per_round=per_round, wavelet_rounds_tol=True
    )
    full = np.array([st.full for st in net.history])
    assert full.any() and not full.all()


def test_jwins_mixed_alphas_irregular(setting):
    rng = np.random.default_rng(14)
    per_round = jwins_alphas(rng, len(setting["graphs"]), 12)
    compare_runs("jwins", {}, **setting, per_round=per_round, wavelet_rounds_tol=True)


def test_random_with_given_masks(setting):
    rng = np.random.default_rng(15)
    x0 = setting["x0"]
    per_round = [{"mask": rng.random(x0.shape) < 0.3} for _ in setting["graphs"]]
    net, _ = compare_runs("random", {"alpha": 0.3}, **setting, per_round=per_round)
    assert all((st.meta_bytes > 0).all() for st in net.history)
    # alpha equal to the cap still samples (strict >, SPEC 4.3) ...
    params = {"alpha": 0.3, "metadata_cap": 0.3}
    net, _ = compare_runs("random", params, **setting, per_round=per_round)
    assert not any(st.full.any() for st in net.history)
    # ... alpha above the cap shares fully (the mask is ignored)
    params = {"alpha": 0.6, "metadata_cap": 0.5}
    net, _ = compare_runs("random", params, **setting, per_round=per_round)
    assert all(st.full.all() for st in net.history)


@pytest.mark.parametrize("alpha,gamma", [(0.1, 0.5), (0.0005, 0.3)])  # k = 0: dense
def test_choco(setting, alpha, gamma):
    compare_runs("choco", {"alpha": alpha, "gamma": gamma}, **setting)


def test_choco_keeps_ties(setting):
    """Integer-valued models: exact ties at the threshold are all kept.

    Only the first round has exact ties; later rounds mix in MH weights, so values
    that are equal in exact arithmetic differ in their last float32 bits.
    """
    rng = np.random.default_rng(16)
    n, n_params = setting["x0"].shape
    x0 = np.zeros((n, n_params), np.float32)
    deltas = rng.integers(-2, 3, size=(1, n, n_params)).astype(np.float32)
    params = {"alpha": 0.2, "gamma": 0.5}
    net, _ = compare_runs("choco", params, x0, setting["graphs"][:1], deltas)
    assert (net.history[0].sent > round(0.2 * n_params)).all()


# ---------------------------------------------------------------------------
# The FFT variant (SPEC 4.6) and quantized values (SPEC 5.4)
# ---------------------------------------------------------------------------


def test_reference_fft_keeps_every_value_for_odd_n():
    """The original inverts without a length and loses a value for odd N (SPEC
    10.7); the reference inverts with n = N."""
    x = np.random.default_rng(18).standard_normal(777).astype(np.float32)
    assert np.fft.irfft(np.fft.rfft(x)).size == 776  # the original's bug
    tr = ref.FFTTransform(777)
    coeffs = tr.forward(x)
    assert coeffs.dtype == np.complex64 and tr.length == coeffs.size == 389
    np.testing.assert_allclose(tr.inverse(coeffs), x, atol=2e-6)


@pytest.mark.parametrize(
    "params",
    [
        {"alpha": 0.2, "accumulation": "none"},
        {"alpha": 0.15, "accumulation": "legacy"},
        {"alpha": 0.25, "accumulation": "accumulate", "selection": "magnitude"},
    ],
)
def test_fft_odd_n(setting, params):
    net, stats = compare_runs("fft", params, **setting, wavelet_rounds_tol=True)
    k = round(params["alpha"] * 389)
    assert all((st["sent"] == k).all() for st in stats)
    assert all((st["value_bytes"] == 8 * k * st["receivers"]).all() for st in stats)


def test_fft_even_n_and_full_shares(setting16):
    compare_runs("fft", {"alpha": 0.3, "accumulation": "legacy"}, **setting16)
    params = {"alpha": 1.0, "accumulation": "legacy"}
    net, stats = compare_runs(
        "fft", params, **setting16, wavelet_rounds_tol=True, also_full=True
    )
    length = 1234 // 2 + 1
    for st in stats:
        assert st["full"].all() and (st["meta_bytes"] == 0).all()
        assert (st["value_bytes"] == 8 * length * st["receivers"]).all()


@pytest.mark.parametrize(
    "name,params",
    [
        ("full", {"float_precision": 127}),
        ("full", {"float_precision": 32767}),
        ("topk", {"alpha": 0.2, "accumulation": "legacy", "float_precision": 127}),
        ("topk", {"alpha": 1.0, "float_precision": 1000}),
        ("random", {"alpha": 0.3, "float_precision": 255}),
    ],
)
def test_quantized_values(setting, name, params):
    """Quantized messages against the reference's NumPy encoder and decoder: the
    receivers' models every round, the bytes exactly."""
    rng = np.random.default_rng(19)
    per_round = None
    if name == "random":
        x0 = setting["x0"]
        per_round = [{"mask": rng.random(x0.shape) < 0.3} for _ in setting["graphs"]]
    net, stats = compare_runs(
        name, params, **setting, per_round=per_round, follow_reference=True
    )
    bits = {127: 8, 32767: 16, 1000: 11, 255: 9}[params["float_precision"]]
    for st in stats:
        count = st["sent"].astype(np.int64)
        per_message = np.where(count > 0, 4 + (count * bits + 7) // 8, 0)
        np.testing.assert_array_equal(st["value_bytes"], per_message * st["receivers"])
    # lossy: the same run with raw values ends elsewhere
    raw = {k: v for k, v in params.items() if k != "float_precision"}
    _, _, raw_posts, _ = run_reference(
        name, raw, setting["x0"], setting["graphs"], setting["deltas"], per_round
    )
    assert np.abs(net.models - raw_posts[-1]).max() > 1e-6


STRATEGY_CASES = [
    ("full", {}),
    ("random", {"alpha": 0.25}),
    ("topk", {"alpha": 0.2, "accumulation": "legacy"}),
    ("wavelet", {"alpha": 0.2, "accumulation": "accumulate"}),
    ("jwins", {}),
    ("choco", {"alpha": 0.2, "gamma": 0.6}),
]


@pytest.mark.parametrize(
    "name,params", STRATEGY_CASES, ids=[name for name, _ in STRATEGY_CASES]
)
def test_dynamic_topology(name, params):
    """A different irregular graph every round, state carried across the changes."""
    rng = np.random.default_rng(17)
    n, n_params, rounds = 12, 777, 5
    graphs = [random_graph(n, rng) for _ in range(rounds)]
    assert len({tuple(map(frozenset, g)) for g in graphs}) == rounds
    x0 = initial_models(rng, n, n_params)
    deltas = training_deltas(rng, rounds, n, n_params)
    per_round = None
    if name == "random":
        per_round = [{"mask": rng.random((n, n_params)) < 0.25} for _ in graphs]
    elif name == "jwins":
        per_round = jwins_alphas(rng, rounds, n)
    wavelet_domain = name in ("wavelet", "jwins")
    compare_runs(
        name,
        params,
        x0,
        graphs,
        deltas,
        per_round=per_round,
        wavelet_rounds_tol=wavelet_domain,
    )


def test_references_import_without_jax():
    """The references (and the testing package) stay independent of JAX."""
    import subprocess
    import sys

    code = (
        "import sys, jwins_jax.testing\n"
        "from jwins_jax.testing.reference import elias, layout, models_np, sharing_ref\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
