"""The PyTorch per-node baseline (benchmarks/torch_baseline.py) against the simulator.

PyTorch is an optional extra (``.[bench]``): the equivalence tests need it and are
skipped without it; the tests of what works without PyTorch (importing, the clear
error, the builder registry) always run.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import evaluation, tasks, training
from jwins_jax.models import MODELS, get_model

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import torch_baseline as tb

HAS_TORCH = importlib.util.find_spec("torch") is not None


# ---------------------------------------------------------------- without torch


def test_every_registered_model_has_a_torch_builder():
    assert set(MODELS) <= set(tb.TORCH_BUILDERS)


def test_missing_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tb, "torch_available", lambda: False)
    with pytest.raises(tb.TorchMissing, match=r"\.\[bench\]"):
        tb.build_torch_model(get_model("digits_cnn"))
    with pytest.raises(tb.TorchMissing):
        tb.TorchNodes(get_model("digits_cnn"), np.zeros((1, 6090), np.float32), 0.1)
    assert tb.torch_version() is None


def test_unknown_model_names_the_registered_builders(monkeypatch):
    import dataclasses

    spec = dataclasses.replace(get_model("digits_cnn"), name="resnet")
    if not HAS_TORCH:
        pytest.skip("the registry lookup comes after the torch check")
    with pytest.raises(KeyError, match="digits_cnn"):
        tb.build_torch_model(spec)


# ---------------------------------------------------------------- with torch


def _problem(name: str, n: int, tau: int, b: int, seed: int):
    spec = get_model(name)
    rng = np.random.default_rng(seed)
    data_x = rng.normal(size=(64, *spec.input_shape)).astype(np.float32)
    data_y = rng.integers(0, spec.num_classes, size=64).astype(np.int32)
    ids = rng.integers(0, 64, size=(n, tau, b)).astype(np.int32)
    w = np.ones((n, tau, b), np.float32)
    w[:, -1, -1] = 0.0  # a short last minibatch: the weighted mean must agree
    x0 = np.asarray(spec.init_flat(jax.random.key(seed)))
    x = (x0 + 0.01 * rng.normal(size=(n, spec.num_params))).astype(np.float32)
    if name == "gn_lenet":  # non-trivial GroupNorm affine
        for e in spec.layout:
            if e.torch_name.startswith("gn") and e.torch_name.endswith("weight"):
                x[:, e.offset : e.end] = rng.uniform(0.5, 1.5, size=(n, e.size))
    return spec, data_x, data_y, ids, w, x


@pytest.mark.parametrize("name", MODELS)
def test_flat_vector_round_trip_through_torch(name):
    pytest.importorskip("torch")
    spec = get_model(name)
    module = tb.build_torch_model(spec)
    flat = np.random.default_rng(0).normal(size=spec.num_params).astype(np.float32)
    tb.load_flat(module, spec, flat)
    np.testing.assert_array_equal(tb.to_flat(module, spec), flat)


@pytest.mark.parametrize("name", MODELS)
def test_torch_forward_matches_apply_flat(name):
    torch = pytest.importorskip("torch")
    spec, data_x, _, _, _, x = _problem(name, 1, 1, 4, seed=1)
    module = tb.build_torch_model(spec)
    tb.load_flat(module, spec, x[0])
    with torch.no_grad():
        want = module(tb.nhwc_to_torch(data_x[:16])).numpy()
    got = np.asarray(jax.jit(spec.apply_flat)(jnp.asarray(x[0]), data_x[:16]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "momentum", "tau"),
    [("digits_cnn", 0.0, 1), ("digits_cnn", 0.9, 3), ("gn_lenet", 0.0, 1)],
)
def test_torch_sgd_steps_equal_local_train(name, momentum, tau):
    """One node's tau PyTorch SGD steps give the parameters of ``local_train``."""
    pytest.importorskip("torch")
    spec, data_x, data_y, ids, w, x = _problem(name, 2, tau, 8, seed=2)
    lr = 0.05
    task = tasks.CLASSIFICATION
    tx = training.make_optimizer(
        jnp.float32(lr), jnp.float32(momentum), jnp.float32(0.0), momentum > 0
    )
    nodes = tb.TorchNodes(spec, x, lr=lr, momentum=momentum)
    torch_loss = nodes.train(data_x, data_y, ids, w)

    def one(xi, ids_i, w_i):
        return training.local_train(
            spec,
            task,
            tx,
            xi,
            tx.init(xi),
            jnp.asarray(data_x),
            jnp.asarray(data_y),
            ids_i,
            w_i,
        )

    for i in range(2):
        xi, _, loss = jax.jit(one)(jnp.asarray(x[i]), ids[i], w[i])
        delta = np.abs(x[i] - np.asarray(xi)).max()
        assert delta > 1e-4, "the step changed nothing"
        np.testing.assert_allclose(
            nodes.x[i],
            np.asarray(xi),
            rtol=0,
            atol=2e-5 * max(1.0, float(np.abs(x[i]).max())),
        )
        np.testing.assert_allclose(torch_loss[i], float(loss), rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_torch_inference_matches_shared_metrics(name):
    pytest.importorskip("torch")
    spec, data_x, data_y, _, _, x = _problem(name, 3, 1, 4, seed=3)
    nodes = tb.TorchNodes(spec, x, lr=0.1)
    loss, acc = nodes.evaluate(data_x, data_y, chunk=24)
    want_loss, want_acc = jax.jit(
        lambda x, dx, dy: evaluation.shared_metrics(
            spec, tasks.CLASSIFICATION, x, dx, dy
        )
    )(jnp.asarray(x), jnp.asarray(data_x), jnp.asarray(data_y))
    np.testing.assert_allclose(loss, np.asarray(want_loss), rtol=1e-4)
    np.testing.assert_allclose(acc, np.asarray(want_acc), atol=1e-3)
