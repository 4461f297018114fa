"""Byte accounting (SPEC 5): Elias-gamma sizes against a real bit-level encoder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax.accounting import (
    elias_gamma_bits,
    elias_gamma_bytes,
    elias_gamma_bytes_np,
)
from jwins_jax.testing.reference import elias


def _rows(mask: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(row) for row in mask]


def _check(mask: np.ndarray) -> None:
    """Device sizes equal the encoder's message lengths and bit counts, row by row."""
    messages = [elias.encode(idx) for idx in _rows(mask)]
    got_bytes = np.asarray(elias_gamma_bytes(mask))
    got_bits = np.asarray(elias_gamma_bits(mask))
    assert got_bytes.dtype == np.int32 and got_bytes.shape == (mask.shape[0],)
    np.testing.assert_array_equal(got_bytes, [len(msg) for msg in messages])
    np.testing.assert_array_equal(got_bits, [elias.encoded_bits(m) for m in messages])
    for idx, msg in zip(_rows(mask), messages, strict=True):
        assert elias_gamma_bytes_np(idx) == len(msg)
        np.testing.assert_array_equal(elias.decode(msg), idx)


@pytest.mark.parametrize("m", [1, 2, 16, 17, 999, 4096])
def test_random_masks_match_encoder(m):
    rng = np.random.default_rng(m)
    densities = [0.0, 0.003, 0.05, 0.3, 0.7, 0.97, 1.0]
    mask = np.stack([rng.random(m) < d for d in densities])
    mask[0, :] = False  # k = 0
    mask[1, :] = False
    mask[1, rng.integers(m)] = True  # k = 1
    _check(mask)


def test_structured_masks_match_encoder():
    m = 5000
    rows = []
    for idx in (
        [0, 1],  # k = 2, smallest gap
        [0, m - 1],  # k = 2, largest gap
        [7, 4999],
        np.arange(m),  # k = M
        np.arange(100, 400),  # one cluster
        np.r_[10:60, 3000:3050, 4950:5000],  # clusters far apart
        np.arange(3, m, 17),  # spread evenly
        np.cumsum([2**j for j in range(12)]),  # gaps 1, 2, 4, ... powers of two
        np.cumsum([2**j - 1 for j in range(1, 12)]),  # gaps 2**j - 1
        np.cumsum([2**j + 1 for j in range(11)]),  # gaps 2**j + 1
        np.arange(15, m, 16),  # every word's last position
        np.arange(16, m, 16),  # every word's first position
    ):
        row = np.zeros(m, bool)
        row[np.asarray(idx)] = True
        rows.append(row)
    _check(np.stack(rows))


def test_gaps_beyond_16_bits():
    m = 140_001
    mask = np.zeros((3, m), bool)
    mask[0, [0, m - 1]] = True  # one gap of 140000 (18 bits)
    mask[1, [5, 70_000, 70_001, 139_000]] = True
    mask[2, ::65_536] = True  # gaps of exactly 2**16
    _check(mask)


def test_known_sizes():
    # gaps 1, 2, 3, 4 -> 1 + 3 + 3 + 5 = 12 bits -> 2 bytes + 16
    mask = np.zeros((4, 20), bool)
    mask[0, [0, 1, 3, 6, 10]] = True
    mask[1, [4]] = True  # k = 1: trailer only
    mask[3, [2, 19]] = True  # gap 17: 9 bits -> 2 bytes
    np.testing.assert_array_equal(elias_gamma_bits(mask), [12, 0, 0, 9])
    np.testing.assert_array_equal(elias_gamma_bytes(mask), [18, 16, 0, 18])
    assert elias_gamma_bytes_np(np.array([], np.int64)) == 0


def test_jit_and_vmap():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 4, 257)) < np.array([0.02, 0.2, 0.6, 1.0])[:, None]
    expected = np.stack([np.asarray(elias_gamma_bytes(m)) for m in masks])
    np.testing.assert_array_equal(jax.vmap(elias_gamma_bytes)(masks), expected)

    @jax.jit
    def total(mask):
        return jnp.sum(elias_gamma_bytes(mask)) + jnp.sum(elias_gamma_bits(mask))

    assert int(total(masks[1])) == int(
        np.sum(expected[1]) + np.sum(elias_gamma_bits(masks[1]))
    )


def test_host_version_rejects_bad_indices():
    for bad in ([3, 3], [5, 2], [-1, 4]):
        with pytest.raises(ValueError):
            elias_gamma_bytes_np(np.array(bad))
    with pytest.raises(ValueError):
        elias_gamma_bytes_np(np.zeros((2, 2), np.int64))


def test_reference_encoder_layout():
    msg = elias.encode([5, 6, 8])  # gaps 1, 2 -> bits "1" + "010" -> 0b10100000
    assert msg[:1] == bytes([0b10100000])
    assert np.frombuffer(msg[1:], "<i8").tolist() == [5, 4 + elias.SPARE_BITS]
    assert elias.encode([]) == b"" and len(elias.encode([9])) == 16
