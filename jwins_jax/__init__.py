"""jwins_jax: a vectorized simulator of communication-efficient decentralized learning.

All n nodes of a decentralized network are stacked along a leading axis and advanced
together inside one jitted program: local SGD is vmapped over nodes, and gossip
(full sharing, JWINS, wavelet / top-k partial sharing, random sampling, CHOCO-SGD)
is written as sparse array operations on the stacked axis.

Importing the package changes nothing process-wide. The simulator's entry points
(the ``jwins`` command, ``python -m jwins_jax.reproduce``, the benchmarks) tune the
host allocator for the CPU backend when they start; a script of your own can do the
same with :func:`jwins_jax.hostmem.tune_host_allocator` before its first JAX
computation.
"""

__version__ = "0.1.0"
