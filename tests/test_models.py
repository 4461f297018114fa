"""Tests of jwins_jax.models: flat PyTorch layout (SPEC Appendix C) and layers (7.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jwins_jax.errors import ConfigError
from jwins_jax.models import MODELS, get_model, layers
from jwins_jax.testing.reference.models_np import conv2d

# SPEC Appendix C, CIFAR LeNet: (name, shape, start, end).
GN_LENET_LAYOUT = [
    ("conv1.weight", (32, 3, 5, 5), 0, 2400),
    ("conv1.bias", (32,), 2400, 2432),
    ("gn1.weight", (32,), 2432, 2464),
    ("gn1.bias", (32,), 2464, 2496),
    ("conv2.weight", (32, 32, 5, 5), 2496, 28096),
    ("conv2.bias", (32,), 28096, 28128),
    ("gn2.weight", (32,), 28128, 28160),
    ("gn2.bias", (32,), 28160, 28192),
    ("conv3.weight", (64, 32, 5, 5), 28192, 79392),
    ("conv3.bias", (64,), 79392, 79456),
    ("gn3.weight", (64,), 79456, 79520),
    ("gn3.bias", (64,), 79520, 79584),
    ("fc1.weight", (10, 1024), 79584, 89824),
    ("fc1.bias", (10,), 89824, 89834),
]


# The image classifiers whose generic tests live here; the paper's other workloads
# (FEMNIST, CelebA, Shakespeare, MovieLens) are tested in test_workload_models.py.
BASE_MODELS = ("digits_cnn", "gn_lenet")


def _random_flat(spec, seed, batch=()):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(*batch, spec.num_params)), jnp.float32)


# ---------------------------------------------------------------- layout


def test_gn_lenet_layout_matches_appendix_c():
    spec = get_model("gn_lenet")
    assert spec.num_params == 89_834
    got = [(e.torch_name, e.torch_shape, e.offset, e.end) for e in spec.layout]
    assert got == GN_LENET_LAYOUT
    for e in spec.layout:
        assert e.size == e.end - e.offset == int(np.prod(e.torch_shape))


def test_digits_cnn_size_and_registry():
    spec = get_model("digits_cnn")
    assert spec.num_params == 6_090
    assert spec.input_shape == (8, 8, 1) and spec.num_classes == 10
    assert [e.torch_name for e in spec.layout] == [
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "fc1.weight",
        "fc1.bias",
    ]
    assert MODELS[:2] == BASE_MODELS
    assert get_model("gn_lenet") is get_model("gn_lenet")


def test_unknown_model_is_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        get_model("resnet")
    msg = str(err.value)
    assert "\n" not in msg and "resnet" in msg and "gn_lenet" in msg
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", BASE_MODELS)
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_flatten_unflatten_round_trip_is_exact(name, batch):
    spec = get_model(name)
    flat = _random_flat(spec, 1, batch)
    params = spec.unflatten(flat)
    for e in spec.layout:
        leaf = params["params"][e.flax_path[0]][e.flax_path[1]]
        assert leaf.shape == (*batch, *e.flax_shape)
    back = spec.flatten(params)
    assert back.dtype == jnp.float32 and back.shape == flat.shape
    np.testing.assert_array_equal(np.asarray(back), np.asarray(flat))
    # The inner params dict (without the "params" level) is accepted too, and
    # unflatten(flatten(p)) == p.
    again = spec.unflatten(spec.flatten(params["params"]))
    jax.tree.map(np.testing.assert_array_equal, again, params)


@pytest.mark.parametrize("name", BASE_MODELS)
def test_flatten_of_module_init_matches_module(name):
    spec = get_model(name)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, *spec.input_shape)))
    if name == "gn_lenet":  # its forward is checked against NumPy below
        shapes = jax.eval_shape(spec.module.init, jax.random.key(0), x)
        variables = jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype), shapes)
    else:
        variables = jax.jit(spec.module.init)(jax.random.key(0), x)
    flat = spec.flatten(variables)
    assert flat.shape == (spec.num_params,)
    if name == "digits_cnn":
        np.testing.assert_allclose(
            np.asarray(jax.jit(spec.apply_flat)(flat, x)),
            np.asarray(jax.jit(spec.module.apply)(variables, x)),
            rtol=1e-5,
            atol=1e-6,
        )


def test_flatten_rejects_wrong_shapes():
    spec = get_model("digits_cnn")
    params = spec.unflatten(jnp.zeros(spec.num_params))
    params["params"]["conv1"]["kernel"] = jnp.zeros((3, 3, 2, 16))
    with pytest.raises(ValueError, match="conv1"):
        spec.flatten(params)
    with pytest.raises(ValueError, match="length"):
        spec.unflatten(jnp.zeros(spec.num_params + 1))


@pytest.mark.parametrize(
    ("name", "layer", "index"),
    [
        ("gn_lenet", "conv1", (7, 2, 4, 1)),  # o, i, kh, kw
        ("gn_lenet", "conv2", (5, 31, 0, 3)),
        ("gn_lenet", "conv3", (63, 17, 2, 4)),
        ("digits_cnn", "conv2", (30, 9, 1, 2)),
    ],
)
def test_conv_kernel_lands_in_oihw_order(name, layer, index):
    spec = get_model(name)
    params = spec.unflatten(jnp.zeros(spec.num_params))
    o, i, kh, kw = index
    e = spec.entry(f"{layer}.weight")
    path = params["params"][e.flax_path[0]]
    # Index the flax tensor through the entry's permutation (identity for OIHW).
    flax_index = [0] * 4
    for torch_axis, flax_axis in enumerate(e.perm):
        flax_index[flax_axis] = index[torch_axis]
    path[e.flax_path[1]] = path[e.flax_path[1]].at[tuple(flax_index)].set(1.0)
    flat = np.asarray(spec.flatten(params))
    n_out, n_in, n_kh, n_kw = e.torch_shape
    expected = e.offset + ((o * n_in + i) * n_kh + kh) * n_kw + kw
    assert np.flatnonzero(flat).tolist() == [expected]


@pytest.mark.parametrize("name", BASE_MODELS)
def test_dense_kernel_lands_in_out_in_order(name):
    spec = get_model(name)
    params = spec.unflatten(jnp.zeros(spec.num_params))
    e = spec.entry("fc1.weight")
    n_out, n_in = e.torch_shape
    i, o = n_in - 3, 7
    flax_index = (o, i) if e.perm == (0, 1) else (i, o)
    params["params"]["fc1"]["kernel"] = (
        params["params"]["fc1"]["kernel"].at[flax_index].set(1.0)
    )
    params["params"]["fc1"]["bias"] = params["params"]["fc1"]["bias"].at[2].set(5.0)
    flat = np.asarray(spec.flatten(params))
    assert np.flatnonzero(flat).tolist() == [
        e.offset + o * n_in + i,
        spec.entry("fc1.bias").offset + 2,
    ]


# ---------------------------------------------------------------- layers vs references


def _np_group_norm_nchw(x, groups, weight, bias, eps=1e-5):
    b, c, h, w = x.shape
    xg = x.reshape(b, groups, -1)
    mean = xg.mean(axis=-1, keepdims=True)
    var = xg.var(axis=-1, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(b, c, h, w)
    return y * weight[None, :, None, None] + bias[None, :, None, None]


def _np_max_pool_nchw(x):
    b, c, h, w = x.shape
    out = np.full((b, c, h // 2, w // 2), -np.inf)
    for dy in range(2):
        for dx in range(2):
            out = np.maximum(out, x[:, :, dy : 2 * (h // 2) : 2, dx : 2 * (w // 2) : 2])
    return out


def _nchw_to_cbhw(x):
    return jnp.asarray(np.transpose(x, (1, 0, 2, 3)), jnp.float32)


def _cbhw_to_nchw(x):
    return np.transpose(np.asarray(x), (1, 0, 2, 3))


@pytest.mark.parametrize(("k", "pad"), [(5, 2), (3, 1), (3, 0)])
def test_conv2d_matches_lax_conv(k, pad):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 4, 9, 7)), jnp.float32)  # NCHW
    weight = jnp.asarray(rng.normal(size=(6, 4, k, k)), jnp.float32)  # OIHW
    bias = jnp.asarray(rng.normal(size=6), jnp.float32)
    got = jax.jit(layers.conv2d, static_argnums=3)(_nchw_to_cbhw(x), weight, bias, pad)
    ref = jax.lax.conv_general_dilated(
        x,
        weight,
        (1, 1),
        [(pad, pad), (pad, pad)],
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=jax.lax.Precision.HIGHEST,
    )
    ref = np.asarray(ref) + np.asarray(bias)[None, :, None, None]
    np.testing.assert_allclose(_cbhw_to_nchw(got), ref, atol=1e-4)


def test_conv2d_matches_numpy_loop():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 8, 8))  # NCHW
    w = rng.normal(size=(5, 3, 5, 5))  # OIHW
    b = rng.normal(size=5)
    got = jax.jit(layers.conv2d, static_argnums=3)(
        _nchw_to_cbhw(x), jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32), 2
    )
    np.testing.assert_allclose(_cbhw_to_nchw(got), conv2d(x, w, b, 2), atol=1e-4)


def test_im2col_rows_are_shifted_channels():
    x = np.random.default_rng(13).normal(size=(2, 3, 6, 5)).astype(np.float32)  # NCHW
    p = np.asarray(layers.im2col(_nchw_to_cbhw(x), (3, 3), 1))
    assert p.shape == (3 * 9, 2 * 6 * 5)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    c, kh, kw = 2, 1, 2
    want = xp[:, c, kh : kh + 6, kw : kw + 5].reshape(-1)  # over (b, h, w)
    np.testing.assert_array_equal(p[(c * 3 + kh) * 3 + kw], want)


def test_max_pool_matches_numpy():
    x = np.random.default_rng(4).normal(size=(3, 5, 8, 6)).astype(np.float32)  # NCHW
    got = _cbhw_to_nchw(layers.max_pool_2x2(_nchw_to_cbhw(x)))
    ref = _np_max_pool_nchw(x)
    assert got.shape == (3, 5, 4, 3)
    np.testing.assert_array_equal(got, ref)
    # Odd sizes are floored, as in PyTorch.
    odd = _cbhw_to_nchw(layers.max_pool_2x2(_nchw_to_cbhw(x[:, :, :7, :5])))
    np.testing.assert_array_equal(odd, ref[:, :, :3, :2])


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_norm_matches_numpy(groups):
    rng = np.random.default_rng(5)
    x = (3.0 + 2.0 * rng.normal(size=(2, 8, 5, 6))).astype(np.float32)  # NCHW
    w = rng.normal(size=8).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    got = layers.group_norm(_nchw_to_cbhw(x), groups, jnp.asarray(w), jnp.asarray(b))
    ref = _np_group_norm_nchw(x.astype(np.float64), groups, w, b)
    np.testing.assert_allclose(_cbhw_to_nchw(got), ref, atol=2e-5, rtol=1e-5)


def test_flatten_nchw_order():
    x = jnp.arange(2 * 3 * 4 * 5, dtype=jnp.float32).reshape(4, 2, 3, 5)  # CBHW
    got = np.asarray(layers.flatten_nchw(x))
    assert got.shape == (2, 4 * 3 * 5)
    b, c, h, w = 1, 2, 1, 3
    assert got[b, c * 3 * 5 + h * 5 + w] == float(x[c, b, h, w])
    nhwc = layers.cbhw_to_nhwc(x)
    np.testing.assert_array_equal(np.asarray(layers.nhwc_to_cbhw(nhwc)), np.asarray(x))
    assert nhwc[b, h, w, c] == x[c, b, h, w]


# ---------------------------------------------------------------- independent forward


def _np_gn_lenet_forward(flat, x_nhwc):
    """GN-LeNet in NumPy on NCHW data, with tensors sliced from the flat vector."""
    flat = np.asarray(flat, np.float64)
    t = {
        name: flat[start:end].reshape(shape)
        for name, shape, start, end in GN_LENET_LAYOUT
    }
    h = np.asarray(x_nhwc, np.float64).transpose(0, 3, 1, 2)
    for i in (1, 2, 3):
        h = conv2d(h, t[f"conv{i}.weight"], t[f"conv{i}.bias"], 2)
        h = _np_group_norm_nchw(h, 2, t[f"gn{i}.weight"], t[f"gn{i}.bias"])
        h = _np_max_pool_nchw(np.maximum(h, 0.0))
    h = h.reshape(h.shape[0], -1)  # NCHW flatten, 1024
    return h @ t["fc1.weight"].T + t["fc1.bias"]


def test_gn_lenet_matches_numpy_forward_from_flat_vector():
    spec = get_model("gn_lenet")
    rng = np.random.default_rng(6)
    flat = spec.init_flat(jax.random.key(6))
    # Non-trivial GroupNorm affine so that a permuted channel would show.
    gn = jnp.asarray(rng.uniform(0.5, 1.5, size=spec.num_params), jnp.float32)
    is_gn = np.zeros(spec.num_params, bool)
    for e in spec.layout:
        if e.torch_name.startswith("gn"):
            is_gn[e.offset : e.end] = True
    flat = jnp.where(jnp.asarray(is_gn), gn, flat)
    x = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
    got = np.asarray(jax.jit(spec.apply_flat)(flat, x))
    ref = _np_gn_lenet_forward(flat, x)
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, ref, atol=2e-4, rtol=1e-3)


# ---------------------------------------------------------------- init


@pytest.mark.parametrize("name", BASE_MODELS)
def test_init_flat_is_pytorch_default(name):
    spec = get_model(name)
    flat = np.asarray(spec.init_flat(jax.random.key(7)))
    assert flat.dtype == np.float32 and flat.shape == (spec.num_params,)
    np.testing.assert_array_equal(flat, np.asarray(spec.init_flat(jax.random.key(7))))
    assert not np.array_equal(flat, np.asarray(spec.init_flat(jax.random.key(8))))
    for e in spec.layout:
        part = flat[e.offset : e.end]
        if e.torch_name.startswith("gn"):
            want = 1.0 if e.torch_name.endswith("weight") else 0.0
            np.testing.assert_array_equal(part, want)
            continue
        shape = e.torch_shape if e.torch_name.endswith("weight") else None
        if shape is not None:
            fan_in = int(np.prod(shape[1:]))
        else:
            fan_in = int(
                np.prod(spec.entry(e.torch_name[:-4] + "weight").torch_shape[1:])
            )
        bound = 1.0 / np.sqrt(fan_in)
        assert np.abs(part).max() <= bound
        if e.size >= 1000:  # a uniform sample fills its range
            assert np.abs(part).max() > 0.95 * bound
            assert abs(part.mean()) < 0.1 * bound
            np.testing.assert_allclose(part.std(), bound / np.sqrt(3), rtol=0.1)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("name", BASE_MODELS)
def test_apply_flat_under_jit_vmap_grad(name):
    spec = get_model(name)
    n, b = 3, 4
    flat = jnp.stack([spec.init_flat(jax.random.key(9 + i)) for i in range(n)])
    x = jnp.asarray(np.random.default_rng(10).normal(size=(n, b, *spec.input_shape)))
    y = jnp.arange(n * b).reshape(n, b) % 10

    def loss(f, xb, yb):
        logits = spec.apply_flat(f, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    grads = jax.jit(jax.vmap(jax.grad(loss)))(flat, x, y)
    assert grads.shape == (n, spec.num_params) and grads.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(grads)))
    # Every tensor of every node gets a gradient.
    for e in spec.layout:
        assert bool(jnp.all(jnp.abs(grads[:, e.offset : e.end]).max(axis=1) > 0))
    if name == "digits_cnn":  # cheap to compile: compare with one node alone
        g1 = jax.jit(jax.grad(loss))(flat[1], x[1], y[1])
        np.testing.assert_allclose(np.asarray(grads[1]), np.asarray(g1), atol=1e-5)


def test_digits_cnn_learns_with_plain_sgd():
    from sklearn.datasets import load_digits

    spec = get_model("digits_cnn")
    digits = load_digits()
    x = jnp.asarray(digits.images[..., None] / 16.0, jnp.float32)  # (1797, 8, 8, 1)
    y = jnp.asarray(digits.target)
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

    def loss(f, xb, yb):
        logits = spec.apply_flat(f, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def train(f, batches):
        def step(f, idx):
            return f - 0.1 * jax.grad(loss)(f, x_train[idx], y_train[idx]), None

        return jax.lax.scan(step, f, batches)[0]

    batches = np.random.default_rng(12).integers(0, x_train.shape[0], size=(300, 32))
    flat = train(spec.init_flat(jax.random.key(11)), jnp.asarray(batches))
    acc = float(jnp.mean(jnp.argmax(spec.apply_flat(flat, x_test), -1) == y_test))
    assert acc > 0.8


# ---------------------------------------------------------------- evaluation forward


def _with_signed_gn_scales(spec, flat, seed):
    """GroupNorm weights of both signs, so the pooled-min branch is exercised."""
    rng = np.random.default_rng(seed)
    flat = np.array(flat)
    for e in spec.layout:
        if e.torch_name.startswith("gn") and e.torch_name.endswith("weight"):
            flat[e.offset : e.end] = rng.uniform(-1.5, 1.5, size=e.size)
    return jnp.asarray(flat, jnp.float32)


EVAL_FORMULATIONS = [m for m in MODELS if get_model(m).eval_forward is not None]


def test_models_without_an_eval_formulation_evaluate_with_the_training_forward():
    assert {"gn_lenet", "digits_cnn"} <= set(EVAL_FORMULATIONS)
    for name in set(MODELS) - set(EVAL_FORMULATIONS):
        spec = get_model(name)
        flat = spec.init_flat(jax.random.key(3))
        x = jnp.zeros((2, *spec.input_shape), spec.input_dtype)
        np.testing.assert_array_equal(
            np.asarray(spec.apply_flat_eval(flat, x)),
            np.asarray(spec.apply_flat(flat, x)),
        )


@pytest.mark.parametrize("name", EVAL_FORMULATIONS)
def test_eval_forward_matches_training_forward(name):
    spec = get_model(name)
    flat = _with_signed_gn_scales(spec, spec.init_flat(jax.random.key(14)), 14)
    x = jnp.asarray(
        np.random.default_rng(15).normal(size=(5, *spec.input_shape)), jnp.float32
    )
    got = np.asarray(jax.jit(spec.apply_flat_eval)(flat, x))
    want = np.asarray(jax.jit(spec.apply_flat)(flat, x))
    assert spec.eval_forward is not None
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    if name == "gn_lenet":  # and against the independent NumPy forward
        np.testing.assert_allclose(got, _np_gn_lenet_forward(flat, x), atol=2e-4)
    # a group of models on shared inputs, as evaluation runs them
    flats = jnp.stack(
        [flat, _with_signed_gn_scales(spec, spec.init_flat(jax.random.key(16)), 16)]
    )
    group = np.asarray(jax.jit(spec.apply_group_eval)(flats, x))
    assert group.shape == (2, 5, spec.num_classes)
    for i in range(2):
        want_i = np.asarray(jax.jit(spec.apply_flat)(flats[i], x))
        np.testing.assert_allclose(group[i], want_i, atol=2e-5, rtol=1e-4)


def test_nhwc_blocks_match_numpy():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(2, 4, 7, 9)).astype(np.float32)  # NCHW, odd sizes
    w = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))
    got = layers.conv2d_nhwc(nhwc, jnp.asarray(w), jnp.asarray(b), 1)
    np.testing.assert_allclose(
        np.asarray(got).transpose(0, 3, 1, 2), conv2d(x, w, b, 1), atol=1e-4
    )
    pooled = np.asarray(layers.max_pool_2x2_nhwc(nhwc)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(pooled, _np_max_pool_nchw(x))
    y = rng.normal(size=(2, 8, 6, 10)).astype(np.float32)  # NCHW
    gw = rng.uniform(-1.5, 1.5, size=8).astype(np.float32)
    gb = rng.normal(size=8).astype(np.float32)
    got = layers.group_norm_relu_pool_nhwc(
        jnp.asarray(y.transpose(0, 2, 3, 1)), 2, jnp.asarray(gw), jnp.asarray(gb)
    )
    ref = _np_max_pool_nchw(
        np.maximum(_np_group_norm_nchw(y.astype(np.float64), 2, gw, gb), 0.0)
    )
    np.testing.assert_allclose(
        np.asarray(got).transpose(0, 3, 1, 2), ref, atol=2e-5, rtol=1e-5
    )
    got = layers.group_norm_relu_pool_cbhw(
        _nchw_to_cbhw(y), 2, jnp.asarray(gw), jnp.asarray(gb)
    )
    np.testing.assert_allclose(_cbhw_to_nchw(got), ref, atol=2e-5, rtol=1e-5)
    flat = np.asarray(layers.flatten_nhwc_as_nchw(jnp.asarray(y.transpose(0, 2, 3, 1))))
    np.testing.assert_array_equal(flat, y.reshape(2, -1))


RECURRENT = ("shakespeare_lstm", "reddit_rnn")


@pytest.mark.parametrize("name", [m for m in MODELS if m not in RECURRENT])
def test_forward_flops_match_the_compiled_forward(name):
    """The analytic count (the simulated clock's training cost) against XLA's own
    count of the compiled forward: within 3 % (XLA adds the activations, norms and
    pooling the analytic count leaves out). XLA does not multiply a loop's body by
    its trip count, so the recurrent models are checked against PyTorch's counter
    below instead."""
    spec = get_model(name)
    x = jnp.zeros((4, *spec.input_shape), spec.input_dtype)
    flat = jnp.zeros(spec.num_params, jnp.float32)
    analysis = jax.jit(spec.apply_flat).lower(flat, x).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    per_sample = analysis["flops"] / 4
    assert 0.97 * spec.forward_flops <= per_sample <= 1.03 * spec.forward_flops


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_forward_flops_match_pytorchs_count(name):
    """The recurrent models' analytic counts against PyTorch's FLOP counter on the
    same computation: two LSTM cells (sizes from the flat layout) over the sequence,
    then the head (Shakespeare: on every step's output; Reddit: two layers on the
    last step's)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    spec = get_model(name)
    prefix = "lstm" if name == "shakespeare_lstm" else "rnn_cells"
    embed = spec.entry(f"{prefix}.weight_ih_l0").torch_shape[1]
    hidden = spec.entry(f"{prefix}.weight_hh_l0").torch_shape[1]
    steps = spec.input_shape[0]
    cells = [torch.nn.LSTMCell(embed, hidden), torch.nn.LSTMCell(hidden, hidden)]
    heads = [e for e in spec.layout if e.torch_name.endswith(".weight")][-2:]
    if name == "shakespeare_lstm":
        heads = heads[-1:]
    linears = [torch.nn.Linear(e.torch_shape[1], e.torch_shape[0]) for e in heads]
    x = torch.zeros(1, steps, embed)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        state = [(torch.zeros(1, hidden), torch.zeros(1, hidden)) for _ in cells]
        outs = []
        for t in range(steps):
            inp = x[:, t]
            for i, cell in enumerate(cells):
                state[i] = cell(inp, state[i])
                inp = state[i][0]
            outs.append(inp)
        y = torch.cat(outs, dim=1) if name == "shakespeare_lstm" else outs[-1]
        for layer in linears:
            y = torch.relu(layer(y))
    assert counter.get_total_flops() == spec.forward_flops
