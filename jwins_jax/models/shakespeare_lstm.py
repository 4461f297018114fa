"""The paper's Shakespeare next-character LSTM (SPEC 7.2, flat layout Appendix C).

Embedding(92, 8) -> 2-layer LSTM(8 -> 256, 256 -> 256), batch_first, zero initial
state -> all 80 output steps -> ReLU -> flatten (80 * 256 = 20480, index t * 256 + h)
-> Linear(20480 -> 92).

N = 2,683,708 parameters: embedding.weight (92,8); lstm.weight_ih_l0 (1024,8),
lstm.weight_hh_l0 (1024,256), lstm.bias_ih_l0, lstm.bias_hh_l0 (1024,); the same
four for layer 1 with weight_ih_l1 (1024,256); l1.weight (92,20480), l1.bias. Gate
row blocks i, f, g, o (see sequence.py). Initialisation: embedding N(0, 1), LSTM
U(+-1/16), linear U(+-1/sqrt(20480)). Input (80,) int32 character ids in [0, 92).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jwins_jax.models.layers import Linear
from jwins_jax.models.layout import (
    ModelSpec,
    dense_flops,
    embedding_entries,
    linear_entries,
    lstm_entries,
    make_spec,
)
from jwins_jax.models.sequence import Embedding, LSTMLayer

VOCAB_SIZE = 92
EMBEDDING_DIM = 8
HIDDEN = 256
NUM_LAYERS = 2
SEQ_LENGTH = 80


class ShakespeareLSTM(nn.Module):
    """Character LSTM on (B, 80) int32 ids; returns (B, 92) next-character logits."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Forward pass of (B, 80) character ids."""
        h = Embedding(VOCAB_SIZE, EMBEDDING_DIM, name="embedding")(x)  # (B, T, 8)
        h = jnp.transpose(h, (1, 0, 2))  # (T, B, 8), time-major for the scan
        for layer in range(NUM_LAYERS):
            h = LSTMLayer(HIDDEN, name=f"lstm_l{layer}")(h)  # (T, B, 256)
        h = nn.relu(jnp.transpose(h, (1, 0, 2)))  # (B, T, 256), batch_first
        h = h.reshape(h.shape[0], -1)  # (B, 20480)
        return Linear(VOCAB_SIZE, name="l1")(h)


def shakespeare_lstm() -> ModelSpec:
    """The ``shakespeare_lstm`` spec with the Appendix C layout (N = 2,683,708)."""
    entries = embedding_entries("embedding", VOCAB_SIZE, EMBEDDING_DIM)
    in_features = EMBEDDING_DIM
    for layer in range(NUM_LAYERS):
        entries += lstm_entries("lstm", layer, in_features, HIDDEN)
        in_features = HIDDEN
    entries += linear_entries("l1", HIDDEN * SEQ_LENGTH, VOCAB_SIZE)
    return make_spec(
        "shakespeare_lstm",
        ShakespeareLSTM(),
        (SEQ_LENGTH,),
        VOCAB_SIZE,
        entries,
        input_dtype="int32",
        # per step the four gates of each layer ([x, h] -> 4 hidden), then the head
        forward_flops=SEQ_LENGTH
        * (
            dense_flops(EMBEDDING_DIM + HIDDEN, 4 * HIDDEN)
            + dense_flops(2 * HIDDEN, 4 * HIDDEN)
        )
        + dense_flops(HIDDEN * SEQ_LENGTH, VOCAB_SIZE),
    )
