"""The paper's FEMNIST, CelebA, Shakespeare, Reddit and MovieLens models (SPEC 7.2,
App. C).

Sizes and flat layouts against Appendix C, the flat round trip, the initial
distributions, forward passes against the independent NumPy reference of
``jwins_jax.testing.reference.models_np`` on the same flat vectors, and one vmapped gradient
per model through :mod:`jwins_jax.tasks`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import training
from jwins_jax.data import DATASETS
from jwins_jax.errors import ConfigError
from jwins_jax.models import MODELS, get_model
from jwins_jax.models.sequence import lstm_layer
from jwins_jax.tasks import TASKS
from jwins_jax.testing.reference import models_np

LAYOUTS = {
    "femnist_cnn": models_np.FEMNIST_LAYOUT,
    "celeba_cnn": models_np.CELEBA_LAYOUT,
    "shakespeare_lstm": models_np.LSTM_LAYOUT,
    "reddit_rnn": models_np.REDDIT_LAYOUT,
    "movielens_mf": models_np.MF_LAYOUT,
}
NEW_MODELS = tuple(LAYOUTS)
SIZES = {
    "femnist_cnn": 1_690_046,
    "celeba_cnn": 30_242,
    "shakespeare_lstm": 2_683_708,
    "reddit_rnn": 4_317_895,
    "movielens_mf": 206_680,
}


def _inputs(spec, batch: int, seed: int) -> jax.Array:
    """A batch of valid inputs of the model's shape and dtype."""
    rng = np.random.default_rng(seed)
    if spec.name == "shakespeare_lstm":
        return jnp.asarray(rng.integers(0, 92, size=(batch, 80)), jnp.int32)
    if spec.name == "reddit_rnn":  # trailing <PAD> ids (0) as LEAF's last rows have
        ids = rng.integers(1, 9999, size=(batch, 10))
        ids[0, 6:] = 0
        ids[-1, -1] = 9998
        return jnp.asarray(ids, jnp.int32)
    if spec.name == "movielens_mf":
        users = rng.integers(0, 610, size=batch)
        items = rng.integers(0, 9724, size=batch)
        return jnp.asarray(np.stack([users, items], axis=1), jnp.int32)
    if spec.name == "celeba_cnn":  # raw 0-255 pixels
        return jnp.asarray(rng.integers(0, 256, size=(batch, 84, 84, 3)), jnp.float32)
    return jnp.asarray(rng.uniform(0.0, 1.0, size=(batch, 28, 28, 1)), jnp.float32)


# ---------------------------------------------------------------- registry, layout


def test_registry_and_default_models():
    assert set(NEW_MODELS) <= set(MODELS)
    model = {name: info.defaults.model for name, info in DATASETS.items()}
    assert model["femnist"] == model["synthetic_femnist"] == "femnist_cnn"
    assert model["celeba"] == model["synthetic_celeba"] == "celeba_cnn"
    assert model["shakespeare"] == model["synthetic_shakespeare"] == "shakespeare_lstm"
    assert model["reddit"] == model["synthetic_reddit"] == "reddit_rnn"
    assert model["movielens"] == model["synthetic_movielens"] == "movielens_mf"
    assert all(m in MODELS for m in model.values())
    with pytest.raises(ConfigError, match="shakespeare_lstm"):
        get_model("lstm")


@pytest.mark.parametrize("name", NEW_MODELS)
def test_layout_matches_appendix_c(name):
    spec = get_model(name)
    assert spec.num_params == SIZES[name]
    got = [(e.torch_name, e.torch_shape, e.offset, e.end) for e in spec.layout]
    assert got == LAYOUTS[name]


def test_input_and_output_conventions():
    assert get_model("femnist_cnn").input_shape == (28, 28, 1)
    assert get_model("celeba_cnn").input_shape == (84, 84, 3)
    lstm, mf = get_model("shakespeare_lstm"), get_model("movielens_mf")
    assert (lstm.input_shape, lstm.input_dtype, lstm.num_classes) == (
        (80,),
        "int32",
        92,
    )
    assert (mf.input_shape, mf.input_dtype, mf.num_classes) == ((2,), "int32", 0)
    assert get_model("femnist_cnn").input_dtype == "float32"
    assert get_model("femnist_cnn").num_classes == 62
    assert get_model("celeba_cnn").num_classes == 2
    rnn = get_model("reddit_rnn")
    assert (rnn.input_shape, rnn.input_dtype, rnn.num_classes) == ((10,), "int32", 9999)


@pytest.mark.parametrize("name", NEW_MODELS)
def test_flatten_unflatten_round_trip_is_exact(name):
    spec = get_model(name)
    flat = jnp.asarray(
        np.random.default_rng(1).normal(size=(2, spec.num_params)), jnp.float32
    )
    params = spec.unflatten(flat)
    for e in spec.layout:
        leaf = params["params"][e.flax_path[0]][e.flax_path[1]]
        assert leaf.shape == (2, *e.torch_shape)  # PyTorch layout stored directly
    np.testing.assert_array_equal(np.asarray(spec.flatten(params)), np.asarray(flat))


def test_flatten_of_module_init_runs_the_same_model():
    spec = get_model("movielens_mf")
    x = _inputs(spec, 3, 2)
    variables = jax.jit(spec.module.init)(jax.random.key(0), x)
    flat = spec.flatten(variables)
    assert flat.shape == (spec.num_params,)
    np.testing.assert_allclose(
        np.asarray(jax.jit(spec.apply_flat)(flat, x)),
        np.asarray(jax.jit(spec.module.apply)(variables, x)),
        rtol=1e-6,
    )


def test_lstm_gate_blocks_land_in_row_order():
    spec = get_model("shakespeare_lstm")
    params = spec.unflatten(jnp.zeros(spec.num_params))
    layer = params["params"]["lstm_l1"]
    # Row 2 * 256 + 5 is unit 5 of the cell candidate g; column 7 is input 7.
    layer["weight_ih"] = layer["weight_ih"].at[2 * 256 + 5, 7].set(1.0)
    flat = np.asarray(spec.flatten(params))
    assert np.flatnonzero(flat).tolist() == [273120 + (2 * 256 + 5) * 256 + 7]


# ---------------------------------------------------------------- initialisation


@pytest.mark.parametrize("name", NEW_MODELS)
def test_init_flat_distributions(name):
    spec = get_model(name)
    flat = np.asarray(spec.init_flat(jax.random.key(3)))
    assert flat.dtype == np.float32 and flat.shape == (spec.num_params,)
    np.testing.assert_array_equal(flat, np.asarray(spec.init_flat(jax.random.key(3))))
    t = models_np.tensors(flat, LAYOUTS[name])
    for key, value in t.items():
        if key == "embedding.weight":  # nn.Embedding default N(0, 1)
            if name == "reddit_rnn":  # padding_idx=0: row 0 zero
                assert not value[0].any() and value[1:].all()
            assert abs(value.mean()) < 0.15 and 0.9 < value.std() < 1.1
            assert np.abs(value).max() > 2.0  # not a uniform in [-1, 1]
            continue
        if name == "movielens_mf":
            bound = 0.05
        elif key.startswith(("lstm.", "rnn_cells.")):
            bound = 1.0 / 16.0  # 1/sqrt(hidden)
        else:  # conv / linear: 1/sqrt(fan_in) from the weight's shape
            weight = t[key.replace(".bias", ".weight")]
            bound = 1.0 / np.sqrt(np.prod(weight.shape[1:]))
        assert np.abs(value).max() <= bound * (1 + 1e-6), key
        if value.size >= 1000:
            assert np.abs(value).max() > 0.95 * bound, key
            assert abs(value.mean()) < 0.1 * bound, key
            np.testing.assert_allclose(value.std(), bound / np.sqrt(3), rtol=0.1)


# ---------------------------------------------------------------- forward vs NumPy


def _scaled_init(spec, seed: int) -> jax.Array:
    """PyTorch-default init with biases and embeddings made clearly non-zero."""
    flat = np.asarray(spec.init_flat(jax.random.key(seed))).copy()
    rng = np.random.default_rng(seed)
    for e in spec.layout:
        if e.torch_name.endswith("bias"):
            flat[e.offset : e.end] = rng.uniform(-0.5, 0.5, e.size)
    return jnp.asarray(flat)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("femnist_cnn", models_np.femnist_forward),
        ("celeba_cnn", models_np.celeba_forward),
        ("shakespeare_lstm", models_np.lstm_forward),
        ("reddit_rnn", models_np.reddit_forward),
    ],
)
def test_forward_matches_numpy_reference(name, reference):
    spec = get_model(name)
    flat = _scaled_init(spec, 4)
    if name == "reddit_rnn":  # a stored padding row is read as stored (PyTorch)
        flat = flat.at[:200].set(0.5)
    x = _inputs(spec, 2, 5)
    got = np.asarray(jax.jit(spec.apply_flat)(flat, x))
    want = reference(flat, x)
    assert got.shape == (2, spec.num_classes) and got.dtype == np.float32
    scale = np.abs(want).max()
    assert scale > 0.05  # a non-trivial output
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_mf_forward_matches_numpy_reference():
    spec = get_model("movielens_mf")
    flat = jnp.asarray(
        np.random.default_rng(6).normal(size=spec.num_params), jnp.float32
    )
    x = _inputs(spec, 7, 7)
    x = x.at[0].set(jnp.array([609, 9723], jnp.int32))  # the last rows
    got = np.asarray(jax.jit(spec.apply_flat)(flat, x))
    assert got.shape == (7,)
    np.testing.assert_allclose(got, models_np.mf_forward(flat, x), atol=1e-4)


def test_lstm_layer_matches_numpy_on_small_sizes():
    rng = np.random.default_rng(8)
    b, steps, feat, hidden = 3, 6, 5, 4
    x = rng.normal(size=(b, steps, feat))
    w_ih = rng.normal(size=(4 * hidden, feat))
    w_hh = rng.normal(size=(4 * hidden, hidden))
    b_ih, b_hh = rng.normal(size=4 * hidden), rng.normal(size=4 * hidden)
    got = lstm_layer(
        jnp.asarray(x.transpose(1, 0, 2), jnp.float32),
        *(jnp.asarray(a, jnp.float32) for a in (w_ih, w_hh, b_ih, b_hh)),
    )
    want = models_np.lstm_layer(x, w_ih, w_hh, b_ih, b_hh)
    np.testing.assert_allclose(np.asarray(got).transpose(1, 0, 2), want, atol=1e-5)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("name", NEW_MODELS)
def test_value_and_grad_under_vmap_over_two_nodes(name):
    spec = get_model(name)
    task = TASKS["rating" if spec.num_classes == 0 else "classification"]
    n, b = 2, 2
    flat = jnp.stack([spec.init_flat(jax.random.key(10 + i)) for i in range(n)])
    x = jnp.stack([_inputs(spec, b, 20 + i) for i in range(n)])
    if task.name == "rating":
        y = jnp.asarray([[3.5, 1.0], [5.0, 0.5]], jnp.float32)
    else:
        y = jnp.asarray([[0, 1], [1, 0]], jnp.int32)

    def mean_loss(f, xb, yb):
        return jnp.mean(task.loss(spec.apply_flat(f, xb), yb))

    value, grad = jax.jit(jax.vmap(jax.value_and_grad(mean_loss)))(flat, x, y)
    assert value.shape == (n,) and grad.shape == (n, spec.num_params)
    assert grad.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(value))) and bool(jnp.all(jnp.isfinite(grad)))
    assert bool(jnp.all(jnp.abs(grad).max(axis=1) > 0))


# ---------------------------------------------------------------- Reddit's padding row


def test_reddit_padding_row_gets_no_gradient_and_stays_zero():
    """padding_idx=0: row 0 of the embedding has a zero gradient even where the
    inputs hold id 0 and the row is not zero, and local SGD (with momentum and
    weight decay) keeps a zero row 0 exactly zero while the rows used move. That
    the row is read as stored is checked against the references (NumPy above,
    PyTorch in test_torch_reference.py)."""
    spec = get_model("reddit_rnn")
    task = TASKS["classification"]
    x = _inputs(spec, 3, 9)  # row 0 of the batch ends in four <PAD> ids
    y = jnp.asarray([3, 17, 9998], jnp.int32)
    flat = spec.init_flat(jax.random.key(5))
    moved = flat.at[:200].set(0.25)

    def mean_loss(f):
        return jnp.mean(task.loss(spec.apply_flat(f, x), y))

    grad = np.asarray(jax.jit(jax.grad(mean_loss))(moved))
    assert not grad[:200].any()
    used = int(x[1, 0])
    assert np.abs(grad[used * 200 : (used + 1) * 200]).max() > 0

    tx = training.make_optimizer(
        jnp.float32(0.5), jnp.float32(0.9), jnp.float32(0.01), True
    )
    ids = jnp.asarray([[0, 1, 2], [2, 0, 1]], jnp.int32)  # 2 steps of batch 3
    new, _, _ = jax.jit(
        lambda f: training.local_train(
            spec, task, tx, f, tx.init(f), x, y, ids, jnp.ones((2, 3))
        )
    )(flat)
    new = np.asarray(new)
    assert not new[:200].any()
    assert (
        np.abs(
            new[used * 200 : (used + 1) * 200]
            - np.asarray(flat)[used * 200 : (used + 1) * 200]
        ).max()
        > 0
    )
