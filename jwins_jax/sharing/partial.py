"""Partial sharing by ranked change: top-k, wavelet top-k, JWINS and the FFT variant
(SPEC 4.2, 4.4, 4.5, 4.6).

The four strategies are compositions of the public blocks of
:mod:`jwins_jax.sharing.blocks`, built by the same :func:`~jwins_jax.sharing.blocks.
compose` a user calls; they differ in their transform, cut-off and index coding:

=========  ========================  ============================  =================
strategy   transform ``T``           cut-off per node and round    index metadata
=========  ========================  ============================  =================
topk       identity (L = N)          fixed ``alpha``               4-byte raw int32
wavelet    DWT (L = M > N)           fixed ``alpha``               Elias-gamma
jwins      DWT (L = M > N)           ``alpha`` drawn from a list   Elias-gamma
fft        rfft (L = N // 2 + 1,     fixed ``alpha``               Elias-gamma
           complex64)
=========  ========================  ============================  =================

and share the score (:func:`~jwins_jax.sharing.blocks.score`), the exact top-k
selection, the value codec (raw values, or quantized with ``float_precision`` = K > 0,
:func:`~jwins_jax.sharing.blocks.quantize`) and the fill-with-own rule. One round at
node i (``x``
is the model after local training, ``r`` the model after the previous averaging,
``A`` the accumulator)::

    P = T(x);  D = T(x - r)
    score: none -> D;  accumulate -> A += D, A;  legacy -> D + A;  magnitude -> |P|
    alpha >= metadata_cap -> send all L values of P, A = 0
    otherwise             -> S = top-round(alpha L) of |score| (ties: lower index),
                             A[S] = 0, send P[S]
    Z_i = P_i + sum_j w_ij 1[S_j] (P_j - P_i)      # receivers fill with their own
    x_post = T^-1(Z)[:N];  legacy: A += T(x_post - r);  r = x_post

Decisions and readings of SPEC (the cut-off's are in :mod:`~jwins_jax.sharing.blocks`:
``k = round(alpha L)`` with Python rounding, ``>=`` for the cap, JWINS's draws):

* A full share costs ``4 L`` value bytes (FFT: ``8 L``, a complex64 value is two
  float32) and no metadata; with quantization the codec's exact size instead.
* The FFT variant (SPEC 4.6; no shipped config uses it) sends Elias-gamma coded
  indices like wavelet and JWINS (the original's FFT sends raw int32 indices unless
  compressed, and its JWINS configs compress with Elias-gamma), so the ablation
  changes the transform alone. It works for odd N and for full shares, both broken
  in the original (SPEC 10.7).
* Elias-gamma metadata is 0 bytes for ``k = 0`` (nothing is sent) and 16 bytes for
  ``k = 1``, where the original coder crashes (SPEC 10.9).
* The MH weights use the current round's degrees for every strategy, JWINS included
  (the original sends JWINS's static-file degree, SPEC 4.5; on static graphs the two
  coincide).
* With ``selection="magnitude"`` the accumulator (if any) is still updated and
  rewound, as in the original, but the ranking uses ``|P|``.
* A round in which no node sends anything (k = 0 everywhere) skips the averaging
  and inverts ``P`` itself; this equals the masked average except that a ``-0.0``
  coefficient stays ``-0.0`` instead of becoming ``+0.0``.
"""

from __future__ import annotations

from typing import Sequence

from jwins_jax.sharing import blocks
from jwins_jax.sharing.base import Sharing

# JWINS's alpha list of the shipped configs (SPEC 4.5).
PAPER_ALPHA_LIST = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)
TOPK_PARAMS = (
    "alpha",
    "metadata_cap",
    "accumulation",
    "topk_method",
    "float_precision",
)
WAVELET_PARAMS = (
    "alpha",
    "metadata_cap",
    "wavelet",
    "level",
    "accumulation",
    "selection",
    "wavelet_backend",
    "topk_method",
    "float_precision",
)
JWINS_PARAMS = ("alpha_list",) + WAVELET_PARAMS[1:]
FFT_PARAMS = (
    "alpha",
    "metadata_cap",
    "accumulation",
    "selection",
    "topk_method",
    "float_precision",
)


def topk(
    n_params: int,
    alpha: float = 0.1,
    metadata_cap: float = 1.0,
    accumulation: str = "none",
    topk_method: str = "auto",
    float_precision: int = 0,
) -> Sharing:
    """PartialModel: top-k of the model change in parameter space (SPEC 4.2)."""
    tr = blocks.identity(n_params)
    return blocks.compose(
        "topk",
        n_params,
        transform=tr,
        score=blocks.score(tr, "change", accumulation),
        selection=blocks.topk(blocks.fixed_alpha(tr.m), topk_method),
        indices=blocks.raw_indices(),
        values=blocks.value_codec(float_precision, tr),
        params={
            "alpha": alpha,
            "metadata_cap": metadata_cap,
            "accumulation": accumulation,
            "topk_method": topk_method,
            "float_precision": float_precision,
        },
    )


def _wavelet_pipeline(name: str, n_params: int, draw: bool, params: dict) -> Sharing:
    """The wavelet-domain composition shared by wavelet and jwins."""
    tr = blocks.wavelet(
        n_params, params["wavelet"], params["level"], params["wavelet_backend"]
    )
    cutoff = blocks.alpha_list(tr.m) if draw else blocks.fixed_alpha(tr.m)
    return blocks.compose(
        name,
        n_params,
        transform=tr,
        score=blocks.score(tr, params["selection"], params["accumulation"]),
        selection=blocks.topk(cutoff, params["topk_method"]),
        indices=blocks.elias_gamma(),
        values=blocks.value_codec(params["float_precision"], tr),
        params=params,
    )


def wavelet(
    n_params: int,
    alpha: float = 0.1,
    metadata_cap: float = 1.0,
    wavelet: str = "sym2",
    level: int = 4,
    accumulation: str = "none",
    selection: str = "change",
    wavelet_backend: str = "auto",
    topk_method: str = "auto",
    float_precision: int = 0,
) -> Sharing:
    """Wavelet top-k with a fixed alpha (SPEC 4.4)."""
    params = dict(locals())
    del params["n_params"]
    return _wavelet_pipeline("wavelet", n_params, False, params)


def jwins(
    n_params: int,
    alpha_list: Sequence[float] = PAPER_ALPHA_LIST,
    metadata_cap: float = 0.5,
    wavelet: str = "sym2",
    level: int = 4,
    accumulation: str = "legacy",
    selection: str = "change",
    wavelet_backend: str = "auto",
    topk_method: str = "auto",
    float_precision: int = 0,
) -> Sharing:
    """JWINS: wavelet top-k with alpha drawn per node and round from a list (SPEC 4.5).

    The defaults are the paper's configuration: sym2, level 4, alpha list
    ``[0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0]``, metadata_cap 0.5 (so only 1.0 is a
    full share), change-based selection with legacy accumulation.

    ``step(..., inputs=RoundInputs(alphas=(n,) array))`` uses the given per-node
    alphas for the round instead of drawing them.
    """
    params = dict(locals())
    del params["n_params"]
    params["alpha_list"] = tuple(alpha_list)
    return _wavelet_pipeline("jwins", n_params, True, params)


def fft(
    n_params: int,
    alpha: float = 0.1,
    metadata_cap: float = 1.0,
    accumulation: str = "none",
    selection: str = "change",
    topk_method: str = "auto",
    float_precision: int = 0,
) -> Sharing:
    """The FFT variant (SPEC 4.6): top-k in the real-FFT domain with a fixed alpha.

    ``L = N // 2 + 1`` complex64 coefficients (:func:`~jwins_jax.sharing.blocks.
    fft`), ranked by ``|.|`` of the (accumulated) change or of the coefficients,
    ``k = round(alpha L)``, 8 bytes per value sent and Elias-gamma indices; receivers
    fill with their own coefficients, average in the frequency domain and invert
    with ``irfft(..., n=N)``. ``alpha >= metadata_cap`` sends all L coefficients.
    """
    tr = blocks.fft(n_params)
    return blocks.compose(
        "fft",
        n_params,
        transform=tr,
        score=blocks.score(tr, selection, accumulation),
        selection=blocks.topk(blocks.fixed_alpha(tr.m), topk_method),
        indices=blocks.elias_gamma(),
        values=blocks.value_codec(float_precision, tr),
        params={
            "alpha": alpha,
            "metadata_cap": metadata_cap,
            "accumulation": accumulation,
            "selection": selection,
            "topk_method": topk_method,
            "float_precision": float_precision,
        },
    )
