"""Per-message NumPy quantizer of SPEC 5.4, with its decoder scaled correctly.

An encoder that writes a real byte string and a decoder that reads it back, written
for one node's message at a time (the original's ``Quantization.compress_float``), so
the size of a message is ``len(encode(...))`` rather than a formula. Shares no code
with the package.

``K = levels``. For the message's numbers ``x`` (a complex value is two numbers,
real part first)::

    s = float32(max|x|) / K             (float32)
    q = round_half_even(x / s)          (0 when s = 0), clipped to [-K, K]
    P = smallest power of two > K;  b = log2 P + 1 bits per number
    u = q + P - 1                       (in [0, 2P - 2])

The bytes: ``s`` as a little-endian float32, then every ``u`` as ``b`` bits, most
significant bit first, one after the other, the last byte padded with zero bits.
The decoder reads ``u``, returns ``(u - P + 1) * s`` in float32. The original
multiplies by ``mean|x| / K`` instead (SPEC 10.8); that mistake is not reproduced.
"""

from __future__ import annotations

import numpy as np

SCALE_BYTES = 4


def power_above(levels: int) -> int:
    """The smallest power of two strictly above ``levels`` (SPEC 5.4: the smallest
    power of two >= max|q|, doubled when equal)."""
    p = 1
    while p < levels:
        p *= 2
    if p == levels:
        p *= 2
    return p


def bits_per_number(levels: int) -> int:
    """``log2 P + 1`` bits for ``P`` = :func:`power_above` (levels)."""
    p, bits = power_above(levels), 1
    while p > 1:
        p //= 2
        bits += 1
    return bits


def _numbers(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values)
    if np.iscomplexobj(v):
        out = np.empty(2 * v.size, np.float32)
        out[0::2] = v.real
        out[1::2] = v.imag
        return out
    return v.astype(np.float32).reshape(-1)


def encode(values: np.ndarray, levels: int) -> bytes:
    """One message's values as bytes (empty for no values).

    Args:
        values: ``(c,)`` float32 or complex64 values.
        levels: K >= 1.
    """
    x = _numbers(values)
    if x.size == 0:
        return b""
    k = np.float32(levels)
    scale = np.float32(np.max(np.abs(x))) / k
    if scale > 0:
        q = np.clip(np.round(x / scale), -k, k)
    else:
        q = np.zeros_like(x)
    p = power_above(levels)
    b = bits_per_number(levels)
    u = q.astype(np.int64) + (p - 1)
    assert u.min() >= 0 and u.max() < 2**b
    shifts = np.arange(b - 1, -1, -1)
    bits = ((u[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
    return np.asarray([scale], "<f4").tobytes() + np.packbits(bits).tobytes()


def decode(data: bytes, count: int, levels: int, complex_values: bool = False):
    """The values a receiver reconstructs from :func:`encode`'s bytes.

    Args:
        data: the message's bytes.
        count: the number of values it carries.
        levels: K.
        complex_values: whether the values are complex64.

    Returns:
        ``(count,)`` float32 or complex64 values.
    """
    numbers = count * (2 if complex_values else 1)
    if numbers == 0:
        return np.zeros(0, np.complex64 if complex_values else np.float32)
    scale = np.frombuffer(data[:SCALE_BYTES], "<f4")[0]
    b = bits_per_number(levels)
    bits = np.unpackbits(np.frombuffer(data[SCALE_BYTES:], np.uint8))
    bits = bits[: numbers * b].reshape(numbers, b).astype(np.int64)
    u = bits @ (2 ** np.arange(b - 1, -1, -1, dtype=np.int64))
    q = (u - (power_above(levels) - 1)).astype(np.float32)
    x = (q * scale).astype(np.float32)
    if complex_values:
        return (x[0::2] + 1j * x[1::2]).astype(np.complex64)
    return x
