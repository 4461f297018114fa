"""The ``jwins`` command line.

* ``jwins run [--config FILE] [--FIELD VALUE ...]``: one experiment (default: full
  sharing, 96 nodes on the paper's graph, digits, Dirichlet non-IID);
* ``jwins compare [--strategies full,jwins] [...]``: several strategies on the same
  config, seed and data, with a table of accuracy and bytes and a PNG of accuracy
  against bytes (``make run`` runs this with its defaults);
* ``jwins show RUN_DIR``: prints a finished run's summary.

Bad input prints one line on stderr and exits with status 2; a diverged run exits
with status 1 and keeps its metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Any, Sequence

from jwins_jax.config import Config
from jwins_jax.errors import ConfigError, DivergenceError

HELP = {
    "nodes": "number of nodes n",
    "topology": "graph: edges, regular, ring, torus, complete, star, small_world",
    "edges_file": "edges file for topology=edges (default: the paper's 96-node graph)",
    "degree": "degree of regular / dynamic graphs; small_world uses degree/2 per side",
    "dynamic": "draw a fresh random d-regular graph every round (SPEC 6.4)",
    "beta": "rewiring probability of small_world",
    "dataset": "digits (embedded), synthetic_cifar, cifar10 (tfds data_source)",
    "model": "digits_cnn or gn_lenet (default: follows the dataset)",
    "partition": "iid, dirichlet or kshard (SPEC 7.1)",
    "dirichlet_alpha": "Dirichlet concentration for partition=dirichlet (> 0)",
    "shards": "shards per node for partition=kshard",
    "data_dir": "tfds data directory for cifar10",
    "rounds": "communication rounds T",
    "local_steps": "local SGD steps per round (tau)",
    "batch_size": "minibatch size b",
    "lr": "learning rate",
    "momentum": "SGD momentum (paper: 0)",
    "weight_decay": "weight decay (paper: 0)",
    "train_chunk": "train nodes in groups of at most this many (0: all at once); bounds memory",
    "seed": "seed of the run (model init, batches, masks, partition)",
    "eval_every": "rounds between evaluations",
    "test_subset": "evaluate on the first K test samples (0: all)",
    "sharing": "full, random, topk, wavelet, jwins, choco",
    "alpha": "fraction shared by random / topk / wavelet / choco, in (0, 1]",
    "alpha_list": "JWINS alpha list, comma separated (default: the paper's)",
    "metadata_cap": "alpha >= cap sends everything (default 0.5 for jwins, else 1.0)",
    "wavelet": "PyWavelets discrete wavelet name (wavelet, jwins)",
    "level": "wavelet decomposition level",
    "accumulation": "none, accumulate or legacy (default legacy for jwins, else none)",
    "selection": "change (rank the accumulated change) or magnitude",
    "gamma": "CHOCO-SGD consensus step size",
    "wavelet_backend": "auto, polyphase or jaxwt",
    "topk_method": "per-node top-k kernel: auto, bisect, sort, top_k",
    "out_dir": "directory for results",
    "name": "run name (default: <sharing>-<dataset>-n<nodes>-s<seed>)",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _alpha_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(
            float(v)
            for v in text.replace("[", "").replace("]", "").split(",")
            if v.strip()
        )
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid alpha list {text!r}: give comma-separated numbers in (0, 1]"
        ) from None


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", metavar="FILE", help="JSON or TOML file of config fields"
    )
    defaults = Config()
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{HELP.get(f.name, f.name)} (default: {default})"
        if f.name == "dynamic":
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
            continue
        if f.name == "alpha_list":
            kind: Any = _alpha_list
        elif isinstance(default, bool):
            kind = bool
        elif isinstance(default, int):
            kind = int
        elif isinstance(default, float) or f.name == "metadata_cap":
            kind = float
        else:
            kind = str
        p.add_argument(
            flag,
            dest=f.name,
            type=kind,
            default=None,
            metavar=f.name.upper(),
            help=help_text,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jwins",
        description="Simulate decentralized learning with JWINS and its baselines.",
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    run = sub.add_parser("run", help="run one experiment")
    _add_config_flags(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    comp = sub.add_parser(
        "compare", help="run several strategies on the same config (make run)"
    )
    comp.add_argument(
        "--strategies",
        default="full,jwins",
        help="comma-separated strategies to compare (default: full,jwins)",
    )
    _add_config_flags(comp)
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    show = sub.add_parser("show", help="print the summary of a finished run")
    show.add_argument("run_dir", help="a results directory written by jwins run")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The config file (if any) with the flags given on the command line on top."""
    config = Config.from_file(args.config) if args.config else Config()
    changes = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Config)
        if getattr(args, f.name, None) is not None
    }
    return config.replace(**changes)


def _fmt_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{b:.0f} B"
        b /= 1024
    return f"{b:.1f} TiB"


def print_table(rows: list[dict[str, Any]], out=None) -> None:
    """A plain-text table of final accuracy and bytes per node."""
    out = sys.stdout if out is None else out
    base = next((r for r in rows if r["sharing"] == "full"), rows[0])
    header = (
        "strategy",
        "test acc (mean ± std)",
        "bytes/node",
        "vs " + base["sharing"],
        "rounds",
    )
    lines = [header]
    for r in rows:
        f = r["final"]
        ratio = f["bytes_per_node"] / max(base["final"]["bytes_per_node"], 1.0)
        lines.append(
            (
                r["sharing"],
                f"{f['test_acc']['mean']:.2f} ± {f['test_acc']['std']:.2f} %",
                _fmt_bytes(f["bytes_per_node"]),
                f"{ratio:.3f}x",
                str(f["round"]),
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


def cmd_run(args: argparse.Namespace) -> int:
    from jwins_jax.results import run_experiment

    config = config_from_args(args)
    summary = run_experiment(config, progress=not args.quiet)
    print_table([summary])
    print(f"results: {summary['run_dir']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from jwins_jax.results import (
        plot_accuracy_vs_bytes,
        read_metrics,
        run_experiment,
        unique_dir,
        write_json,
    )
    from jwins_jax.sharing import STRATEGIES

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies:
        raise ConfigError("--strategies is empty; allowed: " + ", ".join(STRATEGIES))
    for s in strategies:
        if s not in STRATEGIES:
            raise ConfigError(
                f"strategy {s!r} is unknown; allowed: {', '.join(STRATEGIES)}"
            )
    base = config_from_args(args)
    # Validate every variant before running anything.
    configs = [base.replace(sharing=s, name=s).validate() for s in strategies]
    out = unique_dir(
        base.out_dir, base.name or f"compare-{base.dataset}-n{base.nodes}-s{base.seed}"
    )
    configs = [c.replace(out_dir=str(out)) for c in configs]
    summaries = []
    for c in configs:
        summaries.append(run_experiment(c, progress=not args.quiet))
    runs = {s["sharing"]: read_metrics(s["run_dir"]) for s in summaries}
    plot_accuracy_vs_bytes(
        runs, out / "accuracy_vs_bytes.png", f"{base.dataset}, {base.nodes} nodes"
    )
    write_json(out / "comparison.json", {s["sharing"]: s for s in summaries})
    print_table(summaries)
    print(f"results: {out}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    path = pathlib.Path(args.run_dir) / "summary.json"
    if not path.is_file():
        raise ConfigError(
            f"{args.run_dir!r} is not a results directory (no summary.json)"
        )
    summary = json.loads(path.read_text())
    if not summary.get("final"):
        print(f"{summary['name']}: {summary['status']}, no evaluation recorded")
        return 0
    print_table([summary])
    print(f"status: {summary['status']}, wall time {summary['wall_s']:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a bad flag (already reported on one line)
        return stop.code if isinstance(stop.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "compare":
            return cmd_compare(args)
        return cmd_show(args)
    except ConfigError as err:
        sys.stderr.write(f"jwins: error: {err}\n")
        return 2
    except DivergenceError as err:
        sys.stderr.write(f"jwins: diverged: {err}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("jwins: interrupted; results so far are kept\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
