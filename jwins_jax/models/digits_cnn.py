"""A small CNN for the 8x8 grey-scale digits data set (SPEC 7.2 conventions).

conv3x3(1->16, pad 1) -> ReLU -> 2x2 max pool -> conv3x3(16->32, pad 1) -> ReLU -> pool
-> flatten in NCHW order (32 * 2 * 2 = 128) -> Linear(128 -> 10).

N = 6,090 parameters in PyTorch state_dict order: conv1.weight (16,1,3,3),
conv1.bias, conv2.weight (32,16,3,3), conv2.bias, fc1.weight (10,128), fc1.bias.
Input (8, 8, 1) NHWC.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jwins_jax.models.layers import (
    Linear,
    PatchConv,
    conv2d,
    flatten_nchw,
    max_pool_2x2,
    nhwc_to_cbhw,
    torch_tensors,
)
from jwins_jax.models.layout import (
    ModelSpec,
    ParamEntry,
    conv_entries,
    conv_flops,
    dense_flops,
    linear_entries,
    make_spec,
)


class DigitsCNN(nn.Module):
    """Two-conv CNN on (B, 8, 8, 1) NHWC inputs; returns (B, num_classes) logits.

    Attributes:
        num_classes: size of the output layer.
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Forward pass of (B, 8, 8, 1) inputs."""
        h = nhwc_to_cbhw(x)  # (1, B, 8, 8), channel-major (see layers.py)
        h = PatchConv(16, (3, 3), padding=1, name="conv1")(h)
        h = nn.relu(max_pool_2x2(h))  # (16, B, 4, 4)
        h = PatchConv(32, (3, 3), padding=1, name="conv2")(h)
        h = nn.relu(max_pool_2x2(h))  # (32, B, 2, 2)
        h = flatten_nchw(h)  # (B, 128), PyTorch NCHW order
        return Linear(self.num_classes, name="fc1")(h)


def digits_cnn_eval_forward(
    layout: tuple[ParamEntry, ...], flats: jax.Array, x: jax.Array
) -> jax.Array:
    """Forward-only digits CNN of a group of models on shared inputs (evaluation).

    Model after model (``lax.map``), in the training formulation (im2col matmuls on
    channel-major activations): on 8x8 inputs XLA's own convolution was about 2x
    slower here (benchmarks/RESULTS.md).

    Args:
        layout: the spec's flat layout.
        flats: (g, N) flat vectors.
        x: (B, 8, 8, 1) NHWC inputs.

    Returns:
        (g, B, 10) logits, those of :class:`DigitsCNN` to float32 rounding.
    """
    xc = nhwc_to_cbhw(x)  # shared by the group

    def one(flat: jax.Array) -> jax.Array:
        t = torch_tensors(layout, flat)
        h = xc
        for i in (1, 2):
            h = conv2d(h, t[f"conv{i}.weight"], t[f"conv{i}.bias"], padding=1)
            h = jax.nn.relu(max_pool_2x2(h))
        h = flatten_nchw(h)  # (B, 128) in PyTorch's order
        return h @ t["fc1.weight"].T + t["fc1.bias"]

    return jax.lax.map(one, flats)


def digits_cnn() -> ModelSpec:
    """The ``digits_cnn`` spec (N = 6,090)."""
    entries = (
        conv_entries("conv1", 1, 16, (3, 3))
        + conv_entries("conv2", 16, 32, (3, 3))
        + linear_entries("fc1", 32 * 2 * 2, 10)
    )
    return make_spec(
        "digits_cnn",
        DigitsCNN(10),
        (8, 8, 1),
        10,
        entries,
        eval_forward=digits_cnn_eval_forward,
        # 3x3 convs 1->16 at 8x8 and 16->32 at 4x4, Linear(128 -> 10)
        forward_flops=conv_flops(8 * 8, 1, 16, 9)
        + conv_flops(4 * 4, 16, 32, 9)
        + dense_flops(128, 10),
    )
