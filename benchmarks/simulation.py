"""The benchmarks' view of one experiment, built on the simulator's pure pipeline.

:class:`BenchSim` builds an experiment with :func:`jwins_jax.experiment.build` and
exposes the pieces the benchmark sections time, each calling the same functions the
simulator runs (``Experiment.advance``, ``evaluate``, ``training.train_all``, the
strategy's ``step``) with the data, graph and hyperparameters as arguments.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jwins_jax import compiler, devices, experiment, runner, training
from jwins_jax.config import Config


class BenchSim:
    """One built experiment with jitted entry points for timing.

    Attributes:
        config, exp, inputs, hp: the resolved config and the pipeline's pieces.
        trace_count: how often the round loop was traced (a retrace check).
    """

    def __init__(self, config: Config, dataset=None):
        self.dataset = dataset if dataset is not None else experiment.load_data(config)
        self.exp, self.inputs, self.hp = experiment.build(config, self.dataset)
        self.config = self.exp.config
        self.sharing = self.exp.sharing
        self.n_params = self.exp.n_params
        self.node_data = self.inputs.nodes
        self.table = self.inputs.graph
        self.y_test = self.inputs.test_y
        self.adjacency = experiment.build_adjacency(self.config)
        self.trace_count = 0
        self._init = compiler.jit(self.exp.init)
        self._advance: dict[int, Any] = {}
        self._evaluate = compiler.jit(self.exp.evaluate)

    def init(self, key: jax.Array):
        return self._init(key, self.hp)

    def _advance_fn(self, rounds: int):
        """The jitted ``rounds``-round loop (state donated), built once per length."""
        fn = self._advance.get(rounds)
        if fn is None:
            exp = self.exp.__class__(
                **{
                    **self.exp.__dict__,
                    "config": self.config.replace(eval_every=rounds),
                }
            )

            def run(s, hp, inputs):
                self.trace_count += 1
                return exp.advance(s, hp, inputs, rounds)

            fn = self._advance[rounds] = compiler.jit(run, donate_argnums=0)
        return fn

    def advance(self, state, rounds: int):
        """``rounds`` rounds in one compiled loop (state donated).

        Returns:
            The new state and the ``(rounds, n)`` per-round metrics.
        """
        return self._advance_fn(rounds)(state, self.hp, self.inputs)

    def compile_advance(self, state, rounds: int):
        """The program of :meth:`advance` compiled ahead of time.

        Returns:
            A callable ``state -> (state, metrics)`` (state donated) that runs
            without tracing or compiling again.
        """
        compiled = self._advance_fn(rounds).lower(state, self.hp, self.inputs).compile()
        return lambda s: compiled(s, self.hp, self.inputs)

    def evaluate(self, state):
        return self._evaluate(state, self.inputs)

    def _tx(self):
        return self.exp.optimizer(self.hp)

    def local_train(self, x, opt, ids, w):
        """``tau`` SGD steps of one node (for the per-node baseline)."""
        return training.local_train(
            self.exp.model,
            self.exp.task,
            self._tx(),
            x,
            opt,
            self.inputs.train_x,
            self.inputs.train_y,
            ids,
            w,
        )

    def train_all(self, x, opt, ids, w):
        return training.train_all(
            self.exp.model,
            self.exp.task,
            self._tx(),
            x,
            opt,
            self.inputs.train_x,
            self.inputs.train_y,
            ids,
            w,
            self.config.train_chunk,
        )

    def share_step(self, share_state, x, key, inputs=None):
        return self.sharing.step(
            share_state, x, key, self.table, self.hp.sharing, inputs
        )

    def mean_train_size(self) -> float:
        return float(np.mean(np.asarray(self.node_data.size)))


def time_blocks(
    config: Config, dataset, rounds: int, repeats: int, shard: bool = False
) -> dict[str, Any]:
    """Compile time and steady seconds per round of ``rounds``-round blocks.

    The blocks are the runner's programs (``runner.programs(...).advance``), as
    ``jwins run`` calls them; with ``shard`` the node axis is split over the local
    devices the way ``jwins run`` splits it (``jwins_jax.devices``).

    Returns:
        ``first_call_s`` (compile and one block), ``compile_s`` (the first call less a
        steady block), the median ``round_s``, ``rounds_per_s``, ``mesh`` (devices
        used) and ``finite`` (the final models hold no NaN or infinity).
    """
    exp, inputs, hp = experiment.build(config, dataset=dataset)
    mesh = devices.node_mesh(config.nodes) if shard else None
    if mesh is not None:
        inputs = devices.place_inputs(inputs, mesh, config.nodes)
    progs = runner.programs(exp, mesh=mesh, hp=hp)
    state = progs.init(jax.random.PRNGKey(0), hp)
    length = jnp.int32(rounds)
    t0 = time.perf_counter()
    state, _ = progs.advance(state, hp, inputs, length)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, _ = progs.advance(state, hp, inputs, length)
        jax.block_until_ready(state)
        times.append((time.perf_counter() - t0) / rounds)
    round_s = float(np.median(times))
    return {
        "first_call_s": first,
        "compile_s": max(first - rounds * round_s, 0.0),
        "round_s": round_s,
        "rounds_per_s": 1.0 / round_s,
        "mesh": 1 if mesh is None else mesh.size,
        "finite": bool(np.all(np.isfinite(np.asarray(state.x)))),
    }


__all__ = ["BenchSim", "time_blocks"]
