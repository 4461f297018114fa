"""Sharing strategies and their registry (SPEC 4; DESIGN.md "House style").

``make_sharing(name, n_params, **params)`` validates the parameters against the
strategy's options and builds a :class:`Sharing`; the experiments, the command line
and the tests all go through it.

=========  ===========================================  ==========
name       algorithm                                    SPEC
=========  ===========================================  ==========
full       full sharing, D-PSGD                         4.1
random     random sampling (Bernoulli mask, seed only)  4.3
topk       PartialModel: top-k of the change            4.2
wavelet    wavelet-domain top-k, fixed alpha            4.4
jwins      wavelet top-k, alpha drawn from a list       4.5
choco      CHOCO-SGD with top-k compression             4.7
=========  ===========================================  ==========

Each strategy owns its parameters: its module lists the options it takes
(``PARAMS``, declared once in :data:`~jwins_jax.sharing.base.OPTIONS`) and its
factory's signature holds their defaults. The config and the command line read both
from here (:func:`strategy_params`, :func:`strategy_defaults`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from jwins_jax.errors import ConfigError
from jwins_jax.sharing import choco as _choco
from jwins_jax.sharing import full as _full
from jwins_jax.sharing import partial as _partial
from jwins_jax.sharing import subsampling as _subsampling
from jwins_jax.sharing.base import (
    OPTIONS,
    RoundInputs,
    Sharing,
    Stats,
    message_bytes,
)


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A registered strategy: its factory and the names of the options it takes."""

    name: str
    factory: Callable[..., Sharing]
    params: tuple[str, ...]

    @property
    def defaults(self) -> dict[str, Any]:
        """The defaults of its parameters (from the factory's signature)."""
        sig = inspect.signature(self.factory)
        return {p: sig.parameters[p].default for p in self.params}

    @property
    def traced(self) -> tuple[str, ...]:
        """Its parameters that are traced hyperparameters."""
        return tuple(p for p in self.params if OPTIONS[p].traced)


REGISTRY: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("full", _full.full, _full.PARAMS),
        Strategy("random", _subsampling.random_sampling, _subsampling.PARAMS),
        Strategy("topk", _partial.topk, _partial.TOPK_PARAMS),
        Strategy("wavelet", _partial.wavelet, _partial.WAVELET_PARAMS),
        Strategy("jwins", _partial.jwins, _partial.JWINS_PARAMS),
        Strategy("choco", _choco.choco, _choco.PARAMS),
    )
}
STRATEGIES: tuple[str, ...] = tuple(REGISTRY)


def _strategy(name: str) -> Strategy:
    if name not in REGISTRY:
        raise ConfigError(
            f"sharing={name!r} is unknown; allowed: {', '.join(STRATEGIES)}"
        )
    return REGISTRY[name]


def strategy_params(name: str) -> tuple[str, ...]:
    """The parameter names a strategy takes (besides ``n_params``)."""
    return _strategy(name).params


def strategy_defaults(name: str) -> dict[str, Any]:
    """A strategy's parameters with their defaults."""
    return _strategy(name).defaults


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Checks a strategy's parameters; returns them complete with defaults.

    Raises:
        ConfigError: unknown strategy, unknown parameter or a bad value.
    """
    strategy = _strategy(name)
    for key in params:
        if key not in strategy.params:
            raise ConfigError(
                f"sharing {name!r} has no parameter {key!r}; allowed: "
                + (", ".join(strategy.params) or "none")
            )
    out = strategy.defaults
    for key, value in params.items():
        out[key] = OPTIONS[key].validate(key, value)
    return out


def make_sharing(name: str, n_params: int, **params: Any) -> Sharing:
    """Builds the strategy ``name`` for flat models of ``n_params`` values.

    Raises:
        ConfigError: unknown name, unknown parameter or a bad parameter value.
    """
    full_params = validate_params(name, params)
    return REGISTRY[name].factory(n_params, **full_params)


__all__ = [
    "OPTIONS",
    "REGISTRY",
    "RoundInputs",
    "STRATEGIES",
    "Sharing",
    "Stats",
    "Strategy",
    "make_sharing",
    "message_bytes",
    "strategy_defaults",
    "strategy_params",
    "validate_params",
]
