"""Models of the simulator and their flat PyTorch layout (SPEC 7.2, Appendix C).

``get_model(name)`` returns a :class:`ModelSpec`: a flax module plus the table that maps
its params to one flat float32 vector in PyTorch state_dict order and layout. The
simulator keeps every node's model as a row of an (n, N) array and runs
``spec.apply_flat(flat, x)`` under ``jax.vmap``.
"""

from __future__ import annotations

import functools

from jwins_jax.errors import ConfigError
from jwins_jax.models.digits_cnn import DigitsCNN, digits_cnn
from jwins_jax.models.layout import ModelSpec, ParamEntry
from jwins_jax.models.lenet import GNLeNet, gn_lenet

MODELS = ("digits_cnn", "gn_lenet")

_FACTORIES = {"digits_cnn": digits_cnn, "gn_lenet": gn_lenet}


@functools.cache
def get_model(name: str) -> ModelSpec:
    """Returns the spec of a registered model (the same object on every call).

    Args:
        name: one of :data:`MODELS`.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in _FACTORIES:
        raise ConfigError(
            f"model={name!r} is not a known model: allowed are {', '.join(MODELS)}"
        )
    return _FACTORIES[name]()


__all__ = [
    "MODELS",
    "DigitsCNN",
    "GNLeNet",
    "ModelSpec",
    "ParamEntry",
    "get_model",
]
