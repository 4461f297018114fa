"""Timing, environment and output helpers shared by the benchmark sections (issue 4).

Every measurement follows DESIGN.md "Performance habits": the compile (or first-call)
time is reported apart, the steady state is the median of several repeats after a
warm-up, and every device result is waited for with ``jax.block_until_ready``.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import pathlib
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jwins_jax import compiler
from jwins_jax.platform import cpu_model

REPO = pathlib.Path(__file__).resolve().parents[1]


def block(tree: Any) -> Any:
    """Waits for every array of a pytree (host values pass through)."""
    return jax.block_until_ready(tree)


def summarize(times: list[float], compile_s: float | None = None) -> dict[str, Any]:
    """Median / min / max of steady-state times in seconds, plus the compile time."""
    out: dict[str, Any] = {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
        "times_s": [round(t, 6) for t in times],
    }
    if compile_s is not None:
        out["compile_s"] = compile_s
    return out


def time_compiled(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    repeats: int,
    slow_s: float = 2.0,
    warmup: int = 1,
) -> tuple[dict[str, Any], Any]:
    """Compiles ``compiler.jit(fn)`` ahead of time, warms it up, then times it.

    ``compiler.jit`` is ``jax.jit`` with the simulator's compile options, so kernels
    are timed as the simulator compiles them.

    Args:
        fn: a jittable function (not donating its arguments).
        args: its arguments.
        repeats: steady-state repeats (reduced to 1 when one call takes > slow_s).
        slow_s: threshold above which a single timed call is enough.
        warmup: untimed calls before the repeats (0: the program is compiled ahead
            of time already, so for a slow program the first call is the
            measurement).

    Returns:
        ``(stats, output)``: stats has ``compile_s`` (lower + compile), ``median_s``
        etc.; output is the result of the last call.
    """
    t0 = time.perf_counter()
    compiled = compiler.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    stats, out = time_host(
        lambda: compiled(*args), repeats, warmup=warmup, slow_s=slow_s
    )
    stats["compile_s"] = compile_s
    stats["warmup_s"] = stats.pop("first_s")
    return stats, out


def time_host(
    call: Callable[[], Any], repeats: int, warmup: int = 1, slow_s: float = 2.0
) -> tuple[dict[str, Any], Any]:
    """Times a zero-argument call (whatever it runs), waiting for device results.

    The first ``warmup`` calls are timed apart (``first_s``: for a jitted function
    called the first time this includes tracing and compiling). With ``warmup=0``
    there is no separate first call (``first_s`` is None) and ``repeats`` calls are
    timed.

    Returns:
        ``(stats, output)`` as :func:`time_compiled`.
    """
    first = None
    if warmup > 0:
        t0 = time.perf_counter()
        out = block(call())
        first = time.perf_counter() - t0
        for _ in range(warmup - 1):
            out = block(call())
        if first > slow_s and warmup <= 1:
            repeats = 1
        elif first < 0.02:
            # short calls: more repeats (up to ~0.2 s in all) for a stable median
            repeats = max(repeats, min(50, int(0.2 / max(first, 1e-4))))
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = block(call())
        times.append(time.perf_counter() - t0)
    stats = summarize(times)
    stats["first_s"] = first
    return stats, out


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this process's own
    address space. ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used there because a
    child started by fork + exec inherits the parent's peak at the fork, so a small
    point launched from a large benchmark process would report the parent's size.
    Elsewhere: ``ru_maxrss`` (see :func:`ru_maxrss_bytes`).
    """
    hwm = proc_bytes("/proc/self/status", "VmHWM")
    return ru_maxrss_bytes() if hwm is None else hwm


def proc_bytes(path: str, field: str) -> int | None:
    """A ``field: N kB`` line of a /proc file in bytes (None where unreadable)."""
    try:
        for line in pathlib.Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def ru_maxrss_bytes() -> int:
    """``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def device_peak_bytes() -> int | None:
    """Peak device memory of the first device, where the backend reports it."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # CPU backends may not implement it
        return None
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


def environment() -> dict[str, Any]:
    """Device, CPU, library versions and date of this run."""
    import jaxlib
    import pywt

    dev = jax.devices()[0]
    mem_total = None
    try:
        with open("/proc/meminfo") as fh:
            first = fh.readline().split()
            mem_total = int(first[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_platform": dev.platform,
        "device_count": jax.device_count(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "memory_total_bytes": mem_total,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "pywt": pywt.__version__,
        "python": platform.python_version(),
    }


def free() -> None:
    """Drops unreachable buffers between measurements."""
    gc.collect()


def write_json(path: pathlib.Path, data: Any) -> pathlib.Path:
    """Writes ``data`` as indented JSON (numpy scalars converted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
