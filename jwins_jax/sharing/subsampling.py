"""Random sampling ("SubSampling", SPEC 4.3).

Each node sends an independent Bernoulli(alpha) subset of its parameters every round;
no indices travel, only a seed from which receivers regenerate the mask. Receivers
overwrite their own values where the sender's mask is set and average with MH weights.
It is a composition of public blocks (:mod:`jwins_jax.sharing.blocks`): the identity
transform, the :func:`~jwins_jax.sharing.blocks.bernoulli` selection (no score),
raw float32 values (or quantized ones with ``float_precision`` = K > 0,
:func:`~jwins_jax.sharing.blocks.quantize`), a :func:`~jwins_jax.sharing.blocks.seed`
and the fill-with-own rule.

Decisions (SPEC decisions table): the mask is drawn from the run's ``jax.random``
key, split per round and per node (the original used OS entropy, so it cannot be
matched). A message costs ``SEED_BYTES`` (8) of metadata; ``alpha > metadata_cap``
(strict, as in the original) sends the whole model with no metadata.
"""

from __future__ import annotations

from jwins_jax.sharing import blocks
from jwins_jax.sharing.base import Sharing

PARAMS: tuple[str, ...] = ("alpha", "metadata_cap", "float_precision")


def random_sampling(
    n_params: int,
    alpha: float = 0.1,
    metadata_cap: float = 1.0,
    float_precision: int = 0,
) -> Sharing:
    """Builds random sampling with fraction ``alpha``."""
    tr = blocks.identity(n_params)
    return blocks.compose(
        "random",
        n_params,
        transform=tr,
        selection=blocks.bernoulli(blocks.fixed_alpha(tr.m, cap=">")),
        indices=blocks.seed(),
        values=blocks.value_codec(float_precision, tr),
        params={
            "alpha": alpha,
            "metadata_cap": metadata_cap,
            "float_precision": float_precision,
        },
    )
