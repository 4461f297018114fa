"""The paper's two main claims, reproduced by one command and written up as a report.

``make reproduce`` (``python -m jwins_jax.reproduce``) runs two sweep specs of
``experiments/sweeps/`` and writes ``REPRODUCTION.md`` with its plots and tables
under ``reproduction/<dataset>/``:

* ``<dataset>_claim1.toml``: full sharing and JWINS in the paper's configuration,
  several seeds. Claim 1 of the paper (Dhasade et al., ICDCS 2023): JWINS reaches
  the accuracy of full sharing while sending far fewer bytes (up to 64 % fewer).
* ``<dataset>_claim2.toml``: random sampling, top-k (without and with accumulation),
  wavelet top-k, CHOCO-SGD and JWINS at communication budgets of 10-40 %, several
  seeds. Claim 2: at low budgets JWINS beats CHOCO-SGD (up to 4x fewer bytes for
  the same accuracy, higher accuracy for the same bytes).

A budget b is the fraction alpha of the model a baseline shares per message. JWINS
draws alpha from a list per node and round, so its budget is set through the list:
the paper's list ``[0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0]`` (mean 0.343) is scaled by
one factor so that its mean is b, entries capped at 1 (:func:`scaled_alpha_list`);
the metadata cap of 0.5 is kept, so an entry of 0.5 or more still sends the whole
model. Every plot and table uses the bytes each run measured, not the budget.

Every number of the report is computed here from the sweeps' ``sweep.csv`` files
(final accuracy, bytes per node, values and metadata) and from the runs'
``metrics.jsonl`` (curves: when a target accuracy is first reached); both are copied
next to the plots. Running the command again resumes: finished configs are skipped.
``--report-only`` rewrites the report from the runs already there.

The same command runs another dataset's specs, e.g. the paper's CIFAR-10 setting on
a machine with an accelerator and the data::

    python -m jwins_jax.reproduce --dataset cifar10 --data-dir /path/to/tfds
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

PAPER_ALPHA_LIST: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)
BUDGETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)

# Method key -> label, in the order of tables and legends.
METHODS: dict[str, str] = {
    "full": "full sharing",
    "jwins": "JWINS",
    "choco": "CHOCO-SGD",
    "random": "random sampling",
    "topk": "top-k",
    "topk_acc": "top-k + accumulation",
    "wavelet": "wavelet top-k",
}
COLORS = {m: f"C{i}" for i, m in enumerate(METHODS)}

# Claim 1: bytes to first reach these fractions of full sharing's final accuracy.
CLAIM1_TARGETS: tuple[float, ...] = (0.9, 0.95, 0.98, 0.99)
# Claim 2: the same, lower (the budgets are small and the runs shorter).
CLAIM2_TARGETS: tuple[float, ...] = (0.8, 0.9, 0.95)
MIB = 2**20


# ------------------------------------------------------------------ budgets
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


def method_of(sharing: str, accumulation: str | None) -> str:
    """The method key of a config (top-k splits by accumulation)."""
    if sharing == "topk" and accumulation not in (None, "none"):
        return "topk_acc"
    return sharing


def budget_of(
    sharing: str, alpha: float | None, alpha_list: Sequence[float] | None
) -> float | None:
    """The nominal budget of a config: alpha, JWINS's mean alpha, None for full."""
    if sharing == "full":
        return None
    if sharing == "jwins":
        return round(float(np.mean(alpha_list)), 3)
    return round(float(alpha), 3)


# ---------------------------------------------------------------- loading runs
@dataclasses.dataclass
class Run:
    """One finished config of a sweep: its CSV row and its evaluations."""

    method: str
    budget: float | None
    seed: int
    row: dict[str, str]  # the config's row of sweep.csv
    records: list[dict[str, Any]]  # its metrics.jsonl
    full_entries: int = 0  # JWINS: alpha-list entries at or above the metadata cap
    list_length: int = 0  # JWINS: entries in its alpha list

    @property
    def final_acc(self) -> float:
        return float(self.row["final_test_acc"])

    @property
    def bytes(self) -> float:
        return float(self.row["bytes_per_node"])

    @property
    def value_bytes(self) -> float:
        return float(self.row["value_bytes_per_node"])

    @property
    def meta_bytes(self) -> float:
        return float(self.row["meta_bytes_per_node"])

    @property
    def rounds(self) -> int:
        return int(self.row["rounds_done"])


def read_csv(path: pathlib.Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_runs(sweep, root: pathlib.Path) -> list[Run]:
    """The finished runs of a sweep, from its sweep.csv and metrics.jsonl files.

    Args:
        sweep: the parsed :class:`~jwins_jax.sweep.Sweep` (for each config's fields).
        root: its directory.
    """
    from jwins_jax.results import read_metrics

    configs = {sc.config.name: sc.config for sc in sweep.configs}
    runs = []
    for row in read_csv(root / "sweep.csv"):
        c = configs.get(row["name"])
        if c is None or row["status"] != "finished" or not row["final_test_acc"]:
            continue
        runs.append(
            Run(
                method=method_of(c.sharing, c.accumulation),
                budget=budget_of(c.sharing, c.alpha, c.alpha_list),
                seed=c.seed,
                row=row,
                records=read_metrics(root / row["name"]),
                full_entries=sum(a >= c.metadata_cap for a in c.alpha_list)
                if c.sharing == "jwins"
                else 0,
                list_length=len(c.alpha_list) if c.sharing == "jwins" else 0,
            )
        )
    return runs


def group(runs: Sequence[Run]) -> dict[tuple[str, float | None], list[Run]]:
    """Runs by (method, budget), seeds together, in METHODS order then budget."""
    out: dict[tuple[str, float | None], list[Run]] = {}
    for r in runs:
        out.setdefault((r.method, r.budget), []).append(r)
    order = list(METHODS)
    return dict(
        sorted(
            out.items(),
            key=lambda kv: (
                order.index(kv[0][0]) if kv[0][0] in order else len(order),
                kv[0][1] or 0.0,
            ),
        )
    )


# ------------------------------------------------------------------ statistics
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


@dataclasses.dataclass
class Curve:
    """Evaluations of one (method, budget) over its seeds."""

    rounds: np.ndarray  # (E,)
    acc: np.ndarray  # (S, E) test accuracy, mean over nodes, per seed
    bytes: np.ndarray  # (S, E) cumulative bytes per node, per seed

    @property
    def acc_mean(self) -> np.ndarray:
        return self.acc.mean(axis=0)

    @property
    def acc_std(self) -> np.ndarray:
        return self.acc.std(axis=0, ddof=1) if len(self.acc) > 1 else 0 * self.acc[0]

    @property
    def bytes_mean(self) -> np.ndarray:
        return self.bytes.mean(axis=0)


def curve(runs: Sequence[Run]) -> Curve:
    """The seeds' evaluations side by side (cut to the shortest run)."""
    length = min(len(r.records) for r in runs)
    recs = [r.records[:length] for r in runs]

    def acc(rec):
        v = rec["test_acc"]["mean"]
        return np.nan if v is None else float(v)

    return Curve(
        rounds=np.asarray([rec["round"] for rec in recs[0]]),
        acc=np.asarray([[acc(rec) for rec in rs] for rs in recs]),
        bytes=np.asarray([[rec["bytes_per_node"] for rec in rs] for rs in recs]),
    )


def first_reach(acc: np.ndarray, nbytes: np.ndarray, target: float) -> float | None:
    """Bytes at the first evaluation whose accuracy is at least ``target``."""
    hit = np.flatnonzero(np.asarray(acc) >= target)
    return float(nbytes[hit[0]]) if hit.size else None


def best_within(acc: np.ndarray, nbytes: np.ndarray, budget: float) -> float | None:
    """The best accuracy of the evaluations that sent at most ``budget`` bytes."""
    ok = np.asarray(nbytes) <= budget * (1 + 1e-9)
    return float(np.nanmax(np.asarray(acc)[ok])) if ok.any() else None


# ---------------------------------------------------------------- formatting
def fmt_acc(mean: float, std: float | None = None) -> str:
    return f"{mean:.2f} %" if std is None else f"{mean:.2f} ± {std:.2f} %"


def fmt_mib(b: float | None) -> str:
    return "not reached" if b is None else f"{b / MIB:.2f} MiB"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def label(method: str, budget: float | None) -> str:
    name = METHODS.get(method, method)
    return name if budget is None else f"{name} {budget * 100:g} %"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------ plots
def _plt():
    from jwins_jax.results import _pyplot

    return _pyplot()


def _save(fig, path: pathlib.Path) -> None:
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_claim1(curves: dict[str, Curve], out: pathlib.Path, title: str) -> list[str]:
    """Accuracy against rounds and against bytes, mean ± std over seeds."""
    plt = _plt()
    names = []
    for kind in ("rounds", "bytes"):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for m, c in curves.items():
            x = c.rounds if kind == "rounds" else c.bytes_mean / MIB
            ax.plot(
                x,
                c.acc_mean,
                color=COLORS[m],
                label=f"{METHODS[m]} ({len(c.acc)} seeds)",
            )
            ax.fill_between(
                x,
                c.acc_mean - c.acc_std,
                c.acc_mean + c.acc_std,
                color=COLORS[m],
                alpha=0.2,
            )
        ax.set_xlabel(
            "round" if kind == "rounds" else "cumulative bytes sent per node (MiB)"
        )
        ax.set_ylabel("test accuracy (%), mean over nodes;\nband: ± std over seeds")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        name = f"claim1_accuracy_vs_{kind}.png"
        _save(fig, out / name)
        names.append(name)
    return names


def plot_claim2(
    groups: dict[tuple[str, float | None], list[Run]],
    curves: dict[tuple[str, float | None], Curve],
    out: pathlib.Path,
    title: str,
) -> str:
    """Left: final accuracy against total bytes, a point per budget; right: the best
    accuracy each method reaches within a number of bytes (any budget, any round)."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    methods = list(dict.fromkeys(m for m, _ in groups))
    for m in methods:
        keys = [k for k in groups if k[0] == m]
        xs = [mean_std([r.bytes for r in groups[k]])[0] / MIB for k in keys]
        ys = [mean_std([r.final_acc for r in groups[k]]) for k in keys]
        left.errorbar(
            xs,
            [y[0] for y in ys],
            yerr=[y[1] for y in ys],
            marker="o",
            capsize=3,
            color=COLORS[m],
            label=METHODS[m],
        )
        for k, x, y in zip(keys, xs, ys):
            if k[1] is not None:
                left.annotate(
                    f"{k[1] * 100:g}%",
                    (x, y[0]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, -9),
                )
        pts = np.concatenate(
            [np.stack([curves[k].bytes_mean, curves[k].acc_mean], 1) for k in keys]
        )
        pts = pts[np.argsort(pts[:, 0], kind="stable")]
        env = np.fmax.accumulate(np.nan_to_num(pts[:, 1], nan=-np.inf))
        right.step(
            pts[:, 0] / MIB, env, where="post", color=COLORS[m], label=METHODS[m]
        )
    left.set_xscale("log")
    left.set_xlabel("bytes sent per node in the whole run (MiB, log scale)")
    left.set_ylabel("final test accuracy (%), mean ± std over seeds")
    left.set_title(f"{title}: one point per budget")
    right.set_xscale("log")
    right.set_xlabel("bytes sent per node (MiB, log scale)")
    right.set_ylabel(
        "best test accuracy reached within\nthose bytes (%), mean over seeds"
    )
    right.set_title(f"{title}: accuracy for a byte budget")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    name = "claim2_accuracy_vs_bytes.png"
    _save(fig, out / name)
    return name


def plot_breakdown(
    bars: dict[str, list[tuple[str, float, float]]], out: pathlib.Path, title: str
) -> str:
    """Stacked bars of value and metadata bytes per node and round, a panel each."""
    plt = _plt()
    panels = list(bars)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels) + 1, 4.2), sharey=True, squeeze=False
    )
    for ax, panel in zip(axes[0], panels):
        items = bars[panel]
        x = np.arange(len(items))
        values = np.array([v for _, v, _ in items]) / 1024
        meta = np.array([m for _, _, m in items]) / 1024
        ax.bar(x, values, color="C0", label="values")
        ax.bar(x, meta, bottom=values, color="C3", label="metadata (indices, seeds)")
        ax.set_xticks(x, [n for n, _, _ in items], rotation=60, ha="right", fontsize=8)
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("KiB sent per node per round")
    top = max(v + m for items in bars.values() for _, v, m in items) / 1024
    axes[0][0].set_ylim(0, 1.25 * top if top > 0 else 1)
    axes[0][-1].legend(fontsize="small", loc="upper right")
    fig.suptitle(title)
    name = "bytes_values_vs_metadata.png"
    _save(fig, out / name)
    return name


# ----------------------------------------------------------------- the report
@dataclasses.dataclass
class Inputs:
    """What the report is made from."""

    dataset: str
    claim1: list[Run]
    claim2: list[Run]
    settings: dict[str, Any]  # the claim-1 base config (nodes, rounds, ...)
    rounds2: int
    command: str
    specs: tuple[str, str]  # the spec files, as given
    runtime_s: float | None
    environment: dict[str, str]
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)  # model, data sizes


def _verdict(ok: bool | None) -> str:
    return {True: "**agrees**", False: "**does not agree**", None: "**partly agrees**"}[
        ok
    ]


def claim1_section(inp: Inputs, out: pathlib.Path, rel: str) -> tuple[str, dict]:
    """Markdown of claim 1 and its key numbers."""
    g = group(inp.claim1)
    curves = {m: curve(runs) for (m, _), runs in g.items()}
    plots = plot_claim1(curves, out, f"{inp.dataset}: full sharing vs JWINS")
    rows, finals = [], {}
    full_bytes = (
        mean_std([r.bytes for r in g.get(("full", None), [])])[0]
        if (("full", None) in g)
        else None
    )
    for (m, _), runs in g.items():
        acc = mean_std([r.final_acc for r in runs])
        b = mean_std([r.bytes for r in runs])
        finals[m] = (acc, b)
        rows.append(
            [
                METHODS[m],
                len(runs),
                runs[0].rounds,
                fmt_acc(*acc),
                fmt_acc(*mean_std([float(r.row["best_test_acc"]) for r in runs])),
                fmt_mib(b[0]),
                fmt_ratio(b[0] / full_bytes if full_bytes else None),
            ]
        )
    text = [
        "## Claim 1: JWINS reaches full sharing's accuracy with fewer bytes",
        "",
        "Paper: JWINS matches the accuracy of full sharing (D-PSGD) while sending up "
        "to 64 % fewer bytes.",
        "",
        md_table(
            [
                "method",
                "seeds",
                "rounds",
                "final test accuracy (mean ± std over seeds)",
                "best accuracy",
                "bytes per node",
                "vs full",
            ],
            rows,
        ),
        "",
        f"![accuracy against rounds]({rel}/{plots[0]}) "
        f"![accuracy against bytes]({rel}/{plots[1]})",
        "",
    ]
    key: dict[str, Any] = {"finals": finals}
    if "full" in curves and "jwins" in curves:
        full_final = finals["full"][0][0]
        trows = []
        ratios = []
        for frac in CLAIM1_TARGETS:
            target = frac * full_final
            per = {}
            for m in ("full", "jwins"):
                c = curves[m]
                hits = [first_reach(a, nb, target) for a, nb in zip(c.acc, c.bytes)]
                reached = [h for h in hits if h is not None]
                per[m] = (
                    mean_std(reached) if len(reached) == len(hits) else None,
                    len(reached),
                    len(hits),
                )
            ratio = (
                per["jwins"][0][0] / per["full"][0][0]
                if per["jwins"][0] and per["full"][0]
                else None
            )
            ratios.append((frac, target, ratio))
            trows.append(
                [
                    f"{frac * 100:g} % of full's final = {target:.2f} %",
                    *(
                        f"{fmt_mib(p[0][0])} ± {p[0][1] / MIB:.2f}"
                        if p[0]
                        else f"not reached by all seeds ({p[1]}/{p[2]})"
                        for p in (per["full"], per["jwins"])
                    ),
                    fmt_ratio(ratio),
                    "-" if ratio is None else f"{(1 - ratio) * 100:.0f} %",
                ]
            )
        text += [
            "Bytes each method sends per node until its test accuracy (mean over "
            "nodes) first reaches a target, mean ± std over seeds (evaluations every "
            f"{inp.settings['eval_every']} rounds):",
            "",
            md_table(
                [
                    "target accuracy",
                    "full sharing",
                    "JWINS",
                    "JWINS / full",
                    "bytes saved",
                ],
                trows,
            ),
            "",
        ]
        key["targets"] = ratios
        key["acc_gap"] = finals["jwins"][0][0] - full_final
        key["byte_ratio_final"] = finals["jwins"][1][0] / finals["full"][1][0]
        full_c, jw_c = curves["full"], curves["jwins"]
        n = min(len(full_c.rounds), len(jw_c.rounds))
        later = full_c.rounds[:n] >= 0.2 * full_c.rounds[n - 1]
        if later.any():
            diff = jw_c.acc_mean[:n][later] - full_c.acc_mean[:n][later]
            key["round_gap"] = (
                float(np.nanmin(diff)),
                float(np.nanmax(diff)),
                int(full_c.rounds[:n][later][0]),
            )
        key["full_curve"] = full_c
    return "\n".join(text), key


def claim2_section(inp: Inputs, out: pathlib.Path, rel: str) -> tuple[str, dict]:
    """Markdown of claim 2 and the metadata section, and the key numbers."""
    g = group(inp.claim2)
    curves = {k: curve(runs) for k, runs in g.items()}
    plot = plot_claim2(g, curves, out, inp.dataset)
    budgets = sorted({b for _, b in g if b is not None})
    methods = list(dict.fromkeys(m for m, _ in g))
    jwins_lists = {}
    for (m, b), runs in g.items():
        if m == "jwins":
            jwins_lists[b] = (
                runs[0].row.get("alpha_list", ""),
                f"{runs[0].full_entries} of {runs[0].list_length}",
            )
    rows = []
    for (m, b), runs in g.items():
        acc = mean_std([r.final_acc for r in runs])
        total = mean_std([r.bytes for r in runs])[0]
        meta = mean_std([r.meta_bytes for r in runs])[0]
        rows.append(
            [
                METHODS[m],
                f"{b * 100:g} %",
                len(runs),
                fmt_acc(*acc),
                fmt_mib(total),
                f"{meta / total * 100:.1f} %" if total else "-",
            ]
        )
    text = [
        "## Claim 2: at low budgets JWINS beats CHOCO-SGD",
        "",
        "Paper: at low communication budgets JWINS needs up to 4x fewer bytes than "
        "CHOCO-SGD for the same accuracy, and reaches a higher accuracy for the same "
        "bytes.",
        "",
        "A budget b is the fraction alpha each message shares (random sampling, top-k, "
        "wavelet top-k, CHOCO-SGD). JWINS draws its alpha per node and round from a "
        "list; its list is the paper's `[0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0]` (mean "
        "0.343) scaled by one factor to mean b, entries capped at 1, with the paper's "
        "metadata cap 0.5 kept: an entry at or above the cap sends the whole model, "
        "so where a list has such entries (last column) JWINS sends more than b. "
        "Bytes differ from the budget for every method (indices, seeds, "
        "Elias-gamma codes, full shares); the plots use the measured bytes.",
        "",
        md_table(
            ["budget", "JWINS alpha list", "entries sending the whole model"],
            [
                [f"{b * 100:g} %", "`[" + ", ".join(lst.split("_")) + "]`", full]
                for b, (lst, full) in jwins_lists.items()
            ],
        )
        if jwins_lists
        else "",
        "",
        f"{len(next(iter(g.values())))} seeds per point, {inp.rounds2} rounds; "
        "accuracy is the test accuracy at the last round, mean over nodes, then mean ± "
        "std over seeds; bytes are per node over the whole run.",
        "",
        md_table(
            [
                "method",
                "budget",
                "seeds",
                "final test accuracy",
                "bytes per node",
                "metadata share",
            ],
            rows,
        ),
        "",
        f"![accuracy against bytes]({rel}/{plot})",
        "",
    ]
    key: dict[str, Any] = {}
    # Equal accuracy: the fewest bytes over budgets (seed-mean curves).
    full_runs = [r.final_acc for r in inp.claim1 if r.method == "full"]
    full_final = mean_std(full_runs)[0] if full_runs else None
    if full_final is not None:
        erows, ratios, pairs = [], {}, []
        for frac in CLAIM2_TARGETS:
            target = frac * full_final
            need = {}
            for m in methods:
                hits = [
                    first_reach(curves[k].acc_mean, curves[k].bytes_mean, target)
                    for k in g
                    if k[0] == m
                ]
                hits = [h for h in hits if h is not None]
                need[m] = min(hits) if hits else None
            row = [f"{frac * 100:g} % of full's final = {target:.2f} %"]
            for m in methods:
                row.append(fmt_mib(need[m]))
            jw = need.get("jwins")
            for m in methods:
                if m != "jwins" and jw and need[m]:
                    ratios.setdefault(m, []).append((frac, need[m] / jw))
            choco = need.get("choco")
            row.append(fmt_ratio(choco / jw if jw and choco else None))
            erows.append(row)
            pairs.append((frac, jw, need.get("choco")))
        text += [
            "**Same accuracy, bytes needed.** The fewest bytes per node with which any "
            "budget of a method first reaches a target accuracy (seed-mean curves; "
            "targets relative to full sharing's final accuracy in claim 1):",
            "",
            md_table(
                ["target"] + [METHODS[m] for m in methods] + ["CHOCO / JWINS"], erows
            ),
            "",
        ]
        key["equal_acc"] = ratios
        key["choco_pairs"] = pairs
    # Equal bytes: the best accuracy within the bytes of each JWINS budget's run.
    levels = [
        (b, curves[("jwins", b)].bytes_mean[-1])
        for b in budgets
        if ("jwins", b) in curves
    ]
    if levels:
        brows, wins = [], {}
        for b, level in levels:
            best = {}
            for m in methods:
                vals = [
                    best_within(curves[k].acc_mean, curves[k].bytes_mean, level)
                    for k in g
                    if k[0] == m
                ]
                vals = [v for v in vals if v is not None]
                best[m] = max(vals) if vals else None
            brows.append(
                [f"{level / MIB:.2f} MiB (JWINS {b * 100:g} %'s run)"]
                + ["-" if best[m] is None else f"{best[m]:.2f} %" for m in methods]
            )
            for m in methods:
                if m != "jwins":
                    wins.setdefault(m, []).append(
                        (b, None if best[m] is None else best["jwins"] - best[m])
                    )
        text += [
            "**Same bytes, accuracy reached.** The best test accuracy (seed-mean "
            "curves, any budget, any round) a method reaches without sending more "
            'bytes per node than JWINS sends in its whole run at each budget ("-": '
            "every run of the method sends more by its first evaluation):",
            "",
            md_table(["bytes per node"] + [METHODS[m] for m in methods], brows),
            "",
        ]
        key["equal_bytes"] = wins
    return "\n".join(text), key


def breakdown_section(inp: Inputs, out: pathlib.Path, rel: str) -> str:
    """Values against metadata per method: a bar chart and a table."""
    bars: dict[str, list[tuple[str, float, float]]] = {}
    rows = []
    for title, runs in (("claim 1", inp.claim1), ("claim 2", inp.claim2)):
        for (m, b), rs in group(runs).items():
            v = mean_std([r.value_bytes / r.rounds for r in rs])[0]
            meta = mean_std([r.meta_bytes / r.rounds for r in rs])[0]
            panel = (
                "reference runs"
                if b is None or title == "claim 1"
                else (f"budget {b * 100:g} %")
            )
            name = (
                METHODS[m]
                if title == "claim 2"
                else (METHODS[m] + (" (paper list)" if m == "jwins" else ""))
            )
            bars.setdefault(panel, []).append((name, v, meta))
            rows.append(
                [
                    name,
                    panel,
                    f"{v / 1024:.1f}",
                    f"{meta / 1024:.2f}",
                    f"{meta / (v + meta) * 100:.1f} %" if v + meta else "-",
                ]
            )
    plot = plot_breakdown(bars, out, f"{inp.dataset}: what a node sends per round")
    return "\n".join(
        [
            "## Data against metadata",
            "",
            "JWINS's argument is also about metadata: wavelet coefficients of the ranked "
            "change are sent with Elias-gamma coded gaps between indices, against 4 bytes "
            "(top-k, int32) or 8 bytes (CHOCO-SGD, int64, as the original sends them) per "
            "index; random sampling sends an 8-byte seed, full sharing nothing. Per node "
            "and round, mean over seeds:",
            "",
            f"![values against metadata]({rel}/{plot})",
            "",
            md_table(
                [
                    "method",
                    "runs",
                    "values (KiB / round)",
                    "metadata (KiB / round)",
                    "metadata share",
                ],
                rows,
            ),
            "",
        ]
    )


def observations(inp: Inputs, k1: dict) -> list[str]:
    """What else the numbers show that bears on the comparison with the paper."""
    lines = []
    if "round_gap" in k1:
        lo, hi, start = k1["round_gap"]
        lines.append(
            "* Round for round, JWINS learns like full sharing here: from round "
            f"{start} on its seed-mean accuracy is within {lo:+.2f} to {hi:+.2f} "
            "points of full sharing's, so its byte saving at equal accuracy is about "
            f"its saving per round ({k1['byte_ratio_final']:.2f}x the bytes)."
        )
    g2 = group(inp.claim2)
    shaky = [(k, mean_std([r.final_acc for r in rs])) for k, rs in g2.items()]
    shaky = [(k, a) for k, a in shaky if a[1] > 3.0]
    if shaky:
        lines.append(
            "* Unstable points (final accuracy varies by more than 3 points between "
            "seeds): "
            + "; ".join(f"{label(*k)} {fmt_acc(*a)}" for k, a in shaky)
            + ". Their ratios to JWINS depend on the seeds and on untuned settings "
            "(CHOCO-SGD's gamma) more than the others do."
        )
    full_c = k1.get("full_curve")
    if full_c is not None and g2:
        r2 = max(r.rounds for rs in g2.values() for r in rs)
        at = np.flatnonzero(full_c.rounds == r2)
        if at.size:
            ref = float(full_c.acc_mean[at[0]])
            best = {}
            for (m, b), rs in g2.items():
                acc = mean_std([r.final_acc for r in rs])[0]
                if m not in best or acc > best[m][1]:
                    best[m] = (b, acc)
            lines.append(
                f"* After {r2} rounds full sharing is at {ref:.2f} % (claim-1 runs); "
                "the best final accuracy of each method over the budgets: "
                + "; ".join(
                    f"{METHODS[m]} {acc:.2f} % ({b * 100:g} %)"
                    for m, (b, acc) in best.items()
                )
                + "."
            )
    return lines


def agreement_section(inp: Inputs, k1: dict, k2: dict) -> str:
    """Where the results agree with the paper and where not, from the numbers."""
    lines = ["## Agreement with the paper", ""]
    if "targets" in k1:
        reached = [(f, t, r) for f, t, r in k1["targets"] if r is not None]
        gap = k1["acc_gap"]
        if reached:
            frac, target, ratio = reached[-1]
            saved = (1 - ratio) * 100
            ok = True if saved >= 50 and gap > -1 else (None if saved > 0 else False)
            lines.append(
                f"* Claim 1 {_verdict(ok)}: JWINS ends {gap:+.2f} points from full "
                f"sharing's final accuracy and first reaches {frac * 100:g} % of it "
                f"({target:.2f} %) with {ratio:.2f}x the bytes of full sharing, "
                f"{saved:.0f} % fewer (paper: up to 64 % fewer); over the whole run it "
                f"sends {k1['byte_ratio_final']:.2f}x the bytes of full sharing."
            )
        else:
            lines.append(
                f"* Claim 1 {_verdict(False)}: JWINS ends {gap:+.2f} points from full "
                "sharing and does not reach the targets with every seed."
            )
    if "choco_pairs" in k2 or "equal_bytes" in k2:
        pairs = k2.get("choco_pairs", [])
        ratios = [(f, c / j) for f, j, c in pairs if j and c]
        jwins_only = [f for f, j, c in pairs if j and not c]
        choco_only = [f for f, j, c in pairs if c and not j]
        eb_all = k2.get("equal_bytes", {}).get("choco", [])
        eb = [(b, d) for b, d in eb_all if d is not None]
        eb_none = [b for b, d in eb_all if d is None]
        parts = []
        if ratios:
            parts.append(
                "for the same accuracy CHOCO-SGD needs "
                + ", ".join(f"{r:.2f}x" for _, r in ratios)
                + " the bytes of JWINS (targets "
                + ", ".join(f"{f * 100:g} %" for f, _ in ratios)
                + " of full sharing's final accuracy)"
            )
        if jwins_only:
            parts.append(
                "only JWINS reaches the targets "
                + ", ".join(f"{f * 100:g} %" for f in jwins_only)
            )
        if choco_only:
            parts.append(
                "only CHOCO-SGD reaches the targets "
                + ", ".join(f"{f * 100:g} %" for f in choco_only)
            )
        if not pairs or not (ratios or jwins_only or choco_only):
            parts.append("neither reaches the accuracy targets")
        if eb:
            parts.append(
                "within the bytes of JWINS's runs JWINS is "
                + ", ".join(f"{d:+.2f}" for _, d in eb)
                + " points above CHOCO-SGD at budgets "
                + ", ".join(f"{b * 100:g} %" for b, _ in eb)
            )
        if eb_none:
            parts.append(
                "at budgets "
                + ", ".join(f"{b * 100:g} %" for b in eb_none)
                + " every CHOCO-SGD run has sent more bytes by its first "
                "evaluation than JWINS in its whole run"
            )
        wins_acc = (
            (bool(ratios) or bool(jwins_only))
            and not choco_only
            and all(r > 1 for _, r in ratios)
        )
        wins_bytes = all(d > 0 for _, d in eb)
        loses = (
            not jwins_only
            and all(r <= 1 for _, r in ratios)
            and all(d <= 0 for _, d in eb)
        )
        if wins_acc and wins_bytes and (jwins_only or max(r for _, r in ratios) >= 2):
            ok = True
        elif loses:
            ok = False
        else:
            ok = None
        lines.append(
            f"* Claim 2 {_verdict(ok)}: "
            + "; ".join(parts)
            + " (paper: up to 4x fewer bytes, and higher accuracy for the "
            "same bytes)."
        )
        others = {m: v for m, v in k2.get("equal_acc", {}).items() if m != "choco"}
        if others:
            lines.append(
                "* Against the other baselines, bytes needed for the same accuracy "
                "relative to JWINS (per target): "
                + "; ".join(
                    f"{METHODS[m]} " + ", ".join(f"{r:.2f}x" for _, r in v)
                    for m, v in others.items()
                )
                + "."
            )
    more = observations(inp, k1)
    if more:
        lines += ["", "What else the numbers show:", "", *more]
    return "\n".join(lines) + "\n"


DISCUSSION = """\
### Why the results can differ from the paper

* **The task is small.** {dataset_note}
* **Few rounds, few seeds.** The runs are a few hundred rounds with {seeds} seeds; the
  paper's CIFAR-10 runs are 2166 rounds. Differences of a fraction of a point are
  within the seed-to-seed spread shown by the ± values.
* **Bytes are counted, not pickled.** Values are 4 bytes per float32 and metadata is
  the exact Elias-gamma size (SPEC decisions table); the original pickles messages and
  compresses JWINS's floats with fpzip, which this simulator does not. JWINS's byte
  savings here therefore come only from the fraction sent and its index coding.
* **Budgets are nominal for JWINS.** {jwins_full_note}; the plots use measured
  bytes, so every method is compared at what it really sent.
* **Hyperparameters are not tuned per method.** All methods use the same learning
  rate; CHOCO-SGD uses its default consensus step size gamma = 0.5 at every budget.

### At paper scale

`experiments/sweeps/cifar10_claim1.toml` and `cifar10_claim2.toml` are the same
comparison in the paper's CIFAR-10 setting (`experiments/cifar_*_paper.toml`: GN-LeNet,
89,834 parameters, Dirichlet(1) over 96 nodes on the paper's graph, tau = 3, batch 8,
lr 0.01, 2166 rounds, evaluations every 21 rounds on 2000 test images). They need
CIFAR-10 prepared for tensorflow-datasets (`tfds build cifar10 --data_dir DIR`) and an
accelerator: on a 2-core CPU one GN-LeNet round of 96 nodes takes about 2.8 s
(`benchmarks/RESULTS.md`), so one 2166-round config takes close to two hours, and the
two sweeps hold {cifar_configs} configs. The same command runs them:

```sh
python -m jwins_jax.reproduce --dataset cifar10 --data-dir DIR
```

It writes `REPRODUCTION-cifar10.md` and `reproduction/cifar10/`.
"""

DATASET_NOTES = {
    "digits": (
        "scikit-learn's digits are {n_train:,} 8x8 training images (about {per_node} "
        "per node on {nodes} nodes) and {n_test} test images, and the CNN has "
        "{n_params:,} parameters: a model of {kib} KiB that converges within a few "
        "hundred rounds. The paper measured on CIFAR-10 (GN-LeNet, 89,834 parameters) "
        "and on FEMNIST, CelebA, Shakespeare and MovieLens, larger models trained for "
        "longer; that the same ratios hold there is not tested here."
    ),
}


def render(inp: Inputs, out: pathlib.Path, report: pathlib.Path) -> str:
    """The whole report as markdown (plots are written to ``out``)."""
    rel = os.path.relpath(out, report.parent)
    s1, k1 = claim1_section(inp, out, rel) if inp.claim1 else ("", {})
    s2, k2 = claim2_section(inp, out, rel) if inp.claim2 else ("", {})
    s3 = breakdown_section(inp, out, rel)
    st = inp.settings
    seeds = sorted({r.seed for r in inp.claim1 + inp.claim2})
    env = inp.environment
    graph = (
        f"the paper's {st['nodes']}-node graph"
        if st["topology"] == "edges" and st.get("edges_file") is None
        else f"a {st['topology']} graph"
    )
    runtime = (
        f"; the command took {inp.runtime_s / 60:.0f} min" if inp.runtime_s else ""
    )
    head = [
        f"# Reproducing JWINS's claims on {inp.dataset}",
        "",
        "Generated by `" + inp.command + "` (`jwins_jax/reproduce.py`) from the sweep "
        f"specs `{inp.specs[0]}` and `{inp.specs[1]}`; the numbers come from the "
        f"sweeps' CSV files, copied to `{rel}/` with the plots. Environment: "
        f"{env['device']}, jax {env['jax']}, {env['date']}{runtime}.",
        "",
        f"Setting: {st['nodes']} nodes on {graph}, {st['dataset']} split "
        f"{st['partition']} (alpha = {st['dirichlet_alpha']}), model {st['model']}, "
        f"tau = {st['local_steps']} local steps of batch {st['batch_size']}, "
        f"lr {st['lr']}, "
        f"seeds {', '.join(map(str, seeds))}; claim 1 runs {st['rounds']} rounds, "
        f"claim 2 {inp.rounds2}.",
        "",
    ]
    agree = agreement_section(inp, k1, k2)
    note = DATASET_NOTES.get(inp.dataset)
    try:
        note = note.format(**inp.facts) if note else None
    except KeyError:
        note = None
    tail = DISCUSSION.format(
        dataset_note=note
        or (
            f"{inp.dataset} with a model of {inp.facts.get('n_params', '?')} "
            "parameters; see its description in `jwins_jax/data/`."
        ),
        seeds=len(seeds),
        cifar_configs=_count_configs("cifar10"),
        jwins_full_note=_full_note(inp.claim2),
    )
    return "\n".join([*head, agree, s1, s2, s3, tail])


def _full_note(runs: Sequence[Run]) -> str:
    """Which of JWINS's scaled lists still send the whole model, and how often."""
    full = {
        b: (rs[0].full_entries, rs[0].list_length)
        for (m, b), rs in group(runs).items()
        if m == "jwins"
    }
    some = {b: f for b, f in full.items() if f[0]}
    if not some:
        return "None of JWINS's scaled alpha lists reaches the metadata cap"
    counts = ", ".join(
        f"budget {b * 100:g} %: {k} of {n} entries" for b, (k, n) in some.items()
    )
    return (
        "Its scaled alpha lists keep the metadata cap, so entries at or above it "
        f"still send the whole model ({counts})"
    )


def _count_configs(dataset: str) -> str:
    from jwins_jax.sweep import load_spec

    try:
        paths = spec_paths(dataset, SPECS_DIR)
        return str(sum(len(load_spec(p).configs) for p in paths))
    except Exception:  # noqa: BLE001 - only a number in the text
        return "several"


# ------------------------------------------------------------------- running
SPECS_DIR = pathlib.Path("experiments") / "sweeps"


def spec_paths(
    dataset: str, specs_dir: pathlib.Path
) -> tuple[pathlib.Path, pathlib.Path]:
    """The dataset's claim-1 and claim-2 sweep specs."""
    from jwins_jax.errors import ConfigError

    paths = (specs_dir / f"{dataset}_claim1.toml", specs_dir / f"{dataset}_claim2.toml")
    for p in paths:
        if not p.is_file():
            have = sorted(
                {
                    q.name.rsplit("_claim", 1)[0]
                    for q in specs_dir.glob("*_claim[12].toml")
                }
            )
            raise ConfigError(
                f"sweep spec {str(p)!r} does not exist; datasets with specs in "
                f"{str(specs_dir)!r}: {', '.join(have) or 'none'} (run from the "
                "repository root, or give --specs-dir)"
            )
    return paths


def load(path: pathlib.Path, args: argparse.Namespace):
    """A spec with the command line's changes (rounds, seeds, data_dir, out_dir)."""
    from jwins_jax.config import read_table
    from jwins_jax.sweep import parse_spec

    data = read_table(path)
    base = dict(data.get("base", {}))
    base["out_dir"] = str(args.runs_dir)
    if args.data_dir is not None:
        base["data_dir"] = args.data_dir
    if args.rounds is not None:
        base["rounds"] = args.rounds
        base["eval_every"] = min(int(base.get("eval_every", 10)), args.rounds)
    data["base"] = base
    if args.seeds is not None:
        data["grid"] = {**data.get("grid", {}), "seed": args.seeds}
    return parse_spec(data, source=str(path), default_name=path.stem)


def environment() -> dict[str, str]:
    import jax

    from jwins_jax.platform import cpu_model

    cpu = cpu_model()
    dev = jax.devices()[0]
    device = (
        f"{os.cpu_count()}-core CPU ({cpu})"
        if dev.platform == "cpu"
        else str(dev.device_kind)
    )
    return {
        "jax": jax.__version__,
        "device": device,
        "date": datetime.date.today().isoformat(),
    }


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m jwins_jax.reproduce",
        description="Run the claim sweeps of a dataset and write the report.",
    )
    p.add_argument(
        "--dataset",
        default="digits",
        help="which specs to run: <specs-dir>/<dataset>_claim{1,2}.toml "
        "(default: digits)",
    )
    p.add_argument(
        "--specs-dir",
        type=pathlib.Path,
        default=SPECS_DIR,
        help=f"folder of the sweep specs (default: {SPECS_DIR})",
    )
    p.add_argument("--data-dir", default=None, help="data_dir for file-based datasets")
    p.add_argument(
        "--runs-dir",
        type=pathlib.Path,
        default=None,
        help="where the sweeps run (default: runs/reproduce-<dataset>)",
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="plots and CSV copies (default: reproduction/<dataset>)",
    )
    p.add_argument(
        "--report",
        type=pathlib.Path,
        default=None,
        help="the markdown report (default: REPRODUCTION.md for digits, "
        "else REPRODUCTION-<dataset>.md)",
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="override the specs' rounds"
    )
    p.add_argument(
        "--seeds",
        type=_int_list,
        default=None,
        help="override the specs' seeds, e.g. 1,2",
    )
    p.add_argument("--batch", type=int, default=None, help="configs per compiled batch")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the runs already there, run nothing",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    a = p.parse_args(argv)
    a.runs_dir = a.runs_dir or pathlib.Path("runs") / f"reproduce-{a.dataset}"
    a.out = a.out or pathlib.Path("reproduction") / a.dataset
    a.report = a.report or pathlib.Path(
        "REPRODUCTION.md" if a.dataset == "digits" else f"REPRODUCTION-{a.dataset}.md"
    )
    return a


def command_line(args: argparse.Namespace) -> str:
    """How the report was made, for its header."""
    if (
        args.dataset == "digits"
        and args.specs_dir == SPECS_DIR
        and all(
            getattr(args, k) is None for k in ("rounds", "seeds", "data_dir", "batch")
        )
    ):
        return "make reproduce"
    extra = [f"--dataset {args.dataset}"] if args.dataset != "digits" else []
    if args.specs_dir != SPECS_DIR:
        extra.append(f"--specs-dir {args.specs_dir}")
    if args.data_dir is not None:
        extra.append("--data-dir DIR")
    if args.rounds is not None:
        extra.append(f"--rounds {args.rounds}")
    if args.seeds is not None:
        extra.append("--seeds " + ",".join(map(str, args.seeds)))
    return " ".join(["python -m jwins_jax.reproduce", *extra])


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the sweeps (unless ``--report-only``) and writes the report."""
    from jwins_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # before the first JAX computation starts its threads
    from jwins_jax.errors import ConfigError

    args = parse_args(argv)
    try:
        return _main(args)
    except ConfigError as err:
        sys.stderr.write(f"reproduce: error: {err}\n")
        return 2


def _main(args: argparse.Namespace) -> int:
    from jwins_jax.runner import Progress
    from jwins_jax.sweep import run_sweep

    t0 = time.perf_counter()
    paths = spec_paths(args.dataset, args.specs_dir)
    sweeps = [load(p, args) for p in paths]
    if not args.report_only:
        for sw in sweeps:
            progress = Progress(f"sweep {sw.name}", enabled=not args.quiet)
            run_sweep(sw, batch=args.batch, progress=progress)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    info = out / "runtime.json"
    if args.report_only:  # the runtime of the command that ran the sweeps, if known
        runtime = None
        if info.is_file():
            runtime = json.loads(info.read_text()).get("runtime_s")
    else:
        runtime = time.perf_counter() - t0
        info.write_text(json.dumps({"runtime_s": runtime}) + "\n")
    runs = []
    for sw, name in zip(sweeps, ("claim1", "claim2")):
        if not (sw.directory / "sweep.csv").is_file():
            from jwins_jax.errors import ConfigError

            raise ConfigError(
                f"{sw.directory / 'sweep.csv'} does not exist: run the "
                "sweeps first (without --report-only)"
            )
        shutil.copyfile(sw.directory / "sweep.csv", out / f"{name}_sweep.csv")
        runs.append(load_runs(sw, sw.directory))
    write_curves(runs, out / "curves.csv")
    c1 = sweeps[0].configs[0].config
    settings = {
        f: getattr(c1, f)
        for f in (
            "nodes",
            "topology",
            "edges_file",
            "dataset",
            "partition",
            "dirichlet_alpha",
            "model",
            "local_steps",
            "batch_size",
            "lr",
            "rounds",
            "eval_every",
        )
    }
    inp = Inputs(
        facts=facts(c1),
        dataset=args.dataset,
        claim1=runs[0],
        claim2=runs[1],
        settings=settings,
        rounds2=sweeps[1].configs[0].config.rounds,
        command=command_line(args),
        specs=(str(paths[0]), str(paths[1])),
        runtime_s=runtime,
        environment=environment(),
    )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render(inp, out, args.report))
    print(f"wrote {args.report} and {out}/")
    return 0


def facts(config) -> dict[str, Any]:
    """The model's size and, for the embedded digits, the data's, for the report."""
    from jwins_jax.models import get_model

    n_params = get_model(config.model).num_params
    out: dict[str, Any] = {
        "n_params": n_params,
        "nodes": config.nodes,
        "kib": round(4 * n_params / 1024),
    }
    if config.dataset == "digits":
        from jwins_jax.data import load_dataset

        ds = load_dataset("digits")
        out.update(
            n_train=len(ds.y_train),
            n_test=len(ds.y_test),
            per_node=round(len(ds.y_train) / config.nodes),
        )
    return out


def write_curves(claims: Sequence[Sequence[Run]], path: pathlib.Path) -> None:
    """The seed-mean curves behind the plots: one row per (claim, method, budget,
    evaluation)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "claim",
                "method",
                "budget",
                "round",
                "seeds",
                "test_acc_mean",
                "test_acc_std",
                "bytes_per_node_mean",
            ]
        )
        for i, runs in enumerate(claims, start=1):
            for (m, b), rs in group(runs).items():
                c = curve(rs)
                for j, rnd in enumerate(c.rounds):
                    w.writerow(
                        [
                            i,
                            m,
                            "" if b is None else b,
                            int(rnd),
                            len(rs),
                            f"{c.acc_mean[j]:.4f}",
                            f"{c.acc_std[j]:.4f}",
                            f"{c.bytes_mean[j]:.1f}",
                        ]
                    )


if __name__ == "__main__":
    sys.exit(main())
