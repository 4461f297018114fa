"""The paper's MovieLens matrix factorisation (SPEC 7.2, flat layout Appendix C).

A user table (610, 20) and an item table (9724, 20), both initialised U(-0.05, 0.05);
the predicted rating of (user, item) is the dot product of their rows. N = 206,680:
user_factors.weight [0, 12200), item_factors.weight [12200, 206680).

Input (2,) int32 ``[user, item]`` ids, already 0-based: the original shifts its
1-based ids by -1 inside the model, our loader does it when reading ratings.csv.
Output (B,) predicted ratings (a ``rating`` task, ``num_classes == 0``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jwins_jax.models.layout import ModelSpec, dense_flops, embedding_entries, make_spec
from jwins_jax.models.sequence import Embedding

NUM_USERS = 610
NUM_ITEMS = 9724
NUM_FACTORS = 20
INIT_BOUND = 0.05


class MatrixFactorization(nn.Module):
    """Dot product of user and item factors on (B, 2) int32 ids; returns (B,)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Predicted ratings of (B, 2) ``[user, item]`` pairs."""
        u = Embedding(NUM_USERS, NUM_FACTORS, INIT_BOUND, name="user_factors")(x[:, 0])
        v = Embedding(NUM_ITEMS, NUM_FACTORS, INIT_BOUND, name="item_factors")(x[:, 1])
        return jnp.sum(u * v, axis=-1)  # (B,)


def movielens_mf() -> ModelSpec:
    """The ``movielens_mf`` spec with the Appendix C layout (N = 206,680)."""
    entries = embedding_entries(
        "user_factors", NUM_USERS, NUM_FACTORS, "uniform", INIT_BOUND
    ) + embedding_entries("item_factors", NUM_ITEMS, NUM_FACTORS, "uniform", INIT_BOUND)
    return make_spec(
        "movielens_mf",
        MatrixFactorization(),
        (2,),
        0,
        entries,
        input_dtype="int32",
        forward_flops=dense_flops(NUM_FACTORS, 1),  # one dot product
    )
