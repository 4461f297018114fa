"""The report of the paper's two main claims: ``jwins reproduce``.

``jwins reproduce`` (``make reproduce``, ``python -m jwins_jax.reproduce``) runs a
dataset's two sweep specs, packaged in ``jwins_jax/resources/sweeps/``, and writes
``REPRODUCTION.md`` with its plots and tables under ``reproduction/<dataset>/``, in
the directory ``--output-dir`` (default: the current one):

* ``<dataset>_claim1.toml``: full sharing and JWINS in the paper's configuration,
  several seeds. Claim 1 of the paper (Dhasade et al., ICDCS 2023): JWINS reaches
  the accuracy of full sharing while sending far fewer bytes (up to 64 % fewer).
* ``<dataset>_claim2.toml``: random sampling, top-k (without and with accumulation),
  wavelet top-k, CHOCO-SGD and JWINS at communication budgets of 10-40 %, several
  seeds. Claim 2: at low budgets JWINS beats CHOCO-SGD (up to 4x fewer bytes for
  the same accuracy, higher accuracy for the same bytes).

A budget b is the fraction alpha of the model a baseline shares per message; JWINS's
budget is its alpha list, the paper's scaled to mean b
(:func:`jwins_jax.analysis.scaled_alpha_list`). Every plot and table uses the bytes
each run measured, not the budget.

This module is the report only. Its numbers come from :mod:`jwins_jax.analysis`
(each quantity per run, then mean ± std over seeds); the verdicts are computed first
as typed results with named thresholds (:class:`Claim1Verdict`,
:class:`Claim2Verdict`), then written into the template
``jwins_jax/resources/reproduction_template.md``. Running again resumes (finished
configs are skipped); ``--report-only`` rewrites the report from the runs there;
``--dry-run`` prints the sweeps' configs and where the outputs would go.
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
from typing import Any, ClassVar

import numpy as np

from jwins_jax import analysis as an
from jwins_jax import resources
from jwins_jax.analysis import OverSeeds, Run, markdown_table
from jwins_jax.errors import ConfigError

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
# A point whose final accuracy varies more than this between seeds is called unstable.
UNSTABLE_STD = 3.0
MIB = 2**20
SPECS_DIR = resources.path("sweeps")
Point = tuple[str, "float | None"]  # (method key, budget)


# -------------------------------------------------------------------- verdicts
@dataclasses.dataclass(frozen=True)
class Claim1Verdict:
    """Claim 1 agrees when, at the highest target both reach with every seed, JWINS
    needs at most ``1 - MIN_SAVING`` of full sharing's bytes and ends less than
    ``MAX_LOSS`` points below it; partly when it saves anything; else not."""

    acc_gap: float  # JWINS's final accuracy minus full sharing's (points)
    final_ratio: float  # JWINS / full bytes over the whole run
    fraction: float | None  # the highest target both reach, of full's final
    target: float | None  # that target (accuracy %)
    ratio: float | None  # JWINS / full bytes to reach it
    MIN_SAVING: ClassVar[float] = 0.5
    MAX_LOSS: ClassVar[float] = 1.0

    @property
    def met(self) -> bool | None:
        if self.ratio is None:
            return False
        if 1 - self.ratio >= self.MIN_SAVING and self.acc_gap > -self.MAX_LOSS:
            return True
        return None if self.ratio < 1 else False


@dataclasses.dataclass(frozen=True)
class Claim2Verdict:
    """Claim 2 agrees when, for the same accuracy, CHOCO-SGD needs more bytes than
    JWINS at every target both reach (at least ``MIN_RATIO`` times at one, unless
    only JWINS reaches some) and reaches none alone, and JWINS is more accurate
    within the bytes of each of its runs; it does not agree when JWINS wins none of
    these; else it partly agrees."""

    ratios: tuple[tuple[float, float], ...]  # (target fraction, CHOCO / JWINS bytes)
    jwins_only: tuple[float, ...]  # target fractions only JWINS reaches
    choco_only: tuple[float, ...]  # target fractions only CHOCO-SGD reaches
    margins: tuple[tuple[float, float], ...]  # (budget, JWINS - CHOCO points)
    choco_over: tuple[float, ...]  # budgets where CHOCO-SGD has nothing within
    MIN_RATIO: ClassVar[float] = 2.0

    @property
    def met(self) -> bool | None:
        r = [x for _, x in self.ratios]
        wins_acc = bool(r or self.jwins_only) and not self.choco_only
        wins_acc = wins_acc and all(x > 1 for x in r)
        wins_bytes = all(d > 0 for _, d in self.margins)
        if wins_acc and wins_bytes and (self.jwins_only or max(r) >= self.MIN_RATIO):
            return True
        loses = all(x <= 1 for x in r) and all(d <= 0 for _, d in self.margins)
        return False if loses and not self.jwins_only else None


@dataclasses.dataclass(frozen=True)
class TimeVerdict:
    """The time half of claim 2 agrees when, for the same accuracy, CHOCO-SGD needs
    more simulated time than JWINS at every target both reach (at least
    ``MIN_RATIO`` times at one, unless only JWINS reaches some) and reaches none
    alone; it does not agree when JWINS is faster at none; else it partly agrees."""

    ratios: tuple[tuple[float, float], ...]  # (target fraction, CHOCO / JWINS time)
    jwins_only: tuple[float, ...]
    choco_only: tuple[float, ...]
    MIN_RATIO: ClassVar[float] = 2.0

    @property
    def met(self) -> bool | None:
        r = [x for _, x in self.ratios]
        faster = bool(r or self.jwins_only) and not self.choco_only
        if faster and all(x > 1 for x in r):
            if self.jwins_only or max(r) >= self.MIN_RATIO:
                return True
        slower = all(x <= 1 for x in r) and not self.jwins_only
        return False if slower else None


# ------------------------------------------------------------------ the numbers
def points(runs: Sequence[Run]) -> dict[Point, list[Run]]:
    """Runs by (method, budget), seeds together, in METHODS order then budget."""
    rank = {m: i for i, m in enumerate(METHODS)}
    order = lambda kv: (rank.get(kv[0][0], len(rank)), kv[0][1] or 0.0)  # noqa: E731
    return dict(sorted(an.group(runs).items(), key=order))


@dataclasses.dataclass
class Results:
    """Everything the report states, computed before any of it is written."""

    one: dict[Point, list[Run]]  # claim-1 runs by point
    two: dict[Point, list[Run]]  # claim-2 runs by point
    full_final: float  # full sharing's final accuracy in claim 1, mean over seeds
    targets1: list[tuple[float, dict[str, OverSeeds]]]  # fraction, bytes to reach
    need2: list[tuple[float, dict[str, float | None]]]  # fraction, best budget's
    within2: list[tuple[float, float, dict[str, float | None]]]  # budget, level, acc
    verdict1: Claim1Verdict
    verdict2: Claim2Verdict
    round_gap: tuple[float, float, int] | None  # JWINS - full, seed-mean curves
    time2: list[tuple[float, dict[str, float | None]]]  # fraction, fewest seconds
    verdict_time: TimeVerdict | None  # None: runs recorded before the clock
    crossover: list[CrossoverPoint] | None = None  # the bandwidth sweep, if run


def _best(values, pick=max) -> float | None:
    values = [v for v in values if v is not None]
    return pick(values) if values else None


def _both(v: dict[str, float | None]) -> bool:
    return v.get("choco") is not None and v["jwins"] is not None


def compute(claim1: Sequence[Run], claim2: Sequence[Run]) -> Results:
    """The report's numbers and verdicts from the finished runs of both sweeps."""
    one, two = points(claim1), points(claim2)
    for what, pts, need in (("1", one, {"full", "jwins"}), ("2", two, {"jwins"})):
        if missing := need - {m for m, _ in pts}:
            raise ConfigError(
                f"the claim-{what} sweep has no finished runs of "
                f"{', '.join(sorted(missing))}; run the sweeps first"
            )
    full, jw = one[("full", None)], next(v for (m, _), v in one.items() if m == "jwins")
    full_final = an.final(full).mean
    # claim 1: each method's bytes to reach fractions of full sharing's final accuracy
    targets1 = [
        (
            f,
            {
                m: an.reach(an.curve(rs), f * full_final)
                for m, rs in (("full", full), ("jwins", jw))
            },
        )
        for f in CLAIM1_TARGETS
    ]
    both = [(f, n) for f, n in targets1 if n["full"].complete and n["jwins"].complete]
    f, n = both[-1] if both else (None, None)
    v1 = Claim1Verdict(
        acc_gap=an.final(jw).mean - full_final,
        final_ratio=an.final(jw, "bytes_per_node").mean
        / an.final(full, "bytes_per_node").mean,
        fraction=f,
        target=None if f is None else f * full_final,
        ratio=None if n is None else n["jwins"].mean / n["full"].mean,
    )
    # claim 2, same accuracy: a method's fewest bytes (and seconds) over its budgets
    need2 = fewest(two, full_final, "bytes_per_node")
    timed = all(_timed(r) for rs in two.values() for r in rs)
    time2 = fewest(two, full_final, "sim_time_s") if timed else []
    # claim 2, same bytes: a method's best accuracy within each JWINS run's bytes
    within2 = []
    for (m, b), rs in two.items():
        if m != "jwins":
            continue
        # each seed is held to the bytes JWINS sent in its run of the same seed
        limit = {r.config.seed: r.final_value("bytes_per_node") for r in rs}
        best: dict[str, list[float | None]] = {}
        for (k, _), krs in two.items():
            paired = [r for r in krs if r.config.seed in limit]
            lim = [limit[r.config.seed] for r in paired]
            v = an.best_within(an.curve(paired), lim).mean if paired else None
            best.setdefault(k, []).append(v)
        level = float(np.mean(list(limit.values())))
        within2.append((b, level, {k: _best(v) for k, v in best.items()}))
    v2 = Claim2Verdict(
        *_versus(need2),
        tuple((b, v["jwins"] - v["choco"]) for b, _, v in within2 if _both(v)),
        tuple(b for b, _, v in within2 if "choco" in v and v["choco"] is None),
    )
    vt = TimeVerdict(*_versus(time2)) if timed else None
    full_c, jw_c = an.curve(full, x="round"), an.curve(jw, x="round")
    n = min(full_c.y.shape[1], jw_c.y.shape[1])
    r = full_c.x[0][:n]
    later = r >= 0.2 * r[n - 1]
    round_gap = None
    if later.any():
        diff = jw_c.y_mean[:n][later] - full_c.y_mean[:n][later]
        round_gap = (float(np.nanmin(diff)), float(np.nanmax(diff)), int(r[later][0]))
    return Results(
        one, two, full_final, targets1, need2, within2, v1, v2, round_gap, time2, vt
    )


def fewest(
    pts: dict[Point, list[Run]], full_final: float, x: str
) -> list[tuple[float, dict[str, float | None]]]:
    """Per claim-2 target, each method's fewest ``x`` (bytes, seconds) over its
    budgets to first reach it (each seed's first evaluation, mean over seeds; a
    budget counts where every seed reaches it)."""
    curves = {k: an.curve(rs, x=x) for k, rs in pts.items()}
    methods = list(dict.fromkeys(m for m, _ in pts))
    out = []
    for f in CLAIM2_TARGETS:
        reach = {k: an.reach(c, f * full_final).mean for k, c in curves.items()}
        best = {
            m: _best([v for (k, _), v in reach.items() if k == m], min) for m in methods
        }
        out.append((f, best))
    return out


def _versus(need: list[tuple[float, dict[str, float | None]]]):
    """(CHOCO / JWINS ratios, targets only JWINS reaches, only CHOCO-SGD reaches)."""
    pairs = [(f, n.get("jwins"), n.get("choco")) for f, n in need]
    return (
        tuple((f, c / j) for f, j, c in pairs if j and c),
        tuple(f for f, j, c in pairs if j and not c),
        tuple(f for f, j, c in pairs if c and not j),
    )


def _timed(r: Run) -> bool:
    return not np.isnan(r.final_value("sim_time_s"))


# ------------------------------------------------------------ the time crossover
CROSSOVER_TARGET = 0.8  # time to this fraction of full sharing's final accuracy


@dataclasses.dataclass(frozen=True)
class CrossoverPoint:
    """One bandwidth of the crossover sweep: each method's simulated seconds to the
    target and bytes per node (mean over its seeds)."""

    bandwidth_mbps: float
    seconds: dict[str, float | None]  # method -> time to reach the target
    nbytes: dict[str, float]  # method -> bytes per node over the run

    def ratio(self, a: str, b: str) -> float | None:
        x, y = self.seconds.get(a), self.seconds.get(b)
        return x / y if x and y else None


def crossover(runs: Sequence[Run], full_final: float) -> list[CrossoverPoint]:
    """Time to :data:`CROSSOVER_TARGET` of full sharing's final accuracy (claim 1)
    per bandwidth and method, from the crossover sweep's runs."""
    out = []
    by_bw = an.group(runs, lambda r: float(r.config.bandwidth_mbps))
    for bw in sorted(by_bw):
        by_m = an.group(by_bw[bw], lambda r: r.method)
        target = CROSSOVER_TARGET * full_final
        out.append(
            CrossoverPoint(
                bw,
                {
                    m: an.reach(an.curve(rs, x="sim_time_s"), target).mean
                    for m, rs in by_m.items()
                },
                {m: an.final(rs, "bytes_per_node").mean for m, rs in by_m.items()},
            )
        )
    return out


# ------------------------------------------------------------------ formatting
def fmt_acc(s: OverSeeds) -> str:
    return f"{s.mean:.2f} ± {s.std:.2f} %"


def fmt_mib(b: float | None) -> str:
    return "not reached" if b is None else f"{b / MIB:.2f} MiB"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def pct(x: float) -> str:
    return f"{x * 100:g} %"


def name(m: str) -> str:
    return METHODS.get(m, m)


def joined(fmt: str, items: Sequence[Any]) -> str:
    return ", ".join(fmt.format(i) for i in items)


VERDICT = {True: "**agrees**", False: "**does not agree**", None: "**partly agrees**"}


def agreement(res: Results) -> str:
    """The section that says where the results agree with the paper."""
    v1, v2 = res.verdict1, res.verdict2
    gap = f"JWINS ends {v1.acc_gap:+.2f} points from full sharing"
    if v1.ratio is not None:
        lines = [
            f"* Claim 1 {VERDICT[v1.met]}: {gap}'s final accuracy and first reaches "
            f"{pct(v1.fraction)} of it ({v1.target:.2f} %) with {v1.ratio:.2f}x the "
            f"bytes of full sharing, {(1 - v1.ratio) * 100:.0f} % fewer (paper: up to "
            f"64 % fewer); over the whole run it sends {v1.final_ratio:.2f}x the bytes "
            "of full sharing."
        ]
    else:
        lines = [f"* Claim 1 {VERDICT[False]}: {gap} and does not reach the targets "]
        lines[0] += "with every seed."
    parts = []
    if v2.ratios:
        parts.append(
            f"for the same accuracy CHOCO-SGD needs {joined('{:.2f}x', [r for _, r in v2.ratios])} "
            f"the bytes of JWINS (targets {', '.join(pct(f) for f, _ in v2.ratios)} of "
            "full sharing's final accuracy)"
        )
    for who, fracs in (("JWINS", v2.jwins_only), ("CHOCO-SGD", v2.choco_only)):
        if fracs:
            parts.append(f"only {who} reaches the targets {', '.join(map(pct, fracs))}")
    if not (v2.ratios or v2.jwins_only or v2.choco_only):
        parts.append("neither reaches the accuracy targets")
    if v2.margins:
        parts.append(
            "within the bytes of JWINS's runs JWINS is "
            f"{joined('{:+.2f}', [d for _, d in v2.margins])} points above CHOCO-SGD "
            f"at budgets {', '.join(pct(b) for b, _ in v2.margins)}"
        )
    if v2.choco_over:
        parts.append(
            f"at budgets {', '.join(map(pct, v2.choco_over))} some seed of every "
            "CHOCO-SGD budget has sent more bytes by its first evaluation than JWINS "
            "in its whole run"
        )
    lines.append(
        f"* Claim 2 {VERDICT[v2.met]}: {'; '.join(parts)} (paper: up to 4x fewer "
        "bytes, and higher accuracy for the same bytes)."
    )
    vt = res.verdict_time
    if vt is not None:
        parts = []
        if vt.ratios:
            parts.append(
                "for the same accuracy CHOCO-SGD needs "
                f"{joined('{:.2f}x', [r for _, r in vt.ratios])} the simulated time "
                f"of JWINS (targets {', '.join(pct(f) for f, _ in vt.ratios)})"
            )
        for who, fracs in (("JWINS", vt.jwins_only), ("CHOCO-SGD", vt.choco_only)):
            if fracs:
                parts.append(f"only {who} reaches {', '.join(map(pct, fracs))}")
        if not parts:
            parts.append("neither reaches the accuracy targets")
        lines.append(
            f"* The time half of claim 2 {VERDICT[vt.met]}: {'; '.join(parts)}, on "
            f"{network(res)} (paper: up to 4x in network savings and time)."
        )
    if res.crossover:
        lines.append(f"* Beyond the paper: {crossover_summary(res.crossover)}.")
    others: dict[str, list[float | None]] = {}  # per target; None: not both reach it
    for _, need in res.need2:
        for m, b in need.items():
            if m not in ("jwins", "choco"):
                j = need["jwins"]
                others.setdefault(m, []).append(b / j if b and j else None)
    if any(r is not None for v in others.values() for r in v):
        lines.append(
            "* Against the other baselines, bytes needed for the same accuracy "
            "relative to JWINS (per target, - where not both reach it): "
            + "; ".join(
                f"{name(m)} {', '.join(map(fmt_ratio, v))}" for m, v in others.items()
            )
            + "."
        )
    more = observations(res)
    return "\n".join(
        lines + (["", "What else the numbers show:", "", *more] if more else [])
    )


def observations(res: Results) -> list[str]:
    """What else the numbers show that bears on the comparison with the paper."""
    lines = []
    if res.round_gap is not None:
        lo, hi, start = res.round_gap
        lines.append(
            "* Round for round, JWINS learns like full sharing here: from round "
            f"{start} on its seed-mean accuracy is within {lo:+.2f} to {hi:+.2f} "
            "points of full sharing's, so its byte saving at equal accuracy is about "
            f"its saving per round ({res.verdict1.final_ratio:.2f}x the bytes)."
        )
    finals = {k: an.final(rs) for k, rs in res.two.items()}
    shaky = [
        f"{name(m)} {pct(b)} {fmt_acc(a)}"
        for (m, b), a in finals.items()
        if a.std > UNSTABLE_STD
    ]
    if shaky:
        lines.append(
            f"* Unstable points (final accuracy varies by more than {UNSTABLE_STD:g} "
            f"points between seeds): {'; '.join(shaky)}. Their ratios to JWINS depend "
            "on the seeds and on untuned settings (CHOCO-SGD's gamma) more than the "
            "others do."
        )
    r2 = max(r.final.get("round", 0) for rs in res.two.values() for r in rs)
    full_c = an.curve(res.one[("full", None)], x="round")
    at = np.flatnonzero(full_c.x[0] == r2)
    if at.size:
        best: dict[str, tuple[float | None, float]] = {}
        for (m, b), a in finals.items():
            if m not in best or a.mean > best[m][1]:
                best[m] = (b, a.mean)
        lines.append(
            f"* After {r2} rounds full sharing is at {full_c.y_mean[at[0]]:.2f} % "
            "(claim-1 runs); the best final accuracy of each method over the budgets: "
            + "; ".join(f"{name(m)} {a:.2f} % ({pct(b)})" for m, (b, a) in best.items())
            + "."
        )
    return lines


def tables(res: Results) -> dict[str, str]:
    """The report's tables (and JWINS's full-share note), by template field."""
    t: dict[str, str] = {}
    full_bytes = an.final(res.one[("full", None)], "bytes_per_node").mean
    rows = []
    for (m, _), rs in res.one.items():
        nbytes = an.final(rs, "bytes_per_node").mean
        best = OverSeeds(tuple(r.summary.get("best_test_acc_mean") for r in rs))
        rows.append([name(m), len(rs), rs[0].final["round"], fmt_acc(an.final(rs))])
        rows[-1] += [fmt_acc(best), fmt_mib(nbytes), fmt_ratio(nbytes / full_bytes)]
    head = "method|seeds|rounds|final test accuracy (mean ± std over seeds)|best "
    t["claim1_table"] = _table(head + "accuracy|bytes per node|vs full", rows)
    rows = []
    for frac, need in res.targets1:
        full, jw = need["full"].mean, need["jwins"].mean
        ratio = jw / full if full and jw else None
        cells = [_reach(need["full"]), _reach(need["jwins"]), fmt_ratio(ratio)]
        saved = "-" if ratio is None else f"{(1 - ratio) * 100:.0f} %"
        rows.append([_target(frac, res.full_final), *cells, saved])
    head = "target accuracy|full sharing|JWINS|JWINS / full|bytes saved"
    t["claim1_targets"] = _table(head, rows)
    lists = [(b, rs[0].config) for (m, b), rs in res.two.items() if m == "jwins"]
    rows = [
        [pct(b), f"`[{joined('{:g}', c.alpha_list)}]`", _entries(c)] for b, c in lists
    ]
    t["jwins_lists"] = _table(
        "budget|JWINS alpha list|entries sending the whole model", rows
    )
    full = [f"budget {pct(b)}: {_entries(c)} entries" for b, c in lists if _full(c)]
    t["jwins_full_note"] = (
        "Its scaled alpha lists keep the metadata cap, so entries at or above it "
        f"still send the whole model ({', '.join(full)})"
        if full
        else "None of JWINS's scaled alpha lists reaches the metadata cap"
    )
    rows = []
    for (m, b), rs in res.two.items():
        total = an.final(rs, "bytes_per_node").mean
        meta = an.final(rs, "meta_bytes_per_node").mean
        share = f"{meta / total * 100:.1f} %" if total else "-"
        rows.append([name(m), pct(b), len(rs), fmt_acc(an.final(rs))])
        rows[-1] += [fmt_mib(total), share]
    head = "method|budget|seeds|final test accuracy|bytes per node|metadata share"
    t["claim2_table"] = _table(head, rows)
    names = "|".join(name(m) for m in dict.fromkeys(m for m, _ in res.two))
    rows = [
        [_target(frac, res.full_final), *map(fmt_mib, need.values())]
        + [fmt_ratio(need["choco"] / need["jwins"] if _both(need) else None)]
        for frac, need in res.need2
    ]
    t["equal_accuracy"] = _table(f"target|{names}|CHOCO / JWINS", rows)
    rows = [
        [f"{level / MIB:.2f} MiB (JWINS {pct(b)}'s run)"]
        + ["-" if v is None else f"{v:.2f} %" for v in best.values()]
        for b, level, best in res.within2
    ]
    t["equal_bytes"] = _table(f"bytes per node|{names}", rows)
    t["network"] = network(res)
    if res.time2:
        rows = [
            [_target(frac, res.full_final), *map(fmt_s, need.values())]
            + [fmt_ratio(need["choco"] / need["jwins"] if _both(need) else None)]
            for frac, need in res.time2
        ]
        t["equal_accuracy_time"] = _table(f"target|{names}|CHOCO / JWINS", rows)
    else:
        t["equal_accuracy_time"] = (
            "(the claim-2 runs were recorded without the simulated clock: run the "
            "sweeps again)"
        )
    t["crossover_table"] = crossover_table(res.crossover) if res.crossover else ""
    return t


def crossover_section(res: Results, header: dict[str, Any], rel: str) -> str:
    """The report's section on the bandwidth sweep ("" when it was not run)."""
    if not res.crossover:
        return ""
    c = next(iter(res.two.values()))[0].config
    return CROSSOVER_TEXT.format(
        spec=header["spec3"],
        rel=rel,
        target=pct(CROSSOVER_TARGET),
        summary=crossover_summary(res.crossover),
        table=crossover_table(res.crossover),
        gflops=f"{c.node_gflops:g}",
        latency=f"{c.latency_ms:g}",
    )


CROSSOVER_TEXT = """## Beyond the paper: where sparsification pays in time

`{spec}` runs full sharing, JWINS and CHOCO-SGD at a budget of 20 % with one seed on
simulated networks from 1 Mbit/s to 10 Gbit/s per node (up and down), compute held at
{gflops} GFLOP/s per node and {latency} ms latency. The bandwidth changes no training
result, only the clocks. Simulated seconds until the test accuracy first reaches
{target} of full sharing's final accuracy (claim 1), and JWINS's ratios (< 1: JWINS
is faster):

{table}

![time ratios against bandwidth]({rel}/crossover_time_ratio.png)

The dashed lines are the bytes ratios: where the time ratio follows them, the network
is the bottleneck and every byte saved is time saved; where it rises towards 1,
compute and latency take over and sparsification stops paying. Summary: {summary}.
"""


def fmt_s(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.2f} s"


def network(res: Results) -> str:
    """The simulated network and hardware of the claim-2 runs, in words."""
    c = next(iter(res.two.values()))[0].config
    down = "" if c.downlink_mbps == c.bandwidth_mbps else f", {c.downlink_mbps:g} down"
    return (
        f"{c.bandwidth_mbps:g} Mbit/s links{down}, {c.latency_ms:g} ms latency, "
        f"{c.node_gflops:g} GFLOP/s per node"
    )


def crossover_table(points: Sequence[CrossoverPoint]) -> str:
    rows = []
    for p in points:
        rows.append(
            [f"{p.bandwidth_mbps:g}"]
            + [fmt_s(p.seconds.get(m)) for m in ("full", "jwins", "choco")]
            + [
                fmt_ratio(p.ratio("jwins", "full")),
                fmt_ratio(p.ratio("jwins", "choco")),
            ]
        )
    head = "Mbit/s|full sharing|JWINS|CHOCO-SGD|JWINS / full|JWINS / CHOCO-SGD"
    return _table(head, rows)


def crossover_summary(points: Sequence[CrossoverPoint]) -> str:
    """Where sparsification pays in time: the ratios at both ends of the sweep."""
    lo, hi = points[0], points[-1]
    a = (lo.ratio("jwins", "full"), hi.ratio("jwins", "full"))
    b = (lo.ratio("jwins", "choco"), hi.ratio("jwins", "choco"))
    return (
        f"JWINS needs {fmt_ratio(a[0])} of full sharing's time to "
        f"{pct(CROSSOVER_TARGET)} of its accuracy at {lo.bandwidth_mbps:g} Mbit/s and "
        f"{fmt_ratio(a[1])} at {hi.bandwidth_mbps:g} Mbit/s; against CHOCO-SGD "
        f"{fmt_ratio(b[0])} and {fmt_ratio(b[1])}"
    )


def _table(header: str, rows: list[list[Any]]) -> str:
    return markdown_table(header.split("|"), rows)


def _reach(n: OverSeeds) -> str:
    if n.complete:
        return f"{fmt_mib(n.mean)} ± {n.std / MIB:.2f}"
    return f"not reached by all seeds ({n.count}/{len(n.values)})"


def _target(frac: float, full_final: float) -> str:
    return f"{pct(frac)} of full's final = {frac * full_final:.2f} %"


def _full(config) -> int:
    """How many entries of a JWINS alpha list send the whole model."""
    return sum(a >= config.metadata_cap for a in config.alpha_list)


def _entries(config) -> str:
    return f"{_full(config)} of {len(config.alpha_list)}"


def breakdown(res: Results) -> tuple[dict[str, list[tuple[str, float, float]]], str]:
    """Value and metadata bytes per node and round: plot panels and a table."""
    bars: dict[str, list[tuple[str, float, float]]] = {}
    rows = []
    for claim, pts in enumerate((res.one, res.two), start=1):
        for (m, b), rs in pts.items():
            v, meta = (
                np.mean([r.final_value(k) / r.final_value("round") for r in rs])
                for k in ("value_bytes_per_node", "meta_bytes_per_node")
            )
            ref = b is None or claim == 1
            panel = "reference runs" if ref else f"budget {pct(b)}"
            label = name(m) + (" (paper list)" if claim == 1 and m == "jwins" else "")
            bars.setdefault(panel, []).append((label, v, meta))
            share = f"{meta / (v + meta) * 100:.1f} %" if v + meta else "-"
            rows.append([label, panel, f"{v / 1024:.1f}", f"{meta / 1024:.2f}", share])
    head = "method|runs|values (KiB / round)|metadata (KiB / round)|metadata share"
    return bars, _table(head, rows)


# ------------------------------------------------------------------------ plots
def _figure(*args, **kwargs):
    from jwins_jax.results import _pyplot

    return _pyplot().subplots(*args, **kwargs)


def _save(fig, path: pathlib.Path) -> None:
    from jwins_jax.results import _pyplot

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def plot_claim1(res: Results, out: pathlib.Path, title: str) -> None:
    """Accuracy against rounds and against bytes, mean ± std over seeds."""
    for kind, x, scale, xlabel in (
        ("rounds", "round", 1, "round"),
        ("bytes", "bytes_per_node", MIB, "cumulative bytes sent per node (MiB)"),
    ):
        fig, ax = _figure(figsize=(6.4, 4.2))
        for (m, _), rs in res.one.items():
            c, color = an.curve(rs, x=x), COLORS.get(m)
            xs, lo, hi = c.x_mean / scale, c.y_mean - c.y_std, c.y_mean + c.y_std
            ax.plot(xs, c.y_mean, color=color, label=f"{name(m)} ({c.seeds} seeds)")
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2)
        ax.set(xlabel=xlabel, title=title)
        ax.set_ylabel("test accuracy (%), mean over nodes;\nband: ± std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        _save(fig, out / f"claim1_accuracy_vs_{kind}.png")


def plot_claim2(res: Results, out: pathlib.Path, title: str) -> None:
    """Left: final accuracy against total bytes, a point per budget; right: the best
    accuracy each method reaches within a number of bytes (Pareto front of the
    seed-mean curves of all its budgets)."""
    fig, (left, right) = _figure(1, 2, figsize=(12, 4.6))
    for m, pts in an.group(res.two.items(), lambda kv: kv[0][0]).items():
        style = {"color": COLORS.get(m), "label": name(m)}
        xs = [an.final(rs, "bytes_per_node").mean / MIB for _, rs in pts]
        accs = [an.final(rs) for _, rs in pts]
        ys = [a.mean for a in accs]
        left.errorbar(xs, ys, [a.std for a in accs], marker="o", capsize=3, **style)
        for ((_, b), _), x, y in zip(pts, xs, ys):
            left.annotate(
                f"{b * 100:g}%",
                (x, y),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, -9),
            )
        curves = [an.curve(rs) for _, rs in pts]
        front = an.pareto_front(
            (x, y) for c in curves for x, y in zip(c.x_mean, c.y_mean) if y == y
        )
        front.append((max(c.x_mean.max() for c in curves), front[-1][1]))
        fx, fy = zip(*front)
        right.step(np.array(fx) / MIB, fy, where="post", **style)
    left.set(
        xlabel="bytes sent per node in the whole run (MiB, log scale)",
        ylabel="final test accuracy (%), mean ± std over seeds",
        title=f"{title}: one point per budget",
    )
    right.set(
        xlabel="bytes sent per node (MiB, log scale)",
        ylabel="best test accuracy reached within\nthose bytes (%), mean over seeds",
        title=f"{title}: accuracy for a byte budget",
    )
    for ax in (left, right):
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    _save(fig, out / "claim2_accuracy_vs_bytes.png")


def plot_claim2_time(res: Results, out: pathlib.Path, title: str) -> None:
    """The best accuracy each method reaches within a simulated time (Pareto front
    of the seed-mean curves of all its budgets)."""
    fig, ax = _figure(figsize=(6.4, 4.4))
    for m, pts in an.group(res.two.items(), lambda kv: kv[0][0]).items():
        curves = [an.curve(rs, x="sim_time_s") for _, rs in pts]
        front = an.pareto_front(
            (x, y) for c in curves for x, y in zip(c.x_mean, c.y_mean) if y == y
        )
        front.append((max(c.x_mean.max() for c in curves), front[-1][1]))
        fx, fy = zip(*front)
        ax.step(fx, fy, where="post", color=COLORS.get(m), label=name(m))
    ax.set(
        xlabel="simulated time (s, mean over nodes, log scale)",
        ylabel="best test accuracy reached within\nthat time (%), mean over seeds",
        title=f"{title}: accuracy for a time budget",
    )
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    _save(fig, out / "claim2_accuracy_vs_time.png")


def plot_crossover(points: Sequence[CrossoverPoint], out: pathlib.Path) -> None:
    """Time ratios to the target against bandwidth, with the bytes ratios."""
    fig, ax = _figure(figsize=(6.4, 4.2))
    bw = [p.bandwidth_mbps for p in points]
    for other, color in (("full", "C0"), ("choco", "C2")):
        t = [p.ratio("jwins", other) for p in points]
        ax.plot(
            bw,
            [np.nan if v is None else v for v in t],
            "o-",
            color=color,
            label=f"JWINS / {name(other)}: time to the target",
        )
        b = [p.nbytes["jwins"] / p.nbytes[other] for p in points]
        ax.plot(
            bw,
            b,
            "--",
            color=color,
            alpha=0.6,
            label=f"JWINS / {name(other)}: bytes per node",
        )
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set(
        xlabel="bandwidth per node, up and down (Mbit/s, log scale)",
        ylabel="ratio (< 1: JWINS needs less)",
        title=f"time to {pct(CROSSOVER_TARGET)} of full sharing's accuracy",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    _save(fig, out / "crossover_time_ratio.png")


def plot_breakdown(
    bars: dict[str, list[tuple[str, float, float]]], out: pathlib.Path, title: str
) -> None:
    """Stacked bars of value and metadata bytes per node and round, a panel each."""
    fig, axes = _figure(
        1, len(bars), figsize=(3.2 * len(bars) + 1, 4.2), sharey=True, squeeze=False
    )
    for ax, (panel, items) in zip(axes[0], bars.items()):
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
    _save(fig, out / "bytes_values_vs_metadata.png")


# ------------------------------------------------------------------- the report
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


def render(
    res: Results,
    out: pathlib.Path,
    report: pathlib.Path,
    header: dict[str, Any],
    facts: dict[str, Any],
) -> str:
    """The whole report as markdown (its plots are written to ``out``).

    Args:
        res: the numbers (:func:`compute`).
        out: the folder of the plots.
        report: where the report goes (its links are relative to it).
        header: ``dataset``, ``command``, ``spec1``, ``spec2`` and ``environment``.
        facts: the model's and the data's sizes (:func:`facts`).
    """
    plot_claim1(res, out, f"{header['dataset']}: full sharing vs JWINS")
    plot_claim2(res, out, header["dataset"])
    if res.time2:
        plot_claim2_time(res, out, header["dataset"])
    if res.crossover:
        plot_crossover(res.crossover, out)
    bars, breakdown_table = breakdown(res)
    plot_breakdown(bars, out, f"{header['dataset']}: what a node sends per round")
    runs = [r for pts in (res.one, res.two) for rs in pts.values() for r in rs]
    c, seeds = runs[0].config, sorted({r.config.seed for r in runs})
    try:
        note = DATASET_NOTES[header["dataset"]].format(**facts)
    except KeyError:
        note = (
            f"{header['dataset']} with a model of {facts.get('n_params', '?')} "
            "parameters; see its description in `jwins_jax/data/`."
        )
    template = resources.path("reproduction_template.md").read_text()
    return template.format(
        **{k: v for k, v in c.to_dict().items() if k != "dataset"},
        **header,
        **tables(res),
        rel=os.path.relpath(out, report.parent),
        graph=(
            f"the paper's {c.nodes}-node graph"
            if c.topology == "edges" and c.edges_file is None
            else f"a {c.topology} graph"
        ),
        seed_list=", ".join(map(str, seeds)),
        seeds=len(seeds),
        agreement=agreement(res),
        seeds2=len(next(iter(res.two.values()))),
        rounds2=next(iter(res.two.values()))[0].config.rounds,
        breakdown=breakdown_table,
        crossover_section=crossover_section(
            res, header, os.path.relpath(out, report.parent)
        ),
        dataset_note=note,
        cifar_configs=_count_configs("cifar10"),
    )


# ---------------------------------------------------------------------- running
def _count_configs(dataset: str) -> str:
    from jwins_jax.sweep import load_spec

    try:
        return str(sum(len(load_spec(p).configs) for p in spec_paths(dataset)))
    except Exception:  # noqa: BLE001 - only a number in the text
        return "several"


def write_curves(claims: Sequence[Sequence[Run]], path: pathlib.Path) -> None:
    """The seed-mean curves behind the plots: one row per (claim, method, budget,
    evaluation)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = "claim method budget round seeds test_acc_mean test_acc_std"
        w.writerow((head + " bytes_per_node_mean").split())
        for i, runs in enumerate(claims, start=1):
            for (m, b), rs in points(runs).items():
                c, rounds = an.curve(rs), an.curve(rs, x="round").x[0]
                for j, rnd in enumerate(rounds):
                    acc = [f"{c.y_mean[j]:.4f}", f"{c.y_std[j]:.4f}"]
                    budget = "" if b is None else b
                    w.writerow(
                        [i, m, budget, int(rnd), c.seeds, *acc, f"{c.x_mean[j]:.1f}"]
                    )


# ---------------------------------------------------------------------- running
def spec_paths(
    dataset: str, specs_dir: pathlib.Path = SPECS_DIR
) -> tuple[pathlib.Path, pathlib.Path]:
    """The dataset's claim-1 and claim-2 sweep specs (ConfigError if missing)."""
    paths = (specs_dir / f"{dataset}_claim1.toml", specs_dir / f"{dataset}_claim2.toml")
    if not all(p.is_file() for p in paths):
        have = {q.name.rsplit("_claim", 1)[0] for q in specs_dir.glob("*_claim?.toml")}
        raise ConfigError(
            f"sweep spec {str(paths[0])!r} or {paths[1].name!r} does not exist; "
            f"datasets with specs in {str(specs_dir)!r}: "
            f"{', '.join(sorted(have)) or 'none'} (--specs-dir chooses another folder)"
        )
    return paths


def crossover_path(
    dataset: str, specs_dir: pathlib.Path = SPECS_DIR
) -> pathlib.Path | None:
    """The dataset's optional bandwidth sweep (``<dataset>_crossover.toml``)."""
    path = specs_dir / f"{dataset}_crossover.toml"
    return path if path.is_file() else None


def _shown(path: pathlib.Path) -> str:
    """A spec's path for the report: packaged specs relative to the package."""
    if path.parent.resolve() == SPECS_DIR.resolve():
        return f"jwins_jax/resources/sweeps/{path.name}"
    return str(path)


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


def environment() -> str:
    """The device, jax version and date, for the report's header."""
    import jax

    from jwins_jax.platform import cpu_model

    dev = jax.devices()[0]
    cpu = f"{os.cpu_count()}-core CPU ({cpu_model()})"
    device = cpu if dev.platform == "cpu" else str(dev.device_kind)
    return f"{device}, jax {jax.__version__}, {datetime.date.today().isoformat()}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``jwins reproduce``."""
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
        help="folder of the sweep specs (default: the packaged ones)",
    )
    p.add_argument(
        "--output-dir",
        type=pathlib.Path,
        default=pathlib.Path("."),
        help="where the runs (runs/reproduce-<dataset>/), plots and CSV files "
        "(reproduction/<dataset>/) and the report (REPRODUCTION.md for digits, "
        "else REPRODUCTION-<dataset>.md) go (default: the current directory)",
    )
    p.add_argument("--data-dir", help="data_dir for file-based datasets")
    p.add_argument("--rounds", type=int, help="override the specs' rounds")
    p.add_argument(
        "--seeds",
        type=lambda text: [int(v) for v in text.split(",") if v.strip()],
        help="override the specs' seeds, e.g. 1,2",
    )
    p.add_argument("--batch", type=int, help="configs per compiled batch")
    for flag, text in (
        ("--report-only", "write the report from the runs already there"),
        ("--dry-run", "print the sweeps' configs and where the outputs go"),
    ):
        p.add_argument(flag, action="store_true", help=text + ", run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def command_line(args: argparse.Namespace) -> str:
    """How the report was made, for its header."""
    flags = {
        "--dataset": None if args.dataset == "digits" else args.dataset,
        "--specs-dir": None if args.specs_dir == SPECS_DIR else args.specs_dir,
        "--data-dir": None if args.data_dir is None else "DIR",
        "--rounds": args.rounds,
        "--seeds": args.seeds and ",".join(map(str, args.seeds)),
    }
    given = [f"{k} {v}" for k, v in flags.items() if v is not None]
    if not given and args.batch is None:
        return "make reproduce"
    return " ".join(["jwins reproduce", *given])


def run(args: argparse.Namespace) -> int:
    """Runs the sweeps (unless ``--report-only`` or ``--dry-run``) and writes the
    report; ConfigError on bad input or missing runs."""
    from jwins_jax.runner import Progress
    from jwins_jax.sweep import describe, run_sweep

    t0 = time.perf_counter()
    d = args.dataset
    args.runs_dir = args.output_dir / "runs" / f"reproduce-{d}"
    args.out = args.output_dir / "reproduction" / d
    args.report = args.output_dir / f"REPRODUCTION{'' if d == 'digits' else '-' + d}.md"
    paths = spec_paths(args.dataset, args.specs_dir)
    extra = crossover_path(args.dataset, args.specs_dir)
    sweeps = [load(p, args) for p in (*paths, *([extra] if extra else []))]
    if args.dry_run:
        for sw in sweeps:
            print(describe(sw, args.batch))
        print(f"report: {args.report}; plots and CSV files: {args.out}/")
        return 0
    if not args.report_only:
        for sw in sweeps:
            progress = Progress(f"sweep {sw.name}", enabled=not args.quiet)
            run_sweep(sw, batch=args.batch, progress=progress)
    out, runs = args.out, []
    if extra is not None and not (sweeps[2].directory / "sweep.csv").is_file():
        sweeps, extra = sweeps[:2], None  # the crossover was not run: leave it out
    for sw in sweeps:
        if not (sw.directory / "sweep.csv").is_file():
            raise ConfigError(
                f"{sw.directory / 'sweep.csv'} does not exist: run the sweeps first "
                "(without --report-only)"
            )
        runs.append([r for r in an.load_sweep(sw.directory) if _finished(r)])
    res = compute(runs[0], runs[1])  # checks them before anything is written
    if extra is not None:
        res.crossover = crossover(runs[2], res.full_final)
    out.mkdir(parents=True, exist_ok=True)
    for sw, claim in zip(sweeps, ("claim1", "claim2", "crossover")):
        shutil.copyfile(sw.directory / "sweep.csv", out / f"{claim}_sweep.csv")
    info = out / "runtime.json"
    runtime = None  # --report-only: the runtime of the command that ran the sweeps
    if args.report_only and info.is_file():
        runtime = json.loads(info.read_text()).get("runtime_s")
    elif not args.report_only:
        runtime = time.perf_counter() - t0
        info.write_text(json.dumps({"runtime_s": runtime}) + "\n")
    write_curves(runs, out / "curves.csv")
    took = f"; the command took {runtime / 60:.0f} min" if runtime else ""
    header = {
        "dataset": args.dataset,
        "command": command_line(args),
        "spec1": _shown(paths[0]),
        "spec2": _shown(paths[1]),
        "spec3": _shown(extra) if extra else "",
        "environment": environment() + took,
    }
    conf = sweeps[0].configs[0].config
    args.report.parent.mkdir(parents=True, exist_ok=True)
    text = render(res, out, args.report, header, facts(conf))
    args.report.write_text(text)
    print(f"wrote {args.report} and {out}/")
    return 0


def _finished(r: Run) -> bool:
    return r.status == "finished" and not np.isnan(r.final_value("test_acc"))


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jwins_jax.reproduce``: the same as ``jwins reproduce``."""
    from jwins_jax.cli import main as cli_main

    return cli_main(["reproduce", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
