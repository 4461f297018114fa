"""Convolution, pooling and normalisation blocks written as matmuls (SPEC 7.2).

The simulator trains every node at once with ``jax.vmap`` over the node axis. On CPU a
vmapped ``lax.conv`` becomes a slow grouped convolution and convolution gradients
inside ``lax.scan`` are very slow, so this module never calls ``lax.conv``:

* activations are kept channel-major, ``(C, B, H, W)`` ("CBHW"), so that one
  convolution is a single matmul ``weight (O, C*KH*KW) @ patches (C*KH*KW, B*H*W)``
  whose output is again CBHW; under vmap the node axis becomes the matmul's batch
  dimension;
* ``im2col`` stacks the KH*KW shifted windows of the zero-padded input: every copied
  run is a contiguous image row, and the patch rows come out in (c, kh, kw) order,
  which is exactly a PyTorch O-I-H-W weight reshaped to (O, C*KH*KW);
* 2x2 max pooling with stride 2 is a reshape followed by a max;
* GroupNorm reduces each (group, sample) block once for the mean and once for the
  variance and folds the affine into one multiply-add.

Measured on the project's 2-core CPU (jax 0.10.2, GN-LeNet, batch 8, 3 local steps in
``lax.scan``): with 16 nodes this layout trains about 1.6x faster than NHWC activations
with (B*H*W, KH*KW*C) patches, whose im2col copies runs of only C floats; with 96 nodes
the two are within about 10% of each other, both near a third of the machine's matmul
rate.

Evaluation is forward only and has its own blocks at the end of this module (XLA
convolutions on NHWC activations, GroupNorm pooled before its affine), used through
``ModelSpec.apply_group_eval``.

Weights use the PyTorch layouts (conv O-I-H-W, linear [out, in]), so a flax params
tree of these modules maps to the flat vector of SPEC Appendix C by reshapes only.
Semantics follow PyTorch: stride 1, zero padding, GroupNorm with biased variance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_uniform_init(fan_in: int) -> Callable[..., jax.Array]:
    """Initializer drawing U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default.

    Args:
        fan_in: number of inputs of one output unit (``in * kh * kw`` for a conv).

    Returns:
        A flax initializer ``init(key, shape, dtype) -> array``.
    """
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def nhwc_to_cbhw(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (C, B, H, W)."""
    return jnp.transpose(x, (3, 0, 1, 2))


def cbhw_to_nhwc(x: jax.Array) -> jax.Array:
    """(C, B, H, W) -> (B, H, W, C)."""
    return jnp.transpose(x, (1, 2, 3, 0))


def im2col(x: jax.Array, kernel_size: tuple[int, int], padding: int) -> jax.Array:
    """Stride-1 patches of a channel-major batch.

    Args:
        x: (C, B, H, W) input.
        kernel_size: (KH, KW).
        padding: zero padding added on each side of H and W.

    Returns:
        (C * KH * KW, B * HO * WO) patches, HO = H + 2 * padding - KH + 1 (same for
        W); row ``(c * KH + kh) * KW + kw`` holds input channel c shifted by (kh, kw).
    """
    kh, kw = kernel_size
    c, b = x.shape[:2]
    if padding:
        x = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = x.shape[2] - kh + 1
    wo = x.shape[3] - kw + 1
    windows = [x[:, :, i : i + ho, j : j + wo] for i in range(kh) for j in range(kw)]
    patches = jnp.stack(windows, axis=1)  # (C, KH*KW, B, HO, WO)
    return patches.reshape(c * kh * kw, b * ho * wo)


def conv2d(
    x: jax.Array, weight: jax.Array, bias: jax.Array | None, padding: int
) -> jax.Array:
    """Stride-1 2-D convolution (PyTorch cross-correlation) as im2col + one matmul.

    Args:
        x: (C, B, H, W) input.
        weight: (O, C, KH, KW) PyTorch-layout kernel.
        bias: (O,) bias or None.
        padding: zero padding on each side of H and W.

    Returns:
        (O, B, HO, WO) output.
    """
    o, c, kh, kw = weight.shape
    b, h, w = x.shape[1:]
    patches = im2col(x, (kh, kw), padding)  # (C*KH*KW, B*HO*WO)
    y = weight.reshape(o, c * kh * kw) @ patches  # (O, B*HO*WO)
    if bias is not None:
        y = y + bias[:, None]
    return y.reshape(o, b, h + 2 * padding - kh + 1, w + 2 * padding - kw + 1)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 (PyTorch ``MaxPool2d(2)``, floor mode).

    Args:
        x: (C, B, H, W) input; a trailing odd row or column is dropped.

    Returns:
        (C, B, H // 2, W // 2) output.
    """
    c, b, h, w = x.shape
    x = x[:, :, : h - h % 2, : w - w % 2]
    return jnp.max(x.reshape(c, b, h // 2, 2, w // 2, 2), axis=(3, 5))


def group_norm(
    x: jax.Array,
    num_groups: int,
    scale: jax.Array,
    bias: jax.Array,
    epsilon: float = 1e-5,
) -> jax.Array:
    """GroupNorm over (C / G, H, W) per group and sample, then a per-channel affine.

    Args:
        x: (C, B, H, W) input; C must be divisible by ``num_groups``.
        num_groups: G.
        scale: (C,) per-channel weight (PyTorch ``weight``).
        bias: (C,) per-channel bias.
        epsilon: added to the biased variance.

    Returns:
        (C, B, H, W) normalised output.
    """
    c, b, h, w = x.shape
    g = num_groups
    xg = x.reshape(g, c // g, b, h * w)
    mean = jnp.mean(xg, axis=(1, 3), keepdims=True)  # (G, 1, B, 1)
    var = jnp.mean(jnp.square(xg - mean), axis=(1, 3), keepdims=True)
    s = jax.lax.rsqrt(var + epsilon) * scale.reshape(g, c // g, 1, 1)  # (G, C/G, B, 1)
    t = bias.reshape(g, c // g, 1, 1) - mean * s
    return (xg * s + t).reshape(c, b, h, w)


def flatten_nchw(x: jax.Array) -> jax.Array:
    """Flattens channel-major activations in PyTorch's NCHW order.

    Args:
        x: (C, B, H, W).

    Returns:
        (B, C * H * W) with feature index c * H * W + h * W + w.
    """
    return jnp.transpose(x, (1, 0, 2, 3)).reshape(x.shape[1], -1)


class PatchConv(nn.Module):
    """Stride-1 convolution on (C, B, H, W) activations, computed as im2col + matmul.

    Attributes:
        features: output channels O.
        kernel_size: (KH, KW).
        padding: zero padding on each side of H and W.

    Params: ``kernel`` (O, C, KH, KW) in PyTorch layout and ``bias`` (O,), both
    U(+-1/sqrt(C * KH * KW)) as PyTorch initialises them.
    """

    features: int
    kernel_size: tuple[int, int]
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps (C, B, H, W) to (O, B, HO, WO)."""
        kh, kw = self.kernel_size
        c = x.shape[0]
        init = torch_uniform_init(c * kh * kw)
        kernel = self.param("kernel", init, (self.features, c, kh, kw))
        bias = self.param("bias", init, (self.features,))
        return conv2d(x, kernel, bias, self.padding)


class GroupNorm(nn.Module):
    """GroupNorm with affine parameters (PyTorch ``nn.GroupNorm``) on (C, B, H, W).

    Attributes:
        num_groups: G.
        epsilon: added to the variance.

    Params: ``scale`` (C,) initialised to 1, ``bias`` (C,) initialised to 0.
    """

    num_groups: int
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalises (C, B, H, W) input; returns the same shape."""
        c = x.shape[0]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        return group_norm(x, self.num_groups, scale, bias, self.epsilon)


class Linear(nn.Module):
    """Fully connected layer (PyTorch ``nn.Linear``) on (B, in) inputs.

    Attributes:
        features: output size.

    Params: ``kernel`` (out, in) in PyTorch layout and ``bias`` (out,), both
    U(+-1/sqrt(in)).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps (B, in) to (B, out)."""
        init = torch_uniform_init(x.shape[-1])
        kernel = self.param("kernel", init, (self.features, x.shape[-1]))
        bias = self.param("bias", init, (self.features,))
        return x @ kernel.T + bias


# ----------------------------------------------------------------------------------
# Forward-only blocks for evaluation (no gradient is taken through them).
#
# Evaluation runs every node's model on large chunks of a shared test set, one node
# after the other (``lax.map``), so there is no vmap and no weight gradient: XLA's own
# convolution is fast there, and the activations stay NHWC, its preferred layout.
# Measured on the project's 2-core CPU (jax 0.10.2, GN-LeNet, 8 nodes x 1,024 test
# images, interleaved): about 1.7x faster than the im2col training formulation in
# chunks of 512 (benchmarks/RESULTS.md).


def conv2d_nhwc(
    x: jax.Array, weight: jax.Array, bias: jax.Array | None, padding: int
) -> jax.Array:
    """Stride-1 2-D convolution of NHWC inputs with a PyTorch O-I-H-W kernel.

    Args:
        x: (B, H, W, C) input.
        weight: (O, C, KH, KW) PyTorch-layout kernel.
        bias: (O,) bias or None.
        padding: zero padding on each side of H and W.

    Returns:
        (B, HO, WO, O) output.
    """
    y = jax.lax.conv_general_dilated(
        x,
        jnp.transpose(weight, (2, 3, 1, 0)),  # HWIO
        (1, 1),
        [(padding, padding), (padding, padding)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y if bias is None else y + bias


def _pool_windows_nhwc(x: jax.Array) -> list[jax.Array]:
    """The four strided (B, H // 2, W // 2, C) views of 2x2 pooling windows."""
    h, w = x.shape[1:3]
    x = x[:, : h - h % 2, : w - w % 2, :]
    return [x[:, i::2, j::2, :] for i in (0, 1) for j in (0, 1)]


def max_pool_2x2_nhwc(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 of NHWC input (floor mode), forward only."""
    a, b, c, d = _pool_windows_nhwc(x)
    return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def group_norm_relu_pool_nhwc(
    x: jax.Array,
    num_groups: int,
    scale: jax.Array,
    bias: jax.Array,
    epsilon: float = 1e-5,
) -> jax.Array:
    """``relu(max_pool_2x2(group_norm(x)))`` of NHWC input, pooling before the affine.

    GroupNorm is a per-(sample, channel) affine map ``a * x + t`` of its input with
    ``a = scale * rstd``, and rounding is monotone, so the pooled maximum of the
    normalised values is ``a * max + t`` where ``a >= 0`` and ``a * min + t``
    where ``a < 0``: the affine and the ReLU then run on a quarter of the values.
    The statistics (biased variance, two passes) are those of the whole input.

    Args:
        x: (B, H, W, C) input; C divisible by ``num_groups``.
        num_groups: G.
        scale: (C,) GroupNorm weight; bias: (C,) GroupNorm bias.
        epsilon: added to the variance.

    Returns:
        (B, H // 2, W // 2, C).
    """
    b, h, w, c = x.shape
    g = num_groups
    count = h * w * (c // g)
    xf = x.reshape(b, h * w, c)
    # per-channel sums first, then per group: two plain reductions
    mean = jnp.sum(xf, axis=1).reshape(b, g, c // g).sum(axis=2) / count  # (B, G)
    centred = xf - jnp.repeat(mean, c // g, axis=1)[:, None, :]
    var = jnp.sum(jnp.square(centred), axis=1).reshape(b, g, c // g).sum(axis=2) / count
    s = jax.lax.rsqrt(var + epsilon)[:, :, None] * scale.reshape(g, c // g)  # (B,G,C/G)
    s = s.reshape(b, c)
    t = bias - jnp.repeat(mean, c // g, axis=1) * s  # (B, C)
    p, q, r, u = _pool_windows_nhwc(x)
    hi = jnp.maximum(jnp.maximum(p, q), jnp.maximum(r, u))
    lo = jnp.minimum(jnp.minimum(p, q), jnp.minimum(r, u))
    sel = jnp.where(scale >= 0, hi, lo)
    return jax.nn.relu(sel * s[:, None, None, :] + t[:, None, None, :])


def group_norm_relu_pool_cbhw(
    x: jax.Array,
    num_groups: int,
    scale: jax.Array,
    bias: jax.Array,
    epsilon: float = 1e-5,
) -> jax.Array:
    """``relu(max_pool_2x2(group_norm(x)))`` of (C, B, H, W) input, forward only.

    As :func:`group_norm_relu_pool_nhwc` (pooled maximum or minimum, then the
    affine), for channel-major activations.

    Args:
        x: (C, B, H, W) input; C divisible by ``num_groups``; H and W even.
        num_groups: G.
        scale: (C,) GroupNorm weight; bias: (C,) GroupNorm bias.
        epsilon: added to the variance.

    Returns:
        (C, B, H // 2, W // 2).
    """
    c, b, h, w = x.shape
    g, cg = num_groups, c // num_groups
    xg = x.reshape(g, cg, b, h * w)
    mean = jnp.mean(xg, axis=(1, 3))  # (G, B)
    var = jnp.mean(jnp.square(xg - mean[:, None, :, None]), axis=(1, 3))
    s = jax.lax.rsqrt(var + epsilon)[:, None, :] * scale.reshape(g, cg)[:, :, None]
    s = s.reshape(c, b)
    t = bias[:, None] - jnp.repeat(mean, cg, axis=0) * s  # (C, B)
    xr = x.reshape(c, b, h // 2, 2, w // 2, 2)
    sel = jnp.where(
        (scale >= 0)[:, None, None, None],
        jnp.max(xr, axis=(3, 5)),
        jnp.min(xr, axis=(3, 5)),
    )
    return jax.nn.relu(sel * s[:, :, None, None] + t[:, :, None, None])


def flatten_nhwc_as_nchw(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, C * H * W) in PyTorch's NCHW flattening order."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def torch_tensors(layout: Any, flat: jax.Array) -> dict[str, jax.Array]:
    """One flat vector as its PyTorch tensors, ``{state_dict key: array}``.

    Args:
        layout: the model's ``ModelSpec.layout`` (entries with ``torch_name``,
            ``torch_shape``, ``offset``, ``end``).
        flat: (N,) flat vector.
    """
    return {e.torch_name: flat[e.offset : e.end].reshape(e.torch_shape) for e in layout}
