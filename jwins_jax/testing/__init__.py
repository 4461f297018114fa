"""Tools for testing jwins_jax and code built on it.

``jwins_jax.testing.reference`` holds the independent per-node references (NumPy,
PyWavelets, PyTorch) that the tests and the benchmarks' baselines compare the
vectorized simulator with. Importing this package imports neither JAX nor PyTorch.
"""
