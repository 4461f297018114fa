"""Evaluation of every node's own model (SPEC 7.3), batched over nodes.

Every node tests its own post-averaging model. Two kinds of sample sets:

* a **shared** set that every node evaluates (the global test split): one
  ``(D_test, ...)`` array, forward passes in chunks of the backend's chunk samples;
* **per-node** sets given as padded id lists into a data array (each node's training
  data for the train loss, or each node's local test ratings for MovieLens).

Forward passes use ``model.apply_flat_eval``: the model's forward-only formulation
(XLA's own convolutions on NHWC activations for the CNNs), which no gradient goes
through, so it need not be the formulation training uses. Nodes are evaluated one
after the other (``lax.map``) on the chunks of the backend's chunk samples; on the shared
set in groups of the backend's group size nodes (``ModelSpec.apply_group_eval``), so that work
depending only on the inputs (GN-LeNet's first convolution) is shared by the group.

Losses are sample means (the original averages batch means; the two differ only in
the weight of the last, shorter batch), reported through ``task.report_loss``
(RMSE for ratings). Accuracy is the percentage of ``task.correct`` samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jwins_jax import platform
from jwins_jax.models import ModelSpec
from jwins_jax.tasks import Task


# Samples per forward pass and nodes per group on the shared set. Measured on the
# project's 2-core CPU (GN-LeNet, 16 nodes x 1,024 test images, benchmarks/
# RESULTS.md): groups of 8 with chunks of 128 (GN-LeNet's first
# convolution then runs once per group; about 0.15 GB of activations) were the
# fastest of groups of 1, 4, 8, 16 and chunks of 128 to 1,024.
# The values per backend live in jwins_jax/platform.py.
def _eval_chunk() -> int:
    return platform.default("eval_chunk")


def _eval_group() -> int:
    return platform.default("eval_group")


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


def _group_sums(model: ModelSpec, task: Task, flats, xs, ys, ws):
    """Loss sums, correct counts and weight of a group of models over padded chunks.

    Args:
        flats: ``(g, N)`` models that all see the same chunks.
        xs, ys, ws: ``(k, chunk, ...)`` inputs, targets and 0/1 weights.

    Returns:
        ``(loss_sum (g,), acc_sum (g,), w_sum ())``.
    """

    def chunk(carry, batch):
        xb, yb, wb = batch
        out = model.apply_group_eval(flats, xb)  # (g, chunk, ...)
        loss_sum, acc_sum, w_sum = carry
        loss = jax.vmap(task.loss, in_axes=(0, None))(out, yb)
        correct = jax.vmap(task.correct, in_axes=(0, None))(out, yb)
        return (
            loss_sum + jnp.sum(loss * wb, axis=1),
            acc_sum + jnp.sum(correct * wb, axis=1),
            w_sum + jnp.sum(wb),
        ), None

    g = flats.shape[0]
    zeros = jnp.zeros((g,), jnp.float32)
    init = (zeros, zeros, jnp.zeros((), jnp.float32))
    return jax.lax.scan(chunk, init, (xs, ys, ws))[0]


def _finish(task: Task, loss_sum, acc_sum, w_sum):
    w_sum = jnp.maximum(w_sum, 1.0)
    return task.report_loss(loss_sum / w_sum), 100.0 * acc_sum / w_sum


def shared_metrics(
    model: ModelSpec, task: Task, x: jax.Array, data_x: jax.Array, data_y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Every node's model on one shared sample set (the global test split).

    Nodes are evaluated in groups of the backend's group size (``lax.map`` over groups; the
    last group is padded with copies of the last node, dropped afterwards), so a
    model can share work that only depends on the inputs across the group.

    Args:
        x: ``(n, N)`` flat models.
        data_x, data_y: ``(D, ...)`` inputs and ``(D,)`` targets.

    Returns:
        ``(loss (n,), accuracy (n,) in percent)``.
    """
    xs, ys, ws = _chunked(
        data_x, data_y, jnp.ones(data_y.shape, jnp.float32), _eval_chunk()
    )
    n = x.shape[0]
    g = min(_eval_group(), n)
    groups = -(-n // g)
    pad = groups * g - n
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
    loss, acc, w = jax.lax.map(
        lambda f: _group_sums(model, task, f, xs, ys, ws), x.reshape(groups, g, -1)
    )
    w = jnp.broadcast_to(w[:, None], loss.shape)
    return _finish(task, *(a.reshape(-1)[:n] for a in (loss, acc, w)))


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
        xs, ys, ws = _chunked(data_x[idx], data_y[idx], wv, _eval_chunk())
        loss, acc, w = _group_sums(model, task, flat[None], xs, ys, ws)
        return loss[0], acc[0], w

    sums = jax.lax.map(one, (x, index, valid))
    return _finish(task, *sums)
