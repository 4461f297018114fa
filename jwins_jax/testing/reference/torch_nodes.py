"""The original system's engine, node by node: PyTorch models, SGD and inference.

The original JWINS code trains every node with its own PyTorch model and
``torch.optim.SGD``, one node after the other. This module does the same:

* :func:`build_torch_model` builds the PyTorch twin of the paper's models from a
  :class:`~jwins_jax.testing.reference.layout.ModelLayout` (plain data: the
  ``state_dict`` keys and shapes in the flat order of SPEC Appendix C, the input
  shape and kind, the classes);
* :func:`load_flat` / :func:`to_flat` move one node's flat float32 vector into and
  out of such a model;
* :class:`TorchNodes` trains n nodes one by one on given minibatch ids (tau SGD steps
  each, the weighted-mean loss: cross-entropy, or squared error for a rating model)
  and evaluates every node's model on a shared test set or on its own samples
  (accuracy; RMSE and rounded-rating accuracy for ratings, SPEC 7.3).

Needs PyTorch (``pip install -e '.[bench]'``). Nothing here imports the simulator.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from jwins_jax.testing.reference.layout import ModelLayout


def _sequential(layers: list[tuple[str, Any]]) -> nn.Module:
    """``nn.Sequential`` with named children (state_dict keys ``conv1.weight`` ...)."""
    return nn.Sequential(OrderedDict(layers))


def _fc(m: ModelLayout, key: str) -> nn.Linear:
    out_features, in_features = m.shape(f"{key}.weight")
    return nn.Linear(in_features, out_features)


def _gn_lenet(m: ModelLayout) -> nn.Module:
    """GN-LeNet (SPEC 7.2) as the original defines it, NCHW."""
    layers, c_in = [], m.input_shape[2]
    for i in (1, 2, 3):
        c = m.shape(f"conv{i}.weight")[0]
        layers += [
            (f"conv{i}", nn.Conv2d(c_in, c, 5, padding=2)),
            (f"gn{i}", nn.GroupNorm(2, c)),
            (f"relu{i}", nn.ReLU()),
            (f"pool{i}", nn.MaxPool2d(2)),
        ]
        c_in = c
    return _sequential(layers + [("flatten", nn.Flatten()), ("fc1", _fc(m, "fc1"))])


def _two_convs(kernel: int, hidden: bool) -> Callable[[ModelLayout], nn.Module]:
    """[conv, ReLU, 2x2 max pool] twice, then one or two linear layers, NCHW: the
    digits CNN (3x3, one linear layer) and the FEMNIST CNN (SPEC 7.2: 5x5, two)."""

    def build(m: ModelLayout) -> nn.Module:
        layers, c_in = [], m.input_shape[2]
        for i in (1, 2):
            c = m.shape(f"conv{i}.weight")[0]
            layers += [
                (f"conv{i}", nn.Conv2d(c_in, c, kernel, padding=kernel // 2)),
                (f"relu{i}", nn.ReLU()),
                (f"pool{i}", nn.MaxPool2d(2)),
            ]
            c_in = c
        layers += [("flatten", nn.Flatten()), ("fc1", _fc(m, "fc1"))]
        if hidden:
            layers += [("relu3", nn.ReLU()), ("fc2", _fc(m, "fc2"))]
        return _sequential(layers)

    return build


def _celeba_cnn(m: ModelLayout) -> nn.Module:
    """The CelebA CNN (SPEC 7.2): [3x3 conv, 2x2 max pool, ReLU] blocks on raw 0-255
    pixels (not normalised, as in the original), then one linear layer, NCHW."""
    convs = [k.split(".")[0] for k, _ in m.layout if k.startswith("conv")]
    layers, c_in = [], m.input_shape[2]
    for i, name in enumerate(dict.fromkeys(convs), start=1):
        c = m.shape(f"{name}.weight")[0]
        layers += [
            (name, nn.Conv2d(c_in, c, 3, padding=1)),
            (f"pool{i}", nn.MaxPool2d(2)),
            (f"relu{i}", nn.ReLU()),
        ]
        c_in = c
    return _sequential(layers + [("flatten", nn.Flatten()), ("fc1", _fc(m, "fc1"))])


class _LSTMModel(nn.Module):
    """The Shakespeare LSTM (SPEC 7.2) as the original defines it: ``Embedding`` ->
    ``nn.LSTM(batch_first=True)`` (zero initial state) -> ReLU of every output ->
    flatten -> Linear. Inputs are ``(B, T)`` int64 character ids."""

    def __init__(self, m: ModelLayout):
        super().__init__()
        vocab, dim = m.shape("embedding.weight")
        hidden = m.shape("lstm.weight_hh_l0")[1]
        layers = sum(k.startswith("lstm.weight_ih_l") for k, _ in m.layout)
        self.embedding = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
        self.l1 = _fc(m, "l1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embedding(x))  # (B, T, hidden)
        return self.l1(torch.relu(h).flatten(1))


class _RedditRNN(nn.Module):
    """The Reddit RNN (SPEC 7.2) as the original defines it: ``Embedding(9999, 200,
    padding_idx=0)`` -> ``nn.LSTM(batch_first=True)`` -> the top layer's final hidden
    state ``h_n[-1]`` -> ``Linear(256, 128)`` -> ReLU -> ``Linear(128, 9999)``. Inputs
    are ``(B, 10)`` int64 token ids."""

    def __init__(self, m: ModelLayout):
        super().__init__()
        vocab, dim = m.shape("embedding.weight")
        hidden = m.shape("rnn_cells.weight_hh_l0")[1]
        layers = sum(k.startswith("rnn_cells.weight_ih_l") for k, _ in m.layout)
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.rnn_cells = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
        self.l1 = _fc(m, "l1")
        self.l2 = _fc(m, "l2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.rnn_cells(self.embedding(x))
        return self.l2(torch.relu(self.l1(h_n[-1])))


class _MatrixFactorization(nn.Module):
    """MovieLens matrix factorisation (SPEC 7.2): ``(B, 2)`` 0-based ``[user, item]``
    ids (the original shifts 1-based ids inside the model; the simulator's loader does
    it when reading) -> ``(B,)`` dot products of the two embeddings."""

    def __init__(self, m: ModelLayout):
        super().__init__()
        self.user_factors = nn.Embedding(*m.shape("user_factors.weight"))
        self.item_factors = nn.Embedding(*m.shape("item_factors.weight"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.user_factors(x[:, 0]) * self.item_factors(x[:, 1])).sum(dim=1)


# name -> builder(model) returning a module whose state_dict matches the layout
BUILDERS: dict[str, Callable[[ModelLayout], nn.Module]] = {
    "gn_lenet": _gn_lenet,
    "digits_cnn": _two_convs(3, hidden=False),
    "femnist_cnn": _two_convs(5, hidden=True),
    "celeba_cnn": _celeba_cnn,
    "shakespeare_lstm": _LSTMModel,
    "reddit_rnn": _RedditRNN,
    "movielens_mf": _MatrixFactorization,
}


def build_torch_model(m: ModelLayout) -> nn.Module:
    """The PyTorch twin of a model (float32, CPU), checked against its layout.

    Raises:
        KeyError: no builder is registered for the model.
        ValueError: the module's state_dict does not match the layout.
    """
    if m.name not in BUILDERS:
        raise KeyError(
            f"no PyTorch builder for model {m.name!r}; have {list(BUILDERS)}"
        )
    module = BUILDERS[m.name](m).float()
    got = tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())
    if got != m.layout:
        raise ValueError(f"{m.name}: torch state_dict {got} != layout {m.layout}")
    return module


def load_flat(module: nn.Module, m: ModelLayout, flat: np.ndarray) -> None:
    """Copies one flat vector (SPEC Appendix C layout) into a module's parameters."""
    flat = np.ascontiguousarray(flat, dtype=np.float32)
    state = module.state_dict()
    offset = 0
    with torch.no_grad():
        for key, shape in m.layout:
            size = math.prod(shape)
            state[key].copy_(
                torch.from_numpy(flat[offset : offset + size].reshape(shape))
            )
            offset += size


def to_flat(module: nn.Module, m: ModelLayout) -> np.ndarray:
    """A module's parameters as one flat float32 vector in the layout's order."""
    state = module.state_dict()
    parts = [state[key].detach().reshape(-1).numpy() for key, _ in m.layout]
    return np.concatenate(parts).astype(np.float32, copy=False)


def _writable(x: Any, dtype: Any) -> np.ndarray:
    """A C-contiguous, writable array (``torch.from_numpy`` shares its memory)."""
    return np.require(np.asarray(x, dtype), requirements=["C", "W"])


def torch_inputs(m: ModelLayout, x: Any) -> torch.Tensor:
    """Inputs as the PyTorch model takes them: ids as int64, ``(B, H, W, C)`` images
    as contiguous NCHW float32, other values as float32 (a tensor passes through)."""
    if torch.is_tensor(x):
        return x
    if m.integer_inputs:
        return torch.from_numpy(_writable(x, np.int64))
    t = torch.from_numpy(_writable(x, np.float32))
    return t.permute(0, 3, 1, 2).contiguous() if len(m.input_shape) == 3 else t


def torch_targets(m: ModelLayout, y: Any) -> torch.Tensor:
    """Targets: int64 class ids, or float32 ratings (a tensor passes through)."""
    if torch.is_tensor(y):
        return y
    return torch.from_numpy(_writable(y, np.float32 if m.rating else np.int64))


def _loss(m: ModelLayout, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample loss: cross-entropy, or squared error for ratings."""
    if m.rating:
        return (out - y) ** 2
    return nn.functional.cross_entropy(out, y, reduction="none")


def _correct(m: ModelLayout, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample hits: the argmax, or the prediction clipped to [0.5, 5] and rounded
    to the nearest 0.5 equals the rating."""
    if m.rating:
        return torch.round(out.clamp(0.5, 5.0) * 2.0) / 2.0 == y
    return out.argmax(dim=1) == y


class TorchNodes:
    """n nodes, each a PyTorch model with its own SGD optimizer, run one by one.

    One module object is reused for every node (the node's flat vector and momentum
    buffer are loaded before and stored after its local steps), which keeps memory
    bounded in one process; the work per node is that of the original engine:
    forward, ``loss.backward()``, ``optimizer.step()``.

    Args:
        model: the model.
        x: ``(n, N)`` initial flat models (or a list of n vectors).
        lr, momentum, weight_decay: ``torch.optim.SGD``'s hyperparameters.
        threads: ``torch.set_num_threads`` (None: PyTorch's default).
    """

    def __init__(
        self,
        model: ModelLayout,
        x: Any,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        threads: int | None = None,
    ):
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model
        self.module = build_torch_model(model)
        self.x = [np.array(row, np.float32) for row in x]
        self.sgd = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.buffers: list[np.ndarray | None] = [None] * len(self.x)

    def train(
        self,
        data_x: Any,
        data_y: Any,
        ids: np.ndarray,
        w: np.ndarray,
        nodes: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Local training of the nodes, node after node (SPEC 2.1).

        Args:
            data_x, data_y: training inputs and targets (NumPy, or converted once
                with :func:`torch_inputs` / :func:`torch_targets`).
            ids: ``(n, tau, b)`` sample ids of every node's minibatches.
            w: ``(n, tau, b)`` 0/1 weights (0 pads a short minibatch); a step's loss
                is ``sum(w * loss) / max(sum(w), 1)``.
            nodes: which nodes to train (default: all).

        Returns:
            ``(len(nodes),)`` mean minibatch loss of each trained node.
        """
        xt, yt = torch_inputs(self.model, data_x), torch_targets(self.model, data_y)
        ids_t = torch.from_numpy(_writable(ids, np.int64))
        w_t = torch.from_numpy(_writable(w, np.float32))
        module, momentum = self.module, self.sgd["momentum"]
        module.train()
        losses = []
        for i in range(len(self.x)) if nodes is None else nodes:
            load_flat(module, self.model, self.x[i])
            opt = torch.optim.SGD(module.parameters(), **self.sgd)
            if momentum and self.buffers[i] is not None:
                self._set_momentum(opt, self.buffers[i])
            total = 0.0
            for s in range(ids_t.shape[1]):
                idx, ws = ids_t[i, s], w_t[i, s]
                per_sample = _loss(self.model, module(xt[idx]), yt[idx])
                loss = (per_sample * ws).sum() / ws.sum().clamp(min=1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            losses.append(total / ids_t.shape[1])
            self.x[i] = to_flat(module, self.model).copy()
            if momentum:
                self.buffers[i] = np.concatenate(
                    [
                        opt.state[p]["momentum_buffer"].reshape(-1).numpy().copy()
                        if opt.state.get(p, {}).get("momentum_buffer") is not None
                        else np.zeros(p.numel(), np.float32)
                        for p in module.parameters()
                    ]
                )
        return np.asarray(losses, np.float32)

    def _set_momentum(self, opt: torch.optim.SGD, flat: np.ndarray) -> None:
        offset = 0
        for p in self.module.parameters():
            part = flat[offset : offset + p.numel()].reshape(p.shape)
            opt.state[p]["momentum_buffer"] = torch.from_numpy(part.copy())
            offset += p.numel()

    def _metrics(self, xt: Any, yt: Any, chunk: int) -> tuple[float, float]:
        """The loaded model's loss (RMSE for ratings) and accuracy (percent); no
        samples gives ``(0, 0)``."""
        loss_sum, hits = 0.0, 0
        for start in range(0, xt.shape[0], chunk):
            out = self.module(xt[start : start + chunk])
            yb = yt[start : start + chunk]
            loss_sum += float(_loss(self.model, out, yb).sum())
            hits += int(_correct(self.model, out, yb).sum())
        size = max(int(xt.shape[0]), 1)
        loss = loss_sum / size
        return (math.sqrt(loss) if self.model.rating else loss), 100.0 * hits / size

    def evaluate(
        self,
        data_x: Any,
        data_y: Any,
        index: np.ndarray | None = None,
        size: np.ndarray | None = None,
        chunk: int = 512,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every node's model on one shared set, or on its own samples (forward only).

        Args:
            data_x, data_y: the data (NumPy, or converted once).
            index: ``(n, L)`` sample ids of each node, padded (None: every node on
                all of the data).
            size: ``(n,)`` number of valid ids of each node (with ``index``).
            chunk: samples per forward pass.

        Returns:
            ``(loss, accuracy)``, each ``(n,)``: the mean loss (RMSE for ratings) and
            the percentage of correct samples; a node without samples gets 0.
        """
        xt, yt = torch_inputs(self.model, data_x), torch_targets(self.model, data_y)
        self.module.eval()
        losses, accs = [], []
        with torch.inference_mode():
            for i, flat in enumerate(self.x):
                xs, ys = xt, yt
                if index is not None:
                    ids = torch.from_numpy(
                        _writable(index[i, : int(size[i])], np.int64)
                    )
                    xs, ys = xt[ids], yt[ids]
                load_flat(self.module, self.model, flat)
                loss, acc = self._metrics(xs, ys, chunk)
                losses.append(loss)
                accs.append(acc)
        return np.asarray(losses, np.float32), np.asarray(accs, np.float32)

    def stacked(self) -> np.ndarray:
        """All nodes' models as one ``(n, N)`` array."""
        return np.stack(self.x)
