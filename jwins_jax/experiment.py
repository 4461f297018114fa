"""One experiment as pure functions: ``build(config) -> (experiment, inputs, hparams)``.

This is the one pipeline every entry point runs (``jwins run``, ``compare``,
``sweep``, :func:`make_run`, the benchmarks). Building an experiment on the host
gives three things:

* :class:`Experiment`: the static part (model, task, strategy, shapes) and its pure
  functions ``init``, ``round_step``, ``block`` and ``evaluate``;
* :class:`Inputs`: the arrays the program reads (training and test data, each node's
  sample ids, the graph's neighbour tables). They enter every function as an
  argument, never as a constant folded into the compiled program;
* :class:`Hparams`: the traced hyperparameters (learning rate, momentum, weight
  decay, the strategy's own, e.g. alpha or CHOCO's gamma) as arrays, so ``jax.vmap``
  runs many values in one program.

One communication round (SPEC 1.3, 9 "Order within a round")::

    ids, w   = sample_batches(key, inputs.nodes, tau, b)    # fresh permutation per node
    x        = train_all(x, opt, ids, w)                    # vmap(local_train) by groups
    table    = inputs.graph (dynamic graphs: drawn from the round's key)
    x, s, st = sharing.step(s, x, key, table, hp.sharing)   # gossip on the node axis
    clock    = simtime.advance(clock, speeds, work, ..., st)  # simulated time

With faults enabled (``link_failure``, ``churn``, ``churn_schedule``) offline nodes keep
their model, optimizer and strategy state, and the gossip runs on the round's surviving
graph (:mod:`jwins_jax.faults`).

``block(state, hp, inputs, length)`` runs ``length`` rounds (a traced count, so every
block of a run, the last shorter one too, uses one compiled program) and then
evaluates. Models are kept as one ``(n, N)`` float32 matrix in the PyTorch flat layout
of SPEC Appendix C. All nodes start from the same initial model (SPEC 1.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jwins_jax import evaluation, faults, gossip, platform, simtime, tasks, training
from jwins_jax.config import Config
from jwins_jax.data import Dataset, load_dataset
from jwins_jax.data.batches import NodeData, node_data, sample_batches
from jwins_jax.data.partition import local_test_parts, partition, user_nodes
from jwins_jax.errors import ConfigError
from jwins_jax.models import ModelSpec, get_model
from jwins_jax.sharing import RoundInputs, Sharing, make_sharing
from jwins_jax.tasks import Task
from jwins_jax.topology import (
    NeighborTable,
    check_dynamic,
    make_graph,
    neighbor_table,
    random_regular_table,
)

# A dynamic graph is drawn from fold_in(round key, GRAPH_STREAM): a stream of its own,
# so a dynamic graph changes no other random draw.
GRAPH_STREAM = 0x06A9
# The nodes an evaluation samples (eval_nodes) are drawn from fold_in(key, EVAL_STREAM).
EVAL_STREAM = 0x0E7A1


@struct.dataclass
class Hparams:
    """The traced hyperparameters of one run (no field changes a shape)."""

    lr: jax.Array  # () float32 learning rate
    momentum: jax.Array  # () float32 SGD momentum
    weight_decay: jax.Array  # () float32
    sharing: Any  # the strategy's hyperparameter pytree (Sharing.hparams)
    faults: faults.FaultHyper  # () float32 link_failure and churn probabilities
    time: simtime.TimeHyper  # () the simulated clock's speeds, latency and spread


@struct.dataclass
class Inputs:
    """The arrays one run reads. In a sweep, ``nodes``, ``tests`` and ``graph`` get a
    leading config axis (they depend on the seed); the data arrays are shared."""

    train_x: jax.Array  # (D, *input_shape) training inputs
    train_y: jax.Array  # (D,) training targets
    test_x: jax.Array  # (D_test, *input_shape) test inputs
    test_y: jax.Array  # (D_test,) test targets
    nodes: NodeData  # (n, L) training-sample ids of each node
    tests: NodeData | None  # (n, L_test) local test ids per node; None: global test
    graph: NeighborTable | None  # (n, d) tables; None on dynamic graphs (drawn)
    churn_schedule: jax.Array | None = None  # (K, 3) int32 (first, last round, node)
    node_profile: jax.Array | None = None  # (n, 3) float32 GFLOP/s, Mbit/s up, down
    straggler_trace: jax.Array | None = None  # (K, 3) float32 (round, node, factor)


# The Inputs fields that differ between the configs of a sweep group.
PER_CONFIG_INPUTS = ("nodes", "tests", "graph")


@struct.dataclass
class SimState:
    """Everything that changes from round to round."""

    x: jax.Array  # (n, N) flat models, PyTorch layout
    opt: Any  # optax state; leaves (n, ...)
    share: Any  # the sharing strategy's state
    key: jax.Array  # PRNG key of the run
    round: jax.Array  # () int32 rounds done
    clock: jax.Array  # (n,) float32 simulated clocks, offsets from the host's base


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The static part of an experiment and its pure functions.

    Attributes:
        config: the resolved config it was built from (its traced fields are only
            the defaults; the values used come in through ``Hparams``).
        model: the model spec (flat PyTorch layout).
        task: how outputs are scored.
        sharing: the strategy's pure functions.
        drop_last: whether local training skips short minibatches (FEMNIST).
        work: the FLOPs of a round at a node, for the simulated clock.
    """

    config: Config
    model: ModelSpec
    task: Task
    sharing: Sharing
    drop_last: bool = False
    work: simtime.Work = simtime.Work(train=0.0)

    @property
    def nodes(self) -> int:
        return self.config.nodes

    @property
    def n_params(self) -> int:
        return self.model.num_params

    @property
    def dynamic(self) -> bool:
        return self.config.dynamic

    @property
    def has_faults(self) -> bool:
        """Whether rounds draw link failures and churn (static)."""
        return self.config.faults_enabled

    def optimizer(self, hp: Hparams):
        """The optimizer with this run's traced hyperparameters."""
        return training.make_optimizer(
            hp.lr, hp.momentum, hp.weight_decay, self.config.momentum > 0
        )

    # ------------------------------------------------------------------ state
    def init(self, key: jax.Array, hp: Hparams) -> SimState:
        """The initial state: the same model on every node (SPEC 1.2)."""
        k_model, k_run = jax.random.split(key)
        x0 = self.model.init_flat(k_model)
        x = jnp.broadcast_to(x0, (self.nodes, self.n_params)).astype(jnp.float32)
        opt = jax.vmap(self.optimizer(hp).init)(x)
        return SimState(
            x=x,
            opt=opt,
            share=self.sharing.init(x),
            key=k_run,
            round=jnp.zeros((), jnp.int32),
            clock=jnp.zeros((self.nodes,), jnp.float32),
        )

    # ------------------------------------------------------------------ rounds
    def table(self, inputs: Inputs, state: SimState) -> NeighborTable:
        """The neighbour table of the round that starts from ``state``.

        A dynamic graph is drawn inside the program from the round's key
        (:func:`~jwins_jax.topology.random_regular_table`), so nothing grows with
        the number of rounds; a static graph is ``inputs.graph``.
        """
        if not self.dynamic:
            return inputs.graph
        key = jax.random.fold_in(state.key, GRAPH_STREAM)
        return random_regular_table(key, self.nodes, self.config.degree)

    def round_step(
        self, state: SimState, hp: Hparams, inputs: Inputs
    ) -> tuple[SimState, dict[str, jax.Array]]:
        """One communication round for all nodes.

        Returns:
            The new state and the round's ``(n,)`` metrics: the strategy's message
            statistics (``sent``, ``meta_bytes``, ``receivers``, ``full``), the
            fault statistics (``delivered``, ``received``, ``online``; see
            :mod:`jwins_jax.faults`), ``train_loss``, each node's mean minibatch
            loss (NaN for an offline node), and the simulated clock
            (:mod:`jwins_jax.simtime`): ``clock`` (the offsets after the round),
            ``compute_s`` (each node's compute seconds) and the scalar
            ``clock_shift``.
        """
        new, metrics, _ = self._round(state, hp, inputs, messages=False)
        return new, metrics

    def measured_round(
        self, state: SimState, hp: Hparams, inputs: Inputs
    ) -> tuple[SimState, dict[str, jax.Array], tuple[jax.Array, jax.Array]]:
        """One round (:meth:`round_step`) that also returns every node's message.

        The messages come from the same computation as the round
        (:attr:`~jwins_jax.sharing.base.Sharing.message` on the trained models and
        the round's key), so they are what the nodes sent; the host measures real
        codecs on them (``fpzip_every``, :mod:`jwins_jax.hostcodec`). An offline
        node's message is computed but not sent (its ``receivers`` are 0).

        Returns:
            The new state, the round's metrics and ``(values (n, L), mask (n, L)
            bool)``: each node's values as decoded at the entries it sends.
        """
        return self._round(state, hp, inputs, messages=True)

    def _round(self, state: SimState, hp: Hparams, inputs: Inputs, messages: bool):
        c = self.config
        key, k_batch, k_share = jax.random.split(state.key, 3)
        ids, w = sample_batches(
            k_batch, inputs.nodes, c.local_steps, c.batch_size, self.drop_last
        )
        x, opt, loss = training.train_all(
            self.model,
            self.task,
            self.optimizer(hp),
            state.x,
            state.opt,
            inputs.train_x,
            inputs.train_y,
            ids,
            w,
            c.train_chunk,
        )
        table = self.table(inputs, state)
        link_up = None
        round_inputs = RoundInputs()
        if self.has_faults:
            k_fault = jax.random.fold_in(state.key, faults.FAULT_STREAM)
            offline = None
            if inputs.churn_schedule is not None:
                offline = faults.scheduled_offline(
                    inputs.churn_schedule, state.round, self.nodes
                )
            online, link_up = faults.draw(k_fault, table, hp.faults, offline)
            x = jnp.where(online[:, None], x, state.x)  # offline nodes do not train
            opt = faults.keep_offline(online, opt, state.opt)
            loss = jnp.where(online, loss, jnp.nan)
            round_inputs = RoundInputs(online=online)
            x_sent = x
            x, share, stats = faults.sharing_step(
                self.sharing,
                state.share,
                x,
                k_share,
                table,
                hp.sharing,
                online,
                link_up,
            )
        else:
            x_sent = x
            x, share, stats = self.sharing.step(
                state.share, x, k_share, table, hp.sharing
            )
            stats = faults.fault_free_stats(stats, table)
        sent = None
        if messages:
            sent = self.sharing.message(
                state.share, x_sent, k_share, hp.sharing, round_inputs
            )
        clock, shift, compute = simtime.advance(
            state.clock,
            simtime.node_speeds(hp.time, self.nodes, inputs.node_profile),
            self.work,
            hp.time.latency_ms / 1000.0,
            table,
            stats,
            simtime.straggler_factor(inputs.straggler_trace, state.round, self.nodes),
            link_up,
        )
        metrics = dict(stats)
        metrics["train_loss"] = loss
        metrics.update(clock=clock, compute_s=compute, clock_shift=shift)
        new = state.replace(
            x=x, opt=opt, share=share, key=key, round=state.round + 1, clock=clock
        )
        return new, metrics, sent

    def advance(
        self, state: SimState, hp: Hparams, inputs: Inputs, length: int | jax.Array
    ) -> tuple[SimState, dict[str, jax.Array]]:
        """``length`` rounds (at most ``eval_every``; may be traced).

        Returns:
            The new state and the per-round metrics with a leading ``(eval_every,)``
            axis of which the first ``length`` entries are these rounds (the rest 0).
        """
        size = self.config.eval_every
        proto = jax.eval_shape(lambda s: self.round_step(s, hp, inputs)[1], state)
        buf = jax.tree.map(lambda a: jnp.zeros((size,) + a.shape, a.dtype), proto)

        def body(i, carry):
            s, b = carry
            s, m = self.round_step(s, hp, inputs)
            b = jax.tree.map(lambda acc, v: acc.at[i].set(v), b, m)
            return s, b

        return jax.lax.fori_loop(0, length, body, (state, buf))

    def block(
        self, state: SimState, hp: Hparams, inputs: Inputs, length: int | jax.Array
    ) -> tuple[SimState, dict[str, jax.Array], dict[str, jax.Array]]:
        """``length`` rounds (:meth:`advance`), then an evaluation (:meth:`evaluate`).

        ``length`` may be traced, so all blocks of a run share one program.

        Returns:
            The new state, the per-round metrics (see :meth:`advance`) and the
            evaluation.
        """
        state, per_round = self.advance(state, hp, inputs, length)
        return state, per_round, self.evaluate(state, inputs)

    # -------------------------------------------------------------- evaluation
    @property
    def eval_count(self) -> int:
        """How many nodes an evaluation tests: ``eval_nodes``, or every node."""
        k = self.config.eval_nodes
        return self.nodes if k == 0 or k >= self.nodes else k

    def eval_ids(self, state: SimState) -> jax.Array:
        """``(eval_count,)`` int32 ascending ids of the nodes an evaluation tests.

        With ``eval_nodes`` below n, a uniform sample without replacement drawn from
        the state's key (a fresh sample at every evaluation, the same for the same
        seed, alone or in a sweep); otherwise every node.
        """
        n, k = self.nodes, self.eval_count
        if k == n:
            return jnp.arange(n, dtype=jnp.int32)
        key = jax.random.fold_in(state.key, EVAL_STREAM)
        return jnp.sort(jax.random.choice(key, n, (k,), replace=False)).astype(
            jnp.int32
        )

    def evaluate(self, state: SimState, inputs: Inputs) -> dict[str, jax.Array]:
        """The evaluated nodes' own models on the test split and their training data.

        Every node is evaluated, or a fresh random sample of ``eval_nodes`` of them
        (:meth:`eval_ids`): evaluating all n nodes on the whole test set costs
        n x test size forward passes.

        Returns ``(K,)`` arrays over the K evaluated nodes: ``test_acc`` (percent),
        ``test_loss``, ``train_loss``, ``train_acc`` and ``eval_ids`` (their ids);
        over all nodes: ``finite`` ``(n,)`` and the scalar ``consensus`` distance
        (mean over nodes of ``||x_i - mean x||^2``). On datasets with local test sets
        (MovieLens) each node tests on its own users' samples (SPEC 7.3).
        """
        ids = self.eval_ids(state)
        sampled = self.eval_count < self.nodes

        def rows(a: jax.Array) -> jax.Array:  # the evaluated nodes' rows
            return a[ids] if sampled else a

        x = rows(state.x)
        if inputs.tests is None:
            test_loss, test_acc = evaluation.shared_metrics(
                self.model, self.task, x, inputs.test_x, inputs.test_y
            )
        else:
            test_loss, test_acc = evaluation.per_node_metrics(
                self.model,
                self.task,
                x,
                inputs.test_x,
                inputs.test_y,
                rows(inputs.tests.index),
                rows(inputs.tests.size),
            )
        train_loss, train_acc = evaluation.per_node_metrics(
            self.model,
            self.task,
            x,
            inputs.train_x,
            inputs.train_y,
            rows(inputs.nodes.index),
            rows(inputs.nodes.size),
        )
        return {
            "test_acc": test_acc,
            "test_loss": test_loss,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "eval_ids": ids,
            "consensus": gossip.consensus_distance(state.x),
            "finite": jnp.all(jnp.isfinite(state.x), axis=1),
        }


# ----------------------------------------------------------------------- build
def _say(say: Callable[[str], None] | None, text: str) -> None:
    if say is not None:
        say(text)


# The data themselves never depend on the run seed (synthetic data, MovieLens's
# per-user 70/30 split): configs of a sweep that differ in their seed share them.
DATA_SEED = 0


def dataset_defaults_line(config: Config) -> str | None:
    """One status line naming the values ``config`` takes from its dataset, or None.

    E.g. ``"celeba brings model=celeba_cnn, lr=0.001 (set a field to override)"``.
    """
    used = config.dataset_defaults_used()
    if not used:
        return None
    values = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in used.items()
    )
    return f"{config.dataset} brings {values} (set a field to override)"


def load_data(config: Config, say: Callable[[str], None] | None = None) -> Dataset:
    """The config's dataset (independent of the run seed, so sweeps share it).

    ``say`` gets the values the config takes from the dataset
    (:func:`dataset_defaults_line`) and then ``"loading <dataset>"``.
    """
    c = config
    line = dataset_defaults_line(c)
    if line is not None:
        _say(say, line)
    _say(say, f"loading {c.dataset}")
    return load_dataset(c.dataset, seed=DATA_SEED, data_dir=c.data_dir)


def build_experiment(config: Config, dataset: Dataset) -> Experiment:
    """The static part of an experiment (checks the model's fit to the data).

    Raises:
        ConfigError: a bad config, or a model that does not take the dataset's inputs.
    """
    c = config.validate()  # a validated config is returned as it is
    if c.train_chunk is None:
        c = c.replace(train_chunk=platform.default("train_chunk"))
    model = get_model(c.model)
    if tuple(model.input_shape) != tuple(dataset.input_shape):
        raise ConfigError(
            f"model={c.model!r} takes inputs of shape {tuple(model.input_shape)}, but "
            f"dataset={c.dataset!r} has {dataset.input_shape}"
        )
    sharing = make_sharing(c.sharing, model.num_params, **c.sharing_params())
    if c.fpzip_every and sharing.message is None:
        raise ConfigError(
            f"fpzip_every={c.fpzip_every} needs each node's message, and sharing "
            f"strategy {c.sharing!r} does not provide one (Sharing.message; "
            "strategies built with jwins_jax.sharing.blocks.compose do)"
        )
    return Experiment(
        config=c,
        model=model,
        task=tasks.TASKS[dataset.task],
        sharing=sharing,
        drop_last=bool(dataset.drop_last),
        work=simtime.round_work(
            model.forward_flops, c.batch_size, c.local_steps, sharing.cost
        ),
    )


def hparams(experiment: Experiment, config: Config) -> Hparams:
    """The traced hyperparameters of ``config`` for ``experiment``'s program."""
    c = config.validate()
    share = experiment.sharing.hparams(
        **{k: c.value(k) for k in experiment.sharing.traced}
    )
    return Hparams(
        lr=jnp.float32(c.lr),
        momentum=jnp.float32(c.momentum),
        weight_decay=jnp.float32(c.weight_decay),
        sharing=share,
        faults=faults.hparams(c.link_failure, c.churn),
        time=simtime.hparams(
            c.node_gflops,
            c.bandwidth_mbps,
            c.downlink_mbps,
            c.latency_ms,
            c.node_spread,
            c.spread_seed,
        ),
    )


def partition_nodes(config: Config, dataset: Dataset) -> list[np.ndarray]:
    """Each node's training-sample ids (SPEC 7.1), from the config's seed."""
    c = config
    n_train = len(dataset.y_train)
    if dataset.users_test is not None and c.partition != "natural":
        raise ConfigError(
            f"dataset={dataset.name!r} tests every node on its own users' samples, "
            f"which needs partition='natural', not {c.partition!r}"
        )
    if c.nodes > n_train:
        raise ConfigError(
            f"nodes={c.nodes} exceeds the {n_train} training samples of "
            f"{dataset.name!r}: every node needs at least one sample"
        )
    if c.partition == "kshard" and c.shards > n_train // c.nodes:
        raise ConfigError(
            f"shards={c.shards} is not allowed: with {c.nodes} nodes each node holds "
            f"about {n_train // c.nodes} of the {n_train} training samples, so at most "
            f"{max(1, n_train // c.nodes)} shards per node"
        )
    parts = partition(
        dataset.y_train,
        c.nodes,
        c.partition,
        alpha=c.dirichlet_alpha,
        shards=c.shards,
        seed=c.seed,
        users=dataset.users_train,
        natural=dataset.natural,
    )
    largest = max(len(p) for p in parts)
    if c.batch_size > largest:
        raise ConfigError(
            f"batch_size={c.batch_size} is larger than the {largest} training samples "
            f"of the largest node: use batch_size <= {largest}"
        )
    return parts


def build_adjacency(config: Config) -> np.ndarray:
    """The config's (static) graph as an ``(n, n)`` adjacency matrix."""
    c = config
    return make_graph(
        c.topology,
        c.nodes,
        degree=c.degree,
        edges_file=c.edges_file,
        seed=c.seed,
        beta=c.beta,
    )


def build_graph(config: Config) -> NeighborTable | None:
    """The static graph's neighbour table; None for a dynamic graph (drawn per round
    inside the program, :meth:`Experiment.table`)."""
    c = config
    if c.dynamic:
        check_dynamic(c.nodes, c.degree)
        return None
    return neighbor_table(build_adjacency(c))


def build_inputs(
    config: Config,
    dataset: Dataset,
    say: Callable[[str], None] | None = None,
    data: Inputs | None = None,
) -> Inputs:
    """The arrays of one config: data, its partition and its graph.

    Args:
        config: the config (its seed fixes the partition and random graphs).
        dataset: the loaded dataset.
        say: called with a line per build stage.
        data: inputs of another config of the same dataset whose device arrays of
            the data are reused (a sweep keeps one copy of the data).

    Raises:
        ConfigError: a partition that leaves a node without data, a batch larger
            than every node's data, a bad or disconnected graph, a bad churn
            schedule file.
    """
    c = config.validate()
    _say(say, f"partitioning {dataset.name} over {c.nodes} nodes ({c.partition})")
    parts = partition_nodes(c, dataset)
    _say(say, f"building the {c.topology} graph")
    graph = build_graph(c)
    schedule = profile = trace = None
    if c.churn_schedule is not None:
        rows = faults.read_schedule(c.churn_schedule, c.nodes, c.rounds)
        schedule = jnp.asarray(rows)
    if c.node_profile is not None:
        profile = jnp.asarray(simtime.read_profile(c.node_profile, c.nodes))
    if c.straggler_trace is not None:
        rows = simtime.read_trace(c.straggler_trace, c.nodes, c.rounds)
        trace = jnp.asarray(rows)
    if data is None:
        n_test = len(dataset.y_test)
        if c.test_subset:
            n_test = min(c.test_subset, n_test)
        label = jnp.int32 if dataset.task == "classification" else jnp.float32
        data = Inputs(
            train_x=jnp.asarray(dataset.x_train),
            train_y=jnp.asarray(dataset.y_train, label),
            test_x=jnp.asarray(dataset.x_test[:n_test]),
            test_y=jnp.asarray(dataset.y_test[:n_test], label),
            nodes=None,
            tests=None,
            graph=None,
        )
    tests = None
    if dataset.users_test is not None:  # every node tests on its own users (SPEC 7.3)
        owner = user_nodes(
            dataset.users_train, c.nodes, natural=dataset.natural, seed=c.seed
        )
        tests = _node_ids(local_test_parts(dataset.users_test, owner, c.nodes))
    return data.replace(
        nodes=node_data(parts),
        tests=tests,
        graph=graph,
        churn_schedule=schedule,
        node_profile=profile,
        straggler_trace=trace,
    )


def _node_ids(parts: list[np.ndarray]) -> NodeData:
    """Per-node id lists as NodeData; unlike training data a list may be empty."""
    sizes = np.asarray([len(p) for p in parts], np.int32)
    index = np.zeros((len(parts), max(1, int(sizes.max()))), np.int32)
    for i, part in enumerate(parts):
        index[i, : len(part)] = np.asarray(part, np.int32)
    return NodeData(
        index=jnp.asarray(index), size=jnp.asarray(sizes), min_size=int(sizes.min())
    )


def build(
    config: Config,
    dataset: Dataset | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[Experiment, Inputs, Hparams]:
    """Builds one experiment on the host: its static part, arrays and hyperparameters.

    Args:
        config: the experiment; validated here.
        dataset: an already loaded dataset to use instead of ``config.dataset``.
        say: called with a short line for each build stage (for progress output).

    Raises:
        ConfigError: bad input, before anything is computed or written.
    """
    c = config.validate()
    ds = dataset if dataset is not None else load_data(c, say)
    exp = build_experiment(c, ds)
    inputs = build_inputs(c, ds, say)
    return exp, inputs, hparams(exp, c)


# ----------------------------------------------------------------------- sweeps
def inputs_axes(inputs: Inputs) -> Inputs:
    """``vmap`` in_axes of a stacked :class:`Inputs`: 0 on the per-config fields."""
    axes = {f.name: None for f in dataclasses.fields(inputs)}
    for name in PER_CONFIG_INPUTS:
        axes[name] = 0 if getattr(inputs, name) is not None else None
    return inputs.replace(**axes)


def _pad_table(table: NeighborTable, width: int) -> NeighborTable:
    extra = width - table.idx.shape[-1]
    if extra == 0:
        return table
    own = jnp.broadcast_to(
        jnp.arange(table.idx.shape[-2], dtype=table.idx.dtype)[:, None],
        table.idx.shape[:-1] + (extra,),
    )
    return table.replace(
        idx=jnp.concatenate([table.idx, own], axis=-1),
        weight=jnp.concatenate(
            [
                table.weight,
                jnp.zeros(table.weight.shape[:-1] + (extra,), table.weight.dtype),
            ],
            axis=-1,
        ),
    )


def _pad_nodes(nd: NodeData, width: int, min_size: int) -> NodeData:
    extra = width - nd.index.shape[1]
    index = jnp.pad(nd.index, ((0, 0), (0, extra))) if extra else nd.index
    return NodeData(index=index, size=nd.size, min_size=min_size)


def stack_inputs(
    items: Sequence[Inputs], like: Sequence[Inputs] | None = None
) -> Inputs:
    """Stacks the per-config fields of several configs' inputs on a leading axis.

    Node id lists are padded to the longest, neighbour tables to the widest (weight
    0), which leaves every config's computation unchanged (sample draws do not depend
    on the padding, see :mod:`jwins_jax.data.batches`).

    Args:
        items: the inputs of the configs of one batch.
        like: all the inputs of the group, when the padding must fit them all (so
            every batch of a group has the same shapes and reuses one program).
    """
    pool = list(like) if like is not None else list(items)
    first = items[0]
    stack = lambda *a: jnp.stack(a)  # noqa: E731
    width = max(i.nodes.index.shape[1] for i in pool)
    min_size = min(i.nodes.min_size for i in pool)
    nodes = [_pad_nodes(i.nodes, width, min_size) for i in items]
    graph = None
    if first.graph is not None:
        d = max(i.graph.idx.shape[-1] for i in pool)
        graph = jax.tree.map(stack, *[_pad_table(i.graph, d) for i in items])
    tests = None
    if first.tests is not None:
        tw = max(i.tests.index.shape[1] for i in pool)
        tmin = min(i.tests.min_size for i in pool)
        tests = jax.tree.map(
            lambda *a: jnp.stack(a), *[_pad_nodes(i.tests, tw, tmin) for i in items]
        )
    return first.replace(
        nodes=jax.tree.map(stack, *nodes),
        graph=graph,
        tests=tests,
    )


def stack_hparams(items: Sequence[Hparams]) -> Hparams:
    """Stacks hyperparameters on a leading config axis."""
    return jax.tree.map(lambda *a: jnp.stack(a), *items)


# --------------------------------------------------------------------- make_run
def make_run(config: Config) -> tuple[Callable[..., Any], Hparams, Inputs]:
    """A whole run as one pure function: ``run(key, hp, inputs) -> (state, history)``.

    Every ``eval_every`` rounds the run evaluates (:meth:`Experiment.block`); the
    history holds the evaluations (leading axis: evaluations) and the per-round
    metrics (leading axis: rounds). ``jax.vmap(run, in_axes=(0, None, None))`` over
    a batch of keys runs seeds side by side (with the config's partition and graph);
    vmapping ``hp`` too runs other hyperparameters.

    Returns:
        ``(run, hp, inputs)``: the function and the config's arguments for it.
    """
    exp, inputs, hp = build(config)
    c = exp.config
    n_blocks, rest = divmod(c.rounds, c.eval_every)

    def run(key: jax.Array, hp: Hparams, inputs: Inputs):
        state = exp.init(key, hp)

        def body(s, _):
            s, per_round, ev = exp.block(s, hp, inputs, c.eval_every)
            return s, (per_round, ev)

        state, (rounds_m, evals) = jax.lax.scan(body, state, None, length=n_blocks)
        rounds_m = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), rounds_m)
        if rest:
            state, tail, last = exp.block(state, hp, inputs, rest)
            rounds_m = jax.tree.map(
                lambda a, b: jnp.concatenate([a, b[:rest]]), rounds_m, tail
            )
            evals = jax.tree.map(
                lambda a, b: jnp.concatenate([a, b[None]]), evals, last
            )
        return state, {"rounds": rounds_m, "evals": evals}

    run.experiment = exp  # type: ignore[attr-defined]
    return run, hp, inputs
