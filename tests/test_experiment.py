"""The pure pipeline: build, init, round, block, evaluate, make_run (issue 8)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import compiler, training
from jwins_jax import experiment as ex
from jwins_jax.config import Config
from jwins_jax.data import load_dataset
from jwins_jax.data.batches import sample_batches


def _tiny(**changes) -> Config:
    base = dict(
        nodes=6,
        topology="ring",
        partition="iid",
        rounds=4,
        eval_every=2,
        local_steps=1,
        batch_size=8,
        test_subset=64,
        lr=0.1,
        seed=3,
    )
    return Config(**{**base, **changes})


def test_vmapped_local_training_equals_per_node_loop(tiny_config):
    exp, inputs, hp = ex.build(tiny_config.replace(nodes=3, momentum=0.9))
    state = jax.jit(exp.init)(jax.random.PRNGKey(0), hp)
    x = state.x + 0.01 * jax.random.normal(jax.random.PRNGKey(1), state.x.shape)
    ids, w = sample_batches(jax.random.PRNGKey(2), inputs.nodes, 3, 8)
    tx = exp.optimizer(hp)

    def one(x, opt, ids, w):
        return training.local_train(
            exp.model, exp.task, tx, x, opt, inputs.train_x, inputs.train_y, ids, w
        )

    xv, optv, lossv = jax.jit(jax.vmap(one))(x, state.opt, ids, w)
    for i in range(3):
        opt_i = jax.tree.map(lambda a: a[i], state.opt)
        xi, _, li = jax.jit(one)(x[i], opt_i, ids[i], w[i])
        np.testing.assert_allclose(
            np.asarray(xv[i]), np.asarray(xi), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(float(lossv[i]), float(li), rtol=1e-5)
    assert not np.allclose(np.asarray(xv), np.asarray(x)), "training changed nothing"


def test_all_nodes_start_from_the_same_model(tiny_config):
    exp, _, hp = ex.build(tiny_config)
    x = np.asarray(jax.jit(exp.init)(jax.random.PRNGKey(3), hp).x)
    assert x.shape == (8, exp.n_params)
    assert np.all(x == x[0])


def test_one_program_for_every_block_length_and_deterministic():
    """Blocks of any length (the last one shorter) reuse one compiled program."""
    exp, inputs, hp = ex.build(_tiny(sharing="jwins", level=2, rounds=5, eval_every=3))
    block = jax.jit(chex.assert_max_traces(exp.block, n=1), donate_argnums=0)
    init = jax.jit(exp.init)
    state = init(jax.random.PRNGKey(0), hp)
    state, r1, e1 = block(state, hp, inputs, jnp.int32(3))
    state, r2, e2 = block(state, hp, inputs, jnp.int32(2))
    assert int(state.round) == 5
    assert r1["sent"].shape == (3, 6) and e1["test_acc"].shape == (6,)
    assert np.all(np.asarray(r2["sent"])[2] == 0), (
        "rounds past the block length stay empty"
    )
    again = init(jax.random.PRNGKey(0), hp)
    again, s1, _ = block(again, hp, inputs, jnp.int32(3))
    np.testing.assert_array_equal(np.asarray(r1["sent"]), np.asarray(s1["sent"]))


def _hlo_size(dataset) -> int:
    exp, inputs, hp = ex.build(_tiny(), dataset=dataset)
    state = jax.jit(exp.init)(jax.random.PRNGKey(0), hp)
    return len(jax.jit(exp.block).lower(state, hp, inputs, jnp.int32(2)).as_text())


def test_no_dataset_is_a_constant_of_the_program():
    """The program's size does not grow with the training set (data are arguments)."""
    full = load_dataset("digits")
    small = full.__class__(
        **{
            **full.__dict__,
            "x_train": full.x_train[:200],
            "y_train": full.y_train[:200],
        }
    )
    big, little = _hlo_size(full), _hlo_size(small)
    assert full.x_train.nbytes > 5 * small.x_train.nbytes
    assert abs(big - little) < 0.01 * little, (big, little)
    assert big < full.x_train.nbytes, "the program text is smaller than the data"


def test_make_run_vmaps_over_seeds_and_equals_one_seed():
    run, hp, inputs = ex.make_run(_tiny(rounds=5, eval_every=3))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state, hist = compiler.jit(jax.vmap(run, in_axes=(0, None, None)))(keys, hp, inputs)
    assert hist["rounds"]["sent"].shape == (2, 5, 6)
    assert hist["evals"]["test_acc"].shape == (2, 2, 6)  # after rounds 3 and 5
    assert not np.allclose(np.asarray(state.x[0]), np.asarray(state.x[1]))
    s0, h0 = jax.jit(run)(keys[0], hp, inputs)
    np.testing.assert_allclose(
        np.asarray(s0.x), np.asarray(state.x[0]), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(h0["evals"]["test_acc"]),
        np.asarray(hist["evals"]["test_acc"][0]),
        atol=1e-4,
    )


@pytest.mark.parametrize("sharing", ["full", "jwins", "choco"])
def test_dynamic_topology_runs(sharing):
    exp, inputs, hp = ex.build(
        _tiny(
            topology="regular",
            degree=3,
            dynamic=True,
            sharing=sharing,
            level=2 if sharing == "jwins" else None,
        )
    )
    assert inputs.graph is None  # drawn inside the round, nothing banked
    state = jax.jit(exp.init)(jax.random.PRNGKey(0), hp)
    state, per_round, ev = jax.jit(exp.block)(state, hp, inputs, jnp.int32(2))
    np.testing.assert_array_equal(np.asarray(per_round["receivers"]), 3)
    assert np.all(np.asarray(ev["finite"]))


def test_default_config_is_the_paper_graph():
    exp, inputs, _ = ex.build(Config(rounds=1))
    degree = np.asarray(inputs.graph.degree)
    assert degree.shape == (96,)
    assert sorted(np.flatnonzero(degree == 3).tolist()) == [15, 16, 42, 43]
    assert degree.sum() == 2 * 190


def test_training_in_node_groups_equals_all_at_once(tiny_config):
    """train_chunk only changes how the work is scheduled, not the result; a group
    size that does not divide n pads the last group."""
    assert training.chunk_size(96, 8) == 8 and training.chunk_size(8, 0) == 8
    assert training.chunk_size(8, 50) == 8 and training.chunk_size(97, 8) == 8
    outs = []
    for chunk in (0, 3):
        exp, inputs, hp = ex.build(tiny_config.replace(train_chunk=chunk))
        state = jax.jit(exp.init)(jax.random.PRNGKey(0), hp)
        x = state.x + 0.01 * jax.random.normal(jax.random.PRNGKey(1), state.x.shape)
        ids, w = sample_batches(jax.random.PRNGKey(2), inputs.nodes, 2, 8)
        tx = exp.optimizer(hp)
        outs.append(
            jax.jit(
                lambda x, o: training.train_all(
                    exp.model,
                    exp.task,
                    tx,
                    x,
                    o,
                    inputs.train_x,
                    inputs.train_y,
                    ids,
                    w,
                    exp.config.train_chunk,
                )
            )(x, state.opt)
        )
    np.testing.assert_allclose(
        np.asarray(outs[0][0]), np.asarray(outs[1][0]), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(outs[0][2]), np.asarray(outs[1][2]), rtol=1e-5
    )


def test_stacked_inputs_run_each_config_as_alone():
    """Two seeds (different partitions and graphs, padded to a common shape) and two
    learning rates in one vmapped block equal the two configs run one by one."""
    configs = [
        _tiny(topology="small_world", degree=4, partition="dirichlet", seed=s, lr=lr)
        for s, lr in ((1, 0.05), (2, 0.2))
    ]
    ds = load_dataset("digits")
    exp = ex.build_experiment(configs[0], ds)
    items = [ex.build_inputs(c, ds) for c in configs]
    hps = [ex.hparams(exp, c) for c in configs]
    widths = {i.nodes.index.shape[1] for i in items} | {
        i.graph.idx.shape[1] for i in items
    }
    assert len(widths) > 2, "the test needs configs whose shapes differ"
    stacked = ex.stack_inputs(items)
    hp = ex.stack_hparams(hps)
    keys = jnp.stack([jax.random.PRNGKey(c.seed) for c in configs])
    axes = ex.inputs_axes(stacked)
    state = jax.jit(jax.vmap(exp.init))(keys, hp)
    out = jax.jit(jax.vmap(exp.block, in_axes=(0, 0, axes, None)))(
        state, hp, stacked, jnp.int32(2)
    )
    for b, c in enumerate(configs):
        s = jax.jit(exp.init)(jax.random.PRNGKey(c.seed), hps[b])
        s, per_round, ev = jax.jit(exp.block)(s, hps[b], items[b], jnp.int32(2))
        np.testing.assert_allclose(
            np.asarray(out[0].x[b]), np.asarray(s.x), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_array_equal(
            np.asarray(out[1]["receivers"][b]), np.asarray(per_round["receivers"])
        )
        np.testing.assert_allclose(
            np.asarray(out[2]["test_acc"][b]), np.asarray(ev["test_acc"]), atol=1e-4
        )


def test_many_local_steps_run_in_a_loop_and_equal_unrolled_steps(monkeypatch):
    """Past UNROLL_STEPS the steps run in a lax.scan (compile time stays flat); the
    result is the same as unrolling them."""
    exp, inputs, hp = ex.build(_tiny(nodes=3, local_steps=10))
    state = jax.jit(exp.init)(jax.random.PRNGKey(0), hp)
    ids, w = sample_batches(jax.random.PRNGKey(2), inputs.nodes, 10, 8)
    tx = exp.optimizer(hp)

    def make_train():  # a new function each time: no trace cache shared
        def train(x, opt):
            return training.local_train(
                exp.model,
                exp.task,
                tx,
                x,
                opt,
                inputs.train_x,
                inputs.train_y,
                ids[0],
                w[0],
            )

        return jax.jit(train)

    opt0 = jax.tree.map(lambda a: a[0], state.opt)
    train = make_train()
    looped = train(state.x[0], opt0)
    assert "while" in train.lower(state.x[0], opt0).as_text()
    monkeypatch.setattr(training, "UNROLL_STEPS", 100)
    train = make_train()
    unrolled = train(state.x[0], opt0)
    assert "while" not in train.lower(state.x[0], opt0).as_text()
    np.testing.assert_allclose(
        np.asarray(looped[0]), np.asarray(unrolled[0]), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(float(looped[2]), float(unrolled[2]), rtol=1e-5)
