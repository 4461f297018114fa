"""The per-node PyTorch engine (jwins_jax.testing.reference.torch_nodes) against the
simulator: the same forward passes, SGD steps and evaluation metrics."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import evaluation, tasks, training
from jwins_jax.models import MODELS, get_model

pytest.importorskip("torch")

from jwins_jax.testing.reference import torch_nodes as tn  # noqa: E402
from jwins_jax.testing.reference.layout import ModelLayout  # noqa: E402


def test_every_registered_model_has_a_torch_builder():
    assert set(MODELS) <= set(tn.BUILDERS)


def test_unknown_model_names_the_registered_builders():
    spec = dataclasses.replace(get_model("digits_cnn"), name="resnet")
    with pytest.raises(KeyError, match="digits_cnn"):
        tn.build_torch_model(ModelLayout.of(spec))


def test_model_description_survives_a_json_round_trip():
    import json

    m = ModelLayout.of(get_model("shakespeare_lstm"))
    again = ModelLayout.from_dict(json.loads(json.dumps(dataclasses.asdict(m))))
    assert again == m and again.integer_inputs and not again.rating
    assert ModelLayout.of(get_model("movielens_mf")).rating


# ---------------------------------------------------------------- with torch

# Small batches keep the big models (FEMNIST 1.7M, LSTM 2.7M, RNN 4.3M params) fast.
BATCH = {"femnist_cnn": 2, "shakespeare_lstm": 2, "reddit_rnn": 2}
# Learning rates of the SGD test: CelebA's raw 0-255 pixels need a small one.
LR = {"celeba_cnn": 1e-4}


def _inputs(spec, rng, size: int) -> np.ndarray:
    """Random inputs of the model's shape and kind."""
    if spec.name == "movielens_mf":  # 0-based [user, item] pairs
        users = spec.entry("user_factors.weight").torch_shape[0]
        items = spec.entry("item_factors.weight").torch_shape[0]
        return np.stack(
            [rng.integers(0, users, size), rng.integers(0, items, size)], axis=1
        ).astype(np.int32)
    if spec.input_dtype == "int32":  # character or token ids
        vocab = spec.entry("embedding.weight").torch_shape[0]
        ids = rng.integers(0, vocab, (size, *spec.input_shape)).astype(np.int32)
        ids[::2, -3:] = 0  # Reddit's <PAD> (its padding_idx): no gradient in both
        return ids
    if spec.name == "celeba_cnn":  # raw 0-255 pixels
        return rng.integers(0, 256, (size, *spec.input_shape)).astype(np.float32)
    return rng.normal(size=(size, *spec.input_shape)).astype(np.float32)


def _targets(spec, rng, size: int) -> np.ndarray:
    if spec.num_classes == 0:  # ratings 0.5, 1, ..., 5
        return (rng.integers(1, 11, size) / 2).astype(np.float32)
    return rng.integers(0, spec.num_classes, size).astype(np.int32)


def _problem(name: str, n: int, tau: int, b: int, seed: int, size: int = 64):
    spec = get_model(name)
    rng = np.random.default_rng(seed)
    data_x = _inputs(spec, rng, size)
    data_y = _targets(spec, rng, size)
    ids = rng.integers(0, size, size=(n, tau, b)).astype(np.int32)
    w = np.ones((n, tau, b), np.float32)
    w[:, -1, -1] = 0.0  # a short last minibatch: the weighted mean must agree
    x0 = np.asarray(spec.init_flat(jax.random.key(seed)))
    x = (x0 + 0.01 * rng.normal(size=(n, spec.num_params))).astype(np.float32)
    if name == "gn_lenet":  # non-trivial GroupNorm affine
        for e in spec.layout:
            if e.torch_name.startswith("gn") and e.torch_name.endswith("weight"):
                x[:, e.offset : e.end] = rng.uniform(0.5, 1.5, size=(n, e.size))
    if name == "movielens_mf":  # predictions near the ratings: accuracy is not 0
        x[:] = rng.uniform(0.5, 0.7, size=x.shape).astype(np.float32)
    return spec, data_x, data_y, ids, w, x


def test_inputs_and_targets_follow_the_model():
    import torch

    lstm = ModelLayout.of(get_model("shakespeare_lstm"))
    ids = tn.torch_inputs(lstm, np.zeros((2, 80), np.int32))
    assert ids.dtype == torch.int64 and tuple(ids.shape) == (2, 80)
    celeba = ModelLayout.of(get_model("celeba_cnn"))
    img = np.arange(2 * 84 * 84 * 3, dtype=np.float32).reshape(2, 84, 84, 3)
    got = tn.torch_inputs(celeba, img)
    assert got.dtype == torch.float32 and tuple(got.shape) == (2, 3, 84, 84)
    np.testing.assert_array_equal(got.numpy(), img.transpose(0, 3, 1, 2))
    mf = ModelLayout.of(get_model("movielens_mf"))
    assert tn.torch_targets(mf, np.ones(3)).dtype == torch.float32
    assert tn.torch_targets(celeba, np.ones(3)).dtype == torch.int64


def _task(spec) -> tasks.Task:
    return tasks.RATING if spec.num_classes == 0 else tasks.CLASSIFICATION


@pytest.mark.parametrize("name", MODELS)
def test_flat_vector_round_trip_through_torch(name):
    m = ModelLayout.of(get_model(name))
    module = tn.build_torch_model(m)
    flat = np.random.default_rng(0).normal(size=sum(np.prod(s) for _, s in m.layout))
    tn.load_flat(module, m, flat.astype(np.float32))
    np.testing.assert_array_equal(tn.to_flat(module, m), flat.astype(np.float32))


@pytest.mark.parametrize("name", MODELS)
def test_torch_forward_matches_apply_flat(name):
    import torch

    spec, data_x, _, _, _, x = _problem(name, 1, 1, 4, seed=1)
    m = ModelLayout.of(spec)
    module = tn.build_torch_model(m)
    tn.load_flat(module, m, x[0])
    with torch.no_grad():
        want = module(tn.torch_inputs(m, data_x[:8])).numpy()
    got = np.asarray(jax.jit(spec.apply_flat)(jnp.asarray(x[0]), data_x[:8]))
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize(
    ("name", "momentum", "tau"),
    [
        ("digits_cnn", 0.0, 1),
        ("digits_cnn", 0.9, 3),
        ("gn_lenet", 0.0, 1),
        ("femnist_cnn", 0.0, 1),
        ("celeba_cnn", 0.0, 2),
        ("shakespeare_lstm", 0.0, 1),
        ("reddit_rnn", 0.9, 2),
        ("movielens_mf", 0.0, 3),
    ],
)
def test_torch_sgd_steps_equal_local_train(name, momentum, tau):
    """One node's tau PyTorch SGD steps give the parameters of ``local_train``."""
    b = BATCH.get(name, 8)
    spec, data_x, data_y, ids, w, x = _problem(name, 2, tau, b, seed=2)
    lr = LR.get(name, 0.05)
    tx = training.make_optimizer(
        jnp.float32(lr), jnp.float32(momentum), jnp.float32(0.0), momentum > 0
    )
    nodes = tn.TorchNodes(ModelLayout.of(spec), x, lr=lr, momentum=momentum)
    torch_loss = nodes.train(data_x, data_y, ids, w)

    def one(xi, ids_i, w_i):
        return training.local_train(
            spec,
            _task(spec),
            tx,
            xi,
            tx.init(xi),
            jnp.asarray(data_x),
            jnp.asarray(data_y),
            ids_i,
            w_i,
        )

    one = jax.jit(one)
    for i in range(2):
        xi, _, loss = one(jnp.asarray(x[i]), ids[i], w[i])
        delta = np.abs(x[i] - np.asarray(xi)).max()
        assert delta > 1e-5, "the step changed nothing"
        np.testing.assert_allclose(
            nodes.x[i],
            np.asarray(xi),
            rtol=0,
            atol=2e-5 * max(1.0, float(np.abs(x[i]).max())),
        )
        np.testing.assert_allclose(torch_loss[i], float(loss), rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_torch_inference_matches_shared_metrics(name):
    size = 8 if name in BATCH else 64
    spec, data_x, data_y, _, _, x = _problem(name, 3, 1, 4, seed=3, size=size)
    nodes = tn.TorchNodes(ModelLayout.of(spec), x, lr=0.1)
    loss, acc = nodes.evaluate(data_x, data_y, chunk=max(size // 3, 1))
    want_loss, want_acc = jax.jit(
        lambda x, dx, dy: evaluation.shared_metrics(spec, _task(spec), x, dx, dy)
    )(jnp.asarray(x), jnp.asarray(data_x), jnp.asarray(data_y))
    np.testing.assert_allclose(loss, np.asarray(want_loss), rtol=1e-4)
    np.testing.assert_allclose(acc, np.asarray(want_acc), atol=1e-3)
    if spec.num_classes == 0:
        assert np.all(np.asarray(want_acc) > 0), "no hit: the rounding is untested"


@pytest.mark.parametrize("name", ["movielens_mf", "digits_cnn"])
def test_torch_local_inference_matches_per_node_metrics(name):
    """Each node on its own samples (MovieLens's local test sets, SPEC 7.3)."""
    spec, data_x, data_y, _, _, x = _problem(name, 3, 1, 4, seed=4)
    rng = np.random.default_rng(4)
    index = rng.integers(0, 64, size=(3, 20)).astype(np.int32)
    size = np.array([20, 7, 0], np.int32)  # a full, a padded and an empty node
    nodes = tn.TorchNodes(ModelLayout.of(spec), x, lr=0.1)
    loss, acc = nodes.evaluate(data_x, data_y, index, size, chunk=6)
    want_loss, want_acc = jax.jit(
        lambda x, dx, dy, i, s: evaluation.per_node_metrics(
            spec, _task(spec), x, dx, dy, i, s
        )
    )(jnp.asarray(x), jnp.asarray(data_x), jnp.asarray(data_y), index, size)
    np.testing.assert_allclose(loss, np.asarray(want_loss), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(acc, np.asarray(want_acc), atol=1e-3)
