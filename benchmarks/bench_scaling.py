"""Round time and peak memory against n and against N (issue 4 item 5).

Every point runs in a fresh subprocess (``run.py --point SPEC``), so its peak
resident set belongs to that point alone: ``VmHWM`` of the point's process (on
Linux ``getrusage`` ``ru_maxrss`` of a fork + exec child starts at the parent's size,
see ``harness.max_rss_bytes``; it is recorded too). Two kinds of points:

* ``round``: a whole round of a real model (``Experiment.advance``; GN-LeNet on
  synthetic CIFAR-shaped data, 4 batches per node, batch 8, tau = 3, IID partition;
  the paper graph at n = 96, a random 4-regular graph otherwise), for n = 16 ... 1024;
* ``share``: the sharing step alone on random ``(n, N)`` models (the local-training
  cost depends on the architecture, not on N), for N = 1e4 ... 1e7 at n = 96, next
  to the two real models' rounds (digits CNN, N = 6,090; GN-LeNet, N = 89,834).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import harness
import jax
import jax.numpy as jnp

RESULT_TAG = "POINT_RESULT "
SHARE_STATE_ARRAYS = {"full": 4, "jwins": 14}  # rough (n, N) float32 arrays live


def plan(opts: Any) -> list[dict[str, Any]]:
    """The points of this run, in order."""
    points: list[dict[str, Any]] = []
    if opts.quick:
        return [
            {"kind": "round", "model": "digits_cnn", "nodes": 4, "sharing": "full"},
            {"kind": "share", "nodes": 8, "N": 2_000, "sharing": "jwins"},
        ]
    for n in opts.scaling_n:
        for s in ("full", "jwins"):
            points.append(
                {"kind": "round", "model": "gn_lenet", "nodes": n, "sharing": s}
            )
    for s in ("full", "jwins"):
        points.append(
            {"kind": "round", "model": "digits_cnn", "nodes": 96, "sharing": s}
        )
    for big_n in (10_000, 100_000, 1_000_000, 10_000_000):
        for s in ("full", "jwins"):
            points.append({"kind": "share", "nodes": 96, "N": big_n, "sharing": s})
    return points


def _estimate_share_bytes(spec: dict[str, Any]) -> int:
    return SHARE_STATE_ARRAYS[spec["sharing"]] * 4 * spec["nodes"] * spec["N"]


def run_point(spec: dict[str, Any]) -> dict[str, Any]:
    """Measures one point in this (fresh) process."""
    repeats = int(spec.get("repeats", 2))
    baseline = harness.max_rss_bytes()
    if spec["kind"] == "round":
        from bench_e2e import base_config
        from simulation import BenchSim as Simulation

        cfg = base_config(spec["model"], spec["nodes"], test_subset=64).replace(
            sharing=spec["sharing"], partition="iid"
        )
        dataset = None
        if cfg.dataset == "synthetic_cifar":
            # every node holds a few minibatches (the default 2,048 samples give a
            # node of n = 1,024 only 2, fewer than a batch)
            from jwins_jax.data import load_dataset
            from jwins_jax.experiment import DATA_SEED

            size = max(2048, 4 * cfg.batch_size * cfg.nodes)
            dataset = load_dataset(cfg.dataset, seed=DATA_SEED, synthetic_size=size)
        sim = Simulation(cfg, dataset)
        state = sim.init(jax.random.PRNGKey(0))
        t0 = time.perf_counter()
        state, metrics = sim.advance(state, 1)
        harness.block((state, metrics))
        first = time.perf_counter() - t0
        if first > spec.get("slow_s", 60.0):
            repeats = 1
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            state, metrics = sim.advance(state, 1)
            harness.block((state, metrics))
            times.append(time.perf_counter() - t0)
        n_params = sim.n_params
    else:
        from bench_kernels import _graph

        from jwins_jax import compiler
        from jwins_jax.sharing import make_sharing
        from jwins_jax.topology import neighbor_table

        n, n_params = spec["nodes"], spec["N"]
        sharing = make_sharing(spec["sharing"], n_params)
        table = neighbor_table(_graph(n))
        k0, k1 = jax.random.split(jax.random.PRNGKey(0))
        x0 = 0.05 * jax.random.normal(k0, (n, n_params), jnp.float32)
        share_state = sharing.init(x0)
        step = compiler.jit(sharing.step)
        x = x0 + 0.001 * jax.random.normal(k1, (n, n_params), jnp.float32)
        t0 = time.perf_counter()
        x_new, share_state, stats = step(
            share_state, x, jax.random.PRNGKey(1), table, sharing.hp
        )
        harness.block((x_new, share_state, stats))
        first = time.perf_counter() - t0
        times = []
        for r in range(repeats):
            x = x_new
            t0 = time.perf_counter()
            key = jax.random.PRNGKey(2 + r)
            x_new, share_state, stats = step(share_state, x, key, table, sharing.hp)
            harness.block((x_new, share_state, stats))
            times.append(time.perf_counter() - t0)
    stats = harness.summarize(times)
    stats["first_call_s"] = first
    stats["compile_s"] = max(first - stats["median_s"], 0.0)
    return {
        **spec,
        "N": n_params,
        "time": stats,
        "max_rss_bytes": harness.max_rss_bytes(),
        "ru_maxrss_bytes": harness.ru_maxrss_bytes(),
        "rss_after_imports_bytes": baseline,
        "device_peak_bytes": harness.device_peak_bytes(),
        "device_kind": jax.devices()[0].device_kind,
    }


def _memory_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where unknown)."""
    return harness.proc_bytes("/proc/meminfo", "MemAvailable")


def _rss_of(pid: int) -> int:
    return harness.proc_bytes(f"/proc/{pid}/status", "VmRSS") or 0


def _launch(spec: dict[str, Any], timeout: float, rss_limit: float) -> dict[str, Any]:
    """Runs one point in a subprocess; stops it past ``timeout`` s or ``rss_limit`` B.

    The resident set is polled so that a point that would exhaust the machine's
    memory is stopped by us, with a clear record, before the kernel has to step in.
    """
    script = pathlib.Path(__file__).with_name("run.py")
    cmd = [sys.executable, str(script), "--point", json.dumps(spec)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        reason = None
        while proc.poll() is None:
            if time.perf_counter() - t0 > timeout:
                reason = f"timed out after {timeout:.0f} s"
            elif _rss_of(proc.pid) > rss_limit:
                reason = f"stopped: resident set above {rss_limit / 2**30:.1f} GiB"
            if reason:
                proc.kill()
                proc.wait()
                return {**spec, "error": reason}
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in stdout.splitlines()[::-1]:
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
            result["subprocess_wall_s"] = wall
            return result
    lines = (stderr or stdout).strip().splitlines()
    errors = [ln for ln in lines if "Error" in ln or "RESOURCE_EXHAUSTED" in ln]
    reason = (errors or lines or ["no output"])[-1].strip()
    return {**spec, "error": f"exit status {proc.returncode}: {reason}"[:300]}


def run(opts: Any, out_dir: pathlib.Path) -> dict[str, Any]:
    """Runs every point in its own subprocess, then draws the plot."""
    mem_limit = opts.point_mem_gib * 2**30
    results = []
    for spec in plan(opts):
        spec = {**spec, "repeats": 1 if opts.quick else 2}
        label = ", ".join(f"{k}={v}" for k, v in spec.items())
        if spec["kind"] == "share" and _estimate_share_bytes(spec) > mem_limit:
            est = _estimate_share_bytes(spec) / 2**30
            results.append(
                {
                    **spec,
                    "skipped": f"estimated {est:.1f} GiB > {opts.point_mem_gib} GiB",
                }
            )
            print(f"[scaling] skip {label}", flush=True)
            continue
        print(f"[scaling] {label}", flush=True)
        avail = _memory_available()
        rss_limit = opts.point_rss_gib * 2**30
        if avail is not None:
            rss_limit = min(rss_limit, avail - 2**30)
        res = _launch(spec, opts.point_timeout, rss_limit)
        if "error" in res:
            print(f"[scaling]   {res['error']}", flush=True)
        results.append(res)
    out = {
        "settings": {
            "point_timeout_s": opts.point_timeout,
            "point_mem_gib": opts.point_mem_gib,
            "point_rss_gib": opts.point_rss_gib,
        },
        "points": results,
    }
    out["plot"] = str(plot(results, out_dir / "scaling.png"))
    return out


def plot(results: list[dict[str, Any]], path: pathlib.Path) -> pathlib.Path:
    """Four panels: round time and peak RSS against n; step time and RSS against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mticker

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ok = [r for r in results if "time" in r]
    rounds = [r for r in ok if r["kind"] == "round" and r.get("model") != "digits_cnn"]
    if not rounds:  # quick mode measures the digits CNN only
        rounds = [r for r in ok if r["kind"] == "round"]
    shares = [r for r in ok if r["kind"] == "share"]
    model_rounds = [r for r in ok if r["kind"] == "round" and r["nodes"] == 96]
    colors = {"full": "tab:blue", "jwins": "tab:orange"}

    def draw(ax, pts, style, label, rss=False, **kw):
        pts = sorted(pts, key=lambda p: p[0])
        if pts:
            xs = [p[0] for p in pts]
            ys = [
                p[1]["max_rss_bytes"] / 2**30 if rss else p[1]["time"]["median_s"]
                for p in pts
            ]
            ax.plot(xs, ys, style, label=label, **kw)

    for s in ("full", "jwins"):
        c = colors[s]
        by_n = [(r["nodes"], r) for r in rounds if r["sharing"] == s]
        by_big = [(r["N"], r) for r in shares if r["sharing"] == s]
        models = [(r["N"], r) for r in model_rounds if r["sharing"] == s]
        draw(axes[0, 0], by_n, "o-", s, color=c)
        draw(axes[0, 1], by_n, "o-", s, rss=True, color=c)
        for ax, rss in ((axes[1, 0], False), (axes[1, 1], True)):
            draw(ax, by_big, "o-", f"{s}: sharing step", rss=rss, color=c)
            draw(
                ax, models, "s", f"{s}: model round", rss=rss, color=c, mfc="none", ms=9
            )
    failed = [r for r in results if r["kind"] == "round" and "error" in r]
    failed = [r for r in failed if not rounds or r.get("model") == rounds[0]["model"]]
    for n in sorted({r["nodes"] for r in failed}):
        for ax in axes[0]:
            ax.axvline(n, color="tab:red", ls="--", lw=1, label=f"n={n}: failed")
    model = rounds[0]["model"] if rounds else "?"
    titles = [
        (f"round time vs n ({model})", "nodes n", "seconds per round"),
        (f"peak RSS vs n ({model})", "nodes n", "GiB"),
        ("time vs N (n = 96)", "model size N", "seconds"),
        ("peak RSS vs N (n = 96)", "model size N", "GiB"),
    ]
    for ax, (title, xl, yl) in zip(axes.flat, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)

    node_ticks = sorted({r["nodes"] for r in results if r["kind"] == "round"})
    for ax in axes[0]:
        if node_ticks:
            ax.set_xticks(node_ticks)
            ax.xaxis.set_major_formatter(mticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    for ax in axes.flat:
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.suptitle(f"jwins_jax scaling on {jax.devices()[0].device_kind}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
