"""Soak: one long run, watched from outside for host-memory growth (issue 20).

Runs ``jwins run`` (digits, the default 96 nodes) for 20,000 rounds with an
evaluation every 50 and a checkpoint every 1,000 in a child process, and samples
the child's resident memory (``VmRSS``, peak ``VmHWM`` from ``/proc``), the number
of checkpoints kept and the size of the newest checkpoint's metadata every
``--interval`` seconds. A row is printed at every checkpoint; at the end the table
and the peak (``ru_maxrss`` of the finished child) go to ``--out`` as JSON.

What must hold: the resident memory stays flat after the first checkpoint (nothing
on the host grows with the rounds), the checkpoint directory keeps at most 3
checkpoints, and a checkpoint's metadata has the same size at round 1,000 and at
round 20,000 (it no longer carries the metrics records).

    nice python benchmarks/soak.py                       # the full soak (hours)
    python benchmarks/soak.py --rounds 2000 --nodes 16 --topology regular  # a short
                                                         # look (other flags: jwins run)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in KiB (empty once it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _checkpoints(run_dir: pathlib.Path) -> tuple[list[int], int, int]:
    """Kept checkpoint rounds, the newest one's metadata bytes, all their bytes."""
    where = run_dir / "checkpoints"
    if not where.is_dir():
        return [], 0, 0
    kept = sorted(int(p.name) for p in where.iterdir() if p.name.isdigit())
    meta = 0
    if kept:
        meta_file = where / str(kept[-1]) / "meta" / "metadata"
        meta = meta_file.stat().st_size if meta_file.is_file() else 0
    total = sum(p.stat().st_size for p in where.rglob("*") if p.is_file())
    return kept, meta, total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20_000)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--checkpoint-every", type=int, default=1_000)
    p.add_argument("--nodes", type=int, default=96)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--out-dir", default=None, help="where the run goes (a temp dir)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "soak.json"))
    args, extra = p.parse_known_args(argv)  # the rest goes to jwins run

    out_dir = pathlib.Path(args.out_dir or tempfile.mkdtemp(prefix="jwins-soak-"))
    run_dir = out_dir / "soak"
    cmd = [
        sys.executable,
        "-m",
        "jwins_jax.cli",
        "run",
        "--rounds",
        str(args.rounds),
        "--eval-every",
        str(args.eval_every),
        "--checkpoint-every",
        str(args.checkpoint_every),
        "--nodes",
        str(args.nodes),
        "--out-dir",
        str(out_dir),
        "--name",
        "soak",
        "--quiet",
        *extra,
    ]
    print("command:", " ".join(cmd[2:]), flush=True)
    t0 = time.time()
    load = [os.getloadavg()[0]]
    proc = subprocess.Popen(cmd)
    rows, seen, peak_kept, last = [], set(), 0, {}
    while proc.poll() is None:
        time.sleep(args.interval)
        mem = _status(proc.pid)
        last = mem or last
        kept, meta, total = _checkpoints(run_dir)
        peak_kept = max(peak_kept, len(kept))
        load.append(os.getloadavg()[0])
        if kept and kept[-1] not in seen and mem:
            seen.add(kept[-1])
            row = {
                "round": kept[-1],
                "elapsed_s": round(time.time() - t0, 1),
                "rss_mib": round(mem["VmRSS"] / 1024, 1),
                "peak_rss_mib": round(mem["VmHWM"] / 1024, 1),
                "checkpoints_kept": len(kept),
                "checkpoint_meta_bytes": meta,
                "checkpoints_bytes": total,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    # the finished child's peak resident memory (ru_maxrss, KiB on Linux)
    import resource

    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    kept, meta, total = _checkpoints(run_dir)
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().count("\n") if metrics.is_file() else 0
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    result = {
        "command": " ".join(cmd[2:]),
        "returncode": proc.returncode,
        "status": summary.get("status"),
        "wall_s": round(time.time() - t0, 1),
        "final_peak_rss_mib": round(peak, 1),
        "last_sampled_rss_mib": round(last.get("VmRSS", 0) / 1024, 1),
        "metrics_lines": lines,
        "checkpoints_kept_at_end": kept,
        "most_checkpoints_kept": peak_kept,
        "checkpoint_meta_bytes_at_end": meta,
        "load_avg_1min": {"min": min(load), "max": max(load)},
        "rows": rows,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
