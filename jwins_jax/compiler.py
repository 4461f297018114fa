"""XLA compiler options for the simulator's jitted programs.

On the CPU backend, XLA hands matrix products to YNNPACK and, by default, also fuses
neighbouring reductions and element-wise ops into the YNNPACK calls. For the
simulator's training step those fused reductions (the max-pooling and GroupNorm
gradients, the flattening of the gradient) run far slower than XLA's own loops: on
the project's 2-core CPU (jax 0.10.2) GN-LeNet local training of 96 nodes took about
3.0 s per round with the default and about 2.2-2.5 s with YNNPACK limited to
individual dots (``benchmarks/RESULTS.md``). :func:`jit` applies that setting to one
``jax.jit`` at a time, so the process-wide ``XLA_FLAGS`` stay untouched.

The options are used only on the CPU backend, only if this jaxlib accepts them (they
are experimental XLA flags), and not when ``XLA_FLAGS`` already chooses the YNNPACK
fusion types. ``JWINS_XLA_TUNING=0`` disables them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

CPU_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


@functools.cache
def compiler_options() -> dict[str, str]:
    """The compile options :func:`jit` adds on this process's default backend."""
    if os.environ.get("JWINS_XLA_TUNING", "1") == "0" or jax.default_backend() != "cpu":
        return {}
    if "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return {}
    try:  # experimental flags: make sure this jaxlib knows them
        probe = jax.jit(jnp.matmul, compiler_options=CPU_OPTIONS)
        probe.lower(jnp.ones((2, 2)), jnp.ones((2, 2))).compile()
    except Exception:  # noqa: BLE001 - any rejection means "do not use"
        return {}
    return dict(CPU_OPTIONS)


class _TunedJit:
    """A jitted function compiled with the tuning options when called at top level.

    JAX accepts ``compiler_options`` only on a top-level ``jax.jit``; called inside
    another traced function this object defers to the plain ``jax.jit`` of the same
    function, whose body then compiles with the outer program (and its options).
    """

    def __init__(self, fun: Callable[..., Any], options: dict[str, str], kwargs: dict):
        self._plain = jax.jit(fun, **kwargs)
        merged = {**options, **kwargs.get("compiler_options", {})}
        self._tuned = jax.jit(fun, **{**kwargs, "compiler_options": merged})
        functools.update_wrapper(self, fun)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves = jax.tree.leaves((args, kwargs))
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return self._plain(*args, **kwargs)
        return self._tuned(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self._tuned.lower(*args, **kwargs)

    def eval_shape(self, *args: Any, **kwargs: Any) -> Any:
        return self._tuned.eval_shape(*args, **kwargs)


def jit(fun: Callable[..., Any], **kwargs: Any) -> Any:
    """``jax.jit(fun, **kwargs)`` with :func:`compiler_options` for the backend.

    The result can also be called inside another jitted function (it then compiles
    as part of the outer program).
    """
    options = compiler_options()
    if not options:
        return jax.jit(fun, **kwargs)
    return _TunedJit(fun, options, kwargs)
