"""The quantizing value codec (SPEC 5.4): the reference's NumPy encoder and decoder
spelt out bit by bit, then the package's block against them, message by message
(float and complex values, empty messages, all-zero values); the codec inside
strategies through the contract kit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import accounting
from jwins_jax.sharing import blocks
from jwins_jax.testing.contract import check_strategy
from jwins_jax.testing.reference import quantize as qref


def test_reference_bit_widths_follow_spec_5_4():
    # the smallest power of two >= K, doubled when equal; log2 P + 1 bits
    for levels, bits in [(1, 2), (2, 3), (3, 3), (127, 8), (128, 9), (32767, 16)]:
        assert qref.bits_per_number(levels) == bits
        assert accounting.quantized_bits(levels) == bits


def test_reference_encoder_writes_the_layout():
    """K = 3: s = 1/3, q = (3, -2, 1) (-1.5 rounds to even), u = q + 3 at 3 bits:
    110 001 100, then zero padding."""
    values = np.array([1.0, -0.5, 0.25], np.float32)
    data = qref.encode(values, 3)
    scale = np.float32(1.0) / np.float32(3)
    assert data[:4] == np.asarray([scale], "<f4").tobytes()
    assert data[4:] == bytes([0b11000110, 0b00000000])
    np.testing.assert_array_equal(
        qref.decode(data, 3, 3), np.float32([3, -2, 1]) * scale
    )
    assert qref.encode(np.zeros(0, np.float32), 3) == b""
    zeros = qref.encode(np.zeros(5, np.float32), 127)  # s = 0: every q is 0
    np.testing.assert_array_equal(qref.decode(zeros, 5, 127), np.zeros(5))


@pytest.mark.parametrize("levels", [1, 127, 1000, 32767])
def test_reference_round_trip_error_is_half_a_step(levels):
    rng = np.random.default_rng(levels)
    x = (rng.standard_normal(301) * 3).astype(np.float32)
    data = qref.encode(x, levels)
    bits = qref.bits_per_number(levels)
    assert len(data) == 4 + (301 * bits + 7) // 8
    back = qref.decode(data, 301, levels)
    step = np.abs(x).max() / levels
    assert np.abs(back - x).max() <= 0.5 * step * (1 + 1e-5)
    z = (x[:150] + 1j * x[150:300]).astype(np.complex64)
    back = qref.decode(qref.encode(z, levels), 150, levels, complex_values=True)
    assert back.dtype == np.complex64
    top = max(np.abs(z.real).max(), np.abs(z.imag).max())
    assert np.abs(back.real - z.real).max() <= 0.5 * top / levels * (1 + 1e-5)
    assert np.abs(back.imag - z.imag).max() <= 0.5 * top / levels * (1 + 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
@pytest.mark.parametrize("levels", [127, 32767])
def test_block_matches_the_reference_message_by_message(dtype, levels):
    """Each node's message: the decoded values at the masked entries and the bytes
    equal the reference's; unmasked entries are left as they were."""
    rng = np.random.default_rng(7)
    n, length = 6, 257
    values = rng.standard_normal((n, length)).astype(np.float32)
    if dtype is np.complex64:
        values = (values + 1j * rng.standard_normal((n, length))).astype(dtype)
    mask = rng.random((n, length)) < 0.3
    mask[1] = False  # nothing sent
    mask[2] = True  # everything
    mask[3, :] = False
    mask[3, 17] = True  # one value
    values[4] = 0  # all zero: s = 0
    codec = blocks.quantize(levels, length, dtype)
    decoded, nbytes, _ = jax.jit(lambda v, m: codec.encode((), v, m, None, None))(
        jnp.asarray(values), jnp.asarray(mask)
    )
    decoded, nbytes = np.asarray(decoded), np.asarray(nbytes)
    assert decoded.dtype == dtype and nbytes.dtype == np.int32
    complex_values = dtype is np.complex64
    for i in range(n):
        data = qref.encode(values[i][mask[i]], levels)
        want = qref.decode(data, int(mask[i].sum()), levels, complex_values)
        np.testing.assert_array_equal(decoded[i][mask[i]], want, err_msg=f"node {i}")
        np.testing.assert_array_equal(decoded[i][~mask[i]], values[i][~mask[i]])
        assert nbytes[i] == len(data), i
    assert nbytes[1] == 0


QUANTIZED = [
    ("topk", {"alpha": 0.2, "accumulation": "legacy", "float_precision": 127}),
    ("full", {"float_precision": 32767}),
]


@pytest.mark.parametrize("name,params", QUANTIZED, ids=[n for n, _ in QUANTIZED])
def test_quantized_strategies_pass_the_contract_kit(name, params):
    report = check_strategy(name, params)
    assert {"stats", "vmap", "locality", "faults"} <= set(report["checks"])
