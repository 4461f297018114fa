"""The original system's engine, node by node: PyTorch models, SGD and inference.

The honest per-node anchor for the simulator's training and evaluation (DESIGN.md
"Performance habits"): the original JWINS code trains every node with its own
PyTorch model and ``torch.optim.SGD``, one node after the other. This module does
the same in one process:

* :func:`build_torch_model` builds a model of the simulator's registry in PyTorch,
  with the same ``state_dict`` keys, order and shapes as the flat layout of SPEC
  Appendix C (``ModelSpec.layout``);
* :func:`load_flat` / :func:`to_flat` move one node's flat float32 vector into and
  out of such a model;
* :func:`torch_inputs` / :func:`torch_targets` convert the simulator's NumPy inputs
  (NHWC float32 images, int32 id sequences) and targets (class ids, ratings);
* :class:`TorchNodes` trains n nodes one by one on given minibatch ids (tau SGD
  steps each, the task's weighted-mean loss: cross-entropy, or squared error for
  the rating task) and evaluates every node's model on a shared test set or on its
  own samples with the task's metrics (accuracy; RMSE and rounded-rating accuracy
  for MovieLens).

PyTorch is an optional dependency (``pip install -e '.[bench]'``). This module
imports without it; :func:`torch_available` says whether it is there, and every
function that needs it raises :class:`TorchMissing` with the install command.

Adding a model: write a builder ``(spec) -> torch.nn.Module`` whose ``state_dict``
matches ``spec.layout`` and register it in :data:`TORCH_BUILDERS`; the flat-vector
conversion, the input conversion, training and inference are generic over the
models and the two tasks of :mod:`jwins_jax.tasks`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jwins_jax import tasks
from jwins_jax.models import ModelSpec

INSTALL_HINT = "pip install -e '.[bench]' (PyTorch CPU, torch==2.13.0)"


class TorchMissing(RuntimeError):
    """Raised when a function of this module needs PyTorch and it is not installed."""


def torch_available() -> bool:
    """Whether PyTorch can be imported in this environment."""
    return importlib.util.find_spec("torch") is not None


def _torch() -> Any:
    """Imports torch, or raises :class:`TorchMissing` saying how to install it."""
    if not torch_available():
        raise TorchMissing(f"PyTorch is not installed; {INSTALL_HINT}")
    import torch

    return torch


def torch_version() -> str | None:
    """The installed PyTorch version, or None."""
    return _torch().__version__ if torch_available() else None


def torch_threads() -> int | None:
    """PyTorch's intra-op thread count, or None without PyTorch."""
    return int(_torch().get_num_threads()) if torch_available() else None


def torch_labels(y: np.ndarray) -> Any:
    """Integer class ids as an int64 tensor."""
    return _torch().from_numpy(np.asarray(y, np.int64))


# ------------------------------------------------------------------ models


def _gn_lenet(spec: ModelSpec) -> Any:
    """GN-LeNet (SPEC 7.2) as the original defines it, NCHW."""
    nn = _torch().nn
    c1, c2, c3 = (spec.entry(f"conv{i}.weight").torch_shape[0] for i in (1, 2, 3))
    in_ch = spec.input_shape[2]
    return _Sequential(
        nn,
        [
            ("conv1", nn.Conv2d(in_ch, c1, 5, padding=2)),
            ("gn1", nn.GroupNorm(2, c1)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 5, padding=2)),
            ("gn2", nn.GroupNorm(2, c2)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(c2, c3, 5, padding=2)),
            ("gn3", nn.GroupNorm(2, c3)),
            ("relu3", nn.ReLU()),
            ("pool3", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(*reversed(spec.entry("fc1.weight").torch_shape))),
        ],
    )


def _digits_cnn(spec: ModelSpec) -> Any:
    """The digits CNN of ``jwins_jax.models.digits_cnn``, NCHW."""
    nn = _torch().nn
    c1 = spec.entry("conv1.weight").torch_shape[0]
    c2 = spec.entry("conv2.weight").torch_shape[0]
    return _Sequential(
        nn,
        [
            ("conv1", nn.Conv2d(spec.input_shape[2], c1, 3, padding=1)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(*reversed(spec.entry("fc1.weight").torch_shape))),
        ],
    )


def _Sequential(nn: Any, layers: list[tuple[str, Any]]) -> Any:
    """``nn.Sequential`` with named children (state_dict keys ``conv1.weight`` ...)."""
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(layers))


def _femnist_cnn(spec: ModelSpec) -> Any:
    """The FEMNIST CNN (SPEC 7.2): two 5x5 convolutions and two linear layers, NCHW."""
    nn = _torch().nn
    c1 = spec.entry("conv1.weight").torch_shape[0]
    c2 = spec.entry("conv2.weight").torch_shape[0]
    return _Sequential(
        nn,
        [
            ("conv1", nn.Conv2d(spec.input_shape[2], c1, 5, padding=2)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 5, padding=2)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(*reversed(spec.entry("fc1.weight").torch_shape))),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(*reversed(spec.entry("fc2.weight").torch_shape))),
        ],
    )


def _celeba_cnn(spec: ModelSpec) -> Any:
    """The CelebA CNN (SPEC 7.2): four [3x3 conv, 2x2 max pool, ReLU] blocks, NCHW.

    The inputs are raw 0-255 pixels (not normalised), as in the original.
    """
    nn = _torch().nn
    convs = [
        e.torch_name.split(".")[0]
        for e in spec.layout
        if e.torch_name.startswith("conv") and e.torch_name.endswith(".weight")
    ]
    layers: list[tuple[str, Any]] = []
    in_ch = spec.input_shape[2]
    for i, name in enumerate(convs, start=1):
        out_ch = spec.entry(f"{name}.weight").torch_shape[0]
        layers += [
            (name, nn.Conv2d(in_ch, out_ch, 3, padding=1)),
            (f"pool{i}", nn.MaxPool2d(2)),
            (f"relu{i}", nn.ReLU()),
        ]
        in_ch = out_ch
    layers += [
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(*reversed(spec.entry("fc1.weight").torch_shape))),
    ]
    return _Sequential(nn, layers)


def _shakespeare_lstm(spec: ModelSpec) -> Any:
    """The Shakespeare LSTM (SPEC 7.2) as the original defines it.

    ``Embedding(92, 8)`` -> ``nn.LSTM(8, 256, num_layers=2, batch_first=True)`` (zero
    initial state, PyTorch's gate row blocks i, f, g, o and both bias vectors, as
    SPEC Appendix C lays them out) -> ReLU of all 80 outputs -> flatten -> Linear.
    Inputs are ``(B, 80)`` int64 character ids.
    """
    torch = _torch()
    nn = torch.nn
    vocab, dim = spec.entry("embedding.weight").torch_shape
    hidden = spec.entry("lstm.weight_hh_l0").torch_shape[1]
    layers = sum(e.torch_name.startswith("lstm.weight_ih_l") for e in spec.layout)
    out_features, in_features = spec.entry("l1.weight").torch_shape

    class LSTMModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(vocab, dim)
            self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
            self.l1 = nn.Linear(in_features, out_features)

        def forward(self, x: Any) -> Any:
            h, _ = self.lstm(self.embedding(x))  # (B, T, hidden)
            return self.l1(torch.relu(h).flatten(1))

    return LSTMModel()


def _reddit_rnn(spec: ModelSpec) -> Any:
    """The Reddit RNN (SPEC 7.2) as the original defines it.

    ``Embedding(9999, 200, padding_idx=0)`` -> ``nn.LSTM(200, 256, num_layers=2,
    batch_first=True)`` -> the top layer's final hidden state ``h_n[1]`` ->
    ``Linear(256, 128)`` -> ReLU -> ``Linear(128, 9999)``. Inputs are ``(B, 10)``
    int64 token ids.
    """
    torch = _torch()
    nn = torch.nn
    vocab, dim = spec.entry("embedding.weight").torch_shape
    hidden = spec.entry("rnn_cells.weight_hh_l0").torch_shape[1]
    layers = sum(e.torch_name.startswith("rnn_cells.weight_ih_l") for e in spec.layout)
    fc = spec.entry("l1.weight").torch_shape[0]

    class RNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
            self.rnn_cells = nn.LSTM(dim, hidden, batch_first=True, num_layers=layers)
            self.l1 = nn.Linear(hidden, fc)
            self.l2 = nn.Linear(fc, vocab)

        def forward(self, x: Any) -> Any:
            _, (h_n, _) = self.rnn_cells(self.embedding(x))
            return self.l2(torch.relu(self.l1(h_n[-1])))

    return RNN()


def _movielens_mf(spec: ModelSpec) -> Any:
    """MovieLens matrix factorisation (SPEC 7.2): two embeddings and a dot product.

    Inputs are ``(B, 2)`` int64 ``[user, item]`` ids, already 0-based (the original
    shifts its 1-based ids inside the model; our loader does it when reading the
    ratings). The output is ``(B,)`` predicted ratings.
    """
    nn = _torch().nn
    users, factors = spec.entry("user_factors.weight").torch_shape
    items, _ = spec.entry("item_factors.weight").torch_shape

    class MatrixFactorization(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user_factors = nn.Embedding(users, factors)
            self.item_factors = nn.Embedding(items, factors)

        def forward(self, x: Any) -> Any:
            u = self.user_factors(x[:, 0])
            v = self.item_factors(x[:, 1])
            return (u * v).sum(dim=1)

    return MatrixFactorization()


# name -> builder(spec) returning a torch.nn.Module whose state_dict matches the layout
TORCH_BUILDERS: dict[str, Callable[[ModelSpec], Any]] = {
    "gn_lenet": _gn_lenet,
    "digits_cnn": _digits_cnn,
    "femnist_cnn": _femnist_cnn,
    "celeba_cnn": _celeba_cnn,
    "shakespeare_lstm": _shakespeare_lstm,
    "reddit_rnn": _reddit_rnn,
    "movielens_mf": _movielens_mf,
}


def build_torch_model(spec: ModelSpec) -> Any:
    """The PyTorch twin of a registered model, checked against its flat layout.

    Args:
        spec: the simulator's model spec.

    Returns:
        A ``torch.nn.Module`` (float32, CPU) whose ``state_dict`` has exactly the
        keys, order and shapes of ``spec.layout``.

    Raises:
        TorchMissing: PyTorch is not installed.
        KeyError: no PyTorch builder is registered for the model.
        ValueError: the built module's state_dict does not match the layout.
    """
    _torch()
    if spec.name not in TORCH_BUILDERS:
        raise KeyError(
            f"no PyTorch builder for model {spec.name!r}; registered: "
            f"{', '.join(sorted(TORCH_BUILDERS))}"
        )
    module = TORCH_BUILDERS[spec.name](spec).float()
    got = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    want = [(e.torch_name, tuple(e.torch_shape)) for e in spec.layout]
    if got != want:
        raise ValueError(f"{spec.name}: torch state_dict {got} != layout {want}")
    return module


def load_flat(module: Any, spec: ModelSpec, flat: np.ndarray) -> None:
    """Copies one flat vector (SPEC Appendix C layout) into a module's parameters."""
    torch = _torch()
    flat = np.ascontiguousarray(flat, dtype=np.float32)
    state = module.state_dict()
    with torch.no_grad():
        for e in spec.layout:
            part = torch.from_numpy(flat[e.offset : e.end].reshape(e.torch_shape))
            state[e.torch_name].copy_(part)


def to_flat(module: Any, spec: ModelSpec) -> np.ndarray:
    """A module's parameters as one flat float32 vector in the layout's order."""
    state = module.state_dict()
    parts = [state[e.torch_name].detach().reshape(-1).numpy() for e in spec.layout]
    return np.concatenate(parts).astype(np.float32, copy=False)


def _writable(x: Any, dtype: Any) -> np.ndarray:
    """A C-contiguous, writable NumPy array (``torch.from_numpy`` shares its memory;
    arrays read back from JAX are read-only, so those are copied)."""
    return np.require(np.asarray(x, dtype), requirements=["C", "W"])


def nhwc_to_torch(x: np.ndarray) -> Any:
    """(B, H, W, C) NumPy inputs to a contiguous NCHW float32 tensor."""
    torch = _torch()
    return torch.from_numpy(_writable(x, np.float32)).permute(0, 3, 1, 2).contiguous()


def torch_inputs(spec: ModelSpec, x: np.ndarray | Any) -> Any:
    """The simulator's inputs of a model as the PyTorch model takes them.

    Args:
        spec: the model spec (its ``input_dtype`` and ``input_shape``).
        x: ``(B, *input_shape)`` NumPy inputs; a torch tensor passes through.

    Returns:
        Integer ids (token sequences, ``[user, item]`` pairs) as int64; images
        ``(B, H, W, C)`` as NCHW float32 (:func:`nhwc_to_torch`); other real
        inputs as float32.
    """
    torch = _torch()
    if torch.is_tensor(x):
        return x
    if np.issubdtype(np.dtype(spec.input_dtype), np.integer):
        return torch.from_numpy(_writable(x, np.int64))
    if len(spec.input_shape) == 3:
        return nhwc_to_torch(x)
    return torch.from_numpy(_writable(x, np.float32))


def task_of(spec: ModelSpec) -> tasks.Task:
    """The task a model's outputs are scored with: ratings when it has no classes."""
    return tasks.RATING if spec.num_classes == 0 else tasks.CLASSIFICATION


def torch_targets(task: tasks.Task, y: np.ndarray | Any) -> Any:
    """Targets as a tensor: int64 class ids, or float32 ratings (a torch tensor
    passes through)."""
    torch = _torch()
    if torch.is_tensor(y):
        return y
    dtype = np.int64 if task.name == "classification" else np.float32
    return torch.from_numpy(_writable(y, dtype))


def _sample_loss(task: tasks.Task, out: Any, y: Any) -> Any:
    """Per-sample loss of the task (``tasks.Task.loss``): cross-entropy or squared
    error."""
    torch = _torch()
    if task.name == "classification":
        return torch.nn.functional.cross_entropy(out, y, reduction="none")
    return (out - y) ** 2


def _sample_correct(task: tasks.Task, out: Any, y: Any) -> Any:
    """Per-sample hits (``tasks.Task.correct``): argmax, or the prediction clipped to
    [0.5, 5] and rounded to the nearest 0.5 equals the rating."""
    torch = _torch()
    if task.name == "classification":
        return out.argmax(dim=1) == y
    return torch.round(out.clamp(0.5, 5.0) * 2.0) / 2.0 == y


def _report_loss(task: tasks.Task, mean_loss: float) -> float:
    """The loss as reported (``tasks.Task.report_loss``): the mean, or its root."""
    return mean_loss if task.name == "classification" else float(np.sqrt(mean_loss))


# ------------------------------------------------------------------ nodes


class TorchNodes:
    """n nodes, each a PyTorch model with its own SGD optimizer, run one by one.

    One module object is reused for every node (the node's flat vector and momentum
    buffer are loaded before and stored after its local steps), which is how a
    single-process loop over nodes keeps memory bounded; the work per node is that
    of the original engine: forward, ``loss.backward()``, ``optimizer.step()``.

    Args:
        spec: the model spec.
        x: ``(n, N)`` initial flat models.
        lr, momentum, weight_decay: SGD hyperparameters (``torch.optim.SGD``).
        threads: ``torch.set_num_threads`` (None: PyTorch's default).
        task: the scoring rule (default: :func:`task_of` the model).
    """

    def __init__(
        self,
        spec: ModelSpec,
        x: np.ndarray,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        threads: int | None = None,
        task: tasks.Task | None = None,
    ):
        torch = _torch()
        if threads is not None:
            torch.set_num_threads(threads)
        self.spec = spec
        self.task = task_of(spec) if task is None else task
        self.module = build_torch_model(spec)
        self.x = [np.array(row, np.float32) for row in np.asarray(x)]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[np.ndarray | None] = [None] * len(self.x)

    def _optimizer(self) -> Any:
        return _torch().optim.SGD(
            self.module.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )

    def inputs(self, data_x: np.ndarray | Any) -> Any:
        """:func:`torch_inputs` of this model (convert once, train many rounds)."""
        return torch_inputs(self.spec, data_x)

    def targets(self, data_y: np.ndarray | Any) -> Any:
        """:func:`torch_targets` of this task."""
        return torch_targets(self.task, data_y)

    def train(
        self,
        data_x: np.ndarray | Any,
        data_y: np.ndarray | Any,
        ids: np.ndarray,
        w: np.ndarray,
        nodes: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Local training of the nodes, node after node (SPEC 2.1).

        Args:
            data_x: ``(D, *input_shape)`` training inputs as the simulator holds them
                (NumPy), or already converted by :meth:`inputs`.
            data_y: ``(D,)`` targets (NumPy, or converted by :meth:`targets`).
            ids: ``(n, tau, b)`` sample ids of every node's minibatches.
            w: ``(n, tau, b)`` 0/1 weights (0 pads a short minibatch); the loss of
                a step is ``sum(w * loss) / max(sum(w), 1)`` as in the simulator,
                with the task's per-sample loss.
            nodes: which nodes to train (default: all).

        Returns:
            ``(len(nodes),)`` mean minibatch loss of each trained node.
        """
        torch = _torch()
        xt, yt = self.inputs(data_x), self.targets(data_y)
        ids_t = torch.from_numpy(_writable(ids, np.int64))
        w_t = torch.from_numpy(_writable(w, np.float32))
        module = self.module
        module.train()
        losses = []
        for i in range(len(self.x)) if nodes is None else nodes:
            load_flat(module, self.spec, self.x[i])
            opt = self._optimizer()
            if self.momentum and self.buffers[i] is not None:
                self._set_momentum(opt, self.buffers[i])
            total = 0.0
            for s in range(ids_t.shape[1]):
                idx, ws = ids_t[i, s], w_t[i, s]
                per_sample = _sample_loss(self.task, module(xt[idx]), yt[idx])
                loss = (per_sample * ws).sum() / ws.sum().clamp(min=1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            losses.append(total / ids_t.shape[1])
            self.x[i] = to_flat(module, self.spec).copy()
            if self.momentum:
                self.buffers[i] = self._get_momentum(opt)
        return np.asarray(losses, np.float32)

    def _get_momentum(self, opt: Any) -> np.ndarray:
        parts = []
        for p in self.module.parameters():
            buf = opt.state.get(p, {}).get("momentum_buffer")
            parts.append(
                np.zeros(p.numel(), np.float32)
                if buf is None
                else buf.detach().reshape(-1).numpy().copy()
            )
        return np.concatenate(parts)

    def _set_momentum(self, opt: Any, flat: np.ndarray) -> None:
        torch = _torch()
        offset = 0
        for p in self.module.parameters():
            part = flat[offset : offset + p.numel()].reshape(p.shape)
            opt.state[p]["momentum_buffer"] = torch.from_numpy(part.copy())
            offset += p.numel()

    def _metrics(self, xt: Any, yt: Any, chunk: int) -> tuple[float, float]:
        """The loaded model's reported loss and accuracy (percent) on ``xt, yt``.

        No samples gives ``(0, 0)``, as ``evaluation.per_node_metrics`` reports.
        """
        loss_sum, hits = 0.0, 0
        for start in range(0, xt.shape[0], chunk):
            out = self.module(xt[start : start + chunk])
            yb = yt[start : start + chunk]
            loss_sum += float(_sample_loss(self.task, out, yb).sum())
            hits += int(_sample_correct(self.task, out, yb).sum())
        size = max(int(xt.shape[0]), 1)
        return _report_loss(self.task, loss_sum / size), 100.0 * hits / size

    def evaluate(
        self,
        data_x: np.ndarray | Any,
        data_y: np.ndarray | Any,
        chunk: int = 512,
        nodes: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every node's model on one shared test set (forward only, no autograd).

        Args:
            data_x: ``(D, *input_shape)`` inputs (NumPy, or converted by
                :meth:`inputs`).
            data_y: ``(D,)`` targets.
            chunk: samples per forward pass.
            nodes: which nodes to evaluate (default: all).

        Returns:
            ``(loss, accuracy)``, each ``(len(nodes),)``, as
            ``evaluation.shared_metrics`` reports them: the mean loss (RMSE for
            ratings) and the percentage of correct samples.
        """
        torch = _torch()
        xt, yt = self.inputs(data_x), self.targets(data_y)
        self.module.eval()
        losses, accs = [], []
        with torch.inference_mode():
            for i in range(len(self.x)) if nodes is None else nodes:
                load_flat(self.module, self.spec, self.x[i])
                loss, acc = self._metrics(xt, yt, chunk)
                losses.append(loss)
                accs.append(acc)
        return np.asarray(losses, np.float32), np.asarray(accs, np.float32)

    def evaluate_local(
        self,
        data_x: np.ndarray | Any,
        data_y: np.ndarray | Any,
        index: np.ndarray,
        size: np.ndarray,
        chunk: int = 512,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every node's model on its own samples (forward only, no autograd).

        The per-node sets of ``evaluation.per_node_metrics``: a node's training
        data for the train loss, or its local test ratings (MovieLens, SPEC 7.3).

        Args:
            data_x, data_y: the data the ids point into (NumPy or converted).
            index: ``(n, L)`` sample ids of each node, padded.
            size: ``(n,)`` number of valid ids of each node.
            chunk: samples per forward pass.

        Returns:
            ``(loss, accuracy)``, each ``(n,)``; a node without samples gets 0.
        """
        torch = _torch()
        xt, yt = self.inputs(data_x), self.targets(data_y)
        index, size = np.asarray(index, np.int64), np.asarray(size)
        self.module.eval()
        losses, accs = [], []
        with torch.inference_mode():
            for i in range(len(self.x)):
                ids = torch.from_numpy(index[i, : int(size[i])])
                load_flat(self.module, self.spec, self.x[i])
                loss, acc = self._metrics(xt[ids], yt[ids], chunk)
                losses.append(loss)
                accs.append(acc)
        return np.asarray(losses, np.float32), np.asarray(accs, np.float32)

    def stacked(self) -> np.ndarray:
        """All nodes' models as one ``(n, N)`` array."""
        return np.stack(self.x)
