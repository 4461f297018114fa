"""Sharing strategies and their registry (SPEC 4; DESIGN.md "House style").

``make_sharing(name, n_params, **params)`` builds a :class:`Sharing` by name; the
experiments, the CLI and the tests all go through it.

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
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from jwins_jax.errors import ConfigError
from jwins_jax.sharing.base import Sharing, Stats
from jwins_jax.sharing.choco import choco
from jwins_jax.sharing.full import full
from jwins_jax.sharing.partial import jwins, topk, wavelet
from jwins_jax.sharing.subsampling import random_sampling

REGISTRY: dict[str, Callable[..., Sharing]] = {
    "full": full,
    "random": random_sampling,
    "topk": topk,
    "wavelet": wavelet,
    "jwins": jwins,
    "choco": choco,
}
STRATEGIES: tuple[str, ...] = tuple(REGISTRY)


def strategy_params(name: str) -> tuple[str, ...]:
    """The parameter names a strategy's factory accepts (besides ``n_params``)."""
    sig = inspect.signature(REGISTRY[name])
    return tuple(p for p in sig.parameters if p != "n_params")


def make_sharing(name: str, n_params: int, **params: Any) -> Sharing:
    """Builds the strategy ``name`` for flat models of ``n_params`` values.

    Raises:
        ConfigError: unknown name, unknown parameter or a bad parameter value.
    """
    if name not in REGISTRY:
        raise ConfigError(
            f"sharing={name!r} is unknown; allowed: {', '.join(STRATEGIES)}"
        )
    allowed = strategy_params(name)
    for key in params:
        if key not in allowed:
            raise ConfigError(
                f"sharing {name!r} has no parameter {key!r}; allowed: "
                + (", ".join(allowed) or "none")
            )
    return REGISTRY[name](n_params, **params)


def sharing_from_config(config, n_params: int) -> Sharing:
    """Builds the strategy of a resolved :class:`~jwins_jax.config.Config`."""
    params = {k: getattr(config, k) for k in strategy_params(config.sharing)}
    return make_sharing(config.sharing, n_params, **params)


__all__ = [
    "REGISTRY",
    "STRATEGIES",
    "Sharing",
    "Stats",
    "make_sharing",
    "sharing_from_config",
    "strategy_params",
]
