"""Ctrl-C and SIGTERM as requests to stop at a safe point (issue 11).

This module imports nothing heavy, so the command line installs the handler before
it imports JAX: a signal that arrives during an import or a compilation is recorded
instead of being raised inside library code (where it could be swallowed or turned
into another error).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any

from jwins_jax.errors import Terminated


class Stopped(Terminated):
    """A run stopped on request (its state saved when it had one)."""


class StopRequest:
    """Turns Ctrl-C and SIGTERM into a request to stop at the next safe point.

    While active (:func:`stop_on_signals`), the first SIGINT or SIGTERM only sets
    :attr:`requested`; the program stops at the next safe point: between build
    stages, or after the rounds in flight, when the run saves a checkpoint and ends as
    ``interrupted``. A second signal stops at once. Handling the signal this way
    also keeps it out of library code (an import, a compilation) that would turn it
    into another error or swallow it.
    """

    def __init__(self, progress: Any = None):
        self.requested: str | None = None
        self.progress = progress
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):  # noqa: ARG002
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        if self.requested is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise Terminated(f"terminated by a second signal ({name})")
        self.requested = name
        text = (
            f"{name}: stopping at the next safe point, after the rounds in flight "
            "(press Ctrl-C again to stop now)"
        )
        if self.progress is not None:
            self.progress.stage(text)
        else:
            sys.stderr.write(f"\njwins: {text}\n")
            sys.stderr.flush()

    def check(self, where: str = "") -> None:
        """Raises :class:`Stopped` if a stop was requested."""
        if self.requested is not None:
            raise Stopped(f"stopped by {self.requested}{where}")

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


_ACTIVE: list[StopRequest] = []


@contextlib.contextmanager
def stop_on_signals(progress: Any = None):
    """Handles Ctrl-C / SIGTERM as stop requests for the enclosed code (re-entrant:
    an inner use shares the outer request)."""
    if _ACTIVE:
        if progress is not None and _ACTIVE[-1].progress is None:
            _ACTIVE[-1].progress = progress
        yield _ACTIVE[-1]
        return
    stop = StopRequest(progress)
    stop.install()
    _ACTIVE.append(stop)
    try:
        yield stop
    finally:
        _ACTIVE.pop()
        stop.uninstall()
