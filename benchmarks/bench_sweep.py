"""Sweep throughput: K configs as one vmapped sweep, one after another, or K processes.

For K digits configs (a grid of learning rates x seeds, 96 nodes on the paper graph,
``ROUNDS`` rounds each) this measures, in one benchmark run:

* ``vmapped``: ``jwins_jax.sweep.run_sweep`` with the batch size chosen from free
  memory: every config of the group in one compiled program;
* ``sequential``: the same sweep with batch 1: one compiled (unbatched) program,
  the configs run one after another in this process;
* ``processes``: K separate ``jwins run`` processes one after another (what a bash
  loop does), each starting Python and running; the first compiles and fills the
  command line's persistent compilation cache (a fresh one per measurement), the
  others load their programs from it. Measured for K up to ``MAX_PROCESSES`` and
  extrapolated linearly beyond from the processes after the first (marked as such).

Each way starts from an empty output directory and a cold in-process cache (a fresh
subprocess per measurement), so compilation counts where it happens. Reported:
wall time, configs per hour, and the ratios against the vmapped sweep.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROUNDS = 30
EVAL_EVERY = 10
MAX_PROCESSES = 16
LRS = (0.02, 0.05, 0.1, 0.2)


def _grid(k: int) -> tuple[list[float], list[int]]:
    """``k`` (lr, seed) pairs as a grid: up to 4 learning rates, then seeds."""
    lrs = list(LRS[: min(k, len(LRS))])
    seeds = list(range(1, k // len(lrs) + 1))
    return lrs, seeds


def _spec(k: int, out: pathlib.Path, quick: bool) -> dict[str, Any]:
    lrs, seeds = _grid(k)
    base = {
        "dataset": "digits",
        "rounds": 4 if quick else ROUNDS,
        "eval_every": 2 if quick else EVAL_EVERY,
        "out_dir": str(out),
    }
    if quick:
        base.update(nodes=6, topology="ring", local_steps=1, test_subset=32)
    return {"name": f"k{k}", "base": base, "grid": {"lr": lrs, "seed": seeds}}


_SWEEP_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from jwins_jax import hostmem
hostmem.tune_host_allocator()
from jwins_jax import sweep
spec = sweep.parse_spec(json.loads(sys.argv[1]))
batch = None if sys.argv[2] == "auto" else int(sys.argv[2])
done = sweep.run_sweep(spec, batch=batch)
print(json.dumps({"wall_s": time.perf_counter() - t0, "configs": len(done),
                  "finished": sum(s["status"] == "finished" for s in done)}))
"""


def _run_child(args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return {"wall_s": wall, "stdout_tail": proc.stdout.strip().splitlines()[-1:]}


def measure(k: int, quick: bool, max_processes: int, timeout: float) -> dict[str, Any]:
    """The three ways for K configs."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res: dict[str, Any] = {"k": k}
    with tempfile.TemporaryDirectory(prefix=f"jwins-bench-sweep-{k}-") as tmp:
        root = pathlib.Path(tmp)
        for way, batch in (("vmapped", "auto"), ("sequential", "1")):
            spec = _spec(k, root / way, quick)
            out = _run_child(
                [sys.executable, "-c", _SWEEP_CHILD, json.dumps(spec), batch],
                env,
                timeout,
            )
            res[way] = {"wall_s": out["wall_s"]}
            print(f"[sweep] K={k} {way}: {out['wall_s']:.1f} s", flush=True)
        spec = _spec(k, root / "processes", quick)
        lrs, seeds = spec["grid"]["lr"], spec["grid"]["seed"]
        pairs = [(lr, s) for lr in lrs for s in seeds]
        n_run = min(k, max_processes)
        exe = pathlib.Path(sys.executable).with_name("jwins")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "jwins_jax.cli"]
        penv = {**env, "JWINS_COMPILATION_CACHE": str(root / "xla-cache")}
        walls = []
        for lr, seed in pairs[:n_run]:
            flags = []
            for key, value in spec["base"].items():
                flags += [f"--{key.replace('_', '-')}", str(value)]
            out = _run_child(
                cmd
                + [
                    "run",
                    *flags,
                    "--lr",
                    str(lr),
                    "--seed",
                    str(seed),
                    "--quiet",
                    "--name",
                    f"lr{lr}-s{seed}",
                ],
                penv,
                timeout,
            )
            walls.append(out["wall_s"])
        later = walls[1:] or walls
        wall = walls[0] + (k - 1) * sum(later) / len(later)
        res["processes"] = {
            "wall_s": wall if n_run < k else sum(walls),
            "first_process_s": walls[0],
            "later_process_s": sum(later) / len(later),
            "measured_processes": n_run,
            "extrapolated": n_run < k,
        }
        print(f"[sweep] K={k} processes: {sum(walls):.1f} s for {n_run}", flush=True)
    for way in ("vmapped", "sequential", "processes"):
        res[way]["configs_per_hour"] = 3600.0 * k / res[way]["wall_s"]
    res["ratio_vs_sequential"] = res["sequential"]["wall_s"] / res["vmapped"]["wall_s"]
    res["ratio_vs_processes"] = res["processes"]["wall_s"] / res["vmapped"]["wall_s"]
    return res


def run(opts: Any) -> dict[str, Any]:
    """The sweep section: K = 1, 4, 16, 64 (quick: K = 2, one process timed)."""
    quick = bool(getattr(opts, "quick", False))
    ks = (2,) if quick else (1, 4, 16, 64)
    max_processes = 1 if quick else MAX_PROCESSES
    timeout = 600.0 if quick else 7200.0
    rows = [measure(k, quick, max_processes, timeout) for k in ks]
    return {
        "rounds": 4 if quick else ROUNDS,
        "eval_every": 2 if quick else EVAL_EVERY,
        "nodes": 6 if quick else 96,
        "rows": rows,
    }
