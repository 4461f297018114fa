"""Embedding tables and PyTorch-compatible LSTM layers (SPEC 7.2, Appendix C).

Both store their weights in PyTorch layout, so a flax params tree maps to the flat
vector of SPEC Appendix C by reshapes only (see layout.py):

* :class:`Embedding` holds ``weight`` (num_embeddings, dim) and looks rows up with a
  gather; its gradient is a scatter-add into a table of the same shape. With a
  ``padding_idx`` that row gets no gradient (PyTorch's ``padding_idx``: the row is
  read as stored, so what sharing writes into it is used, but training never
  changes it).
* :class:`LSTMLayer` is one layer of ``torch.nn.LSTM`` (batch_first, with both
  ``bias_ih`` and ``bias_hh``). The gate row blocks of every weight and bias are, in
  order, input i, forget f, cell candidate g and output o::

      z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (B, 4H)
      i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2H]), tanh(z[2H:3H]), sigmoid(z[3H:])
      c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t) ;  h_0 = c_0 = 0

  The input projection of all time steps is one matmul; only the recurrent matmul
  runs inside ``lax.scan`` over time (matmuls inside loops are fast on XLA:CPU,
  unlike convolutions, see layers.py).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jwins_jax.models.layers import torch_uniform_init


def normal_init(std: float = 1.0) -> Callable[..., jax.Array]:
    """Initializer drawing N(0, std^2) (PyTorch's ``nn.Embedding`` default: std 1)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return std * jax.random.normal(key, shape, dtype)

    return init


def uniform_init(bound: float) -> Callable[..., jax.Array]:
    """Initializer drawing U(-bound, bound) (MovieLens MF: bound 0.05)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Embedding(nn.Module):
    """A lookup table (PyTorch ``nn.Embedding``).

    Attributes:
        num_embeddings: number of rows V.
        features: row width D.
        init_bound: 0 for PyTorch's default N(0, 1), else U(-init_bound, init_bound).
        padding_idx: a row whose gradient is zero (PyTorch's ``padding_idx``), or
            None. (Its zero initial value is the flat layout's, see
            ``ParamEntry.padding_idx``.)

    Params: ``weight`` (V, D).
    """

    num_embeddings: int
    features: int
    init_bound: float = 0.0
    padding_idx: int | None = None

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        """Maps integer ids of any shape S to (*S, D); ids must lie in [0, V)."""
        init = uniform_init(self.init_bound) if self.init_bound else normal_init()
        weight = self.param("weight", init, (self.num_embeddings, self.features))
        if self.padding_idx is not None:
            row = jax.lax.stop_gradient(weight[self.padding_idx])
            weight = weight.at[self.padding_idx].set(row)  # same values, no gradient
        return jnp.take(weight, ids, axis=0, mode="clip")


def lstm_layer(
    x: jax.Array,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array,
    bias_hh: jax.Array,
) -> jax.Array:
    """One LSTM layer over a time-major sequence, zero initial state (PyTorch).

    Args:
        x: (T, B, I) inputs.
        weight_ih: (4H, I) input weights, gate blocks i, f, g, o.
        weight_hh: (4H, H) recurrent weights.
        bias_ih: (4H,) input bias.
        bias_hh: (4H,) recurrent bias.

    Returns:
        (T, B, H) hidden states h_1..h_T.
    """
    hidden = weight_hh.shape[1]
    b = x.shape[1]
    z_in = x @ weight_ih.T + (bias_ih + bias_hh)  # (T, B, 4H), one matmul
    w_hh_t = weight_hh.T  # (H, 4H)

    def step(
        carry: tuple[jax.Array, jax.Array], z_t: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        h, c = carry
        z = z_t + h @ w_hh_t  # (B, 4H)
        i = jax.nn.sigmoid(z[:, :hidden])
        f = jax.nn.sigmoid(z[:, hidden : 2 * hidden])
        g = jnp.tanh(z[:, 2 * hidden : 3 * hidden])
        o = jax.nn.sigmoid(z[:, 3 * hidden :])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((b, hidden), x.dtype)
    _, hs = jax.lax.scan(step, (zeros, zeros), z_in)
    return hs


class LSTMLayer(nn.Module):
    """One layer of ``torch.nn.LSTM`` on time-major (T, B, I) inputs.

    Attributes:
        hidden: hidden size H.

    Params: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` (4H,),
    ``bias_hh`` (4H,), all U(+-1/sqrt(H)) as PyTorch initialises them.
    """

    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps (T, B, I) to the hidden states (T, B, H)."""
        four_h = 4 * self.hidden
        init = torch_uniform_init(self.hidden)
        w_ih = self.param("weight_ih", init, (four_h, x.shape[-1]))
        w_hh = self.param("weight_hh", init, (four_h, self.hidden))
        b_ih = self.param("bias_ih", init, (four_h,))
        b_hh = self.param("bias_hh", init, (four_h,))
        return lstm_layer(x, w_ih, w_hh, b_ih, b_hh)
