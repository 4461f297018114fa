"""Analysis of results: typed run records and one definition of each rule.

The sweep (``sweep.csv``, its plots), the report (``jwins reproduce``), ``jwins
compare`` and the notebook read results through these functions:

* **Records.** A :class:`Run` is one results directory: its resolved config, its
  ``summary.json`` (None while it runs) and its ``metrics.jsonl`` records
  (:func:`load_run`, :func:`load_sweep`, :func:`load_runs`).
* **Method and budget.** :func:`method_key` is the strategy, with its accumulation
  mode appended where that is not the strategy's default (``topk`` and ``topk_acc``
  are different methods); :func:`budget_of` is alpha or JWINS's mean alpha.
* **Key paths.** A metric or an x axis is a dotted path into a record (``round``,
  ``bytes_per_node``, ``test_acc.std``, ``sim_time_s``); a path ending at a
  ``{mean, std, min, max}`` summary takes its mean, and a path a record lacks reads
  as NaN, so a new axis needs no new code and old runs simply lack it.
* **Reaching a target.** The x of the first evaluation whose metric is at or above
  the target, not interpolated: evaluations are the only points a run measured.
  Over seeds every quantity is taken *per run, then over the seeds* (mean and
  sample std, defined only when every seed has a value, :class:`OverSeeds`): that is
  the expected cost of one run, with its spread, where the crossing of a seed-mean
  curve is neither. Tables follow this rule; seed-mean curves are for the eye.
* **Pareto fronts** of (x, metric) points, by method key.
* **Frames.** :func:`runs_frame` (a row per run: config fields, status, final
  metrics) and :func:`metrics_frame` (a row per run and evaluation) give pandas
  DataFrames, nested fields flattened with ``_`` (``test_acc.mean`` ->
  ``test_acc_mean``); pandas is optional: ``pip install "jwins_jax[analysis]"``.

Example::

    runs = analysis.load_runs(["runs/sweep-digits_claim2"])
    for key, seeds in analysis.group(runs).items():   # (method, budget): its seeds
        print(key, analysis.reach(analysis.curve(seeds), 90.0).mean)
    df = analysis.metrics_frame(runs)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jwins_jax.config import Config
from jwins_jax.errors import ConfigError
from jwins_jax.results import read_metrics, read_summary
from jwins_jax.sharing import REGISTRY
from jwins_jax.sharing.partial import PAPER_ALPHA_LIST

# Accuracies (%) whose bytes (and simulated time) sweep.csv reports per config,
# unless the spec gives ``targets = [...]``.
DEFAULT_TARGETS: tuple[float, ...] = (50.0, 80.0, 90.0)
# The x axes sweep.csv reports a target's reach on: column prefix -> key path.
REACH_AXES: dict[str, str] = {"bytes": "bytes_per_node", "sim_time_s": "sim_time_s"}
_ACCUMULATION_SUFFIX = {"accumulate": "acc", "legacy": "legacy", "none": "noacc"}


# ------------------------------------------------------------------ method keys
def method_key(config: Config) -> str:
    """The method a config runs: its strategy, plus its accumulation mode where that
    differs from the strategy's default (``topk_acc``, ``topk_legacy``,
    ``jwins_noacc``...)."""
    strategy = REGISTRY.get(config.sharing)
    default = strategy.defaults.get("accumulation") if strategy else None
    mode = config.accumulation
    if mode is None or mode == default:
        return config.sharing
    return f"{config.sharing}_{_ACCUMULATION_SUFFIX.get(mode, mode)}"


def budget_of(config: Config) -> float | None:
    """The fraction of the model a message shares, to 3 decimals: alpha, the mean
    of JWINS's alpha list, None for full sharing (or a strategy without alpha)."""
    if config.sharing == "full":
        return None
    if config.sharing == "jwins":
        return round(float(np.mean(config.alpha_list)), 3)
    return None if config.alpha is None else round(float(config.alpha), 3)


def scaled_alpha_list(
    budget: float, paper: Sequence[float] = PAPER_ALPHA_LIST, digits: int = 4
) -> tuple[float, ...]:
    """The paper's JWINS alpha list scaled to mean ``budget`` (entries capped at 1).

    The scale s solves ``mean(min(s * a, 1) for a in paper) = budget`` (bisection);
    entries are rounded to ``digits`` decimals.

    Args:
        budget: the target mean, in (0, 1].
        paper: the list to scale.
        digits: decimals kept.

    Returns:
        The scaled list, same length as ``paper``.
    """
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"budget={budget} must be in (0, 1]")

    def mean(s: float) -> float:
        return float(np.mean(np.minimum(s * np.asarray(paper), 1.0)))

    lo, hi = 0.0, 1.0 / min(paper)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean(mid) < budget else (lo, mid)
    s = 0.5 * (lo + hi)
    return tuple(round(min(s * a, 1.0), digits) for a in paper)


# ---------------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True)
class Run:
    """One results directory."""

    path: pathlib.Path
    config: Config  # resolved, from config.json
    summary: dict[str, Any] | None  # summary.json; None while running or unreadable
    records: tuple[dict[str, Any], ...]  # metrics.jsonl, one per evaluation

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """How the run ended (``unknown`` without a readable summary.json)."""
        return (self.summary or {}).get("status") or "unknown"

    @property
    def method(self) -> str:
        return method_key(self.config)

    @property
    def budget(self) -> float | None:
        return budget_of(self.config)

    @property
    def final(self) -> dict[str, Any]:
        """The last record (the summary's, else the last of metrics.jsonl)."""
        final = (self.summary or {}).get("final")
        if isinstance(final, dict) and final:
            return final
        return self.records[-1] if self.records else {}

    def final_value(self, path: str) -> float:
        """A key path of the final record (NaN when missing)."""
        return value(self.final, path)


def load_run(run_dir: str | os.PathLike) -> Run:
    """A run directory (``config.json``, ``summary.json``, ``metrics.jsonl``).

    Raises:
        ConfigError: no readable config.json.
    """
    path = pathlib.Path(run_dir)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.json)")
    config = Config.from_file(path / "config.json").resolved()
    return Run(path, config, read_summary(path), tuple(read_metrics(path)))


def load_sweep(sweep_dir: str | os.PathLike) -> list[Run]:
    """The runs of a sweep directory that have started, in the spec's config order
    (``spec.json``; without it, every run directory in name order)."""
    root = pathlib.Path(sweep_dir)
    spec = root / "spec.json"
    if spec.is_file():
        try:
            names = [c["name"] for c in json.loads(spec.read_text())["configs"]]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{str(spec)!r} is not a sweep's spec.json") from None
    else:
        names = sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())
    return [load_run(root / n) for n in names if (root / n / "config.json").is_file()]


def load_runs(dirs: Iterable[str | os.PathLike]) -> list[Run]:
    """Runs of run directories and sweep directories (a sweep: all its runs).

    Raises:
        ConfigError: a directory that is neither.
    """
    runs: list[Run] = []
    for d in dirs:
        p = pathlib.Path(d)
        if (p / "spec.json").is_file():
            runs += load_sweep(p)
        elif (p / "config.json").is_file():
            runs.append(load_run(p))
        else:
            raise ConfigError(
                f"{str(p)!r} is neither a run directory (config.json) nor a sweep "
                "directory (spec.json)"
            )
    return runs


def group(
    runs: Iterable[Run],
    key: Callable[[Run], Any] = lambda r: (r.method, r.budget),
) -> dict[Any, list[Run]]:
    """Runs by ``key`` (default: method and budget, so a group holds the seeds of
    one point), in first-appearance order."""
    out: dict[Any, list[Run]] = {}
    for r in runs:
        out.setdefault(key(r), []).append(r)
    return out


# ------------------------------------------------------------------------ values
def value(record: dict[str, Any], path: str) -> float:
    """The number at a dotted key path of a record; a summary dict gives its mean;
    missing or null values are NaN."""
    v: Any = record
    for part in path.split("."):
        if not isinstance(v, dict) or part not in v:
            return math.nan
        v = v[part]
    if isinstance(v, dict):
        v = v.get("mean")
    return math.nan if v is None else float(v)


@dataclasses.dataclass(frozen=True)
class OverSeeds:
    """A quantity computed per run (seed), summarized over the seeds."""

    values: tuple[float | None, ...]  # per seed; None: undefined (e.g. not reached)

    @property
    def count(self) -> int:
        """Seeds with a value."""
        return sum(v is not None for v in self.values)

    @property
    def complete(self) -> bool:
        return bool(self.values) and self.count == len(self.values)

    @property
    def mean(self) -> float | None:
        """Mean over seeds; None unless every seed has a value."""
        return float(np.mean(self.values)) if self.complete else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (0 for one seed); None if incomplete."""
        if not self.complete:
            return None
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


def final(runs: Sequence[Run], path: str = "test_acc") -> OverSeeds:
    """A key path of each run's final record, over the runs."""
    return OverSeeds(tuple(_num(r.final_value(path)) for r in runs))


def _num(v: float) -> float | None:
    return None if math.isnan(v) else v


# ------------------------------------------------------------------------ curves
@dataclasses.dataclass(frozen=True)
class Curve:
    """A metric against an x axis over the evaluations of one or more seeds."""

    x: np.ndarray  # (S, E) float64 x per seed and evaluation
    y: np.ndarray  # (S, E) float64 metric per seed and evaluation, NaN where missing

    @property
    def seeds(self) -> int:
        return self.y.shape[0]

    @property
    def x_mean(self) -> np.ndarray:  # (E,)
        return self.x.mean(axis=0)

    @property
    def y_mean(self) -> np.ndarray:  # (E,)
        return self.y.mean(axis=0)

    @property
    def y_std(self) -> np.ndarray:  # (E,) sample std over seeds, 0 for one seed
        return self.y.std(axis=0, ddof=1) if self.seeds > 1 else 0 * self.y[0]


def curve(
    runs: Sequence[Run] | Run, y: str = "test_acc", x: str = "bytes_per_node"
) -> Curve:
    """The evaluations of ``runs`` (seeds) side by side, cut to the shortest run.

    Args:
        runs: one run or the seeds of one point.
        y: key path of the metric.
        x: key path of the x axis (``round``, ``bytes_per_node``, ``sim_time_s``...).
    """
    runs = [runs] if isinstance(runs, Run) else list(runs)
    length = min(len(r.records) for r in runs)
    recs = [r.records[:length] for r in runs]
    return Curve(
        x=np.array([[value(rec, x) for rec in rs] for rs in recs], np.float64),
        y=np.array([[value(rec, y) for rec in rs] for rs in recs], np.float64),
    )


def first_reach(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """x at the first evaluation whose metric is at or above ``target`` (one seed)."""
    hit = np.flatnonzero(np.asarray(y) >= target)
    return float(x[hit[0]]) if hit.size else None


def reach(c: Curve, target: float) -> OverSeeds:
    """Each seed's x at its first evaluation at or above ``target``."""
    return OverSeeds(tuple(first_reach(xs, ys, target) for xs, ys in zip(c.x, c.y)))


def best_within(c: Curve, limit: float | Sequence[float]) -> OverSeeds:
    """Each seed's best metric over its evaluations with x at most ``limit`` (one
    limit, or one per seed)."""
    out = []
    for xs, ys, lim in zip(c.x, c.y, np.broadcast_to(limit, (c.seeds,))):
        ok = (xs <= lim * (1 + 1e-9)) & ~np.isnan(ys)
        out.append(float(ys[ok].max()) if ok.any() else None)
    return OverSeeds(tuple(out))


def reach_columns(
    records: Sequence[dict[str, Any]], targets: Sequence[float], y: str = "test_acc"
) -> dict[str, float | None]:
    """``<axis>_to_<target>`` for each axis of :data:`REACH_AXES` the records carry:
    the x at the first evaluation at or above each target (None: not reached)."""
    out: dict[str, float | None] = {}
    if not records:
        return out
    ys = np.array([value(r, y) for r in records])
    for prefix, path in REACH_AXES.items():
        xs = np.array([value(r, path) for r in records])
        if np.isnan(xs).all():
            continue
        for t in targets:
            out[f"{prefix}_to_{t:g}"] = first_reach(xs, ys, t)
    return out


# ----------------------------------------------------------------- Pareto fronts
def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (x, y) points that no point with less or equal x and higher y beats,
    by increasing x."""
    front, best = [], -math.inf
    for px, py in sorted(points, key=lambda p: (p[0], -p[1])):
        if py > best:
            front.append((px, py))
            best = py
    return front


def fronts(
    runs: Iterable[Run], x: str = "bytes_per_node", y: str = "test_acc"
) -> dict[str, list[tuple[float, float]]]:
    """Per method key, the Pareto front of the runs' final (x, y)."""
    out = {}
    for m, rs in group(runs, lambda r: r.method).items():
        pts = [(r.final_value(x), r.final_value(y)) for r in rs]
        out[m] = pareto_front(p for p in pts if not any(map(math.isnan, p)))
    return out


# ------------------------------------------------------------------------ frames
def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts flattened with ``_``: ``{"test_acc": {"mean": 1}}`` ->
    ``{"test_acc_mean": 1}``."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}_"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "the DataFrames of jwins_jax.analysis need pandas: "
            'pip install "jwins_jax[analysis]"'
        ) from None
    return pandas


def _run_columns(r: Run) -> dict[str, Any]:
    return {"run": r.name, "method": r.method, "budget": r.budget}


def runs_frame(runs: Iterable[Run]):
    """A pandas DataFrame, one row per run: ``run``, ``method``, ``budget``, every
    config field, ``status``, ``rounds_done``, ``wall_s``, ``path`` and the final
    record's metrics flattened (``test_acc_mean``, ``bytes_per_node``...)."""
    rows = []
    for r in runs:
        s = r.summary or {}
        config = r.config.to_dict()
        if config.get("alpha_list") is not None:
            config["alpha_list"] = tuple(config["alpha_list"])
        rows.append(
            {
                **_run_columns(r),
                **config,
                "status": r.status,
                "rounds_done": s.get("rounds_done", r.final.get("round")),
                "wall_s": s.get("wall_s"),
                "path": str(r.path),
                **flatten(r.final),
            }
        )
    return _pandas().DataFrame(rows)


def metrics_frame(runs: Iterable[Run]):
    """A pandas DataFrame, one row per run and evaluation: ``run``, ``method``,
    ``budget``, ``seed`` and the record flattened (``round``, ``test_acc_mean``,
    ``bytes_per_node``, ``sim_time_s_mean`` where the run has a clock...)."""
    rows = [
        {**_run_columns(r), "seed": r.config.seed, **flatten(rec)}
        for r in runs
        for rec in r.records
    ]
    return _pandas().DataFrame(rows)


# ------------------------------------------------------------------------ tables
def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
