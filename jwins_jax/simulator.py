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

from jwins_jax import compiler, evaluation, gossip, tasks, training
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

from jwins_jax.training import chunk_size  # noqa: E402,F401


@struct.dataclass
class SimState:
    """Everything that changes from round to round."""

    x: jax.Array  # (n, N) flat models, PyTorch layout
    opt: Any  # optax state; leaves (n, ...)
    share: Any  # the sharing strategy's state
    key: jax.Array  # PRNG key of the run
    round: jax.Array  # () int32 rounds done


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Plain SGD by default (SPEC 1.2); momentum and weight decay are optional."""
    return training.make_optimizer(
        jnp.float32(config.lr),
        jnp.float32(config.momentum),
        jnp.float32(config.weight_decay),
        config.momentum > 0,
    )


class Simulation:
    """A fully built experiment: data, partition, graph, model, strategy, jitted steps.

    Args:
        config: the experiment; validated here (ConfigError on bad input).
        dataset: an already loaded dataset to use instead of ``config.dataset``.
    """

    def __init__(self, config: Config, dataset: Dataset | None = None):
        c = config.validate()
        self.config = c
        self.dataset = (
            dataset
            if dataset is not None
            else load_dataset(c.dataset, seed=c.seed, data_dir=c.data_dir)
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
        self.task = tasks.TASKS[ds.task]
        self.x_train = jnp.asarray(ds.x_train)
        self.y_train = jnp.asarray(ds.y_train, jnp.int32)
        n_test = (
            len(ds.y_test) if c.test_subset == 0 else min(c.test_subset, len(ds.y_test))
        )
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
    def local_train(self, x: jax.Array, opt: Any, ids: jax.Array, w: jax.Array):
        """``tau`` SGD steps of one node (see :func:`jwins_jax.training.local_train`)."""
        return training.local_train(
            self.model, self.task, self.tx, x, opt, self.x_train, self.y_train, ids, w
        )

    def train_all(self, x: jax.Array, opt: Any, ids: jax.Array, w: jax.Array):
        """Local training of every node (see :func:`jwins_jax.training.train_all`)."""
        return training.train_all(
            self.model,
            self.task,
            self.tx,
            x,
            opt,
            self.x_train,
            self.y_train,
            ids,
            w,
            self.config.train_chunk,
        )

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
    def _evaluate_impl(self, x: jax.Array, data=None) -> dict[str, jax.Array]:
        x_test, y_test, x_train, y_train = self._eval_data if data is None else data
        test_loss, test_acc = evaluation.shared_metrics(
            self.model, self.task, x, x_test, y_test
        )
        nd = self.node_data
        train_loss, train_acc = evaluation.per_node_metrics(
            self.model, self.task, x, x_train, y_train, nd.index, nd.size
        )
        return {
            "test_acc": test_acc,
            "test_loss": test_loss,
            "train_loss": train_loss,
            "train_acc": train_acc,
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
            rounds_m = jax.tree.map(
                lambda a, b: jnp.concatenate([a, b]), rounds_m, tail
            )
            evals = jax.tree.map(
                lambda a, b: jnp.concatenate([a, b[None]]), evals, last
            )
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
