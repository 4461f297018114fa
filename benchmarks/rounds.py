"""The workloads and the one round benchmark (what ``jwins run`` compiles).

A workload is a config: ``digits`` (and ``synthetic_digits``) with the defaults, or a
paper experiment (``experiments/<workload>_<strategy>_paper.toml``: the paper's
partition, b, tau and learning rate; SPEC 3, 7.4) on its stand-in dataset, so that no
download is needed (a round's cost does not depend on the data's values).
:class:`RoundBench` builds it with ``experiment.build`` and compiles
``runner.programs(...).advance`` ahead of time, exactly the round loop of ``jwins
run``, and times it; its :meth:`~RoundBench.parts` are local training, the sharing
step and the evaluation as jitted programs of their own, with data, tables and
hyperparameters as arguments.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jwins_jax import devices, experiment, runner, training
from jwins_jax.config import Config
from jwins_jax.data import DATASETS, STAND_INS
from jwins_jax.data.batches import sample_batches
from jwins_jax.kernelbench import compiled, device_call, wall
from jwins_jax.sharing import RoundInputs

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
PAPER = ("cifar", "movielens", "celeba", "shakespeare", "femnist")

# forward pass per sample: convolutions (pixels, in, out, taps) and linear layers
# (in, out), 2 FLOPs per multiply-add; normalisation, activations, pooling and
# look-ups left out (SPEC 7.2's architectures)
_LSTM = [(8 + 256, 1024)] * 80 + [(512, 1024)] * 80 + [(80 * 256, 92)]
FORWARD = {
    "digits_cnn": ([(64, 1, 16, 9), (16, 16, 32, 9)], [(128, 10)]),
    "gn_lenet": (
        [(1024, 3, 32, 25), (256, 32, 32, 25), (64, 32, 64, 25)],
        [(1024, 10)],
    ),
    "femnist_cnn": ([(784, 1, 32, 25), (196, 32, 64, 25)], [(3136, 512), (512, 62)]),
    "celeba_cnn": (
        [(84 * 84, 3, 32, 9)] + [(s * s, 32, 32, 9) for s in (42, 21, 10)],
        [(800, 2)],
    ),
    "shakespeare_lstm": ([], _LSTM),
    "movielens_mf": ([], [(20, 1)]),
}


def forward_flops(model: str) -> int:
    """Forward FLOPs per sample of a model (see :data:`FORWARD`)."""
    convs, linear = FORWARD[model]
    macs = sum(math.prod(c) for c in convs) + sum(i * o for i, o in linear)
    return 2 * macs


def workload(name: str, strategy: str, nodes: int = 96, **changes: Any) -> Config:
    """A workload's config for ``strategy`` on ``nodes`` nodes, resolved (the
    dataset's defaults filled in).

    The paper's graph at 96 nodes, a random 4-regular graph otherwise; ``changes``
    override any field.
    """
    if name in PAPER:
        c = Config.from_file(EXPERIMENTS / f"{name}_{strategy}_paper.toml")
        c = c.replace(dataset=STAND_INS[c.dataset], data_dir=None)
    else:
        c = Config(dataset=name, sharing=strategy)
    if nodes != 96:
        c = c.replace(topology="regular", degree=min(4, nodes - 1))
    return c.replace(nodes=nodes, **changes).resolved()


def has_dataset(name: str) -> bool:
    """Whether this version of the package knows a dataset (its registry)."""
    return name in DATASETS


def tiled(config: Config, per_node: int):
    """The config's dataset with its training split repeated until it holds
    ``per_node`` samples per node (stand-ins have a fixed size; a round's cost does
    not depend on the values)."""
    ds = experiment.load_data(config)
    reps = -(-config.nodes * per_node // len(ds.y_train))
    if reps <= 1:
        return ds
    users = ds.users_train
    if users is not None:  # every copy of a user is a new user
        users = np.concatenate(
            [users + k * (int(users.max()) + 1) for k in range(reps)]
        )
    tile = lambda a: np.concatenate([a] * reps)  # noqa: E731
    return dataclasses.replace(
        ds, x_train=tile(ds.x_train), y_train=tile(ds.y_train), users_train=users
    )


class RoundBench:
    """One built experiment, its round loop compiled ahead of time.

    Args:
        config: the experiment (``eval_every`` becomes ``rounds``).
        rounds: rounds per timed call of the loop.
        dataset: a loaded dataset to use instead of the config's.
        shard: split the node axis over the local devices as ``jwins run`` does.

    Attributes:
        row: what was built and the compile time (a flat dict).
        metrics: the per-round metrics of the last :meth:`round` call.
    """

    def __init__(self, config: Config, rounds: int = 1, dataset=None, shard=False):
        config = config.replace(eval_every=rounds, rounds=max(config.rounds, rounds))
        self.exp, inputs, self.hp = experiment.build(config, dataset)
        self.config = c = self.exp.config
        mesh = devices.node_mesh(c.nodes) if shard else None
        if mesh is not None:
            inputs = devices.place_inputs(inputs, mesh, c.nodes)
        self.inputs, self.rounds = inputs, rounds
        self.progs = runner.programs(self.exp, mesh=mesh, hp=self.hp)
        self.key, self.share_key = jax.random.PRNGKey(0), jax.random.PRNGKey(2)
        self.state = self.progs.init(self.key, self.hp)
        self.adjacency = experiment.build_adjacency(c)
        self.length = jnp.int32(rounds)
        t0 = time.perf_counter()
        lowered = self.progs.advance.lower(self.state, self.hp, inputs, self.length)
        self.advance = lowered.compile()
        compile_s = time.perf_counter() - t0
        self.row = {
            "dataset": c.dataset,
            "model": c.model,
            "strategy": c.sharing,
            "n": c.nodes,
            "N": self.exp.n_params,
            "tau": c.local_steps,
            "b": c.batch_size,
            "devices": 1 if mesh is None else mesh.size,
            "rounds_per_call": rounds,
            "compile_round_s": compile_s,
        }

    def round(self) -> float:
        """Runs one call of ``rounds`` rounds; returns the seconds per round."""

        def call():
            self.state, self.metrics = self.advance(
                self.state, self.hp, self.inputs, self.length
            )
            return self.state, self.metrics

        return wall(call)[0] / self.rounds

    def given(self, alphas: np.ndarray) -> RoundInputs:
        """Round inputs that give the sharing step ``(n,)`` alphas."""
        return RoundInputs(alphas=jnp.asarray(alphas, jnp.float32))

    def finite(self) -> bool:
        return bool(np.all(np.isfinite(np.asarray(self.state.x))))

    def batches(self, rounds: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rounds, n, tau, b)`` minibatch ids and weights, one key per round."""
        c, nodes = self.config, self.inputs.nodes
        keys = jax.random.split(jax.random.PRNGKey(1000), rounds)
        draw = jax.vmap(
            lambda k: sample_batches(
                k, nodes, c.local_steps, c.batch_size, self.exp.drop_last
            )
        )
        return tuple(np.asarray(a) for a in draw(keys))

    def parts(
        self,
        ids: np.ndarray | None,
        w: np.ndarray | None,
        alphas: np.ndarray | None,
        which: tuple[str, ...] = ("train", "share", "eval"),
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Local training, the sharing step and the evaluation, compiled apart.

        Args:
            ids, w: one round's ``(n, tau, b)`` minibatches (for ``train``).
            alphas: ``(n,)`` JWINS fractions given to the step (None: none given).
            which: the parts wanted.

        Returns:
            ``(calls, programs)``: zero-argument timed calls ``{part: call}`` and the
            compiled programs with their compile times (``compile_<part>_s``).
        """
        exp, hp, inputs, c = self.exp, self.hp, self.inputs, self.config
        s = self.progs.init(self.key, hp)  # the round loop donates self.state
        given = None if alphas is None else self.given(alphas)

        def train(hp, inputs, x, opt, ids, w):
            data = (inputs.train_x, inputs.train_y, ids, w, c.train_chunk)
            return training.train_all(
                exp.model, exp.task, exp.optimizer(hp), x, opt, *data
            )

        def share(hp, table, state, x, key, given):
            return exp.sharing.step(state, x, key, table, hp.sharing, given)

        args = {
            "train": (train, hp, inputs, s.x, s.opt, ids, w),
            "share": (share, hp, inputs.graph, s.share, s.x, self.share_key, given),
            "eval": (exp.evaluate, s, inputs),
        }
        programs, calls = {}, {}
        for part in which:
            fn, *a = args[part]
            programs[part], programs[f"compile_{part}_s"] = compiled(fn, *a)
            calls[part] = device_call(programs[part], *a)
        return calls, programs
