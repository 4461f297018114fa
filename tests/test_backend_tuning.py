"""Host allocator and XLA compile-option tuning (jwins_jax.hostmem, jwins_jax.compiler)."""

import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import compiler, hostmem


@pytest.mark.parametrize(
    "platforms,expected",
    [("cpu", False), ("cpu,cuda", False), ("cuda", True), ("tpu,cpu", True)],
)
def test_accelerator_expected_follows_jax_platforms(monkeypatch, platforms, expected):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert hostmem.accelerator_expected() is expected


# Run in a fresh interpreter: imports the simulator's modules, optionally runs an
# entry point, then lets three threads malloc and counts glibc's arenas with
# malloc_info. Limited to one arena, the threads share the main one; with glibc's
# defaults each new thread gets an arena of its own.
_PROBE = """
import ctypes, ctypes.util, os, sys, tempfile, threading
import jwins_jax, jwins_jax.cli, jwins_jax.experiment, jwins_jax.runner, jwins_jax.sweep
from jwins_jax import hostmem
if sys.argv[1] == "cli":
    assert jwins_jax.cli.main(["show", os.devnull]) == 2
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
threads = [threading.Thread(target=lambda: [libc.malloc(5000) for _ in range(8)])
           for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
fd, path = tempfile.mkstemp()
os.close(fd)
fp = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
heaps = open(path).read().count("<heap nr=")
os.unlink(path)
print(hostmem._done, heaps)
"""


def _probe(mode: str) -> tuple[bool, int]:
    if not sys.platform.startswith("linux") or "glibc" not in platform.libc_ver()[0]:
        pytest.skip("glibc allocator only")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k != "JWINS_MALLOC_TUNING"
    }
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    done, heaps = result.stdout.split()[-2:]
    return done == "True", int(heaps)


def test_importing_the_package_leaves_the_allocator_alone():
    done, heaps = _probe("import")
    assert not done
    assert heaps > 1  # glibc's defaults: the threads got arenas of their own


def test_the_cli_entry_point_tunes_the_allocator():
    done, heaps = _probe("cli")
    assert done
    assert heaps == 1  # one arena: the threads share the main heap


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
    np.testing.assert_allclose(
        np.asarray(outer(x)), np.sin(np.asarray(x)) * 2 + 1, rtol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(jax.vmap(inner)(x)), np.asarray(inner(x)), rtol=1e-6
    )
    assert outer.lower(x).compile() is not None


def test_command_line_compilation_cache_directory(tmp_path, monkeypatch):
    from jwins_jax import cache

    monkeypatch.setenv("JWINS_COMPILATION_CACHE", "0")
    assert cache.cache_dir() is None and cache.enable_compilation_cache() is None
    monkeypatch.setenv("JWINS_COMPILATION_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("JWINS_COMPILATION_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "jwins_jax" / "xla"
    # a directory under a file cannot be created: the cache is skipped
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("JWINS_COMPILATION_CACHE", str(tmp_path / "file" / "c"))
    assert cache.enable_compilation_cache() is None


def test_second_process_loads_the_round_program_from_the_cache(tmp_path):
    """Two `jwins run` processes with one cache: the second compiles nothing new."""
    import os
    import subprocess
    import sys

    from jwins_jax import cache

    # every program is written, however fast this machine compiles it
    env = {
        **os.environ,
        "JWINS_COMPILATION_CACHE": str(tmp_path / "cache"),
        "JAX_PLATFORMS": "cpu",
        cache.MIN_COMPILE_TIME_ENV: "0",
    }
    cmd = [
        sys.executable,
        "-m",
        "jwins_jax.cli",
        "run",
        "--nodes",
        "6",
        "--topology",
        "ring",
        "--rounds",
        "2",
        "--eval-every",
        "2",
        "--local-steps",
        "1",
        "--test-subset",
        "32",
        "--quiet",
        "--out-dir",
        str(tmp_path / "runs"),
    ]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    entries = set(os.listdir(tmp_path / "cache"))
    assert entries, "the first process wrote compiled programs"
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    assert set(os.listdir(tmp_path / "cache")) == entries
