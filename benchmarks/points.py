"""Scaling and devices: one fresh process per point, its time and its peak memory.

Every point runs in a subprocess of its own (``python -m benchmarks.run --point
SPEC``), so its peak resident set (``VmHWM``) is that point's alone; a point is
stopped when it runs past its time limit or its resident set grows past the memory
limit (or what the machine has available, less 1 GiB). Kinds:

* ``round``: the round of a workload (:class:`~benchmarks.rounds.RoundBench`, IID
  partition, the training split tiled so that every node holds 4 minibatches); with
  ``devices`` > 1 the node axis is split over that many devices (forced host devices
  on a CPU, which share its cores, so there it measures the cost of partitioning);
* ``share``: the sharing step alone on random ``(96, N)`` models, N = 1e4 ... 1e7.

``scaling``: full sharing and JWINS rounds of the digits CNN against n (on the 8x8
``synthetic_digits`` stand-in up to n = 10,000; where this version has no such
dataset, on ``digits`` with fewer nodes), and the sharing step against N.
``devices``: JWINS rounds with the node axis on 1, 2, 4 devices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.rounds import RoundBench, has_dataset, tiled, workload
from benchmarks.timing import interleave, peak_rss_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "POINT "
SHARE_ARRAYS = {"full": 4, "jwins": 14}  # about this many (n, N) float32 arrays live


def run_point(spec: dict[str, Any]) -> dict[str, Any]:
    """Measures one point in this (fresh) process."""
    import jax

    start_rss = peak_rss_bytes()
    if spec["kind"] == "round":
        tau = {"local_steps": spec["local_steps"]} if "local_steps" in spec else {}
        config = workload(spec["workload"], spec["strategy"], spec["n"], **tau)
        config = config.replace(partition="iid", test_subset=64)
        data = tiled(config, 4 * config.batch_size)
        bench = RoundBench(config, spec["rounds"], data, shard=spec["devices"] > 1)
        row = dict(bench.row)
        row.update(interleave([lambda: {"round": bench.round()}], spec["repeats"]))
        row["finite"] = bench.finite()
    else:
        from jwins_jax.kernelbench import compiled, device_call, graph
        from jwins_jax.sharing import make_sharing
        from jwins_jax.topology import neighbor_table

        n, big_n = spec["n"], spec["N"]
        sharing = make_sharing(spec["strategy"], big_n)
        x = 0.05 * jax.random.normal(jax.random.PRNGKey(0), (n, big_n))
        args = (sharing.init(x), x, jax.random.PRNGKey(1), neighbor_table(graph(n)))
        step, compile_s = compiled(sharing.step, *args, sharing.hp)
        call = device_call(step, *args, sharing.hp)
        row = {"strategy": spec["strategy"], "compile_round_s": compile_s}
        row.update(interleave([lambda: {"round": call()}], spec["repeats"]))
    peak = peak_rss_bytes()
    return {
        **spec,
        **row,
        "peak_rss_bytes": peak,
        "start_rss_bytes": start_rss,
        "node_bytes": (peak - start_rss) / spec["n"],
        "device_kind": jax.devices()[0].device_kind,
    }


def _proc_bytes(path: str, field: str) -> float | None:
    """A ``field: N kB`` line of a /proc file, in bytes."""
    try:
        with open(path) as fh:
            line = next((ln for ln in fh if ln.startswith(field + ":")), None)
    except OSError:
        return None
    return None if line is None else int(line.split()[1]) * 1024


def launch(spec: dict[str, Any], timeout: float, rss_gib: float) -> dict[str, Any]:
    """Runs one point in a subprocess; stops it past ``timeout`` s or the RSS limit."""
    import jax

    env = dict(os.environ)
    if spec.get("devices", 1) > 1:
        if jax.default_backend() == "cpu":
            flag = f"--xla_force_host_platform_device_count={spec['devices']}"
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(spec["devices"])))
    available = _proc_bytes("/proc/meminfo", "MemAvailable") or float("inf")
    limit = min(rss_gib * 2**30, available - 2**30)
    cmd = [sys.executable, "-m", "benchmarks.run", "--point", json.dumps(spec)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, text=True, cwd=REPO, env=env
        )
        while proc.poll() is None:
            reason = None
            if time.perf_counter() - t0 > timeout:
                reason = f"stopped after {timeout:.0f} s"
            elif (_proc_bytes(f"/proc/{proc.pid}/status", "VmRSS") or 0) > limit:
                reason = f"stopped: resident set above {limit / 2**30:.1f} GiB"
            if reason:
                proc.kill()
                proc.wait()
                return {**spec, "error": reason}
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in reversed(stdout.splitlines()):
        if line.startswith(TAG):
            return {**json.loads(line[len(TAG) :]), "wall_s": time.perf_counter() - t0}
    lines = (stderr or stdout).strip().splitlines() or ["no output"]
    return {**spec, "error": f"exit status {proc.returncode}: {lines[-1][:200]}"}


def small_workload() -> tuple[str, tuple[int, ...]]:
    """The scaling workload and its node counts (see the module docstring)."""
    if has_dataset("synthetic_digits"):
        return "synthetic_digits", (96, 1024, 4096, 10_000)
    return "digits", (24, 48, 96, 160)


def plan(opts: Any, section: str) -> list[dict[str, Any]]:
    """The points of a section, in order (quick: one of each kind)."""
    name, sizes = small_workload()
    base = {"kind": "round", "workload": name, "devices": 1, "rounds": 2}
    if opts.quick:
        base = {**base, "workload": "digits", "local_steps": 1}
    jwins = {**base, "strategy": "jwins"}
    if section == "devices":
        counts, ns = (1, 2, 4), sorted({96, max(n for n in sizes if n <= 1024)})
        if opts.quick:
            counts, ns = (1, 2), [8]
        return [{**jwins, "n": n, "devices": k} for n in ns for k in counts]
    share = {"kind": "share", "n": 96}
    if opts.quick:
        return [{**jwins, "n": 4}, {**share, "strategy": "full", "n": 8, "N": 2_000}]
    rounds = [{**base, "strategy": s, "n": n} for n in sizes for s in ("full", "jwins")]
    big = (10**4, 10**5, 10**6, 10**7)
    return rounds + [
        {**share, "strategy": s, "N": m} for m in big for s in ("full", "jwins")
    ]


def points(opts: Any, section: str) -> list[dict[str, Any]]:
    """The ``scaling`` or ``devices`` section: every point in its own process."""
    rows = []
    for spec in plan(opts, section):
        spec["repeats"] = opts.repeats
        if spec["kind"] == "share":
            need = SHARE_ARRAYS[spec["strategy"]] * 4 * spec["n"] * spec["N"]
            if need > opts.point_rss_gib * 2**30:
                rows.append({**spec, "error": f"needs about {need / 2**30:.0f} GiB"})
                continue
        print(f"[{section}] {json.dumps(spec)}", flush=True)
        row = launch(spec, opts.point_timeout, opts.point_rss_gib)
        if "error" in row:
            print(f"[{section}]   {row['error']}", flush=True)
        rows.append(row)
    return rows
