"""Link failures and node churn (jwins_jax.faults, issue 11).

Three layers: the fault draws and the surviving table (MH weights of the surviving
graph); the gossip round with given masks against the per-node NumPy reference
(jwins_jax/testing/reference/sharing_ref.py), bytes included; and whole rounds of the pipeline
(training masked for offline nodes, random streams, sweeps over p and q, a churn
schedule, the results' byte counters). The pipeline tests use a linear model on the
digits data so that they compile in seconds; the fault logic does not depend on it.
"""

from __future__ import annotations

import dataclasses
import json
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import experiment as ex
from jwins_jax import faults, gossip, training
from jwins_jax.config import Config
from jwins_jax.data import load_dataset
from jwins_jax.data.batches import sample_batches
from jwins_jax.errors import ConfigError
from jwins_jax.models.layers import Linear
from jwins_jax.models.layout import dense_flops, linear_entries, make_spec
from jwins_jax.results import RunLog, delivered_bytes
from jwins_jax.sharing import RoundInputs, make_sharing, message_bytes
from jwins_jax.testing.reference import sharing_ref as ref
from jwins_jax.topology import neighbor_table, regular
from tests.test_sharing_reference import (
    JWINS_ALPHAS,
    initial_models,
    random_graph,
    training_deltas,
)

# ---------------------------------------------------------------------------
# Draws and the surviving table
# ---------------------------------------------------------------------------


def _dense(table) -> np.ndarray:
    return np.asarray(gossip.dense_matrix(table), np.float64)


def test_surviving_table_is_symmetric_with_mh_weights_of_surviving_degrees():
    rng = np.random.default_rng(0)
    nb = random_graph(14, rng)
    adj = ref.adjacency_from_neighbors(nb)
    table = neighbor_table(adj, d_max=7)  # wider than needed: padding columns too
    hp = faults.hparams(link_failure=0.4, churn=0.2)
    draw = jax.jit(lambda k: faults.draw(k, table, hp))
    survive = jax.jit(faults.surviving_table)
    seen_down = seen_off = 0
    for r in range(6):
        online, up = draw(jax.random.PRNGKey(r))
        live = survive(table, online, up)
        on, up = np.asarray(online), np.asarray(up)
        idx = np.asarray(table.idx)
        # both entries of a link agree
        link = {}
        for i in range(14):
            for c in range(7):
                j = int(idx[i, c])
                if j != i:
                    link.setdefault((min(i, j), max(i, j)), set()).add(bool(up[i, c]))
        assert all(len(v) == 1 for v in link.values())
        alive = adj & on[:, None] & on[None, :]
        for (u, v), state in link.items():
            if not state.pop():
                alive[u, v] = alive[v, u] = False
        seen_down += int((adj & ~alive & on[:, None] & on[None, :]).sum())
        seen_off += int((~on).sum())
        w = _dense(live)
        np.testing.assert_array_equal(w, w.T)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
        expected = ref.mh_matrix(ref.neighbors_from_adjacency(alive))
        np.testing.assert_allclose(w, expected, atol=1e-7)
        np.testing.assert_array_equal(np.asarray(live.degree), alive.sum(axis=1))
        assert np.all(np.asarray(live.weight)[idx == np.arange(14)[:, None]] == 0)
    assert seen_down > 0 and seen_off > 0
    # nothing down: the table itself, bit for bit; everything down: W = I
    n, d = table.idx.shape
    same = survive(table, jnp.ones(n, bool), jnp.ones((n, d), bool))
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(table)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    none = survive(table, jnp.ones(n, bool), jnp.zeros((n, d), bool))
    np.testing.assert_array_equal(_dense(none), np.eye(n))


def test_draw_rates_follow_p_and_q():
    table = neighbor_table(regular(1000, 4, seed=1))
    draw = jax.jit(lambda k, hp: faults.draw(k, table, hp))
    online, up = draw(jax.random.PRNGKey(5), faults.hparams(0.3, churn=0.2))
    assert abs(1 - float(np.mean(online)) - 0.2) < 0.04
    assert abs(1 - float(np.mean(up)) - 0.3) < 0.04
    online, up = draw(jax.random.PRNGKey(5), faults.hparams(1.0, 1.0))
    assert not np.asarray(online).any() and not np.asarray(up).any()


# ---------------------------------------------------------------------------
# Config, flags and the churn schedule
# ---------------------------------------------------------------------------


def test_options_static_switch_and_flags(tmp_path):
    from jwins_jax.cli import build_parser

    base = Config(sharing="choco")
    assert not base.faults_enabled
    zero = base.replace(link_failure=0.0, churn=0.0).validate()
    assert zero.static_key() == base.validate().static_key()
    p1 = base.replace(link_failure=0.1).validate()
    p2 = base.replace(link_failure=0.7, churn=0.3).validate()
    assert p1.faults_enabled and p1.static_key() == p2.static_key() != zero.static_key()
    assert {"link_failure", "churn"} <= set(Config.traced_fields("choco"))
    sched = base.replace(churn_schedule=str(tmp_path / "s.txt")).validate()
    assert sched.faults_enabled and sched.static_key() != p1.static_key()
    for field, value in (("link_failure", 1.5), ("churn", -0.1)):
        with pytest.raises(ConfigError, match=rf"^{field}=.*\[0.0, 1.0\]$"):
            base.replace(**{field: value}).validate()
    args = build_parser().parse_args(
        ["run", "--link-failure", "0.2", "--churn", "0.1", "--churn-schedule", "f.txt"]
    )
    assert (args.link_failure, args.churn, args.churn_schedule) == (0.2, 0.1, "f.txt")


def test_churn_schedule_file(tmp_path):
    path = tmp_path / "churn.txt"
    path.write_text(
        "# offline nodes per round\n"
        "0: 1 2\n"
        "\n"
        "2-4: 3, 5   # a range of rounds\n"
        "3: 1\n"
        "7:\n"
        "90-200: 0\n"
    )
    rows = faults.read_schedule(path, nodes=6, rounds=100)
    assert rows.dtype == np.int32 and rows.shape == (6, 3)
    at = jax.jit(lambda t: faults.scheduled_offline(jnp.asarray(rows), t, 6))
    expected = {
        0: [1, 2],
        1: [],
        2: [3, 5],
        3: [1, 3, 5],
        4: [3, 5],
        5: [],
        89: [],
        90: [0],
        99: [0],
    }
    for t, off in expected.items():
        assert np.flatnonzero(np.asarray(at(t))).tolist() == off, t
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n")
    assert faults.read_schedule(empty, 6, 10).shape == (0, 3)
    nobody = faults.scheduled_offline(jnp.zeros((0, 3), jnp.int32), 3, 6)
    assert not np.asarray(nobody).any()


@pytest.mark.parametrize(
    "text,line,what",
    [
        ("0: 1\n3 4\n", 2, "expected 'ROUND: NODE ...'"),
        ("x: 1\n", 1, "round 'x' is not allowed"),
        ("5-2: 1\n", 1, "round '5-2' is not allowed"),
        ("-1: 1\n", 1, "round '-1' is not allowed"),
        ("# c\n\n0: 1 6\n", 3, r"node '6' is not allowed: node ids are integers in 0"),
        ("0: 1 a\n", 1, "node 'a' is not allowed"),
        ("0: -2\n", 1, "node '-2' is not allowed"),
    ],
)
def test_bad_churn_schedule_gives_one_line_error(tmp_path, text, line, what):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        faults.read_schedule(path, nodes=6, rounds=10)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"churn_schedule {str(path)!r} line {line}: ")
    assert re.search(what, msg), msg


def test_missing_or_binary_schedule_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist$"):
        faults.read_schedule(tmp_path / "nope.txt", 6, 10)
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"\xff\xfe0: 1\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text$"):
        faults.read_schedule(bad, 6, 10)


# ---------------------------------------------------------------------------
# One gossip round with given masks against the per-node reference
# ---------------------------------------------------------------------------


def _masks(rng, nb, q: float, p: float):
    """Random online flags and failed links; one round with everything down."""
    n = len(nb)
    online = rng.random(n) >= q
    down = {(i, j) for i in range(n) for j in nb[i] if i < j and rng.random() < p}
    return online, down


def _table_masks(table, down):
    idx = np.asarray(table.idx)
    up = np.ones(idx.shape, bool)
    for i in range(idx.shape[0]):
        for c in range(idx.shape[1]):
            j = int(idx[i, c])
            up[i, c] = (min(i, j), max(i, j)) not in down
    return jnp.asarray(up)


CASES = [
    ("full", {}),
    ("jwins", {}),
    ("topk", {"alpha": 0.2, "accumulation": "legacy"}),
    ("random", {"alpha": 0.3}),
    ("choco", {"alpha": 0.2, "gamma": 0.6}),
]


@pytest.mark.parametrize("name,params", CASES, ids=[c[0] for c in CASES])
def test_faulty_round_matches_the_reference(name, params):
    """Models, state and every byte counter, round by round, with lost links and
    offline nodes; CHOCO's s equals W_t xhat over the surviving graph."""
    rng = np.random.default_rng(21)
    n, n_params, rounds = 12, 777, 5
    nb = random_graph(n, rng)
    x0 = initial_models(rng, n, n_params)
    deltas = training_deltas(rng, rounds, n, n_params)
    masks = [_masks(rng, nb, 0.25, 0.35) for _ in range(rounds)]
    masks[2] = (masks[2][0], {(i, j) for i in range(n) for j in nb[i] if i < j})
    masks[3] = (np.ones(n, bool), set())  # a round without faults in between
    alphas = [rng.choice(JWINS_ALPHAS, size=n).astype(np.float32) for _ in masks]
    samples = [rng.random((n, n_params)) < 0.3 for _ in masks]
    sh = make_sharing(name, n_params=n_params, **params)
    net = ref.make_network(name, x0, **params)
    table = neighbor_table(ref.adjacency_from_neighbors(nb), d_max=6)
    step = jax.jit(
        lambda s, x, k, on, up, inputs: faults.sharing_step(
            sh, s, x, k, table, sh.hp, on, up, inputs
        )
    )
    state = sh.init(jnp.asarray(x0))
    x_pkg = x_ref = np.asarray(x0)
    wavelet = name == "jwins"
    for t in range(rounds):
        online, down = masks[t]
        up = _table_masks(table, down)
        on = jnp.asarray(online)
        x_in = np.where(online[:, None], x_pkg + deltas[t], x_pkg).astype(np.float32)
        given, ref_inputs = RoundInputs(), None
        if name == "jwins":
            given = RoundInputs(alphas=jnp.asarray(alphas[t]))
            ref_inputs = {"alpha": [float(a) for a in alphas[t]]}
        elif name == "random":
            given = RoundInputs(mask=jnp.asarray(samples[t]))
            ref_inputs = {"mask": samples[t]}
        old = state
        key = jax.random.PRNGKey(t)
        out, state, stats = step(state, jnp.asarray(x_in), key, on, up, given)
        x_pkg = np.asarray(out)
        x_ref, st = net.step(
            (x_ref + deltas[t]).astype(np.float32),
            nb,
            ref_inputs,
            online=online,
            down=down,
        )
        where = f"{name} round {t}"
        scale = max(1.0, float(np.abs(x_ref).max()))
        atol = (1e-5 * (t + 1) if wavelet else 1e-5) * scale
        np.testing.assert_allclose(x_pkg, x_ref, rtol=1e-5, atol=atol, err_msg=where)
        np.testing.assert_array_equal(x_pkg[~online], x_in[~online], err_msg=where)
        stats = {k: np.asarray(v) for k, v in stats.items()}
        values, meta = message_bytes(stats)
        np.testing.assert_array_equal(values, st.value_bytes, err_msg=where)
        np.testing.assert_array_equal(meta, st.meta_bytes, err_msg=where)
        np.testing.assert_array_equal(stats["receivers"], st.copies, err_msg=where)
        np.testing.assert_array_equal(stats["delivered"], st.delivered, err_msg=where)
        np.testing.assert_array_equal(stats["received"], st.received, err_msg=where)
        np.testing.assert_array_equal(stats["full"], st.full, err_msg=where)
        np.testing.assert_array_equal(stats["online"], online)
        assert delivered_bytes(stats).sum() == st.received_bytes.sum(), where
        # offline nodes keep their strategy state bit for bit
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(old)):
            a, b = np.asarray(a), np.asarray(b)
            if a.ndim and a.shape[0] == n:
                np.testing.assert_array_equal(a[~online], b[~online], err_msg=where)
        if name == "choco":
            live = faults.surviving_table(table, on, up)
            w_t = _dense(live)[online][:, online]
            s = np.asarray(state.s, np.float64)
            xhat = np.asarray(state.xhat, np.float64)
            np.testing.assert_allclose(
                s[online], w_t @ xhat[online], atol=1e-5, err_msg=where
            )
    assert net.history[2].delivered.sum() == 0 and net.history[2].copies.sum() > 0


def test_choco_faults_without_faults_is_choco():
    """CHOCO's recomputed s (faults on) equals its running sum when nothing fails."""
    rng = np.random.default_rng(22)
    n, n_params = 10, 301
    table = neighbor_table(regular(n, 3, seed=2))
    sh = make_sharing("choco", n_params, alpha=0.2, gamma=0.5)
    x = jnp.asarray(initial_models(rng, n, n_params))
    on, up = jnp.ones(n, bool), jnp.ones(table.idx.shape, bool)
    faulty = jax.jit(
        lambda s, x: faults.sharing_step(sh, s, x, None, table, sh.hp, on, up)
    )
    plain = jax.jit(lambda s, x: sh.step(s, x, None, table, sh.hp))
    a = b = sh.init(x)
    for t in range(4):
        x = x + jnp.asarray(training_deltas(rng, 1, n, n_params)[0])
        xa, a, sa = faulty(a, x)
        xb, b, sb = plain(b, x)
        np.testing.assert_allclose(np.asarray(xa), np.asarray(xb), rtol=1e-6, atol=1e-6)
        for k in ("sent", "meta_bytes", "receivers", "full"):
            np.testing.assert_array_equal(np.asarray(sa[k]), np.asarray(sb[k]))
        x = xb


# ---------------------------------------------------------------------------
# Whole rounds of the pipeline
# ---------------------------------------------------------------------------


class _Linear(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return Linear(10, name="fc1")(x.reshape(x.shape[0], -1))


LINEAR = make_spec(
    "linear",
    _Linear(),
    (8, 8, 1),
    10,
    linear_entries("fc1", 64, 10),
    forward_flops=dense_flops(64, 10),
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _config(**changes) -> Config:
    base = {
        "nodes": 8,
        "topology": "regular",
        "degree": 3,
        "partition": "iid",
        "rounds": 6,
        "eval_every": 3,
        "local_steps": 1,
        "batch_size": 8,
        "test_subset": 64,
        "lr": 0.2,
        "seed": 4,
        "train_chunk": 0,
    }
    return Config(**{**base, **changes})


_PROGRAMS: dict = {}


def _program(config: Config, ds):
    """(experiment on the linear model, inputs, hp, jitted init and advance); cached
    by the static key, so configs that differ only in p and q share one program."""
    c = config.validate()
    key = c.static_key()
    if key not in _PROGRAMS:
        base = ex.build_experiment(c, ds)
        sharing = make_sharing(c.sharing, LINEAR.num_params, **c.sharing_params())
        exp = dataclasses.replace(base, model=LINEAR, sharing=sharing)
        _PROGRAMS[key] = (exp, jax.jit(exp.init), jax.jit(exp.advance))
    exp, init, advance = _PROGRAMS[key]
    return exp, ex.build_inputs(c, ds), ex.hparams(exp, c), (init, advance)


def _run(config, ds, hp_config=None, rounds=3, inputs=None):
    exp, inp, hp, (init, advance) = _program(config, ds)
    if hp_config is not None:
        hp = ex.hparams(exp, hp_config.validate())
    inp = inputs if inputs is not None else inp
    state0 = init(jax.random.PRNGKey(config.seed), hp)
    state, metrics = advance(state0, hp, inp, jnp.int32(rounds))
    return exp, state0, state, jax.device_get(metrics)


def _assert_trees_equal(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize("sharing", ["full", "jwins"])
def test_zero_probabilities_give_the_fault_free_run_bit_for_bit(digits, sharing):
    """The faults program with p = q = 0 equals the fault-free program exactly
    (models, optimizer, strategy state, key, every metric): the fault draws use a
    stream of their own and nothing down leaves the table as it is. (CHOCO with faults
    recomputes s and is equal to float precision:
    test_choco_faults_without_faults_is_choco.)"""
    extra = {"level": 1} if sharing == "jwins" else {}
    off = _config(sharing=sharing, **extra)
    on = off.replace(link_failure=0.3, churn=0.1)
    _, _, s_off, m_off = _run(off, digits)
    _, _, s_on, m_on = _run(on, digits, hp_config=off)
    _assert_trees_equal(s_on, s_off)
    assert m_on.keys() == m_off.keys()
    for k in m_off:
        np.testing.assert_array_equal(m_on[k], m_off[k], err_msg=k)
    assert m_off["online"].all()
    np.testing.assert_array_equal(m_off["delivered"], m_off["receivers"])


def test_all_links_down_is_training_alone(digits):
    """p = 1: no message arrives, every model follows its own local training; the
    messages still count as sent."""
    config = _config(sharing="full", link_failure=1.0)
    exp, state0, state, m = _run(config, digits, rounds=3)
    inputs = ex.build_inputs(config.validate(), digits)
    c = exp.config
    hp = ex.hparams(exp, c)

    @jax.jit
    def alone(x, opt, key):
        for _ in range(3):
            key, k_batch, _ = jax.random.split(key, 3)
            ids, w = sample_batches(k_batch, inputs.nodes, c.local_steps, c.batch_size)
            x, opt, _ = training.train_all(
                exp.model,
                exp.task,
                exp.optimizer(hp),
                x,
                opt,
                inputs.train_x,
                inputs.train_y,
                ids,
                w,
                c.train_chunk,
            )
        return x

    x = alone(state0.x, state0.opt, state0.key)
    np.testing.assert_allclose(np.asarray(state.x), np.asarray(x), rtol=1e-6, atol=1e-7)
    assert not np.allclose(np.asarray(state.x[0]), np.asarray(state.x[1]))
    assert (m["delivered"] == 0).all() and (m["received"] == 0).all()
    np.testing.assert_array_equal(m["receivers"], 3)
    assert (message_bytes(m)[0] > 0).all() and (delivered_bytes(m) == 0).all()


def test_all_nodes_offline_changes_nothing(digits):
    """q = 1: no node trains, sends or receives; every state stays bit for bit."""
    config = _config(sharing="jwins", level=1, churn=1.0)
    _, state0, state, m = _run(config, digits, rounds=3)
    _assert_trees_equal(
        (state.x, state.opt, state.share.ref, state.share.acc),
        (state0.x, state0.opt, state0.share.ref, state0.share.acc),
    )
    assert int(state.round) == 3
    assert not m["online"].any() and np.isnan(m["train_loss"]).all()
    for k in ("sent", "meta_bytes", "receivers", "delivered", "received", "full"):
        assert not m[k].any(), k


def test_vmapped_fault_probabilities_equal_each_run_alone(digits):
    configs = [
        _config(sharing="full", link_failure=p, churn=q, seed=s)
        for p, q, s in ((0.2, 0.0, 4), (0.6, 0.25, 5))
    ]
    exp, _, _, _ = _program(configs[0], digits)
    items = [ex.build_inputs(c.validate(), digits) for c in configs]
    hps = [ex.hparams(exp, c.validate()) for c in configs]
    stacked = ex.stack_inputs(items)
    hp = ex.stack_hparams(hps)
    keys = jnp.stack([jax.random.PRNGKey(c.seed) for c in configs])
    state = jax.jit(jax.vmap(exp.init))(keys, hp)
    out = jax.jit(jax.vmap(exp.block, in_axes=(0, 0, ex.inputs_axes(stacked), None)))(
        state, hp, stacked, jnp.int32(3)
    )
    for b, c in enumerate(configs):
        _, _, alone, m = _run(c, digits, rounds=3, inputs=items[b])
        np.testing.assert_allclose(
            np.asarray(out[0].x[b]), np.asarray(alone.x), rtol=1e-6, atol=1e-6
        )
        for k in ("online", "receivers", "delivered", "received", "sent"):
            np.testing.assert_array_equal(np.asarray(out[1][k][b]), m[k], err_msg=k)
    for b in (0, 1):  # some copies were lost in both
        assert np.asarray(out[1]["receivers"][b] - out[1]["delivered"][b]).sum() > 0


def test_churn_schedule_run_and_received_bytes(digits, tmp_path):
    """Scheduled offline nodes skip their rounds; the byte counters (sent, delivered,
    received) match a NumPy count over the graph; RunLog reports received bytes."""
    path = tmp_path / "churn.txt"
    path.write_text("0-1: 0 1\n2: 5\n")
    config = _config(sharing="full", churn_schedule=str(path), out_dir=str(tmp_path))
    exp, _, _, m = _run(config, digits, rounds=3)
    online = np.ones((3, 8), bool)
    online[0:2, [0, 1]] = False
    online[2, 5] = False
    np.testing.assert_array_equal(m["online"][:3], online)
    inputs = ex.build_inputs(exp.config, digits)
    adj = np.zeros((8, 8), bool)
    idx = np.asarray(inputs.graph.idx)
    for i in range(8):
        adj[i, idx[i][idx[i] != i]] = True
    for t in range(3):
        on = online[t]
        both = adj & on[:, None] & on[None, :]
        np.testing.assert_array_equal(m["receivers"][t], both.sum(axis=1))
        np.testing.assert_array_equal(m["delivered"][t], both.sum(axis=1))
        np.testing.assert_array_equal(m["sent"][t], np.where(on, LINEAR.num_params, 0))
        np.testing.assert_array_equal(
            m["received"][t], both.sum(axis=1) * LINEAR.num_params
        )
    # nodes 0 and 1 were offline in rounds 0 and 1, so they did not change there
    _, s0, s2, _ = _run(config, digits, rounds=2)
    np.testing.assert_array_equal(np.asarray(s2.x)[:2], np.asarray(s0.x)[:2])
    assert not np.array_equal(np.asarray(s2.x)[2:], np.asarray(s0.x)[2:])
    # results: received bytes next to sent bytes
    log = RunLog.create(exp.config, tmp_path, {})
    ev = {k: np.ones(8) for k in ("test_acc", "test_loss", "train_loss", "train_acc")}
    ev.update(consensus=np.float32(0), finite=np.ones(8, bool))
    rec = log.record({k: v[:3] for k, v in m.items()}, ev)
    sent = 4 * LINEAR.num_params * m["receivers"][:3].sum()
    got = 4 * LINEAR.num_params * m["delivered"][:3].sum()
    assert rec["bytes_per_node"] == sent / 8
    assert rec["received_bytes_per_node"] == got / 8
    assert np.isfinite(rec["minibatch_loss"])
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert line["received_bytes_per_node"] == got / 8
    again = RunLog(exp.config, tmp_path, {}, counters=log.counters())
    assert again.delivered_cum.sum() == got
    old = {k: v for k, v in log.counters().items() if k != "delivered_cum"}
    assert RunLog(exp.config, tmp_path, {}, counters=old).delivered_cum.sum() == sent
