"""The suite's side of the timer: flat rows, the machine's load, the environment.

The timing loop itself is the package's (:mod:`jwins_jax.kernelbench`: ``wall``,
``compiled``, ``device_call``, ``interleave``, ``summary``), the one ``jwins
bench-kernels`` uses. Every figure of the suite is a median of repeats taken after a
warm-up, stated with its spread (fastest and slowest repeat), with the compile time
measured apart (a program compiled ahead of time) and the machine's load over the
repeats recorded: the 1-minute load average before and after and the number of other
processes that used more than a fifth of a core meanwhile. Two ways measured side by
side are timed in turns (ours, baseline, ours, baseline, ...), so load that comes and
goes falls on both. Rows are flat dicts: ``<what>_s`` (median), ``<what>_min_s``,
``<what>_max_s``, ``<what>_n`` (repeats).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import time
from collections.abc import Callable
from typing import Any

from jwins_jax import kernelbench
from jwins_jax.kernelbench import Durations


def summarize(name: str, times: list[float]) -> dict[str, float]:
    """``{name}_s`` (median), ``{name}_min_s``, ``{name}_max_s`` and ``{name}_n``."""
    s = kernelbench.summary(times)
    return {
        f"{name}_s": s["median_s"],
        f"{name}_min_s": s["min_s"],
        f"{name}_max_s": s["max_s"],
        f"{name}_n": s["repeats"],
    }


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU time in clock ticks) of every process, from /proc."""
    out = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                out[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
            except (OSError, ValueError, IndexError):
                pass
    return out


def our_processes(processes: dict[int, tuple[int, int]]) -> set[int]:
    """This process, its parent and its descendants among ``processes``."""
    ours, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, (ppid, _) in processes.items() if ppid in ours} - ours
        ours |= more
        grew = bool(more)
    return ours | {os.getppid()}


class Load:
    """The machine's load from now until :meth:`record`."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.avg = os.getloadavg()[0]
        self.ticks = {pid: t for pid, (_, t) in _processes().items()}

    def record(self) -> dict[str, Any]:
        """``load_before``, ``load_after`` and ``busy_others``: processes that used
        more than 20 % of a core meanwhile, other than this one, its parent and its
        descendants (the baselines and points it started)."""
        span = max(time.monotonic() - self.start, 1e-3)
        hz = os.sysconf("SC_CLK_TCK")
        now = _processes()
        ours = our_processes(now)
        busy = sum(
            1
            for pid, (_, ticks) in now.items()
            if pid not in ours
            and (ticks - self.ticks.get(pid, ticks)) / hz > 0.2 * span
        )
        after = os.getloadavg()[0]
        return {"load_before": self.avg, "load_after": after, "busy_others": busy}


def interleave(
    calls: list[Callable[[], Durations]], repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """:func:`jwins_jax.kernelbench.interleave` as a flat row.

    Args:
        calls: the ways, each a call returning the durations it measured,
            ``{name: seconds}``.
        repeats: timed turns.
        warmup: untimed turns first.

    Returns:
        :func:`summarize` of every name and the load over the timed turns.
    """
    for _ in range(warmup):
        for call in calls:
            call()
    load = Load()
    times = kernelbench.interleave(calls, repeats, warmup=0)
    row: dict[str, Any] = {}
    for name, values in times.items():
        row.update(summarize(name, values))
    return {**row, **load.record()}


def peak_rss_bytes() -> int | None:
    """The process's resident-set high-water mark (``VmHWM``, Linux), in bytes.

    ``getrusage``'s ``ru_maxrss`` is not used: a fork + exec child starts with its
    parent's peak there.
    """
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def environment() -> dict[str, Any]:
    """Device, JAX version, CPU, date and load of this measurement."""
    import jax
    import jaxlib

    from jwins_jax.platform import cpu_model

    dev = jax.devices()[0]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }


def write_json(path: pathlib.Path, data: Any) -> pathlib.Path:
    """Writes ``data`` as indented JSON (NumPy scalars as Python numbers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, default=lambda v: v.item())
    path.write_text(text + "\n")
    return path
