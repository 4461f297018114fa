"""Batched discrete wavelet transforms of flat model vectors (SPEC 4.4, Appendix B).

The wavelet-domain sharing strategies (JWINS, wavelet top-k) see every node's flat
model vector ``x`` of length N through a multilevel discrete wavelet transform with
half-sample symmetric boundary extension, laid out exactly like

    pywt.coeffs_to_array(pywt.wavedec(x, wavelet, level=L, mode="symmetric"))[0]

that is a vector of length M = [cA_L | cD_L | cD_{L-1} | ... | cD_1], and through the
inverse ``pywt.waverec`` of the split bands, trimmed to its first N values (SPEC 4.4).

Two implementations share that contract:

* ``"polyphase"``: our kernel. Each analysis level is a symmetric pad followed, for
  each output band, by F scaled stride-2 slices of the padded signal (F = filter
  length) that XLA fuses into one loop. Each synthesis level is the zero-upsampled
  full convolution written as two polyphase sums (even and odd output samples) of
  F/2 contiguous slices per band, interleaved; no zeros are materialised and there
  are no gathers or convolutions.
* ``"jaxwt"``: the general path through the ``jaxwt`` library (``lax`` convolutions),
  with the glue that produces the same flat layout.

Every PyWavelets *discrete* wavelet works (haar, dbN, symN, coifN, biorX.Y, rbioX.Y,
dmey): the filters are read from ``pywt.Wavelet(name)``.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import pywt

from jwins_jax.errors import ConfigError

BACKENDS: tuple[str, ...] = ("auto", "polyphase", "jaxwt")

_FAMILY_HINT = "haar, db1..db38, sym2..sym20, coif1..coif17, biorX.Y, rbioX.Y, dmey"


@dataclasses.dataclass(frozen=True)
class Transform:
    """A linear flat-vector transform and its (pseudo-)inverse.

    ``forward`` and ``inverse`` are pure ``jax.numpy`` functions of the last axis
    (any leading batch shape works), so they can be jitted, vmapped and
    differentiated. :mod:`jwins_jax.sharing.blocks` states the contract every
    transform of a sharing pipeline keeps. ``inverse(forward(x)) == x`` up to
    float32 round-off for every perfect-reconstruction wavelet (all discrete ones
    except the FIR ``dmey``).

    Attributes:
        name: Human-readable identity, e.g. ``"sym2/4/polyphase"`` or
            ``"identity"``.
        n: Input length N.
        m: Output (coefficient) length M.
        forward: Maps ``(B, n)`` float32 to ``(B, m)`` float32.
        inverse: Maps ``(B, m)`` float32 to ``(B, n)`` float32.
        flops: Arithmetic of one forward (or inverse) transform of one vector: 2
            per multiply-add of the filters (the simulated clock's cost model).
        dtype: Dtype of the coefficients ``forward`` returns and ``inverse``
            takes: float32 here; a transform with complex coefficients (an FFT)
            declares complex64, and the blocks of :mod:`jwins_jax.sharing.blocks`
            follow it (accumulator dtype, bytes per value sent).
    """

    name: str
    n: int
    m: int
    forward: Callable[[jax.Array], jax.Array]  # (B, n) -> (B, m)
    inverse: Callable[[jax.Array], jax.Array]  # (B, m) -> (B, n)
    flops: float = 0.0
    dtype: Any = jnp.float32


def identity_transform(n: int) -> Transform:
    """The identity transform of length-``n`` vectors (parameter-space sharing).

    Args:
        n: Vector length N (positive).

    Returns:
        A ``Transform`` with ``m == n`` whose ``forward`` and ``inverse`` return
        their argument unchanged.
    """
    n = _check_length(n)

    def same(x: jax.Array) -> jax.Array:
        return jnp.asarray(x)

    return Transform(name="identity", n=n, m=n, forward=same, inverse=same)


# ----------------------------------------------------------------------------------
# Validation and coefficient layout
# ----------------------------------------------------------------------------------


def _positive_int(value: int, field: str, rule: str) -> int:
    """``value`` as a Python int >= 1 (numpy integers welcome), else ConfigError."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = 0
    if number < 1:
        raise ConfigError(f"{field}={value!r} is not allowed: {rule}")
    return number


def _check_length(n: int) -> int:
    return _positive_int(n, "n", "the vector length must be an integer >= 1")


def _check_wavelet_name(wavelet: str) -> None:
    if not isinstance(wavelet, str) or wavelet not in _discrete_wavelets():
        raise ConfigError(
            f"wavelet={wavelet!r} is not a discrete PyWavelets wavelet: "
            f"use one of {_FAMILY_HINT}"
        )


@functools.cache
def _discrete_wavelets() -> frozenset[str]:
    return frozenset(pywt.wavelist(kind="discrete"))


@functools.cache
def _filter_bank(
    wavelet: str,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(dec_lo, dec_hi, rec_lo, rec_hi) of a discrete wavelet, as Python floats."""
    _check_wavelet_name(wavelet)
    bank = pywt.Wavelet(wavelet).filter_bank
    return tuple(tuple(float(v) for v in filt) for filt in bank)  # type: ignore[return-value]


def _filter_length(wavelet: str) -> int:
    return len(_filter_bank(wavelet)[0])


def max_level(n: int, wavelet: str) -> int:
    """Deepest useful decomposition level, as ``pywt.dwt_max_level(n, filter_len)``.

    Args:
        n: Signal length N.
        wavelet: Name of a discrete PyWavelets wavelet.

    Returns:
        The largest L with ``(F - 1) * 2**L <= n`` (F = filter length), or 0 when
        ``n < F - 1``.
    """
    n = _check_length(n)
    span = _filter_length(wavelet) - 1
    if span < 1 or n < span:
        return 0
    return (n // span).bit_length() - 1


def validate_wavelet(wavelet: str, level: int, n: int) -> None:
    """Check a wavelet configuration before anything is built.

    Args:
        wavelet: Name of a discrete PyWavelets wavelet (e.g. ``"sym2"``).
        level: Number of decomposition levels, ``1 <= level <= max_level(n)``.
        n: Signal length N.

    Raises:
        ConfigError: One line naming the wrong field and what is allowed.
    """
    n = _check_length(n)
    _check_wavelet_name(wavelet)
    level = _positive_int(level, "level", "level must be an integer >= 1")
    deepest = max_level(n, wavelet)
    if level > deepest:
        raise ConfigError(
            f"level={level} is too deep for N={n} with {wavelet}: at most {deepest}"
        )


def _dwt_length(m: int, filter_len: int) -> int:
    """Coefficients per band of one symmetric-mode level on a length-m signal."""
    return (m + filter_len - 1) // 2


def band_lengths(n: int, wavelet: str, level: int) -> list[int]:
    """Band lengths of the flat layout, ``[len cA_L, len cD_L, ..., len cD_1]``.

    Args:
        n: Signal length N.
        wavelet: Name of a discrete PyWavelets wavelet.
        level: Decomposition level L.

    Returns:
        L + 1 lengths; ``cA_L`` and ``cD_L`` always have the same length.

    Raises:
        ConfigError: As ``validate_wavelet``.
    """
    validate_wavelet(wavelet, level, n)
    f = _filter_length(wavelet)
    details = []
    m = int(n)
    for _ in range(int(level)):
        m = _dwt_length(m, f)
        details.append(m)
    return [details[-1]] + details[::-1]


def coeff_length(n: int, wavelet: str, level: int) -> int:
    """Flat coefficient count M, the sum of ``band_lengths(n, wavelet, level)``."""
    return sum(band_lengths(n, wavelet, level))


# ----------------------------------------------------------------------------------
# Polyphase kernel
# ----------------------------------------------------------------------------------


def _filter_pair(
    xp: jax.Array, count: int, dec_lo: Sequence[float], dec_hi: Sequence[float]
) -> tuple[jax.Array, jax.Array]:
    """Both analysis filters at stride 2 on an already extended signal.

    ``a[o] = sum_j dec_lo[j] * xp[2o + F - 1 - j]``, and ``d`` likewise with
    ``dec_hi``. Every tap is a stride-2 slice of ``xp`` scaled by a Python float
    (so the input dtype is kept); XLA fuses the F slices into one loop per band.

    Args:
        xp: ``(..., >= 2 * count + F - 2)`` extended signal.
        count: Number of outputs per band.
        dec_lo: Low-pass analysis filter, even length F.
        dec_hi: High-pass analysis filter, length F.

    Returns:
        ``(a, d)``, each ``(..., count)``.
    """
    f = len(dec_lo)
    a = d = None
    for j in range(f):
        start = f - 1 - j
        piece = xp[..., start : start + 2 * count - 1 : 2]  # (..., count)
        a = dec_lo[j] * piece if a is None else a + dec_lo[j] * piece
        d = dec_hi[j] * piece if d is None else d + dec_hi[j] * piece
    return a, d


def _analysis_level(
    x: jax.Array, dec_lo: Sequence[float], dec_hi: Sequence[float]
) -> tuple[jax.Array, jax.Array]:
    """One symmetric-mode DWT level, ``pywt.dwt(x, wavelet, mode="symmetric")``.

    ``a[o] = sum_j dec_lo[j] * xs[2o + 1 - j]`` (likewise ``d`` with ``dec_hi``),
    where ``xs`` is the half-sample symmetric extension of ``x`` (SPEC 4.4).

    Args:
        x: ``(..., m)`` signal.
        dec_lo: Low-pass analysis filter, even length F.
        dec_hi: High-pass analysis filter, length F.

    Returns:
        ``(a, d)``, each ``(..., (m + F - 1) // 2)``.
    """
    f = len(dec_lo)
    m = x.shape[-1]
    out = _dwt_length(m, f)
    # xp[q] = xs[q - (F - 2)]: F - 2 samples before x and 2 * out - m after it.
    widths = [(0, 0)] * (x.ndim - 1) + [(f - 2, 2 * out - m)]
    xp = jnp.pad(x, widths, mode="symmetric")  # (..., 2 * out + F - 2)
    return _filter_pair(xp, out, dec_lo, dec_hi)


def _synthesis_level(
    a: jax.Array, d: jax.Array, rec_lo: Sequence[float], rec_hi: Sequence[float]
) -> jax.Array:
    """One inverse level, ``pywt.idwt(a, d, mode="symmetric")``.

    The full convolution of the zero-upsampled bands with the synthesis filters,
    keeping samples ``[F - 2, 2 * len(a))``. Output sample ``2r`` (even) uses the
    even filter taps and sample ``2r + 1`` the odd ones, both over the coefficient
    window ``[r, r + F/2)``, so each phase is F/2 slices of ``a`` and of ``d``.

    Args:
        a: ``(..., c)`` approximation coefficients.
        d: ``(..., c)`` detail coefficients (same length as ``a``).
        rec_lo: Low-pass synthesis filter, even length F.
        rec_hi: High-pass synthesis filter, length F.

    Returns:
        ``(..., 2 * c - F + 2)`` reconstruction.
    """
    f = len(rec_lo)
    half = f // 2
    c = a.shape[-1]
    rows = c - half + 1
    phases = []
    for parity in (0, 1):
        y = None
        for i in range(half):
            start = half - 1 - i
            tap_lo, tap_hi = rec_lo[2 * i + parity], rec_hi[2 * i + parity]
            term = (
                tap_lo * a[..., start : start + rows]
                + tap_hi * d[..., start : start + rows]
            )
            y = term if y is None else y + term
        phases.append(y)
    both = jnp.stack(phases, axis=-1)  # (..., rows, 2)
    return both.reshape(*both.shape[:-2], 2 * rows)


def _materialize(x: jax.Array) -> jax.Array:
    """Keep XLA from fusing the producer of ``x`` into the transform (or back).

    Without this fence, composing ``inverse(forward(x))`` (or feeding ``inverse``
    an elementwise expression) lets XLA inline the producing filter into every tap
    of the consumer, recomputing each value F times. XLA:CPU (jax 0.10.2) does not
    always honour the barrier: it still inlined the masked gossip's neighbour
    gathers into the inverse, which ``sharing/partial.py`` fences with a
    conditional instead.
    """
    return jax.lax.optimization_barrier(x)


def _split_bands(z: jax.Array, lengths: Sequence[int]) -> list[jax.Array]:
    """Static slices of the last axis of ``z`` into consecutive bands."""
    bands, start = [], 0
    for length in lengths:
        bands.append(z[..., start : start + length])
        start += length
    return bands


def _polyphase_pair(
    n: int, wavelet: str, level: int, lengths: Sequence[int]
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    dec_lo, dec_hi, rec_lo, rec_hi = _filter_bank(wavelet)

    def forward(x: jax.Array) -> jax.Array:
        approx = jnp.asarray(x)
        details = []
        for _ in range(level):
            approx, detail = _analysis_level(approx, dec_lo, dec_hi)
            details.append(detail)
        return _materialize(jnp.concatenate([approx] + details[::-1], axis=-1))

    def inverse(z: jax.Array) -> jax.Array:
        approx, *details = _split_bands(_materialize(jnp.asarray(z)), lengths)
        for detail in details:
            # waverec: a running approximation one longer than the band loses its
            # last sample (SPEC 4.4).
            approx = approx[..., : detail.shape[-1]]
            approx = _synthesis_level(approx, detail, rec_lo, rec_hi)
        return approx[..., :n]

    return forward, inverse


# ----------------------------------------------------------------------------------
# jaxwt glue
# ----------------------------------------------------------------------------------


def _jaxwt_pair(
    n: int, wavelet: str, level: int, lengths: Sequence[int]
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    import jaxwt

    wave = pywt.Wavelet(wavelet)
    m = sum(lengths)

    def forward(x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        lead = x.shape[:-1]
        coeffs = jaxwt.wavedec(
            x.reshape(-1, n), wave, mode="symmetric", level=level
        )  # [(B, len cA_L), (B, len cD_L), ..., (B, len cD_1)]
        return jnp.concatenate(coeffs, axis=-1).reshape(*lead, m)

    def inverse(z: jax.Array) -> jax.Array:
        z = jnp.asarray(z)
        lead = z.shape[:-1]
        bands = _split_bands(z.reshape(-1, m), lengths)
        y = jaxwt.waverec(bands, wave)  # (B, N) or (B, N + 1)
        return y[..., :n].reshape(*lead, n)

    return forward, inverse


# ----------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        allowed = ", ".join(repr(b) for b in BACKENDS)
        raise ConfigError(f"backend={backend!r} is not allowed: use one of {allowed}")
    if backend == "auto":
        # Fastest correct kernel measured on CPU; its slices and multiply-adds fuse
        # into a few memory-bound loops on any XLA backend.
        return "polyphase"
    return backend


@functools.lru_cache(maxsize=64)
def make_wavelet_transform(
    n: int, wavelet: str = "sym2", level: int = 4, backend: str = "auto"
) -> Transform:
    """Build the batched multilevel DWT of length-``n`` vectors and its inverse.

    ``forward(x)[b]`` equals ``pywt.coeffs_to_array(pywt.wavedec(x[b], wavelet,
    level=level, mode="symmetric"))[0]`` and ``inverse(z)[b]`` equals
    ``pywt.waverec(bands of z[b], wavelet, mode="symmetric")[:n]``, to float32
    round-off. Calls with the same arguments return the same object.

    Args:
        n: Input length N.
        wavelet: Name of a discrete PyWavelets wavelet.
        level: Decomposition level, ``1 <= level <= max_level(n, wavelet)``.
        backend: ``"polyphase"`` (strided-slice kernel), ``"jaxwt"`` (the jaxwt
            library) or ``"auto"`` (the fastest correct one: polyphase).

    Returns:
        A ``Transform`` named ``f"{wavelet}/{level}/{backend}"`` with
        ``m == coeff_length(n, wavelet, level)``; ``forward`` maps ``(B, n)`` to
        ``(B, m)`` and ``inverse`` maps ``(B, m)`` to ``(B, n)``, both jitted.

    Raises:
        ConfigError: Unknown wavelet or backend, or a level out of range.
    """
    resolved = _resolve_backend(backend)
    lengths = band_lengths(n, wavelet, level)
    n, level = int(n), int(level)
    build = _polyphase_pair if resolved == "polyphase" else _jaxwt_pair
    forward, inverse = build(n, wavelet, level, lengths)
    # each level writes len(cA_j) + len(cD_j) = 2 len(cD_j) outputs of F multiply-adds
    details = sum(lengths[1:])
    return Transform(
        name=f"{wavelet}/{level}/{resolved}",
        n=n,
        m=sum(lengths),
        forward=jax.jit(forward),
        inverse=jax.jit(inverse),
        flops=4.0 * _filter_length(wavelet) * details,
    )
