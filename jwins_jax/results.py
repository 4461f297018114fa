"""Running an experiment on the host and writing its results directory.

A run directory holds:

* ``config.json``: the resolved configuration;
* ``metrics.jsonl``: one JSON object per evaluation, flushed as soon as it is written,
  so an interrupted or diverged run keeps everything up to that point;
* ``summary.json``: the final record, totals and timings (also written, with
  ``status`` set, when a run diverges or is interrupted);
* ``accuracy.png``: test accuracy against rounds, mean over nodes with a min-max band.

Bytes are counted per node (SPEC 5 with the decisions table): ``bytes_per_node`` is the
mean over nodes of the cumulative bytes each node sent (values plus metadata, one copy
per receiver), the paper's "bytes" axis.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time
from typing import IO, Any

import jax
import numpy as np

from jwins_jax.config import Config
from jwins_jax.errors import DivergenceError
from jwins_jax.simulator import Simulation, block_lengths, summarize_nodes


def unique_dir(root: str | os.PathLike, name: str) -> pathlib.Path:
    """``root/name``, or ``root/name-2``, ``-3``... so earlier results are never overwritten."""
    base = pathlib.Path(root) / name
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    path.mkdir(parents=True)
    return path


class ProgressBar:
    """A one-line progress bar on a terminal stream (plain lines elsewhere)."""

    def __init__(self, total: int, label: str, stream: IO[str] | None = None):
        self.total, self.label = total, label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, done: int, text: str) -> None:
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        line = f"{self.label} [{bar}] {done}/{self.total} {text}"
        if self.tty:
            self.stream.write("\r" + line + " " * 4)
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def write_json(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def run_experiment(
    config: Config,
    *,
    progress: bool = True,
    stream: IO[str] | None = None,
    simulation: Simulation | None = None,
) -> dict[str, Any]:
    """Runs ``config`` and writes its results directory.

    Returns:
        The summary dict (also written to ``summary.json``); ``summary["run_dir"]`` is
        the results directory.

    Raises:
        ConfigError: bad configuration (before anything is written).
        DivergenceError: a model became NaN/inf; metrics up to that point are kept.
    """
    t_start = time.perf_counter()
    sim = simulation if simulation is not None else Simulation(config)
    c = sim.config
    run_dir = unique_dir(c.out_dir, c.name)
    write_json(run_dir / "config.json", c.to_dict())
    n = c.nodes
    value_cum = np.zeros(n, np.int64)
    meta_cum = np.zeros(n, np.int64)
    full_count = np.zeros(n, np.int64)
    records: list[dict[str, Any]] = []
    bar = ProgressBar(c.rounds, c.name, stream) if progress else None
    compile_s = 0.0
    status = "finished"
    state = sim.init(jax.random.PRNGKey(c.seed))
    done = 0
    with open(run_dir / "metrics.jsonl", "w") as log:
        try:
            for length in block_lengths(c.rounds, c.eval_every):
                first = not sim.is_compiled(length)
                t0 = time.perf_counter()
                state, per_round = sim.advance(state, length)
                ev = jax.device_get(sim.evaluate(state))
                per_round = jax.device_get(per_round)
                dt = time.perf_counter() - t0
                if first:
                    compile_s += dt
                done += length
                vb = per_round["value_bytes"].astype(np.int64)  # (length, n)
                mb = per_round["meta_bytes"].astype(np.int64)
                value_cum += vb.sum(axis=0)
                meta_cum += mb.sum(axis=0)
                full_count += per_round["full"].sum(axis=0)
                record = make_record(
                    done, ev, per_round, value_cum, meta_cum, full_count
                )
                record["elapsed_s"] = time.perf_counter() - t_start
                records.append(record)
                log.write(json.dumps(record, default=_json_default) + "\n")
                log.flush()
                if bar is not None:
                    bar.update(
                        done,
                        f"acc {record['test_acc']['mean']:.1f}% "
                        f"loss {record['test_loss']['mean']:.3f}",
                    )
                if not np.all(ev["finite"]):
                    bad = int(np.sum(~np.asarray(ev["finite"])))
                    status = "diverged"
                    raise DivergenceError(
                        f"{bad} of {n} node models became NaN or infinite by round {done}; "
                        f"metrics up to round {done} are in {run_dir / 'metrics.jsonl'} "
                        f"(try a smaller lr, now {c.lr})"
                    )
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            summary = make_summary(c, sim, records, status, compile_s, t_start, run_dir)
            write_json(run_dir / "summary.json", summary)
            if records:
                plot_accuracy(records, run_dir / "accuracy.png", c.name)
    return summary


def make_record(
    done: int,
    ev: dict[str, Any],
    per_round: dict[str, Any],
    value_cum: np.ndarray,
    meta_cum: np.ndarray,
    full_count: np.ndarray,
) -> dict[str, Any]:
    """One metrics.jsonl line: node statistics and byte counters after ``done`` rounds."""
    length = per_round["value_bytes"].shape[0]
    round_bytes = (per_round["value_bytes"] + per_round["meta_bytes"]).astype(np.int64)
    return {
        "round": done,
        "test_acc": summarize_nodes(ev["test_acc"]),
        "test_loss": summarize_nodes(ev["test_loss"]),
        "train_loss": summarize_nodes(ev["train_loss"]),
        "train_acc": summarize_nodes(ev["train_acc"]),
        "minibatch_loss": float(np.mean(per_round["train_loss"])),
        "consensus_distance": float(ev["consensus"]),
        "bytes_per_node": float((value_cum + meta_cum).mean()),
        "value_bytes_per_node": float(value_cum.mean()),
        "meta_bytes_per_node": float(meta_cum.mean()),
        "bytes_per_node_per_round": float(round_bytes.sum(axis=0).mean() / length),
        "full_share_fraction": float(full_count.sum() / (done * len(full_count))),
    }


def make_summary(
    c: Config,
    sim: Simulation,
    records: list[dict[str, Any]],
    status: str,
    compile_s: float,
    t_start: float,
    run_dir: pathlib.Path,
) -> dict[str, Any]:
    last = records[-1] if records else {}
    wall = time.perf_counter() - t_start
    return {
        "name": c.name,
        "status": status,
        "run_dir": str(run_dir),
        "sharing": c.sharing,
        "sharing_params": sim.sharing.params,
        "nodes": c.nodes,
        "rounds_done": last.get("round", 0),
        "rounds": c.rounds,
        "n_params": sim.n_params,
        "final": last,
        "best_test_acc_mean": max(
            (r["test_acc"]["mean"] for r in records), default=math.nan
        ),
        "wall_s": wall,
        "first_block_s": compile_s,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
    }


def plot_accuracy(
    records: list[dict[str, Any]], path: pathlib.Path, title: str
) -> None:
    """Test accuracy (mean over nodes, min-max band) against rounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = [rec["round"] for rec in records]
    mean = [rec["test_acc"]["mean"] for rec in records]
    lo = [rec["test_acc"]["min"] for rec in records]
    hi = [rec["test_acc"]["max"] for rec in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(r, mean, label="mean over nodes")
    ax.fill_between(r, lo, hi, alpha=0.25, label="min-max over nodes")
    _finish(fig, ax, path, "round", "test accuracy (%)", title)


def plot_accuracy_vs_bytes(
    runs: dict[str, list[dict[str, Any]]], path: pathlib.Path, title: str
) -> None:
    """Test accuracy against cumulative bytes sent per node, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, records in runs.items():
        mb = [rec["bytes_per_node"] / 2**20 for rec in records]
        mean = np.array([rec["test_acc"]["mean"] for rec in records])
        std = np.array([rec["test_acc"]["std"] for rec in records])
        ax.plot(mb, mean, marker=".", label=label)
        ax.fill_between(mb, mean - std, mean + std, alpha=0.2)
    _finish(
        fig,
        ax,
        path,
        "cumulative bytes sent per node (MiB)",
        "test accuracy (%), mean ± std over nodes",
        title,
    )


def _finish(fig, ax, path: pathlib.Path, xlabel: str, ylabel: str, title: str) -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl."""
    with open(pathlib.Path(run_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
