"""Tests of jwins_jax.data: datasets, partitioners (SPEC 7.1) and batches (SPEC 2.1)."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax.data import (
    DATASETS,
    LABEL_PARTITIONS,
    PARTITIONS,
    batches_per_pass,
    equal_sizes,
    load_dataset,
    node_data,
    partition,
    records_to_arrays,
    sample_batches,
    sample_pass,
)
from jwins_jax.errors import ConfigError

# The package exports the function `partition`, which hides the submodule's name.
partition_module = importlib.import_module("jwins_jax.data.partition")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _one_line_config_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- datasets


def test_digits_shapes_and_range(digits):
    assert digits.name == "digits"
    assert digits.x_train.shape == (1437, 8, 8, 1)
    assert digits.x_test.shape == (360, 8, 8, 1)
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert digits.x_test.dtype == np.float32 and digits.y_test.dtype == np.int32
    for x in (digits.x_train, digits.x_test):
        assert x.min() == -1.0 and x.max() == 1.0
        # (v / 16 - 0.5) / 0.5 with integer v in 0..16 lies on a grid of step 1/8
        np.testing.assert_allclose(x * 8 + 8, np.round(x * 8 + 8), atol=1e-5)


def test_digits_matches_sklearn_pixels(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    expected = np.sort(((raw.images / 16.0 - 0.5) / 0.5).reshape(1797, -1), axis=0)
    ours = np.concatenate([digits.x_train, digits.x_test]).reshape(1797, -1)
    np.testing.assert_allclose(np.sort(ours, axis=0), expected, atol=1e-6)


def test_digits_split_is_fixed_across_seeds_and_stratified(digits):
    other = load_dataset("digits", seed=123)
    np.testing.assert_array_equal(other.x_test, digits.x_test)
    np.testing.assert_array_equal(other.y_test, digits.y_test)
    np.testing.assert_array_equal(other.y_train, digits.y_train)
    total = np.bincount(digits.y_train, minlength=10) + np.bincount(digits.y_test)
    test_share = np.bincount(digits.y_test, minlength=10) / total
    np.testing.assert_allclose(test_share, 0.2, atol=1.0 / total.min())


def test_synthetic_cifar_shapes_determinism_and_learnability():
    a = load_dataset("synthetic_cifar", seed=4, synthetic_size=400)
    assert a.x_train.shape == (400, 32, 32, 3) and a.x_test.shape == (100, 32, 32, 3)
    assert a.input_shape == (32, 32, 3) and a.num_classes == 10
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int32
    assert a.x_train.min() >= -1.0 and a.x_train.max() <= 1.0
    assert set(np.unique(a.y_train)) == set(range(10))
    b = load_dataset("synthetic_cifar", seed=4, synthetic_size=400)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = load_dataset("synthetic_cifar", seed=5, synthetic_size=400)
    assert not np.array_equal(a.x_train, c.x_train)
    # A nearest-class-mean classifier beats chance (0.1) by far: the classes are
    # learnable from the training split and carry over to the test split.
    flat = a.x_train.reshape(400, -1)
    means = np.stack([flat[a.y_train == k].mean(0) for k in range(10)])
    dist = ((a.x_test.reshape(100, 1, -1) - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == a.y_test).mean() > 0.5


def test_cifar10_missing_raises_config_error(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = _one_line_config_error(excinfo)
    assert "cifar10" in message and str(tmp_path) in message
    assert "tfds build cifar10" in message


def test_records_to_arrays_normalises_like_totensor_normalize():
    rgb = np.array([[[0, 255, 128], [10, 20, 30]]], dtype=np.uint8)  # (1, 2, 3)
    records = [
        {"image": rgb, "label": np.int64(3), "id": "a"},
        {"image": 255 - rgb, "label": 7, "id": "b"},
    ]
    x, y = records_to_arrays(records)
    assert x.shape == (2, 1, 2, 3) and x.dtype == np.float32
    assert y.dtype == np.int32 and y.tolist() == [3, 7]
    np.testing.assert_allclose(x[0], (rgb / 255.0 - 0.5) / 0.5, atol=1e-6)
    np.testing.assert_allclose(x[1], -x[0], atol=1e-6)
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 1] == 1.0
    gray, _ = records_to_arrays([{"image": np.zeros((4, 5), np.uint8), "label": 0}])
    assert gray.shape == (1, 4, 5, 1)


def test_dataset_errors():
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("mnist")
    message = _one_line_config_error(excinfo)
    for name in DATASETS:
        assert name in message
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.0)
    with pytest.raises(ConfigError, match="synthetic_size"):
        load_dataset("synthetic_cifar", synthetic_size=0)


# ------------------------------------------------------------------------ partitions


@pytest.mark.parametrize("n", [10, 96])
@pytest.mark.parametrize("method", LABEL_PARTITIONS)
def test_partition_owns_every_sample_exactly_once(digits, method, n):
    labels = digits.y_train
    parts = partition(labels, n, method, seed=3)
    assert len(parts) == n
    assert all(np.issubdtype(p.dtype, np.integer) and p.ndim == 1 for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(1437))
    sizes = np.array([len(p) for p in parts])
    if method == "dirichlet":
        need = partition_module.dirichlet_min_samples(1437, n, 10)
        assert need == (10 if n == 10 else 1)
        assert sizes.min() >= need
    else:
        np.testing.assert_array_equal(sizes, equal_sizes(1437, n))
    again = partition(labels, n, method, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition(labels, n, method, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_equal_sizes_keep_the_remainder_on_the_last_node():
    np.testing.assert_array_equal(equal_sizes(50000, 96)[[0, 94, 95]], [520, 520, 600])
    assert equal_sizes(1437, 96).sum() == 1437


def _mean_max_class_fraction(parts, labels):
    return np.mean([np.bincount(labels[p]).max() / len(p) for p in parts])


def test_dirichlet_skew_grows_as_alpha_shrinks(digits):
    labels = digits.y_train
    skewed = partition(labels, 10, "dirichlet", alpha=0.1, seed=1)
    flat = partition(labels, 10, "dirichlet", alpha=10.0, seed=1)
    iid = partition(labels, 10, "iid", seed=1)
    assert _mean_max_class_fraction(skewed, labels) > 0.4
    assert _mean_max_class_fraction(skewed, labels) > _mean_max_class_fraction(
        flat, labels
    )
    assert _mean_max_class_fraction(iid, labels) < 0.2


def test_kshard_nodes_see_few_classes(digits):
    labels = digits.y_train
    kshard = partition(labels, 10, "kshard", shards=2, seed=0)
    iid = partition(labels, 10, "iid", seed=0)
    classes_kshard = np.mean([len(np.unique(labels[p])) for p in kshard])
    classes_iid = np.mean([len(np.unique(labels[p])) for p in iid])
    assert classes_kshard <= 5 and classes_iid == 10


def test_kshard_single_shard_single_node_takes_a_wrapped_run():
    labels = np.array([2, 0, 1, 0, 2, 1])  # stable label order: ids 1 3 2 5 0 4
    (only,) = partition(labels, 1, "kshard", shards=1, seed=7)
    order = np.array([1, 3, 2, 5, 0, 4])
    start = int(np.flatnonzero(order == only[0])[0])
    np.testing.assert_array_equal(only, np.roll(order, -start))


def test_partition_errors(digits):
    labels = digits.y_train
    with pytest.raises(ConfigError) as excinfo:
        partition(labels, 2000, "iid")
    assert "nodes=2000 exceeds the 1437 training samples" in _one_line_config_error(
        excinfo
    )
    with pytest.raises(ConfigError) as excinfo:
        partition(labels, 4, "pathological")
    assert all(name in _one_line_config_error(excinfo) for name in PARTITIONS)
    with pytest.raises(ConfigError, match="needs a dataset with users"):
        partition(labels, 4, "natural")
    with pytest.raises(ConfigError, match="alpha=0"):
        partition(labels, 4, "dirichlet", alpha=0.0)
    with pytest.raises(ConfigError, match="alpha=-1"):
        partition(labels, 4, "dirichlet", alpha=-1.0)
    with pytest.raises(ConfigError, match="shards=0"):
        partition(labels, 4, "kshard", shards=0)
    with pytest.raises(ConfigError, match="nodes=0"):
        partition(labels, 0, "iid")


def test_dirichlet_gives_up_after_bounded_attempts(digits, monkeypatch):
    monkeypatch.setattr(partition_module, "DIRICHLET_MAX_ATTEMPTS", 3)
    with pytest.raises(ConfigError) as excinfo:
        partition(digits.y_train, 96, "dirichlet", alpha=0.001, seed=0)
    assert "3 dirichlet draws" in _one_line_config_error(excinfo)


# ------------------------------------------------------------------------- batches

# Unequal nodes with disjoint global ids; the largest has 12 samples.
_PARTS = [
    np.array([3, 9, 15, 21, 27]),
    np.arange(100, 112),
    np.array([40, 41, 42, 43, 44, 45, 46]),
    np.array([77]),
]


def _valid(ids, weight, node, step=None):
    sel = weight[node] > 0 if step is None else weight[node, step] > 0
    chosen = ids[node] if step is None else ids[node, step]
    return np.asarray(chosen)[np.asarray(sel)]


def test_node_data_pads_and_records_sizes():
    data = node_data(_PARTS)
    assert data.index.shape == (4, 12) and data.index.dtype == jnp.int32
    assert data.size.tolist() == [5, 12, 7, 1]
    assert data.min_size == 1 and data.max_size == 12 and data.num_nodes == 4
    assert np.asarray(data.index)[0].tolist() == [3, 9, 15, 21, 27] + [0] * 7
    with pytest.raises(ConfigError, match="node 1 has no training samples"):
        node_data([np.array([1]), np.array([], dtype=np.int64)])


def test_sample_batches_one_pass_properties():
    data = node_data(_PARTS)
    ids, weight = sample_batches(jax.random.key(0), data, steps=3, batch_size=4)
    ids, weight = np.asarray(ids), np.asarray(weight)
    assert ids.shape == weight.shape == (4, 3, 4)
    assert ids.dtype == np.int32 and weight.dtype == np.float32
    assert set(np.unique(weight)) <= {0.0, 1.0}
    # Valid entries come first in every minibatch; counts mark the short batches:
    # node 0 (5 samples): 4, then 1 (end of pass), then 4 from a new pass.
    assert weight.sum(-1).tolist() == [[4, 1, 4], [4, 4, 4], [4, 3, 4], [1, 1, 1]]
    assert np.all(np.diff(weight, axis=-1) <= 0)
    for node, part in enumerate(_PARTS):
        assert set(_valid(ids, weight, node)) <= set(part.tolist())
    # Node 1 (12 samples, 3 full batches) sees each sample exactly once.
    assert sorted(_valid(ids, weight, 1)) == _PARTS[1].tolist()
    # Node 0's first pass (steps 0-1) visits all 5 samples once; so does node 2's.
    first = np.concatenate([_valid(ids, weight, 0, 0), _valid(ids, weight, 0, 1)])
    assert sorted(first) == _PARTS[0].tolist()
    first = np.concatenate([_valid(ids, weight, 2, 0), _valid(ids, weight, 2, 1)])
    assert sorted(first) == _PARTS[2].tolist()


def test_sample_batches_multi_pass_draws_new_permutations():
    data = node_data(_PARTS)
    ids, weight = sample_batches(jax.random.key(1), data, steps=9, batch_size=4)
    ids, weight = np.asarray(ids), np.asarray(weight)
    orders = [ids[1, 3 * p : 3 * p + 3].reshape(-1) for p in range(3)]
    for order in orders:  # every pass of node 1 is a permutation of its samples
        assert sorted(order) == _PARTS[1].tolist()
    assert not (np.array_equal(orders[0], orders[1]) and np.array_equal(*orders[1:]))
    for p in range(4):  # node 2: passes of 2 steps (4 + 3), each a permutation
        seen = np.concatenate([_valid(ids, weight, 2, 2 * p + s) for s in range(2)])
        assert sorted(seen) == _PARTS[2].tolist()
    assert np.all(ids[3][weight[3] > 0] == 77) and weight[3].sum() == 9


def test_sample_batches_keys_and_jit():
    data = node_data(_PARTS)
    a = sample_batches(jax.random.key(2), data, 3, 4)
    b = sample_batches(jax.random.key(2), data, 3, 4)
    c = sample_batches(jax.random.key(3), data, 3, 4)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0][1], c[0][1])
    # Nodes draw independently: two nodes with identical samples get other orders.
    twin = node_data([np.arange(12), np.arange(12)])
    ids, _ = sample_batches(jax.random.key(2), twin, 3, 4)
    assert not np.array_equal(ids[0], ids[1])
    jitted = jax.jit(
        sample_batches, static_argnames=("steps", "batch_size", "drop_last")
    )
    d = jitted(jax.random.key(2), data, steps=3, batch_size=4)
    np.testing.assert_array_equal(a[0], d[0])
    np.testing.assert_array_equal(a[1], d[1])


def test_sample_batches_permutation_is_uniform_over_valid_positions():
    data = node_data([np.array([5, 6, 7]), np.arange(10, 22)])  # node 0 padded by 9
    keys = jax.random.split(jax.random.key(4), 3000)
    draw = jax.jit(jax.vmap(lambda k: sample_batches(k, data, 1, 3)[0]))
    first = np.asarray(draw(keys))[:, 0, 0, 0]  # first sample of node 0
    assert set(np.unique(first)) == {5, 6, 7}
    np.testing.assert_allclose(np.bincount(first - 5) / 3000, 1 / 3, atol=0.04)


def test_sample_batches_drop_last():
    data = node_data([np.arange(5), np.arange(10, 22), np.arange(30, 37)])
    ids, weight = sample_batches(jax.random.key(5), data, 4, 4, drop_last=True)
    ids, weight = np.asarray(ids), np.asarray(weight)
    assert np.all(weight == 1.0)
    for step in range(4):  # node 0: one batch of 4 distinct samples per pass
        assert len(set(ids[0, step])) == 4 and set(ids[0, step]) <= set(range(5))
    assert sorted(ids[1, :3].reshape(-1)) == list(range(10, 22))
    assert batches_per_pass(7, 4, drop_last=True) == 1
    assert batches_per_pass(7, 4) == 2
    with pytest.raises(ConfigError, match="batch_size=6"):
        sample_batches(jax.random.key(0), data, 2, 6, drop_last=True)


def test_sample_pass_covers_each_node_once():
    data = node_data(_PARTS)
    ids, weight = sample_pass(jax.random.key(6), data, batch_size=4)
    ids, weight = np.asarray(ids), np.asarray(weight)
    assert ids.shape == (4, 3, 4)
    for node, part in enumerate(_PARTS):
        assert sorted(_valid(ids, weight, node)) == part.tolist()
    assert weight.sum(-1).tolist() == [[4, 1, 0], [4, 4, 4], [4, 3, 0], [1, 0, 0]]


def test_sample_batches_errors():
    data = node_data(_PARTS)
    with pytest.raises(ConfigError, match="steps=0"):
        sample_batches(jax.random.key(0), data, 0, 4)
    with pytest.raises(ConfigError, match="batch_size=0"):
        sample_batches(jax.random.key(0), data, 1, 0)
