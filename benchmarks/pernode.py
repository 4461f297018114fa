"""The per-node way: one model per node, sharing on the host (SPEC 1.3, 4.1, 4.5).

This is the baseline the vectorized simulator has to beat (issue 4). It does the work
the original system does, node by node, in one process:

* local training: the same model as the simulator, ``compiler.jit(sim.local_train)``
  compiled once and called once per node with that node's model and minibatches
  (:class:`PerNodeNetwork`), or the original engine itself: a PyTorch model trained
  node after node with ``torch.optim.SGD`` (:class:`TorchPerNodeNetwork`, with
  ``benchmarks/torch_baseline.py``; PyTorch is optional);
* full sharing (SPEC 4.1): ``x_i <- w_ii x_i + sum_j w_ij x_j`` in NumPy, node by node;
* JWINS (SPEC 4.5, pseudocode there): per node, PyWavelets ``wavedec`` +
  ``coeffs_to_array`` of the model and of its change, the legacy accumulator score,
  an alpha drawn from the node's own ``random.Random(uid)``, NumPy top-k
  (:func:`top_k_indices`: ``np.partition`` and ties to the lower index, SPEC's
  decision), the accumulator rewind and the Elias-gamma size of the sorted indices; then
  per receiver the fill-with-own MH average in the wavelet domain, ``waverec`` and the
  accumulator update with the post-averaging change.

Models are NumPy float32 vectors in the flat PyTorch layout, as the simulator's rows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import pywt
from simulation import BenchSim as Simulation

from jwins_jax import compiler
from jwins_jax.experiment import SimState
from jwins_jax.sparsify import k_from_alpha
from jwins_jax.topology import mh_matrix


def top_k_indices(score: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the ``k`` largest scores, ties to the lower index.

    SPEC's decision for top-k ties (what ``lax.top_k`` and the simulator do); plain
    ``np.argpartition`` breaks ties arbitrarily, which matters where many scores are
    equal (MovieLens MF: the rows of users and items a node never saw do not change,
    so most wavelet coefficients of its change are exactly 0). Linear time: the k-th
    largest value by ``np.partition``, every score above it, then the
    lowest-indexed scores equal to it.
    """
    m = score.size
    if k <= 0:
        return np.zeros(0, np.int64)
    if k >= m:
        return np.arange(m)
    threshold = np.partition(score, m - k)[m - k]
    above = np.flatnonzero(score > threshold)
    ties = np.flatnonzero(score == threshold)[: k - above.size]
    return np.sort(np.concatenate([above, ties]))


def elias_gamma_bytes(indices: np.ndarray) -> int:
    """Size of the Elias-gamma index code of sorted indices (SPEC 5.3 boxed formula)."""
    if indices.size < 2:
        return 16 if indices.size == 1 else 0
    gaps = np.diff(indices)
    floor_log2 = np.frexp(gaps.astype(np.float64))[1] - 1
    bits = int(np.sum(2 * floor_log2 + 1))
    return -(-bits // 8) + 16


class PerNodeNetwork:
    """n independent nodes driven by a host loop.

    Args:
        sim: the simulation whose model, data, graph and optimizer are used.
        state: initial state; row i of ``state.x`` becomes node i's model.
        alpha_list: JWINS's alpha list.
        metadata_cap: alphas at or above it are full shares.
        wavelet: PyWavelets wavelet name.
        level: decomposition level.
    """

    def __init__(
        self,
        sim: Simulation,
        state: SimState,
        alpha_list: Sequence[float],
        metadata_cap: float,
        wavelet: str = "sym2",
        level: int = 4,
    ):
        self.sim = sim
        self.n = int(state.x.shape[0])
        self.n_params = int(state.x.shape[1])
        x_host = np.asarray(state.x)
        self.x = [np.array(x_host[i], dtype=np.float32) for i in range(self.n)]
        self.opt = [jax.tree.map(lambda a, i=i: a[i], state.opt) for i in range(self.n)]
        w = mh_matrix(sim.adjacency)
        self.neighbors = [np.flatnonzero(sim.adjacency[i]) for i in range(self.n)]
        self.weights = [
            [float(w[i, j]) for j in nb] for i, nb in enumerate(self.neighbors)
        ]
        self.self_weight = [float(w[i, i]) for i in range(self.n)]
        self.train_one = compiler.jit(sim.local_train)
        # JWINS state: r_i = p_i (last post-averaging model) and the accumulator A_i.
        self.wavelet = wavelet
        self.level = level
        self.alpha_list = list(alpha_list)
        self.cap = float(metadata_cap)
        _, self.slices = pywt.coeffs_to_array(
            pywt.wavedec(np.zeros(self.n_params, np.float32), wavelet, level=level)
        )
        self.m = int(self.dec(self.x[0]).shape[0])
        self.ref = [xi.copy() for xi in self.x]
        self.acc = [np.zeros(self.m, np.float32) for _ in range(self.n)]
        self.rng = [random.Random(uid) for uid in range(self.n)]  # random.seed(uid)
        self.last_stats: dict[str, Any] = {}

    # ------------------------------------------------------------- transforms
    def dec(self, v: np.ndarray) -> np.ndarray:
        """Flat wavelet coefficients of one vector, ``(N,) -> (M,)``."""
        coeffs = pywt.wavedec(v, self.wavelet, level=self.level, mode="symmetric")
        return pywt.coeffs_to_array(coeffs)[0]

    def rec(self, z: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`dec`, trimmed to N, ``(M,) -> (N,)``."""
        coeffs = pywt.array_to_coeffs(z, self.slices, output_format="wavedec")
        return pywt.waverec(coeffs, self.wavelet, mode="symmetric")[: self.n_params]

    # --------------------------------------------------------------- training
    def train(self, ids: np.ndarray, w: np.ndarray) -> list[float]:
        """Local training of every node, one jitted call per node.

        Args:
            ids: ``(n, tau, b)`` training-sample ids; w: ``(n, tau, b)`` weights.

        Returns:
            The n mean minibatch losses.
        """
        losses = []
        for i in range(self.n):
            xi, self.opt[i], loss = self.train_one(self.x[i], self.opt[i], ids[i], w[i])
            self.x[i] = np.array(xi)  # a writable host copy, as a node would hold
            losses.append(loss)
        return [float(v) for v in losses]

    def warm(self, ids: np.ndarray, w: np.ndarray) -> None:
        """Compiles and runs node 0's local training once, leaving every model as is.

        Lets a slow model's first timed round exclude the one-off compile.
        """
        jax.block_until_ready(self.train_one(self.x[0], self.opt[0], ids[0], w[0]))

    # ---------------------------------------------------------------- sharing
    def share_full(self) -> None:
        """D-PSGD averaging (SPEC 4.1), node by node with NumPy."""
        new = []
        for i in range(self.n):
            z = self.self_weight[i] * self.x[i]
            for j, wij in zip(self.neighbors[i], self.weights[i], strict=True):
                z = z + wij * self.x[j]
            new.append(z.astype(np.float32, copy=False))
        self.x = new
        self.last_stats = {
            "value_bytes": [4 * self.n_params * len(nb) for nb in self.neighbors]
        }

    def share_jwins(self, alphas: Sequence[float] | None = None) -> list[float]:
        """One JWINS round (SPEC 4.5 pseudocode), node by node.

        Args:
            alphas: per-node alphas to use instead of each node's own draw.

        Returns:
            The alphas used.
        """
        messages = []
        coefs = []
        used = []
        meta = []
        for i in range(self.n):
            v = self.x[i]
            p = self.dec(v)
            score = self.dec(v - self.ref[i]) + self.acc[i]  # legacy accumulation
            alpha = self.rng[i].choice(self.alpha_list) if alphas is None else alphas[i]
            used.append(float(alpha))
            if alpha >= self.cap:
                messages.append((None, p))
                self.acc[i][:] = 0.0
                meta.append(0)
            else:
                k = k_from_alpha(alpha, self.m)
                top = top_k_indices(np.abs(score), k)
                self.acc[i][top] = 0.0  # rewind the sent coefficients
                messages.append((top, p[top]))
                meta.append(elias_gamma_bytes(top))
            coefs.append(p)
        new = []
        for i in range(self.n):
            p = coefs[i]
            z = self.self_weight[i] * p
            for j, wij in zip(self.neighbors[i], self.weights[i], strict=True):
                idx, vals = messages[j]
                if idx is None:
                    q = vals
                else:
                    q = p.copy()  # fill what j did not send with our own coefficients
                    q[idx] = vals
                z = z + wij * q
            new.append(self.rec(z.astype(np.float32, copy=False)))
        for i in range(self.n):
            self.acc[i] += self.dec(new[i] - self.ref[i])
            self.ref[i] = new[i]
            self.x[i] = new[i]
        self.last_stats = {
            "meta_bytes": [
                m * len(nb) for m, nb in zip(meta, self.neighbors, strict=True)
            ]
        }
        return used

    def stacked(self) -> np.ndarray:
        """All models as one ``(n, N)`` array."""
        return np.stack(self.x)


class TorchPerNodeNetwork(PerNodeNetwork):
    """The per-node way with the original engine: PyTorch training node by node.

    Local training is :class:`torch_baseline.TorchNodes` (one PyTorch model, its
    ``torch.optim.SGD``, forward / backward / step, node after node) on the
    simulation's training data and minibatch ids; sharing is the host sharing of
    :class:`PerNodeNetwork` (NumPy, PyWavelets) on the same flat vectors.

    Args:
        sim, state, alpha_list, metadata_cap, wavelet, level: as
            :class:`PerNodeNetwork`.

    Raises:
        torch_baseline.TorchMissing: PyTorch is not installed.
    """

    def __init__(
        self,
        sim: Simulation,
        state: SimState,
        alpha_list: Sequence[float],
        metadata_cap: float,
        wavelet: str = "sym2",
        level: int = 4,
    ):
        import torch_baseline

        super().__init__(sim, state, alpha_list, metadata_cap, wavelet, level)
        c = sim.config
        self.nodes = torch_baseline.TorchNodes(
            sim.exp.model,
            np.zeros((0, self.n_params), np.float32),
            lr=c.lr,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            task=sim.exp.task,
        )
        # converted once, as a node holds its data set in memory
        self.data_x = self.nodes.inputs(np.asarray(sim.inputs.train_x))
        self.data_y = self.nodes.targets(np.asarray(sim.inputs.train_y))

    def train(self, ids: np.ndarray, w: np.ndarray) -> list[float]:
        """Local training of every node with PyTorch, node after node."""
        self.nodes.x = self.x
        losses = self.nodes.train(self.data_x, self.data_y, ids, w)
        self.x = self.nodes.x
        return [float(v) for v in losses]

    def warm(self, ids: np.ndarray, w: np.ndarray) -> None:
        """Trains node 0 once on a copy (PyTorch's first-call set-up), models kept."""
        self.nodes.x = [self.x[0].copy()]
        self.nodes.train(self.data_x, self.data_y, ids[:1], w[:1])
        self.nodes.x = self.x


def forward_flops(model: str) -> int:
    """Forward FLOPs per sample of a model, counting 2 per multiply-add.

    Convolutions, linear layers and LSTM matmuls only (GroupNorm, ReLU, pooling, the
    LSTM's gate nonlinearities and embedding look-ups add little). SPEC 7.2:

    * GN-LeNet: 5x5 convs 3->32 at 32x32, 32->32 at 16x16, 32->64 at 8x8 and
      Linear(1024 -> 10);
    * digits CNN: 3x3 convs 1->16 at 8x8, 16->32 at 4x4 and Linear(128 -> 10);
    * FEMNIST CNN: 5x5 convs 1->32 at 28x28, 32->64 at 14x14, Linear(3136 -> 512)
      and Linear(512 -> 62);
    * CelebA CNN: 3x3 convs 3->32 at 84x84, 32->32 at 42x42, 21x21 and 10x10, and
      Linear(800 -> 2);
    * Shakespeare LSTM: per step of 80, the gates of layer 0 (4 * 256 x (8 + 256))
      and layer 1 (4 * 256 x (256 + 256)), then Linear(20480 -> 92);
    * Reddit RNN: per step of 10, the gates of layer 0 (4 * 256 x (200 + 256)) and
      layer 1 (4 * 256 x (256 + 256)), then Linear(256 -> 128) and
      Linear(128 -> 9999);
    * MovieLens MF: one 20-dimensional dot product.
    """
    convs: list[tuple[int, int, int, int]] = []  # (pixels, in, out, kernel taps)
    linear: list[tuple[int, int]] = []  # (in, out)
    if model == "gn_lenet":
        convs = [(32 * 32, 3, 32, 25), (16 * 16, 32, 32, 25), (8 * 8, 32, 64, 25)]
        linear = [(1024, 10)]
    elif model == "digits_cnn":
        convs = [(8 * 8, 1, 16, 9), (4 * 4, 16, 32, 9)]
        linear = [(128, 10)]
    elif model == "femnist_cnn":
        convs = [(28 * 28, 1, 32, 25), (14 * 14, 32, 64, 25)]
        linear = [(3136, 512), (512, 62)]
    elif model == "celeba_cnn":
        convs = [(84 * 84, 3, 32, 9)] + [(s * s, 32, 32, 9) for s in (42, 21, 10)]
        linear = [(800, 2)]
    elif model == "shakespeare_lstm":
        steps, hidden = 80, 256
        linear = [(8 + hidden, 4 * hidden)] * steps + [(2 * hidden, 4 * hidden)] * steps
        linear += [(steps * hidden, 92)]
    elif model == "reddit_rnn":
        steps, hidden = 10, 256
        linear = [(200 + hidden, 4 * hidden)] * steps
        linear += [(2 * hidden, 4 * hidden)] * steps + [(hidden, 128), (128, 9999)]
    elif model == "movielens_mf":
        linear = [(20, 1)]
    else:
        raise ValueError(f"no FLOP count for model {model!r}")
    macs = sum(pix * cin * cout * k for pix, cin, cout, k in convs)
    macs += sum(fin * fout for fin, fout in linear)
    return 2 * macs


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|b|, tiny)."""
    scale = max(float(np.max(np.abs(b))), 1e-30)
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / scale
