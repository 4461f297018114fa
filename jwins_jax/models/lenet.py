"""GN-LeNet, the paper's CIFAR-10 model (SPEC 7.2, flat layout SPEC Appendix C).

conv5x5(3->32, pad 2) -> GroupNorm(2, 32) -> ReLU -> 2x2 max pool
-> conv5x5(32->32, pad 2) -> GroupNorm(2, 32) -> ReLU -> pool
-> conv5x5(32->64, pad 2) -> GroupNorm(2, 64) -> ReLU -> pool
-> flatten in NCHW order (64 * 4 * 4 = 1024) -> Linear(1024 -> 10).

N = 89,834 parameters. Input (32, 32, 3) NHWC.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jwins_jax.models.layers import (
    GroupNorm,
    Linear,
    PatchConv,
    cbhw_to_nhwc,
    conv2d_nhwc,
    flatten_nchw,
    flatten_nhwc_as_nchw,
    group_norm_relu_pool_cbhw,
    group_norm_relu_pool_nhwc,
    im2col,
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
    group_norm_entries,
    linear_entries,
    make_spec,
)

_CHANNELS = (32, 32, 64)


class GNLeNet(nn.Module):
    """GN-LeNet on (B, 32, 32, 3) NHWC inputs; returns (B, num_classes) logits.

    Attributes:
        num_classes: size of the output layer.
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Forward pass of (B, 32, 32, 3) inputs."""
        h = nhwc_to_cbhw(x)  # (3, B, 32, 32), channel-major (see layers.py)
        for i, c in enumerate(_CHANNELS, start=1):
            h = PatchConv(c, (5, 5), padding=2, name=f"conv{i}")(h)
            h = GroupNorm(2, epsilon=1e-5, name=f"gn{i}")(h)
            # ReLU and max pooling commute; pooling first does 4x less ReLU work.
            h = nn.relu(max_pool_2x2(h))  # (c, B, 16 | 8 | 4, ...)
        h = flatten_nchw(h)  # (B, 1024), index c*16 + y*4 + x as in PyTorch
        return Linear(self.num_classes, name="fc1")(h)


def gn_lenet_eval_forward(
    layout: tuple[ParamEntry, ...], flats: jax.Array, x: jax.Array
) -> jax.Array:
    """Forward-only GN-LeNet of a group of models on shared inputs (evaluation).

    The first convolution sees the same inputs for every model of the group, so it
    runs once for the group: one matmul of the ``(g * 32, 75)`` stacked kernels with
    the shared im2col patches, whose channel-major output gives each model its rows
    without a transpose. Each model then continues on its own (``lax.map``):
    GroupNorm pooled before its affine, then XLA convolutions on NHWC activations
    for the second and third convolution. Computes the logits of :class:`GNLeNet`
    to float32 rounding; no gradient is taken through it.

    Args:
        layout: the spec's flat layout.
        flats: (g, N) flat vectors.
        x: (B, 32, 32, 3) NHWC inputs.

    Returns:
        (g, B, 10) logits.
    """
    g, b = flats.shape[0], x.shape[0]
    t = jax.vmap(lambda f: torch_tensors(layout, f))(flats)
    o1, c, kh, kw = t["conv1.weight"].shape[1:]
    patches = im2col(nhwc_to_cbhw(x), (kh, kw), 2)  # (C*KH*KW, B*H*W), shared
    h = t["conv1.weight"].reshape(g * o1, c * kh * kw) @ patches
    h = h + t["conv1.bias"].reshape(g * o1, 1)
    h = h.reshape(g, o1, b, *x.shape[1:3])  # (g, 32, B, H, W)

    def rest(args: tuple[jax.Array, dict[str, jax.Array]]) -> jax.Array:
        h, t = args
        h = group_norm_relu_pool_cbhw(h, 2, t["gn1.weight"], t["gn1.bias"], 1e-5)
        h = cbhw_to_nhwc(h)  # (B, 16, 16, 32)
        for i in range(2, len(_CHANNELS) + 1):
            h = conv2d_nhwc(h, t[f"conv{i}.weight"], t[f"conv{i}.bias"], padding=2)
            h = group_norm_relu_pool_nhwc(
                h, 2, t[f"gn{i}.weight"], t[f"gn{i}.bias"], 1e-5
            )
        h = flatten_nhwc_as_nchw(h)  # (B, 1024) in PyTorch's order
        return h @ t["fc1.weight"].T + t["fc1.bias"]

    return jax.lax.map(rest, (h, t))


def gn_lenet() -> ModelSpec:
    """The ``gn_lenet`` spec: GN-LeNet with the Appendix C layout (N = 89,834)."""
    entries = []
    in_ch = 3
    for i, c in enumerate(_CHANNELS, start=1):
        entries += conv_entries(f"conv{i}", in_ch, c, (5, 5))
        entries += group_norm_entries(f"gn{i}", c)
        in_ch = c
    entries += linear_entries("fc1", 64 * 4 * 4, 10)
    return make_spec(
        "gn_lenet",
        GNLeNet(10),
        (32, 32, 3),
        10,
        entries,
        eval_forward=gn_lenet_eval_forward,
        # 5x5 convs 3->32 at 32x32, 32->32 at 16x16, 32->64 at 8x8, Linear(1024 -> 10)
        forward_flops=conv_flops(32 * 32, 3, 32, 25)
        + conv_flops(16 * 16, 32, 32, 25)
        + conv_flops(8 * 8, 32, 64, 25)
        + dense_flops(1024, 10),
    )
