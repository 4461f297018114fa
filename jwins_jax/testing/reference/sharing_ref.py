"""Per-node NumPy / PyWavelets reference of the sharing strategies.

Implements SPEC sections 4.0 (Metropolis-Hastings averaging), 4.1 (full sharing),
4.2 (PartialModel top-k with its three accumulation modes), 4.3 (random sampling),
4.4 (wavelet-domain PartialModel), 4.5 (JWINS), 4.6 (the FFT variant, with
``numpy.fft``, for every N and for full shares) and 4.7 (CHOCO-SGD), with the byte
accounting of SPEC 5 as fixed by the decisions table at the top of SPEC.md (4 bytes
per float32 value, 8 per complex64 FFT coefficient, Elias-gamma bytes for
wavelet/JWINS/FFT indices, 4 bytes per raw int32 top-k index, 8 bytes per int64
CHOCO index, an 8-byte seed for random sampling, no metadata for a full share).
With ``float_precision`` = K > 0 (every strategy but CHOCO-SGD) the values travel
through the quantizer of SPEC 5.4 (:mod:`.quantize`): the message's size is the
length of the encoded bytes and the receivers use the decoded values.

The reference is written the way the original system runs: every node is an object
holding its own state, builds one message per round, the message is delivered to each
current neighbour, and every receiver computes its own Metropolis-Hastings weights
from its current degree and the sender's ``degree`` field. It deliberately shares no
code with the simulator; tests compare the package's vectorised steps with it, and the
benchmarks run it as the per-node baseline.

All model arithmetic is float32 (NumPy keeps float32 when an array is scaled by a
Python float); weights are Python floats.

Faults (``jwins_jax.faults``; the original has none, SPEC 1.3 blocks on a missing
neighbour) are driven round by round with given masks: ``Network.step(...,
online=..., down=...)``. An offline node skips the round entirely (no prepare, no
average: its model and state stay); an online node sends one copy to each online
neighbour; a copy over a link in ``down`` is lost (counted as sent, not received);
a receiver averages what arrived with MH weights from the degrees of the surviving
graph, i.e. the sender's ``degree`` field carries the number of copies it gets through
(links fail both ways, so that is also the number of messages it receives). CHOCO
nodes keep a copy of every neighbour's public ``xhat`` that a message refreshes (the
message carries the sender's increments including any it could not deliver before,
i.e. lost increments are retransmitted) and compute ``s`` from those copies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pywt

from jwins_jax.testing.reference import elias, quantize

F32 = np.float32

ACCUMULATION_MODES = ("none", "accumulate", "legacy")
SELECTIONS = ("change", "magnitude")


# ---------------------------------------------------------------------------
# Graphs and weights (SPEC 4.0, 6.1)
# ---------------------------------------------------------------------------


def read_edges_file(path: str) -> list[set[int]]:
    """Reads an ``.edges`` file: first line n, then one undirected edge ``u v`` a line.

    Args:
        path: file path.

    Returns:
        ``neighbors``: a list of n sets, ``neighbors[i]`` = the neighbours of node i.
    """
    with open(path) as fh:
        lines = [ln.split() for ln in fh if ln.strip()]
    n = int(lines[0][0])
    neighbors: list[set[int]] = [set() for _ in range(n)]
    for parts in lines[1:]:
        u, v = int(parts[0]), int(parts[1])
        if u != v:
            neighbors[u].add(v)
            neighbors[v].add(u)
    return neighbors


def neighbors_from_adjacency(adj: np.ndarray) -> list[set[int]]:
    """Converts a symmetric (n, n) boolean adjacency matrix to neighbour sets."""
    adj = np.asarray(adj, dtype=bool)
    return [{int(j) for j in np.flatnonzero(adj[i]) if j != i} for i in range(len(adj))]


def adjacency_from_neighbors(neighbors: Sequence[set[int]]) -> np.ndarray:
    """Converts neighbour sets to a symmetric (n, n) boolean adjacency matrix."""
    n = len(neighbors)
    adj = np.zeros((n, n), dtype=bool)
    for i, nb in enumerate(neighbors):
        for j in nb:
            adj[i, j] = adj[j, i] = True
    return adj


def mh_weight(own_degree: int, sender_degree: int) -> float:
    """Metropolis-Hastings weight ``1 / (1 + max(d_i, d_j))`` as a Python float."""
    return 1.0 / (1 + max(own_degree, sender_degree))


def mh_matrix(neighbors: Sequence[set[int]]) -> np.ndarray:
    """Dense (n, n) float64 Metropolis-Hastings matrix built edge by edge."""
    n = len(neighbors)
    w = np.zeros((n, n))
    for i in range(n):
        for j in neighbors[i]:
            w[i, j] = mh_weight(len(neighbors[i]), len(neighbors[j]))
        w[i, i] = 1.0 - w[i].sum()
    return w


# ---------------------------------------------------------------------------
# Selection (SPEC 4.2)
# ---------------------------------------------------------------------------


def count_k(alpha: float, length: int) -> int:
    """``k = round(alpha * length)`` with Python's round-half-to-even."""
    return int(round(float(alpha) * length))


def topk_indices(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest ``|score|``, ties to the lower index, sorted ascending.

    Linear time, as a per-node sender would select: the k-th largest magnitude by
    ``np.partition``, every index above it, then the lowest-indexed ones equal to it.

    Args:
        score: (L,) float32 scores.
        k: number of indices, 0 <= k <= L.

    Returns:
        (k,) int32 indices in ascending order.
    """
    mags = np.abs(score)
    m = mags.size
    if k <= 0:
        return np.zeros(0, np.int32)
    if k >= m:
        return np.arange(m, dtype=np.int32)
    threshold = np.partition(mags, m - k)[m - k]
    above = np.flatnonzero(mags > threshold)
    ties = np.flatnonzero(mags == threshold)[: k - above.size]
    return np.sort(np.concatenate([above, ties])).astype(np.int32)


def cut_gap(score: np.ndarray, k: int) -> float:
    """``|c|_(k) - |c|_(k+1)``, the margin between the k-th and (k+1)-th largest
    magnitudes (infinite when nothing or everything is selected)."""
    m = score.size
    if not 0 < k < m:
        return math.inf
    part = np.partition(np.abs(score), [m - k - 1, m - k])
    return float(part[m - k] - part[m - k - 1])


# ---------------------------------------------------------------------------
# Transforms (SPEC 4.2 identity, 4.4 wavelet)
# ---------------------------------------------------------------------------


class IdentityTransform:
    """The PartialModel transform: the flat model itself (L = N)."""

    dtype = F32

    def __init__(self, n_params: int):
        self.n_params = n_params
        self.length = n_params

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N,) float32 -> (N,) float32 copy."""
        return np.array(x, dtype=F32, copy=True)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """(N,) float32 -> (N,) float32 copy."""
        return np.array(z, dtype=F32, copy=True)


class WaveletTransform:
    """``pywt.wavedec`` (mode symmetric) + ``coeffs_to_array``, and its inverse."""

    dtype = F32

    def __init__(self, n_params: int, wavelet: str = "sym2", level: int = 4):
        self.n_params = n_params
        self.wavelet = wavelet
        self.level = level
        probe = np.zeros(n_params, dtype=F32)
        coeffs = pywt.wavedec(probe, wavelet, mode="symmetric", level=level)
        arr, self.slices = pywt.coeffs_to_array(coeffs)
        self.length = int(arr.size)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N,) float32 model -> (M,) float32 coefficients ``[cA_L|cD_L|..|cD_1]``."""
        coeffs = pywt.wavedec(
            np.asarray(x, dtype=F32), self.wavelet, mode="symmetric", level=self.level
        )
        arr, _ = pywt.coeffs_to_array(coeffs)
        return np.asarray(arr, dtype=F32).ravel()

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """(M,) float32 coefficients -> (N,) float32 model (``waverec``, first N)."""
        coeffs = pywt.array_to_coeffs(
            np.asarray(z, dtype=F32), self.slices, output_format="wavedec"
        )
        out = pywt.waverec(coeffs, self.wavelet, mode="symmetric")
        return np.asarray(out[: self.n_params], dtype=F32)


class FFTTransform:
    """SPEC 4.6: ``numpy.fft.rfft`` of the flat model (complex64, L = N // 2 + 1),
    inverted with ``irfft(..., n=N)`` so that odd N gets all its N values back (the
    original's ``irfft`` without a length returns N - 1 of them)."""

    dtype = np.complex64

    def __init__(self, n_params: int):
        self.n_params = n_params
        self.length = n_params // 2 + 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N,) float32 model -> (N // 2 + 1,) complex64 spectrum."""
        return np.fft.rfft(np.asarray(x, dtype=F32)).astype(np.complex64)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """(N // 2 + 1,) complex64 spectrum -> (N,) float32 model."""
        return np.fft.irfft(np.asarray(z, np.complex64), n=self.n_params).astype(F32)


# ---------------------------------------------------------------------------
# Value codecs (SPEC 5.4)
# ---------------------------------------------------------------------------


class RawCodec:
    """Values as they are: 4 bytes per float32, 8 per complex64."""

    def send(self, values: np.ndarray) -> tuple[np.ndarray, int]:
        """``(what the receivers get, bytes)`` of one message's values."""
        values = np.array(values, copy=True)
        return values, int(values.nbytes)


class QuantizedCodec:
    """SPEC 5.4's quantizer with K = ``levels``: the bytes :func:`quantize.encode`
    writes, decoded by the receivers with :func:`quantize.decode`."""

    def __init__(self, levels: int):
        self.levels = int(levels)

    def send(self, values: np.ndarray) -> tuple[np.ndarray, int]:
        """``(the decoded values, len(encoded bytes))`` of one message's values."""
        values = np.asarray(values)
        data = quantize.encode(values, self.levels)
        decoded = quantize.decode(
            data, values.size, self.levels, np.iscomplexobj(values)
        )
        return decoded, len(data)


def make_codec(float_precision: int = 0):
    """:class:`RawCodec` for 0, else :class:`QuantizedCodec`."""
    return QuantizedCodec(float_precision) if float_precision else RawCodec()


# ---------------------------------------------------------------------------
# Messages and nodes
# ---------------------------------------------------------------------------


@dataclass
class Message:
    """One model message as it travels to every neighbour.

    Attributes:
        sender: uid of the sender.
        degree: the sender's current degree (the ``degree`` field).
        full: True for a full share (``params`` holds the whole vector).
        params: (count,) float32 values sent.
        indices: (count,) int32 indices for top-k/wavelet partial shares, else None.
        mask: (N,) bool mask of random sampling (stands in for the 64-bit seed).
        dense: (N,) float32 CHOCO update q, zero where nothing is sent.
        public: (N,) float32 CHOCO sender's public copy after this round's update
            (what a receiver holds once all missed increments are retransmitted).
        value_bytes: payload bytes of one copy of the message.
        meta_bytes: metadata bytes of one copy of the message.
    """

    sender: int
    degree: int
    full: bool
    params: np.ndarray
    indices: np.ndarray | None = None
    mask: np.ndarray | None = None
    dense: np.ndarray | None = None
    public: np.ndarray | None = None
    value_bytes: int = 0
    meta_bytes: int = 0

    @property
    def count(self) -> int:
        """Number of values carried by the message."""
        return int(self.params.size)


class Node:
    """Base class: a node owns its model; subclasses add sharing state."""

    def __init__(self, uid: int, x0: np.ndarray):
        self.uid = uid
        self.model = np.array(x0, dtype=F32, copy=True)  # (N,)

    def prepare(self, x_pre: np.ndarray, degree: int, **round_inputs) -> Message:
        """Pre-step and serialisation: builds this round's message."""
        raise NotImplementedError

    def average(self, inbox: list[Message]) -> None:
        """Averaging and post-step with the messages of all current neighbours."""
        raise NotImplementedError

    @staticmethod
    def mh_combine(own: np.ndarray, received: list[tuple[Message, np.ndarray]]):
        """``(1 - sum_j w_ij) own + sum_j w_ij y_j``, neighbours first, self last.

        Args:
            own: (L,) float32 own vector.
            received: (message, y_j) pairs, y_j (L,) float32 the vector credited to j.

        Returns:
            (L,) float32 average.
        """
        n_in = len(received)
        total = None
        weight_total = 0.0
        for msg, y in received:
            w = mh_weight(n_in, msg.degree)
            weight_total += w
            total = w * y if total is None else total + w * y
        self_term = (1.0 - weight_total) * own
        return self_term if total is None else total + self_term


class FullNode(Node):
    """SPEC 4.1: send the whole model, MH-average whole models (the neighbours' as
    decoded, the node's own exact)."""

    def __init__(self, uid: int, x0: np.ndarray, codec=None):
        super().__init__(uid, x0)
        self.codec = RawCodec() if codec is None else codec

    def prepare(self, x_pre, degree, **round_inputs):
        self.model = np.array(x_pre, dtype=F32, copy=True)
        values, size = self.codec.send(self.model)
        return Message(self.uid, degree, True, values, value_bytes=size)

    def average(self, inbox):
        pairs = [(m, m.params) for m in inbox]
        self.model = self.mh_combine(self.model, pairs).astype(F32)


class RandomNode(Node):
    """SPEC 4.3: Bernoulli mask per round (given), fill-with-own at the receiver."""

    def __init__(self, uid, x0, alpha: float, metadata_cap: float = 1.0, codec=None):
        super().__init__(uid, x0)
        self.alpha = float(alpha)
        self.metadata_cap = float(metadata_cap)
        self.codec = RawCodec() if codec is None else codec

    @property
    def shares_fully(self) -> bool:
        return self.alpha > self.metadata_cap  # strict, unlike the others

    def prepare(self, x_pre, degree, mask=None, **round_inputs):
        self.model = np.array(x_pre, dtype=F32, copy=True)
        if self.shares_fully:
            values, size = self.codec.send(self.model)
            return Message(self.uid, degree, True, values, value_bytes=size)
        mask = np.asarray(mask, dtype=bool)
        vals, size = self.codec.send(self.model[mask])
        return Message(
            self.uid,
            degree,
            False,
            vals,
            mask=mask.copy(),
            value_bytes=size,
            meta_bytes=8,
        )

    def average(self, inbox):
        pairs = []
        for msg in inbox:
            if self.shares_fully:  # the receiver decides by its own alpha / cap
                y = msg.params
            else:
                y = self.model.copy()
                y[msg.mask] = msg.params
            pairs.append((msg, y))
        self.model = self.mh_combine(self.model, pairs).astype(F32)


class PartialNode(Node):
    """SPEC 4.2 / 4.4 / 4.5: top-k sharing in the domain of a transform.

    State: the reference model ``r`` (last post-averaging model, starts at x0), the
    accumulator ``acc`` (length L, only with accumulation) and, in legacy mode, the
    previous post-averaging model ``p``.
    """

    def __init__(
        self,
        uid: int,
        x0: np.ndarray,
        transform,
        alpha: float = 1.0,
        metadata_cap: float = 1.0,
        accumulation: str = "none",
        selection: str = "change",
        elias_indices: bool = False,
        codec=None,
    ):
        super().__init__(uid, x0)
        assert accumulation in ACCUMULATION_MODES and selection in SELECTIONS
        self.transform = transform
        self.alpha = float(alpha)
        self.metadata_cap = float(metadata_cap)
        self.accumulation = accumulation
        self.selection = selection
        self.elias_indices = elias_indices
        self.codec = RawCodec() if codec is None else codec
        self.ref = self.model.copy()  # (N,) r_i
        self.prev = self.model.copy()  # (N,) p_i
        length = transform.length
        dtype = transform.dtype  # float32, complex64 for the FFT
        self.acc = None if accumulation == "none" else np.zeros(length, dtype)  # (L,)
        self.own_coeffs = None  # (L,) P_i of this round
        self.last_score = None  # (L,) score c_i of this round (for closed-form checks)
        self.last_sent = None  # (k,) indices or None for a full share
        self.last_gap = math.inf  # |c|_(k) - |c|_(k+1): margin of this round's cut

    def prepare(self, x_pre, degree, alpha=None, **round_inputs):
        alpha = self.alpha if alpha is None else float(alpha)
        self.model = np.array(x_pre, dtype=F32, copy=True)
        tr = self.transform
        coeffs = tr.forward(self.model)
        change = tr.forward(self.model - self.ref)
        if self.accumulation == "none":
            score = change
        elif self.accumulation == "accumulate":
            self.acc = self.acc + change
            score = self.acc.copy()
        else:  # legacy: accumulate_averaging_changes=True
            score = change + self.acc
        self.last_score = score
        self.own_coeffs = coeffs
        if self.selection == "magnitude":
            score = coeffs
        length = tr.length

        if alpha >= self.metadata_cap:
            if self.acc is not None:
                self.acc = np.zeros_like(self.acc)
            self.last_sent = None
            self.last_gap = math.inf
            values, size = self.codec.send(coeffs)
            return Message(self.uid, degree, True, values, value_bytes=size)

        k = count_k(alpha, length)
        sel = topk_indices(score, k)
        self.last_gap = cut_gap(score, k)
        if self.acc is not None:
            self.acc = self.acc.copy()
            self.acc[sel] = 0.0
        self.last_sent = sel
        meta = len(elias.encode(sel)) if self.elias_indices else 4 * k
        values, size = self.codec.send(coeffs[sel])
        return Message(
            self.uid,
            degree,
            False,
            values,
            indices=sel,
            value_bytes=size,
            meta_bytes=meta,
        )

    def average(self, inbox):
        own = self.own_coeffs
        pairs = []
        for msg in inbox:
            if msg.full:
                y = msg.params
            else:
                y = own.copy()
                y[msg.indices] = msg.params
            pairs.append((msg, y))
        z = self.mh_combine(own, pairs).astype(own.dtype)
        self.model = self.transform.inverse(z)
        # post-step
        self.ref = self.model.copy()
        if self.accumulation == "legacy":
            self.acc = self.acc + self.transform.forward(self.model - self.prev)
            self.prev = self.model.copy()


class ChocoNode(Node):
    """SPEC 4.7: CHOCO-SGD with top-k compression of ``x - xhat`` (ties kept)."""

    def __init__(self, uid, x0, alpha: float, gamma: float):
        super().__init__(uid, x0)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.xhat = np.zeros_like(self.model)  # (N,) public copy
        self.s = np.zeros_like(self.model)  # (N,) weighted sum of public copies
        self.q = None  # (N,) this round's compressed update
        self.copies: dict[int, np.ndarray] = {}  # faults: neighbours' xhat as known
        self.faults = False  # set by the driver: s from the copies, not increments

    def prepare(self, x_pre, degree, **round_inputs):
        self.model = np.array(x_pre, dtype=F32, copy=True)
        diff = self.model - self.xhat
        k = count_k(self.alpha, diff.size)
        if k > 0:
            mags = np.abs(diff)
            theta = np.sort(mags)[::-1][k - 1]
            q = np.where(mags < theta, F32(0), diff).astype(F32)
        else:
            q = diff
        self.q = q
        nz = np.flatnonzero(q)
        return Message(
            self.uid,
            degree,
            False,
            q[nz].copy(),
            indices=nz.astype(np.int64),
            dense=q.copy(),
            public=(self.xhat + q).astype(F32),
            value_bytes=4 * nz.size,
            meta_bytes=8 * nz.size,
        )

    def average(self, inbox):
        self.xhat = self.xhat + self.q
        if self.faults:
            n_in = len(inbox)
            s = np.zeros_like(self.model)
            weight_total = 0.0
            for msg in inbox:
                self.copies[msg.sender] = msg.public  # missed increments included
                w = mh_weight(n_in, msg.degree)
                weight_total += w
                s = s + w * self.copies[msg.sender]
            self.s = (s + (1.0 - weight_total) * self.xhat).astype(F32)
            self.model = (self.model + self.gamma * (self.s - self.xhat)).astype(F32)
            return
        n_in = len(inbox)
        weight_total = 0.0
        s = self.s
        for msg in inbox:
            w = mh_weight(n_in, msg.degree)
            weight_total += w
            s = s + w * msg.dense
        self.s = (s + (1.0 - weight_total) * self.q).astype(F32)
        self.model = (self.model + self.gamma * (self.s - self.xhat)).astype(F32)


# ---------------------------------------------------------------------------
# Network driver
# ---------------------------------------------------------------------------


@dataclass
class RoundStats:
    """Per-node statistics of one round (totals over the node's receivers).

    Attributes:
        value_bytes: (n,) int64 payload bytes sent.
        meta_bytes: (n,) int64 metadata bytes sent.
        sent: (n,) int64 values per message.
        full: (n,) bool full share this round.
        copies: (n,) int64 copies of the node's message sent.
        delivered: (n,) int64 copies of the node's message that arrived.
        received: (n,) int64 values the node received.
        received_bytes: (n,) int64 bytes (values and metadata) the node received.
    """

    value_bytes: np.ndarray
    meta_bytes: np.ndarray
    sent: np.ndarray
    full: np.ndarray
    copies: np.ndarray | None = None
    delivered: np.ndarray | None = None
    received: np.ndarray | None = None
    received_bytes: np.ndarray | None = None


@dataclass
class Network:
    """n node objects exchanging messages over a (possibly changing) graph."""

    nodes: list[Node]
    history: list[RoundStats] = field(default_factory=list)

    @property
    def models(self) -> np.ndarray:
        """(n, N) float32 current models."""
        return np.stack([nd.model for nd in self.nodes])

    def step(
        self,
        x_pre: np.ndarray,
        neighbors: Sequence[set[int]],
        per_node: dict[str, Sequence] | None = None,
        online: Sequence[bool] | None = None,
        down: set[tuple[int, int]] | None = None,
        stack: bool = True,
    ) -> tuple[np.ndarray | None, RoundStats]:
        """Runs one round: prepare, deliver to each neighbour, average, post-step.

        Args:
            x_pre: (n, N) float32 models after local training (an offline node's row
                is ignored: it does not train).
            neighbors: this round's neighbour sets (symmetric).
            per_node: optional per-node round inputs, e.g. ``{"mask": (n, N) bool}``
                or ``{"alpha": (n,) floats}``; entry i goes to node i.
            online: faults: per node, whether it takes part (default: all).
            down: faults: links ``(u, v)`` with u < v that carry nothing this round.
            stack: whether to return the models stacked (False: None, and the
                models stay in the nodes, as in a running system).

        Returns:
            ``(x_post, stats)``: (n, N) float32 models after averaging and the stats.
        """
        n = len(self.nodes)
        assert len(neighbors) == n
        for i in range(n):
            for j in neighbors[i]:
                assert i in neighbors[j] and j != i
        per_node = per_node or {}
        faults = online is not None or down is not None
        online = [True] * n if online is None else [bool(v) for v in online]
        down = down or set()
        # who each online node sends to, and which of those copies arrive
        targets = [
            sorted(j for j in neighbors[i] if online[j]) if online[i] else []
            for i in range(n)
        ]
        arrive = [
            [j for j in targets[i] if (min(i, j), max(i, j)) not in down]
            for i in range(n)
        ]
        inbox: list[list[Message]] = [[] for _ in range(n)]
        value_bytes = np.zeros(n, np.int64)
        meta_bytes = np.zeros(n, np.int64)
        sent = np.zeros(n, np.int64)
        full = np.zeros(n, bool)
        copies = np.zeros(n, np.int64)
        delivered = np.zeros(n, np.int64)
        received = np.zeros(n, np.int64)
        received_bytes = np.zeros(n, np.int64)
        for i, node in enumerate(self.nodes):
            if not online[i]:
                continue
            if isinstance(node, ChocoNode):
                node.faults = faults
            inputs = {key: vals[i] for key, vals in per_node.items()}
            # the degree field: copies that get through (= messages i will receive)
            msg = node.prepare(x_pre[i], len(arrive[i]), **inputs)
            sent[i] = msg.count
            full[i] = msg.full
            for j in targets[i]:
                copies[i] += 1
                value_bytes[i] += msg.value_bytes
                meta_bytes[i] += msg.meta_bytes
                if j in arrive[i]:
                    inbox[j].append(msg)
                    delivered[i] += 1
                    received[j] += msg.count
                    received_bytes[j] += msg.value_bytes + msg.meta_bytes
        for i, node in enumerate(self.nodes):
            if online[i]:
                node.average(inbox[i])
        stats = RoundStats(
            value_bytes,
            meta_bytes,
            sent,
            full,
            copies,
            delivered,
            received,
            received_bytes,
        )
        self.history.append(stats)
        return (self.models if stack else None), stats


def make_network(name: str, x0: np.ndarray, **params) -> Network:
    """Builds a reference network for one strategy of SPEC 4.

    Args:
        name: one of "full", "random", "topk", "wavelet", "jwins", "fft", "choco".
        x0: (n, N) float32 initial models (identical rows, SPEC 1.2).
        **params: the strategy's parameters, with the package's names and defaults:
            random: alpha, metadata_cap=1.0; topk: alpha, metadata_cap=1.0,
            accumulation="none"; wavelet: alpha, metadata_cap=1.0, wavelet="sym2",
            level=4, accumulation="none", selection="change"; jwins: metadata_cap=0.5,
            wavelet="sym2", level=4, accumulation="legacy", selection="change" (the
            per-node alpha is a round input); fft: alpha, metadata_cap=1.0,
            accumulation="none", selection="change"; choco: alpha, gamma; every one
            but choco: float_precision=0 (K > 0: the quantizer of SPEC 5.4).

    Returns:
        The network of n reference nodes.
    """
    x0 = np.asarray(x0, dtype=F32)
    n, n_params = x0.shape
    codec = make_codec(params.get("float_precision", 0))
    if name == "full":
        nodes = [FullNode(i, x0[i], codec) for i in range(n)]
    elif name == "random":
        nodes = [
            RandomNode(
                i, x0[i], params["alpha"], params.get("metadata_cap", 1.0), codec
            )
            for i in range(n)
        ]
    elif name == "topk":
        tr = IdentityTransform(n_params)
        nodes = [
            PartialNode(
                i,
                x0[i],
                tr,
                alpha=params["alpha"],
                metadata_cap=params.get("metadata_cap", 1.0),
                accumulation=params.get("accumulation", "none"),
                codec=codec,
            )
            for i in range(n)
        ]
    elif name == "fft":
        tr = FFTTransform(n_params)
        nodes = [
            PartialNode(
                i,
                x0[i],
                tr,
                alpha=params["alpha"],
                metadata_cap=params.get("metadata_cap", 1.0),
                accumulation=params.get("accumulation", "none"),
                selection=params.get("selection", "change"),
                elias_indices=True,
                codec=codec,
            )
            for i in range(n)
        ]
    elif name in ("wavelet", "jwins"):
        jw = name == "jwins"
        tr = WaveletTransform(
            n_params, params.get("wavelet", "sym2"), params.get("level", 4)
        )
        nodes = [
            PartialNode(
                i,
                x0[i],
                tr,
                alpha=1.0 if jw else params["alpha"],
                metadata_cap=params.get("metadata_cap", 0.5 if jw else 1.0),
                accumulation=params.get("accumulation", "legacy" if jw else "none"),
                selection=params.get("selection", "change"),
                elias_indices=True,
                codec=codec,
            )
            for i in range(n)
        ]
    elif name == "choco":
        nodes = [
            ChocoNode(i, x0[i], params["alpha"], params["gamma"]) for i in range(n)
        ]
    else:
        raise ValueError(f"unknown strategy {name!r}")
    return Network(nodes)
