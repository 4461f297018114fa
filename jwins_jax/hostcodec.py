"""A real float codec measured on the host: lossless fpzip (SPEC 5.4).

The simulator counts 4 bytes per float32 value it sends (SPEC decisions table). The
original system compresses JWINS's values, full shares included, with lossless fpzip
(P. Lindstrom's predictive float coder, ``fpzip.compress(values, precision=0,
order="C")`` on the 1-D float32 array), which makes them about 7 % smaller on
Gaussian-like floats; full sharing's are not compressed (SPEC 5.4, 5.5). This module
measures that codec on the simulator's actual messages, so a run can report its value
bytes both ways. It runs on the host, never inside the jitted round, and only when a
run asks for it (``fpzip_every = K``):

* the runner (:func:`jwins_jax.runner.execute`) runs rounds 0, K, 2K, ... as a
  one-round program that also returns every node's message, the values the
  receivers decode at the entries sent (:attr:`~jwins_jax.sharing.base.Sharing.
  message`), from the same computation as the round (so exactly what was sent);
* :func:`message_bytes` compresses each node's values with the real codec and
  counts the bytes of its output (fpzip's own header included; a complex64 value is
  compressed as its two float32 parts, interleaved);
* :class:`~jwins_jax.results.RunLog` multiplies them by the round's receivers and
  writes the totals next to the counted ones (``fpzip_*`` in metrics.jsonl).

The simulated clock keeps using the counted bytes (4 per float32 value).

fpzip is an optional dependency (the ``fpzip`` extra: ``pip install
'jwins_jax[fpzip]'``); asking for the measurement without it is a one-line
:class:`~jwins_jax.errors.ConfigError`.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from jwins_jax.errors import ConfigError

EXTRA = "fpzip"
"""The optional-dependency group that installs the codec."""
INSTALL = f"pip install 'jwins_jax[{EXTRA}]'"


def fpzip_available() -> bool:
    """Whether the fpzip package can be imported."""
    return importlib.util.find_spec("fpzip") is not None


def require_fpzip(value: int) -> None:
    """Refuses ``fpzip_every = value`` when fpzip is not installed.

    Raises:
        ConfigError: one line naming the option, the extra and how to install it.
    """
    if not fpzip_available():
        raise ConfigError(
            f"fpzip_every={value} needs the fpzip codec, which is not installed: "
            f"{INSTALL} (the '{EXTRA}' extra)"
        )


def fpzip_bytes(values: np.ndarray) -> int:
    """Bytes of one message's values compressed losslessly by fpzip.

    Args:
        values: ``(c,)`` float32 values, or complex64 (compressed as the ``2 c``
            float32 parts, real before imaginary).

    Returns:
        ``len(fpzip.compress(values, precision=0, order="C"))``; 0 for no values
        (nothing is sent).
    """
    import fpzip

    v = np.ascontiguousarray(values)
    if np.iscomplexobj(v):
        v = np.ascontiguousarray(v.astype(np.complex64)).view(np.float32)
    v = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
    if v.size == 0:
        return 0
    return len(fpzip.compress(v, precision=0, order="C"))


def message_bytes(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """fpzip's bytes of every node's message of one round.

    Args:
        values: ``(n, L)`` the messages' values as decoded at the entries sent.
        mask: ``(n, L)`` bool the entries each node sends.

    Returns:
        ``(n,)`` int64 bytes of one copy of each node's message values.
    """
    values, mask = np.asarray(values), np.asarray(mask, bool)
    return np.asarray(
        [fpzip_bytes(values[i][mask[i]]) for i in range(values.shape[0])], np.int64
    )


__all__ = [
    "EXTRA",
    "INSTALL",
    "fpzip_available",
    "fpzip_bytes",
    "message_bytes",
    "require_fpzip",
]
