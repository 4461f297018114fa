"""What a model's output is scored against: the loss and the accuracy rule (SPEC 7.2, 7.3).

A dataset names its task; training minimises ``task.loss`` (per sample, weighted mean
over a minibatch) and evaluation reports ``task.correct`` as accuracy and
``task.report_loss`` of the mean loss as loss.

* ``classification``: ``(B, C)`` logits against ``(B,)`` int class ids; softmax
  cross-entropy, argmax accuracy (every dataset but MovieLens).
* ``rating``: ``(B,)`` predicted ratings against ``(B,)`` float ratings; squared error,
  reported as RMSE (SPEC 7.3: the square root of the mean batch MSE, batch size 1),
  and a prediction counts as correct when, clipped to [0.5, 5] and rounded to the
  nearest 0.5, it equals the rating (MovieLens).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Task:
    """The scoring rule of a dataset's outputs.

    Attributes:
        name: ``"classification"`` or ``"rating"``.
        label_dtype: dtype of the targets (``int32`` class ids, ``float32`` ratings).
    """

    name: str
    label_dtype: str

    def loss(self, out: jax.Array, y: jax.Array) -> jax.Array:
        """Per-sample training loss, ``(B, ...) , (B,) -> (B,)``."""
        if self.name == "classification":
            return optax.softmax_cross_entropy_with_integer_labels(out, y)
        return optax.squared_error(out, y)

    def correct(self, out: jax.Array, y: jax.Array) -> jax.Array:
        """Per-sample 0/1 correctness as float32, ``(B,)``."""
        if self.name == "classification":
            hit = jnp.argmax(out, axis=-1) == y
        else:
            pred = jnp.round(jnp.clip(out, 0.5, 5.0) * 2.0) / 2.0
            hit = pred == y
        return hit.astype(jnp.float32)

    def report_loss(self, mean_loss: jax.Array) -> jax.Array:
        """The loss as reported: the mean loss, or its square root (RMSE) for ratings."""
        if self.name == "classification":
            return mean_loss
        return jnp.sqrt(mean_loss)


CLASSIFICATION = Task("classification", "int32")
RATING = Task("rating", "float32")
TASKS = {t.name: t for t in (CLASSIFICATION, RATING)}
