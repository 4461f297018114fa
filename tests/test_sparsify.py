"""Selection masks with per-node k (SPEC 4.2-4.5, 4.7) against NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import sparsify
from jwins_jax.errors import ConfigError
from jwins_jax.sparsify import (
    METHODS,
    bernoulli_mask,
    k_from_alpha,
    python_round,
    threshold_mask,
    topk_mask,
)


def reference_topk(score: np.ndarray, k: np.ndarray) -> np.ndarray:
    """First k of a stable argsort of -score: the largest, ties to the lower index."""
    mask = np.zeros(score.shape, bool)
    for b, row in enumerate(np.asarray(score, np.float64)):
        mask[b, np.argsort(-row, kind="stable")[: k[b]]] = True
    return mask


def reference_threshold(score: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Every score >= the k-th largest; k == 0 keeps everything (CHOCO-SGD)."""
    mask = np.ones(score.shape, bool)
    for b, row in enumerate(score):
        if k[b] > 0:
            mask[b] = row >= np.sort(row)[::-1][k[b] - 1]
    return mask


def all_methods(score, k) -> dict[str, np.ndarray]:
    k_max = int(np.max(k))
    return {
        method: np.asarray(topk_mask(score, k, method=method, k_max=k_max))
        for method in METHODS
    }


def _cases():
    """(score, k) pairs: continuous and heavily tied scores, k from 0 to M."""
    rng = np.random.default_rng(7)
    for m in (1, 2, 33, 1000):
        b = 6
        k = rng.integers(0, m + 1, b)
        k[:2] = [0, m]
        yield np.abs(rng.standard_normal((b, m))).astype(np.float32), k
        tied = rng.integers(0, 4, (b, m)).astype(np.float32)  # integer-valued
        tied[1] = 2.0  # a constant row
        tied[2, ::2] = 0.0  # many exact zeros
        yield tied, k


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: f"{c[0].shape}")
def test_topk_matches_stable_argsort(case):
    score, k = case
    expected = reference_topk(score, k)
    for method, mask in all_methods(score, k).items():
        assert mask.dtype == bool and mask.shape == score.shape
        np.testing.assert_array_equal(mask.sum(axis=1), k, err_msg=method)
        np.testing.assert_array_equal(mask, expected, err_msg=method)


@pytest.mark.parametrize("b", [7, 8])  # padded groups (7 rows) and equal groups
def test_row_groups_give_the_same_masks(monkeypatch, b):
    m = 301  # a shape no other test uses, so the jitted kernels retrace here
    monkeypatch.setattr(sparsify, "_CHUNK_BYTES", 2 * m * 3)  # groups of 2-3 rows
    rng = np.random.default_rng(b)
    score = rng.integers(0, 6, (b, m)).astype(np.float32)
    score[::2] = np.abs(rng.standard_normal((-(-b // 2), m)))
    k = rng.integers(0, m + 1, b)
    k[:2] = [0, m]
    np.testing.assert_array_equal(topk_mask(score, k), reference_topk(score, k))
    np.testing.assert_array_equal(
        threshold_mask(score, k), reference_threshold(score, k)
    )


def test_topk_ties_across_16_bit_position_boundary():
    # tie splitting searches over positions; M > 65536 uses both 16-bit halves
    m = 70_001
    score = np.zeros((3, m), np.float32)
    score[0, 60_000:] = 1.0  # 10001 ties, keep 7000 of them
    score[1, ::3] = 5.0
    score[2, -5:] = 2.0
    k = np.array([7000, 20_000, 3], np.int32)
    expected = reference_topk(score, k)
    for method in ("bisect", "auto"):
        np.testing.assert_array_equal(topk_mask(score, k, method=method), expected)


def test_topk_extreme_values_and_signed_zero():
    tiny = np.float32(1e-45)  # smallest subnormal
    big = np.finfo(np.float32).max
    score = np.array(
        [
            [0.0, -0.0, tiny, np.inf, big, 1.0, -0.0],
            [-0.0, 0.0, -0.0, 0.0, 0.0, -0.0, 0.0],  # -0.0 ties with +0.0
        ],
        np.float32,
    )
    k = np.array([4, 3])
    expected = reference_topk(score, k)
    for method, mask in all_methods(score, k).items():
        np.testing.assert_array_equal(mask, expected, err_msg=method)
    assert expected[1].tolist() == [True] * 3 + [False] * 4


def test_topk_nan_ranks_highest():
    nan, inf = np.nan, np.inf
    score = np.array(
        [[1.0, nan, inf, 3.0, nan, 0.0, 2.0], [nan, 1.0, nan, nan, 0.0, nan, -0.0]],
        np.float32,
    )
    expected = {
        (2, 3): [[1, 4], [0, 2, 3]],
        (3, 5): [[1, 2, 4], [0, 1, 2, 3, 5]],
    }
    for k, rows in expected.items():
        for method, mask in all_methods(score, np.array(k)).items():
            got = [np.flatnonzero(row).tolist() for row in mask]
            assert got == rows, method


def test_topk_one_program_for_every_k():
    traces = []

    @jax.jit
    def select(score, k):
        traces.append(1)
        return topk_mask(score, k)

    rng = np.random.default_rng(3)
    score = rng.integers(0, 9, (4, 300)).astype(np.float32)
    for k in ([0, 1, 299, 300], [150, 150, 2, 77], [30, 60, 90, 120]):
        k = np.array(k, np.int32)
        np.testing.assert_array_equal(select(score, k), reference_topk(score, k))
    assert len(traces) == 1


def test_topk_vmaps_over_an_extra_axis():
    rng = np.random.default_rng(4)
    score = rng.integers(0, 5, (3, 4, 50)).astype(np.float32)
    k = rng.integers(0, 51, (3, 4)).astype(np.int32)
    for method in ("bisect", "sort"):
        masks = jax.vmap(lambda s, kk, m=method: topk_mask(s, kk, method=m))(score, k)
        for i in range(3):
            np.testing.assert_array_equal(masks[i], reference_topk(score[i], k[i]))


def test_topk_scalar_k_and_clipping():
    rng = np.random.default_rng(5)
    score = np.abs(rng.standard_normal((3, 20))).astype(np.float32)
    np.testing.assert_array_equal(
        topk_mask(score, 5), reference_topk(score, np.full(3, 5))
    )
    clipped = np.asarray(topk_mask(score, np.array([-3, 25, 7])))
    np.testing.assert_array_equal(clipped.sum(axis=1), [0, 20, 7])
    # top_k clips k to k_max
    capped = np.asarray(topk_mask(score, np.array([2, 9, 4]), method="top_k", k_max=4))
    np.testing.assert_array_equal(capped, reference_topk(score, np.array([2, 4, 4])))


def test_topk_rejects_bad_arguments():
    score = np.ones((2, 5), np.float32)
    for kwargs in (
        {"method": "quickselect"},
        {"method": "top_k"},
        {"method": "top_k", "k_max": 6},
        {"method": "top_k", "k_max": -1},
    ):
        with pytest.raises(ConfigError) as info:
            topk_mask(score, np.array([1, 2]), **kwargs)
        assert "\n" not in str(info.value)
    assert "quickselect" in str(
        pytest.raises(ConfigError, topk_mask, score, 1, method="quickselect").value
    )
    with pytest.raises(ValueError):
        topk_mask(np.ones(5, np.float32), 1)
    with pytest.raises(ValueError):
        topk_mask(score, np.array([1, 2, 3]))
    assert np.asarray(topk_mask(score, 1, method="top_k", k_max=0)).sum() == 0


@pytest.mark.parametrize("case", list(_cases())[-2:], ids=["continuous", "tied"])
def test_threshold_keeps_ties_and_k0_keeps_all(case):
    score, k = case
    mask = np.asarray(threshold_mask(score, k))
    np.testing.assert_array_equal(mask, reference_threshold(score, k))
    assert np.all(mask.sum(axis=1) >= k)
    assert mask[0].all()  # k = 0: no compression
    if score[1].min() == score[1].max():  # constant row: every entry is a tie
        assert mask[1].all()


def test_threshold_on_integer_scores_keeps_more_than_k():
    score = np.array([[3, 1, 2, 2, 2, 0], [5, 5, 5, 5, 5, 5]], np.float32)
    mask = np.asarray(threshold_mask(score, np.array([2, 1])))
    assert mask[0].tolist() == [True, False, True, True, True, False]
    assert mask[1].all()
    assert np.asarray(threshold_mask(score, 0)).all()


def test_bernoulli_rate_and_independence():
    m = 40_000
    alpha = np.array([0.0, 0.1, 0.5, 0.5, 1.0], np.float32)
    mask = np.asarray(bernoulli_mask(jax.random.key(0), (5, m), alpha))
    assert mask.dtype == bool and mask.shape == (5, m)
    rate = mask.mean(axis=1)
    sigma = np.sqrt(alpha * (1 - alpha) / m)
    assert np.all(np.abs(rate - alpha) <= 5 * sigma + 1e-4)
    assert rate[4] == 1.0
    # rows with the same alpha are independent draws, not copies
    agree = np.mean(mask[2] == mask[3])
    assert abs(agree - 0.5) < 5 * 0.5 / np.sqrt(m)
    again = np.asarray(bernoulli_mask(jax.random.key(0), (5, m), alpha))
    other = np.asarray(bernoulli_mask(jax.random.key(1), (5, m), alpha))
    np.testing.assert_array_equal(again, mask)
    assert not np.array_equal(other[2], mask[2])


def test_bernoulli_scalar_alpha_and_jit():
    mask = jax.jit(bernoulli_mask, static_argnums=1)(jax.random.key(2), (3, 1000), 0.25)
    assert abs(float(jnp.mean(mask)) - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 3000)
    with pytest.raises(ValueError):
        bernoulli_mask(jax.random.key(0), (3, 10), np.ones(4, np.float32))


def test_k_from_alpha_appendix_b():
    m = 89_843
    table = {0.1: 8984, 0.15: 13476, 0.2: 17969, 0.25: 22461, 0.3: 26953, 0.4: 35937}
    for alpha, k in table.items():
        assert k_from_alpha(alpha, m) == k
    assert k_from_alpha(1.0, m) == m and k_from_alpha(0.0, m) == 0


def test_k_from_alpha_half_way_cases_round_to_even():
    assert k_from_alpha(0.5, 5) == 2  # 2.5 -> 2
    assert k_from_alpha(0.5, 7) == 4  # 3.5 -> 4
    assert k_from_alpha(0.25, 2) == 0  # 0.5 -> 0
    assert k_from_alpha(0.75, 2) == 2  # 1.5 -> 2
    assert k_from_alpha(0.125, 20) == 2  # 2.5 -> 2
    rng = np.random.default_rng(9)
    for alpha, m in zip(rng.random(200), rng.integers(0, 10**7, 200), strict=True):
        assert k_from_alpha(float(alpha), int(m)) == round(float(alpha) * int(m))


def test_rounding_helpers_reject_bad_input():
    assert [python_round(x) for x in (0.5, 1.5, 2.5, -0.5, -1.5, 2.4999)] == [
        0,
        2,
        2,
        0,
        -2,
        2,
    ]
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            python_round(bad)
    for alpha, m in ((1.5, 10), (-0.1, 10), (float("nan"), 10), (0.5, -1), (0.5, 2.5)):
        with pytest.raises(ConfigError) as info:
            k_from_alpha(alpha, m)
        assert "\n" not in str(info.value)
