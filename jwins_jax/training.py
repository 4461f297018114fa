"""Local training of every node at once (SPEC 2.1): tau SGD steps, vmapped over nodes.

The step is written for one node (:func:`local_train`) and vmapped over the node axis
in one place (:func:`train_all`), in groups of ``train_chunk`` nodes one group after
the other, which bounds the activation memory to one group.

Formulation: the model's training forward (``ModelSpec.apply_flat``: im2col + one
matmul per convolution on channel-major activations, ``jwins_jax/models/layers.py``)
differentiated by autodiff, on every backend. On the project's 2-core CPU it was the
fastest measured way inside the simulator's structure (scan over rounds, ``lax.map``
over groups, vmap inside); custom VJPs for the convolution, pooling and GroupNorm,
other matmul layouts, Winograd F(2x2, 5x5), XLA flags and other group sizes were all
slower or within noise (``benchmarks/RESULTS.md``, 2026-11-30). Nothing has been
measured on a GPU yet: a vmapped ``lax.conv`` (a grouped convolution, which cuDNN
runs well) may win there and would be chosen in the model, per
``jax.default_backend()``, once measured.

Everything a step needs enters as an argument: the model spec and task are static
(hashable) objects; the optimizer is built from traced hyperparameters by the caller;
the training inputs and labels are arrays, never constants folded into the program.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jwins_jax.models import ModelSpec
from jwins_jax.tasks import Task

# Local steps up to this many are unrolled; more run in a lax.scan.
UNROLL_STEPS = 8


def make_optimizer(
    lr: jax.Array, momentum: jax.Array, weight_decay: jax.Array, use_momentum: bool
) -> optax.GradientTransformation:
    """SGD (SPEC 1.2: no momentum, no weight decay by default) from traced values.

    ``lr``, ``momentum`` and ``weight_decay`` may be traced scalars, so vmapped runs can
    use different values in one program. Whether a momentum buffer exists changes the
    optimizer state, so ``use_momentum`` is static. Weight decay is always applied
    (``0 * x`` adds exactly zero).
    """
    sgd = optax.sgd(lr, momentum=momentum if use_momentum else None)
    return optax.chain(optax.add_decayed_weights(weight_decay), sgd)


def minibatch_loss(
    model: ModelSpec,
    task: Task,
    flat: jax.Array,
    xb: jax.Array,
    yb: jax.Array,
    wb: jax.Array,
) -> jax.Array:
    """Weighted mean of the per-sample loss over one minibatch (weights 0/1)."""
    out = model.apply_flat(flat, xb)
    per_sample = task.loss(out, yb)
    return jnp.sum(per_sample * wb) / jnp.maximum(jnp.sum(wb), 1.0)


def local_train(
    model: ModelSpec,
    task: Task,
    tx: optax.GradientTransformation,
    x: jax.Array,
    opt: Any,
    data_x: jax.Array,
    data_y: jax.Array,
    ids: jax.Array,
    w: jax.Array,
) -> tuple[jax.Array, Any, jax.Array]:
    """``tau`` SGD steps of one node: unrolled up to :data:`UNROLL_STEPS`, else a loop.

    Unrolled steps compile into one straight program (fastest for the paper's small
    tau); beyond :data:`UNROLL_STEPS` (FEMNIST's tau = 47, or any large value) the
    steps run in a ``lax.scan``, so compile time does not grow with tau.

    Args:
        model, task: what is trained and how it is scored.
        tx: the optimizer.
        x: ``(N,)`` flat model; opt: its optimizer state.
        data_x, data_y: the whole training split, ``(D, ...)`` and ``(D,)``.
        ids: ``(tau, b)`` training-sample ids of the node's minibatches.
        w: ``(tau, b)`` 0/1 weights (0 pads a short minibatch).

    Returns:
        The new model, its optimizer state and the mean minibatch loss.
    """
    grad_fn = jax.value_and_grad(minibatch_loss, argnums=2)

    def step(x, opt, ids_s, w_s):
        loss, g = grad_fn(model, task, x, data_x[ids_s], data_y[ids_s], w_s)
        updates, opt = tx.update(g, opt, x)
        return optax.apply_updates(x, updates), opt, loss

    if ids.shape[0] > UNROLL_STEPS:

        def body(carry, batch):
            x, opt, loss = step(*carry, *batch)
            return (x, opt), loss

        (x, opt), losses = jax.lax.scan(body, (x, opt), (ids, w))
        return x, opt, jnp.mean(losses)
    losses = []
    for s in range(ids.shape[0]):
        x, opt, loss = step(x, opt, ids[s], w[s])
        losses.append(loss)
    return x, opt, jnp.mean(jnp.stack(losses))


def chunk_size(n: int, train_chunk: int) -> int:
    """Nodes per training group: ``train_chunk`` (0 or >= n: all ``n`` at once)."""
    if train_chunk <= 0 or train_chunk >= n:
        return n
    return train_chunk


def train_all(
    model: ModelSpec,
    task: Task,
    tx: optax.GradientTransformation,
    x: jax.Array,
    opt: Any,
    data_x: jax.Array,
    data_y: jax.Array,
    ids: jax.Array,
    w: jax.Array,
    train_chunk: int,
) -> tuple[jax.Array, Any, jax.Array]:
    """Local training of every node: :func:`local_train` vmapped over the node axis.

    With ``0 < train_chunk < n`` the nodes are trained in groups of ``train_chunk``
    (``lax.map`` over groups, vmap inside); when ``n`` is not a multiple, the last
    group is padded with copies of the last node and the padding is dropped, so the
    group size stays what was asked for.

    Returns:
        ``(x (n, N), opt, loss (n,))``.
    """
    n = x.shape[0]
    chunk = chunk_size(n, train_chunk)

    def train(x, opt, ids, w):
        return jax.vmap(
            lambda *a: local_train(model, task, tx, *a[:2], data_x, data_y, *a[2:])
        )(x, opt, ids, w)

    if chunk >= n:
        return train(x, opt, ids, w)
    groups = -(-n // chunk)
    pad = groups * chunk - n

    def group(a):
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
        return a.reshape((groups, chunk) + a.shape[1:])

    args = jax.tree.map(group, (x, opt, ids, w))
    out = jax.lax.map(lambda a: train(*a), args)
    return jax.tree.map(lambda a: a.reshape((groups * chunk,) + a.shape[2:])[:n], out)
