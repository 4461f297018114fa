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
JSON files hold no NaN or infinity: such values are written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import Any

import numpy as np

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


def write_json(path: pathlib.Path, obj: Any) -> None:
    """Writes a JSON file atomically (a temporary file renamed over the target)."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(dumps(obj, indent=2) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_line(path: pathlib.Path, obj: Any) -> None:
    """Appends one JSON line whole: on failure the file is cut back to where it was."""
    line = (dumps(obj) + "\n").encode()
    with open(path, "ab") as f:
        start = f.tell()
        try:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.truncate(start)
            raise


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (complete lines only)."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def read_summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's summary.json, or None when it is missing or unreadable."""
    path = pathlib.Path(run_dir) / "summary.json"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
        self.done = 0
        self.records: list[dict[str, Any]] = []
        self.status = "running"
        self.error: str | None = None
        self.t_start = time.perf_counter()
        self.first_block_s = 0.0
        self.resumed = False
        self.pending: list[dict[str, np.ndarray]] = []
        self.elapsed_before = 0.0
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
        self.done = int(counters["done"])
        self.pending = [dict(seg) for seg in counters.get("pending", [])]

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint saves of this log: counters and the records so far."""
        return {"done": self.done, "counters": self.counters(), "records": self.records}

    def resume(self, meta: dict[str, Any]) -> None:
        """Continues from a checkpoint: counters, records, and metrics.jsonl rewritten
        with exactly the records the checkpoint saw."""
        self.load_counters(meta["counters"])
        self.records = list(meta["records"])
        self.resumed = True
        if self.records:
            self.elapsed_before = float(self.records[-1].get("elapsed_s") or 0.0)
        if not self.write:
            return
        path = self.run_dir / "metrics.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text("".join(dumps(r) + "\n" for r in self.records))
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

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
        record = clean(record)
        if self.write:
            append_line(self.run_dir / "metrics.jsonl", record)
        self.records.append(record)
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

    # ----------------------------------------------------------------- closing
    def summary(self) -> dict[str, Any]:
        c = self.config
        last = self.records[-1] if self.records else {}
        best = [
            r["test_acc"]["mean"]
            for r in self.records
            if r["test_acc"]["mean"] is not None
        ]
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
            "final": last,
            "best_test_acc_mean": max(best) if best else None,
            "wall_s": time.perf_counter() - self.t_start,
            "first_block_s": self.first_block_s,
            **self.info,
        }

    def close(
        self, status: str | None = None, error: str | None = None
    ) -> dict[str, Any]:
        """Ends the run: writes summary.json (and the plot) with how it ended."""
        if status is not None and self.status in ("running", "finished"):
            self.status = status
            self.error = error
        summary = self.summary()
        if not self.write:
            return summary
        write_json(self.run_dir / "summary.json", summary)
        if self.records:
            try:
                plot_accuracy(
                    self.records, self.run_dir / "accuracy.png", self.config.name
                )
            except Exception:  # noqa: BLE001 - a plot never hides how the run ended
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


def plot_accuracy(
    records: list[dict[str, Any]], path: pathlib.Path, title: str
) -> None:
    """Test accuracy (mean over nodes, min-max band) against rounds."""
    plt = _pyplot()
    r = [rec["round"] for rec in records]
    mean = [_num(rec["test_acc"]["mean"]) for rec in records]
    lo = [_num(rec["test_acc"]["min"]) for rec in records]
    hi = [_num(rec["test_acc"]["max"]) for rec in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(r, mean, label="mean over nodes")
    ax.fill_between(r, lo, hi, alpha=0.25, label="min-max over nodes")
    finish_plot(fig, ax, path, "round", "test accuracy (%)", title)


def plot_accuracy_vs_bytes(
    runs: dict[str, list[dict[str, Any]]], path: pathlib.Path, title: str
) -> None:
    """Test accuracy against cumulative bytes sent per node, one line per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, records in runs.items():
        mb = [rec["bytes_per_node"] / 2**20 for rec in records]
        mean = np.array([_num(rec["test_acc"]["mean"]) for rec in records])
        std = np.array([_num(rec["test_acc"]["std"]) for rec in records])
        ax.plot(mb, mean, marker=".", label=label)
        ax.fill_between(mb, mean - std, mean + std, alpha=0.2)
    finish_plot(
        fig,
        ax,
        path,
        "cumulative bytes sent per node (MiB)",
        "test accuracy (%), mean ± std over nodes",
        title,
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
    """Labels, grid, legend; saves and closes the figure."""
    plt = _pyplot()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
