"""Host allocator tuning for the CPU backend.

XLA's CPU backend allocates every large temporary and output with ``malloc``. With
glibc's defaults, blocks above the mmap threshold are fresh ``mmap`` pages, returned to
the OS on ``free`` and page-faulted in again on the next call: an elementwise op on a
(96, 89,834) float32 stack spends most of its time zero-filling pages (measured here:
36 ms per call before, 4.4 ms after raising the thresholds). Raising the mmap and trim
thresholds keeps such blocks in the heap for reuse. Peak memory is unchanged; memory
freed by the process is returned to the OS later.

Set ``JWINS_MALLOC_TUNING=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30
_done = False


def tune_host_allocator() -> bool:
    """Raises glibc's mmap/trim thresholds once per process; returns whether it did."""
    global _done
    if _done:
        return True
    if os.environ.get("JWINS_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
