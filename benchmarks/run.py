"""Benchmark suite of jwins_jax (issue 4): ``make bench`` / ``make bench-quick``.

Sections (all by default, or some with ``--only``):

* ``machine``: the FLOP rate of a jitted 2048 x 2048 float32 matmul (measured in every
  invocation, so each section's ratios use a reference from the same run);
* ``e2e``: seconds per round of ``full`` and ``jwins`` at n = 96 on the paper graph,
  every model on its stand-in dataset with the paper's batch size and tau (FEMNIST:
  a cheaper tau; the heavy models JWINS only, one repeat), split into training /
  sharing / evaluation, the round via ``Experiment.advance``, and the per-node ways
  in the same run: JAX per node and PyTorch per node, the original engine, when
  PyTorch is installed (bench_e2e.py; about 15-20 minutes on 2 CPU cores);
* ``kernels``: wavelet, selection and gossip kernels over (n, N) (bench_kernels.py);
* ``scaling``: round time and peak RSS against n and N, one subprocess per point,
  and a PNG plot (bench_scaling.py);
* ``sweep``: K digits configs as one vmapped sweep, one after another in one process,
  and as K ``jwins run`` processes (bench_sweep.py);
* ``devices``: rounds per second with the node axis sharded over 1, 2, 4 devices
  (bench_devices.py);
* ``gpu``: the accelerator benchmark of ``make bench-gpu``: the paper-scale CIFAR-10
  run extrapolated from one block, rounds per second of every model at n = 96,
  1,024, 4,096, evaluation throughput (bench_gpu.py).

Each section writes ``<out>/<section>.json``; then the report of every section file
in ``<out>`` is appended to ``benchmarks/RESULTS.md`` as one dated section (not in
``--quick`` mode unless ``--results`` is given; never with ``--no-append``).
``--report`` only rebuilds and appends the report from the existing JSON files.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import time
from typing import Any

# PyTorch's OpenMP threads (the per-node PyTorch baseline) otherwise spin while they
# wait, which on a shared machine slows its loop 2-10x (benchmarks/bench_train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import report  # noqa: E402

from jwins_jax.hostmem import tune_host_allocator  # noqa: E402

SECTIONS = report.SECTIONS


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _sections(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        if name not in SECTIONS:
            raise argparse.ArgumentTypeError(
                f"--only {name!r} is unknown; allowed: {', '.join(SECTIONS)}"
            )
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes, well under a minute"
    )
    p.add_argument(
        "--out", type=pathlib.Path, default=HERE / "out", help="JSON/PNG directory"
    )
    p.add_argument(
        "--results", type=pathlib.Path, default=None, help="markdown to append to"
    )
    p.add_argument("--no-append", action="store_true", help="write JSON only")
    p.add_argument("--only", type=_sections, default=list(SECTIONS), help="comma list")
    p.add_argument("--report", action="store_true", help="only append the report")
    p.add_argument("--nodes", type=int, default=None, help="e2e nodes (default 96)")
    p.add_argument(
        "--models", default=None, help="e2e models, comma list, or all (default)"
    )
    p.add_argument("--repeats", type=int, default=None, help="steady-state repeats")
    p.add_argument("--round-repeats", type=int, default=None)
    p.add_argument("--pernode-repeats", type=int, default=None)
    p.add_argument(
        "--advance-rounds", type=int, default=None, help="rounds per advance"
    )
    p.add_argument("--test-subset", type=int, default=256, help="GN-LeNet test samples")
    p.add_argument("--kernel-time-budget", type=float, default=None, help="s per call")
    p.add_argument("--kernel-mem-gib", type=float, default=1.5, help="input budget")
    p.add_argument("--scaling-n", type=_int_list, default=[16, 96, 384, 1024])
    p.add_argument("--point-timeout", type=float, default=None, help="s per point")
    p.add_argument("--point-mem-gib", type=float, default=16.0, help="share points")
    p.add_argument(
        "--point-rss-gib",
        type=float,
        default=22.0,
        help="stop a scaling point whose resident set exceeds this (or the memory "
        "available at its start, less 1 GiB)",
    )
    p.add_argument(
        "--gpu-budget-s",
        type=float,
        default=300.0,
        help="seconds for the gpu section's rounds table",
    )
    p.add_argument("--point", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    quick = a.quick
    defaults = {
        "nodes": 4 if quick else 96,
        "models": "digits_cnn" if quick else "all",
        "repeats": 2 if quick else 3,
        "round_repeats": 1 if quick else 2,
        "pernode_repeats": 1 if quick else 2,
        "advance_rounds": 2,
        "kernel_time_budget": 2.0 if quick else 10.0,
        "point_timeout": 120.0 if quick else 1500.0,
    }
    for key, value in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    a.models = [m for m in a.models.split(",") if m]
    if a.results is None and not quick:
        a.results = HERE / "RESULTS.md"
    return a


def main(argv: list[str] | None = None) -> int:
    # Before JAX starts its threads; the vectorized code and the per-node NumPy
    # baseline share the settings (scaling points run this main too).
    tune_host_allocator()
    opts = parse_args(argv)
    if opts.quick:
        # Quick mode checks that everything runs; its times are not meant to be read,
        # so spend as little as possible on compiling.
        os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
        import jax

        jax.config.update("jax_disable_most_optimizations", True)
    if opts.point is not None:
        import bench_scaling

        result = bench_scaling.run_point(json.loads(opts.point))
        print(bench_scaling.RESULT_TAG + json.dumps(result, default=str), flush=True)
        return 0
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not opts.report:
        run_sections(opts, out)
    data = report.load(out)
    image = None
    if "scaling" in data and not opts.quick:
        png = out / "scaling.png"
        if png.is_file():
            shutil.copyfile(png, HERE / "scaling.png")
            image = "scaling.png"
    summary = {
        "quick": opts.quick,
        "sections": sorted(data),
        "wall_s": time.perf_counter() - start,
    }
    harness.write_json(out / "summary.json", summary)
    if opts.results is not None and not opts.no_append:
        mode = "quick" if opts.quick else "full"
        env = harness.environment()
        how = "sections run one at a time" if opts.report else f"{mode} run"
        title = f"{env['date'][:10]}: {env['device_kind']} ({how})"
        report.append(opts.results, report.render(data, image, title))
        print(f"appended to {opts.results}")
    print(f"wrote {out} in {summary['wall_s']:.0f} s")
    return 0


def run_sections(opts: argparse.Namespace, out: pathlib.Path) -> None:
    """Runs the requested sections, writing one JSON file per section."""
    import bench_e2e

    env = harness.environment()
    print(f"[machine] {env['device_kind']} / {env['cpu_model']} / jax {env['jax']}")
    matmul = bench_e2e.matmul_reference(repeats=opts.repeats + 2)
    print(f"[machine] matmul {matmul['gflops']:.0f} GFLOP/s", flush=True)
    common: dict[str, Any] = {"env": env, "matmul": matmul, "quick": opts.quick}
    harness.write_json(out / "machine.json", common)

    def kernels(o):
        import bench_kernels

        return bench_kernels.run(o)

    def scaling(o):
        import bench_scaling

        return bench_scaling.run(o, out)

    def sweep(o):
        import bench_sweep

        return bench_sweep.run(o)

    def devices(o):
        import bench_devices

        return bench_devices.run(o)

    def gpu(o):
        import bench_gpu

        return bench_gpu.run(o)

    sections = {
        "e2e": lambda o: bench_e2e.run(o, matmul),
        "kernels": kernels,
        "scaling": scaling,
        "sweep": sweep,
        "devices": devices,
        "gpu": gpu,
    }
    for name, section in sections.items():
        if name not in opts.only:
            continue
        t0 = time.perf_counter()
        res = section(opts)
        res.update(common, wall_s=time.perf_counter() - t0)
        harness.write_json(out / f"{name}.json", res)


if __name__ == "__main__":
    sys.exit(main())
