"""The persistent compilation cache of the command line (issue 10, start-up time).

Compiling a round program takes seconds to tens of seconds (GN-LeNet's JWINS round:
about 10-17 s on a 2-core CPU); every ``jwins run`` of the same static configuration
compiles the same programs. The ``jwins`` command therefore turns on JAX's persistent
compilation cache in ``~/.cache/jwins_jax/xla`` (``$XDG_CACHE_HOME`` respected),
limited to :data:`MAX_BYTES`: a second process loads its programs instead of
compiling them (measured: 2.4 s instead of 17 s for the GN-LeNet round).

It is a process-wide JAX setting, so only entry points apply it (importing the
package changes nothing); ``JWINS_COMPILATION_CACHE`` chooses another directory, or
``0`` turns it off. A cache directory that cannot be created is skipped silently.
"""

from __future__ import annotations

import os
import pathlib

MAX_BYTES = 2 << 30
# programs that compile faster than this are not worth a file (JAX's own default);
# the environment variable JAX reads overrides it
MIN_COMPILE_SECS = 1.0
MIN_COMPILE_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"


def cache_dir() -> pathlib.Path | None:
    """The directory the command line uses, or None when turned off."""
    setting = os.environ.get("JWINS_COMPILATION_CACHE", "")
    if setting == "0":
        return None
    if setting:
        return pathlib.Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return pathlib.Path(base) / "jwins_jax" / "xla"


def enable_compilation_cache() -> pathlib.Path | None:
    """Turns the persistent cache on (before the first compilation); returns its path."""
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user chose one already
        return pathlib.Path(jax.config.jax_compilation_cache_dir)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    if MIN_COMPILE_TIME_ENV not in os.environ:  # JAX reads the variable itself
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS
        )
    return path
