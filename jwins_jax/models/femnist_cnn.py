"""The paper's FEMNIST CNN (SPEC 7.2, flat layout SPEC Appendix C).

conv5x5(1->32, pad 2) -> ReLU -> 2x2 max pool -> conv5x5(32->64, pad 2) -> ReLU -> pool
-> flatten in NCHW order (64 * 7 * 7 = 3136) -> Linear(3136 -> 512) -> ReLU
-> Linear(512 -> 62).

N = 1,690,046 parameters: conv1.weight (32,1,5,5), conv1.bias, conv2.weight
(64,32,5,5), conv2.bias, fc1.weight (512,3136), fc1.bias, fc2.weight (62,512),
fc2.bias. Input (28, 28, 1) NHWC float32 in [0, 1] as LEAF stores it.
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

NUM_CLASSES = 62


class FemnistCNN(nn.Module):
    """Two-conv CNN on (B, 28, 28, 1) NHWC inputs; returns (B, num_classes) logits.

    Attributes:
        num_classes: size of the output layer.
    """

    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Forward pass of (B, 28, 28, 1) inputs."""
        h = nhwc_to_cbhw(x.astype(jnp.float32))  # (1, B, 28, 28), see layers.py
        h = PatchConv(32, (5, 5), padding=2, name="conv1")(h)
        # ReLU and max pooling commute; pooling first does 4x less ReLU work.
        h = nn.relu(max_pool_2x2(h))  # (32, B, 14, 14)
        h = PatchConv(64, (5, 5), padding=2, name="conv2")(h)
        h = nn.relu(max_pool_2x2(h))  # (64, B, 7, 7)
        h = flatten_nchw(h)  # (B, 3136), index c*49 + y*7 + x as in PyTorch
        h = nn.relu(Linear(512, name="fc1")(h))
        return Linear(self.num_classes, name="fc2")(h)


def femnist_cnn() -> ModelSpec:
    """The ``femnist_cnn`` spec with the Appendix C layout (N = 1,690,046)."""
    entries = (
        conv_entries("conv1", 1, 32, (5, 5))
        + conv_entries("conv2", 32, 64, (5, 5))
        + linear_entries("fc1", 64 * 7 * 7, 512)
        + linear_entries("fc2", 512, NUM_CLASSES)
    )
    return make_spec(
        "femnist_cnn",
        FemnistCNN(NUM_CLASSES),
        (28, 28, 1),
        NUM_CLASSES,
        entries,
        # 5x5 convs 1->32 at 28x28, 32->64 at 14x14, Linear(3136 -> 512 -> 62)
        forward_flops=conv_flops(28 * 28, 1, 32, 25)
        + conv_flops(14 * 14, 32, 64, 25)
        + dense_flops(3136, 512)
        + dense_flops(512, NUM_CLASSES),
    )
