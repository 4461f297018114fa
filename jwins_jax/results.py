"""Results directories: what a run writes, and how it is written safely.

A run directory holds:

* ``config.json``: the resolved configuration;
* ``metrics.jsonl``: one JSON object per evaluation, written line by line as the run
  goes (a line is written whole or not at all), so an interrupted or diverged run
  keeps everything up to that point;
* ``summary.json``: how the run ended (``status``: ``finished``, ``diverged``,
  ``interrupted`` or ``failed``, with the error), the final record, totals and
  timings;
* ``accuracy.png``: test accuracy against rounds, mean over nodes with a min-max band.

Bytes are counted per node (SPEC 5 with the decisions table): ``bytes_per_node`` is the
mean over nodes of the cumulative bytes each node sent (values plus metadata, one copy
per receiver), the paper's "bytes" axis; ``received_bytes_per_node`` is the mean over
nodes of the bytes each node received, which is less when links fail or nodes are
offline (:mod:`jwins_jax.faults`). Counters are 64-bit integers on the host.

With ``fpzip_every = K`` (:mod:`jwins_jax.hostcodec`) the records also hold what the
real fpzip codec made of the values of the rounds measured so far (0, K, 2K, ...),
each message counted once per receiver like ``value_bytes_per_node``:
``fpzip_rounds`` (how many rounds were measured), ``fpzip_value_bytes_per_node``
(their values compressed, mean over nodes), ``fpzip_counted_value_bytes_per_node``
(the same values at 4 bytes per float32), ``fpzip_ratio`` (the first over the second)
and ``fpzip_bytes_per_node``: ``bytes_per_node`` with every round's values scaled by
that ratio (exact when K = 1, an estimate otherwise).
JSON files hold no NaN or infinity: such values are written as ``null``.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import pathlib
import time
from typing import Any

import numpy as np

from jwins_jax import simtime
from jwins_jax.config import Config
from jwins_jax.errors import ConfigError

STATUSES = ("running", "finished", "diverged", "interrupted", "failed")


# ------------------------------------------------------------------------ JSON
def clean(obj: Any) -> Any:
    """``obj`` with numpy values as Python ones and non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(clean(obj), indent=indent, allow_nan=False)


def write_bytes_atomically(path: pathlib.Path, data: bytes) -> None:
    """Writes a file whole or not at all (a temporary file renamed over the target).

    Raises:
        OSError: with ``filename`` set to ``path``; no temporary file is left.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError):
            err.filename = str(path)
        raise


def write_json(path: pathlib.Path, obj: Any) -> None:
    """Writes a JSON file atomically (a temporary file renamed over the target)."""
    write_bytes_atomically(path, (dumps(obj, indent=2) + "\n").encode())


def append_line(path: pathlib.Path, obj: Any) -> bytes:
    """Appends one JSON line whole, or leaves the file as it was.

    The line is encoded in memory first and handed to ``os.write`` in one call (more
    only if the system writes part of it); any failure, such as a disk that fills up
    part-way (ENOSPC) or a refused ``fsync``, cuts the file back to its previous
    length before the error is raised. If even that cut is refused, the error says
    so: the file may then end with part of a line, which :func:`load_metrics`
    reports and a resumed run cuts off.

    Returns:
        The bytes written (the line with its newline).

    Raises:
        OSError: with ``filename`` set to ``path``.
    """
    data = (dumps(obj) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "the system wrote nothing")
                view = view[written:]
            os.fsync(fd)
        except BaseException as err:
            try:
                os.ftruncate(fd, start)
            except OSError as cut:
                code = getattr(err, "errno", None) or cut.errno
                reason = getattr(err, "strerror", None) or str(err)
                raise OSError(
                    code,
                    f"{reason}; cutting the partial line off failed too "
                    f"({cut.strerror}), so the file may end with part of a line",
                    str(path),
                ) from err
            if isinstance(err, OSError) and err.filename is None:
                err.filename = str(path)
            raise
    finally:
        os.close(fd)
    return data


@dataclasses.dataclass
class Metrics:
    """What a metrics.jsonl holds.

    Attributes:
        records: the lines that are JSON objects, in file order.
        malformed: the 1-based numbers of the other lines (cut off, not JSON, not an
            object, blank).
    """

    records: list[dict[str, Any]]
    malformed: list[int]


def parse_metrics(data: bytes) -> Metrics:
    """The records and malformed line numbers of metrics.jsonl's contents."""
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    records, malformed = [], []
    for number, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            records.append(rec)
        else:
            malformed.append(number)
    return Metrics(records, malformed)


def load_metrics(run_dir: str | os.PathLike) -> Metrics:
    """A run's metrics.jsonl (empty when missing or unreadable)."""
    try:
        data = (pathlib.Path(run_dir) / "metrics.jsonl").read_bytes()
    except OSError:
        return Metrics([], [])
    return parse_metrics(data)


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (its malformed lines left out; see
    :func:`load_metrics` for their line numbers)."""
    return load_metrics(run_dir).records


def load_summary(
    run_dir: str | os.PathLike,
) -> tuple[dict[str, Any] | None, str | None]:
    """A run's summary.json and, when it cannot be used, why.

    Returns:
        ``(summary, None)``; ``(None, None)`` when the file does not exist; ``(None,
        reason)`` when it is unreadable, not JSON or not a JSON object.
    """
    path = pathlib.Path(run_dir) / "summary.json"
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except ValueError as err:
        return None, f"is not JSON ({str(err).splitlines()[0]})"
    if not isinstance(data, dict):
        return None, f"is not a JSON object (it holds a {type(data).__name__})"
    return data, None


def read_summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's summary.json, or None when it is missing or unreadable."""
    return load_summary(run_dir)[0]


# ------------------------------------------------------------------ directories
def check_out_dir(out_dir: str | os.PathLike) -> pathlib.Path:
    """The output root, checked before anything is written (ConfigError if unusable)."""
    root = pathlib.Path(out_dir)
    probe = root
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(
            f"out_dir={str(out_dir)!r} is not allowed: {str(probe)!r} is a file"
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"out_dir={str(out_dir)!r} is not writable ({str(probe)!r})")
    return root


def unique_dir(root: str | os.PathLike, name: str) -> pathlib.Path:
    """Creates ``root/name``, or ``root/name-2``, ``-3``... never reusing a directory."""
    base = pathlib.Path(root) / name
    path, i = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            i += 1
            path = base.with_name(f"{base.name}-{i}")
        except OSError as err:
            raise ConfigError(
                f"cannot create the results directory {str(path)!r}: {err.strerror}"
            ) from None


# ---------------------------------------------------------------------- records
def summarize_nodes(values: np.ndarray) -> dict[str, float]:
    """Mean, std, min and max over nodes of a ``(n,)`` metric."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


class RunLog:
    """The host side of one run: byte counters, records and its results directory.

    Memory stays flat however long the run: the records go to metrics.jsonl as they
    come and the log keeps only the newest one, the best mean test accuracy and the
    position of metrics.jsonl's end (lines, bytes and a SHA-256 of its contents),
    which is what a checkpoint saves and a resume checks and cuts the file back to.

    Args:
        config: the resolved config.
        run_dir: an existing directory to write into.
        info: extra facts for summary.json (parameter count, strategy parameters).
        counters: when continuing a stopped run, its byte counters and rounds done.
        write: whether this log writes its files (False on the processes other
            than process 0 of a multi-process run: they keep the same records).
    """

    def __init__(
        self,
        config: Config,
        run_dir: pathlib.Path,
        info: dict[str, Any],
        counters: dict[str, Any] | None = None,
        write: bool = True,
    ):
        self.config = config
        self.run_dir = pathlib.Path(run_dir)
        self.write = write
        self.info = dict(info)
        n = config.nodes
        self.value_cum = np.zeros(n, np.int64)
        self.meta_cum = np.zeros(n, np.int64)
        self.full_count = np.zeros(n, np.int64)
        self.delivered_cum = np.zeros(n, np.int64)  # bytes of its copies that arrived
        self.fpzip_cum = np.zeros(n, np.int64)  # fpzip bytes of the measured rounds
        self.fpzip_counted_cum = np.zeros(n, np.int64)  # their counted value bytes
        self.fpzip_rounds = 0  # rounds measured
        self.clock = simtime.Clock(n)  # the simulated clocks' base, compute seconds
        self.done = 0
        self.last: dict[str, Any] | None = None  # the newest record
        self.best: float | None = None  # the best mean test accuracy so far
        self.lines = 0  # records in metrics.jsonl
        self.metrics_bytes = 0  # its length
        self._digest = hashlib.sha256()  # of its contents
        self.status = "running"
        self.error: str | None = None
        self.t_start = time.perf_counter()
        self.first_block_s = 0.0
        self.resumed = False
        self.pending: list[dict[str, np.ndarray]] = []
        self.elapsed_before = 0.0
        self.summary_error: OSError | None = None  # why summary.json is not written
        if counters is not None:
            self.load_counters(counters)

    @classmethod
    def create(
        cls,
        config: Config,
        run_dir: pathlib.Path,
        info: dict[str, Any],
        write: bool = True,
    ) -> RunLog:
        """A log for a new run: writes config.json and an empty metrics.jsonl."""
        if write:
            write_json(run_dir / "config.json", config.to_dict())
            (run_dir / "metrics.jsonl").write_text("")
        return cls(config, run_dir, info, write=write)

    # ---------------------------------------------------------------- counters
    def counters(self) -> dict[str, Any]:
        """The host state a checkpoint must keep (byte counters, rounds done, the
        per-round statistics of rounds not evaluated yet)."""
        return {
            "value_cum": self.value_cum.copy(),
            "meta_cum": self.meta_cum.copy(),
            "full_count": self.full_count.copy(),
            "delivered_cum": self.delivered_cum.copy(),
            "fpzip_cum": self.fpzip_cum.copy(),
            "fpzip_counted_cum": self.fpzip_counted_cum.copy(),
            "fpzip_rounds": self.fpzip_rounds,
            "clock": self.clock.state(),
            "done": self.done,
            "pending": [dict(seg) for seg in self.pending],
        }

    def load_counters(self, counters: dict[str, Any]) -> None:
        self.value_cum = np.asarray(counters["value_cum"], np.int64).copy()
        self.meta_cum = np.asarray(counters["meta_cum"], np.int64).copy()
        self.full_count = np.asarray(counters["full_count"], np.int64).copy()
        # counters written before faults existed: every copy arrived
        delivered = counters.get("delivered_cum", self.value_cum + self.meta_cum)
        self.delivered_cum = np.asarray(delivered, np.int64).copy()
        zeros = np.zeros(self.config.nodes, np.int64)
        self.fpzip_cum = np.asarray(counters.get("fpzip_cum", zeros), np.int64).copy()
        self.fpzip_counted_cum = np.asarray(
            counters.get("fpzip_counted_cum", zeros), np.int64
        ).copy()
        self.fpzip_rounds = int(counters.get("fpzip_rounds", 0))
        clock = counters.get("clock") or {}
        self.clock = simtime.Clock(
            self.config.nodes, clock.get("base", 0.0), clock.get("compute")
        )
        self.done = int(counters["done"])
        self.pending = [dict(seg) for seg in counters.get("pending", [])]

    def metrics_position(self) -> dict[str, Any]:
        """Where metrics.jsonl ends: lines, bytes and the SHA-256 of its contents."""
        return {
            "lines": self.lines,
            "bytes": self.metrics_bytes,
            "sha256": self._digest.hexdigest(),
        }

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint saves of this log: the counters and where metrics.jsonl
        ends (its size does not grow with the number of evaluations)."""
        return {
            "done": self.done,
            "counters": self.counters(),
            "metrics": self.metrics_position(),
        }

    def resume(self, meta: dict[str, Any]) -> None:
        """Continues from a checkpoint: its counters, and metrics.jsonl cut back to
        the records the checkpoint saw.

        The file's first ``meta["metrics"]["bytes"]`` bytes must be the ones the
        checkpoint saw (their SHA-256 is compared) before anything is changed; what
        follows them (records of rounds after the checkpoint, a line cut off by a
        full disk) is cut off, and the summary.json of the earlier session is
        removed. Checkpoints of format 1 carry the records themselves, and
        metrics.jsonl is rewritten from them.

        Raises:
            ConfigError: metrics.jsonl does not hold what the checkpoint saw.
        """
        path = self.run_dir / "metrics.jsonl"
        if "records" in meta:  # format 1
            data = "".join(dumps(r) + "\n" for r in meta["records"]).encode()
            (self.run_dir / "summary.json").unlink(missing_ok=True)
            write_bytes_atomically(path, data)
        else:
            position = meta["metrics"]
            size = int(position["bytes"])
            try:
                with open(path, "rb") as f:
                    data = f.read(size)
            except OSError as err:
                raise ConfigError(
                    f"cannot resume: {str(path)!r} cannot be read ({err.strerror})"
                ) from None
            if len(data) < size or hashlib.sha256(data).hexdigest() != position.get(
                "sha256"
            ):
                raise ConfigError(
                    f"cannot resume: {str(path)!r} does not begin with the "
                    f"{position['lines']} lines the checkpoint of round "
                    f"{meta.get('round')} saw (it was changed or cut short)"
                )
            # the run is running again: an earlier session's summary no longer holds
            (self.run_dir / "summary.json").unlink(missing_ok=True)
            os.truncate(path, size)
        parsed = parse_metrics(data)
        self.load_counters(meta["counters"])
        self.lines, self.metrics_bytes = len(parsed.records), len(data)
        self._digest = hashlib.sha256(data)
        self.last = parsed.records[-1] if parsed.records else None
        self.best = None
        for rec in parsed.records:
            self._note_best(rec)
        self.resumed = True
        if self.last is not None:
            self.elapsed_before = float(self.last.get("elapsed_s") or 0.0)

    def follow(
        self,
        meta: dict[str, Any],
        last: dict[str, Any] | None,
        best: float | None,
        elapsed: float,
    ) -> None:
        """Continues from a checkpoint on a process that writes no files (not
        process 0 of a multi-process run): the counters, and the newest record, the
        best accuracy and the elapsed time that process 0's :meth:`resume` read."""
        self.load_counters(meta["counters"])
        self.last, self.best, self.elapsed_before = last, best, float(elapsed)
        self.resumed = True

    def _note_best(self, record: dict[str, Any]) -> None:
        acc = (record.get("test_acc") or {}).get("mean")
        if acc is not None and (self.best is None or acc > self.best):
            self.best = acc

    @property
    def active(self) -> bool:
        return self.status == "running"

    # ----------------------------------------------------------------- records
    def add_segment(self, per_round: dict[str, np.ndarray]) -> None:
        """Rounds run without an evaluation yet (``(length, n)`` statistics)."""
        self.pending.append({k: np.asarray(v) for k, v in per_round.items()})
        self.done += int(np.asarray(per_round["sent"]).shape[0])

    def record(
        self, per_round: dict[str, np.ndarray], ev: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        """Adds the last rounds and their evaluation; writes the metrics line.

        Returns:
            The record. When a model is NaN or infinite the status becomes
            ``diverged`` (the record is still written).
        """
        self.add_segment(per_round)
        rounds = {
            k: np.concatenate([np.asarray(seg[k]) for seg in self.pending])
            for k in self.pending[0]
        }
        self.pending = []
        values, meta = _per_round_bytes(rounds)
        self.value_cum += values.sum(axis=0)
        self.meta_cum += meta.sum(axis=0)
        self.full_count += np.asarray(rounds["full"]).sum(axis=0)
        self.delivered_cum += delivered_bytes(rounds).sum(axis=0)
        if "fpzip_bytes" in rounds:
            self._add_fpzip(rounds, values)
        offsets = self.clock.add(rounds)
        done, n = self.done, self.config.nodes
        record = {
            "round": done,
            "test_acc": summarize_nodes(ev["test_acc"]),
            "test_loss": summarize_nodes(ev["test_loss"]),
            "train_loss": summarize_nodes(ev["train_loss"]),
            "train_acc": summarize_nodes(ev["train_acc"]),
            "eval_nodes": int(np.asarray(ev["test_acc"]).shape[0]),
            "minibatch_loss": _online_mean(rounds),
            "consensus_distance": float(ev["consensus"]),
            "bytes_per_node": float((self.value_cum + self.meta_cum).mean()),
            "value_bytes_per_node": float(self.value_cum.mean()),
            "meta_bytes_per_node": float(self.meta_cum.mean()),
            "received_bytes_per_node": float(self.delivered_cum.mean()),
            "bytes_per_node_per_round": float(
                (values + meta).sum(axis=0).mean() / max(values.shape[0], 1)
            ),
            "full_share_fraction": float(self.full_count.sum() / max(done * n, 1)),
            "elapsed_s": time.perf_counter() - self.t_start + self.elapsed_before,
        }
        if offsets is not None:
            record["sim_time_s"] = summarize_nodes(self.clock.absolute(offsets))
            record["sim_compute_s"] = float(self.clock.compute.mean())
        if self.config.fpzip_every:
            record.update(self._fpzip_record())
        record = clean(record)
        if self.write:
            line = append_line(self.run_dir / "metrics.jsonl", record)
        else:
            line = (dumps(record) + "\n").encode()
        self.lines += 1
        self.metrics_bytes += len(line)
        self._digest.update(line)
        self.last = record
        self._note_best(record)
        finite = np.asarray(ev["finite"])
        if not finite.all():
            bad = int(np.sum(~finite))
            self.status = "diverged"
            self.error = (
                f"{bad} of {n} node models became NaN or infinite by round {done}; "
                f"metrics up to round {done} are in {self.run_dir / 'metrics.jsonl'} "
                f"(try a smaller lr, now {self.config.lr})"
            )
        return record

    def _add_fpzip(self, rounds: dict[str, np.ndarray], values: np.ndarray) -> None:
        """Adds the measured rounds' fpzip bytes (one copy per receiver) and their
        counted value bytes (``values``: ``(rounds, n)`` per node, all receivers)."""
        sizes = np.asarray(rounds["fpzip_bytes"], np.int64)
        measured = np.all(sizes >= 0, axis=1)
        receivers = np.asarray(rounds["receivers"], np.int64)
        self.fpzip_cum += (sizes[measured] * receivers[measured]).sum(axis=0)
        self.fpzip_counted_cum += values[measured].sum(axis=0)
        self.fpzip_rounds += int(measured.sum())

    def _fpzip_record(self) -> dict[str, Any]:
        """The ``fpzip_*`` fields of a record (the module docstring)."""
        counted = int(self.fpzip_counted_cum.sum())
        ratio = float(self.fpzip_cum.sum()) / counted if counted else None
        estimate = None
        if ratio is not None:
            estimate = float((self.meta_cum + ratio * self.value_cum).mean())
        return {
            "fpzip_rounds": self.fpzip_rounds,
            "fpzip_value_bytes_per_node": float(self.fpzip_cum.mean()),
            "fpzip_counted_value_bytes_per_node": float(self.fpzip_counted_cum.mean()),
            "fpzip_ratio": ratio,
            "fpzip_bytes_per_node": estimate,
        }

    # ----------------------------------------------------------------- closing
    def summary(self) -> dict[str, Any]:
        c = self.config
        return {
            "name": c.name,
            "status": self.status,
            "error": self.error,
            "resumed": self.resumed,
            "run_dir": str(self.run_dir),
            "sharing": c.sharing,
            "nodes": c.nodes,
            "rounds_done": self.done,
            "rounds": c.rounds,
            "final": self.last or {},
            "best_test_acc_mean": self.best,
            "wall_s": time.perf_counter() - self.t_start,
            "first_block_s": self.first_block_s,
            **self.info,
        }

    def close(
        self, status: str | None = None, error: str | None = None
    ) -> dict[str, Any]:
        """Ends the run: draws accuracy.png, then writes summary.json with how it
        ended (last, so that a summary means the run's files are complete).

        A summary.json that cannot be written (a full disk) is removed rather than
        left stale, and :attr:`summary_error` says why; the summary is returned
        either way.
        """
        if status is not None and self.status in ("running", "finished"):
            self.status = status
            self.error = error
        if not self.write:
            return self.summary()
        if self.lines:
            try:
                records = read_metrics(self.run_dir)
                for x, file in (
                    ("round", "accuracy.png"),
                    ("sim_time_s", "accuracy_vs_time.png"),
                ):
                    if x in records[-1]:
                        plot_accuracy(
                            records, self.run_dir / file, self.config.name, x=x
                        )
            except Exception:  # noqa: BLE001 - a plot never hides how the run ended
                pass
        summary = self.summary()
        path = self.run_dir / "summary.json"
        try:
            write_json(path, summary)
            self.summary_error = None
        except OSError as err:
            self.summary_error = err
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
        return summary


def _per_round_bytes(per_round: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from jwins_jax.sharing import message_bytes

    return message_bytes(per_round)


def delivered_bytes(per_round: dict[str, np.ndarray]) -> np.ndarray:
    """Bytes of each node's message copies that arrived, in int64.

    The mean over nodes of these totals is the mean number of bytes a node received.
    Uses ``delivered`` (copies that arrived, :mod:`jwins_jax.faults`) where present,
    else every copy sent arrived.

    Args:
        per_round: ``sent``, ``meta_bytes``, ``receivers`` and optionally
            ``delivered`` arrays of any shape, e.g. ``(rounds, n)``.
    """
    from jwins_jax.sharing import message_bytes

    copies = per_round.get("delivered", per_round["receivers"])
    values, meta = message_bytes({**per_round, "receivers": copies})
    return values + meta


def _online_mean(per_round: dict[str, np.ndarray]) -> float | None:
    """Mean minibatch loss over the node-rounds that trained (None if none did)."""
    loss = np.asarray(per_round["train_loss"])
    online = np.asarray(per_round.get("online", True), bool)
    if online.all():
        return float(np.mean(loss))
    return float(np.mean(loss[online])) if online.any() else None


# ------------------------------------------------------------------------ plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# x axes of the per-run plots: a record's key (a number, or {mean, ...} over nodes)
# and its label
PLOT_AXES = {
    "round": "round",
    "sim_time_s": "simulated time (s, mean over nodes)",
}


def plot_accuracy(
    records: list[dict[str, Any]], path: pathlib.Path, title: str, x: str = "round"
) -> None:
    """Test accuracy (mean over nodes, min-max band) against rounds or another axis
    of :data:`PLOT_AXES`."""
    plt = _pyplot()
    records = [rec for rec in records if rec.get(x) is not None]
    r = [
        _num(rec[x]["mean"] if isinstance(rec[x], dict) else rec[x]) for rec in records
    ]
    mean = [_num(rec["test_acc"]["mean"]) for rec in records]
    lo = [_num(rec["test_acc"]["min"]) for rec in records]
    hi = [_num(rec["test_acc"]["max"]) for rec in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(r, mean, label="mean over nodes")
    ax.fill_between(r, lo, hi, alpha=0.25, label="min-max over nodes")
    finish_plot(fig, ax, path, PLOT_AXES[x], "test accuracy (%)", title)


def plot_accuracy_vs_bytes(
    runs: dict[str, list[dict[str, Any]]],
    path: pathlib.Path,
    title: str,
    x: str = "bytes_per_node",
) -> None:
    """Test accuracy against cumulative bytes sent per node (or simulated time,
    ``x="sim_time_s"``), one line per run."""
    from jwins_jax.analysis import value

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    scale = 2**20 if x == "bytes_per_node" else 1.0
    for label, records in runs.items():
        xs = np.array([value(rec, x) for rec in records]) / scale
        mean = np.array([value(rec, "test_acc") for rec in records])
        std = np.array([value(rec, "test_acc.std") for rec in records])
        keep = np.isfinite(xs)
        xs, mean, std = xs[keep], mean[keep], std[keep]
        ax.plot(xs, mean, marker=".", label=label)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    xlabel = (
        "cumulative bytes sent per node (MiB)"
        if x == "bytes_per_node"
        else PLOT_AXES[x]
    )
    finish_plot(
        fig, ax, path, xlabel, "test accuracy (%), mean ± std over nodes", title
    )


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def finish_plot(
    fig,
    ax,
    path: pathlib.Path,
    xlabel: str,
    ylabel: str,
    title: str,
    legend: bool = True,
) -> None:
    """Labels, grid, legend; saves the figure whole (a temporary file renamed over
    ``path``, so a run killed while drawing leaves no half-written image) and closes
    it."""
    plt = _pyplot()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
