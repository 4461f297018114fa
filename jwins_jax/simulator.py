"""The vectorized simulator: all n nodes advance together in one jitted program.

One communication round (SPEC 1.3, 9 "Order within a round")::

    ids, w   = sample_batches(key, node_data, tau, b)       # fresh permutation per node
    x        = vmap(local_train)(x, opt, ids, w)            # tau SGD steps, unrolled
    table    = static MH table, or bank[t] on dynamic graphs
    x, s, st = sharing.step(s, x, key, table)               # gossip on the node axis

The rounds between two evaluations run inside one ``lax.scan`` (:meth:`Simulation.advance`),
so the host only wakes up to log. :func:`make_run` puts a whole run, evaluations
included, into one function of the key, so ``jax.vmap(run)`` runs seeds side by side.

Models are kept as one ``(n, N)`` float32 matrix in the PyTorch flat layout of SPEC
Appendix C; the model unflattens it inside ``apply``. All nodes start from the same
initial model (SPEC 1.2).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jwins_jax import compiler, gossip
from jwins_jax.config import Config
from jwins_jax.data.batches import NodeData, node_data, sample_batches
from jwins_jax.data.datasets import Dataset, load_dataset
from jwins_jax.data.partition import partition
from jwins_jax.errors import ConfigError
from jwins_jax.models import ModelSpec, get_model
from jwins_jax.sharing import Sharing, sharing_from_config
from jwins_jax.topology import (
    NeighborTable,
    dynamic_bank,
    make_graph,
    neighbor_table,
    table_at,
)

EVAL_CHUNK = 512  # test samples per forward pass during evaluation


@struct.dataclass
class SimState:
    """Everything that changes from round to round."""

    x: jax.Array  # (n, N) flat models, PyTorch layout
    opt: Any  # optax state; leaves (n, ...)
    share: Any  # the sharing strategy's state
    key: jax.Array  # PRNG key of the run
    round: jax.Array  # () int32 rounds done


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Plain SGD by default (SPEC 1.2); momentum and weight decay are optional.

    The learning rate is injected as a hyperparameter, so it lives in the optimizer
    state as an array and can differ between vmapped runs.
    """
    sgd = optax.inject_hyperparams(optax.sgd)(
        learning_rate=config.lr, momentum=config.momentum or None
    )
    if config.weight_decay:
        return optax.chain(optax.add_decayed_weights(config.weight_decay), sgd)
    return sgd


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-sample cross-entropy, ``(B, C), (B,) -> (B,)``."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]


class Simulation:
    """A fully built experiment: data, partition, graph, model, strategy, jitted steps.

    Args:
        config: the experiment; validated here (ConfigError on bad input).
        dataset: an already loaded dataset to use instead of ``config.dataset``.
    """

    def __init__(self, config: Config, dataset: Dataset | None = None):
        c = config.validate()
        self.config = c
        self.dataset = dataset if dataset is not None else load_dataset(
            c.dataset, seed=c.seed, data_dir=c.data_dir
        )
        ds = self.dataset
        if c.nodes > len(ds.y_train):
            raise ConfigError(
                f"nodes={c.nodes} exceeds the {len(ds.y_train)} training samples of "
                f"{ds.name!r}: every node needs at least one sample"
            )
        self.parts = partition(
            ds.y_train,
            c.nodes,
            c.partition,
            alpha=c.dirichlet_alpha,
            shards=c.shards,
            seed=c.seed,
        )
        self.node_data: NodeData = node_data(self.parts)
        self.model: ModelSpec = get_model(c.model)
        if tuple(self.model.input_shape) != tuple(ds.input_shape):
            raise ConfigError(
                f"model={c.model!r} takes inputs of shape {self.model.input_shape}, but "
                f"dataset={c.dataset!r} has {ds.input_shape}"
            )
        self.n_params = self.model.num_params
        self.adjacency = make_graph(
            c.topology,
            c.nodes,
            degree=c.degree,
            edges_file=c.edges_file,
            seed=c.seed,
            beta=c.beta,
        )
        if c.dynamic:
            self.table: NeighborTable | None = None
            self.bank: NeighborTable | None = dynamic_bank(
                c.nodes, c.degree, c.seed, c.rounds
            )
        else:
            self.table = neighbor_table(self.adjacency)
            self.bank = None
        self.sharing: Sharing = sharing_from_config(c, self.n_params)
        self.tx = make_optimizer(c)
        self.x_train = jnp.asarray(ds.x_train)
        self.y_train = jnp.asarray(ds.y_train, jnp.int32)
        n_test = len(ds.y_test) if c.test_subset == 0 else min(c.test_subset, len(ds.y_test))
        self.x_test = jnp.asarray(ds.x_test[:n_test])
        self.y_test = jnp.asarray(ds.y_test[:n_test], jnp.int32)
        self.trace_count = 0  # how often the round function was traced (compiled)
        self._advance_cache: dict[int, Callable] = {}
        # The data enter the evaluation as arguments, not as constants folded into
        # the compiled program.
        self._eval_data = (self.x_test, self.y_test, self.x_train, self.y_train)
        self._evaluate = compiler.jit(self._evaluate_impl)
        self._init = compiler.jit(self._init_impl)

    # ------------------------------------------------------------------ state
    def init(self, key: jax.Array) -> SimState:
        """The initial state: the same model on every node (SPEC 1.2).

        Built in one jitted call, so every leaf owns its buffer (the state is donated
        to :meth:`advance`).
        """
        return self._init(key)

    def _init_impl(self, key: jax.Array) -> SimState:
        k_model, k_run = jax.random.split(key)
        x0 = self.model.init_flat(k_model)
        x = jnp.broadcast_to(x0, (self.config.nodes, self.n_params)).astype(jnp.float32)
        opt = jax.vmap(self.tx.init)(x)
        return SimState(
            x=x,
            opt=opt,
            share=self.sharing.init(x),
            key=k_run,
            round=jnp.zeros((), jnp.int32),
        )

    # --------------------------------------------------------------- training
    def _loss(self, flat: jax.Array, xb: jax.Array, yb: jax.Array, wb: jax.Array):
        logits = self.model.apply_flat(flat, xb)
        ce = cross_entropy(logits, yb)
        return jnp.sum(ce * wb) / jnp.maximum(jnp.sum(wb), 1.0)

    def local_train(self, x: jax.Array, opt: Any, ids: jax.Array, w: jax.Array):
        """``tau`` SGD steps of one node (unrolled; vmapped over nodes by the caller).

        Args:
            x: ``(N,)`` flat model; opt: its optimizer state.
            ids: ``(tau, b)`` global training-sample ids; w: ``(tau, b)`` 0/1 weights.

        Returns:
            The new model, optimizer state and the mean minibatch loss.
        """
        grad_fn = jax.value_and_grad(self._loss)
        losses = []
        for s in range(ids.shape[0]):
            xb = self.x_train[ids[s]]
            yb = self.y_train[ids[s]]
            loss, g = grad_fn(x, xb, yb, w[s])
            updates, opt = self.tx.update(g, opt, x)
            x = optax.apply_updates(x, updates)
            losses.append(loss)
        return x, opt, jnp.mean(jnp.stack(losses))

    def train_all(self, x: jax.Array, opt: Any, ids: jax.Array, w: jax.Array):
        """Local training of every node: ``local_train`` vmapped over the node axis.

        With ``config.train_chunk = c`` (0 < c < n) the nodes are trained in groups of
        ``chunk_size(n, c)`` nodes, one group after the other (``lax.map`` over groups,
        vmap inside), which bounds the memory of activations to one group.
        """
        n = x.shape[0]
        chunk = chunk_size(n, self.config.train_chunk)
        train = jax.vmap(self.local_train)
        if chunk >= n:
            return train(x, opt, ids, w)

        def group(a):
            return a.reshape((n // chunk, chunk) + a.shape[1:])

        args = jax.tree.map(group, (x, opt, ids, w))
        out = jax.lax.map(lambda a: train(*a), args)
        return jax.tree.map(lambda a: a.reshape((n,) + a.shape[2:]), out)

    def round_step(self, state: SimState) -> tuple[SimState, dict[str, jax.Array]]:
        """One communication round for all nodes (pure; jit and scan it)."""
        self.trace_count += 1
        c = self.config
        key, k_batch, k_share = jax.random.split(state.key, 3)
        ids, w = sample_batches(k_batch, self.node_data, c.local_steps, c.batch_size)
        x, opt, loss = self.train_all(state.x, state.opt, ids, w)
        table = self.table if self.bank is None else table_at(self.bank, state.round)
        x, share, stats = self.sharing.step(state.share, x, k_share, table)
        metrics = dict(stats)
        metrics["train_loss"] = loss
        new = state.replace(x=x, opt=opt, share=share, key=key, round=state.round + 1)
        return new, metrics

    def _advance_impl(self, state: SimState, length: int):
        def body(s, _):
            return self.round_step(s)

        return jax.lax.scan(body, state, None, length=length)

    def is_compiled(self, rounds: int) -> bool:
        """Whether :meth:`advance` has already compiled a scan of ``rounds`` rounds."""
        return rounds in self._advance_cache

    def advance(self, state: SimState, rounds: int):
        """Runs ``rounds`` rounds in one compiled scan; the input state is donated.

        Returns:
            The new state and per-round metrics, each of shape ``(rounds, n)``.
        """
        fn = self._advance_cache.get(rounds)
        if fn is None:
            fn = compiler.jit(
                functools.partial(self._advance_impl, length=rounds), donate_argnums=0
            )
            self._advance_cache[rounds] = fn
        return fn(state)

    # ------------------------------------------------------------- evaluation
    def _node_eval(self, flat: jax.Array, xs: jax.Array, ys: jax.Array, ws: jax.Array):
        """Loss sum, correct count and weight of one model on padded chunks."""

        def chunk(carry, batch):
            xb, yb, wb = batch
            logits = self.model.apply_flat(flat, xb)
            ce = cross_entropy(logits, yb)
            correct = (jnp.argmax(logits, axis=1) == yb).astype(jnp.float32)
            loss_sum, acc_sum, w_sum = carry
            return (
                loss_sum + jnp.sum(ce * wb),
                acc_sum + jnp.sum(correct * wb),
                w_sum + jnp.sum(wb),
            ), None

        zero = jnp.zeros((), jnp.float32)
        (loss_sum, acc_sum, w_sum), _ = jax.lax.scan(chunk, (zero, zero, zero), (xs, ys, ws))
        w_sum = jnp.maximum(w_sum, 1.0)
        return loss_sum / w_sum, acc_sum / w_sum

    def _chunked(self, x: jax.Array, y: jax.Array, w: jax.Array):
        size = x.shape[0]
        chunk = min(EVAL_CHUNK, size)
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

    def _evaluate_impl(self, x: jax.Array, data=None) -> dict[str, jax.Array]:
        x_test, y_test, x_train, y_train = self._eval_data if data is None else data
        xs, ys, ws = self._chunked(x_test, y_test, jnp.ones(y_test.shape, jnp.float32))
        test_loss, test_acc = jax.lax.map(lambda f: self._node_eval(f, xs, ys, ws), x)

        nd = self.node_data
        valid = (jnp.arange(nd.index.shape[1])[None, :] < nd.size[:, None]).astype(
            jnp.float32
        )

        def train_eval(args):
            flat, idx, wv = args
            txs, tys, tws = self._chunked(x_train[idx], y_train[idx], wv)
            return self._node_eval(flat, txs, tys, tws)

        train_loss, train_acc = jax.lax.map(train_eval, (x, nd.index, valid))
        return {
            "test_acc": 100.0 * test_acc,
            "test_loss": test_loss,
            "train_loss": train_loss,
            "train_acc": 100.0 * train_acc,
            "consensus": gossip.consensus_distance(x),
            "finite": jnp.all(jnp.isfinite(x), axis=1),
        }

    def evaluate(self, state: SimState) -> dict[str, jax.Array]:
        """Every node's model on the global test split and on its own training data.

        Returns ``(n,)`` arrays ``test_acc`` (percent), ``test_loss``, ``train_loss``,
        ``train_acc`` and ``finite``, and the scalar ``consensus`` distance (mean over
        nodes of ``||x_i - mean x||^2``). Losses are sample means.
        """
        return self._evaluate(state.x, self._eval_data)


def chunk_size(n: int, train_chunk: int) -> int:
    """The largest divisor of ``n`` that is at most ``train_chunk`` (0: ``n``)."""
    if train_chunk <= 0 or train_chunk >= n:
        return n
    return max(d for d in range(1, train_chunk + 1) if n % d == 0)


def block_lengths(rounds: int, eval_every: int) -> list[int]:
    """Rounds per evaluation block: ``eval_every`` each, the remainder last."""
    full, rest = divmod(rounds, eval_every)
    return [eval_every] * full + ([rest] if rest else [])


def make_run(config: Config) -> Callable[[jax.Array], tuple[SimState, dict[str, Any]]]:
    """Builds ``run(key) -> (final_state, history)``: a whole run as one function.

    Every ``eval_every`` rounds the run evaluates; the history holds, per evaluation,
    the evaluation arrays (leading axis: evaluations) and the per-round sharing
    statistics (``rounds`` leading axis). ``jwins_jax.compiler.jit(jax.vmap(run))``
    (``jax.jit`` with the simulator's CPU compile options) over a batch of keys runs
    seeds side by side.
    """
    sim = Simulation(config)
    c = sim.config
    n_blocks, rest = divmod(c.rounds, c.eval_every)

    def run(key: jax.Array):
        state = sim._init_impl(key)

        def block(s, _):
            s, per_round = sim._advance_impl(s, c.eval_every)
            return s, (per_round, sim._evaluate_impl(s.x))

        state, (rounds_m, evals) = jax.lax.scan(block, state, None, length=n_blocks)
        rounds_m = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), rounds_m)
        if rest:
            state, tail = sim._advance_impl(state, rest)
            last = sim._evaluate_impl(state.x)
            rounds_m = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), rounds_m, tail)
            evals = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), evals, last)
        return state, {"rounds": rounds_m, "evals": evals}

    run.simulation = sim  # type: ignore[attr-defined]
    return run


def summarize_nodes(values: np.ndarray) -> dict[str, float]:
    """Mean, std, min and max over nodes of a ``(n,)`` metric."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
    }
