"""The paper's CelebA CNN (SPEC 7.2, flat layout SPEC Appendix C).

Four blocks of [conv3x3 "same" (-> 32 channels) -> 2x2 max pool (floor) -> ReLU]:
spatial size 84 -> 42 -> 21 -> 10 -> 5, then flatten in NCHW order (32 * 5 * 5 =
800) -> Linear(800 -> 2).

N = 30,242 parameters: conv1.weight (32,3,3,3), conv1.bias, conv2..conv4 weight
(32,32,3,3) and bias, fc1.weight (2,800), fc1.bias. Input (84, 84, 3) NHWC with raw
0-255 pixel values, not normalised (SPEC 10, quirk 14); any real dtype is accepted
and cast to float32.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jwins_jax.models.layers import (
    Linear,
    PatchConv,
    flatten_nchw,
    max_pool_2x2,
    nhwc_to_cbhw,
)
from jwins_jax.models.layout import (
    ModelSpec,
    conv_entries,
    conv_flops,
    dense_flops,
    linear_entries,
    make_spec,
)

NUM_CLASSES = 2
_BLOCKS = 4
_CHANNELS = 32


class CelebaCNN(nn.Module):
    """Four conv blocks on (B, 84, 84, 3) NHWC inputs; returns (B, 2) logits.

    Attributes:
        num_classes: size of the output layer.
    """

    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Forward pass of (B, 84, 84, 3) inputs."""
        h = nhwc_to_cbhw(x.astype(jnp.float32))  # (3, B, 84, 84), see layers.py
        for i in range(1, _BLOCKS + 1):
            h = PatchConv(_CHANNELS, (3, 3), padding=1, name=f"conv{i}")(h)
            h = nn.relu(max_pool_2x2(h))  # (32, B, 42 | 21 | 10 | 5, ...)
        h = flatten_nchw(h)  # (B, 800), index c*25 + y*5 + x as in PyTorch
        return Linear(self.num_classes, name="fc1")(h)


def celeba_cnn() -> ModelSpec:
    """The ``celeba_cnn`` spec with the Appendix C layout (N = 30,242)."""
    entries = []
    in_ch = 3
    for i in range(1, _BLOCKS + 1):
        entries += conv_entries(f"conv{i}", in_ch, _CHANNELS, (3, 3))
        in_ch = _CHANNELS
    entries += linear_entries("fc1", _CHANNELS * 5 * 5, NUM_CLASSES)
    return make_spec(
        "celeba_cnn",
        CelebaCNN(NUM_CLASSES),
        (84, 84, 3),
        NUM_CLASSES,
        entries,
        # 3x3 convs 3->32 at 84x84, 32->32 at 42x42, 21x21, 10x10, Linear(800 -> 2)
        forward_flops=conv_flops(84 * 84, 3, _CHANNELS, 9)
        + sum(conv_flops(s * s, _CHANNELS, _CHANNELS, 9) for s in (42, 21, 10))
        + dense_flops(_CHANNELS * 5 * 5, NUM_CLASSES),
    )
