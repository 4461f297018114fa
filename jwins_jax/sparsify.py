"""Sparsification masks with a different k per node (SPEC 4.2-4.5, 4.7, 9).

Every sharing strategy that sends part of a vector decides *which* part with one of
the masks built here, for all nodes at once:

* :func:`topk_mask` -- the ``k[b]`` largest scores of row ``b``, exactly ``k[b]``
  entries, ties broken towards the lower index (PartialModel, Wavelet, JWINS; SPEC
  4.2, 4.4, 4.5 and the "top-k ties" row of the decisions table);
* :func:`threshold_mask` -- every score at least the k-th largest (CHOCO-SGD, SPEC
  4.7): ties keep more than k entries, and ``k == 0`` keeps everything;
* :func:`bernoulli_mask` -- i.i.d. Bernoulli(alpha) entries (random sampling, SPEC
  4.3).

``k`` is a traced ``(B,)`` array, so JWINS's per-node, per-round cut-offs run in one
compiled program (SPEC 9, "Top-k"). The cut-off itself is computed on the host with
Python's rounding (:func:`k_from_alpha`, SPEC 0 and the decisions table).

Ordering of scores. Scores are magnitudes (callers pass ``|c|``). Internally every
score is mapped to an int32 *key* whose integer order is the score order: the bit
pattern of a non-negative float32 is monotone in its value. Two edge cases are fixed
by that map and shared by every method:

* ``-0.0`` and any negative score count as ``+0.0`` (they tie with zero);
* every NaN counts as larger than ``+inf`` (all NaNs tie with each other), which is
  where ``lax.top_k`` puts a positive NaN.

Selection methods (all exact and all giving identical masks):

* ``"bisect"`` -- radix-style search for the k-th largest key: 15 bisection rounds on
  the high 16 bits of the keys, then 16 on the low 16 bits of the keys that share the
  chosen high half. Both rounds run over int16 copies, and each count is a two-stage
  reduction that vectorizes on CPU. When some row has more entries equal to the
  threshold than it may keep, the lowest indices among them are picked by a second
  such search on position keys (skipped at run time when no row needs it). Rows
  are processed in groups small enough for their int16 copies to stay in cache.
* ``"sort"`` -- a full sort of each row, then the same threshold rule.
* ``"top_k"`` -- ``lax.top_k`` with a static ``k_max``, then the first ``k[b]`` of the
  ``k_max`` winners of each row.
* ``"auto"`` -- ``"bisect"``, the fastest exact method measured on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from jwins_jax.errors import ConfigError

METHODS: tuple[str, ...] = ("auto", "bisect", "sort", "top_k")
"""Names accepted by :func:`topk_mask`'s ``method`` argument."""

_NAN_KEY = 0x7FC00000  # above +inf (0x7F800000): every NaN ranks highest
_HI_SPAN = 1 << 15  # keys >> 16 lie in [0, 0x7FC0] < 2**15
_LO_SPAN = 1 << 16  # keys & 0xFFFF lie in [0, 2**16)
_CHUNKS = 32  # rows are counted as (_CHUNKS, M / _CHUNKS) slabs (see _slab_sum)
_CHUNK_BYTES = 4 << 20  # int16 working copy per group of rows (see _by_row_chunks)


def python_round(x: float) -> int:
    """Python's built-in ``round`` on the host: half-way cases go to the even integer.

    Args:
        x: a finite real number.

    Returns:
        The nearest integer, ties to even (``round(0.5) == 0``, ``round(1.5) == 2``).

    Raises:
        ConfigError: if ``x`` is NaN or infinite.
    """
    x = float(x)
    if not math.isfinite(x):
        raise ConfigError(f"cannot round {x!r}: the value must be a finite number")
    return int(round(x))


def k_from_alpha(alpha: float, m: int) -> int:
    """Number of entries a fraction ``alpha`` of ``m`` keeps: ``round(alpha * m)``.

    The product is taken in float64 and rounded half to even, as Python's ``round``
    does (SPEC 0, SPEC 10 item 4); e.g. ``k_from_alpha(0.15, 89843) == 13476``.

    Args:
        alpha: fraction in [0, 1].
        m: vector length (for wavelet strategies the coefficient count M, not N).

    Returns:
        k in [0, m].

    Raises:
        ConfigError: if ``alpha`` is not in [0, 1] or ``m`` is negative.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:  # also rejects NaN
        raise ConfigError(f"alpha={alpha!r} is not allowed: alpha must be in [0, 1]")
    if isinstance(m, bool) or int(m) != m or m < 0:
        raise ConfigError(f"m={m!r} is not allowed: m must be an integer >= 0")
    return python_round(alpha * int(m))


# --------------------------------------------------------------------------- keys


def _keys(score: jax.Array) -> jax.Array:
    """Order-preserving int32 keys of float scores, (B, M) -> (B, M) int32 >= 0."""
    score = jnp.asarray(score, jnp.float32)
    bits = lax.bitcast_convert_type(score, jnp.int32)
    bits = jnp.maximum(bits, 0)  # sign bit set (-0.0, negatives) -> key of +0.0
    return jnp.where(jnp.isnan(score), jnp.int32(_NAN_KEY), bits)


def _slabs(x: jax.Array, fill: int) -> jax.Array:
    """Pads rows to a multiple of _CHUNKS with ``fill``: (B, M) -> (B, _CHUNKS, C)."""
    b, m = x.shape
    c = -(-m // _CHUNKS)
    x = jnp.pad(x, ((0, 0), (0, c * _CHUNKS - m)), constant_values=fill)
    return x.reshape(b, _CHUNKS, c)


def _slab_sum(flags3: jax.Array) -> jax.Array:
    """Per-row number of True entries, (B, S, C) bool -> (B,) int32.

    Summing the S slabs first is an element-wise int16 add along the minor axis,
    which XLA vectorizes on CPU; only the short (B, C) remainder is a row reduction
    (a plain row reduction of the (B, M) array is many times slower there).
    """
    return jnp.sum(jnp.sum(flags3, axis=1, dtype=jnp.int16), axis=1, dtype=jnp.int32)


def _row_sum(flags: jax.Array) -> jax.Array:
    """Per-row number of True entries, (B, M) bool -> (B,) int32."""
    return _slab_sum(_slabs(flags, False))


def _count_ge(x3: jax.Array, pivot: jax.Array) -> jax.Array:
    """Per-row count of ``x3 >= pivot``: (B, S, C) int16, (B,) -> (B,) int32."""
    return _slab_sum(x3 >= pivot.astype(x3.dtype)[:, None, None])


def _count_gt(x3: jax.Array, pivot: jax.Array) -> jax.Array:
    """Per-row count of ``x3 > pivot``: (B, S, C) int16, (B,) -> (B,) int32."""
    return _slab_sum(x3 > pivot.astype(x3.dtype)[:, None, None])


def _bisect(x3: jax.Array, need: jax.Array, span: int, offset: int) -> jax.Array:
    """Largest t in [0, span) with count(x3 >= t - offset) >= need, per row.

    Args:
        x3: (B, S, C) int16 values; padding and excluded entries hold -offset - 1 or
            less, so they are never counted for t >= 1.
        need: (B,) int32; t = 0 is assumed valid (not tested).
        span: a power of two, the size of the search range.
        offset: subtracted from t to get the int16 pivot.

    Returns:
        (B,) int32 thresholds.
    """
    lo = jnp.zeros(need.shape, jnp.int32)

    def body(i, lo):
        mid = lo + jnp.right_shift(jnp.int32(span // 2), i)  # steps span/2, ..., 1
        return jnp.where(_count_ge(x3, mid - offset) >= need, mid, lo)

    return lax.fori_loop(0, span.bit_length() - 1, body, lo)


def _kth_largest(
    keys: jax.Array, k: jax.Array, hi_span: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """k-th largest key per row by two 16-bit radix rounds of bisection.

    Round one bisects the high 16 bits of the keys, round two the low 16 bits of the
    keys that share the chosen high half; both run over int16 copies. Work: one
    conversion pass per round plus ``log2(hi_span) + 16`` counting passes.

    Args:
        keys: (B, M) int32 keys >= 0, or -1 for entries that never count.
        k: (B,) int32 in [1, number of keys >= 0 in the row].
        hi_span: static power of two above every ``key >> 16``.

    Returns:
        ``(t, n_above, n_tied)``, each (B,) int32: the k-th largest key, the number
        of keys above it and the number equal to it.
    """
    half = _LO_SPAN // 2
    hi = _slabs(jnp.right_shift(keys, 16).astype(jnp.int16), -1)  # -1: excluded
    lo = _slabs(((keys & 0xFFFF) - half).astype(jnp.int16), -half)
    p = _bisect(hi, k, hi_span, 0)  # high half of the k-th largest key
    hi_above = _count_gt(hi, p)
    band = _count_ge(hi, p) - hi_above  # keys whose high half is p
    low = jnp.where(hi == p.astype(jnp.int16)[:, None, None], lo, jnp.int16(-half))
    q = _bisect(low, k - hi_above, _LO_SPAN, half)
    lo_above = _count_gt(low, q - half)
    lo_at_least = jnp.where(q == 0, band, _count_ge(low, q - half))
    t = jnp.left_shift(p, 16) | q
    return t, hi_above + lo_above, lo_at_least - lo_above


def _kth_largest_sort(
    keys: jax.Array, k: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Same contract as :func:`_kth_largest` (keys >= 0), by a full row sort."""
    ordered = jnp.sort(keys, axis=1)
    t = jnp.take_along_axis(ordered, (keys.shape[1] - k)[:, None], axis=1)[:, 0]
    return t, _row_sum(keys > t[:, None]), _row_sum(keys == t[:, None])


def _first_of(tied: jax.Array, quota: jax.Array) -> jax.Array:
    """The ``quota[b]`` lowest-index True entries of each row, (B, M) bool -> bool.

    Lowest indices are the largest keys ``M - 1 - index``, so this is one more exact
    k-th-largest search, on position keys (no running count is needed).
    """
    m = tied.shape[1]
    pos_key = jnp.where(tied, (m - 1) - jnp.arange(m, dtype=jnp.int32), -1)
    hi_span = 1 << max(0, (m - 1) >> 16).bit_length()
    cut, _, _ = _kth_largest(pos_key, jnp.maximum(quota, 1), hi_span)
    return pos_key >= cut[:, None]


# -------------------------------------------------------------------- public API


def _as_rows(score: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Checks the ranks of (score, k) and clips k to [0, M]; returns (score, k)."""
    score = jnp.asarray(score)
    if score.ndim != 2:
        raise ValueError(f"score must have shape (B, M), got shape {score.shape}")
    k = jnp.asarray(k)
    if k.ndim not in (0, 1) or (k.ndim == 1 and k.shape[0] != score.shape[0]):
        raise ValueError(
            f"k must be a scalar or have shape ({score.shape[0]},), got {k.shape}"
        )
    k = jnp.broadcast_to(k, score.shape[:1])
    return score, jnp.clip(k, 0, score.shape[1]).astype(jnp.int32)


def _default_method() -> str:
    """The method ``"auto"`` stands for on the current backend.

    ``"bisect"`` on every backend: on CPU it is the fastest exact method measured
    (``"sort"`` and ``"top_k"`` are an order of magnitude slower); no accelerator
    timings have been taken, and bisection's passes are plain reductions that suit
    accelerators as well.
    """
    return "bisect"


def _by_row_chunks(
    fn: Callable[[jax.Array, jax.Array], jax.Array], score: jax.Array, k: jax.Array
) -> jax.Array:
    """Applies ``fn(score, k) -> (B, M) mask`` to groups of rows, one after another.

    The bisection makes about 35 passes over int16 copies of its rows; groups of
    about _CHUNK_BYTES per copy keep those passes in cache (measured 1.3-1.6x faster
    on CPU than one pass over all rows for M from 1e5 to 2e6). A group has at least
    two rows, so both halves of the work still run in parallel.
    """
    b, m = score.shape
    rows = max(2, _CHUNK_BYTES // max(2 * m, 1))
    if rows >= b:
        return fn(score, k)
    divisors = [r for r in range(rows, 1, -1) if b % r == 0]
    if divisors and 2 * divisors[0] >= rows:
        rows = divisors[0]  # equal groups without padding
    n = -(-b // rows)
    pad = n * rows - b
    score = jnp.pad(score, ((0, pad), (0, 0)))
    k = jnp.pad(k, (0, pad))
    out = lax.map(lambda a: fn(*a), (score.reshape(n, rows, m), k.reshape(n, rows)))
    return out.reshape(n * rows, m)[:b]


def _select(score: jax.Array, k: jax.Array, method: str) -> jax.Array:
    """Exact top-k mask of ``"bisect"`` or ``"sort"``, (B, M), (B,) -> (B, M) bool."""
    keys = _keys(score)
    k1 = jnp.maximum(k, 1)  # k = 0 rows are emptied at the end
    if method == "sort":
        t, n_above, n_tied = _kth_largest_sort(keys, k1)
    else:
        t, n_above, n_tied = _kth_largest(keys, k1, _HI_SPAN)
    t = t[:, None]  # (B, 1)
    quota = k1 - n_above  # how many of the entries equal to t to keep, >= 1
    keep = (k > 0)[:, None]

    # the branches recompute the keys from `score` (an input buffer): closing over
    # `keys` would make XLA materialize a (B, M) int32 array just to pass it in
    def split_ties(score):
        keys = _keys(score)
        return ((keys > t) | _first_of(keys == t, quota)) & keep

    def no_split(score):
        return (_keys(score) >= t) & keep

    return lax.cond(jnp.any(n_tied > quota), split_ties, no_split, score)


@partial(jax.jit, static_argnames=("method", "k_max"))
def _topk_mask(score: jax.Array, k: jax.Array, method: str, k_max: int) -> jax.Array:
    b, m = score.shape
    if method == "top_k":
        if k_max == 0:
            return jnp.zeros((b, m), bool)
        _, idx = lax.top_k(_keys(score), k_max)  # (B, k_max), ties to lower index
        keep = jnp.arange(k_max, dtype=jnp.int32)[None, :] < k[:, None]
        rows = jnp.arange(b)[:, None]
        return jnp.zeros((b, m), bool).at[rows, idx].set(keep, unique_indices=True)
    if method == "sort":
        return _select(score, k, method)
    return _by_row_chunks(partial(_select, method=method), score, k)


def topk_mask(
    score: jax.Array,
    k: jax.Array,
    *,
    method: str = "auto",
    k_max: int | None = None,
) -> jax.Array:
    """Keeps the ``k[b]`` largest scores of each row; ties go to the lower index.

    Row ``b`` of the result has exactly ``k[b]`` True entries: every entry whose score
    is above the k-th largest, then entries equal to it in increasing index order
    (SPEC 4.2 selection with the decisions-table tie rule, which is what
    ``lax.top_k`` does). ``k = 0`` gives an all-False row and ``k = M`` an all-True
    row. Jittable; ``k`` is traced, so one program serves every k.

    Args:
        score: (B, M) float scores, already magnitudes (callers pass ``|c|``); see the
            module docstring for -0.0, negative and NaN scores.
        k: (B,) int32 (or a scalar, used for every row) counts; values outside
            [0, M] are clipped to it.
        method: one of :data:`METHODS`; all give identical masks.
        k_max: static upper bound on ``k``, required by ``method="top_k"`` (where
            ``k`` above ``k_max`` is clipped to ``k_max``); ignored otherwise.

    Returns:
        (B, M) bool mask.

    Raises:
        ConfigError: if ``method`` is unknown, or ``method="top_k"`` without a valid
            ``k_max`` in [0, M].
    """
    if method not in METHODS:
        raise ConfigError(
            f"method={method!r} is not allowed: method must be one of {METHODS}"
        )
    score, k = _as_rows(score, k)
    if method == "auto":
        method = _default_method()
    if method == "top_k":
        m = score.shape[1]
        if k_max is None or isinstance(k_max, bool) or not 0 <= int(k_max) <= m:
            raise ConfigError(
                f"k_max={k_max!r} is not allowed: method='top_k' needs an integer "
                f"k_max in [0, {m}]"
            )
        k_max = int(k_max)
        k = jnp.minimum(k, k_max)
    else:
        k_max = 0
    return _topk_mask(score, k, method, k_max)


def approx_topk_mask(
    score: jax.Array, k: jax.Array, k_max: int, recall_target: float = 0.95
) -> jax.Array:
    """About the ``k[b]`` largest scores of each row, by ``lax.approx_max_k``.

    **Not exact**: ``lax.approx_max_k`` finds each of the ``k_max`` largest with
    probability about ``recall_target`` on TPU (other backends may compute it
    exactly); of its ``k_max`` winners, sorted by score, each row keeps the first
    ``k[b]``. It is not a ``topk_method`` of the strategies, whose masks are exact;
    the kernel benchmark (:mod:`jwins_jax.kernelbench`) times it and measures its
    recall against the exact mask.

    Args:
        score: (B, M) float32 magnitudes.
        k: (B,) int32 (or a scalar) counts, clipped to [0, k_max].
        k_max: static bound on ``k``, in [1, M].
        recall_target: passed to ``lax.approx_max_k``.

    Returns:
        (B, M) bool mask with ``min(k[b], k_max)`` True entries per row.
    """
    score, k = _as_rows(score, k)
    b, m = score.shape
    if not 1 <= int(k_max) <= m:
        raise ConfigError(f"k_max={k_max!r} is not allowed: k_max must be in [1, {m}]")
    _, idx = lax.approx_max_k(
        jnp.asarray(score, jnp.float32), int(k_max), recall_target=recall_target
    )
    keep = jnp.arange(int(k_max), dtype=jnp.int32)[None, :] < k[:, None]
    rows = jnp.arange(b)[:, None]
    return jnp.zeros((b, m), bool).at[rows, idx].set(keep, unique_indices=True)


def _threshold_rows(score: jax.Array, k: jax.Array) -> jax.Array:
    keys = _keys(score)
    t, _, _ = _kth_largest(keys, jnp.maximum(k, 1), _HI_SPAN)
    return (keys >= t[:, None]) | (k == 0)[:, None]


@jax.jit
def _threshold_mask(score: jax.Array, k: jax.Array) -> jax.Array:
    return _by_row_chunks(_threshold_rows, score, k)


def threshold_mask(score: jax.Array, k: jax.Array) -> jax.Array:
    """Keeps every score at least the k-th largest of its row (CHOCO-SGD top-k).

    SPEC 4.7: the threshold is the k-th largest score, entries below it are dropped,
    so ties at the threshold keep *more* than k entries; ``k == 0`` means no
    compression and keeps every entry. Jittable; ``k`` is traced.

    Args:
        score: (B, M) float magnitudes (treated as in :func:`topk_mask`).
        k: (B,) int32 (or a scalar) counts, clipped to [0, M].

    Returns:
        (B, M) bool mask with at least ``k[b]`` True entries in row ``b`` (all of
        them when ``k[b] == 0``).
    """
    score, k = _as_rows(score, k)
    return _threshold_mask(score, k)


def bernoulli_mask(
    key: jax.Array, shape: tuple[int, int], alpha: jax.Array | float
) -> jax.Array:
    """I.i.d. Bernoulli(alpha[b]) entries: ``u <= alpha`` with ``u ~ U[0, 1)``.

    SPEC 4.3 (random sampling): the number of kept entries is Binomial(M, alpha),
    not fixed, and every entry and every row is drawn independently from ``key``.
    ``alpha = 1`` keeps everything; ``alpha = 0`` keeps an entry only when ``u`` is
    exactly 0, as the original's ``u <= alpha`` does.

    Args:
        key: a ``jax.random`` key.
        shape: static ``(B, M)``.
        alpha: scalar or (B,) float32 keep probabilities (traced).

    Returns:
        (B, M) bool mask.
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be (B, M), got {shape}")
    alpha = jnp.asarray(alpha, jnp.float32)
    if alpha.ndim not in (0, 1) or (alpha.ndim == 1 and alpha.shape[0] != shape[0]):
        raise ValueError(
            f"alpha must be a scalar or have shape ({shape[0]},), got {alpha.shape}"
        )
    u = jax.random.uniform(key, tuple(shape), jnp.float32)
    return u <= jnp.broadcast_to(alpha, shape[:1])[:, None]


__all__ = [
    "METHODS",
    "approx_topk_mask",
    "bernoulli_mask",
    "k_from_alpha",
    "python_round",
    "threshold_mask",
    "topk_mask",
]
