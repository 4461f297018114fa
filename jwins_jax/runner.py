"""The one host loop: blocks of rounds, evaluations, results, progress.

``jwins run``, ``compare`` and ``sweep`` all run through :func:`execute`: it calls one
compiled block program (:meth:`~jwins_jax.experiment.Experiment.block`, ``eval_every``
rounds and an evaluation) until the run's rounds are done, and after every block hands
each config's per-round statistics and evaluation to its :class:`RunLog`. A batch of
configs (a sweep) runs the ``vmap`` of the same block over a leading config axis; a
single run calls it unbatched. The host wakes up once per block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import pathlib
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

from jwins_jax import compiler, devices, hostcodec
from jwins_jax.config import Config
from jwins_jax.errors import ConfigError, DivergenceError, RunFailed, Terminated
from jwins_jax.experiment import (
    Experiment,
    Hparams,
    Inputs,
    SimState,
    build,
    inputs_axes,
)
from jwins_jax.results import RunLog, check_out_dir, unique_dir
from jwins_jax.stopping import Stopped, StopRequest, stop_on_signals

# Run directories this process has created (for the command line's last words).
STARTED: list[pathlib.Path] = []


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
        self,
        label: str,
        total: int = 0,
        stream: IO[str] | None = None,
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
        rate = (
            (done - self.done_first) / (now - self.t_first)
            if now > self.t_first
            else 0.0
        )
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
    """The compiled functions of an experiment: ``init(key, hp)``,
    ``block(state, hp, inputs, length)``, ``advance(state, hp, inputs, length)`` and,
    when the config measures a codec on the host (``fpzip_every``), ``measure(state,
    hp, inputs)``, one round that also returns the messages (the state is
    donated).

    Call them through :meth:`run`: with several processes it compiles a program
    ahead of its first call and waits until every process has compiled it, so no
    process waits inside the program's collectives while another still compiles.
    """

    init: Callable[..., SimState]
    block: Callable[..., tuple[SimState, dict, dict]]
    advance: Callable[..., tuple[SimState, dict]]
    batched: bool
    measure: Callable[..., tuple[SimState, dict, tuple]] | None = None
    compiled: dict = dataclasses.field(default_factory=dict, compare=False)

    def run(self, name: str, *args: Any) -> Any:
        """Calls the program ``name`` (``init``, ``block``, ``advance`` or
        ``measure``)."""
        fn = getattr(self, name)
        if devices.process_count() == 1:
            return fn(*args)
        if name not in self.compiled:
            self.compiled[name] = fn.lower(*args).compile()
            devices.barrier(f"the compiled {name} program")
        return self.compiled[name](*args)


def programs(
    exp: Experiment,
    inputs: Inputs | None = None,
    batched: bool = False,
    mesh: Any = None,
    hp: Hparams | None = None,
) -> Programs:
    """Jitted init, block and advance of ``exp``; ``batched`` vmaps them.

    Args:
        exp: the experiment.
        inputs: with ``batched``, a stacked :class:`Inputs` (for its vmap axes).
        batched: vmap over a leading config axis of keys, hparams and the per-config
            inputs.
        mesh: a ``("nodes",)`` mesh (:func:`jwins_jax.devices.node_mesh`) to keep the
            state's node axis sharded over; ``hp`` is then needed for the state's
            shapes.
    """
    if not batched:
        init, block, advance = exp.init, exp.block, exp.advance
        measure = exp.measured_round
    else:
        axes = inputs_axes(inputs)
        init = jax.vmap(exp.init, in_axes=(0, 0))
        block = jax.vmap(exp.block, in_axes=(0, 0, axes, None))
        advance = jax.vmap(exp.advance, in_axes=(0, 0, axes, None))
        measure = jax.vmap(exp.measured_round, in_axes=(0, 0, axes))
    measuring = exp.config.fpzip_every > 0
    if mesh is None:
        return Programs(
            init=compiler.jit(init),
            block=compiler.jit(block, donate_argnums=0),
            advance=compiler.jit(advance, donate_argnums=0),
            batched=batched,
            measure=compiler.jit(measure, donate_argnums=0) if measuring else None,
        )
    key = jax.random.PRNGKey(0)
    if batched:
        key = jnp.stack([key] * jax.tree.leaves(hp)[0].shape[0])
    abstract = jax.eval_shape(init, key, hp)
    state_sh = devices.state_shardings(abstract, mesh, exp.nodes, axis=int(batched))
    rep = devices.replicated(mesh)
    return Programs(
        init=compiler.jit(init, out_shardings=state_sh),
        block=compiler.jit(block, donate_argnums=0, out_shardings=(state_sh, rep, rep)),
        advance=compiler.jit(advance, donate_argnums=0, out_shardings=(state_sh, rep)),
        batched=batched,
        measure=(
            compiler.jit(measure, donate_argnums=0, out_shardings=(state_sh, rep, rep))
            if measuring
            else None
        ),
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
    checkpoint: Callable[[SimState], None] | None = None,
    checkpoint_every: int = 0,
    stop: StopRequest | None = None,
    stop_at: int | None = None,
) -> SimState:
    """Runs blocks until the configs' rounds are done (or all of them diverged).

    Rounds run in segments that end at the next evaluation (every ``eval_every``
    rounds, with :meth:`~Experiment.block`), or earlier at the next checkpoint
    (every ``checkpoint_every`` rounds, with :meth:`~Experiment.advance`) or the
    next measured round. With ``fpzip_every = K`` rounds 0, K, 2K, ... run alone
    through ``progs.measure``, which also returns the round's messages; their
    values are compressed with fpzip here (:func:`jwins_jax.hostcodec.
    message_bytes`) and the bytes go to the logs with the round's statistics
    (``fpzip_bytes``: ``(rounds, n)`` int64, -1 in rounds not measured).

    Args:
        exp: the experiment; its config fixes rounds and eval_every.
        progs: its compiled programs (batched when ``logs`` has several entries or
            the state has a config axis).
        state: the state to continue from (donated to the first block).
        hp, inputs: the block's other arguments (stacked for a batch).
        logs: one per config of the batch (a batch may carry padding configs past
            ``len(logs)``, whose results are dropped). Their ``done`` must agree.
        progress: moved by the rounds done, once per segment.
        checkpoint: ``checkpoint(state)`` saves the state with the logs' counters.
        checkpoint_every: rounds between checkpoints (0: only when stopped).
        stop: a stop request; when set after a segment, the state is checkpointed and
            :class:`Stopped` is raised.
        stop_at: stop after this many rounds (default: the config's rounds).

    Returns:
        The final state.
    """
    c = exp.config
    every = c.fpzip_every
    end = c.rounds if stop_at is None else min(stop_at, c.rounds)
    done = logs[0].done
    while done < end:
        seg_end = min(end, (done // c.eval_every + 1) * c.eval_every)
        if checkpoint_every:
            seg_end = min(seg_end, (done // checkpoint_every + 1) * checkpoint_every)
        if every:
            seg_end = min(seg_end, (done // every + 1) * every)
        length = seg_end - done
        evaluate = seg_end % c.eval_every == 0 or seg_end == c.rounds
        t0 = time.perf_counter()
        with _other_processes(done):
            measured = None
            if every and done % every == 0:
                state, first_round, sent = progs.run("measure", state, hp, inputs)
                measured = jax.device_get((first_round, sent))
            rest = length - (measured is not None)
            per_round = ev = None
            args = (state, hp, inputs, np.int32(rest))
            if evaluate:
                state, per_round, ev = progs.run("block", *args)
                per_round, ev = jax.device_get((per_round, ev))
            elif rest:
                state, per_round = progs.run("advance", *args)
                per_round = jax.device_get(per_round)
        segments = []
        for i, log in enumerate(logs):
            idx = i if progs.batched else None
            segments.append(
                _segment(
                    per_round, rest, measured, idx, length, c.nodes, every, log.write
                )
                if log.active
                else None
            )
        dt = time.perf_counter() - t0
        first = all(log.first_block_s == 0.0 for log in logs)
        for i, log in enumerate(logs):
            if first:
                log.first_block_s = dt
            if not log.active:
                continue
            idx = i if progs.batched else None
            if evaluate:
                log.record(segments[i], _take(ev, idx))
            else:
                log.add_segment(segments[i])
        done = seg_end
        if progress is not None:
            best = max(
                (
                    log.last["test_acc"]["mean"] or 0.0
                    for log in logs
                    if log.last is not None
                ),
                default=0.0,
            )
            progress.update(progress.offset + done * len(logs), f"acc {best:.1f}%")
        if not any(log.active for log in logs):
            break
        with _other_processes(done):
            # every process stops after the same round (a stop request is agreed on)
            asked = stop is not None and stop.requested is not None
            stopping = devices.any_process(asked) and done < end
            if checkpoint is not None and (
                stopping
                or (checkpoint_every and done % checkpoint_every == 0 and done < end)
            ):
                checkpoint(state)
        if stopping:
            who = stop.requested if asked else "a stop request of another process"
            raise Stopped(f"stopped by {who} after round {done}")
    return state


def _segment(
    per_round: dict | None,
    rest: int,
    measured: tuple | None,
    idx: int | None,
    length: int,
    nodes: int,
    every: int,
    compress: bool = True,
) -> dict[str, np.ndarray]:
    """One config's per-round statistics of a segment: the measured round (if any)
    followed by the ``rest`` rounds of the block; with ``every`` (``fpzip_every``)
    the fpzip bytes of each node's message, -1 in rounds not measured (and in every
    round unless ``compress``: the processes of a multi-process run other than
    process 0, which writes the results, do not compress)."""
    parts = []
    if measured is not None:
        parts.append(jax.tree.map(lambda a: a[None], _take(measured[0], idx)))
    if rest:
        parts.append(_take(per_round, idx, rest))
    rounds = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if every:
        sizes = np.full((length, nodes), -1, np.int64)
        if measured is not None and compress:
            values, mask = _take(measured[1], idx)
            sizes[0] = hostcodec.message_bytes(values, mask)
        rounds["fpzip_bytes"] = sizes
    return rounds


def disk_full(error: BaseException) -> bool:
    """Whether an error says the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def describe_failure(error: BaseException) -> str:
    """One line saying what went wrong: a full disk with the file being written,
    else the error's type and message (with the file, for a system error)."""
    if isinstance(error, OSError) and error.filename:
        reason = error.strerror or str(error)
        if disk_full(error):
            return f"the disk is full ({reason}) writing {error.filename}"
        return f"{type(error).__name__}: {reason}: {error.filename}"
    return " ".join(f"{type(error).__name__}: {error}".split())


def failure(error: BaseException, logs: Sequence[RunLog], advice: str) -> RunFailed:
    """The error a started run or sweep ends with: what happened, ``advice`` (where
    the last good state is and how to continue) and whether the summaries hold it."""
    unwritten = [log for log in logs if log.summary_error is not None]
    if not unwritten:
        note = "summary.json records this"
    else:
        reason = unwritten[0].summary_error.strerror or str(unwritten[0].summary_error)
        note = (
            f"summary.json could not be written either ({reason}), so jwins show "
            "cannot tell how the run ended"
        )
    return RunFailed(f"{describe_failure(error)}; {advice}; {note}")


def resume_advice(log: RunLog, error: BaseException | None = None) -> str:
    """Where a failed run's last good state is and how to continue it."""
    from jwins_jax.checkpoint import DIRNAME, rounds

    run_dir = log.run_dir
    kept = (
        f"metrics.jsonl keeps the evaluations up to round {log.last['round']}"
        if log.last is not None
        else "metrics.jsonl holds no evaluation yet"
    )
    first = "free space, then " if error is not None and disk_full(error) else ""
    saved = rounds(run_dir)
    if saved:
        where = run_dir / DIRNAME / str(saved[-1])
        return (
            f"{kept}; the last checkpoint is round {saved[-1]} ({where}): {first}"
            f"resume with: jwins run --resume {run_dir}"
        )
    return (
        f"{kept}; no checkpoint was saved: {first}jwins run --resume {run_dir} "
        "runs it again from round 0"
    )


@contextlib.contextmanager
def _other_processes(done: int):
    """Turns a collective that failed because another process of a multi-process run
    went away into :class:`~jwins_jax.devices.ProcessFailure`."""
    try:
        yield
    except jax.errors.JaxRuntimeError as err:
        if devices.process_count() == 1:
            raise
        text = " ".join(str(err).split())[:200]
        raise devices.ProcessFailure(
            f"another of the {devices.process_count()} processes stopped or failed "
            f"after round {done} ({text})"
        ) from err


def close_logs(
    logs: Sequence[RunLog],
    error: BaseException | None,
    advice: str | None = None,
) -> list[dict[str, Any]]:
    """Closes every log with how the run ended; returns the summaries.

    Args:
        logs: the runs' logs.
        error: what ended the runs (None: they ran to their end or diverged).
        advice: for a failure, where the last good state is and how to continue
            (appended to the summaries' error).
    """
    if error is None:
        status, text = "finished", None
    elif isinstance(error, KeyboardInterrupt):
        status, text = "interrupted", "interrupted by the user (Ctrl-C)"
    elif isinstance(error, Terminated):
        status, text = "interrupted", str(error)
        if isinstance(error, Stopped):
            text += "; " + (
                advice
                or "resume with: jwins run --resume "
                + " ".join(str(log.run_dir) for log in logs)
            )
    else:
        status = "failed"
        text = describe_failure(error) + (f"; {advice}" if advice else "")
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
    resume: pathlib.Path | None = None,
) -> dict[str, Any]:
    """Runs one config (or resumes a stopped run) and writes its results directory.

    A run saves a checkpoint every ``config.checkpoint_every`` rounds and whenever it
    is stopped by Ctrl-C or SIGTERM (see :class:`StopRequest`).

    Args:
        config: the experiment (ignored when resuming: the run's own config is used).
        progress: status lines and progress bar.
        experiment: an already built ``(experiment, inputs, hparams)`` of ``config``.
        resume: a run directory whose newest checkpoint to continue from.

    Returns:
        The summary dict (also written to ``summary.json``); ``summary["run_dir"]`` is
        the results directory.

    Raises:
        ConfigError: bad configuration or checkpoint (before anything is written).
        DivergenceError: a model became NaN/inf; metrics up to that point are kept
            (the error's ``summary`` is the run's summary).
    """
    progress = (
        progress
        if progress is not None
        else Progress(config.name or "run", enabled=False)
    )
    with stop_on_signals(progress) as stop:
        return _run_config(config, progress, experiment, resume, stop)


def _run_config(config, progress, experiment, resume, stop) -> dict[str, Any]:
    from jwins_jax.checkpoint import Checkpointer

    if resume is not None:
        # process 0 reads the stopped run's config; every process gets it
        def read() -> list:
            config, run_dir = resumable(resume)
            return [config.to_dict(), str(run_dir)]

        saved, path = devices.on_primary(read)
        config, run_dir = Config.from_dict(saved, source=path), pathlib.Path(path)
    c = config.validate()
    if resume is None:
        check_out_dir(c.out_dir)
    exp, inputs, hp = (
        experiment if experiment is not None else build(c, say=progress.stage)
    )
    stop.check(" before the run started")
    mesh = devices.node_mesh(c.nodes, c.shard_nodes)
    key = jax.random.PRNGKey(c.seed)
    if mesh is not None:
        where = f"{mesh.size} devices"
        if devices.process_count() > 1:
            where += f" of {devices.process_count()} processes"
        progress.stage(f"sharding the {c.nodes} nodes over {where}")
        inputs = devices.place_inputs(inputs, mesh, c.nodes)
        hp, key = devices.place_replicated((hp, key), mesh)
    progs = programs(exp, mesh=mesh, hp=hp)
    if resume is not None:
        STARTED.append(run_dir)
        ckpt = Checkpointer(run_dir)
        write = devices.is_primary()  # process 0 keeps the files
        log = RunLog(exp.config, run_dir, run_info(exp), write=write)
        state = _restore(ckpt, log, progs, key, hp, progress)
    else:
        run_dir = pathlib.Path(
            devices.on_primary(lambda: str(unique_dir(c.out_dir, c.name)))
        )
        STARTED.append(run_dir)
        log = _create_log(exp, run_dir)
        ckpt = Checkpointer(run_dir)
        state = None
    progress.label, progress.total = c.name, c.rounds

    def save(s: SimState) -> None:
        ckpt.save(s, exp.config.to_dict(), log.checkpoint_state())

    error: BaseException | None = None
    try:
        if state is None:
            state = progs.run("init", key, hp)
        progress.stage(f"compiling and running the first {c.eval_every} rounds")
        execute(
            exp,
            progs,
            state,
            hp,
            inputs,
            [log],
            progress=progress,
            checkpoint=save,
            checkpoint_every=c.checkpoint_every,
            stop=stop,
        )
    except BaseException as err:
        error = err
    try:
        ckpt.close()
    except Exception:  # noqa: BLE001 - closing never hides how the run ended
        pass
    advice = resume_advice(log, error) if error is not None else None
    summary = close_logs([log], error, advice)[0]
    if isinstance(error, (KeyboardInterrupt, Terminated)):
        raise error
    if error is not None:
        raise failure(error, [log], advice) from error
    if summary["status"] == "diverged":
        diverged = DivergenceError(summary["error"])
        diverged.summary = summary  # type: ignore[attr-defined]
        raise diverged
    return summary


def _create_log(exp: Experiment, run_dir: pathlib.Path) -> RunLog:
    """The log of a new run; a directory that cannot be filled is removed again.

    Process 0 writes the files and keeps the log it created (the other processes
    of a multi-process run hear of its failure at once and keep a log that writes
    nothing)."""
    created: list[RunLog] = []

    def create() -> None:
        try:
            created.append(RunLog.create(exp.config, run_dir, run_info(exp)))
        except OSError as err:
            shutil.rmtree(run_dir, ignore_errors=True)
            STARTED.remove(run_dir)
            raise RunFailed(
                f"{describe_failure(err)}; nothing was computed and {run_dir} was "
                "removed again"
            ) from err

    devices.on_primary(create)
    if created:
        return created[0]
    return RunLog(exp.config, run_dir, run_info(exp), write=False)


def _restore(
    ckpt, log: RunLog, progs: Programs, key: jax.Array, hp: Hparams, progress
) -> Any:
    """Restores a stopped run's newest good checkpoint into ``log``; returns the
    state (None when the run saved no checkpoint: it runs again from round 0)."""
    c = log.config
    if ckpt.latest() is None:
        progress.stage(f"{log.run_dir} has no checkpoint: running it from round 0")
        meta = {"counters": log.counters(), "metrics": log.metrics_position()}
        state, meta["round"] = None, 0
    else:
        progress.stage(f"restoring the newest checkpoint of {log.run_dir}")
        abstract = jax.eval_shape(progs.init, key, hp)
        state, meta = ckpt.restore(abstract, c.to_dict())
        for text in meta["skipped"]:
            progress.stage(f"skipped: {text}")
        if meta["skipped"]:
            log.info["skipped_checkpoints"] = list(meta["skipped"])

    def files() -> dict[str, Any]:
        """Process 0 checks and cuts back the run's files; every process hears of
        a refusal (one ConfigError on all) and gets the records' summary."""
        log.resume(meta)
        ckpt.discard_after(meta["round"])
        return {"last": log.last, "best": log.best, "elapsed": log.elapsed_before}

    shared = devices.on_primary(files)
    if not log.write:  # the other processes of a multi-process run
        log.follow(meta, shared["last"], shared["best"], shared["elapsed"])
    ckpt.close()  # every process's manager reads the directory as it is now
    progress.stage(f"resuming at round {log.done} of {c.rounds}")
    return state


def resumable(run_dir: str | pathlib.Path) -> tuple[Config, pathlib.Path]:
    """The config of a stopped run directory (ConfigError if it cannot resume)."""
    from jwins_jax.results import read_summary

    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError(
            f"--resume {str(run_dir)!r}: not a run directory (no config.json)"
        )
    try:
        config = Config.from_file(run_dir / "config.json")
    except ConfigError as err:
        raise ConfigError(f"--resume {str(run_dir)!r}: {err}") from None
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == "finished":
        raise ConfigError(f"--resume {str(run_dir)!r}: the run has already finished")
    return config.validate(), run_dir


def run_info(exp: Experiment) -> dict[str, Any]:
    """Facts about a built experiment for summary.json."""
    return {
        "n_params": exp.n_params,
        "sharing_params": exp.sharing.params,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
        "processes": devices.process_count(),
    }
