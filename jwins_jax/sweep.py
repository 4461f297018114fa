"""Sweeps: many configs of one experiment, run side by side in one compiled program.

A sweep spec (TOML or JSON) is a base config plus axes::

    name = "lr-seed"            # optional (default: the file's stem)
    batch = 16                  # optional: configs per compiled batch (default: auto)
    one_program = false         # optional: true rejects axes that need another program
    targets = [80, 90]          # optional: accuracies (%) for sweep.csv's *_to_* columns

    [base]                      # any config fields, as in `jwins run --config`
    rounds = 150

    [grid]                      # cartesian product of every list
    lr = [0.05, 0.1]
    seed = [1, 2, 3]

    [[configs]]                 # optional explicit list, each merged over base and
    sharing = "full"            # crossed with the grid; a list value in an entry is an
    [[configs]]                 # axis of that entry (alpha_list: a list of lists)
    sharing = "choco"
    alpha = [0.1, 0.2]

Configs are grouped by their static part (:meth:`Config.static_key`): everything that
changes a shape or the program (strategy, model, dataset, nodes, rounds, ...). Inside
a group the traced hyperparameters (seed, lr, momentum, weight decay, alpha, gamma,
metadata cap, the alpha list's values) differ between configs, and the group runs in
batches of ``batch`` configs through the ``vmap`` of the one block program, compiled
once per group: every batch reuses it (a short last batch is padded). The batch size
is chosen from the device's free memory unless given.

Output ``OUT_DIR/sweep-NAME/``: one results directory per config (as ``jwins run``
writes), ``sweep.csv``, ``spec.json`` (the resolved configs) and plots. sweep.csv
has a row per config: its axes, method key, status and final metrics, and for each
target accuracy the bytes per node (``bytes_to_80``) and, where the records carry
the simulated clock, the time (``sim_time_s_to_80``) at which its test accuracy
first reached the target (:data:`~jwins_jax.analysis.DEFAULT_TARGETS` unless the spec
gives ``targets``). What it computes from runs comes from :mod:`jwins_jax.analysis`.
Running the same sweep again skips the configs that finished; a config that
diverges is marked so and the others of its batch go on.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
import pathlib
import shutil
from typing import Any

import jax
import numpy as np

from jwins_jax import analysis as an
from jwins_jax import options as opt
from jwins_jax.config import Config, read_table
from jwins_jax.errors import ConfigError, Terminated
from jwins_jax.results import (
    RunLog,
    check_out_dir,
    finish_plot,
    read_metrics,
    read_summary,
    write_json,
)

SPEC_KEYS = ("name", "batch", "one_program", "targets", "base", "grid", "configs")
MAX_CONFIGS = 100_000


@dataclasses.dataclass
class SweepConfig:
    """One config of a sweep: its index, label and the values of its axes."""

    index: int
    config: Config  # resolved and validated; name = the directory label
    values: dict[str, Any]  # the swept fields and their values


@dataclasses.dataclass
class Sweep:
    """A parsed sweep: its configs and the fields that vary."""

    name: str
    configs: list[SweepConfig]
    axes: list[str]
    batch: int | None = None
    out_dir: str = "runs"
    targets: tuple[float, ...] = an.DEFAULT_TARGETS  # accuracies for sweep.csv

    @property
    def directory(self) -> pathlib.Path:
        return pathlib.Path(self.out_dir) / f"sweep-{self.name}"

    def groups(self) -> list[list[SweepConfig]]:
        """Configs grouped by their static part, in first-appearance order."""
        groups: dict[tuple, list[SweepConfig]] = {}
        for sc in self.configs:
            groups.setdefault(sc.config.static_key(), []).append(sc)
        return list(groups.values())


# ------------------------------------------------------------------ parsing
def _is_list_option(field: str) -> bool:
    """Whether a value of ``field`` is itself a list (alpha_list; a registered
    strategy's list option), so an axis of it is a list of lists."""
    return Config.option(field).kind is tuple


def _is_axis(field: str, value: Any) -> bool:
    if _is_list_option(field):
        return isinstance(value, (list, tuple)) and any(
            isinstance(v, (list, tuple)) for v in value
        )
    return isinstance(value, (list, tuple))


def _label(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "_".join(_label(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _dir_label(index: int, values: dict[str, Any]) -> str:
    text = "-".join(f"{k}={_label(v)}" for k, v in values.items())
    text = "".join(ch if ch.isalnum() or ch in "=._-" else "_" for ch in text)
    name = f"{index:03d}" + (f"-{text}" if text else "")
    return name[:100]


def parse_spec(
    data: dict[str, Any],
    *,
    source: str = "spec",
    default_name: str = "sweep",
    overrides: dict[str, Any] | None = None,
) -> Sweep:
    """Builds the configs of a spec; every config is validated before anything runs.

    Args:
        data: the spec's table.
        source: its name for error messages.
        default_name: the sweep name when the spec has none.
        overrides: config fields that replace the base's (command-line flags).

    A spec key given as null (JSON) counts as not given; a config field given as
    null means its default where the field is optional and is refused otherwise
    (:meth:`Config.check_null`).

    Raises:
        ConfigError: an unknown key or field, an empty grid or axis, a value of the
            wrong type or out of range, a null field that is not optional, or (with
            ``one_program``) a static axis.
    """
    for key in data:
        if key not in SPEC_KEYS:
            raise ConfigError(
                f"{source}: unknown key {key!r}; allowed: {', '.join(SPEC_KEYS)}"
            )
    data = {k: v for k, v in data.items() if v is not None}  # null: not given
    name = data.get("name", default_name)
    opt.check_kind("name", name, str)
    opt.file_name("name", name)
    batch = data.get("batch")
    if batch is not None:
        opt.check_kind("batch", batch, int)
        opt.int_range(1, 100_000)("batch", batch)
    one_program = data.get("one_program", False)
    opt.check_kind("one_program", one_program, bool)
    targets = data.get("targets", list(an.DEFAULT_TARGETS))
    if not isinstance(targets, list) or not all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 100
        for t in targets
    ):
        raise ConfigError(
            f"{source}: targets={targets!r} is not allowed: give a list of test "
            "accuracies in (0, 100] (percent), e.g. targets = [80, 90]"
        )
    base = data.get("base", {})
    grid = data.get("grid", {})
    entries = data.get("configs", [{}])
    for part, kind in (("base", dict), ("grid", dict), ("configs", list)):
        if not isinstance(data.get(part, kind()), kind):
            what = "a table" if kind is dict else "an array of tables"
            raise ConfigError(f"{source}: {part} must be {what}")
    if not entries:
        raise ConfigError(
            f"{source}: configs is empty; give at least one table or omit it"
        )
    fields = Config.fields()

    def check_field(where: str, key: str) -> str:
        name_ = str(key).replace("-", "_")
        if not Config.is_setting(name_):
            raise ConfigError(
                f"{source}: unknown field {where}{key!r}; allowed: {', '.join(sorted(fields))}"
            )
        return name_

    base = {check_field("base.", k): v for k, v in base.items()}
    base.update(overrides or {})
    grid_axes: dict[str, list[Any]] = {}
    for key, values in grid.items():
        field = check_field("grid.", key)
        if not isinstance(values, list) or (
            _is_list_option(field) and not _is_axis(field, values)
        ):
            kind = (
                "a non-empty list of lists"
                if _is_list_option(field)
                else "a non-empty list"
            )
            raise ConfigError(f"{source}: grid.{key} must be {kind} of values")
        if not values:
            raise ConfigError(f"{source}: grid.{key} is empty; give at least one value")
        grid_axes[field] = values
    expanded: list[dict[str, Any]] = []
    axes: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: configs[{i}] must be a table of fields")
        fixed, local_axes = {}, {}
        for key, value in entry.items():
            field = check_field(f"configs[{i}].", key)
            if _is_axis(field, value):
                if not value:
                    raise ConfigError(f"{source}: configs[{i}].{key} is an empty list")
                local_axes[field] = list(value)
            else:
                fixed[field] = value
        all_axes = {**local_axes, **grid_axes}
        for field in list(fixed) + list(all_axes):
            if field not in axes and (field in all_axes or len(entries) > 1):
                axes.append(field)
        names = list(all_axes)
        for combo in itertools.product(*(all_axes[f] for f in names)):
            expanded.append({**base, **fixed, **dict(zip(names, combo))})
            if len(expanded) > MAX_CONFIGS:
                raise ConfigError(f"{source}: more than {MAX_CONFIGS} configs")
    configs = []
    for index, values in enumerate(expanded):
        where = f"{source}: config {index}"
        cfg = Config.from_dict(
            {k: v for k, v in values.items() if k != "name"}, source=where
        )
        cfg = cfg.validate()
        shown = {a: cfg.value(a) for a in axes}
        cfg = cfg.replace(name=_dir_label(index, shown))
        configs.append(SweepConfig(index, cfg, shown))
    sweep = Sweep(
        name,
        configs,
        axes,
        batch,
        out_dir=configs[0].config.out_dir,
        targets=tuple(float(t) for t in targets),
    )
    if one_program:
        traced = set(Config.traced_fields(configs[0].config.sharing))
        for field in axes:
            if field not in traced:
                raise ConfigError(
                    f"{source}: {field} is a static option (it changes the compiled "
                    f"program); with one_program = true only traced axes are allowed: "
                    + ", ".join(sorted(traced))
                )
        if len(sweep.groups()) > 1:
            raise ConfigError(f"{source}: the configs need several programs")
    return sweep


def load_spec(
    path: str | os.PathLike, overrides: dict[str, Any] | None = None
) -> Sweep:
    """Reads and parses a spec file (``.toml`` or ``.json``)."""
    p = pathlib.Path(path)
    return parse_spec(
        read_table(p), source=str(p), default_name=p.stem, overrides=overrides
    )


# --------------------------------------------------------------- batching
def state_bytes(exp) -> int:
    """Bytes of one config's state and per-config inputs, from shapes only."""
    from jwins_jax.experiment import Hparams  # noqa: F401 - for the eval_shape below

    shapes = jax.eval_shape(
        lambda k: exp.init(k, _default_hparams(exp)), jax.random.PRNGKey(0)
    )
    return int(
        sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(shapes))
    )


def _default_hparams(exp):
    from jwins_jax.experiment import hparams

    return hparams(exp, exp.config)


def free_memory_bytes() -> int:
    """Free memory of the default device (host RAM on CPU)."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            stats = dev.memory_stats() or {}
            return int(stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0))
        except Exception:  # noqa: BLE001 - no statistics on this backend
            pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


# A config's working memory is taken as this many times its state: the state, the
# donated new state, the strategy's transform temporaries and training activations.
MEMORY_FACTOR = 12
MAX_AUTO_BATCH = 64


def auto_batch(exp, count: int, free: int | None = None) -> int:
    """Configs per batch that fit in half the free memory (at least 1)."""
    free = free_memory_bytes() if free is None else free
    per_config = MEMORY_FACTOR * state_bytes(exp)
    fit = int(0.5 * free // max(per_config, 1))
    return max(1, min(count, fit, MAX_AUTO_BATCH))


def plan(sweep: Sweep, batch: int | None = None) -> list[tuple[list[SweepConfig], int]]:
    """Each group with its batch size (``batch``, the spec's, or 0 for auto)."""
    size = batch if batch is not None else sweep.batch
    return [(group, size or 0) for group in sweep.groups()]


def describe(sweep: Sweep, batch: int | None = None) -> str:
    """The configs and how they will be grouped and batched (``--dry-run``)."""
    lines = [f"sweep {sweep.name!r}: {len(sweep.configs)} configs -> {sweep.directory}"]
    traced_all = set()
    for g, (group, size) in enumerate(plan(sweep, batch)):
        first = group[0].config
        traced = set(Config.traced_fields(first.sharing))
        traced_all |= traced
        batches = (
            "auto" if size == 0 else f"{math.ceil(len(group) / size)} of <= {size}"
        )
        static = {a: first.value(a) for a in sweep.axes if a not in traced}
        lines.append(
            f"group {g}: {len(group)} configs, one program, batches: {batches}; "
            f"static: {static or 'shared'}"
        )
        for sc in group:
            lines.append(f"  {sc.config.name}")
    return "\n".join(lines)


# ---------------------------------------------------------------- running
def prepare_directory(sweep: Sweep) -> pathlib.Path:
    """Creates (or reopens) the sweep directory; refuses one holding another sweep."""
    check_out_dir(sweep.out_dir)
    root = sweep.directory
    spec = {
        "name": sweep.name,
        "axes": sweep.axes,
        "configs": [sc.config.to_dict() for sc in sweep.configs],
    }
    spec_path = root / "spec.json"
    if spec_path.is_file():
        import json

        try:
            old = json.loads(spec_path.read_text())
        except ValueError:
            old = None
        if old != json.loads(_json(spec)):
            raise ConfigError(
                f"{str(root)!r} holds a different sweep; give this one another name "
                "(name = ... in the spec, or --name)"
            )
        return root
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {str(root)!r}: {err.strerror}") from None
    write_json(spec_path, spec)
    return root


def _json(obj: Any) -> str:
    from jwins_jax.results import dumps

    return dumps(obj)


def run_sweep(
    sweep: Sweep,
    *,
    batch: int | None = None,
    progress=None,
) -> list[dict[str, Any]]:
    """Runs every unfinished config of ``sweep``; writes its directory.

    Returns:
        The summaries of all configs (finished earlier or now), in config order.
    """
    from jwins_jax.runner import Progress
    from jwins_jax.stopping import stop_on_signals

    progress = progress if progress is not None else Progress("sweep", enabled=False)
    with stop_on_signals(progress) as stop:
        return _run_sweep(sweep, batch, progress, stop)


def _run_sweep(sweep: Sweep, batch: int | None, progress, stop) -> list[dict[str, Any]]:
    from jwins_jax import devices
    from jwins_jax import experiment as ex
    from jwins_jax.runner import close_logs, execute, failure, programs, run_info

    # Build everything first: bad data or graphs fail before anything is written.
    datasets: dict[tuple, Any] = {}
    built = []
    for group, size in plan(sweep, batch):
        first = group[0].config
        key = (first.dataset, first.data_dir)
        if key not in datasets:
            datasets[key] = ex.load_data(first, progress.stage)
        ds = datasets[key]
        exp = ex.build_experiment(first, ds)
        progress.stage(f"building {len(group)} configs of group {len(built)}")
        items, shared = [], None
        for sc in group:
            shared = ex.build_inputs(sc.config, ds, data=shared)
            items.append(shared)
        hps = [ex.hparams(exp, sc.config) for sc in group]
        built.append((group, size, exp, items, hps))
    stop.check(" before the sweep started")
    # process 0 owns the directory: it prepares it and says what finished before
    root = pathlib.Path(devices.on_primary(lambda: str(prepare_directory(sweep))))
    from jwins_jax.runner import STARTED

    STARTED.append(root)

    def finished() -> list:
        found = []
        for sc in sweep.configs:
            summary = read_summary(root / sc.config.name)
            if summary is not None and summary.get("status") == "finished":
                found.append([sc.index, summary])
        return found

    summaries: dict[int, dict[str, Any]] = dict(
        (int(i), s) for i, s in devices.on_primary(finished)
    )
    todo_total = len(sweep.configs) - len(summaries)
    write = devices.is_primary()
    progress.total = todo_total * sweep.configs[0].config.rounds
    progress.offset = 0
    for g, (group, size, exp, items, hps) in enumerate(built):
        todo = [i for i, sc in enumerate(group) if sc.index not in summaries]
        if not todo:
            continue
        size = size or devices.on_primary(lambda: auto_batch(exp, len(todo)))
        size = min(size, len(todo))
        mesh = devices.node_mesh(exp.nodes, exp.config.shard_nodes)
        progress.stage(
            f"group {g}: {len(todo)} configs in batches of {size} "
            f"(compiling once for the group)"
        )
        like = [items[i] for i in todo]
        progs = None
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            padded = chunk + [chunk[-1]] * (size - len(chunk))
            logs: list[RunLog] = []
            error: BaseException | None = None
            try:

                def create() -> None:  # process 0 writes; the others hear of a failure
                    for i in chunk:
                        sc = group[i]
                        run_dir = root / sc.config.name
                        if run_dir.exists():
                            shutil.rmtree(run_dir)
                        run_dir.mkdir(parents=True)
                        logs.append(
                            RunLog.create(
                                sc.config.replace(out_dir=str(root)),
                                run_dir,
                                run_info(exp),
                            )
                        )

                devices.on_primary(create)
                if not write:
                    logs.extend(
                        RunLog(
                            group[i].config.replace(out_dir=str(root)),
                            root / group[i].config.name,
                            run_info(exp),
                            write=False,
                        )
                        for i in chunk
                    )
                if size == 1:
                    inputs, hp = items[chunk[0]], hps[chunk[0]]
                    key = jax.random.PRNGKey(group[chunk[0]].config.seed)
                else:
                    inputs = ex.stack_inputs([items[i] for i in padded], like=like)
                    hp = ex.stack_hparams([hps[i] for i in padded])
                    key = jax.numpy.stack(
                        [jax.random.PRNGKey(group[i].config.seed) for i in padded]
                    )
                if mesh is not None:
                    axis = int(size > 1)
                    inputs = devices.place_inputs(inputs, mesh, exp.nodes, axis=axis)
                    hp, key = devices.place_replicated((hp, key), mesh)
                progs = progs or programs(
                    exp, inputs, batched=size > 1, mesh=mesh, hp=hp
                )
                stop.check(" between batches")
                state = progs.run("init", key, hp)
                execute(
                    exp, progs, state, hp, inputs, logs, progress=progress, stop=stop
                )
            except BaseException as err:
                error = err
            advice = _advice(root, error)
            for i, s in zip(chunk, close_logs(logs, error, advice)):
                summaries[group[i].index] = s
            progress.offset += len(chunk) * exp.config.rounds
            try:
                devices.on_primary(
                    lambda: write_table(sweep, root, runs_of(sweep, root, summaries))
                )
            except (OSError, devices.ProcessFailure) as err:
                error = error or err
            if isinstance(error, (KeyboardInterrupt, Terminated)):
                raise error
            if error is not None:
                raise failure(error, logs, _advice(root, error)) from error
    if write:
        runs = runs_of(sweep, root, summaries)
        write_table(sweep, root, runs)
        plot_sweep(sweep, root, runs)
    return [summaries[sc.index] for sc in sweep.configs if sc.index in summaries]


def _advice(root: pathlib.Path, error: BaseException | None) -> str | None:
    """How to continue a sweep that failed (None when it did not)."""
    if error is None:
        return None
    from jwins_jax.runner import disk_full

    first = "free space, then " if disk_full(error) else ""
    return (
        f"{first}run the same sweep again to finish {root}: finished configs are "
        "skipped, the others run from their start"
    )


# ----------------------------------------------------------------- outputs
# sweep.csv's columns; the sweep's axes follow "method", the *_to_* columns come last
CSV_COLUMNS = tuple(
    "index name sharing method status rounds_done best_test_acc final_test_acc "
    "final_test_acc_std bytes_per_node value_bytes_per_node meta_bytes_per_node "
    "received_bytes_per_node wall_s".split()
)
# sweep.csv column -> key path of the final record
FINAL_COLUMNS = {
    "final_test_acc": "test_acc.mean",
    "final_test_acc_std": "test_acc.std",
}
FINAL_COLUMNS.update({k: k for k in CSV_COLUMNS if k.endswith("bytes_per_node")})


def runs_of(
    sweep: Sweep, root: pathlib.Path, summaries: dict[int, dict[str, Any]]
) -> dict[int, an.Run]:
    """The configs with a summary, as analysis records (metrics read from disk)."""
    return {
        sc.index: an.Run(
            root / sc.config.name,
            sc.config,
            summaries[sc.index],
            tuple(read_metrics(root / sc.config.name)),
        )
        for sc in sweep.configs
        if sc.index in summaries
    }


def _opt(v: float) -> float | None:
    return None if math.isnan(v) else v


def table_rows(sweep: Sweep, runs: dict[int, an.Run]) -> list[dict[str, Any]]:
    """The rows of sweep.csv (configs without a summary yet are ``pending``)."""
    rows = []
    for sc in sweep.configs:
        r = runs.get(sc.index)
        s = r.summary if r is not None else {}
        row = {
            "index": sc.index,
            "name": sc.config.name,
            "sharing": sc.config.sharing,
            "method": an.method_key(sc.config),
            **{a: _label(v) for a, v in sc.values.items()},
            "status": r.status if r is not None else "pending",
            "rounds_done": s.get("rounds_done", 0),
            "best_test_acc": s.get("best_test_acc_mean"),
            "wall_s": s.get("wall_s"),
        }
        if r is not None:
            row.update({k: _opt(r.final_value(p)) for k, p in FINAL_COLUMNS.items()})
            row.update(an.reach_columns(r.records, sweep.targets))
        rows.append(row)
    return rows


def write_table(sweep: Sweep, root: pathlib.Path, runs: dict[int, an.Run]) -> None:
    """Writes sweep.csv atomically."""
    rows = table_rows(sweep, runs)
    columns = list(CSV_COLUMNS[:4]) + [a for a in sweep.axes if a != "sharing"]
    columns += list(CSV_COLUMNS[4:])
    columns += list(dict.fromkeys(k for row in rows for k in row if k not in columns))
    tmp = root / "sweep.csv.tmp"
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        tmp.replace(root / "sweep.csv")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# The sweep's Pareto plots: (x axis, its unit, file, label).
FRONT_PLOTS = (
    ("bytes_per_node", 2**20, "accuracy_vs_bytes.png", "bytes sent per node (MiB)"),
    ("sim_time_s", 1.0, "accuracy_vs_time.png", "simulated time (s, mean over nodes)"),
)


def plot_sweep(sweep: Sweep, root: pathlib.Path, runs: dict[int, an.Run]) -> None:
    """accuracy_vs_bytes.png and accuracy_vs_time.png (each method's Pareto front of
    final accuracy against bytes and simulated time, log scale),
    accuracy_vs_<axis>.png and accuracy_vs_rounds_<g>.png."""
    from jwins_jax.results import _pyplot

    plt = _pyplot()
    done = {i: r for i, r in runs.items() if not math.isnan(r.final_value("test_acc"))}
    if not done:
        return
    by_method = an.group(done.values(), lambda r: r.method)
    colors = {m: f"C{i}" for i, m in enumerate(by_method)}
    for x, scale, name, label in FRONT_PLOTS:
        fronts = an.fronts(done.values(), x=x)
        if not any(fronts.values()):
            continue  # runs without this axis (e.g. recorded before the clock)
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for m, front in fronts.items():
            pts = [(r.final_value(x), r.final_value("test_acc")) for r in by_method[m]]
            xs, ys = zip(*pts)
            ax.scatter(np.array(xs) / scale, ys, color=colors[m], s=18, alpha=0.6)
            if front:
                fx, fy = zip(*front)
                ax.plot(
                    np.array(fx) / scale,
                    fy,
                    color=colors[m],
                    marker="o",
                    label=f"{m} (Pareto front)",
                )
        ax.set_xscale("log")
        finish_plot(
            fig,
            ax,
            root / name,
            label,
            "final test accuracy (%, mean over nodes)",
            f"sweep {sweep.name}",
        )
    for axis in sweep.axes:
        values = [sc.values[axis] for sc in sweep.configs]
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, rs in by_method.items():
            by_value = an.group(rs, lambda r: float(r.config.value(axis)))
            xs = sorted(by_value)
            accs = [[r.final_value("test_acc") for r in by_value[x]] for x in xs]
            means, stds = [np.mean(a) for a in accs], [np.std(a) for a in accs]
            ax.errorbar(
                xs, means, yerr=stds, marker="o", capsize=3, color=colors[m], label=m
            )
        finish_plot(
            fig,
            ax,
            root / f"accuracy_vs_{axis}.png",
            axis,
            "final test accuracy (%), mean ± std over configs",
            f"sweep {sweep.name}",
        )
    for g, group in enumerate(sweep.groups()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for sc in group:
            r = runs.get(sc.index)
            if r is not None and r.records:
                c = an.curve(r, x="round")
                ax.plot(c.x[0], c.y[0], label=sc.config.name[4:40] or sc.config.name)
        finish_plot(
            fig,
            ax,
            root / f"accuracy_vs_rounds_{g}.png",
            "round",
            "test accuracy (%), mean over nodes",
            f"group {g}",
            legend=len(group) <= 10,
        )
