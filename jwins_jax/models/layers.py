"""Convolution, pooling and normalisation blocks written as matmuls (SPEC 7.2).

The simulator trains every node at once with ``jax.vmap`` over the node axis. On CPU a
vmapped ``lax.conv`` becomes a grouped convolution, and convolution gradients inside
``lax.scan`` are very slow, so this module avoids ``lax.conv`` entirely:

* a convolution is ``im2col`` (static slices of the padded input, concatenated along the
  channel axis) followed by one matmul against the kernel, which vmap turns into a
  batched matmul with the node axis as the batch dimension;
* 2x2 max pooling with stride 2 is a reshape followed by a max;
* GroupNorm computes its statistics with one reduction per group.

All activations are NHWC, all kernels HWIO (as in ``flax.linen.Conv``); the PyTorch
O-I-H-W layout of the flat parameter vector is handled by :mod:`.layout`. The layers
follow PyTorch's semantics: stride 1, zero padding, GroupNorm with biased variance.
"""

from __future__ import annotations

from collections.abc import Callable

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


def im2col(x: jax.Array, kernel_size: tuple[int, int], padding: int) -> jax.Array:
    """Extracts the stride-1 patches of an NHWC batch.

    Args:
        x: (B, H, W, C) input.
        kernel_size: (KH, KW).
        padding: zero padding added on each side of H and W.

    Returns:
        (B, HO, WO, KH * KW * C) patches with HO = H + 2 * padding - KH + 1 (same for
        W); the last axis is ordered (kh, kw, c), matching an HWIO kernel reshaped to
        (KH * KW * C, O).
    """
    kh, kw = kernel_size
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho = x.shape[1] - kh + 1
    wo = x.shape[2] - kw + 1
    cols = [x[:, i : i + ho, j : j + wo, :] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, axis=-1)


def conv2d(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None, padding: int
) -> jax.Array:
    """Stride-1 2-D convolution (PyTorch cross-correlation) as im2col + matmul.

    Args:
        x: (B, H, W, C) input.
        kernel: (KH, KW, C, O) HWIO kernel.
        bias: (O,) bias or None.
        padding: zero padding on each side of H and W.

    Returns:
        (B, HO, WO, O) output.
    """
    kh, kw, c, o = kernel.shape
    patches = im2col(x, (kh, kw), padding)  # (B, HO, WO, KH*KW*C)
    y = jnp.einsum("bhwk,ko->bhwo", patches, kernel.reshape(kh * kw * c, o))
    if bias is not None:
        y = y + bias
    return y


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 (PyTorch ``MaxPool2d(2)``, floor mode).

    Args:
        x: (B, H, W, C) input; a trailing odd row or column is dropped.

    Returns:
        (B, H // 2, W // 2, C) output.
    """
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2, :]
    x = x.reshape(b, h // 2, 2, w // 2, 2, c)
    return jnp.max(x, axis=(2, 4))


def group_norm(
    x: jax.Array,
    num_groups: int,
    scale: jax.Array,
    bias: jax.Array,
    epsilon: float = 1e-5,
) -> jax.Array:
    """GroupNorm over (H, W, C / G) per sample and group, then a per-channel affine.

    Args:
        x: (B, H, W, C) input; C must be divisible by ``num_groups``.
        num_groups: G.
        scale: (C,) per-channel weight (PyTorch ``weight``).
        bias: (C,) per-channel bias.
        epsilon: added to the biased variance.

    Returns:
        (B, H, W, C) normalised output.
    """
    b, h, w, c = x.shape
    g = num_groups
    xg = x.reshape(b, h * w, g, c // g)
    mean = jnp.mean(xg, axis=(1, 3), keepdims=True)  # (B, 1, G, 1)
    mean_sq = jnp.mean(jnp.square(xg), axis=(1, 3), keepdims=True)
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
    inv = jax.lax.rsqrt(var + epsilon)  # (B, 1, G, 1)
    # Fold the normalisation and the affine into one multiply-add per element.
    s = inv * scale.reshape(1, 1, g, c // g)  # (B, 1, G, C/G)
    t = bias.reshape(1, 1, g, c // g) - mean * s
    return (xg * s + t).reshape(b, h, w, c)


def flatten_nchw(x: jax.Array) -> jax.Array:
    """Flattens NHWC activations in PyTorch's NCHW order.

    Args:
        x: (B, H, W, C).

    Returns:
        (B, C * H * W) with feature index c * H * W + h * W + w.
    """
    b = x.shape[0]
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(b, -1)


class PatchConv(nn.Module):
    """Stride-1 convolution computed as im2col + matmul.

    Attributes:
        features: output channels O.
        kernel_size: (KH, KW).
        padding: zero padding on each side of H and W.

    Params: ``kernel`` (KH, KW, C, O) HWIO, ``bias`` (O,); both PyTorch-default
    initialised, U(+-1/sqrt(C * KH * KW)).
    """

    features: int
    kernel_size: tuple[int, int]
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the convolution to (B, H, W, C) input; returns (B, HO, WO, O)."""
        kh, kw = self.kernel_size
        c = x.shape[-1]
        init = torch_uniform_init(c * kh * kw)
        kernel = self.param("kernel", init, (kh, kw, c, self.features))
        bias = self.param("bias", init, (self.features,))
        return conv2d(x, kernel, bias, self.padding)


class GroupNorm(nn.Module):
    """GroupNorm with affine parameters (PyTorch ``nn.GroupNorm``).

    Attributes:
        num_groups: G.
        epsilon: added to the variance.

    Params: ``scale`` (C,) initialised to 1, ``bias`` (C,) initialised to 0.
    """

    num_groups: int
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalises (B, H, W, C) input; returns the same shape."""
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        return group_norm(x, self.num_groups, scale, bias, self.epsilon)


class Linear(nn.Module):
    """Fully connected layer (PyTorch ``nn.Linear``) with a flax (in, out) kernel.

    Attributes:
        features: output size.

    Params: ``kernel`` (in, out), ``bias`` (out,); U(+-1/sqrt(in)).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the layer to (B, in) input; returns (B, out)."""
        init = torch_uniform_init(x.shape[-1])
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", init, (self.features,))
        return x @ kernel + bias
