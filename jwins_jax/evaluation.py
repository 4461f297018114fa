"""Evaluation of every node's own model (SPEC 7.3), batched over nodes.

Every node tests its own post-averaging model. Two kinds of sample sets:

* a **shared** set that every node evaluates (the global test split): one
  ``(D_test, ...)`` array, forward passes in chunks of ``EVAL_CHUNK`` samples;
* **per-node** sets given as padded id lists into a data array (each node's training
  data for the train loss, or each node's local test ratings for MovieLens).

Forward passes use ``model.apply_flat_eval``: the model's forward-only formulation
(XLA's own convolutions on NHWC activations for the CNNs), which no gradient goes
through, so it need not be the formulation training uses. Nodes are evaluated one
after the other (``lax.map``), each on chunks of ``EVAL_CHUNK`` samples.

Losses are sample means (the original averages batch means; the two differ only in
the weight of the last, shorter batch), reported through ``task.report_loss``
(RMSE for ratings). Accuracy is the percentage of ``task.correct`` samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jwins_jax.models import ModelSpec
from jwins_jax.tasks import Task

# Samples per forward pass. On the project's 2-core CPU, GN-LeNet evaluation with the
# forward-only formulation ran about 1.2x faster with 1,024 than with 512 (peak
# activation memory about 0.2 GB per chunk for GN-LeNet).
EVAL_CHUNK = 1024


def _chunked(x: jax.Array, y: jax.Array, w: jax.Array, chunk: int):
    size = x.shape[0]
    chunk = max(1, min(chunk, size))
    pad = (-size) % chunk
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    y = jnp.pad(y, (0, pad))
    w = jnp.pad(w, (0, pad))
    k = x.shape[0] // chunk
    return (
        x.reshape((k, chunk) + x.shape[1:]),
        y.reshape(k, chunk),
        w.reshape(k, chunk),
    )


def _node_sums(model: ModelSpec, task: Task, flat, xs, ys, ws):
    """Loss sum, correct count and weight of one model over padded chunks."""

    def chunk(carry, batch):
        xb, yb, wb = batch
        out = model.apply_flat_eval(flat, xb)
        loss_sum, acc_sum, w_sum = carry
        return (
            loss_sum + jnp.sum(task.loss(out, yb) * wb),
            acc_sum + jnp.sum(task.correct(out, yb) * wb),
            w_sum + jnp.sum(wb),
        ), None

    zero = jnp.zeros((), jnp.float32)
    (loss_sum, acc_sum, w_sum), _ = jax.lax.scan(
        chunk, (zero, zero, zero), (xs, ys, ws)
    )
    return loss_sum, acc_sum, w_sum


def _finish(task: Task, loss_sum, acc_sum, w_sum):
    w_sum = jnp.maximum(w_sum, 1.0)
    return task.report_loss(loss_sum / w_sum), 100.0 * acc_sum / w_sum


def shared_metrics(
    model: ModelSpec, task: Task, x: jax.Array, data_x: jax.Array, data_y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Every node's model on one shared sample set (the global test split).

    Args:
        x: ``(n, N)`` flat models.
        data_x, data_y: ``(D, ...)`` inputs and ``(D,)`` targets.

    Returns:
        ``(loss (n,), accuracy (n,) in percent)``.
    """
    xs, ys, ws = _chunked(
        data_x, data_y, jnp.ones(data_y.shape, jnp.float32), EVAL_CHUNK
    )
    sums = jax.lax.map(lambda f: _node_sums(model, task, f, xs, ys, ws), x)
    return _finish(task, *sums)


def per_node_metrics(
    model: ModelSpec,
    task: Task,
    x: jax.Array,
    data_x: jax.Array,
    data_y: jax.Array,
    index: jax.Array,
    size: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Every node's model on its own samples.

    Args:
        x: ``(n, N)`` flat models.
        data_x, data_y: the data array the ids point into.
        index: ``(n, L)`` int32 sample ids of each node, padded.
        size: ``(n,)`` number of valid ids per node.

    Returns:
        ``(loss (n,), accuracy (n,) in percent)``; a node without samples gets 0.
    """
    valid = (jnp.arange(index.shape[1])[None, :] < size[:, None]).astype(jnp.float32)

    def one(args):
        flat, idx, wv = args
        xs, ys, ws = _chunked(data_x[idx], data_y[idx], wv, EVAL_CHUNK)
        return _node_sums(model, task, flat, xs, ys, ws)

    sums = jax.lax.map(one, (x, index, valid))
    return _finish(task, *sums)
