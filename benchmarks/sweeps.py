"""Sweeps at the lengths users run, and where their gain comes from.

K digits configs (learning rates x seeds, 96 nodes on the paper's graph, 200 rounds,
an evaluation every 10), run four ways, each from a fresh process and a fresh
persistent compilation cache, so start-up and compilation count where they happen:

* ``processes``: K ``jwins run`` processes one after another, sharing one cache (the
  first compiles, the others load its programs), as a shell loop would run them;
* ``sequential``: one ``jwins sweep --batch 1`` process: one program, compiled once,
  the configs one after another;
* ``vmapped``: one ``jwins sweep`` process: the configs batched through the ``vmap``
  of the same program;
* ``startup``: a process that imports the command line and starts JAX, nothing else.

The parts of the gain: start-up (K processes start Python and JAX, one sweep starts
once), compilation (the first process against the later ones, which load from the
cache), batching (sequential against vmapped in one process).
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.timing import Load

CLI = [sys.executable, "-m", "jwins_jax.cli"]
LRS = (0.02, 0.05, 0.1, 0.2)


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def spec(k: int, quick: bool) -> dict[str, Any]:
    """The sweep of K configs: up to 4 learning rates, then seeds."""
    lrs = list(LRS[: min(k, len(LRS))])
    base: dict[str, Any] = {"dataset": "digits", "rounds": 200, "eval_every": 10}
    if quick:
        base = {**base, "rounds": 4, "eval_every": 2, "nodes": 6, "topology": "ring"}
        base.update(local_steps=1, test_subset=32)
    grid = {"lr": lrs, "seed": list(range(1, k // len(lrs) + 1))}
    return {"name": f"k{k}", "base": base, "grid": grid}


def measure(k: int, quick: bool) -> dict[str, Any]:
    """The four ways for K configs (see the module docstring)."""
    sweep = spec(k, quick)
    base = sweep["base"]
    row = {"k": k, "nodes": base.get("nodes", 96), "rounds": base["rounds"]}
    load = Load()
    with tempfile.TemporaryDirectory(prefix="jwins-bench-sweep-") as tmp:
        root = pathlib.Path(tmp)

        def env(way: str) -> dict[str, str]:
            return {**os.environ, "JWINS_COMPILATION_CACHE": str(root / f"cache-{way}")}

        path = root / "spec.json"
        for way, extra in (("vmapped", []), ("sequential", ["--batch", "1"])):
            spec_way = {**sweep, "base": {**base, "out_dir": str(root / way)}}
            path.write_text(json.dumps(spec_way))
            row[f"{way}_s"] = _timed(CLI + ["sweep", str(path), "--quiet"], env(way))
        flags = [f"--{key.replace('_', '-')}={v}" for key, v in base.items()]
        flags.append(f"--out-dir={root / 'processes'}")
        walls = [
            _timed(
                CLI + ["run", *flags, f"--lr={lr}", f"--seed={seed}", "--quiet"],
                env("processes"),
            )
            for lr in sweep["grid"]["lr"]
            for seed in sweep["grid"]["seed"]
        ]
        start = "import jax, jwins_jax.cli; jax.devices()"
        starts = [_timed([sys.executable, "-c", start], env("start")) for _ in range(3)]
    row.update(
        processes_s=sum(walls),
        first_process_s=walls[0],
        later_process_s=statistics.median(walls[1:] or walls),
        startup_s=statistics.median(starts),
        **load.record(),
    )
    row["startups_s"] = k * row["startup_s"]  # what K processes spend starting
    row["compile_s"] = row["first_process_s"] - row["later_process_s"]
    print(f"[sweep] K={k}: {json.dumps(row)}", flush=True)
    return row


def sweeps(opts: Any) -> list[dict[str, Any]]:
    """The ``sweep`` section: K = 4 and 16 (quick: 2)."""
    return [measure(k, opts.quick) for k in ((2,) if opts.quick else (4, 16))]
