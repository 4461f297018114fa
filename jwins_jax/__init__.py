"""jwins_jax: a vectorized simulator of communication-efficient decentralized learning.

All n nodes of a decentralized network are stacked along a leading axis and advanced
together inside one jitted program: local SGD is vmapped over nodes, and gossip
(full sharing, JWINS, wavelet / top-k partial sharing, random sampling, CHOCO-SGD)
is written as sparse array operations on the stacked axis.
"""

__version__ = "0.1.0"
