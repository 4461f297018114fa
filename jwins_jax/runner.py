"""The one host loop: blocks of rounds, evaluations, results, progress.

``jwins run``, ``compare`` and ``sweep`` all run through :func:`execute`: it calls one
compiled block program (:meth:`~jwins_jax.experiment.Experiment.block`, ``eval_every``
rounds and an evaluation) until the run's rounds are done, and after every block hands
each config's per-round statistics and evaluation to its :class:`RunLog`. A batch of
configs (a sweep) runs the ``vmap`` of the same block over a leading config axis; a
single run calls it unbatched. The host wakes up once per block.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

from jwins_jax import compiler
from jwins_jax.config import Config
from jwins_jax.errors import DivergenceError, Terminated
from jwins_jax.experiment import Experiment, Hparams, Inputs, SimState, build, inputs_axes
from jwins_jax.results import RunLog, check_out_dir, unique_dir


# --------------------------------------------------------------------- progress
def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Status lines and a progress bar (plain lines when not a terminal).

    They go to stdout by default, so stderr carries only errors (bad input is one
    line on stderr).

    Args:
        label: what is running (a run name, or "sweep").
        total: the amount of work, in rounds (a sweep: rounds over all configs).
        stream: where to write (default stdout); ``enabled=False`` writes nothing.
    """

    def __init__(
        self, label: str, total: int = 0, stream: IO[str] | None = None,
        enabled: bool = True,
    ):
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.t_first: float | None = None  # end of the first (compiling) update
        self.done_first = 0
        self.offset = 0  # work done before the current batch (sweeps)
        self._open = False

    def stage(self, text: str) -> None:
        """A status line: what the program is doing now."""
        if not self.enabled:
            return
        self._end_line()
        self.stream.write(f"jwins: {text}\n")
        self.stream.flush()

    def update(self, done: int, text: str = "") -> None:
        """Moves the bar to ``done`` of ``total``; shows speed, elapsed and ETA.

        The speed leaves out the first update, which includes compilation.
        """
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.t_first is None:
            self.t_first, self.done_first = now, done
        rate = (done - self.done_first) / (now - self.t_first) if now > self.t_first else 0.0
        eta = (self.total - done) / rate if rate > 0 else None
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        speed = f"{rate:.1f} r/s" if rate > 0 else "-- r/s"
        line = (
            f"{self.label} [{bar}] {done}/{self.total} {speed} "
            f"{_clock(now - self.t0)} ETA {_clock(eta) if eta is not None else '--:--'}"
            + (f" {text}" if text else "")
        )
        if self.tty:
            self.stream.write("\r" + line + " " * 4)
            self._open = True
            if done >= self.total:
                self._end_line()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _end_line(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


# --------------------------------------------------------------------- programs
@dataclasses.dataclass(frozen=True)
class Programs:
    """The compiled functions of an experiment: ``init(key, hp)`` and
    ``block(state, hp, inputs, length)`` (the state is donated)."""

    init: Callable[..., SimState]
    block: Callable[..., tuple[SimState, dict, dict]]
    batched: bool


def programs(exp: Experiment, inputs: Inputs | None = None, batched: bool = False) -> Programs:
    """Jitted init and block of ``exp``; ``batched`` vmaps them over a config axis.

    Args:
        exp: the experiment.
        inputs: with ``batched``, a stacked :class:`Inputs` (for its vmap axes).
        batched: vmap over a leading config axis of keys, hparams and the per-config
            inputs.
    """
    if not batched:
        return Programs(
            init=compiler.jit(exp.init),
            block=compiler.jit(exp.block, donate_argnums=0),
            batched=False,
        )
    axes = inputs_axes(inputs)
    init = jax.vmap(exp.init, in_axes=(0, 0))
    block = jax.vmap(exp.block, in_axes=(0, 0, axes, None))
    return Programs(
        init=compiler.jit(init),
        block=compiler.jit(block, donate_argnums=0),
        batched=True,
    )


# ------------------------------------------------------------------------ loop
def _take(tree: Any, i: int | None, length: int | None = None) -> Any:
    def one(a):
        a = np.asarray(a)
        if i is not None:
            a = a[i]
        return a if length is None else a[:length]

    return jax.tree.map(one, tree)


def execute(
    exp: Experiment,
    progs: Programs,
    state: SimState,
    hp: Hparams,
    inputs: Inputs,
    logs: Sequence[RunLog],
    *,
    progress: Progress | None = None,
    on_block: Callable[[SimState, int], None] | None = None,
    stop_at: int | None = None,
) -> SimState:
    """Runs blocks until the configs' rounds are done (or all of them diverged).

    Args:
        exp: the experiment; its config fixes rounds and eval_every.
        progs: its compiled programs (batched when ``logs`` has several entries or
            the state has a config axis).
        state: the state to continue from (donated to the first block).
        hp, inputs: the block's other arguments (stacked for a batch).
        logs: one per config of the batch (a batch may carry padding configs past
            ``len(logs)``, whose results are dropped). Their ``done`` must agree.
        progress: moved by the rounds done, once per block.
        on_block: called as ``on_block(state, rounds_done)`` after every block (for
            checkpoints).
        stop_at: stop after this many rounds (default: the config's rounds).

    Returns:
        The final state.
    """
    c = exp.config
    end = c.rounds if stop_at is None else min(stop_at, c.rounds)
    done = logs[0].done
    while done < end:
        length = min(c.eval_every - done % c.eval_every, end - done)
        t0 = time.perf_counter()
        state, per_round, ev = progs.block(state, hp, inputs, jnp.int32(length))
        per_round, ev = jax.device_get((per_round, ev))
        dt = time.perf_counter() - t0
        first = all(log.first_block_s == 0.0 for log in logs)
        for i, log in enumerate(logs):
            if first:
                log.first_block_s = dt
            if not log.active:
                continue
            idx = i if progs.batched else None
            log.record(_take(per_round, idx, length), _take(ev, idx))
        done += length
        if progress is not None:
            best = max(
                (log.records[-1]["test_acc"]["mean"] or 0.0 for log in logs if log.records),
                default=0.0,
            )
            progress.update(progress.offset + done * len(logs), f"acc {best:.1f}%")
        if on_block is not None:
            on_block(state, done)
        if not any(log.active for log in logs):
            break
    return state


def close_logs(logs: Sequence[RunLog], error: BaseException | None) -> list[dict[str, Any]]:
    """Closes every log with how the run ended; returns the summaries."""
    if error is None:
        status, text = "finished", None
    elif isinstance(error, KeyboardInterrupt):
        status, text = "interrupted", "interrupted by the user (Ctrl-C)"
    elif isinstance(error, Terminated):
        status, text = "interrupted", str(error)
    else:
        status = "failed"
        text = f"{type(error).__name__}: {error}".strip()
    summaries = []
    for log in logs:
        finished = log.active and log.done >= log.config.rounds
        if error is None and not finished and log.active:
            log_status, log_text = "interrupted", "stopped before its last round"
        else:
            log_status, log_text = status, text
        summaries.append(log.close(log_status if log.active else None, log_text))
    return summaries


def run_config(
    config: Config,
    *,
    progress: Progress | None = None,
    experiment: tuple[Experiment, Inputs, Hparams] | None = None,
) -> dict[str, Any]:
    """Runs one config and writes its results directory.

    Returns:
        The summary dict (also written to ``summary.json``); ``summary["run_dir"]`` is
        the results directory.

    Raises:
        ConfigError: bad configuration (before anything is written).
        DivergenceError: a model became NaN/inf; metrics up to that point are kept.
    """
    progress = progress if progress is not None else Progress(config.name or "run", enabled=False)
    c = config.validate()
    check_out_dir(c.out_dir)
    exp, inputs, hp = experiment if experiment is not None else build(c, say=progress.stage)
    run_dir = unique_dir(c.out_dir, c.name)
    log = RunLog.create(exp.config, run_dir, run_info(exp))
    progress.label, progress.total = c.name, c.rounds
    error: BaseException | None = None
    try:
        progs = programs(exp)
        state = progs.init(jax.random.PRNGKey(c.seed), hp)
        progress.stage(f"compiling and running the first {c.eval_every} rounds")
        execute(exp, progs, state, hp, inputs, [log], progress=progress)
    except BaseException as err:
        error = err
        raise
    finally:
        summary = close_logs([log], error)[0]
    if summary["status"] == "diverged":
        raise DivergenceError(summary["error"])
    return summary


def run_info(exp: Experiment) -> dict[str, Any]:
    """Facts about a built experiment for summary.json."""
    return {
        "n_params": exp.n_params,
        "sharing_params": exp.sharing.params,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
    }
