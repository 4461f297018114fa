"""Host allocator and XLA compile-option tuning (jwins_jax.hostmem, jwins_jax.compiler)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import compiler, hostmem


@pytest.mark.parametrize(
    "platforms,expected", [("cpu", False), ("cpu,cuda", False), ("cuda", True), ("tpu,cpu", True)]
)
def test_accelerator_expected_follows_jax_platforms(monkeypatch, platforms, expected):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert hostmem.accelerator_expected() is expected


def test_allocator_is_tuned_at_import_on_a_cpu_process():
    if hostmem.accelerator_expected():
        pytest.skip("this process is set up for an accelerator")
    # jwins_jax's import already ran it; a second call reports the same state.
    assert hostmem.tune_host_allocator() is True


def test_tuning_can_be_disabled(monkeypatch):
    monkeypatch.setattr(hostmem, "_done", False)
    monkeypatch.setenv("JWINS_MALLOC_TUNING", "0")
    assert hostmem.tune_host_allocator() is False
    monkeypatch.setenv("JWINS_XLA_TUNING", "0")
    compiler.compiler_options.cache_clear()
    try:
        assert compiler.compiler_options() == {}
    finally:
        compiler.compiler_options.cache_clear()


def test_cpu_compile_options_are_used_and_keep_results():
    options = compiler.compiler_options()
    if jax.default_backend() == "cpu":
        assert options == compiler.CPU_OPTIONS
    else:
        assert options == {}

    def loss(w, x):
        h = jnp.maximum(x @ w, 0.0).reshape(4, 8, 2).max(axis=-1)
        return jnp.sum(h**2)

    w = jax.random.normal(jax.random.PRNGKey(0), (16, 16))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 16))
    grad = jax.grad(loss)
    tuned = compiler.jit(grad)
    np.testing.assert_allclose(
        np.asarray(tuned(w, x)), np.asarray(jax.jit(grad)(w, x)), rtol=1e-5, atol=1e-5
    )


def test_jit_passes_other_arguments_through():
    f = compiler.jit(lambda x, n: x * n, static_argnums=1)
    assert float(f(jnp.float32(2.0), 3)) == 6.0


def test_tuned_jit_can_be_nested_in_another_jit():
    inner = compiler.jit(lambda x: jnp.sin(x) * 2.0)
    outer = compiler.jit(lambda x: inner(x) + 1.0)
    x = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(np.asarray(outer(x)), np.sin(np.asarray(x)) * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.vmap(inner)(x)), np.asarray(inner(x)), rtol=1e-6)
    assert outer.lower(x).compile() is not None
