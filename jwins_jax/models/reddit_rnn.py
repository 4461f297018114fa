"""The paper's Reddit next-word RNN (SPEC 7.2, flat layout Appendix C).

Embedding(9999, 200, padding_idx=0) -> 2-layer LSTM(200 -> 256, 256 -> 256),
batch_first, zero initial state, over all 10 steps (trailing padding included, as
the original runs it) -> the top layer's final hidden state h_n[1] (B, 256) ->
Linear(256 -> 128) -> ReLU -> Linear(128 -> 9999).

N = 4,317,895 parameters: embedding.weight (9999,200); rnn_cells.weight_ih_l0
(1024,200), rnn_cells.weight_hh_l0 (1024,256), rnn_cells.bias_ih_l0,
rnn_cells.bias_hh_l0 (1024,); the same four for layer 1 with weight_ih_l1
(1024,256); l1.weight (128,256), l1.bias; l2.weight (9999,128), l2.bias. Gate row
blocks i, f, g, o (see sequence.py). Initialisation: embedding N(0, 1) with row 0
zero, LSTM U(+-1/16), linear U(+-1/sqrt(fan_in)). Row 0 (the ``<PAD>`` id) never
gets a gradient, as with PyTorch's ``padding_idx``. Input (10,) int32 token ids in
[0, 9999).
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

VOCAB_SIZE = 9999
EMBEDDING_DIM = 200
HIDDEN = 256
NUM_LAYERS = 2
FC = 128
SEQ_LENGTH = 10
PADDING_IDX = 0


class RedditRNN(nn.Module):
    """Word LSTM on (B, 10) int32 ids; returns (B, 9999) next-word logits."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Forward pass of (B, 10) token ids."""
        h = Embedding(
            VOCAB_SIZE, EMBEDDING_DIM, padding_idx=PADDING_IDX, name="embedding"
        )(x)  # (B, T, 200)
        h = jnp.transpose(h, (1, 0, 2))  # (T, B, 200), time-major for the scan
        for layer in range(NUM_LAYERS):
            h = LSTMLayer(HIDDEN, name=f"rnn_cells_l{layer}")(h)  # (T, B, 256)
        h = nn.relu(Linear(FC, name="l1")(h[-1]))  # h_n of the top layer -> (B, 128)
        return Linear(VOCAB_SIZE, name="l2")(h)


def reddit_rnn() -> ModelSpec:
    """The ``reddit_rnn`` spec with the Appendix C layout (N = 4,317,895)."""
    entries = embedding_entries(
        "embedding", VOCAB_SIZE, EMBEDDING_DIM, padding_idx=PADDING_IDX
    )
    in_features = EMBEDDING_DIM
    for layer in range(NUM_LAYERS):
        entries += lstm_entries("rnn_cells", layer, in_features, HIDDEN)
        in_features = HIDDEN
    entries += linear_entries("l1", HIDDEN, FC)
    entries += linear_entries("l2", FC, VOCAB_SIZE)
    return make_spec(
        "reddit_rnn",
        RedditRNN(),
        (SEQ_LENGTH,),
        VOCAB_SIZE,
        entries,
        input_dtype="int32",
        # per step the four gates of each layer ([x, h] -> 4 hidden), then the head
        # on the last step
        forward_flops=SEQ_LENGTH
        * (
            dense_flops(EMBEDDING_DIM + HIDDEN, 4 * HIDDEN)
            + dense_flops(2 * HIDDEN, 4 * HIDDEN)
        )
        + dense_flops(HIDDEN, FC)
        + dense_flops(FC, VOCAB_SIZE),
    )
