"""The simulator core: vmapped training, the scanned round, compile-once, make_run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax.config import Config
from jwins_jax.data.batches import sample_batches
from jwins_jax.simulator import Simulation, block_lengths, make_run


def test_vmapped_local_training_equals_per_node_loop(tiny_config):
    sim = Simulation(tiny_config.replace(nodes=3, momentum=0.9))
    state = sim.init(jax.random.PRNGKey(0))
    # make the three nodes' models differ so a mix-up between nodes would show
    x = state.x + 0.01 * jax.random.normal(jax.random.PRNGKey(1), state.x.shape)
    ids, w = sample_batches(jax.random.PRNGKey(2), sim.node_data, 3, 8)
    xv, optv, lossv = jax.jit(jax.vmap(sim.local_train))(x, state.opt, ids, w)
    for i in range(3):
        opt_i = jax.tree.map(lambda a: a[i], state.opt)
        xi, _, li = jax.jit(sim.local_train)(x[i], opt_i, ids[i], w[i])
        np.testing.assert_allclose(np.asarray(xv[i]), np.asarray(xi), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(lossv[i]), float(li), rtol=1e-5)
    assert not np.allclose(np.asarray(xv), np.asarray(x)), "training changed nothing"


def test_all_nodes_start_from_the_same_model(tiny_config):
    sim = Simulation(tiny_config)
    x = np.asarray(sim.init(jax.random.PRNGKey(3)).x)
    assert x.shape == (8, sim.n_params)
    assert np.all(x == x[0])


def test_rounds_compile_once_and_advance_is_deterministic(tiny_config):
    cfg = tiny_config.replace(sharing="jwins")
    sim = Simulation(cfg)
    state = sim.init(jax.random.PRNGKey(0))
    state, m1 = sim.advance(state, 5)
    traces = sim.trace_count
    state, m2 = sim.advance(state, 5)
    state, m3 = sim.advance(state, 5)
    assert sim.trace_count == traces, "advancing again must not retrace"
    assert int(state.round) == 15
    assert m1["value_bytes"].shape == (5, 8)
    # same seed, same history
    sim2 = Simulation(cfg)
    s2 = sim2.init(jax.random.PRNGKey(0))
    s2, n1 = sim2.advance(s2, 5)
    np.testing.assert_array_equal(np.asarray(m1["value_bytes"]), np.asarray(n1["value_bytes"]))


def test_make_run_vmaps_over_seeds(tiny_config):
    cfg = tiny_config.replace(rounds=6, eval_every=4)
    run = make_run(cfg)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state, hist = jax.jit(jax.vmap(run))(keys)
    assert hist["rounds"]["value_bytes"].shape == (2, 6, 8)
    assert hist["evals"]["test_acc"].shape == (2, 2, 8)  # evaluations after rounds 4 and 6
    # different seeds give different models
    assert not np.allclose(np.asarray(state.x[0]), np.asarray(state.x[1]))
    # and one seed alone gives the same as its slice of the batch
    s0, h0 = jax.jit(run)(keys[0])
    np.testing.assert_allclose(np.asarray(s0.x), np.asarray(state.x[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sharing", ["full", "jwins", "choco"])
def test_dynamic_topology_runs(tiny_config, sharing):
    cfg = tiny_config.replace(topology="regular", degree=3, dynamic=True, rounds=4,
                              eval_every=2, sharing=sharing)
    sim = Simulation(cfg)
    state = sim.init(jax.random.PRNGKey(0))
    state, m = sim.advance(state, 4)
    # every node has exactly 3 receivers per round on a 3-regular graph
    if sharing == "full":
        np.testing.assert_array_equal(np.asarray(m["value_bytes"]), 3 * 4 * sim.n_params)
    assert np.all(np.isfinite(np.asarray(state.x)))


def test_full_sharing_round_without_training_preserves_mean(tiny_config):
    sim = Simulation(tiny_config)
    x = jax.random.normal(jax.random.PRNGKey(0), (8, sim.n_params))
    state = sim.sharing.init(x)
    x2, _, _ = sim.sharing.step(state, x, jax.random.PRNGKey(1), sim.table)
    np.testing.assert_allclose(np.asarray(x2.mean(0)), np.asarray(x.mean(0)), atol=1e-5)


def test_block_lengths():
    assert block_lengths(10, 5) == [5, 5]
    assert block_lengths(11, 5) == [5, 5, 1]
    assert block_lengths(3, 5) == [3]


def test_default_config_is_the_paper_graph():
    c = Config().validate()
    sim = Simulation(c.replace(rounds=1))
    assert sim.adjacency.shape == (96, 96)
    assert sorted(np.flatnonzero(sim.adjacency.sum(1) == 3).tolist()) == [15, 16, 42, 43]
    assert jnp.asarray(sim.table.degree).sum() == 2 * 190


def test_training_in_node_groups_equals_all_at_once(tiny_config):
    """train_chunk only changes how the work is scheduled, not the result."""
    from jwins_jax.simulator import chunk_size

    assert chunk_size(96, 8) == 8 and chunk_size(96, 10) == 10 and chunk_size(7, 3) == 3
    assert chunk_size(8, 0) == 8 and chunk_size(8, 50) == 8
    sims = [Simulation(tiny_config.replace(train_chunk=c)) for c in (0, 3)]
    state = sims[0].init(jax.random.PRNGKey(0))
    x = state.x + 0.01 * jax.random.normal(jax.random.PRNGKey(1), state.x.shape)
    ids, w = sample_batches(jax.random.PRNGKey(2), sims[0].node_data, 2, 8)
    outs = [jax.jit(s.train_all)(x, state.opt, ids, w) for s in sims]
    np.testing.assert_allclose(np.asarray(outs[0][0]), np.asarray(outs[1][0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(outs[0][2]), np.asarray(outs[1][2]), rtol=1e-5)
