"""relthresh: wavelet sharing by a relative threshold, with 2-byte values.

An example of a user strategy for jwins_jax, composed from its public blocks
(:mod:`jwins_jax.sharing.blocks`) with two blocks of its own:

* :func:`relative_threshold`, a selection: node i sends the coefficients whose
  score is at least ``tau`` times its largest score of the round (``tau = 0``:
  every coefficient, a full share; a node whose scores are all 0 sends nothing);
* :func:`wire_values`, a value codec: values travel as ``bfloat16`` or ``float16``
  (2 bytes each; receivers average the rounded values, the sender keeps its own)
  or ``float32`` (4 bytes, lossless).

Everything else is JWINS's (SPEC 4.5): the sym2 wavelet transform, the legacy
accumulated-change score, Elias-gamma index metadata and the fill-with-own rule.
The entry point ``relthresh = "jwins_relthresh:STRATEGY"`` registers it when the
package is installed.
"""

from __future__ import annotations

import jax.numpy as jnp

from jwins_jax.options import Option, interval
from jwins_jax.sharing import OPTIONS as BUILTIN_OPTIONS
from jwins_jax.sharing import Sharing, Strategy, blocks
from jwins_jax.sharing.base import Cost

WIRE_DTYPES = ("bfloat16", "float16", "float32")

OPTIONS = {
    "tau": Option(
        "relthresh: send the coefficients whose accumulated change is at least tau "
        "times the node's largest, in [0, 1]",
        float,
        interval(0.0, 1.0),
        traced=True,
    ),
    "wire_dtype": Option(
        "relthresh: how values travel: bfloat16 or float16 (2 bytes, lossy) or "
        "float32 (4 bytes)",
        str,
        choices=WIRE_DTYPES,
    ),
    "wavelet": BUILTIN_OPTIONS["wavelet"],
    "level": BUILTIN_OPTIONS["level"],
}


def relative_threshold(length: int) -> blocks.Selection:
    """Each node's coefficients with score >= tau x its largest score (traced tau).

    ``RoundInputs.mask`` replaces the selection. A node that selects every
    coefficient makes a full share. Cost: the maximum and the comparison, ``2 L``.
    """

    def select(score, key, tau, inputs):
        top = jnp.max(score, axis=1, keepdims=True)
        mask = (score >= tau * top) & ((score > 0) | (tau == 0))
        if inputs.mask is not None:
            mask = jnp.asarray(inputs.mask, bool)
        return mask, jnp.all(mask, axis=1)

    return blocks.Selection(
        "relative_threshold",
        select,
        traced=("tau",),
        hparams=lambda tau: jnp.float32(tau),
        cost=Cost(pre=2.0 * length),
    )


def wire_values(wire_dtype: str, length: int) -> blocks.ValueCodec:
    """Values rounded to ``wire_dtype`` for the trip: ``itemsize`` bytes each.

    Cost: one conversion per coefficient, ``L`` (none for float32).
    """
    if wire_dtype == "float32":
        return blocks.raw_values()
    wire = jnp.dtype(wire_dtype)

    def encode(state, values, mask, key, hp):
        decoded = values.astype(wire).astype(values.dtype)
        count = jnp.sum(mask, axis=1, dtype=jnp.int32)
        return decoded, wire.itemsize * count, state

    return blocks.ValueCodec(wire_dtype, encode, cost=Cost(pre=float(length)))


def relthresh(
    n_params: int,
    tau: float = 0.2,
    wire_dtype: str = "bfloat16",
    wavelet: str = "sym2",
    level: int = 4,
) -> Sharing:
    """The strategy for flat models of ``n_params`` values."""
    tr = blocks.wavelet(n_params, wavelet, level)
    return blocks.compose(
        "relthresh",
        n_params,
        transform=tr,
        score=blocks.score(tr, "change", "legacy"),
        selection=relative_threshold(tr.m),
        values=wire_values(wire_dtype, tr.m),
        indices=blocks.elias_gamma(),
        params={
            "tau": tau,
            "wire_dtype": wire_dtype,
            "wavelet": wavelet,
            "level": level,
        },
        options=OPTIONS,
    )


STRATEGY = Strategy("relthresh", relthresh, OPTIONS)
"""What the entry point names; ``jwins_jax.sharing.register`` is the in-code way."""
