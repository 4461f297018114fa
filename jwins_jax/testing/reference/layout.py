"""A model as plain data: what the per-node references need to know about it.

The ``state_dict`` keys and shapes in the flat order of SPEC Appendix C, the input
shape and kind and the number of classes; JSON-able, so a baseline process receives
it as text. Imports NumPy only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ModelLayout:
    """A model as plain data.

    Attributes:
        name: the model's name (the PyTorch twins are registered by it).
        layout: ``(state_dict key, shape)`` of every tensor, in flat-vector order.
        input_shape: one input's shape: (H, W, C) images, (T,) tokens, (2,) pairs.
        integer_inputs: inputs are ids (tokens, ``[user, item]``), not values.
        num_classes: classes of the output; 0 for a rating model.
    """

    name: str
    layout: tuple[tuple[str, tuple[int, ...]], ...]
    input_shape: tuple[int, ...]
    integer_inputs: bool
    num_classes: int

    @classmethod
    def of(cls, spec: Any) -> ModelLayout:
        """From an object with ``name``, ``layout`` (entries with ``torch_name`` and
        ``torch_shape``), ``input_shape``, ``input_dtype`` and ``num_classes``."""
        return cls(
            name=spec.name,
            layout=tuple((e.torch_name, tuple(e.torch_shape)) for e in spec.layout),
            input_shape=tuple(spec.input_shape),
            integer_inputs=np.issubdtype(np.dtype(spec.input_dtype), np.integer),
            num_classes=int(spec.num_classes),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelLayout:
        """Inverse of ``dataclasses.asdict`` (e.g. after a JSON round trip)."""
        layout = tuple((k, tuple(s)) for k, s in d["layout"])
        return cls(**{**d, "layout": layout, "input_shape": tuple(d["input_shape"])})

    @property
    def rating(self) -> bool:
        return self.num_classes == 0

    def shape(self, key: str) -> tuple[int, ...]:
        return dict(self.layout)[key]
