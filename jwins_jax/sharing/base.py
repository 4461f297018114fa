"""The strategy interface shared by every sharing algorithm (DESIGN.md "House style").

A strategy is a factory returning a :class:`Sharing`: pure functions over the stacked
node axis, in the spirit of optax's ``GradientTransformation``:

* ``init(x0) -> state`` with ``x0`` the ``(n, N)`` float32 initial models;
* ``step(state, x, key, table, hp, inputs=None) -> (x_new, state, stats)`` runs one
  communication round (SPEC 1.3 steps 5-8) on the models after local training.
  ``inputs`` is an optional :class:`RoundInputs`: per-round inputs from outside the
  strategy (who is online, forced alphas or masks). Every strategy takes the same
  argument and reads only the fields it uses;
* ``hparams(**values) -> hp`` turns the strategy's traced hyperparameters (its
  options marked ``traced``, and only those) into the pytree of arrays ``step``
  takes. It runs on the host (e.g. ``k = round(alpha * L)`` with Python rounding), so
  a sweep builds one ``hp`` per config, stacks them and ``vmap``s ``step`` over them.

``stats`` is a dict of ``(n,)`` arrays, the same keys for every strategy:

* ``sent`` (int32): number of values in node i's message;
* ``value_bytes`` (int32): bytes of those values in one message (4 per float32
  value; a transform with complex values or a lossy value codec changes it);
* ``meta_bytes`` (int32): index / seed bytes of one message of node i;
* ``receivers`` (int32): how many neighbours received node i's message;
* ``full`` (bool): whether node i shared its whole model (or all coefficients).

Bytes are multiplied out on the host in 64-bit integers (:func:`message_bytes`), so
the counters cannot overflow however large the model and the graph. Statistics
without ``value_bytes`` (written by hand, or by a strategy predating it) count 4
bytes per value.

The options of all strategies are declared here once; each strategy module lists the
ones it takes (``PARAMS``) and its factory's signature holds its defaults.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jwins_jax import accounting
from jwins_jax.options import Option, int_range, positive, unit_interval, unit_list
from jwins_jax.topology import NeighborTable

Stats = dict[str, jax.Array]

ACCUMULATION_MODES = ("none", "accumulate", "legacy")
SELECTIONS = ("change", "magnitude")
WAVELET_BACKENDS = ("auto", "polyphase", "jaxwt")
TOPK_METHODS = ("auto", "bisect", "sort", "top_k")
# float_precision: K above 2**24 - 1 would exceed float32's exact integers
MAX_LEVELS = 2**24 - 1

# Every option of every strategy (SPEC 4). Strategies refer to these objects.
OPTIONS: dict[str, Option] = {
    "alpha": Option(
        "fraction of the model sent per round (random, topk, wavelet, fft, choco), in "
        "(0, 1]",
        float,
        unit_interval,
        traced=True,
    ),
    "alpha_list": Option(
        "JWINS: fractions drawn per node and round, comma separated, each in (0, 1]",
        tuple,
        unit_list,
        traced=True,
    ),
    "metadata_cap": Option(
        "alpha >= cap sends the whole model, without indices (random: alpha > cap)",
        float,
        unit_interval,
        traced=True,
    ),
    "gamma": Option("CHOCO-SGD consensus step size, > 0", float, positive, traced=True),
    "wavelet": Option("PyWavelets discrete wavelet (wavelet, jwins)", str),
    "level": Option(
        "wavelet decomposition level (wavelet, jwins)", int, int_range(1, 64)
    ),
    "accumulation": Option(
        "ranked change: none, accumulate (since the last send) or legacy (SPEC 4.2)",
        str,
        choices=ACCUMULATION_MODES,
    ),
    "selection": Option(
        "rank by the accumulated change or by the coefficients' magnitude",
        str,
        choices=SELECTIONS,
    ),
    "wavelet_backend": Option(
        "wavelet kernel: auto, polyphase or jaxwt", str, choices=WAVELET_BACKENDS
    ),
    "topk_method": Option(
        "per-node top-k kernel: auto, bisect, sort or top_k", str, choices=TOPK_METHODS
    ),
    "float_precision": Option(
        "value codec: quantize the values sent to integers in [-K, K], "
        "K = float_precision (SPEC 5.4; 32767: 16 bits, 127: 8 bits; lossy); 0: raw "
        "float32",
        int,
        int_range(0, MAX_LEVELS),
    ),
}


@struct.dataclass
class RoundInputs:
    """Optional inputs of one round, from outside the strategy.

    A field left ``None`` is not given; whether a field is given is part of the
    pytree's structure, so it is static for ``jit``. A strategy reads the fields it
    uses and ignores the others.
    """

    # (n,) bool nodes taking part. Given when the round draws faults
    # (jwins_jax.faults): the table is then the surviving graph, and a strategy whose
    # state mirrors its neighbours' (CHOCO-SGD) must not assume every copy arrived.
    online: jax.Array | None = None
    # (n,) float32 each node's fraction for this round instead of the drawn or
    # configured one (JWINS, wavelet, top-k).
    alphas: jax.Array | None = None
    # (n, L) bool each node's selection for this round instead of the ranked or
    # random one (random sampling: L = N; partial strategies: L = transform length).
    mask: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class Cost:
    """A strategy's own arithmetic per node and round, for the simulated clock.

    FLOPs counted as the arithmetic of a straightforward implementation (2 per
    multiply-add, 1 per other operation on a value, ``L log2 L`` comparisons to rank
    L scores), not what a particular kernel does; :mod:`jwins_jax.simtime` turns
    them into seconds with each node's speed.

    Attributes:
        pre: before sending: transforms, scoring, selection.
        post: after receiving, independent of what arrived: inverse transform,
            state updates.
        per_value: per value received: the fill and the weighted add.
    """

    pre: float = 0.0
    post: float = 0.0
    per_value: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        """The cost of doing both: each part added."""
        return Cost(
            self.pre + other.pre,
            self.post + other.post,
            self.per_value + other.per_value,
        )


def ranking_flops(length: int) -> float:
    """Comparisons to rank ``length`` scores (a sort): ``L ceil(log2 L)``."""
    return float(length) * max(1, math.ceil(math.log2(max(length, 2))))


@dataclasses.dataclass(frozen=True)
class Sharing:
    """A sharing strategy as pure functions.

    Attributes:
        name: registry name of the strategy.
        n_params: N, the flat model length it was built for.
        init: ``x0 (n, N) -> state``.
        step: ``(state, x (n, N), key, table, hp, inputs=None) -> (x_new, state,
            stats)``.
        hparams: ``(**traced values) -> hp`` on the host.
        params: the resolved constructor parameters (for logs and results).
        info: facts the strategy reports about itself (e.g. the transform length).
        options: the options its parameters are declared by (name -> Option).
        cost: its own arithmetic per node and round (the simulated clock's model).
        blocks: the public blocks it is composed of
            (:class:`jwins_jax.sharing.blocks.Blocks`), or None for a strategy
            written by hand; the kernel benchmark times them.
        message: ``(state, x (n, N), key, hp, inputs=None) -> (values (n, L),
            mask (n, L) bool)``: what each node's message of the round carries
            (``step``'s selection and encoding for the same arguments: the values
            as the receivers decode them at the masked entries), or None when the
            strategy does not say. The host measures real codecs on it
            (``fpzip_every``, :mod:`jwins_jax.hostcodec`).
    """

    name: str
    n_params: int
    init: Callable[[jax.Array], Any]
    step: Callable[..., tuple[jax.Array, Any, Stats]]
    hparams: Callable[..., Any]
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    options: Mapping[str, Option] = dataclasses.field(default_factory=lambda: OPTIONS)
    cost: Cost = Cost()
    blocks: Any = None
    message: Callable[..., tuple[jax.Array, jax.Array]] | None = None

    @property
    def traced(self) -> tuple[str, ...]:
        """The parameters ``hparams`` takes: those whose option is traced."""
        return tuple(p for p in self.params if self.options[p].traced)

    @property
    def hp(self) -> Any:
        """The hyperparameters this strategy was built with, as ``step`` takes them."""
        return self.hparams(**{k: self.params[k] for k in self.traced})


def make_stats(
    table: NeighborTable,
    sent: jax.Array,
    meta_per_message: jax.Array,
    full: jax.Array,
    value_bytes: jax.Array | None = None,
) -> Stats:
    """Per-node message statistics of one round.

    Args:
        table: this round's neighbour table; ``table.degree`` is the number of
            receivers of each node's message (SPEC 1.3 step 6: one copy per receiver).
        sent: ``(n,)`` number of values in each node's message.
        meta_per_message: ``(n,)`` metadata bytes of one message.
        full: ``(n,)`` bool, whether the node shared everything.
        value_bytes: ``(n,)`` bytes of the values of one message; None: 4 per value
            (float32).
    """
    if value_bytes is None:
        value_bytes = accounting.FLOAT_BYTES * sent
    return {
        "sent": sent.astype(jnp.int32),
        "value_bytes": jnp.asarray(value_bytes).astype(jnp.int32),
        "meta_bytes": meta_per_message.astype(jnp.int32),
        "receivers": table.degree.astype(jnp.int32),
        "full": jnp.asarray(full, dtype=bool),
    }


def message_bytes(stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Value and metadata bytes each node sent, over all its receivers, in int64.

    Args:
        stats: ``sent`` (or ``value_bytes``), ``meta_bytes`` and ``receivers`` arrays
            of any shape (e.g. ``(rounds, n)``), on the host or device.

    Returns:
        ``(value_bytes, meta_bytes)`` int64 numpy arrays of that shape.
    """
    receivers = np.asarray(stats["receivers"], np.int64)
    if "value_bytes" in stats:
        per_message = np.asarray(stats["value_bytes"], np.int64)
    else:
        per_message = accounting.FLOAT_BYTES * np.asarray(stats["sent"], np.int64)
    values = per_message * receivers
    return values, np.asarray(stats["meta_bytes"], np.int64) * receivers


def as_stack(x: jax.Array) -> jax.Array:
    """Checks and converts a stacked model matrix to ``(n, N)`` float32."""
    x = jnp.asarray(x, dtype=jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"expected stacked flat models of shape (n, N), got {x.shape}")
    return x


__all__ = [
    "ACCUMULATION_MODES",
    "Cost",
    "OPTIONS",
    "RoundInputs",
    "SELECTIONS",
    "Sharing",
    "Stats",
    "as_stack",
    "make_stats",
    "message_bytes",
    "ranking_flops",
]
