"""Bytes a node sends: float payload and index metadata (SPEC 5 and its decisions row).

The simulator does not pickle messages. It counts what the algorithms put on the
wire, following the "bytes" row of SPEC's decisions table:

* values: :data:`FLOAT_BYTES` per float32 value sent;
* top-k partial sharing (PartialModel): :data:`RAW_INDEX_BYTES` per int32 index;
* CHOCO-SGD: :data:`CHOCO_INDEX_BYTES` per int64 index, as the original sends them;
* random sampling: one :data:`SEED_BYTES` seed instead of indices;
* JWINS and wavelet top-k: the exact size of the Elias-gamma index code (SPEC 5.3),
  computed from the selection mask inside the jitted step by
  :func:`elias_gamma_bytes`;
* a full share: no index metadata;
* quantized values (the ``float_precision`` codec, SPEC 5.4): each value's
  components packed at :func:`quantized_bits` bits, plus one float32 scale per
  message (:func:`quantized_bytes`).

Elias-gamma size (SPEC 5.3, boxed formula). For sorted selected indices
``s_0 < ... < s_{k-1}`` the coder sends the gamma codes of the gaps
``g_i = s_i - s_{i-1}`` (``2 * floor(log2 g) + 1`` bits each) packed into bytes and
zero-padded, followed by a 16-byte trailer (``s_0`` and the bit count, both int64)::

    bytes = ceil(sum_i (2 * floor(log2 g_i) + 1) / 8) + 16
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

FLOAT_BYTES = 4
"""One float32 value."""
RAW_INDEX_BYTES = 4
"""One index of top-k partial sharing (PartialModel sends int32 indices)."""
CHOCO_INDEX_BYTES = 8
"""One index of CHOCO-SGD (sent as int64)."""
SEED_BYTES = 8
"""Random sampling sends a 64-bit seed instead of indices."""
ELIAS_HEADER_BYTES = 16
"""Elias-gamma trailer: ``s_0`` and the bit count, both int64."""
QUANT_SCALE_BYTES = 4
"""A quantized message's scale ``max|x| / K``, one float32."""

_CHUNKS = 32  # rows are reduced as (_CHUNKS, M / _CHUNKS) slabs (see _row_sum)


def _slabs(x: jax.Array) -> jax.Array:
    """Zero-pads rows to a multiple of _CHUNKS: (B, M) -> (B, _CHUNKS, C)."""
    b, m = x.shape
    c = -(-m // _CHUNKS)
    return jnp.pad(x, ((0, 0), (0, c * _CHUNKS - m))).reshape(b, _CHUNKS, c)


def _row_sum(x: jax.Array) -> jax.Array:
    """Per-row sum of a non-negative (B, M) int32 array, (B, M) -> (B,) int32.

    Adds the _CHUNKS slabs of each row element-wise first (vectorized on CPU), then
    reduces the short remainder; a plain row reduction is many times slower on CPU.
    """
    return jnp.sum(jnp.sum(_slabs(x), axis=1), axis=1)


_WORD = 16  # mask bits packed per word


def _running_max_before(x: jax.Array) -> jax.Array:
    """``out[:, j] = max(x[:, :j])``, or -1 for j = 0: (B, n) int32 >= -1 -> (B, n).

    Groups of 16 columns take a running maximum by 16 unrolled element-wise steps;
    only the group maxima go through ``lax.cummax``, whose associative-scan lowering
    is slow on CPU for long rows.
    """
    b, n = x.shape
    g = 16
    ng = -(-n // g)
    xg = jnp.pad(x, ((0, 0), (0, ng * g - n)), constant_values=-1).reshape(b, ng, g)
    run = [xg[:, :, 0]]
    for i in range(1, g):
        run.append(jnp.maximum(run[-1], xg[:, :, i]))
    carry = lax.cummax(run[-1], axis=1)  # (B, ng) max up to the end of group
    carry = jnp.pad(carry[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    upto = jnp.maximum(jnp.stack(run, axis=2), carry[:, :, None]).reshape(b, ng * g)
    return jnp.pad(upto[:, : n - 1], ((0, 0), (1, 0)), constant_values=-1)


def _gap_code_bits(gaps: jax.Array) -> jax.Array:
    """Elias-gamma code length ``2 * floor(log2 g) + 1`` of positive int32 gaps."""
    return 2 * (31 - lax.clz(gaps)) + 1


def _word_table() -> np.ndarray:
    """Code bits of the gaps inside every 16-bit word: (2**16,) int32.

    Entry ``w`` sums the code lengths of the gaps between consecutive set bits of
    ``w`` (bit p is position p of the word's block).
    """
    words = np.arange(1 << _WORD, dtype=np.int64)
    last = np.full(words.shape, -1)  # last set bit seen so far
    total = np.zeros(words.shape, np.int64)
    for p in range(_WORD):
        bit = (words >> p) & 1 == 1
        gap = np.where(bit & (last >= 0), p - last, 0)
        bit_length = np.frexp(gap.astype(np.float64))[1]  # floor(log2 g) + 1
        total += np.where(gap > 0, 2 * bit_length - 1, 0)
        last = np.where(bit, p, last)
    return total.astype(np.int32)


_WORD_TABLE = _word_table()


@jax.jit
def _elias_bits_and_count(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Elias-gamma gap-code bits and selected count per row, (B, M) bool -> 2x (B,).

    The mask is packed into 16-bit words (one per block of 16 positions). Gaps
    inside a word are summed by a 65,536-entry table; the gap into each non-empty
    word is its first set position minus the last set position of the earlier
    words, a running maximum over M / 16 word values. No (B, M) integer array is
    built, which is what makes this fast on CPU (a running maximum over all M
    positions, ``lax.cummax``, lowers to an associative scan there).
    """
    mask = jnp.asarray(mask, bool)
    b, m = mask.shape
    nw = -(-m // _WORD)
    blocks = jnp.pad(mask, ((0, 0), (0, nw * _WORD - m))).reshape(b, nw, _WORD)
    bit = jnp.left_shift(1, jnp.arange(_WORD, dtype=jnp.int32))  # (_WORD,)
    words = jnp.sum(jnp.where(blocks, bit, 0), axis=2)  # (B, nw); bits distinct: + = |
    inside = _row_sum(jnp.take(jnp.asarray(_WORD_TABLE), words, mode="clip"))
    count = _row_sum(lax.population_count(words))

    start = jnp.arange(nw, dtype=jnp.int32) * _WORD  # (nw,) first position
    nonempty = words != 0
    first = start + (31 - lax.clz(words & -words))  # lowest set position
    last = jnp.where(nonempty, start + (31 - lax.clz(words)), -1)
    earlier = _running_max_before(last)  # last set position before word j
    crossing = nonempty & (earlier >= 0)
    gap = jnp.where(crossing, first - earlier, 1)
    between = jnp.where(crossing, _gap_code_bits(gap), 0)
    return inside + _row_sum(between), count


def elias_gamma_bits(mask: jax.Array) -> jax.Array:
    """Bits of the Elias-gamma gap codes of each row's selected indices.

    For the selected indices ``s_0 < ... < s_{k-1}`` of row ``b`` this is
    ``sum_{i>=1} (2 * floor(log2(s_i - s_{i-1})) + 1)``; rows with ``k <= 1`` give 0.
    Jittable and vmappable.

    Args:
        mask: (B, M) bool selection.

    Returns:
        (B,) int32 bit counts.
    """
    bits, _ = _elias_bits_and_count(mask)
    return bits


def elias_gamma_bytes(mask: jax.Array) -> jax.Array:
    """Size of each row's Elias-gamma index message (SPEC 5.3 boxed formula).

    ``ceil(bits / 8) + 16`` bytes with ``bits`` from :func:`elias_gamma_bits`. The
    original coder crashes for ``k <= 1`` (empty gap array, SPEC 10 item 9); here
    ``k == 1`` gives 16 bytes (the trailer alone, which carries ``s_0``) and
    ``k == 0`` gives 0 bytes, because no index message is sent at all.

    Args:
        mask: (B, M) bool selection.

    Returns:
        (B,) int32 byte counts.
    """
    bits, k = _elias_bits_and_count(mask)
    size = (bits + 7) // 8 + ELIAS_HEADER_BYTES
    return jnp.where(k > 0, size, 0)


def elias_gamma_bytes_np(indices: np.ndarray) -> int:
    """Host version of :func:`elias_gamma_bytes` for one sorted index array.

    Args:
        indices: (k,) strictly increasing non-negative integers.

    Returns:
        The message size in bytes (0 for an empty array, 16 for one index).

    Raises:
        ValueError: if ``indices`` is not 1-D, negative or not strictly increasing.
    """
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
    if idx.size == 0:
        return 0
    idx = idx.astype(np.int64)
    gaps = np.diff(idx)
    if idx[0] < 0 or np.any(gaps <= 0):
        raise ValueError("indices must be non-negative and strictly increasing")
    # floor(log2 g) + 1 is the bit length of g: frexp gives g = f * 2**e, f in [0.5, 1)
    bit_length = np.frexp(gaps.astype(np.float64))[1].astype(np.int64)
    bits = int(np.sum(2 * bit_length - 1))
    return (bits + 7) // 8 + ELIAS_HEADER_BYTES


def quantized_bits(levels: int) -> int:
    """Bits per quantized number for integers in ``[-K, K]``, ``K = levels``.

    SPEC 5.4: ``log2 P + 1`` with ``P`` the smallest power of two >= ``K``, doubled
    if equal, i.e. the smallest power of two > K: 16 bits for K = 32767, 8 for
    K = 127, 9 for K = 128.
    """
    levels = int(levels)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    return levels.bit_length() + 1


def quantized_bytes(count: jax.Array, numbers_per_value: int, bits: int) -> jax.Array:
    """Bytes of the quantized values of each message: the packed numbers rounded up to
    a whole byte plus the float32 scale; 0 for a message without values.

    Computed as ``(count // 8) * w + ceil((count % 8) * w / 8)`` with ``w =
    numbers_per_value * bits`` bits per value, so the count times the bits never
    has to fit an int32.

    Args:
        count: (B,) int32 values per message.
        numbers_per_value: numbers quantized per value (1 for a float, 2 for a
            complex value: its real and imaginary parts).
        bits: bits per number (:func:`quantized_bits`).

    Returns:
        (B,) int32 byte counts.
    """
    count = jnp.asarray(count, jnp.int32)
    width = int(numbers_per_value) * int(bits)  # bits per value
    packed = (count // 8) * width + ((count % 8) * width + 7) // 8
    return jnp.where(count > 0, packed + QUANT_SCALE_BYTES, 0).astype(jnp.int32)


__all__ = [
    "CHOCO_INDEX_BYTES",
    "ELIAS_HEADER_BYTES",
    "FLOAT_BYTES",
    "QUANT_SCALE_BYTES",
    "RAW_INDEX_BYTES",
    "SEED_BYTES",
    "elias_gamma_bits",
    "elias_gamma_bytes",
    "elias_gamma_bytes_np",
    "quantized_bits",
    "quantized_bytes",
]
