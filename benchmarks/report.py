"""Markdown report of the benchmark JSON files: measurements and ratios, no verdicts.

What a number is compared against (the targets) is written in ``RESULTS.md``'s text,
not here. The report is built from whatever section files exist in the output
directory (``machine.json``, ``e2e.json``, ...), so sections run
one at a time (``run.py --only SECTION``) can be combined into one dated section of
``benchmarks/RESULTS.md`` (``run.py --report``). Each section keeps its own
environment record; the header names them all.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

SECTIONS = ("machine", "e2e", "kernels", "scaling", "sweep", "devices", "gpu")
GIB = 2**30

RESULTS_INTRO = """# Benchmark results

Produced by `make bench` (`python benchmarks/run.py`); sections can also be run one at
a time (`python benchmarks/run.py --only e2e --no-append`, then `--report`). Every
number is a median of steady-state repeats after a warm-up, with compile time
reported apart, and every ratio compares two measurements taken in the same process
run (DESIGN.md "Performance habits"). Each dated section below records its device,
CPU model, JAX version and the machine's load average: on shared 2-core machines
absolute times vary from run to run, ratios much less.
"""


def load(out_dir: pathlib.Path) -> dict[str, Any]:
    """The section files present in ``out_dir``."""
    data = {}
    for name in SECTIONS:
        path = out_dir / f"{name}.json"
        if path.is_file():
            data[name] = json.loads(path.read_text())
    return data


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.2f} ms"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _env_line(name: str, env: dict[str, Any]) -> str:
    load = env.get("load_average")
    load_s = ", ".join(f"{v:.1f}" for v in load) if load else "?"
    return (
        f"| {name} | {env['date']} | {env['device_kind']} ({env['backend']}) | "
        f"{env['cpu_model']} x{env['cpu_count']} | {env['jax']} | {load_s} |"
    )


# ------------------------------------------------------------------- sections
def machine_lines(mm: dict[str, Any]) -> list[str]:
    return [
        "### Machine reference",
        "",
        *_table(
            ["kernel", "median", "best", "GFLOP/s (median)", "GFLOP/s (best)"],
            [
                [
                    f"jitted {mm['size']}x{mm['size']} float32 matmul",
                    _ms(mm["median_s"]),
                    _ms(mm["min_s"]),
                    f"{mm['gflops']:.0f}",
                    f"{mm['gflops_best']:.0f}",
                ]
            ],
        ),
        "",
    ]


def _strategies(res: dict[str, Any]) -> list[str]:
    """The strategies measured for one model, in the run's order."""
    names = res["config"].get("strategies", ["full", "jwins"])
    return [s for s in names if s in res]


def _pair(slow: dict[str, Any] | None, fast: dict[str, Any]) -> str:
    """``slow / fast`` median times as text."""
    if slow is None:
        return "-"
    return f"{_ms(slow['median_s'])} / {_ms(fast['median_s'])}"


def e2e_lines(e2e: dict[str, Any]) -> list[str]:
    st = e2e["settings"]
    torch_info = st.get("torch", "not recorded")
    lines = [
        f"### End to end (n = {st['nodes']}, every model with its batch and tau)",
        "",
        "Vectorized: local training = `training.train_all` (vmapped `local_train`, "
        "nodes in groups of `train_chunk` = 8) jitted; sharing = "
        "`sharing.step` jitted alone on the trained models; round = "
        "`Experiment.advance` over R rounds per call (one compiled loop, donated "
        "state) divided by R. Per-node JAX: the same model's jitted `local_train` "
        "called node by node, PyWavelets + NumPy sharing node by node "
        "(benchmarks/pernode.py). Per-node PyTorch: the original system's engine, "
        "a PyTorch model trained node by node with `torch.optim.SGD` "
        "(benchmarks/torch_baseline.py), and the same NumPy + PyWavelets sharing "
        f"(torch: {torch_info}, {st.get('torch_threads')} threads). The JAX ways are "
        "compiled with the same options (`jwins_jax.compiler.jit`); every way runs "
        "with the same allocator settings (`jwins_jax.hostmem`). Ratio = per-node "
        "/ vectorized (> 1: the vectorized way is faster).",
        "",
    ]
    wrows = []
    for model, res in e2e["models"].items():
        cfg = res["config"]
        plan = res.get("plan", {})
        tau = str(cfg["local_steps"])
        paper_tau = cfg.get("paper_local_steps", cfg["local_steps"])
        if paper_tau != cfg["local_steps"]:
            tau += f" (paper: {paper_tau})"
        repeats = (
            "1 (training, evaluation: no warm-up)"
            if cfg.get("heavy")
            else f"{plan.get('repeats', st['repeats'])} after a warm-up"
        )
        wrows.append(
            [
                model,
                f"{cfg['dataset']} ({cfg.get('partition', '?')})",
                f"{cfg['n_params']:,}",
                str(cfg["batch_size"]),
                tau,
                str(cfg.get("lr", "?")),
                ", ".join(_strategies(res)),
                f"{cfg['advance_rounds']}",
                repeats,
                _ms(res.get("wall_s")),
            ]
        )
    lines += _table(
        [
            "model",
            "dataset (partition)",
            "N",
            "b",
            "tau",
            "lr",
            "strategies",
            "R",
            "repeats",
            "section time",
        ],
        wrows,
    )
    lines += [""]
    rows, prow, trow, frow, crow = [], [], [], [], []
    for model, res in e2e["models"].items():
        cfg = res["config"]
        tr, ev = res["train"], res["evaluate"]
        for s in _strategies(res):
            e = res[s]
            rows.append(
                [
                    model,
                    f"{cfg['n_params']:,}",
                    s,
                    _ms(tr["median_s"]),
                    _ms(e["share"]["median_s"]),
                    _ms(ev["median_s"]),
                    _ms(e["round"]["median_s"]),
                    f"{100 * e['share_fraction_of_round']:.0f} %",
                    str(e["round"]["retraces_after_first_call"]),
                ]
            )
            crow.append(
                [
                    model,
                    s,
                    _ms(tr["compile_s"]),
                    _ms(e["share"]["compile_s"]),
                    _ms(ev["compile_s"]),
                    _ms(e["round"]["compile_s"]),
                ]
            )
            pn, r = e["pernode"], e["ratios"]
            chk = pn.get("check", {})
            prow.append(
                [
                    model,
                    s,
                    _pair(pn["round"], e["round"]),
                    f"**{_x(r['round'])}**",
                    _pair(pn["train"], tr),
                    _x(r["train"]),
                    _pair(pn["share"], e["share"]),
                    _x(r["share"]),
                    (
                        f"{'ok' if chk.get('ok') else 'MISMATCH'} "
                        f"({chk.get('max_relative_error', float('nan')):.1e})"
                        if chk
                        else "-"
                    ),
                ]
            )
            pt = e.get("pernode_torch", {"skipped": "not measured"})
            if "skipped" in pt:
                trow.append([model, s, pt["skipped"], "-", "-", "-", "-", "-"])
            else:
                rt = e["ratios_torch"]
                trow.append(
                    [
                        model,
                        s,
                        _pair(pt["round"], e["round"]),
                        f"**{_x(rt['round'])}**",
                        _pair(pt["train"], tr),
                        _x(rt["train"]),
                        _pair(pt["share"], e["share"]),
                        _x(rt["share"]),
                    ]
                )
        jw = res.get("jwins", res[_strategies(res)[-1]])
        torch_gflops = jw.get("pernode_torch_train_gflops")
        frow.append(
            [
                model,
                f"{res['forward_flops_per_sample'] / 1e6:.2f} M",
                f"{tr['flops_per_round'] / 1e9:.1f} G",
                f"{tr.get('matmul_gflops_reference', float('nan')):.0f}",
                f"{tr['gflops']:.1f}",
                f"{100 * tr['fraction_of_matmul']:.1f} %",
                f"{jw['pernode_train_gflops']:.1f}",
                "-" if torch_gflops is None else f"{torch_gflops:.1f}",
                "-"
                if torch_gflops is None
                else f"{100 * jw['pernode_torch_train_fraction_of_matmul']:.1f} %",
            ]
        )
    lines += _table(
        [
            "model",
            "N",
            "strategy",
            "local training",
            "sharing step",
            "evaluation",
            "round (advance)",
            "sharing / round",
            "retraces",
        ],
        rows,
    )
    lines += ["", "Compile (or first-call) times, reported apart:", ""]
    lines += _table(
        ["model", "strategy", "training", "sharing", "evaluation", "advance"], crow
    )
    lines += [
        "",
        "Against the per-node PyTorch way, the original engine (per-node / "
        "vectorized, same run):",
        "",
    ]
    lines += _table(
        [
            "model",
            "strategy",
            "round",
            "round ratio",
            "training",
            "ratio",
            "sharing",
            "ratio",
        ],
        trow,
    )
    lines += ["", "Against the per-node JAX way (per-node / vectorized, same run):", ""]
    lines += _table(
        [
            "model",
            "strategy",
            "round",
            "round ratio",
            "training",
            "ratio",
            "sharing",
            "ratio",
            "per-node = vectorized step",
        ],
        prow,
    )
    lines += [
        "",
        "Training throughput (3x the analytic forward FLOPs per sample x batch x tau x "
        "n per round; convolutions, linear layers and LSTM matmuls), as a share of "
        "the matmul rate (the larger of the section's reference and one taken right "
        "after the training measurement, since the machine is shared):",
        "",
    ]
    lines += _table(
        [
            "model",
            "forward FLOP/sample",
            "FLOP/round",
            "matmul GFLOP/s",
            "vectorized GFLOP/s",
            "of matmul",
            "per-node JAX GFLOP/s",
            "per-node PyTorch GFLOP/s",
            "of matmul",
        ],
        frow,
    )
    for model, res in e2e["models"].items():
        bd = res.get("jwins", {}).get("share_breakdown")
        if not bd:
            continue
        lines += [
            "",
            f"JWINS sharing step of {model} part by part (n = {bd['n']}, "
            f"N = {bd['N']:,}, M = {bd['M']:,}, `{bd['transform']}`): jitted kernels "
            "on the stacked models vs the per-node loops (PyWavelets, NumPy):",
            "",
        ]
        trows = []
        for part, count in bd["per_step"].items():
            v, p_ = bd["vectorized"][part]["median_s"], bd["pernode"][part]["median_s"]
            trows.append([part, f"{count}x", _ms(v), _ms(p_), _x(p_ / v)])
        sv, sp = bd["sum_vectorized_s"], bd["sum_pernode_s"]
        trows.append(["sum (x runs per step)", "", _ms(sv), _ms(sp), _x(sp / sv)])
        step_v = res["jwins"]["share"]["median_s"]
        step_p = res["jwins"]["pernode"]["share"]["median_s"]
        trows.append(
            ["measured step", "", _ms(step_v), _ms(step_p), _x(step_p / step_v)]
        )
        lines += _table(
            [
                "part",
                "runs per step",
                "vectorized",
                "per-node",
                "per-node / vectorized",
            ],
            trows,
        )
    evals = []
    for model, res in e2e["models"].items():
        cfg = res["config"]
        evals.append(
            f"{model}: {cfg['test_samples']} test samples + "
            f"{cfg['mean_train_samples_per_node']:.0f} training samples per node"
        )
    lines += ["", "Evaluation covers every node's model on " + "; ".join(evals) + "."]
    if "paper_scale_estimate" in e2e["models"].get("gn_lenet", {}):
        est = e2e["models"]["gn_lenet"]["paper_scale_estimate"]
        lines += [
            "",
            f"Paper-scale estimate (96 nodes, {est['rounds']:,} JWINS rounds of "
            f"GN-LeNet, {est['evaluations']} evaluations on the 10,000-image test set, "
            "extrapolated linearly in evaluated samples): "
            f"**{est['total_min']:.0f} min** ({est['rounds_only_min']:.0f} min of "
            f"rounds + {est['evaluation_min']:.0f} min of evaluation).",
        ]
    return lines + [""]


def kernels_lines(kern: dict[str, Any]) -> list[str]:
    st = kern["settings"]
    d = kern["defaults"]
    lines = [
        "### Kernels",
        "",
        f"Median time per call on (n, N) float32 stacks; {st['wavelet']} level "
        f"{st['level']}; per-node k from alphas {st['partial_alphas']}. "
        f"Input budget {st['memory_budget_gib']} GiB, time budget "
        f"{st['time_budget_s']} s per call (extrapolated from the previous size). "
        "`(x)` marks an output that failed its check; fastest = fastest correct.",
        "",
    ]
    families = [
        ("wavelet", "Wavelet forward + inverse", "informational"),
        ("selection", "Selection with per-node k", "approx"),
        ("gossip", "Gossip (one mixing step)", "informational"),
    ]
    backend = d["wavelet_auto"].split("/")[-1]
    is_default = {
        "wavelet": lambda name: name == backend,
        "selection": lambda name: f"'{d['selection_auto']}'" in name,
        "gossip": lambda name: name == "mix (neighbour table)",
    }
    summary = []
    for fam, title, exclude in families:
        names: list[str] = []
        for p in kern["points"]:
            for name in p.get(fam, {}):
                if name not in names:
                    names.append(name)
        per_node = next(name for name in names if "per node" in name)
        rows = []
        wins, total, misses, slower = 0, 0, [], []
        for p in kern["points"]:
            size = [str(p["n"]), f"{p['N']:,}"]
            if "skipped" in p:
                rows.append(size + ["skipped"] * len(names) + [p["skipped"], "-"])
                continue
            cells = []
            for name in names:
                st_ = p[fam].get(name, {})
                if "median_s" in st_:
                    mark = "" if st_.get("correct", True) else " (x)"
                    cells.append(_ms(st_["median_s"]) + mark)
                else:
                    cells.append("skip" if "skipped" in st_ else "-")
            jax_rows = {
                k: v
                for k, v in p[fam].items()
                if "per node" not in k and exclude not in k
            }
            best = _fastest(jax_rows)
            default = next((k for k in jax_rows if is_default[fam](k)), None)
            ratio = None
            if (
                default
                and "median_s" in p[fam][default]
                and "median_s" in p[fam].get(per_node, {})
            ):
                ratio = p[fam][per_node]["median_s"] / p[fam][default]["median_s"]
            rows.append(size + cells + [best or "-", _x(ratio)])
            if best is not None:
                total += 1
                if is_default[fam](best):
                    wins += 1
                else:
                    misses.append(f"n={p['n']}, N={p['N']:,} ({best})")
            if ratio is not None and ratio < 1:
                slower.append(f"n={p['n']}, N={p['N']:,} ({_x(ratio)})")
        lines += [f"**{title}**", ""]
        header = ["n", "N"] + names + ["fastest JAX kernel", "per-node / default"]
        lines += _table(header, rows)
        lines.append("")
        summary.append((fam, wins, total, misses, slower))
    lines += ["**Defaults against the measurements**", ""]
    default_names = {
        "wavelet": f"`{backend}` (wavelets backend 'auto')",
        "selection": f"`{d['selection_auto']}` (sparsify method 'auto')",
        "gossip": "`mix` / `mix_masked` on the neighbour table (every strategy's)",
    }
    for fam, wins, total, misses, slower in summary:
        text = (
            f"* {fam}: default {default_names[fam]} is the fastest correct JAX kernel "
            f"at {wins} of {total} sizes"
        )
        if misses:
            text += " (not at: " + "; ".join(misses) + ")"
        if slower:
            text += "; the per-node way is faster at: " + "; ".join(slower)
        else:
            text += "; it beats the per-node way at every measured size"
        lines.append(text + ".")
    return lines + [""]


def _fastest(rows: dict[str, dict[str, Any]]) -> str | None:
    best, best_t = None, float("inf")
    for name, st in rows.items():
        if "median_s" in st and st.get("correct", False) and st["median_s"] < best_t:
            best, best_t = name, st["median_s"]
    return best


def scaling_lines(sc: dict[str, Any], image: str | None) -> list[str]:
    lines = [
        "### Scaling",
        "",
        "Each point in a fresh subprocess; peak RSS = the high-water mark `VmHWM` of "
        "that process (`getrusage` `ru_maxrss` of a fork+exec child would include "
        "the parent benchmark process's size); it includes the Python/JAX runtime, "
        "shown as 'after imports'.",
        "",
    ]
    rows = []
    for p in sc["points"]:
        kind = p["kind"] if p["kind"] == "share" else f"round ({p['model']})"
        base = [kind, p["sharing"], str(p["nodes"]), f"{p['N']:,}" if "N" in p else "-"]
        if "time" in p:
            t = p["time"]
            rows.append(
                base
                + [
                    _ms(t["median_s"]),
                    _ms(t["compile_s"]),
                    f"{p['max_rss_bytes'] / GIB:.2f}",
                    f"{p['rss_after_imports_bytes'] / GIB:.2f}",
                ]
            )
        else:
            rows.append(base + [_short_error(p), "-", "-", "-"])
    lines += _table(
        [
            "kind",
            "strategy",
            "n",
            "N",
            "time per round/step",
            "compile",
            "peak RSS GiB",
            "after imports GiB",
        ],
        rows,
    )
    if image:
        lines += ["", f"![scaling]({image})"]
    return lines + [""]


def _short_error(point: dict[str, Any]) -> str:
    """A point's failure in a few words."""
    text = point.get("error") or point.get("skipped") or "?"
    match = re.search(r"Out of memory allocating (\d+) bytes", text)
    if match:
        size = int(match.group(1)) / 1e9
        return f"out of memory: XLA requested one {size:.1f} GB buffer"
    return text


def render(data: dict[str, Any], image: str | None, title: str) -> str:
    """The full dated markdown section."""
    lines = [
        f"## {title}",
        "",
        "| section | date | device | CPU | JAX | load average |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for name in SECTIONS:
        if name in data:
            lines.append(_env_line(name, data[name]["env"]))
    lines.append("")
    if "machine" in data:
        lines += machine_lines(data["machine"]["matmul"])
    if "e2e" in data:
        lines += e2e_lines(data["e2e"])
    if "kernels" in data:
        lines += kernels_lines(data["kernels"])
    if "scaling" in data:
        lines += scaling_lines(data["scaling"], image)
    if "sweep" in data:
        lines += sweep_lines(data["sweep"])
    if "devices" in data:
        lines += devices_lines(data["devices"])
    if "gpu" in data:
        lines += gpu_lines(data["gpu"])
    return "\n".join(lines) + "\n"


def sweep_lines(sw: dict[str, Any]) -> list[str]:
    """The sweep section: configs per hour of the three ways, ratios."""
    rows = []
    for r in sw["rows"]:
        proc = r["processes"]
        note = (
            " (extrapolated from %d)" % proc["measured_processes"]
            if proc["extrapolated"]
            else ""
        )
        rows.append(
            [
                str(r["k"]),
                f"{r['vmapped']['wall_s']:.1f} s ({r['vmapped']['configs_per_hour']:.0f}/h)",
                f"{r['sequential']['wall_s']:.1f} s ({r['sequential']['configs_per_hour']:.0f}/h)",
                f"{proc['wall_s']:.1f} s ({proc['configs_per_hour']:.0f}/h){note}",
                _x(r["ratio_vs_sequential"]),
                _x(r["ratio_vs_processes"]),
            ]
        )
    return [
        "### Sweeps",
        "",
        f"K digits configs (learning rates x seeds), {sw['nodes']} nodes, "
        f"{sw['rounds']} rounds, evaluation every {sw['eval_every']}: one vmapped "
        "sweep (`jwins sweep`, batch from free memory), the same sweep with batch 1 "
        "(one program, configs one after another), and K `jwins run` processes. "
        "Wall time (configs per hour); ratios = other way / vmapped.",
        "",
        *_table(
            [
                "K",
                "vmapped sweep",
                "sequential (batch 1)",
                "K processes",
                "vs sequential",
                "vs processes",
            ],
            rows,
        ),
        "",
    ]


def append(results: pathlib.Path, text: str) -> None:
    """Appends a section to RESULTS.md, creating it with its introduction."""
    if results.is_file():
        body = results.read_text().rstrip("\n") + "\n\n" + text
    else:
        body = RESULTS_INTRO + "\n" + text
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(body)


def devices_lines(dv: dict[str, Any]) -> list[str]:
    """The device-scaling section: rounds per second per device count."""
    rows = []
    for p in dv["points"]:
        if "error" in p:
            rows.append(
                [
                    str(p["n"]),
                    str(p["devices"]),
                    "-",
                    "-",
                    "error: " + " ".join(p["error"]),
                ]
            )
            continue
        rows.append(
            [
                str(p["n"]),
                f"{p['devices']} ({p['mesh']} used)",
                f"{p['rounds_per_s']:.2f}",
                f"{p['first_call_s']:.1f} s",
                p["platform"],
            ]
        )
    kind = (
        "forced host devices sharing the same CPU cores"
        if dv.get("forced_host_devices")
        else "real devices"
    )
    return [
        "### Devices",
        "",
        f"JWINS on digits, node axis sharded over a mesh of {kind} "
        "(`jwins_jax.devices`); one process per point.",
        "",
        *_table(["n", "devices", "rounds/s", "first call", "platform"], rows),
        "",
    ]


def gpu_lines(g: dict[str, Any]) -> list[str]:
    """The accelerator section: the paper-scale run, evaluation, rounds per second."""
    p, ev = g["paper"], g["evaluation"]
    rows = []
    for r in g["rounds"]:
        if "rounds_per_s" in r:
            rows.append(
                [
                    r["model"],
                    str(r["n"]),
                    r["sharing"],
                    f"{r['rounds_per_s']:.2f}",
                    f"{r['compile_s']:.1f} s",
                ]
            )
        else:
            rows.append(
                [
                    r["model"],
                    str(r["n"]),
                    r["sharing"],
                    "-",
                    r.get("skipped") or r.get("error", "-"),
                ]
            )
    chunks = [
        [
            str(r["train_chunk"]),
            f"{r['rounds_per_s']:.2f}" if "rounds_per_s" in r else r.get("error", "-"),
        ]
        for r in g.get("train_chunk", [])
    ]
    return [
        f"### Accelerator ({g['device']}, {g['platform']})",
        "",
        f"Paper-scale CIFAR-10-shaped JWINS run ({p['nodes']} nodes, GN-LeNet, "
        f"evaluation every {p['eval_every']} rounds on {p['test_images']:,} test images): "
        f"first block {p['first_block_s']:.1f} s (compilation included), then "
        f"{p['block_s']:.2f} s per block; {p['rounds']:,} rounds extrapolated to "
        f"**{p['extrapolated_run_s'] / 60:.1f} min**.",
        "",
        f"Evaluation: {ev['nodes']} GN-LeNet models on {ev['test_images']:,} test images in "
        f"{ev['s']:.3f} s ({ev['images_per_s']:,.0f} images/s; compile "
        f"{ev['compile_s']:.1f} s).",
        "",
        *_table(["model", "n", "sharing", "rounds/s", "compile / note"], rows),
        "",
        "Nodes trained at once (`train_chunk`), GN-LeNet JWINS, n = 96:",
        "",
        *_table(["nodes per group", "rounds/s"], chunks),
        "",
    ]
