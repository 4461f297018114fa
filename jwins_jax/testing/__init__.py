"""Tools for testing jwins_jax and code built on it.

* ``jwins_jax.testing.contract``: the contract kit any sharing strategy, built-in or
  a user's, passes (``check_strategy``).
* ``jwins_jax.testing.reference``: the independent per-node references (NumPy,
  PyWavelets, PyTorch, and the event-driven simulated clock) that the tests and the
  benchmarks' baselines compare the vectorized simulator with.

Importing this package imports neither JAX nor PyTorch.
"""
