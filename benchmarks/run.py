"""The benchmark suite of jwins_jax (make bench, make bench-quick, make bench-gpu).

Run as ``python -m benchmarks.run`` from the repository's root.

Sections, all by default or some with ``--only``:

* ``machine``: the FLOP rate of a jitted 2048 x 2048 float32 matmul;
* ``e2e``: every workload's round against the original's engine (:mod:`.e2e`);
* ``paper``: seconds per JWINS round of each paper workload, the paper's tau;
* ``clock``: the GN-LeNet JWINS round with and without the simulated clock
  (:mod:`.e2e`);
* ``kernels``: ``jwins bench-kernels``' kernels against the per-node way
  (:mod:`.kernels`);
* ``scaling``, ``devices``: one process per point, time and peak memory
  (:mod:`.points`);
* ``sweep``: K configs as processes, one after another, vmapped (:mod:`.sweeps`);
* ``gpu``: what an accelerator user needs (:mod:`.gpu`).

Each section writes ``<out>/<section>.json`` (its environment and flat rows); then
the report of every section file in ``<out>`` replaces this device's generated
section of ``benchmarks/RESULTS.md`` (full runs; ``--results FILE`` writes elsewhere,
``--no-append`` only the JSON; ``--report`` only rebuilds the report). ``--quick``
runs everything tiny, to check that it works (its times mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback
from typing import Any

from benchmarks import report
from benchmarks.timing import environment, interleave, write_json
from jwins_jax.hostmem import tune_host_allocator

HERE = pathlib.Path(__file__).resolve().parent
WORKLOADS = ("digits", "cifar", "movielens", "celeba", "shakespeare", "femnist")
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "nodes": 96,
        "rounds": 2,
        "repeats": 3,
        "workloads": WORKLOADS,
        "paper": WORKLOADS[1:],
        "paper_repeats": 2,
        "clock_repeats": 10,
        "kernel_time_budget": 10.0,
        "kernel_mem_gib": 6.0,
        "point_timeout": 1500.0,
        "point_rss_gib": 22.0,
        "gpu_budget_s": 300.0,
    },
    "quick": {
        "nodes": 4,
        "repeats": 1,
        "workloads": ("digits",),
        "paper": ("movielens",),
        "paper_repeats": 1,
        "clock_repeats": 2,
        "kernel_time_budget": 2.0,
        "kernel_mem_gib": 0.1,
        "point_timeout": 300.0,
        "point_rss_gib": 8.0,
        "gpu_budget_s": 60.0,
    },
}


def machine(opts: Any) -> list[dict[str, Any]]:
    """The machine's reference FLOP rate."""
    import jax
    import jax.numpy as jnp

    from jwins_jax.kernelbench import compiled, device_call

    a = jax.random.normal(jax.random.PRNGKey(0), (2048, 2048))
    program, compile_s = compiled(jnp.matmul, a, a)
    row = interleave([lambda: {"matmul": device_call(program, a, a)()}], 5)
    return [
        {
            **row,
            "compile_s": compile_s,
            "matmul_gflops": 2 * 2048**3 / row["matmul_s"] / 1e9,
        }
    ]


def sections() -> dict[str, Any]:
    from benchmarks import e2e, gpu, kernels, points, sweeps

    return {
        "machine": machine,
        "e2e": e2e.e2e,
        "paper": e2e.paper,
        "clock": e2e.clock,
        "kernels": kernels.kernels,
        "scaling": lambda o: points.points(o, "scaling"),
        "devices": lambda o: points.points(o, "devices"),
        "sweep": sweeps.sweeps,
        "gpu": gpu.gpu,
    }


def _names(text: str) -> tuple[str, ...]:
    return tuple(v for v in text.split(",") if v)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: does it work")
    p.add_argument(
        "--out", type=pathlib.Path, default=HERE / "out", help="JSON directory"
    )
    p.add_argument("--results", type=pathlib.Path, help="markdown file for the report")
    p.add_argument("--no-append", action="store_true", help="write the JSON only")
    p.add_argument("--report", action="store_true", help="only rebuild the report")
    p.add_argument("--only", default=",".join(report.SECTIONS), help="comma list")
    for key, value in PRESETS["full"].items():  # every preset value can be set
        kind, text = type(value), value
        if isinstance(value, tuple):
            kind, text = _names, ",".join(value)
        p.add_argument(f"--{key.replace('_', '-')}", type=kind, help=f"full: {text}")
    p.add_argument("--point", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    preset = {**PRESETS["full"], **(PRESETS["quick"] if opts.quick else {})}
    for key, value in preset.items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    opts.only = [s for s in opts.only.split(",") if s]
    unknown = set(opts.only) - set(report.SECTIONS)
    if unknown:
        p.error(
            f"--only {','.join(sorted(unknown))}: allowed {','.join(report.SECTIONS)}"
        )
    if opts.results is None and not opts.quick:
        opts.results = HERE / "RESULTS.md"
    return opts


def main(argv: list[str] | None = None) -> int:
    tune_host_allocator()  # before JAX starts its threads
    opts = parse_args(argv)
    if opts.quick:  # compile as little, and as seldom, as possible (subprocesses too)
        os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
        cache = pathlib.Path(tempfile.gettempdir()) / "jwins-bench-quick-xla"
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache))
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if opts.point is not None:
        from benchmarks import points

        row = points.run_point(json.loads(opts.point))
        print(points.TAG + json.dumps(row), flush=True)
        return 0
    opts.out.mkdir(parents=True, exist_ok=True)
    start, failed = time.perf_counter(), []
    if not opts.report:
        run = sections()
        for name in opts.only:
            env = environment()
            print(f"[{name}] {env['device_kind']}, jax {env['jax']}", flush=True)
            try:
                rows = run[name](opts)
            except Exception as err:  # noqa: BLE001 - keep the other sections
                failed.append(name)
                rows = [{"error": f"{type(err).__name__}: {err}"[:300]}]
                traceback.print_exc()
            section = {"env": env, "quick": opts.quick, "rows": rows}
            write_json(opts.out / f"{name}.json", section)
    data = report.load(opts.out)
    if opts.results is not None and not opts.no_append:
        env = next(iter(data.values()))["env"]
        image = None
        if "scaling" in data:
            image = report.plot(
                data["scaling"]["rows"], opts.results.parent / "scaling.png"
            )
        mode = "quick" if opts.quick else "full"
        title = f"{env['date'][:10]}: {env['device_kind']} ({mode} run)"
        text = report.render(data, title, image)
        report.update(opts.results, text, f"{env['device_kind']} {mode}")
        print(f"report in {opts.results}")
    print(f"done in {time.perf_counter() - start:.0f} s; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
