"""Models of the simulator and their flat PyTorch layout (SPEC 7.2, Appendix C).

``get_model(name)`` returns a :class:`ModelSpec`: a flax module plus the table that maps
its params to one flat float32 vector in PyTorch state_dict order and layout. The
simulator keeps every node's model as a row of an (n, N) array and runs
``spec.apply_flat(flat, x)`` under ``jax.vmap``.

==================  ==========  ===============  ======  ==================  ========
name                N           input            dtype   output              SPEC
==================  ==========  ===============  ======  ==================  ========
digits_cnn          6,090       (8, 8, 1)        f32     (B, 10) logits      --
gn_lenet            89,834      (32, 32, 3)      f32     (B, 10) logits      CIFAR-10
femnist_cnn         1,690,046   (28, 28, 1)      f32     (B, 62) logits      FEMNIST
celeba_cnn          30,242      (84, 84, 3)      f32     (B, 2) logits       CelebA
shakespeare_lstm    2,683,708   (80,)            i32     (B, 92) logits      Shakesp.
movielens_mf        206,680     (2,)             i32     (B,) ratings        MovieLens
==================  ==========  ===============  ======  ==================  ========

:data:`DEFAULT_MODEL` names the model of every dataset of :mod:`jwins_jax.data`.
"""

from __future__ import annotations

import functools

from jwins_jax.errors import ConfigError
from jwins_jax.models.celeba_cnn import CelebaCNN, celeba_cnn
from jwins_jax.models.digits_cnn import DigitsCNN, digits_cnn
from jwins_jax.models.femnist_cnn import FemnistCNN, femnist_cnn
from jwins_jax.models.layout import ModelSpec, ParamEntry
from jwins_jax.models.lenet import GNLeNet, gn_lenet
from jwins_jax.models.movielens_mf import MatrixFactorization, movielens_mf
from jwins_jax.models.shakespeare_lstm import ShakespeareLSTM, shakespeare_lstm

_FACTORIES = {
    "digits_cnn": digits_cnn,
    "gn_lenet": gn_lenet,
    "femnist_cnn": femnist_cnn,
    "celeba_cnn": celeba_cnn,
    "shakespeare_lstm": shakespeare_lstm,
    "movielens_mf": movielens_mf,
}
MODELS = tuple(_FACTORIES)

# The model each dataset is run with by default (SPEC 7.2 table, "model" row).
DEFAULT_MODEL = {
    "digits": "digits_cnn",
    "synthetic_digits": "digits_cnn",
    "synthetic_cifar": "gn_lenet",
    "cifar10": "gn_lenet",
    "femnist": "femnist_cnn",
    "synthetic_femnist": "femnist_cnn",
    "celeba": "celeba_cnn",
    "synthetic_celeba": "celeba_cnn",
    "shakespeare": "shakespeare_lstm",
    "synthetic_shakespeare": "shakespeare_lstm",
    "movielens": "movielens_mf",
    "synthetic_movielens": "movielens_mf",
}


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
    "DEFAULT_MODEL",
    "MODELS",
    "CelebaCNN",
    "DigitsCNN",
    "FemnistCNN",
    "GNLeNet",
    "MatrixFactorization",
    "ModelSpec",
    "ParamEntry",
    "ShakespeareLSTM",
    "get_model",
]
