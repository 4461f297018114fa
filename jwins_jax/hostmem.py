"""Host allocator tuning for the CPU backend.

XLA's CPU backend allocates every large temporary and output with ``malloc``, from
its worker threads. With glibc's defaults this costs page faults on every call:

* blocks above the mmap threshold are fresh ``mmap`` pages, returned to the OS on
  ``free`` and zero-filled again on the next call (measured here: an elementwise op on
  a (96, 89,834) float32 stack took 36 ms per call before, 4.4 ms after raising the
  thresholds);
* a worker thread allocates from its own arena, a heap of at most 64 MiB, and a block
  larger than what such a heap can hold is always ``mmap``-ed, whatever the threshold.
  The JWINS sharing step (n = 96, N = 89,834) faulted in about 140 MiB per call this
  way and took about 210 ms instead of about 125 ms.

:func:`tune_host_allocator` raises the mmap and trim thresholds and limits glibc to
one arena, so that large blocks are reused from the main heap. Peak memory is
unchanged; memory freed by the process is returned to the OS later.

These are process-wide settings, so importing :mod:`jwins_jax` does not apply them:
the simulator's entry points do, when they start (``jwins``, i.e. :func:`jwins_jax.cli.main`;
``python -m jwins_jax.reproduce``; ``python -m benchmarks.run``; the Colab notebook), and a
script of its own calls :func:`tune_host_allocator` itself. The arena limit only takes
effect for threads that have not allocated yet, so it must run before the first JAX
computation, which starts JAX's CPU thread pools (importing jax is fine). It is
skipped when the process is set up for an accelerator (``JAX_PLATFORMS`` naming
another platform first, or a CUDA / ROCm / TPU plugin installed), and
``JWINS_MALLOC_TUNING=0`` disables it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_THRESHOLD = 1 << 30
_ACCELERATOR_DISTRIBUTIONS = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu")
_done = False  # whether this process's settings were changed (by tune_host_allocator)


def accelerator_expected() -> bool:
    """Whether JAX in this process will probably run on an accelerator.

    Decided without starting a JAX backend: ``JAX_PLATFORMS`` (first entry other
    than ``cpu``), else whether a CUDA, ROCm or TPU plugin is installed.
    """
    platforms = os.environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip().lower() != "cpu"
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith(_ACCELERATOR_DISTRIBUTIONS):
            return True
    return False


def tune_host_allocator() -> bool:
    """Raises glibc's mmap/trim thresholds and limits it to one arena, once per process.

    Returns:
        Whether the settings are in place (False when disabled, skipped for an
        accelerator, or not on glibc).
    """
    global _done
    if _done:
        return True
    if os.environ.get("JWINS_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    if accelerator_expected():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) == 1 and ok
        ok = libc.mallopt(_M_ARENA_MAX, 1) == 1 and ok
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
