"""Elias-gamma index coder (SPEC 5.3): the reference's message sizes, and a test oracle.

Message layout for sorted indices ``s_0 < s_1 < ... < s_{k-1}``:

1. the gamma code of every gap ``g_i = s_i - s_{i-1}`` (i >= 1): ``floor(log2 g)``
   zero bits, then the binary digits of ``g`` most significant first, i.e. ``g``
   written in ``2 floor(log2 g) + 1`` bits;
2. those codes concatenated, packed into bytes most significant bit first and
   zero-padded to a whole byte;
3. a 16-byte trailer: ``s_0`` as int64, then the bit count of step 2 plus 128 (the
   coder's spare-bit allowance) as int64, both little-endian.

An empty index list encodes to no bytes at all (nothing is sent); a single index
encodes to the trailer alone. :func:`encode` builds the bit stream with NumPy (a
per-node sender encodes every message, so the baseline uses it as a sender would);
:func:`decode` reads it back bit by bit.
"""

from __future__ import annotations

import numpy as np

TRAILER_BYTES = 16
SPARE_BITS = 128


def encode(indices) -> bytes:
    """Encodes strictly increasing non-negative indices; returns the message bytes."""
    idx = np.asarray(indices, np.int64).reshape(-1)
    if idx.size == 0:
        return b""
    gaps = np.diff(idx)
    if idx[0] < 0 or np.any(gaps < 1):
        raise ValueError("indices must be non-negative and strictly increasing")
    # bit length of each gap (exact: float64 holds these integers exactly)
    length = np.frexp(gaps.astype(np.float64))[1].astype(np.int64)
    width = 2 * length - 1
    n_bits = int(width.sum())
    field = np.repeat(np.arange(gaps.size), width)
    start = np.cumsum(width) - width
    shift = np.repeat(width - 1 + start, width) - np.arange(n_bits)
    bits = ((gaps[field] >> shift) & 1).astype(np.uint8)
    body = np.packbits(bits).tobytes()
    trailer = np.array([idx[0], n_bits + SPARE_BITS], dtype="<i8").tobytes()
    return body + trailer


def encoded_bits(message: bytes) -> int:
    """The gap-code bit count stored in a message's trailer (0 for no message)."""
    if not message:
        return 0
    return int(np.frombuffer(message[-8:], dtype="<i8")[0]) - SPARE_BITS


def decode(message: bytes) -> np.ndarray:
    """Decodes a message of :func:`encode` back to its int64 indices."""
    if not message:
        return np.zeros(0, np.int64)
    first, field = (int(v) for v in np.frombuffer(message[-16:], dtype="<i8"))
    n_bits = field - SPARE_BITS
    body = message[:-TRAILER_BYTES]
    if len(body) != -(-n_bits // 8):
        raise ValueError(f"{len(body)} body bytes cannot hold {n_bits} bits")
    stream = "".join(f"{byte:08b}" for byte in body)
    if set(stream[n_bits:]) - {"0"}:
        raise ValueError("padding bits must be zero")
    out = [first]
    pos = 0
    while pos < n_bits:
        zeros = 0
        while stream[pos] == "0":
            zeros += 1
            pos += 1
        if pos + zeros + 1 > n_bits:
            raise ValueError("truncated gamma code")
        out.append(out[-1] + int(stream[pos : pos + zeros + 1], 2))
        pos += zeros + 1
    return np.asarray(out, np.int64)
