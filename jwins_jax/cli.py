"""The ``jwins`` command line.

* ``jwins run [--config FILE] [--FIELD VALUE ...]``: one experiment (default: full
  sharing, 96 nodes on the paper's graph, digits, Dirichlet non-IID);
* ``jwins compare [--strategies full,jwins] [...]``: several strategies on the same
  config, seed and data, with a table of accuracy and bytes and a PNG of accuracy
  against bytes (``make run`` runs this with its defaults);
* ``jwins sweep SPEC [--dry-run] [--batch N]``: many configs, side by side in one
  compiled program per group (:mod:`jwins_jax.sweep`);
* ``jwins show RUN_DIR``: prints a run's summary (or what its metrics hold);
* ``jwins reproduce [--output-dir DIR] [...]``: the paper's claim sweeps and
  REPRODUCTION.md (:mod:`jwins_jax.reproduce`; ``make reproduce``).
* ``jwins bench-kernels [--preset small] [--sizes N,...] [--nodes n,...]``: times the
  sharing kernels (transforms, rankings, selections, fills; built-in and registered)
  on this device (:mod:`jwins_jax.kernelbench`), prints a table and writes CSV, JSON
  and a plot of time against N.

Bad input prints one line on stderr and exits with status 2; a diverged run exits
with status 1 and keeps its metrics; an interrupted run (Ctrl-C, SIGTERM) keeps what
it computed, says so in its summary.json and exits with status 130.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from jwins_jax.errors import ConfigError, DivergenceError, RunFailed, Terminated


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _alpha_list(text: str) -> tuple[float, ...]:
    from jwins_jax.options import parse_float_list

    try:
        return parse_float_list(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _value_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default_text(name: str, default: Any) -> str:
    from jwins_jax import sharing
    from jwins_jax.data import DATASET_FIELDS, DATASETS

    by_value: dict[str, list[str]] = {}
    if name in DATASET_FIELDS:
        for info in DATASETS.values():
            if info.stands_in_for is None:
                value = _value_text(getattr(info.defaults, name))
                by_value.setdefault(value, []).append(info.name)
        return (
            "default per dataset: "
            + "; ".join(f"{', '.join(v)}: {k}" for k, v in by_value.items())
            + "; a synthetic stand-in as the dataset it replaces"
        )
    if sharing.option(name) is None:
        return f"default: {'none' if default == () else default}"
    for s in (sharing.get(n) for n in sharing.strategies()):
        if name in s.params:
            by_value.setdefault(_value_text(s.defaults[name]), []).append(s.name)
    return "default: " + "; ".join(f"{', '.join(v)}: {k}" for k, v in by_value.items())


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    from jwins_jax.options import parse_pairs

    try:
        return parse_pairs(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _setting_names() -> list[str]:
    """Every name a flag sets: the config fields and the options of registered
    strategies."""
    from jwins_jax import sharing
    from jwins_jax.config import Config

    names = list(Config.fields())
    return names + [n for n in sharing.user_options() if n not in names]


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from jwins_jax import sharing
    from jwins_jax.config import Config

    p.add_argument(
        "--config", metavar="FILE", help="JSON or TOML file of config fields"
    )
    fields = Config.fields()
    for name in _setting_names():
        option = Config.option(name)
        default = fields[name].default if name in fields else None
        flag = "--" + name.replace("_", "-")
        help_text = f"{option.help} ({_default_text(name, default)})"
        choices = sharing.strategies() if name == "sharing" else option.choices
        if choices:
            help_text += f"; one of {', '.join(choices)}"
        if option.kind is bool:
            p.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
            continue
        kind: Any = {
            int: int,
            float: float,
            str: str,
            tuple: _alpha_list,
            dict: _pairs,
        }[option.kind]
        p.add_argument(
            flag,
            dest=name,
            type=kind,
            default=None,
            metavar="NAME=VALUE,..." if option.kind is dict else name.upper(),
            help=help_text,
        )


def _add_process_flags(p: argparse.ArgumentParser) -> None:
    """Flags that join the processes of a multi-process run (jax.distributed)."""
    g = p.add_argument_group(
        "several processes (jax.distributed; start the same command in every process)"
    )
    g.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        default=None,
        help="address of process 0 and a free port (default: JAX_COORDINATOR_ADDRESS)",
    )
    g.add_argument(
        "--num-processes",
        type=int,
        metavar="P",
        default=None,
        help="number of processes",
    )
    g.add_argument(
        "--process-id",
        type=int,
        metavar="I",
        default=None,
        help="this process's id, 0..P-1 (process 0 writes the results)",
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="join the processes that a cluster manager (Slurm, Open MPI, "
        "Kubernetes, Cloud TPU) started, as JAX detects them",
    )


def _add_plan_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device-memory",
        metavar="SIZE",
        default=None,
        help="with --dry-run: plan for a device of this memory, e.g. 80GB, 141GB, "
        "24GiB (default: this device's free memory)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jwins",
        description="Simulate decentralized learning with JWINS and its baselines.",
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run one experiment",
        description="Run one experiment. The dataset brings the paper's settings "
        "of the fields whose default is 'per dataset' (model, partition, rounds, "
        "local_steps, batch_size, lr, eval_every); a value set in --config FILE or "
        "as a flag wins. The run's first status line names the values taken from "
        "the dataset.",
    )
    _add_config_flags(run)
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue a stopped run from its newest checkpoint (the run's "
        "own config is used; only --quiet may be given besides)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="compile the round and print its memory, the state's bytes per node "
        "and the largest n that fits --device-memory; run and write nothing",
    )
    _add_plan_flags(run)
    _add_process_flags(run)
    comp = sub.add_parser(
        "compare", help="run several strategies on the same config (make run)"
    )
    comp.add_argument(
        "--strategies",
        default="full,jwins",
        help="comma-separated strategies to compare (default: full,jwins)",
    )
    _add_config_flags(comp)
    comp.add_argument("--quiet", action="store_true", help="no progress output")
    _add_process_flags(comp)
    sweep = sub.add_parser(
        "sweep", help="run many configs side by side, one compiled program per group"
    )
    sweep.add_argument("spec", help="sweep spec, TOML or JSON (see jwins_jax/sweep.py)")
    sweep.add_argument(
        "--dry-run",
        action="store_true",
        help="print the configs, their grouping and batching, and each group's "
        "memory plan (compiled, not run); write nothing",
    )
    sweep.add_argument(
        "--batch",
        type=int,
        default=None,
        help="configs per compiled batch (default: the spec's, else from "
        "the device's free memory)",
    )
    _add_config_flags(sweep)
    sweep.add_argument("--quiet", action="store_true", help="no progress output")
    _add_plan_flags(sweep)
    _add_process_flags(sweep)
    show = sub.add_parser("show", help="print the summary of a run")
    show.add_argument("run_dir", help="a results directory written by jwins run")
    from jwins_jax import reproduce

    rep = sub.add_parser(
        "reproduce",
        help="the paper's claims: run the claim sweeps, write REPRODUCTION.md",
        description="Run a dataset's claim sweeps and write the report.",
    )
    reproduce.add_arguments(rep)
    _add_bench_flags(
        sub.add_parser(
            "bench-kernels",
            help="time the sharing kernels (transforms, rankings, selections, fills) "
            "on this device",
        )
    )
    return parser


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of integers: give comma-separated integers"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("the list is empty")
    return values


def _add_bench_flags(p: argparse.ArgumentParser) -> None:
    from jwins_jax.kernelbench import FAMILIES, PRESETS

    presets = "; ".join(
        f"{k}: N = {','.join(map(str, v['sizes']))}, n = "
        f"{','.join(map(str, v['nodes']))}"
        for k, v in PRESETS.items()
    )
    p.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="default",
        help=f"sizes and repeats ({presets}; small runs in under a minute on a CPU)",
    )
    p.add_argument(
        "--sizes",
        type=_int_list,
        default=None,
        metavar="N,...",
        help="model lengths N (default: the preset's)",
    )
    p.add_argument(
        "--nodes",
        type=_int_list,
        default=None,
        metavar="n,...",
        help="node counts n (default: the preset's)",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed calls per kernel (>= 1)"
    )
    p.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"kernel families, comma separated (default: {','.join(FAMILIES)})",
    )
    p.add_argument(
        "--no-registered",
        action="store_true",
        help="leave out the blocks of registered strategies",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=30.0,
        help="skip a kernel whose call would take longer, extrapolated from the "
        "previous size (seconds; default 30)",
    )
    p.add_argument("--out-dir", default="runs", help="where to write (default: runs)")
    p.add_argument(
        "--name",
        default=None,
        help="results directory name (default: bench-kernels-<platform>)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields (and registered strategies' options) given as flags."""
    return {
        name: getattr(args, name)
        for name in _setting_names()
        if getattr(args, name, None) is not None
    }


def typed_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, checked; ``--sharing-options NAME=VALUE,...`` becomes one
    entry per option (a flag of the option itself wins)."""
    from jwins_jax.config import Config
    from jwins_jax.options import parse_text

    changes = config_overrides(args)
    for key, text in changes.pop("sharing_options", ()):
        option = sharing_option(key)
        changes.setdefault(key, parse_text(key, text, option.kind))
    return {
        name: Config.option(name).validate(name, value)
        for name, value in changes.items()
    }


def config_from_args(args: argparse.Namespace):
    """The config file (if any) with the flags given on the command line on top."""
    from jwins_jax.config import Config

    config = Config.from_file(args.config) if args.config else Config()
    return config.updated(typed_overrides(args))


def sharing_option(name: str):
    """The option of a registered strategy (ConfigError naming the known ones)."""
    from jwins_jax.sharing import user_options

    known = user_options()
    if name not in known:
        raise ConfigError(
            f"--sharing-options: {name!r} is not an option of a registered strategy; "
            f"registered options: {', '.join(sorted(known)) or 'none'}"
        )
    return known[name]


def _fmt_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{b:.0f} B"
        b /= 1024
    return f"{b:.1f} TiB"


def _fmt_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.1f} ms"


def print_table(rows: list[dict[str, Any]], out=None) -> None:
    """A plain-text table of final accuracy, bytes per node and simulated time (mean
    over nodes), one row per run, with each run's ratio to full sharing's (or the
    first run's) bytes and time."""
    out = sys.stdout if out is None else out
    done = [r for r in rows if r.get("final")]
    base = next(
        (r for r in done if r.get("sharing") == "full"), done[0] if done else None
    )
    base_name = (base.get("sharing") or base.get("label") or "first") if base else "-"

    def ratio(r: dict[str, Any], value) -> str:
        ref = value(base["final"]) if base is not None else None
        mine = value(r.get("final") or {})
        return f"{mine / ref:.3f}x" if mine is not None and ref else "-"

    def sim_time(final: dict[str, Any]) -> float | None:
        return (final.get("sim_time_s") or {}).get("mean")

    header = (
        "run",
        "status",
        "test acc (mean ± std)",
        "bytes/node",
        "vs " + base_name,
        "sim time",
        "vs " + base_name,
        "rounds",
    )
    lines = [header]
    for r in rows:
        f = r.get("final") or {}
        acc = f.get("test_acc") or {}
        if acc.get("mean") is None:
            acc_text = "-"
        else:
            acc_text = f"{acc['mean']:.2f} ± {acc.get('std') or 0.0:.2f} %"
        b = f.get("bytes_per_node")
        t = sim_time(f)
        lines.append(
            (
                str(r.get("label") or r.get("sharing") or r.get("name") or "?"),
                str(r.get("status", "?")),
                acc_text,
                _fmt_bytes(b) if b is not None else "-",
                ratio(r, lambda f: f.get("bytes_per_node")),
                _fmt_seconds(t) if t is not None else "-",
                ratio(r, sim_time),
                str(r.get("rounds_done", f.get("round", 0))),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for i, line in enumerate(lines):
        out.write(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() + "\n"
        )
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.flush()


def _progress(args: argparse.Namespace, label: str):
    from jwins_jax.devices import is_primary
    from jwins_jax.runner import Progress

    return Progress(label, enabled=not args.quiet and is_primary())


def _primary() -> bool:
    from jwins_jax.devices import is_primary

    return is_primary()


def _join_processes(args: argparse.Namespace) -> bool:
    """Joins jax.distributed when asked to (flags or --distributed); before any
    JAX computation. Returns whether this is a multi-process run."""
    asked = (
        getattr(args, "distributed", False)
        or getattr(args, "coordinator", None) is not None
        or getattr(args, "num_processes", None) is not None
        or getattr(args, "process_id", None) is not None
    )
    if not asked or getattr(args, "dry_run", False):
        return False
    from jwins_jax import devices

    devices.initialize(args.coordinator, args.num_processes, args.process_id)
    return True


def _device_memory(args: argparse.Namespace) -> int | None:
    from jwins_jax.plan import parse_size

    text = getattr(args, "device_memory", None)
    if text is None:
        return None
    if not getattr(args, "dry_run", False):
        raise ConfigError("--device-memory plans a run: give it with --dry-run")
    return parse_size(text, "--device-memory")


def cmd_run(args: argparse.Namespace) -> int:
    from jwins_jax.runner import resumable, run_config

    memory = _device_memory(args)
    if args.dry_run:
        from jwins_jax.plan import describe_run

        if args.resume is not None:
            raise ConfigError(
                "--dry-run plans a new run; it is not allowed with --resume"
            )
        print(describe_run(config_from_args(args).validate(), memory))
        return 0

    if args.resume is not None:
        given = sorted(config_overrides(args)) + (["config"] if args.config else [])
        if given:
            raise ConfigError(
                "--resume continues a run with its own config; these flags are not "
                "allowed with it: "
                + ", ".join("--" + g.replace("_", "-") for g in given)
            )
        config, run_dir = resumable(args.resume)
        summary = run_config(
            config, progress=_progress(args, config.name), resume=run_dir
        )
    else:
        config = config_from_args(args).validate()
        summary = run_config(config, progress=_progress(args, config.name))
    if _primary():
        print_table([summary])
        print(f"results: {summary['run_dir']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from jwins_jax import experiment as ex
    from jwins_jax.devices import is_primary, on_primary
    from jwins_jax.results import (
        check_out_dir,
        plot_accuracy_vs_bytes,
        read_metrics,
        unique_dir,
        write_json,
    )
    from jwins_jax.runner import run_config
    from jwins_jax.sharing import strategies as registered

    if args.sharing is not None:
        raise ConfigError(
            "compare takes --strategies, not --sharing "
            f"(e.g. --strategies full,{args.sharing})"
        )
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    allowed = registered()
    if not strategies:
        raise ConfigError("--strategies is empty; allowed: " + ", ".join(allowed))
    for s in strategies:
        if s not in allowed:
            raise ConfigError(
                f"strategy {s!r} is unknown; allowed: {', '.join(allowed)}"
            )
    dupes = sorted({s for s in strategies if strategies.count(s) > 1})
    if dupes:
        raise ConfigError(f"--strategies names {', '.join(dupes)} more than once")
    base = config_from_args(args)
    progress = _progress(args, "compare")
    # Build every strategy before running anything: bad settings fail first.
    configs = [base.replace(sharing=s, name=s).validate() for s in strategies]
    check_out_dir(base.out_dir)
    dataset = ex.load_data(configs[0], progress.stage)
    built, shared = [], None
    for c in configs:
        exp = ex.build_experiment(c, dataset)
        inputs = ex.build_inputs(c, dataset, progress.stage, data=shared)
        shared = inputs
        built.append((exp, inputs, ex.hparams(exp, c)))
    v = configs[0].validate()
    out = pathlib.Path(
        on_primary(
            lambda: str(
                unique_dir(
                    base.out_dir,
                    base.name or f"compare-{v.dataset}-n{v.nodes}-s{v.seed}",
                )
            )
        )
    )
    summaries = []
    for c, triple in zip(configs, built):
        try:
            summary = run_config(
                c.replace(out_dir=str(out)), progress=progress, experiment=triple
            )
        except DivergenceError as err:
            progress.stage(f"{c.sharing} diverged: {err}; going on with the others")
            summary = err.summary  # type: ignore[attr-defined]
        summaries.append(summary)
    if not is_primary():  # process 0 writes the comparison
        return 1 if any(s["status"] == "diverged" for s in summaries) else 0
    runs = {s["sharing"]: read_metrics(s["run_dir"]) for s in summaries}
    title = f"{v.dataset}, {v.nodes} nodes"
    plot_accuracy_vs_bytes(runs, out / "accuracy_vs_bytes.png", title)
    plot_accuracy_vs_bytes(runs, out / "accuracy_vs_time.png", title, x="sim_time_s")
    write_json(out / "comparison.json", {s["sharing"]: s for s in summaries})
    print_table(summaries)
    print(f"results: {out}")
    return 1 if any(s["status"] == "diverged" for s in summaries) else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from jwins_jax import sweep as sw

    overrides = typed_overrides(args)
    if args.config:
        from jwins_jax.config import Config, read_table

        table = read_table(args.config)
        Config.from_dict(table, source=args.config)  # its own errors name the file
        overrides = {**table, **overrides}
    spec = sw.load_spec(args.spec, overrides=overrides)
    if args.batch is not None and args.batch < 1:
        raise ConfigError(
            f"--batch={args.batch} is not allowed: give a positive integer"
        )
    memory = _device_memory(args)
    if args.dry_run:
        from jwins_jax.plan import describe_sweep

        print(sw.describe(spec, args.batch))
        print(describe_sweep(spec, args.batch, memory))
        return 0
    progress = _progress(args, f"sweep {spec.name}")
    summaries = sw.run_sweep(spec, batch=args.batch, progress=progress)
    if _primary():
        rows = [dict(s, label=s.get("name")) for s in summaries]
        print_table(rows)
        print(f"results: {spec.directory}")
    return 0


def _line_numbers(numbers: list[int], limit: int = 10) -> str:
    text = ", ".join(str(n) for n in numbers[:limit])
    return text + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def cmd_bench_kernels(args: argparse.Namespace) -> int:
    import jax

    from jwins_jax import kernelbench as kb
    from jwins_jax.options import file_name
    from jwins_jax.results import check_out_dir, unique_dir

    preset = kb.PRESETS[args.preset]
    sizes = args.sizes or preset["sizes"]
    nodes = args.nodes or preset["nodes"]
    repeats = preset["repeats"] if args.repeats is None else args.repeats
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = [f for f in families if f not in kb.FAMILIES]
    if bad or not families:
        raise ConfigError(
            f"--families={args.families!r} is not allowed: give some of "
            + ", ".join(kb.FAMILIES)
        )
    if any(not 16 <= s <= 2**31 - 1 for s in sizes):
        raise ConfigError(
            f"--sizes={','.join(map(str, sizes))} is not allowed: each N must be an "
            "integer in [16, 2147483647]"
        )
    if any(not 1 <= n <= 100_000 for n in nodes):
        raise ConfigError(
            f"--nodes={','.join(map(str, nodes))} is not allowed: each n must be an "
            "integer in [1, 100000]"
        )
    if repeats < 1:
        raise ConfigError(f"--repeats={repeats} is not allowed: give at least 1")
    if not args.time_budget > 0:
        raise ConfigError(f"--time-budget={args.time_budget} is not allowed: > 0")
    name = args.name or f"bench-kernels-{jax.devices()[0].platform}"
    file_name("--name", name)
    check_out_dir(args.out_dir)
    result = kb.run(
        sizes,
        nodes,
        repeats=repeats,
        families=families,
        registered=not args.no_registered,
        time_budget_s=args.time_budget,
        log=None if args.quiet else (lambda text: print(f"[bench-kernels] {text}")),
    )
    out = unique_dir(args.out_dir, name)
    kb.write(result, out)
    print(kb.table(result))
    env = result["environment"]
    print(f"{env['device']}, jax {env['jax']}, {env['date']}")
    print(f"results: {out}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from jwins_jax.checkpoint import rounds
    from jwins_jax.results import load_metrics, load_summary

    run_dir = pathlib.Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{args.run_dir!r} is not a directory")
    files = ("summary.json", "metrics.jsonl", "config.json")
    if not any((run_dir / f).exists() for f in files):
        raise ConfigError(
            f"{args.run_dir!r} is not a results directory (no summary.json, "
            "metrics.jsonl or config.json)"
        )
    summary, problem = load_summary(run_dir)
    metrics = load_metrics(run_dir)
    records = metrics.records
    notes = []
    if problem is not None:
        status = "unknown (summary.json is unreadable)"
        notes.append(f"summary.json {problem}; shown: what metrics.jsonl holds")
    elif summary is None:
        status = (
            "unknown (no summary.json: still running, or stopped without one: "
            "killed, or the disk was full)"
        )
    else:
        status = str(summary.get("status", "unknown"))
    summary = summary or {"name": run_dir.name}
    final = summary.get("final") if isinstance(summary.get("final"), dict) else None
    if not final and records:
        final = records[-1]
    row = {
        "label": str(summary.get("name", run_dir.name)),
        "sharing": summary.get("sharing"),
        "status": status,
        "final": final,
        "rounds_done": (final or {}).get("round", 0),
    }
    print_table([row])
    wall = summary.get("wall_s")
    extra = f", wall time {wall:.1f} s" if isinstance(wall, (int, float)) else ""
    print(f"status: {row['status']}{extra}")
    if summary.get("error"):
        print(f"error: {summary['error']}")
    last = f", the last of round {records[-1].get('round')}" if records else ""
    print(f"metrics.jsonl: {len(records)} evaluations{last}")
    if metrics.malformed:
        print(
            f"metrics.jsonl: malformed lines (not shown): "
            f"{_line_numbers(metrics.malformed)}"
        )
    for note in notes:
        print(note)
    if status != "finished" and (run_dir / "config.json").is_file():
        saved = rounds(run_dir)
        when = "if it no longer runs, " if summary.get("status") is None else ""
        if saved:
            print(
                f"newest checkpoint: round {saved[-1]}; {when}continue with: "
                f"jwins run --resume {run_dir}"
            )
        else:
            print(
                f"no checkpoint: {when}jwins run --resume {run_dir} runs it again "
                "from round 0"
            )
    return 0


class _NotFromOrbax:
    """A logging filter dropping orbax-checkpoint's records."""

    @staticmethod
    def filter(record) -> bool:
        return f"{os.sep}orbax{os.sep}" not in record.pathname


def _quiet_checkpoint_writers() -> None:
    """Keeps a failed checkpoint save (a full disk) to the one line the command line
    writes about it: orbax's writer threads log the failure with tracebacks, and
    the array library's write callbacks that complete after the failed save find
    their event loop closed (reported as "unraisable"). Both are left out; any other
    unraisable error is still reported. Process-wide, so only the entry point does
    it."""
    import logging

    logging.getLogger("absl").addFilter(_NotFromOrbax())
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        closed = (
            isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"
        )
        if not closed:
            previous(unraisable)

    sys.unraisablehook = hook


def _interrupted() -> int:
    runner = sys.modules.get("jwins_jax.runner")
    started = list(getattr(runner, "STARTED", [])) if runner is not None else []
    if started:
        where = ", ".join(str(d) for d in started[-3:])
        sys.stderr.write(
            f"\njwins: interrupted; what was computed is kept in {where}\n"
        )
    else:
        sys.stderr.write(
            "\njwins: interrupted before a run started; nothing was written\n"
        )
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    from jwins_jax.stopping import stop_on_signals

    with stop_on_signals() as stop:
        code = _main(argv, stop)
    devices = sys.modules.get("jwins_jax.devices")
    if devices is not None and devices.joined():
        if code not in (0, 130):
            # A failure, perhaps of this process alone: the others learn of it at
            # their next collective. Waiting for them to leave together could take
            # as long as JAX's heartbeat; go now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        devices.leave()  # finished or interrupted everywhere: leave together
    return code


def _main(argv: Sequence[str] | None, stop) -> int:
    from jwins_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # before the first JAX computation starts its threads
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command in ("run", "compare", "sweep", "reproduce") and not getattr(
            args, "dry_run", False
        ):  # a dry run writes nothing, not even the cache
            from jwins_jax.cache import enable_compilation_cache

            enable_compilation_cache()
            _quiet_checkpoint_writers()
        stop.check(" while starting")
    except SystemExit as exit_:  # --help, or a bad flag (already reported on one line)
        return exit_.code if isinstance(exit_.code, int) else 2
    except (KeyboardInterrupt, Terminated):
        return _interrupted()
    try:
        if args.command in ("run", "compare", "sweep"):
            _join_processes(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "reproduce":
            from jwins_jax import reproduce

            return reproduce.run(args)
        if args.command == "bench-kernels":
            return cmd_bench_kernels(args)
        return cmd_show(args)
    except ConfigError as err:
        sys.stderr.write(f"jwins: error: {err}\n")
        return 2
    except DivergenceError as err:
        sys.stderr.write(f"jwins: diverged: {err}\n")
        return 1
    except RunFailed as err:
        if os.environ.get("JWINS_DEBUG"):
            raise
        sys.stderr.write(f"jwins: failed: {err} (JWINS_DEBUG=1 shows the traceback)\n")
        return 1
    except (KeyboardInterrupt, Terminated):
        return _interrupted()
    except BrokenPipeError:  # output piped into a program that stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # noqa: BLE001 - an unexpected failure: one line, exit 1
        if os.environ.get("JWINS_DEBUG"):
            raise
        text = " ".join(str(err).split())[:300]
        sys.stderr.write(
            f"jwins: failed: {type(err).__name__}: {text} (JWINS_DEBUG=1 shows the "
            "traceback)\n"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
