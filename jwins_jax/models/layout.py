"""Flat parameter vectors in PyTorch state_dict order and layout (SPEC Appendix C, 7.2).

Every node's model is one float32 vector of length N: the tensors of the PyTorch
``state_dict`` in registration order, each flattened row-major in its PyTorch layout
(conv weight [out, in, kh, kw], linear weight [out, in], embedding [num, dim], LSTM
weights [4 * hidden, in] with the gate row blocks i, f, g, o). The wavelet transform
mixes neighbouring flat positions, so this layout is part of the algorithm. A
:class:`ModelSpec` pairs a flax module with its :class:`ParamEntry` table and converts
between the flax params pytree and the flat vector; the conversions are reshapes and
axis permutations only, so the round trip is bit-exact.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = dict[str, Any]

# Axis permutations taking a flax tensor to its PyTorch layout (torch = flax.transpose).
# The modules of this package store their weights in PyTorch layout already (see
# layers.py), so these are identities; a module with e.g. an HWIO kernel would use
# (3, 2, 0, 1) here.
CONV_PERM = (0, 1, 2, 3)  # OIHW -> OIHW
LINEAR_PERM = (0, 1)  # (out, in) -> (out, in)
VECTOR_PERM = (0,)


@dataclasses.dataclass(frozen=True)
class ParamEntry:
    """One tensor of the flat vector.

    Attributes:
        torch_name: state_dict key, e.g. ``"conv1.weight"``.
        torch_shape: PyTorch shape, e.g. (32, 3, 5, 5).
        offset: start of the tensor in the flat vector.
        flax_path: path in the flax params dict, e.g. ("conv1", "kernel").
        perm: axes such that ``torch_tensor = flax_tensor.transpose(perm)``.
        init: initial distribution (SPEC 7.2): ``"uniform"`` (U(-bound, bound), see
            :attr:`bound`), ``"normal"`` (N(0, std^2), see :attr:`std`), ``"ones"``
            or ``"zeros"``.
        fan_in: fan-in of the layer owning the tensor; a ``"uniform"`` tensor
            without ``scale`` uses PyTorch's default bound 1/sqrt(fan_in).
        scale: explicit bound of ``"uniform"`` or standard deviation of
            ``"normal"``; 0 means the default (1/sqrt(fan_in), resp. 1).
        padding_idx: an embedding row initialised to zero (PyTorch's
            ``nn.Embedding(padding_idx=...)``); None for none.
    """

    torch_name: str
    torch_shape: tuple[int, ...]
    offset: int
    flax_path: tuple[str, ...]
    perm: tuple[int, ...]
    init: str
    fan_in: int = 0
    scale: float = 0.0
    padding_idx: int | None = None

    @property
    def size(self) -> int:
        """Number of scalars of the tensor."""
        return math.prod(self.torch_shape)

    @property
    def end(self) -> int:
        """One past the last flat position of the tensor."""
        return self.offset + self.size

    @property
    def flax_shape(self) -> tuple[int, ...]:
        """Shape of the tensor in the flax params dict."""
        shape = [0] * len(self.perm)
        for torch_axis, flax_axis in enumerate(self.perm):
            shape[flax_axis] = self.torch_shape[torch_axis]
        return tuple(shape)

    @property
    def inverse_perm(self) -> tuple[int, ...]:
        """Axes such that ``flax_tensor = torch_tensor.transpose(inverse_perm)``."""
        inv = [0] * len(self.perm)
        for torch_axis, flax_axis in enumerate(self.perm):
            inv[flax_axis] = torch_axis
        return tuple(inv)

    @property
    def bound(self) -> float:
        """Half-width of the uniform initialisation: ``scale``, else 1/sqrt(fan_in)."""
        if self.scale:
            return self.scale
        return 1.0 / math.sqrt(self.fan_in) if self.fan_in else 0.0

    @property
    def std(self) -> float:
        """Standard deviation of the normal initialisation: ``scale``, else 1."""
        return self.scale if self.scale else 1.0


def conv_entries(
    name: str, in_ch: int, out_ch: int, kernel: tuple[int, int]
) -> list[ParamEntry]:
    """Entries of a conv layer (``name.weight`` O-I-H-W, ``name.bias``).

    Offsets are 0 here; :func:`assign_offsets` lays the entries out.
    """
    kh, kw = kernel
    fan_in = in_ch * kh * kw
    return [
        ParamEntry(
            f"{name}.weight",
            (out_ch, in_ch, kh, kw),
            0,
            (name, "kernel"),
            CONV_PERM,
            "uniform",
            fan_in,
        ),
        ParamEntry(
            f"{name}.bias", (out_ch,), 0, (name, "bias"), VECTOR_PERM, "uniform", fan_in
        ),
    ]


def linear_entries(name: str, in_features: int, out_features: int) -> list[ParamEntry]:
    """Entries of a linear layer (``name.weight`` [out, in], ``name.bias``)."""
    return [
        ParamEntry(
            f"{name}.weight",
            (out_features, in_features),
            0,
            (name, "kernel"),
            LINEAR_PERM,
            "uniform",
            in_features,
        ),
        ParamEntry(
            f"{name}.bias",
            (out_features,),
            0,
            (name, "bias"),
            VECTOR_PERM,
            "uniform",
            in_features,
        ),
    ]


def group_norm_entries(name: str, channels: int) -> list[ParamEntry]:
    """Entries of an affine GroupNorm (``name.weight`` ones, ``name.bias`` zeros)."""
    return [
        ParamEntry(
            f"{name}.weight", (channels,), 0, (name, "scale"), VECTOR_PERM, "ones"
        ),
        ParamEntry(
            f"{name}.bias", (channels,), 0, (name, "bias"), VECTOR_PERM, "zeros"
        ),
    ]


def embedding_entries(
    name: str,
    num_embeddings: int,
    dim: int,
    init: str = "normal",
    scale: float = 0.0,
    padding_idx: int | None = None,
) -> list[ParamEntry]:
    """Entries of an embedding table (``name.weight`` [num_embeddings, dim]).

    Args:
        name: state_dict prefix, e.g. ``"embedding"``.
        num_embeddings: number of rows (vocabulary, users or items).
        dim: embedding width.
        init: ``"normal"`` (PyTorch's default N(0, 1)) or ``"uniform"``.
        scale: standard deviation or bound (0: N(0, 1)); MovieLens MF uses
            ``init="uniform", scale=0.05``.
        padding_idx: the row initialised to zero (Reddit: 0), or None.
    """
    return [
        ParamEntry(
            f"{name}.weight",
            (num_embeddings, dim),
            0,
            (name, "weight"),
            LINEAR_PERM,
            init,
            0,
            scale,
            padding_idx,
        )
    ]


def lstm_entries(
    name: str, layer: int, in_features: int, hidden: int
) -> list[ParamEntry]:
    """Entries of one layer of a PyTorch ``nn.LSTM`` (SPEC 7.2, Appendix C).

    ``{name}.weight_ih_l{layer}`` (4H, in), ``weight_hh_l{layer}`` (4H, H),
    ``bias_ih_l{layer}`` (4H,) and ``bias_hh_l{layer}`` (4H,), all
    U(+-1/sqrt(H)); rows are the gate blocks i, f, g, o. The flax params live in
    the submodule ``f"{name}_l{layer}"``.
    """
    four_h = 4 * hidden
    shapes = {
        "weight_ih": (four_h, in_features),
        "weight_hh": (four_h, hidden),
        "bias_ih": (four_h,),
        "bias_hh": (four_h,),
    }
    return [
        ParamEntry(
            f"{name}.{key}_l{layer}",
            shape,
            0,
            (f"{name}_l{layer}", key),
            LINEAR_PERM if len(shape) == 2 else VECTOR_PERM,
            "uniform",
            hidden,
        )
        for key, shape in shapes.items()
    ]


def assign_offsets(entries: list[ParamEntry]) -> tuple[ParamEntry, ...]:
    """Lays the entries out back to back in the given (registration) order."""
    out = []
    offset = 0
    for e in entries:
        out.append(dataclasses.replace(e, offset=offset))
        offset += e.size
    return tuple(out)


def _inner(params: Params) -> Params:
    """Accepts either the flax variables dict ``{"params": ...}`` or its inside."""
    if isinstance(params, Mapping) and set(params) == {"params"}:
        return params["params"]
    return params


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A flax model together with its flat PyTorch layout.

    Attributes:
        name: registry name.
        module: the flax module; ``module.apply(variables, x)`` maps (B,
            *input_shape) inputs to (B, num_classes) logits, or to (B,) predictions
            for a model with ``num_classes == 0`` (a rating model).
        input_shape: shape of one input: (H, W, C) for images (NHWC), (T,) for a
            token sequence, (2,) for a (user, item) pair.
        num_classes: number of logits; 0 for a model that outputs one value per
            sample (MovieLens MF).
        layout: the tensors in state_dict order with their offsets.
        num_params: N, the length of the flat vector.
        input_dtype: dtype of the inputs, ``"float32"`` (images) or ``"int32"``
            (token or id sequences).
        forward_flops: the model's forward arithmetic per sample, 2 per
            multiply-add of its convolutions, linear layers and recurrent matmuls
            (normalisation, activations, pooling and look-ups left out); the
            simulated clock charges 3x this per trained sample.
        eval_forward: optional forward-only function ``(layout, flats, x) ->
            logits`` of a group of models on shared inputs, ``flats (g, N)``, ``x
            (B, H, W, C)`` -> ``(g, B, num_classes)``, used by evaluation
            (:meth:`apply_flat_eval`, :meth:`apply_group_eval`); it must compute
            what ``module`` computes, in whichever formulation is fastest without
            gradients (e.g. one convolution for the whole group where the input is
            shared). None: evaluation uses :meth:`apply_flat`.
    """

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    layout: tuple[ParamEntry, ...]
    num_params: int
    input_dtype: str = "float32"
    eval_forward: (
        Callable[[tuple[ParamEntry, ...], jax.Array, jax.Array], jax.Array] | None
    ) = None
    forward_flops: int = 0

    def __post_init__(self) -> None:
        end = 0
        for e in self.layout:
            if e.offset != end:
                raise ValueError(f"{self.name}: {e.torch_name} is not contiguous")
            end = e.end
        if end != self.num_params:
            raise ValueError(f"{self.name}: layout covers {end} of {self.num_params}")

    def entry(self, torch_name: str) -> ParamEntry:
        """Returns the entry of a state_dict key such as ``"fc1.weight"``."""
        for e in self.layout:
            if e.torch_name == torch_name:
                return e
        raise KeyError(torch_name)

    def flatten(self, params: Params) -> jax.Array:
        """Flax params to flat vectors in PyTorch order and layout.

        Args:
            params: flax params pytree (or the variables dict ``{"params": ...}``);
                every leaf may carry the same leading batch axes, e.g. (n, *shape).

        Returns:
            (..., N) float32.
        """
        inner = _inner(params)
        parts = []
        batch: tuple[int, ...] | None = None
        for e in self.layout:
            leaf = inner
            for key in e.flax_path:
                leaf = leaf[key]
            leaf = jnp.asarray(leaf, jnp.float32)
            nb = leaf.ndim - len(e.perm)
            if leaf.shape[nb:] != e.flax_shape:
                raise ValueError(
                    f"{self.name}: {'/'.join(e.flax_path)} has shape "
                    f"{leaf.shape[nb:]}, expected {e.flax_shape}"
                )
            if batch is None:
                batch = leaf.shape[:nb]
            elif leaf.shape[:nb] != batch:
                raise ValueError(
                    f"{self.name}: {'/'.join(e.flax_path)} has leading axes "
                    f"{leaf.shape[:nb]}, other tensors have {batch}"
                )
            axes = tuple(range(nb)) + tuple(nb + p for p in e.perm)
            parts.append(jnp.transpose(leaf, axes).reshape(*leaf.shape[:nb], e.size))
        return jnp.concatenate(parts, axis=-1)

    def unflatten(self, flat: jax.Array) -> Params:
        """Flat vectors to the flax variables dict; the exact inverse of flatten.

        Args:
            flat: (..., N) flat vectors in PyTorch order and layout.

        Returns:
            ``{"params": {...}}`` with leaves of shape (..., *flax_shape), ready for
            ``module.apply``.
        """
        flat = jnp.asarray(flat)
        if flat.shape[-1] != self.num_params:
            raise ValueError(
                f"{self.name}: flat vector has length {flat.shape[-1]}, "
                f"expected {self.num_params}"
            )
        batch = flat.shape[:-1]
        nb = len(batch)
        inner: Params = {}
        for e in self.layout:
            t = flat[..., e.offset : e.end].reshape(*batch, *e.torch_shape)
            axes = tuple(range(nb)) + tuple(nb + p for p in e.inverse_perm)
            node = inner
            for key in e.flax_path[:-1]:
                node = node.setdefault(key, {})
            node[e.flax_path[-1]] = jnp.transpose(t, axes)
        return {"params": inner}

    def init_flat(self, key: jax.Array) -> jax.Array:
        """PyTorch-default initial model (SPEC 7.2) as one flat vector.

        Conv and linear weights and biases are U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
        fan_in = in * kh * kw; GroupNorm weights are 1 and biases 0; embeddings are
        N(0, 1) (MovieLens MF: U(-0.05, 0.05)) with an embedding's padding row
        zero (Reddit); LSTM weights and biases are U(-1/sqrt(hidden),
        1/sqrt(hidden)).

        Args:
            key: PRNG key; the same key gives the same vector.

        Returns:
            (N,) float32.
        """
        return _init_flat(self, key)

    def apply_flat(self, flat: jax.Array, x: jax.Array) -> jax.Array:
        """Runs the model from its flat vector.

        Args:
            flat: (N,) one node's flat vector (vmap for several nodes).
            x: (B, *input_shape) inputs of dtype ``input_dtype``.

        Returns:
            (B, num_classes) logits, or (B,) predictions when ``num_classes == 0``.
        """
        return self.module.apply(self.unflatten(flat), x)

    def apply_flat_eval(self, flat: jax.Array, x: jax.Array) -> jax.Array:
        """Forward pass for evaluation: same logits as :meth:`apply_flat`.

        Uses ``eval_forward`` where the model has one (a formulation chosen for
        forward-only speed, not differentiated), else :meth:`apply_flat`.

        Args:
            flat: (N,) one node's flat vector.
            x: (B, H, W, C) inputs.

        Returns:
            (B, num_classes) logits.
        """
        if self.eval_forward is None:
            return self.apply_flat(flat, x)
        return self.eval_forward(self.layout, flat[None], x)[0]

    def apply_group_eval(self, flats: jax.Array, x: jax.Array) -> jax.Array:
        """Forward pass of a group of models on the same inputs, for evaluation.

        Args:
            flats: (g, N) flat vectors.
            x: (B, H, W, C) inputs shared by the group.

        Returns:
            (g, B, num_classes) logits, as :meth:`apply_flat` of each model.
        """
        if self.eval_forward is None:
            return jax.vmap(self.apply_flat, in_axes=(0, None))(flats, x)
        return self.eval_forward(self.layout, flats, x)


@functools.partial(jax.jit, static_argnums=0)
def _init_flat(spec: ModelSpec, key: jax.Array) -> jax.Array:
    """Jitted body of :meth:`ModelSpec.init_flat` (one compile per model)."""
    keys = jax.random.split(key, len(spec.layout))
    parts = []
    for k, e in zip(keys, spec.layout, strict=True):
        if e.init == "uniform":
            parts.append(
                jax.random.uniform(k, (e.size,), jnp.float32, -e.bound, e.bound)
            )
        elif e.init == "normal":
            parts.append(e.std * jax.random.normal(k, (e.size,), jnp.float32))
        elif e.init == "ones":
            parts.append(jnp.ones((e.size,), jnp.float32))
        else:
            parts.append(jnp.zeros((e.size,), jnp.float32))
        if e.padding_idx is not None:
            rows = parts[-1].reshape(e.torch_shape)
            parts[-1] = rows.at[e.padding_idx].set(0.0).reshape(-1)
    return jnp.concatenate(parts)


def conv_flops(pixels: int, in_channels: int, out_channels: int, taps: int) -> int:
    """Forward FLOPs of a convolution: 2 x output pixels x in x out x kernel taps."""
    return 2 * pixels * in_channels * out_channels * taps


def dense_flops(in_features: int, out_features: int) -> int:
    """Forward FLOPs of a matrix-vector product: 2 x in x out."""
    return 2 * in_features * out_features


def make_spec(
    name: str,
    module: nn.Module,
    input_shape: tuple[int, ...],
    num_classes: int,
    entries: list[ParamEntry],
    input_dtype: str = "float32",
    eval_forward: (
        Callable[[tuple[ParamEntry, ...], jax.Array, jax.Array], jax.Array] | None
    ) = None,
    *,
    forward_flops: int,
) -> ModelSpec:
    """Builds a :class:`ModelSpec`, checking the layout against the module's params.

    Args:
        name: registry name.
        module: flax module taking (B, *input_shape) inputs.
        input_shape: shape of one input, e.g. (H, W, C) or (T,).
        num_classes: number of logits (0 for a one-value-per-sample model).
        entries: the tensors in state_dict (registration) order, offsets ignored.
        input_dtype: ``"float32"`` or ``"int32"``.
        eval_forward: optional forward-only formulation for evaluation (see
            :class:`ModelSpec`).
        forward_flops: forward FLOPs per sample (see :class:`ModelSpec`).

    Returns:
        The spec with offsets assigned back to back.

    Raises:
        ValueError: if the module's params do not match the entries one to one.
    """
    layout = assign_offsets(entries)
    num_params = sum(e.size for e in layout)
    if input_dtype not in ("float32", "int32"):
        raise ValueError(f"{name}: input_dtype {input_dtype!r} is not float32/int32")
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.dtype(input_dtype))
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
    flat_shapes = {
        tuple(k.key for k in path): leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]
    }
    expected = {e.flax_path: e.flax_shape for e in layout}
    if flat_shapes != expected:
        raise ValueError(f"{name}: module params {flat_shapes} != layout {expected}")
    return ModelSpec(
        name,
        module,
        tuple(input_shape),
        num_classes,
        layout,
        num_params,
        input_dtype,
        eval_forward,
        int(forward_flops),
    )
