"""Public building blocks of partial sharing, and :func:`compose`, which makes a strategy.

Top-k, wavelet top-k and JWINS (SPEC 4.2, 4.4, 4.5) are one pipeline with different
parts (DESIGN.md "Compose, don't duplicate"); random sampling (SPEC 4.3) is the same
pipeline with a random selection, and CHOCO-SGD (SPEC 4.7) uses its selection and
codec blocks. A new sparsifier is usually one new block; :func:`compose` gives it
everything else: exact bytes, gossip, faults, sweeps, the simulated clock. One round,
all ``n`` nodes at once (``x`` are the models after local training)::

    P          = transform.forward(x)                  # (n, N) float32 -> (n, L)
    s, st      = score.rank(st, x, P, hp)              # (n, L) float32 >= 0
    mask, full = selection.select(s, key, hp, inputs)  # (n, L) bool, (n,) bool
    st         = score.rewind(st, mask)
    V, vb, ct  = values.encode(ct, P, mask, key', hp)  # what receivers decode; bytes
    mb         = indices.size(mask), 0 where full      # (n,) int32 bytes
    Z          = fill.mix(table, P, V, mask, hp)       # the only cross-node block
    x_new      = transform.inverse(Z)                  # (n, L) -> (n, N) float32
    st         = score.update(st, x_new)

``key`` is the strategy's key of the round (the selection draws from it, e.g.
JWINS's alphas); the value codec gets ``key' = fold_in(key, 1)``. ``hp`` is the
strategy's traced hyperparameters, a dict with an entry per block that declares any.
A transform is a :class:`~jwins_jax.wavelets.Transform` (``forward``, ``inverse``,
``m``, ``flops``, ``dtype``); the other blocks are the dataclasses below, each built
by a factory.

The contract of every block:

* **Shapes are static** and the node axis comes first: ``n`` nodes, ``N`` model
  values, ``L`` coefficients (``transform.m``). Every array a block keeps in the
  strategy's state has the node axis first, ``(n, ...)``: an offline node's rows are
  restored after the round (:mod:`jwins_jax.faults`).
* **Traced** are the arrays a block computes with and the hyperparameters it
  declares (``traced``: names of the strategy's options it reads; ``hparams`` turns
  their values into a pytree of arrays on the host, so sweeps ``vmap`` over them).
  Everything else (method names, lengths, dtypes, modes) is fixed when the block is
  built.
* **A block must not** branch in Python on a traced value, call back to the host,
  keep global or hidden state, draw randomness from anything but the key it is
  given, or mix nodes: only the fill block reads other nodes' rows (through the
  round's neighbour table). A node's score, selection and encoding depend on its own
  row alone, so a round is the same for a node whatever its neighbours send.
* **Dtypes**: models are float32; coefficients have ``transform.dtype`` (float32 for
  identity and wavelets; a complex transform declares complex64 and the other blocks
  follow it: the accumulator has that dtype, scores are magnitudes ``|.|`` in
  float32, a raw value costs its ``itemsize`` in bytes).
* **Cost**: each block declares its arithmetic per node and round as a
  :class:`~jwins_jax.sharing.base.Cost` (FLOPs before sending, after receiving and
  per value received); :func:`compose` adds them up into ``Sharing.cost``, which the
  simulated clock (:mod:`jwins_jax.simtime`) turns into seconds.

The blocks:

=============  ==============================================================  ==========
block          built-ins                                                       SPEC
=============  ==============================================================  ==========
transform      :func:`identity`, :func:`wavelet`, :func:`fft`                  4.2, 4.4,
                                                                               4.6
score          :func:`score`: by ``change`` or ``magnitude``; accumulation     4.2
               ``none``, ``accumulate`` or ``legacy``
cut-off        :func:`fixed_alpha`, :func:`alpha_list`; k = round(alpha L)     4.2, 4.5
selection      :func:`topk` (exactly k, ties to the lower index),              4.2, 4.7,
               :func:`threshold` (at least the k-th largest, ties kept),       4.3
               :func:`bernoulli` (i.i.d. mask, no score)
value codec    :func:`raw_values` (``itemsize`` bytes per value, lossless),    5, 5.4
               :func:`quantize` (K levels, bit-packed, lossy)
index codec    :func:`elias_gamma`, :func:`raw_indices` (4: int32, 8: int64),  5.3,
               :func:`seed`, :func:`no_indices`                                decisions
fill           :func:`fill_with_own`, :func:`masked_average`                   4.2, 4.4
=============  ==============================================================  ==========

A value codec may be lossy: ``encode`` returns the values as the receivers decode
them (the fill uses those; the sender keeps its own exact values) and the exact bytes
of each message's values. A codec with state (an error-feedback residual) keeps it
``(n, ...)`` in the strategy's state.

Decisions and readings of SPEC for the cut-offs:

* ``k = round(alpha * L)`` with Python's round-half-to-even in float64, computed on
  the host for every value of the alpha list. When per-node alphas are passed to a
  step (``RoundInputs.alphas``), values equal to an entry of the list use that
  entry's host ``k``; other values use ``round(alpha * L)`` in float32 (exact except
  within float32 rounding of a half-way point).
* ``alpha >= metadata_cap`` is a full share for top-k, wavelet and JWINS (``>=`` as
  in the original), ``alpha > metadata_cap`` for random sampling (strict, SPEC 4.3),
  and CHOCO-SGD has no cap. A full share sends all ``L`` values and no metadata.
* JWINS draws each node's alpha uniformly from the list with the round's key
  (split per round and per node) instead of CPython's ``random.seed(uid)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jwins_jax import accounting, gossip, sparsify, wavelets
from jwins_jax.errors import ConfigError
from jwins_jax.options import Option
from jwins_jax.sharing.base import (
    OPTIONS,
    Cost,
    RoundInputs,
    Sharing,
    as_stack,
    make_stats,
    ranking_flops,
)
from jwins_jax.topology import NeighborTable
from jwins_jax.wavelets import Transform

ACCUMULATION_MODES = ("none", "accumulate", "legacy")
SCORES = ("change", "magnitude")

# --------------------------------------------------------------------- transforms


def identity(n_params: int) -> Transform:
    """The identity transform (parameter-space sharing, SPEC 4.2): ``L = N``.

    Cost: nothing.
    """
    return wavelets.identity_transform(n_params)


def wavelet(
    n_params: int, name: str = "sym2", level: int = 4, backend: str = "auto"
) -> Transform:
    """The batched multilevel DWT in pywt's ``coeffs_to_array`` layout (SPEC 4.4).

    ``L = M > N`` (boundary extension, SPEC Appendix B); float32 coefficients.
    Cost: ``transform.flops`` per forward and per inverse (2 per multiply-add).

    Raises:
        ConfigError: an unknown wavelet or backend, or a level too deep for N.
    """
    wavelets.validate_wavelet(name, level, n_params)
    return wavelets.make_wavelet_transform(n_params, name, level, backend=backend)


def fft(n_params: int) -> Transform:
    """The real FFT of the flat vector (SPEC 4.6's ablation): ``L = N // 2 + 1``
    complex64 coefficients (``rfft``), inverted by ``irfft(..., n=N)``.

    Unlike the original, which inverts without a length (``2 (L - 1)`` samples, one
    short for odd N) and whose receiver cannot take a full share, this works for
    every N and for full shares (SPEC 10.7). A coefficient sent costs 8 bytes (its
    two float32 parts) with :func:`raw_values`. ``irfft`` reads only the real part
    of the zero-frequency bin (and of the Nyquist bin for even N); the spectra of
    real models, and their fill-with-own averages, have none.

    Cost model: ``5 N log2 N`` FLOPs per forward and per inverse (the textbook
    count of a complex FFT of length N; a real FFT needs about half, the same
    order, so the figure is an upper estimate).

    Raises:
        ConfigError: N < 1.
    """
    n = int(n_params)
    if n < 1:
        raise ConfigError(f"n_params={n_params!r}: the FFT needs at least one value")

    def forward(x: jax.Array) -> jax.Array:
        return jnp.fft.rfft(jnp.asarray(x, jnp.float32), axis=-1).astype(jnp.complex64)

    def inverse(z: jax.Array) -> jax.Array:
        return jnp.fft.irfft(z, n=n, axis=-1).astype(jnp.float32)

    flops = 5.0 * n * math.log2(max(n, 2))
    return Transform("rfft", n, n // 2 + 1, forward, inverse, flops, jnp.complex64)


def transform_cost(transform: Transform) -> Cost:
    """A transform's share of a round: one forward before, one inverse after."""
    return Cost(pre=float(transform.flops), post=float(transform.flops))


# -------------------------------------------------------------------------- scores


@struct.dataclass
class ScoreState:
    ref: jax.Array  # (n, N) model after the previous averaging; (n, 0) if unused
    acc: jax.Array  # (n, L) accumulated change (transform dtype); (n, 0) without


@dataclasses.dataclass(frozen=True)
class Score:
    """How each node ranks its coefficients (SPEC 4.2 pre-step and post-step).

    Attributes:
        name: e.g. ``"change/legacy"``.
        init: ``x0 (n, N) -> state``.
        rank: ``(state, x (n, N), coef (n, L), hp) -> (score (n, L) float32 >= 0,
            state)``; ``coef`` is ``transform.forward(x)``, ``hp`` its traced
            hyperparameters (None without).
        rewind: ``(state, mask (n, L) bool) -> state`` after the selection (an
            accumulator forgets what was sent).
        update: ``(state, x_new (n, N)) -> state`` after averaging.
        cost: its FLOPs per node and round.
        traced: strategy options it reads as traced hyperparameters.
        hparams: ``(**values of traced) -> pytree`` on the host.
    """

    name: str
    init: Callable[[jax.Array], Any]
    rank: Callable[..., tuple[jax.Array, Any]]
    rewind: Callable[[Any, jax.Array], Any]
    update: Callable[[Any, jax.Array], Any]
    cost: Cost = Cost()
    traced: tuple[str, ...] = ()
    hparams: Callable[..., Any] | None = None


def score(
    transform: Transform, by: str = "change", accumulation: str = "none"
) -> Score:
    """The built-in scores of SPEC 4.2 (and 4.4's ``change_based_selection``).

    With ``x`` the model after training, ``r`` the model after the previous averaging
    and ``A`` the accumulator (transform dtype, starting at 0)::

        D = T(x - r)
        by="change":    none -> |D|;  accumulate -> A += D, |A|;  legacy -> |D + A|
        by="magnitude": |T(x)| (the accumulator, if any, is still kept, as in the
                        original)
        rewind: A[sent] = 0 (a full share resets all of A)
        update: legacy -> A += T(x_new - r);  r = x_new

    Args:
        transform: the pipeline's transform.
        by: ``"change"`` or ``"magnitude"``.
        accumulation: ``"none"``, ``"accumulate"`` or ``"legacy"``.

    Cost: ``L`` for the magnitudes; reading the change adds ``N + T + L``
    (``x - r``, the transform, the accumulation) before sending, and legacy adds the
    same after averaging.
    """
    if by not in SCORES:
        raise ValueError(f"by={by!r}: allowed {SCORES}")
    if accumulation not in ACCUMULATION_MODES:
        raise ValueError(f"accumulation={accumulation!r}: allowed {ACCUMULATION_MODES}")
    tr = transform
    length, n_params = tr.m, tr.n
    accumulate = accumulation != "none"
    reads_change = by == "change" or accumulate

    def init(x0: jax.Array) -> ScoreState:
        x0 = as_stack(x0)
        n = x0.shape[0]
        return ScoreState(
            ref=x0 if reads_change else x0[:, :0],
            acc=jnp.zeros((n, length if accumulate else 0), tr.dtype),
        )

    def rank(state: ScoreState, x: jax.Array, coef: jax.Array, hp: Any = None):
        acc = state.acc
        value = coef
        if reads_change:
            change = tr.forward(x - state.ref)  # (n, L) T(x - r)
            if accumulation == "accumulate":
                acc = acc + change
                value = acc
            elif accumulation == "legacy":
                value = change + acc
            else:
                value = change
        if by == "magnitude":
            value = coef
        return jnp.abs(value).astype(jnp.float32), state.replace(acc=acc)

    def rewind(state: ScoreState, mask: jax.Array) -> ScoreState:
        if not accumulate:
            return state
        return state.replace(acc=jnp.where(mask, jnp.zeros((), tr.dtype), state.acc))

    def update(state: ScoreState, x_new: jax.Array) -> ScoreState:
        acc = state.acc
        if accumulation == "legacy":
            acc = acc + tr.forward(x_new - state.ref)
        ref = x_new if reads_change else state.ref
        return ScoreState(ref=ref, acc=acc)

    change_cost = n_params + tr.flops + length  # x - r, T(x - r), accumulate
    cost = Cost(
        pre=length + (change_cost if reads_change else 0.0),
        post=change_cost if accumulation == "legacy" else 0.0,
    )
    return Score(f"{by}/{accumulation}", init, rank, rewind, update, cost)


# ------------------------------------------------------------------------ cut-offs


@struct.dataclass
class CutoffHyper:
    alphas: jax.Array  # (A,) float32 the alpha list (A = 1 for a fixed alpha)
    ks: jax.Array  # (A,) int32 round(alpha * L) of each entry, Python rounding
    cap: jax.Array  # () float32 metadata_cap (1 where the cut-off has none)


@dataclasses.dataclass(frozen=True)
class Cutoff:
    """Each node's fraction ``alpha`` and count ``k`` of a round, and full shares.

    Attributes:
        name: ``"alpha"`` or ``"alpha_list"``.
        length: ``L``, the length ``k`` counts in.
        traced: the options its ``hparams`` takes (``alpha`` or ``alpha_list``, and
            ``metadata_cap`` unless ``cap`` is None).
        cap: ``">="`` (full when ``alpha >= metadata_cap``), ``">"`` (strict) or
            None (never full).
        draw_from_list: draw each node's alpha from the list with the round's key,
            or use the single alpha.
    """

    name: str
    length: int
    traced: tuple[str, ...]
    cap: str | None = ">="
    draw_from_list: bool = False

    def hparams(
        self,
        alpha: float | None = None,
        alpha_list: Sequence[float] = (),
        metadata_cap: float = 1.0,
    ) -> CutoffHyper:
        """The traced values as arrays; ``k`` is computed here with Python rounding."""
        alphas = tuple(alpha_list) if alpha is None else (alpha,)
        return CutoffHyper(
            alphas=jnp.asarray(np.asarray(alphas, np.float32)),
            ks=jnp.asarray(
                [sparsify.k_from_alpha(a, self.length) for a in alphas], jnp.int32
            ),
            cap=jnp.float32(metadata_cap),
        )

    def draw(
        self, hp: CutoffHyper, key: jax.Array, n: int, alphas: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(alpha, k, full)``, each ``(n,)``, for one round.

        ``alphas`` (``RoundInputs.alphas``) replaces the drawn or fixed alphas.
        """
        if alphas is not None:
            alpha = jnp.broadcast_to(jnp.asarray(alphas, jnp.float32), (n,))
            k_float = jnp.round(alpha * self.length).astype(jnp.int32)
            hit = alpha[:, None] == hp.alphas[None, :]
            k_list = jnp.max(jnp.where(hit, hp.ks[None, :], -1), axis=1)
            k = jnp.where(k_list >= 0, k_list, k_float)
        elif self.draw_from_list:
            choice = jax.random.randint(key, (n,), 0, hp.alphas.shape[0])
            alpha, k = hp.alphas[choice], hp.ks[choice]
        else:
            alpha = jnp.broadcast_to(hp.alphas[0], (n,))
            k = jnp.broadcast_to(hp.ks[0], (n,))
        if self.cap == ">=":
            full = alpha >= hp.cap
        elif self.cap == ">":
            full = alpha > hp.cap
        else:
            full = jnp.zeros((n,), bool)
        return alpha, k, full


def fixed_alpha(length: int, cap: str | None = ">=") -> Cutoff:
    """One fraction ``alpha`` for every node and round (options ``alpha`` and, with
    a cap, ``metadata_cap``)."""
    traced = ("alpha",) if cap is None else ("alpha", "metadata_cap")
    return Cutoff("alpha", int(length), traced, cap, draw_from_list=False)


def alpha_list(length: int, cap: str | None = ">=") -> Cutoff:
    """A fraction drawn uniformly per node and round from ``alpha_list`` (JWINS,
    SPEC 4.5; options ``alpha_list`` and ``metadata_cap``)."""
    traced = ("alpha_list",) if cap is None else ("alpha_list", "metadata_cap")
    return Cutoff("alpha_list", int(length), traced, cap, draw_from_list=True)


# ---------------------------------------------------------------------- selections


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which coefficients each node sends in a round.

    Attributes:
        name: e.g. ``"topk/bisect"``.
        select: ``(score (n, L) float32 >= 0, key, hp, inputs: RoundInputs) ->
            (mask (n, L) bool, full (n,) bool)``. ``full`` marks nodes that send
            everything (their message carries no index metadata). A selection that
            ignores scores (``uses_score=False``) gets zeros of the right shape.
            ``RoundInputs.mask`` / ``alphas``, when given, replace the node's own
            choice (selections that have such a notion read them).
        uses_score: whether it reads the score (else the pipeline needs no score).
        traced: strategy options it reads as traced hyperparameters.
        hparams: ``(**values of traced) -> pytree`` on the host.
        cost: its FLOPs per node and round.
    """

    name: str
    select: Callable[..., tuple[jax.Array, jax.Array]]
    uses_score: bool = True
    traced: tuple[str, ...] = ()
    hparams: Callable[..., Any] | None = None
    cost: Cost = Cost()


def topk(cutoff: Cutoff, method: str = "auto") -> Selection:
    """The ``k`` largest scores of each node, exactly ``k`` (SPEC 4.2, 4.4, 4.5).

    Ties go to the lower index (:func:`jwins_jax.sparsify.topk_mask`, whose
    ``method`` picks the kernel: all exact, identical masks). A full share
    (``cutoff``'s cap) selects everything. ``RoundInputs.mask`` replaces the ranked
    selection (full shares still select everything); ``RoundInputs.alphas`` the
    cut-off's alphas.

    Cost: ``L`` to write the mask plus ``L ceil(log2 L)`` to rank.
    """
    length = cutoff.length
    if method not in sparsify.METHODS:
        raise ValueError(f"method={method!r}: allowed {sparsify.METHODS}")

    def select(score, key, hp, inputs):
        n = score.shape[0]
        _, k, full = cutoff.draw(hp, key, n, inputs.alphas)
        if inputs.mask is not None:  # a given selection replaces the ranked one
            return jnp.asarray(inputs.mask, bool) | full[:, None], full
        k = jnp.where(full, length, k)
        return sparsify.topk_mask(score, k, method=method, k_max=length), full

    cost = Cost(pre=length + ranking_flops(length))
    return Selection(
        f"topk/{method}", select, True, cutoff.traced, cutoff.hparams, cost
    )


def threshold(cutoff: Cutoff) -> Selection:
    """Every score at least the ``k``-th largest: ties keep more than ``k`` and
    ``k = 0`` keeps everything (CHOCO-SGD's top-k, SPEC 4.7).

    Cost: ``L`` to write the mask plus ``L ceil(log2 L)`` to rank.
    """
    length = cutoff.length

    def select(score, key, hp, inputs):
        n = score.shape[0]
        _, k, full = cutoff.draw(hp, key, n, inputs.alphas)
        if inputs.mask is not None:
            return jnp.asarray(inputs.mask, bool) | full[:, None], full
        mask = sparsify.threshold_mask(score, jnp.where(full, length, k))
        return mask, full

    cost = Cost(pre=length + ranking_flops(length))
    return Selection("threshold", select, True, cutoff.traced, cutoff.hparams, cost)


def bernoulli(cutoff: Cutoff) -> Selection:
    """Each entry independently with probability ``alpha`` (random sampling, SPEC
    4.3): ``u <= alpha`` with ``u ~ U[0, 1)`` drawn from the round's key, so the
    count is Binomial, not fixed; no score is read.

    ``RoundInputs.mask`` replaces the draw, ``RoundInputs.alphas`` the probability.
    Full shares (``cutoff``'s cap; random sampling uses ``">"``) select everything.

    Cost: one uniform draw per entry, ``L``.
    """
    length = cutoff.length

    def select(score, key, hp, inputs):
        n = score.shape[0]
        alpha, _, full = cutoff.draw(hp, key, n, inputs.alphas)
        if inputs.mask is not None:
            mask = jnp.asarray(inputs.mask, bool)
        else:
            p = hp.alphas[0] if inputs.alphas is None else alpha
            mask = sparsify.bernoulli_mask(key, (n, length), p)
        return mask | full[:, None], full

    return Selection(
        "bernoulli",
        select,
        False,
        cutoff.traced,
        cutoff.hparams,
        Cost(pre=float(length)),
    )


# -------------------------------------------------------------------------- codecs


@dataclasses.dataclass(frozen=True)
class ValueCodec:
    """How the selected values travel, and their exact size.

    Attributes:
        name: e.g. ``"raw"``.
        encode: ``(state, values (n, L), mask (n, L) bool, key, hp) -> (decoded
            (n, L), value_bytes (n,) int32, state)``: ``decoded`` holds what the
            receivers reconstruct at the masked entries (dtype of ``values``;
            entries outside the mask are ignored) and ``value_bytes`` the exact
            bytes of each node's values in one message (a bit-packed codec counts
            its bits, headers such as a scale included, rounded up to whole
            bytes). A lossless codec returns ``values`` itself.
        init: ``(n, L, dtype) -> state``, every leaf ``(n, ...)`` (e.g. an error
            feedback residual); ``()`` for none.
        traced: strategy options it reads as traced hyperparameters.
        hparams: ``(**values of traced) -> pytree`` on the host.
        cost: its FLOPs per node and round.
    """

    name: str
    encode: Callable[..., tuple[jax.Array, jax.Array, Any]]
    init: Callable[[int, int, Any], Any] = lambda n, length, dtype: ()
    traced: tuple[str, ...] = ()
    hparams: Callable[..., Any] | None = None
    cost: Cost = Cost()


def raw_values() -> ValueCodec:
    """Values as they are: ``itemsize`` bytes each (float32: 4, SPEC decisions table;
    complex64: 8), lossless. Cost: nothing."""

    def encode(state, values, mask, key, hp):
        count = jnp.sum(mask, axis=1, dtype=jnp.int32)
        return values, jnp.dtype(values.dtype).itemsize * count, state

    return ValueCodec("raw", encode)


def quantize(levels: int, length: int, dtype: Any = jnp.float32) -> ValueCodec:
    """SPEC 5.4's quantizer with ``K = levels``, its decoder scaled correctly (lossy).

    Each node's message, ``x`` its values (a complex value counts as two numbers,
    its real and imaginary parts)::

        s = max|x| / K              (float32; over the message's numbers; 0 -> q = 0)
        q = round(x / s)            (half to even, clipped to [-K, K])
        receivers decode q * s

    The original decodes with ``mean|x| / K`` instead of ``max|x| / K``, which
    shrinks every value by ``mean|x| / max|x|`` (SPEC 10.8); that bug is not
    reproduced. The sender keeps its own exact values; its receivers use the
    decoded ones.

    Layout and exact size of a message with ``c`` values: the scale ``s`` as one
    float32 (4 bytes), then the ``c`` values' numbers in order (real part before
    imaginary part), each ``q + P - 1`` as an unsigned ``b``-bit integer, packed
    without gaps and zero-padded to a whole byte, where ``b`` =
    :func:`~jwins_jax.accounting.quantized_bits` (K) (the smallest power of two
    ``P > K`` gives ``b = log2 P + 1``: 16 bits for K = 32767, 8 for K = 127)::

        value_bytes = 4 + ceil(c * numbers_per_value * b / 8),  0 when c = 0

    The bit width follows from K, which every node knows (a static option), so it
    does not travel (the original adds two header bytes, pickled).

    Args:
        levels: K >= 1.
        length: L, the number of coefficients a message chooses from (for the cost).
        dtype: the coefficients' dtype (complex: two numbers per value).

    Cost: 4 per number on all L coefficients before sending (magnitude, maximum,
    division, rounding: an upper bound, a node only quantizes what it sends) and one
    multiplication per number received.
    """
    bits = accounting.quantized_bits(levels)
    numbers = 2 if jnp.issubdtype(dtype, jnp.complexfloating) else 1
    k = jnp.float32(levels)

    def encode(state, values, mask, key, hp):
        if jnp.iscomplexobj(values):
            parts = jnp.stack([jnp.real(values), jnp.imag(values)], axis=-1)
        else:
            parts = values[..., None]  # (n, L, numbers) float32
        parts = parts.astype(jnp.float32)
        sent = mask[..., None]
        zero = jnp.zeros((), jnp.float32)
        top = jnp.max(jnp.where(sent, jnp.abs(parts), zero), axis=(1, 2))  # (n,)
        scale = (top / k)[:, None, None]
        safe = jnp.where(scale > 0, scale, jnp.ones((), jnp.float32))
        q = jnp.clip(jnp.round(parts / safe), -k, k)
        dec = q * scale
        if jnp.iscomplexobj(values):
            dec = jax.lax.complex(dec[..., 0], dec[..., 1])
        else:
            dec = dec[..., 0]
        decoded = jnp.where(mask, dec.astype(values.dtype), values)
        count = jnp.sum(mask, axis=1, dtype=jnp.int32)
        return decoded, accounting.quantized_bytes(count, numbers, bits), state

    cost = Cost(pre=4.0 * numbers * length, per_value=float(numbers))
    return ValueCodec(f"quantize{levels}", encode, cost=cost)


def value_codec(float_precision: int, transform: Transform) -> ValueCodec:
    """The built-in strategies' value codec from their ``float_precision`` option:
    :func:`raw_values` for 0, else :func:`quantize` with ``K = float_precision``."""
    if not float_precision:
        return raw_values()
    return quantize(float_precision, transform.m, transform.dtype)


@dataclasses.dataclass(frozen=True)
class IndexCodec:
    """The metadata that says which entries a message carries, and its exact size.

    Attributes:
        name: e.g. ``"elias_gamma"``.
        size: ``mask (n, L) bool -> (n,) int32`` bytes of one message's metadata
            (the composition sends none with a full share).
        cost: its FLOPs per node and round.
    """

    name: str
    size: Callable[[jax.Array], jax.Array]
    cost: Cost = Cost()


def elias_gamma() -> IndexCodec:
    """Elias-gamma coded gaps of the sorted indices (SPEC 5.3): ``ceil(bits / 8) +
    16`` bytes, 16 for one index, 0 for none (:func:`jwins_jax.accounting.
    elias_gamma_bytes`)."""
    return IndexCodec("elias_gamma", accounting.elias_gamma_bytes)


def raw_indices(bytes_per_index: int = accounting.RAW_INDEX_BYTES) -> IndexCodec:
    """Plain indices: 4 bytes each as int32 (top-k, SPEC 4.2) or 8 as int64
    (CHOCO-SGD, SPEC 4.7)."""

    def size(mask: jax.Array) -> jax.Array:
        return bytes_per_index * jnp.sum(mask, axis=1, dtype=jnp.int32)

    return IndexCodec(f"raw{8 * bytes_per_index}", size)


def seed(bytes_per_message: int = accounting.SEED_BYTES) -> IndexCodec:
    """A seed from which receivers regenerate the mask (random sampling, SPEC 4.3):
    a fixed 8 bytes per message, whatever the mask."""

    def size(mask: jax.Array) -> jax.Array:
        return jnp.full(mask.shape[:1], bytes_per_message, jnp.int32)

    return IndexCodec("seed", size)


def no_indices() -> IndexCodec:
    """No metadata (a selection the receivers know already)."""

    def size(mask: jax.Array) -> jax.Array:
        return jnp.zeros(mask.shape[:1], jnp.int32)

    return IndexCodec("none", size)


# ---------------------------------------------------------------------------- fill


@dataclasses.dataclass(frozen=True)
class Fill:
    """How a receiver combines what arrived with its own coefficients.

    Attributes:
        name: e.g. ``"fill_with_own"``.
        mix: ``(table, own (n, L), received (n, L), mask (n, L) bool, hp) -> (n,
            L)``: row j of ``received`` and ``mask`` is sender j's message (the
            same to all its receivers); ``table`` is the round's neighbour table
            with Metropolis-Hastings weights (under faults: of the surviving graph).
        cost: its FLOPs per node and round (``per_value``: per value received).
        traced: strategy options it reads as traced hyperparameters.
        hparams: ``(**values of traced) -> pytree`` on the host.
    """

    name: str
    mix: Callable[..., jax.Array]
    cost: Cost = Cost()
    traced: tuple[str, ...] = ()
    hparams: Callable[..., Any] | None = None


def fill_with_own() -> Fill:
    """Missing coefficients are filled with the receiver's own (SPEC 4.2, 4.4)::

        z_i = p_i + sum_j w_ij mask_j (v_j - p_i)

    the Metropolis-Hastings average in which the self weight takes the share of
    every neighbour that did not send an entry. A round in which no node sends
    anything returns ``p`` itself (equal, except that ``-0.0`` stays ``-0.0``).

    Cost: 3 per value received (the difference, the weight, the add).
    """

    def mix(table, own, received, mask, hp=None):
        values = None if received is own else received
        # The conditional also makes XLA write Z to memory before an inverse
        # transform reads it: otherwise XLA:CPU inlines the neighbour gathers into
        # every filter tap of the inverse and recomputes them (n = 96, N = 89,834:
        # mixing + inverse took 28 ms that way, 13 ms with the conditional).
        return jax.lax.cond(
            jnp.any(mask),
            lambda: gossip.mix_masked(table, own, mask, values),
            lambda: own,
        )

    return Fill("fill_with_own", mix, Cost(per_value=3.0))


def masked_average(length: int) -> Fill:
    """The Metropolis-Hastings average over the copies that carry each entry::

        z_i = (w_ii p_i + sum_j w_ij mask_j v_j) / (w_ii + sum_j w_ij mask_j)

    The weights of the neighbours that did not send an entry are left out and the
    rest renormalised, instead of going to the receiver's own value as in
    :func:`fill_with_own` (the two agree where every neighbour sent the entry).

    Cost: 2 per value received, and 2 per coefficient (the self term, the division).
    """

    def mix(table, own, received, mask, hp=None):
        dtype = own.dtype
        self_w = table.self_weight.astype(dtype)[:, None]
        num = self_w * own
        den = jnp.broadcast_to(self_w, own.shape)
        for c in range(table.idx.shape[1]):
            j = table.idx[:, c]
            w = table.weight[:, c].astype(dtype)[:, None]
            num = num + jnp.where(mask[j], w * received[j], jnp.zeros((), dtype))
            den = den + jnp.where(mask[j], w, jnp.zeros((), dtype))
        return num / den

    return Fill("masked_average", mix, Cost(post=2.0 * length, per_value=2.0))


# --------------------------------------------------------------------- composition


@dataclasses.dataclass(frozen=True)
class Blocks:
    """The blocks a composed strategy is made of (``Sharing.blocks``)."""

    transform: Transform
    score: Score | None
    selection: Selection
    values: ValueCodec
    indices: IndexCodec
    fill: Fill


@struct.dataclass
class PipelineState:
    score: Any  # the score's state, e.g. ScoreState: ref (n, N), acc (n, L); () none
    values: Any  # the value codec's state, leaves (n, ...); () for none

    @property
    def ref(self) -> jax.Array:
        """The built-in score's reference model ``(n, N)`` (``score.ref``)."""
        return self.score.ref

    @property
    def acc(self) -> jax.Array:
        """The built-in score's accumulator ``(n, L)`` (``score.acc``)."""
        return self.score.acc


def compose(
    name: str,
    n_params: int,
    *,
    transform: Transform,
    selection: Selection,
    indices: IndexCodec,
    score: Score | None = None,
    values: ValueCodec | None = None,
    fill: Fill | None = None,
    params: Mapping[str, Any] | None = None,
    options: Mapping[str, Option] | None = None,
    info: Mapping[str, Any] | None = None,
) -> Sharing:
    """A sharing strategy made of blocks (the module docstring's round).

    Top-k, wavelet top-k, JWINS and random sampling are built by this function, and
    so is a user's strategy: write the block that is new, take the others from here,
    and register the factory (:func:`jwins_jax.sharing.register`).

    Args:
        name: the strategy's name.
        n_params: N; ``transform.n`` must equal it.
        transform: maps models to coefficients and back.
        selection: picks each node's entries.
        indices: sizes the index metadata.
        score: ranks the coefficients; required when ``selection.uses_score``.
        values: encodes the values (default :func:`raw_values`).
        fill: combines what arrived (default :func:`fill_with_own`).
        params: the strategy's resolved parameters (``Sharing.params``); those
            whose option is traced are handed to the blocks that declare them.
        options: the options of parameters beyond the built-in ones
            (:data:`~jwins_jax.sharing.base.OPTIONS`).
        info: facts to report in ``Sharing.info`` (``coefficients`` = L is added).

    Returns:
        The :class:`Sharing`; its ``hparams(**traced)`` returns a dict with an entry
        per block that has traced hyperparameters (``"score"``, ``"select"``,
        ``"values"``, ``"fill"``), its ``cost`` is the sum of the blocks' costs,
        ``blocks`` holds the blocks and ``message`` returns the round's decoded
        values and masks (the sender's half of ``step``).

    Raises:
        ValueError: blocks that do not fit together (lengths, a missing score, a
            traced option no block reads or a block reading one the strategy does
            not have).
    """
    values = raw_values() if values is None else values
    fill = fill_with_own() if fill is None else fill
    params = dict(params or {})
    all_options = {**OPTIONS, **(options or {})}
    tr = transform
    length = tr.m
    if tr.n != n_params:
        raise ValueError(f"{name}: transform.n={tr.n} != n_params={n_params}")
    if selection.uses_score and score is None:
        raise ValueError(f"{name}: selection {selection.name!r} needs a score block")
    roles = (
        ("score", score),
        ("select", selection),
        ("values", values),
        ("fill", fill),
    )
    readers = {
        role: block for role, block in roles if block is not None and block.traced
    }
    for p in params:
        if p not in all_options:
            raise ValueError(f"{name}: parameter {p!r} has no option; pass options=")
    traced = {p for p in params if all_options[p].traced}
    wanted = {t for block in readers.values() for t in block.traced}
    if traced - wanted:
        raise ValueError(
            f"{name}: traced option(s) {sorted(traced - wanted)} are read by no block"
        )
    if wanted - traced:
        raise ValueError(
            f"{name}: blocks read traced option(s) {sorted(wanted - traced)} that are "
            "not traced parameters of the strategy"
        )

    def hparams(**given: Any) -> dict[str, Any]:
        return {
            role: block.hparams(**{t: given[t] for t in block.traced})
            for role, block in readers.items()
        }

    def init(x0: jax.Array) -> PipelineState:
        x0 = as_stack(x0)
        return PipelineState(
            score=() if score is None else score.init(x0),
            values=values.init(x0.shape[0], length, tr.dtype),
        )

    def send(state: PipelineState, x, key, hp, inputs):
        """The sender's half of the round: coefficients, selection, encoding."""
        inputs = RoundInputs() if inputs is None else inputs
        n = x.shape[0]
        coef = tr.forward(x)  # (n, L) P
        score_state = state.score
        if score is not None:
            ranked, score_state = score.rank(score_state, x, coef, hp.get("score"))
        else:
            ranked = jnp.zeros((n, length), jnp.float32)
        mask, full = selection.select(ranked, key, hp.get("select"), inputs)
        if score is not None:
            score_state = score.rewind(score_state, mask)
        decoded, value_bytes, codec_state = values.encode(
            state.values, coef, mask, jax.random.fold_in(key, 1), hp.get("values")
        )
        return coef, mask, full, decoded, value_bytes, score_state, codec_state

    def message(
        state: PipelineState,
        x: jax.Array,
        key: jax.Array,
        hp: dict[str, Any],
        inputs: RoundInputs | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        _, mask, _, decoded, *_ = send(state, as_stack(x), key, hp, inputs)
        return decoded, mask

    def step(
        state: PipelineState,
        x: jax.Array,
        key: jax.Array,
        table: NeighborTable,
        hp: dict[str, Any],
        inputs: RoundInputs | None = None,
    ):
        x = as_stack(x)
        coef, mask, full, decoded, value_bytes, score_state, codec_state = send(
            state, x, key, hp, inputs
        )
        mixed = fill.mix(table, coef, decoded, mask, hp.get("fill"))
        x_new = tr.inverse(mixed)
        if score is not None:
            score_state = score.update(score_state, x_new)
        sent = jnp.sum(mask, axis=1, dtype=jnp.int32)
        meta = jnp.where(full, 0, indices.size(mask))
        stats = make_stats(table, sent, meta, full, value_bytes=value_bytes)
        new_state = PipelineState(score=score_state, values=codec_state)
        return x_new, new_state, stats

    cost = transform_cost(tr) + selection.cost + values.cost + indices.cost + fill.cost
    if score is not None:
        cost = cost + score.cost
    return Sharing(
        name,
        n_params,
        init,
        step,
        hparams,
        params,
        {"coefficients": length, **(info or {})},
        options=all_options,
        cost=cost,
        blocks=Blocks(tr, score, selection, values, indices, fill),
        message=message,
    )


__all__ = [
    "ACCUMULATION_MODES",
    "Blocks",
    "Cutoff",
    "CutoffHyper",
    "Fill",
    "IndexCodec",
    "PipelineState",
    "SCORES",
    "Score",
    "ScoreState",
    "Selection",
    "Transform",
    "ValueCodec",
    "alpha_list",
    "bernoulli",
    "compose",
    "elias_gamma",
    "fft",
    "fill_with_own",
    "fixed_alpha",
    "identity",
    "masked_average",
    "no_indices",
    "quantize",
    "raw_indices",
    "raw_values",
    "score",
    "seed",
    "threshold",
    "topk",
    "transform_cost",
    "value_codec",
    "wavelet",
]
