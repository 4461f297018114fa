"""The markdown report of the section files: one generic table renderer, no verdicts.

Each section file (``<out>/<section>.json``) holds its environment and flat rows; a
table is a list of columns, each a header and a function of a row. What a number is
held against (the targets) is written in RESULTS.md's text, not here. A full run's
report replaces the previous generated section of the same device in RESULTS.md
(between ``<!-- generated: DEVICE -->`` and ``<!-- end generated -->``); text outside
the markers is kept.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from jwins_jax.analysis import markdown_table
from jwins_jax.kernelbench import FAMILIES

SECTIONS = (
    "machine",
    "e2e",
    "paper",
    "clock",
    "kernels",
    "scaling",
    "devices",
    "sweep",
    "gpu",
)
HERE_MARK = "<!-- generated blocks go here -->"


def paper_run_s(round_s: float, eval_s: float) -> float:
    """Seconds of the paper's CIFAR-10 run: 2,166 rounds, an evaluation every 21."""
    return 2166 * round_s + 2166 // 21 * eval_s


Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


def seconds(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1e3:.1f} ms" if value >= 0.01 else f"{value * 1e3:.2f} ms"


def _median_spread(r: Row, median: str, low: str, high: str, count: str) -> str:
    """A median with its spread (fastest-slowest) when repeated."""
    text = seconds(r[median])
    if r.get(count, 1) > 1:
        text += f" ({seconds(r[low])}-{seconds(r[high])})"
    return text


def _spread(r: Row, key: str) -> str:
    """The median of ``key`` (the suite's names) with its spread."""
    if f"{key}_s" not in r:
        return r.get("error", "-") if key.endswith("round") else "-"
    return _median_spread(r, f"{key}_s", f"{key}_min_s", f"{key}_max_s", f"{key}_n")


def _kernel_time(prefix: str) -> Callable[[Row], str]:
    """A cell of ``jwins bench-kernels``' times (``median_s``, ``min_s``, ``max_s``,
    ``repeats``; prefixed ``baseline_`` for the per-node way)."""

    def cell(r: Row) -> str:
        if f"{prefix}median_s" not in r:
            return "-" if prefix else r.get("skipped") or r.get("error", "-")
        keys = ("median_s", "min_s", "max_s", "repeats")
        return _median_spread(r, *(prefix + k for k in keys))

    return cell


def _ratio(r: Row, slow: str, fast: str) -> str:
    if f"{slow}_s" not in r or f"{fast}_s" not in r:
        return "-"
    return f"{r[f'{slow}_s'] / r[f'{fast}_s']:.2f}x"


def _value(r: Row, key: str, fmt: str) -> str:
    value = r.get(key)
    if value is None:
        return "-"
    if fmt == "s":
        return seconds(value)
    if fmt in ("GiB", "MiB"):
        return f"{value / 2 ** (30 if fmt == 'GiB' else 20):.2f} {fmt}"
    return ("{:" + fmt + "}").format(value)


def _cell(how: str) -> Callable[[Row], str]:
    if how == "load":
        return lambda r: (
            f"{r['load_before']:.1f}/{r['load_after']:.1f}; {r['busy_others']}"
            if "load_before" in r
            else "-"
        )
    if how.startswith("~"):
        return lambda r: _spread(r, how[1:])
    if "/" in how:
        slow, fast = how.split("/")
        return lambda r: _ratio(r, slow, fast)
    key, _, fmt = how.partition(":")
    return lambda r: _value(r, key, fmt)


def columns(spec: str) -> list[Column]:
    """Columns from ``"header=how; ..."``. ``how`` is ``key`` or ``key:format``
    (a format spec, ``s`` for seconds, ``GiB``/``MiB`` for bytes), ``~key`` (the
    median with its spread), ``slow/fast`` (a ratio of medians), or ``load``; a lone
    ``key`` is its own header."""
    out = []
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        header, _, how = item.partition("=")
        out.append((header, _cell(how or header)))
    return out


def table(rows: list[Row], cols: list[Column] | str) -> list[str]:
    """A markdown table: one line per row, one cell per column."""
    cols = columns(cols) if isinstance(cols, str) else cols
    cells = ([f(r) for _, f in cols] for r in rows)
    return [markdown_table([h for h, _ in cols], cells), ""]


LOAD = "load (1-min average before/after, busy others)=load"
E2E = (
    "workload; strategy; N=N:,; round, ours=~ours_round; per node=~base_round; "
    "ratio=base_round/ours_round; training, ours=~ours_train; per node=~base_train; "
    "ratio=base_train/ours_train; sharing, ours=~ours_share; per node=~base_share; "
    "ratio=base_share/ours_share; evaluation, ours=~ours_eval; per node=~base_eval; "
    "ratio=base_eval/ours_eval; " + LOAD
)
E2E_MORE = (
    "workload; strategy; compile round=compile_round_s:s; training=compile_train_s:s; "
    "sharing=compile_share_s:s; evaluation=compile_eval_s:s; "
    "training GFLOP/s, ours=ours_train_gflops:.1f; per node=base_train_gflops:.1f; "
    "trained equal (rel. error)=check_train_error:.1e; "
    "shared equal=check_share_error:.1e; bytes equal=check_bytes_equal"
)
PAPER_COLS = (
    "workload; model; N=N:,; tau; b; rounds T=paper_rounds:,; compile=compile_round_s:s; "
    "s / round=~ours_round; T rounds (h, no evaluation)=run_hours:.1f; " + LOAD
)
SCALING = (
    "workload; strategy; n=n:,; s / round=~round; compile=compile_round_s:s; "
    "peak RSS=peak_rss_bytes:GiB; per node=node_bytes:MiB"
)
SHARE = "strategy; n; N=N:,; step=~round; compile=compile_round_s:s; peak RSS=peak_rss_bytes:GiB"
SWEEP = (
    "K=k; rounds; nodes; processes=~processes; sequential=~sequential; vmapped=~vmapped; "
    "vs processes=processes/vmapped; start-up (K x)=startups_s:s; "
    "compile=compile_s:s; batching=sequential/vmapped; " + LOAD
)
SWEEP_TEXT = (
    "K digits configs, each way from a fresh process and cache: K `jwins run` "
    "processes sharing the cache, one `jwins sweep --batch 1` (sequential), one "
    "`jwins sweep` (vmapped). Start-up = K processes that import the command line "
    "and start JAX; compile = first process - later process (what the cache saves); "
    "batching = sequential / vmapped."
)
DEVICES = "workload; n=n:,; devices; s / round=~round; compile=compile_round_s:s"
CLOCK = (
    "workload; model; n; N=N:,; tau; b; with clock=~clock; without=~no_clock; "
    "with / without (median of turns)=turn_ratio:.3f; ratio of medians=clock/no_clock; "
    "compile, with=compile_round_s:s; without=compile_no_clock_round_s:s; "
    "simulated s per call=clock_shift_s:.3g; models differ=models_rel_diff:.1e; " + LOAD
)
CLOCK_TEXT = (
    "The round as `jwins run` compiles it (R rounds per call, s / round), timed in "
    "turns with the same program built with `simtime.advance` replaced by a "
    "function that returns the clocks unchanged (`benchmarks/e2e.py`, "
    "`without_clock`); with / without is the median over turns of the two times' "
    "ratio."
)
GPU_PAPER = (
    "n; train_chunk; s / round=~round; evaluation=~eval; images/s=images_per_s:,.0f; "
    "2,166 rounds + 103 evaluations (min)=paper_run_min:.1f"
)
GPU_ROUNDS = "workload; n=n:,; strategy; s / round=~round; compile=compile_round_s:s"


def e2e(rows: list[Row], machine: Row | None) -> list[str]:
    text = [
        "Ours: the round as `jwins run` compiles it (`runner.programs(...).advance`, "
        "R rounds per call), and its parts jitted alone. Per node: the original's "
        "engine, PyTorch training node by node and NumPy/PyWavelets sharing "
        "(`jwins_jax.testing.reference`), in a process of its own without JAX, "
        "timed in turns with ours. Median (fastest-slowest); ratio = per node / ours.",
        "",
        *table(rows, E2E),
    ]
    rate = machine["matmul_gflops"] if machine else float("nan")
    text += [
        f"Compile times, training FLOP rates (matmul: {rate:.0f} GFLOP/s) and "
        "the per-node first round checked against ours:",
        "",
    ]
    text += table(rows, E2E_MORE)
    for r in rows:
        paper = r.get("workload") == "cifar" and r.get("strategy") == "jwins"
        if paper and "ours_eval_s" in r:
            scale = (10_000 + 520) / (r["test_samples"] + r["train_per_node"])
            run = paper_run_s(r["ours_round_s"], r["ours_eval_s"] * scale)
            text += [
                f"Paper-scale CIFAR-10 run (2,166 rounds, 103 evaluations on "
                f"10,000 images, extrapolated): {run / 60:.0f} min.",
                "",
            ]
    return text


def _check(r: Row) -> str:
    if "median_s" not in r:
        return "-"
    text = "ok" if r.get("correct") else "WRONG"
    if r.get("recall") is not None:
        text = f"recall {r['recall']:.4f}"
    return text


def _kernel_ratio(r: Row) -> str:
    if "baseline_median_s" not in r or "median_s" not in r:
        return "-"
    return f"{r['baseline_median_s'] / r['median_s']:.2f}x"


KERNEL_COLS = columns("n; N=N:,; kernel") + [
    ("ours", _kernel_time("")),
    ("per node", _kernel_time("baseline_")),
    ("ratio", _kernel_ratio),
    *columns(
        "compile=compile_s:s; memory=total_bytes:MiB; exact=exactness; "
        "differs from per node=baseline_error:.1e"
    ),
    ("check", _check),
]


def fastest_lines(rows: list[Row]) -> list[str]:
    """Per size and per-node way, the fastest correct exact kernel of those doing
    that work (where more than one does)."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        if r.get("correct") and r.get("exactness") == "exact" and "median_s" in r:
            if r.get("baseline"):
                groups.setdefault((r["n"], r["N"], r["baseline"]), []).append(r)
    out = []
    for (n, big_n, base), group in groups.items():
        if len(group) > 1:
            best = min(group, key=lambda r: r["median_s"])
            out.append(
                f"* n = {n}, N = {big_n:,}, the work of {base}: fastest "
                f"{best['kernel']} ({_kernel_ratio(best)} per node / ours)"
            )
    return out + [""] if out else []


def kernels(rows: list[Row]) -> list[str]:
    text = [
        "`jwins bench-kernels`' kernels (`jwins_jax/kernelbench.py`: its timer and "
        "checks), the kernels of a family timed in turns with each other and with "
        "the per-node NumPy/PyWavelets way in a process of its own. Median "
        "(fastest-slowest) per call on (n, N) float32 stacks; ratio = per node / "
        "ours; differs from per node: the fraction of mask entries that differ "
        "(selections), the relative error otherwise.",
        "",
    ]
    for family in FAMILIES:
        fam = [r for r in rows if r.get("family") == family]
        if fam:
            text += [f"**{family}**", "", *table(fam, KERNEL_COLS), *fastest_lines(fam)]
    return text


def growth(rows: list[Row], key: str) -> str:
    """The exponent a of ``key`` ~ n^a, least squares in log-log over the rows."""
    pts = [(r["n"], r[key]) for r in rows if r.get(key, 0) > 0]
    if len(pts) < 2:
        return "-"
    return f"{np.polyfit(*np.log(np.array(pts)).T, 1)[0]:.2f}"


def scaling(rows: list[Row], image: str | None) -> list[str]:
    rounds = [r for r in rows if r.get("kind") == "round"]
    text = [
        "Each point in a fresh process; peak RSS is its `VmHWM`; per node = (peak "
        "- RSS after imports) / n.",
        "",
        *table(rounds, SCALING),
    ]
    for s in ("full", "jwins"):
        mine = [{**r, "mem": r.get("node_bytes", 0) * r.get("n", 0)} for r in rounds]
        mine = [r for r in mine if r.get("strategy") == s]
        text.append(
            f"* {s}: time per round grows as n^{growth(mine, 'round_s')}, memory "
            f"above the runtime as n^{growth(mine, 'mem')} (1.00: linear)."
        )
    text += ["", "The sharing step alone on (n, N) random models:", ""]
    text += table([r for r in rows if r.get("kind") == "share"], SHARE)
    return text + ([f"![scaling]({image})", ""] if image else [])


def gpu(rows: list[Row]) -> list[str]:
    runs = [r for r in rows if r.get("item") == "paper"]
    text = ["Paper-scale CIFAR-10-shaped JWINS run by nodes trained at once:", ""]
    text += table(runs, GPU_PAPER)
    return text + table([r for r in rows if r.get("item") == "rounds"], GPU_ROUNDS)


TITLES = {
    "e2e": "End to end, against the original's engine",
    "paper": "Seconds per JWINS round of each paper workload",
    "clock": "What the simulated clock costs",
    "kernels": "Kernels of the sharing step",
    "scaling": "Scaling with n and N",
    "devices": "Node axis over several devices",
    "sweep": "Sweeps",
    "gpu": "Accelerator",
}


def render(data: dict[str, Any], title: str, image: str | None = None) -> str:
    """The dated markdown section of the section files in ``data``."""
    lines = [f"### {title}", "", "| section | date | device | CPU | JAX | load |"]
    lines.append("|---|---|---|---|---|---|")
    for name, sec in data.items():
        e = sec["env"]
        load = ", ".join(f"{v:.1f}" for v in e["load_average"])
        lines.append(
            f"| {name} | {e['date']} | {e['device_kind']} ({e['backend']}) | "
            f"{e['cpu_model']} x{e['cpu_count']} | {e['jax']} | {load} |"
        )
    lines.append("")
    machine = data.get("machine", {}).get("rows", [{}])[0]
    machine = machine if "matmul_gflops" in machine else None
    if machine:
        lines += [
            f"Machine: jitted 2048x2048 float32 matmul {machine['matmul_gflops']:.0f}"
            " GFLOP/s.",
            "",
        ]
    render_one = {
        "e2e": lambda rows: e2e(rows, machine),
        "paper": lambda rows: table(rows, PAPER_COLS),
        "clock": lambda rows: [CLOCK_TEXT, "", *table(rows, CLOCK)],
        "kernels": kernels,
        "scaling": lambda rows: scaling(rows, image),
        "devices": lambda rows: table(rows, DEVICES),
        "sweep": lambda rows: [SWEEP_TEXT, "", *table(rows, SWEEP)],
        "gpu": gpu,
    }
    for name, fn in render_one.items():
        rows = data.get(name, {}).get("rows")
        if rows is not None:
            failed = len(rows) == 1 and set(rows[0]) == {"error"}
            body = [f"Failed: {rows[0]['error']}", ""] if failed else fn(rows)
            lines += [f"#### {TITLES[name]}", "", *body]
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: pathlib.Path) -> str:
    """Round time and peak RSS against n, step time against N; returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for s, color in (("full", "tab:blue"), ("jwins", "tab:orange")):
        for kind, x, ax, y in (
            ("round", "n", axes[0], lambda r: r["round_s"]),
            ("round", "n", axes[1], lambda r: r["peak_rss_bytes"] / 2**30),
            ("share", "N", axes[2], lambda r: r["round_s"]),
        ):
            pts = sorted(
                (r[x], y(r))
                for r in rows
                if r.get("kind") == kind and r.get("strategy") == s and "round_s" in r
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", color=color, label=s)
    labels = (("s / round", "n"), ("peak RSS (GiB)", "n"), ("s / sharing step", "N"))
    for ax, (ylabel, xlabel) in zip(axes, labels, strict=True):
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.has_data():
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def load(out: pathlib.Path) -> dict[str, Any]:
    """The section files present in ``out``."""
    return {
        name: json.loads((out / f"{name}.json").read_text())
        for name in SECTIONS
        if (out / f"{name}.json").is_file()
    }


def update(results: pathlib.Path, text: str, device: str) -> None:
    """Puts ``text`` into RESULTS.md in place of the device's generated block, or
    (the first time) where ``<!-- generated blocks go here -->`` is, else at the end."""
    begin, end = f"<!-- generated: {device} -->", "<!-- end generated -->"
    block = f"{begin}\n{text}{end}\n"
    body = results.read_text() if results.is_file() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(body):
        body = pattern.sub(lambda _: block, body)
    elif HERE_MARK in body:
        body = body.replace(HERE_MARK, f"{HERE_MARK}\n\n{block}", 1)
    else:
        body = body.rstrip("\n") + "\n\n" + block
    results.write_text(body)
