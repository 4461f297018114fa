"""Crash matrix (issue 20): `jwins run` and `jwins sweep` stopped by SIGINT, SIGTERM
or SIGKILL at start-up, during compilation, mid-block, during a checkpoint write and
during the final plots.

Every case must leave a directory that `jwins show` describes truthfully (its status
line matches how the process ended, every metrics line is whole and counted) and that
`jwins run --resume RUN_DIR` (a run) or running the same sweep again completes to the
result of a run that was never stopped: equal metrics but for ``elapsed_s``. A run
stopped before its directory existed is started again with the same command. Sweeps
keep no checkpoints, so their checkpoint case does not apply.

Test hooks. Each stopped process is this script in ``--child`` mode: before it calls
``jwins_jax.cli.main`` it patches, in its own process only, the points where a signal
must land, each writing a marker file when first reached and, where the phase is
short, pausing there for ``--pause`` seconds:

* start-up: ``experiment.load_data`` (marker, pause);
* compilation: ``runner.programs`` returns (marker; the programs compile right after,
  and the child runs without the persistent compilation cache);
* mid-block: ``RunLog.record`` of the third evaluation returns (marker; the next block
  starts at once);
* checkpoint write: orbax's atomic rename of the second checkpoint (marker, pause:
  the checkpoint is written in full to its temporary directory but not renamed);
* final plots: ``results.plot_accuracy`` / ``sweep.plot_sweep`` (marker, pause).

The package itself carries no hook. The script prints a table (also written to
``--out`` as JSON) and exits 1 if any case fails.

    python benchmarks/crash_matrix.py                    # the whole matrix (minutes)
    python benchmarks/crash_matrix.py --only run --phases block,checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PHASES = ("startup", "compile", "block", "checkpoint", "plots")
SIGNALS = {
    "SIGINT": signal.SIGINT,
    "SIGTERM": signal.SIGTERM,
    "SIGKILL": signal.SIGKILL,
}
# seconds from a marker to the signal
DELAY = {"startup": 0.2, "compile": 0.5, "block": 0.05, "checkpoint": 0.2, "plots": 0.2}
CONFIG = [
    "--nodes",
    "8",
    "--topology",
    "ring",
    "--rounds",
    "60",
    "--eval-every",
    "10",
    "--local-steps",
    "1",
    "--test-subset",
    "64",
]


# ----------------------------------------------------------------- the child
def _install_hooks(markers: pathlib.Path, pause: float, command: str) -> None:
    from orbax.checkpoint._src.path import atomicity

    from jwins_jax import experiment, results, runner, sweep

    def mark(name: str, wait: float = 0.0) -> None:
        path = markers / name
        if not path.exists():
            path.write_text(str(time.time()))
            time.sleep(wait)

    def after(fun, name, wait=0.0):
        def hooked(*args, **kwargs):
            out = fun(*args, **kwargs)
            mark(name, wait)
            return out

        return hooked

    def before(fun, name, wait=0.0):
        def hooked(*args, **kwargs):
            mark(name, wait)
            return fun(*args, **kwargs)

        return hooked

    experiment.load_data = before(experiment.load_data, "startup", pause)
    runner.programs = after(runner.programs, "compile")
    if command == "run":
        results.plot_accuracy = before(results.plot_accuracy, "plots", pause)
    else:  # a sweep's final plots (its configs' own plots come before)
        sweep.plot_sweep = before(sweep.plot_sweep, "plots", pause)

    record, records = results.RunLog.record, {"n": 0}

    def hooked_record(self, *args, **kwargs):
        out = record(self, *args, **kwargs)
        records["n"] += 1
        if records["n"] == 3:
            mark("block")
        return out

    results.RunLog.record = hooked_record

    finalize, saves = atomicity.AtomicRenameTemporaryPath.finalize, {"n": 0}

    async def hooked_finalize(self):
        if self._final_path.name.isdigit():
            saves["n"] += 1
            if saves["n"] == 2:
                mark("checkpoint", pause)
        return await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = hooked_finalize


def child(markers: str, pause: float, argv: list[str]) -> int:
    _install_hooks(pathlib.Path(markers), pause, argv[0])
    from jwins_jax.cli import main

    return main(argv)


# ---------------------------------------------------------------- the parent
def _env(cache: str) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JWINS_COMPILATION_CACHE": cache,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def _jwins(argv: list[str], cache: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jwins_jax.cli", *argv]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=_env(cache), timeout=900
    )


def _strip(run_dir: pathlib.Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [
        {k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
        for line in lines
    ]


def _command(kind: str, out: pathlib.Path, spec: pathlib.Path) -> list[str]:
    if kind == "run":
        return ["run", *CONFIG, "--checkpoint-every", "20", "--out-dir", str(out)]
    return ["sweep", str(spec), "--batch", "2", "--out-dir", str(out)]


def _run_dirs(kind: str, out: pathlib.Path) -> list[pathlib.Path]:
    if kind == "run":
        return [out / "r"] if (out / "r").is_dir() else []
    root = out / "sweep-m"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _expected_status(kind: str, phase: str, sig: str) -> str:
    """What `jwins show` must say of a run directory after the signal: a run writes
    its summary after its plot, a sweep's configs have theirs before the sweep's
    plots, and a first Ctrl-C or SIGTERM during the last plots lets the run end."""
    if phase == "plots" and (sig != "SIGKILL" or kind == "sweep"):
        return "finished"
    return "unknown (no summary.json" if sig == "SIGKILL" else "interrupted"


def _check_show(
    run_dir: pathlib.Path, expected: str, cache: str
) -> tuple[str | None, str]:
    """(None if `jwins show` describes the directory truthfully, else why not;
    its status line)."""
    shown = _jwins(["show", str(run_dir)], cache)
    if shown.returncode != 0:
        return f"show exit {shown.returncode}: {shown.stderr.strip()}", ""
    status = next(
        (ln for ln in shown.stdout.splitlines() if ln.startswith("status: ")), ""
    )
    status = status.removeprefix("status: ").split(", wall time")[0]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    for line in lines:
        json.loads(line)  # whole lines only (raises otherwise)
    text = shown.stdout
    if not status.startswith(expected):
        return f"show says {status!r}, expected {expected!r}", status
    if f"metrics.jsonl: {len(lines)} evaluations" not in text:
        return "show miscounts the evaluations", status
    if "malformed" in text:
        return "show reports malformed lines", status
    return None, status


def one_case(kind, phase, sig, work, spec, reference, pause, cache):
    out = work / f"{kind}-{phase}-{sig}"
    markers = out / "markers"
    markers.mkdir(parents=True)
    argv = _command(kind, out, spec) + ["--name", "r"] * (kind == "run")
    cmd = [sys.executable, __file__, "--child", str(markers), str(pause), "--"]
    proc = subprocess.Popen(
        cmd + argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env("0"),
    )
    t0 = time.time()
    while not (markers / phase).exists() and proc.poll() is None:
        if time.time() - t0 > 900:
            break
        time.sleep(0.01)
    reached = (markers / phase).exists()
    if reached:
        time.sleep(DELAY[phase])
        if proc.poll() is None:
            proc.send_signal(SIGNALS[sig])
    _, err = proc.communicate(timeout=900)
    row = {"kind": kind, "phase": phase, "signal": sig, "exit": proc.returncode}
    problems = []
    if not reached:
        problems.append("the phase was not reached")
    if sig != "SIGKILL" and "Traceback" in err:
        problems.append("a traceback on stderr")
    dirs = _run_dirs(kind, out)
    expected = _expected_status(kind, phase, sig)
    if not dirs:
        row["show"] = "no directory (nothing written)"
        if sig != "SIGKILL" and "nothing was written" not in err:
            problems.append(f"stderr does not say nothing was written: {err!r}")
    else:
        shown = []
        for run_dir in dirs:
            bad, status = _check_show(run_dir, expected, cache)
            shown.append(status)
            if bad:
                problems.append(f"{run_dir.name}: {bad}")
        row["show"] = " / ".join(dict.fromkeys(shown))
    # complete it
    if kind == "run" and dirs and expected != "finished":
        done = _jwins(["run", "--resume", str(dirs[0]), "--quiet"], cache)
        row["completed_by"] = "jwins run --resume"
    elif kind == "run" and not dirs:
        done = _jwins(argv + ["--quiet"], cache)
        row["completed_by"] = "the same command again"
    elif kind == "sweep" and (expected != "finished" or proc.returncode != 0):
        done = _jwins(argv + ["--quiet"], cache)  # also draws plots a kill cut off
        row["completed_by"] = "the same sweep again"
    else:
        done, row["completed_by"] = None, "nothing (it had finished)"
    if done is not None and done.returncode != 0:
        problems.append(f"completion exit {done.returncode}: {done.stderr.strip()}")
    got = {p.name: _strip(p) for p in _run_dirs(kind, out)}
    row["equal"] = got == reference
    if not row["equal"]:
        problems.append("metrics differ from the uninterrupted run")
    row["ok"] = not problems
    row["problems"] = problems
    return row


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        markers, pause, _, *rest = argv[1:]
        return child(markers, float(pause), rest)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="run,sweep", help="run, sweep or both")
    p.add_argument("--phases", default=",".join(PHASES))
    p.add_argument("--signals", default=",".join(SIGNALS))
    p.add_argument("--pause", type=float, default=5.0)
    p.add_argument("--work", default=None, help="directory for the runs (temp)")
    p.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "out" / "crash_matrix.json")
    )
    args = p.parse_args(argv)
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="jwins-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = str(work / "xla-cache")
    spec = work / "spec.json"
    base = {
        flag[2:].replace("-", "_"): int(value) if value.isdigit() else value
        for flag, value in zip(CONFIG[::2], CONFIG[1::2])
    }
    spec.write_text(json.dumps({"name": "m", "base": base, "grid": {"seed": [1, 2]}}))
    rows = []
    for kind in args.only.split(","):
        ref_out = work / f"{kind}-reference"
        cmd = _command(kind, ref_out, spec) + ["--name", "r"] * (kind == "run")
        ref = _jwins(cmd + ["--quiet"], cache)
        if ref.returncode != 0:
            print(ref.stderr)
            return 1
        reference = {p.name: _strip(p) for p in _run_dirs(kind, ref_out)}
        for phase in args.phases.split(","):
            if kind == "sweep" and phase == "checkpoint":
                rows.append(
                    {
                        "kind": kind,
                        "phase": phase,
                        "signal": "-",
                        "ok": None,
                        "show": "n/a: sweeps keep no checkpoints",
                    }
                )
                continue
            for sig in args.signals.split(","):
                row = one_case(
                    kind, phase, sig, work, spec, reference, args.pause, cache
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print()
    print("| command | stopped | signal | exit | jwins show | completed by | equal |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["ok"] is None:
            print(f"| {r['kind']} | {r['phase']} | - | - | {r['show']} | - | - |")
            continue
        mark = "yes" if r["equal"] else "NO"
        print(
            f"| {r['kind']} | {r['phase']} | {r['signal']} | {r['exit']} | "
            f"{r['show']} | {r['completed_by']} | {mark} |"
        )
    failed = [r for r in rows if r["ok"] is False]
    for r in failed:
        print("FAILED", r["kind"], r["phase"], r["signal"], r["problems"])
    if not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
