"""Shared fixtures: small configurations that compile and run in seconds.

The tests compile many programs that are identical (the same config run through
different entry points); a persistent compilation cache for the session lets XLA
compile each distinct program once. Processes the tests start share the cache.

XLA's optimizations stay on: with ``jax_disable_most_optimizations`` (40 % faster to
compile) jaxlib 0.10.2 computes NaN gradients for GroupNorm followed by max pooling
on CPU, which the optimized program gets right.
"""

import os
import tempfile

import jax
import pytest

from jwins_jax.config import Config

_CACHE = tempfile.mkdtemp(prefix="jwins-test-xla-cache-")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
# processes the tests start share the session's cache (see jwins_jax/cache.py)
os.environ.setdefault("JWINS_COMPILATION_CACHE", _CACHE)


@pytest.fixture
def tiny_config(tmp_path) -> Config:
    """8 nodes on a ring, digits, IID: learns above chance in a few seconds."""
    return Config(
        nodes=8,
        topology="ring",
        partition="iid",
        rounds=40,
        eval_every=20,
        local_steps=2,
        batch_size=16,
        lr=0.1,
        seed=1,
        out_dir=str(tmp_path / "runs"),
    )


# The test session is an entry point too: it tunes the host allocator (importing
# jwins_jax does not) before any test starts JAX's threads.
from jwins_jax.hostmem import tune_host_allocator  # noqa: E402

tune_host_allocator()
