"""jwins_jax: a vectorized simulator of communication-efficient decentralized learning.

All n nodes of a decentralized network are stacked along a leading axis and advanced
together inside one jitted program: local SGD is vmapped over nodes, and gossip
(full sharing, JWINS, wavelet / top-k partial sharing, random sampling, CHOCO-SGD)
is written as sparse array operations on the stacked axis.
"""

from jwins_jax.hostmem import tune_host_allocator as _tune_host_allocator

# Before any JAX backend starts its threads (see jwins_jax/hostmem.py).
_tune_host_allocator()

__version__ = "0.1.0"
