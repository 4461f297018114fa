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

SECTIONS = ("machine", "e2e", "paper", "kernels", "scaling", "devices", "sweep", "gpu")
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


def T(key: str) -> Callable[[Row], str]:
    """The median of ``key`` with its spread (fastest-slowest) when repeated."""

    def cell(r: Row) -> str:
        if f"{key}_s" not in r:
            return r.get("error", "-") if key.endswith("round") else "-"
        text = seconds(r[f"{key}_s"])
        if r.get(f"{key}_n", 1) > 1:
            text += f" ({seconds(r[f'{key}_min_s'])}-{seconds(r[f'{key}_max_s'])})"
        return text

    return cell


def X(slow: str, fast: str) -> Callable[[Row], str]:
    """``slow / fast`` of two medians (> 1: ``fast`` is faster)."""

    def cell(r: Row) -> str:
        if f"{slow}_s" not in r or f"{fast}_s" not in r:
            return "-"
        return f"{r[f'{slow}_s'] / r[f'{fast}_s']:.2f}x"

    return cell


def K(key: str, fmt: str = "{}") -> Callable[[Row], str]:
    return lambda r: "-" if r.get(key) is None else fmt.format(r[key])


def table(rows: list[Row], columns: list[Column]) -> list[str]:
    """A markdown table: one line per row, one cell per column."""
    out = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(f(r) for _, f in columns) + " |" for r in rows]
    return out + [""]


LOAD: Column = (
    "load (1 min, before/after; busy others)",
    lambda r: (
        f"{r['load_before']:.1f}/{r['load_after']:.1f}; {r['busy_others']}"
        if "load_before" in r
        else "-"
    ),
)
WHAT = [("workload", K("workload")), ("strategy", K("strategy")), ("N", K("N", "{:,}"))]


def e2e(rows: list[Row], machine: Row | None) -> list[str]:
    text = [
        "Ours: the round as `jwins run` compiles it (`runner.programs(...).advance`, "
        "R rounds per call), and its parts jitted alone. Per node: the original's "
        "engine, PyTorch training node by node and NumPy/PyWavelets sharing "
        "(`jwins_jax.testing.reference`), in a process of its own without JAX, "
        "timed in turns with ours. Median (fastest-slowest); ratio = per node / ours.",
        "",
    ]
    pair = []
    for part, name in (("round", "round"), ("train", "training"), ("share", "sharing")):
        pair += [(f"{name}, ours", T(f"ours_{part}")), ("per node", T(f"base_{part}"))]
        pair.append(("ratio", X(f"base_{part}", f"ours_{part}")))
    pair += [("evaluation, ours", T("ours_eval")), ("per node", T("base_eval"))]
    text += table(rows, WHAT + pair + [LOAD])
    rate = machine["matmul_gflops"] if machine else float("nan")
    text += [
        f"Compile times, FLOP rates (matmul: {rate:.0f} GFLOP/s) and checks "
        "of the per-node first round against ours:",
        "",
    ]
    share = lambda k: lambda r: "-" if k not in r else f"{100 * r[k] / rate:.0f} %"  # noqa: E731
    text += table(
        rows,
        WHAT[:2]
        + [
            (f"compile {p}", K(f"compile_{p}_s", "{:.1f} s"))
            for p in ("round", "train", "share", "eval")
        ]
        + [
            ("training GFLOP/s ours", K("ours_train_gflops", "{:.1f}")),
            ("of matmul", share("ours_train_gflops")),
            ("per node", K("base_train_gflops", "{:.1f}")),
            ("of matmul", share("base_train_gflops")),
            ("trained equal (rel. error)", K("check_train_error", "{:.1e}")),
            ("shared equal", K("check_share_error", "{:.1e}")),
            ("bytes equal", K("check_bytes_equal")),
        ],
    )
    for r in rows:
        if r["workload"] == "cifar" and r["strategy"] == "jwins" and "ours_eval_s" in r:
            evaluated = (10_000 + 520) / (r["test_samples"] + r["train_per_node"])
            minutes = (
                2166 * r["ours_round_s"] + 103 * r["ours_eval_s"] * evaluated
            ) / 60
            text += [
                f"Paper-scale CIFAR-10 run (2,166 rounds, 103 evaluations on "
                f"10,000 images, evaluation extrapolated linearly): {minutes:.0f} min.",
                "",
            ]
    return text


def kernels(rows: list[Row]) -> list[str]:
    text = [
        "Median per call on (n, N) float32 stacks, in turns with the per-node "
        "NumPy/PyWavelets way (its own process); `(x)`: output differs from the "
        "per-node one; ratio = per node / fastest correct.",
        "",
    ]
    for family in ("wavelet", "select", "gossip", "gossip_masked"):
        fam = [r for r in rows if r.get("family") == family]
        names = (
            [k[len("compile_") : -2] for k in fam[0] if k.startswith("compile_")]
            if fam
            else []
        )

        def best(r: Row) -> str | None:
            ok = [k for k in names if r.get(f"{k}_ok") and f"{k}_s" in r]
            return min(ok, key=lambda k: r[f"{k}_s"]) if ok else None

        def mark(k: str) -> Callable[[Row], str]:
            return lambda r: T(k)(r) + ("" if r.get(f"{k}_ok", True) else " (x)")

        cols = [("n", K("n")), ("N", K("N", "{:,}"))] + [(k, mark(k)) for k in names]
        cols += [("per node", T("pernode")), ("fastest", lambda r: best(r) or "-")]
        cols.append(("ratio", lambda r: X("pernode", best(r))(r) if best(r) else "-"))
        text += [f"**{family}**", ""] + table(fam, cols)
    return text


def growth(rows: list[Row], x: str, y: Callable[[Row], float]) -> str:
    """The exponent a of y ~ x^a fitted over the rows (least squares in log-log)."""
    pts = [(r[x], y(r)) for r in rows if "round_s" in r and y(r) > 0]
    if len(pts) < 2:
        return "-"
    a = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]
    return f"{a:.2f}"


def scaling(rows: list[Row], image: str | None) -> list[str]:
    rounds = [r for r in rows if r["kind"] == "round"]
    mem = lambda r: (r["peak_rss_bytes"] - r["start_rss_bytes"]) / r["n"]  # noqa: E731
    text = [
        "Each point in a fresh process; peak RSS is its `VmHWM`, memory per node "
        "is (peak - RSS after imports) / n.",
        "",
    ]
    text += table(
        rounds,
        [
            ("workload", K("workload")),
            ("strategy", K("strategy")),
            ("n", K("n", "{:,}")),
            ("s / round", T("round")),
            ("compile", K("compile_round_s", "{:.1f} s")),
            (
                "peak RSS",
                lambda r: (
                    f"{r['peak_rss_bytes'] / 2**30:.2f} GiB"
                    if "peak_rss_bytes" in r
                    else "-"
                ),
            ),
            (
                "per node",
                lambda r: f"{mem(r) / 2**20:.2f} MiB" if "peak_rss_bytes" in r else "-",
            ),
        ],
    )
    for s in ("full", "jwins"):
        mine = [r for r in rounds if r["strategy"] == s]
        text.append(
            f"* {s}: time per round grows as n^{growth(mine, 'n', lambda r: r['round_s'])}, "
            f"memory above the runtime as n^{growth(mine, 'n', lambda r: mem(r) * r['n'])} "
            "(1.00: linear; memory per node flat)."
        )
    shares = [r for r in rows if r["kind"] == "share"]
    text += ["", "The sharing step alone on (n, N) random models:", ""]
    text += table(
        shares,
        [
            ("strategy", K("strategy")),
            ("n", K("n")),
            ("N", K("N", "{:,}")),
            ("step", T("round")),
            ("compile", K("compile_round_s", "{:.1f} s")),
            (
                "peak RSS",
                lambda r: (
                    f"{r['peak_rss_bytes'] / 2**30:.2f} GiB"
                    if "peak_rss_bytes" in r
                    else "-"
                ),
            ),
        ],
    )
    return text + ([f"![scaling]({image})", ""] if image else [])


def sweep(rows: list[Row]) -> list[str]:
    text = [
        "K digits configs, each way from a fresh process and cache: K `jwins run` "
        "processes sharing the cache, one `jwins sweep --batch 1` (sequential), "
        "one `jwins sweep` (vmapped). Start-up = K x a process that imports the "
        "command line and starts JAX; compile = first process - later process; "
        "batching = sequential / vmapped.",
        "",
    ]
    return text + table(
        rows,
        [
            ("K", K("k")),
            ("rounds", K("rounds")),
            ("nodes", K("nodes")),
            ("processes", T("processes")),
            ("sequential", T("sequential")),
            ("vmapped", T("vmapped")),
            ("vs processes", X("processes", "vmapped")),
            ("start-up (K x)", lambda r: seconds(r["k"] * r["startup_s"])),
            ("compile", lambda r: seconds(r["first_process_s"] - r["later_process_s"])),
            ("batching", X("sequential", "vmapped")),
            LOAD,
        ],
    )


def devices(rows: list[Row]) -> list[str]:
    return table(
        rows,
        [
            ("workload", K("workload")),
            ("n", K("n", "{:,}")),
            ("devices", K("devices")),
            ("s / round", T("round")),
            ("compile", K("compile_round_s", "{:.1f} s")),
        ],
    )


def paper(rows: list[Row]) -> list[str]:
    return table(
        rows,
        [
            ("workload", K("workload")),
            ("model", K("model")),
            ("N", K("N", "{:,}")),
            ("tau", K("tau")),
            ("b", K("b")),
            ("rounds T", K("paper_rounds", "{:,}")),
            ("compile", K("compile_round_s", "{:.0f} s")),
            ("s / round", T("ours_round")),
            ("T rounds (h, no evaluation)", K("run_hours", "{:.1f}")),
            LOAD,
        ],
    )


def gpu(rows: list[Row]) -> list[str]:
    runs = [r for r in rows if r["item"] == "paper"]
    text = ["Paper-scale CIFAR-10-shaped JWINS run by nodes trained at once:", ""]
    text += table(
        runs,
        [
            ("n", K("n")),
            ("train_chunk", K("train_chunk")),
            ("s / round", T("round")),
            ("evaluation", T("eval")),
            ("images/s", K("images_per_s", "{:,.0f}")),
            ("2,166 rounds + 103 evaluations", K("paper_run_min", "{:.1f} min")),
        ],
    )
    return text + table(
        [r for r in rows if r["item"] == "rounds"],
        [
            ("workload", K("workload")),
            ("n", K("n", "{:,}")),
            ("strategy", K("strategy")),
            ("s / round", T("round")),
            ("compile", K("compile_round_s", "{:.1f} s")),
        ],
    )


TITLES = {
    "e2e": "End to end, against the original's engine",
    "paper": "Seconds per JWINS round of each paper workload",
    "kernels": "Kernels of the sharing step",
    "scaling": "Scaling with n and N",
    "devices": "Node axis over several devices",
    "sweep": "Sweeps",
    "gpu": "Accelerator",
}


def render(data: dict[str, Any], title: str, image: str | None = None) -> str:
    """The dated markdown section of the section files in ``data``."""
    lines = [f"## {title}", "", "| section | date | device | CPU | JAX | load |"]
    lines.append("|---|---|---|---|---|---|")
    for name, sec in data.items():
        e = sec["env"]
        load = ", ".join(f"{v:.1f}" for v in e["load_average"])
        lines.append(
            f"| {name} | {e['date']} | {e['device_kind']} ({e['backend']}) | "
            f"{e['cpu_model']} x{e['cpu_count']} | {e['jax']} | {load} |"
        )
    lines.append("")
    machine = data.get("machine", {}).get("rows", [None])[0]
    if machine:
        lines += [
            f"Machine: jitted 2048x2048 float32 matmul {machine['matmul_gflops']:.0f}"
            " GFLOP/s.",
            "",
        ]
    render_one = {
        "e2e": lambda rows: e2e(rows, machine),
        "paper": paper,
        "kernels": kernels,
        "scaling": lambda rows: scaling(rows, image),
        "devices": devices,
        "sweep": sweep,
        "gpu": gpu,
    }
    for name, fn in render_one.items():
        if name in data:
            lines += [f"### {TITLES[name]}", ""] + fn(data[name]["rows"])
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
                if r["kind"] == kind and r["strategy"] == s and "round_s" in r
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", color=color, label=s)
    labels = (("s / round", "n"), ("peak RSS (GiB)", "n"), ("s / sharing step", "N"))
    for ax, (ylabel, xlabel) in zip(axes, labels, strict=True):
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
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
    """Puts ``text`` into RESULTS.md in place of the device's generated section."""
    begin, end = f"<!-- generated: {device} -->", "<!-- end generated -->"
    block = f"{begin}\n{text}{end}\n"
    body = results.read_text() if results.is_file() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(body):
        body = pattern.sub(lambda _: block, body)
    else:
        body = body.rstrip("\n") + "\n\n" + block
    results.write_text(body)
