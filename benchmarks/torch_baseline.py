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
* :class:`TorchNodes` trains n nodes one by one on given minibatch ids (tau SGD
  steps each, the simulator's weighted-mean loss) and evaluates every node's model
  on a test set.

PyTorch is an optional dependency (``pip install -e '.[bench]'``). This module
imports without it; :func:`torch_available` says whether it is there, and every
function that needs it raises :class:`TorchMissing` with the install command.

Adding a model: write a builder ``(spec) -> torch.nn.Module`` whose ``state_dict``
matches ``spec.layout`` and register it in :data:`TORCH_BUILDERS`; the flat-vector
conversion, training and inference are generic. Only classification tasks are
wired in :meth:`TorchNodes.evaluate`'s accuracy rule for now (a rating model such
as MovieLens MF would add its own loss and accuracy there).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

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


# name -> builder(spec) returning a torch.nn.Module whose state_dict matches the layout
TORCH_BUILDERS: dict[str, Callable[[ModelSpec], Any]] = {
    "gn_lenet": _gn_lenet,
    "digits_cnn": _digits_cnn,
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


def nhwc_to_torch(x: np.ndarray) -> Any:
    """(B, H, W, C) NumPy inputs to a contiguous NCHW float32 tensor."""
    torch = _torch()
    return (
        torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32)))
        .permute(0, 3, 1, 2)
        .contiguous()
    )


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
    """

    def __init__(
        self,
        spec: ModelSpec,
        x: np.ndarray,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        threads: int | None = None,
    ):
        torch = _torch()
        if threads is not None:
            torch.set_num_threads(threads)
        self.spec = spec
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
            data_x: ``(D, H, W, C)`` NHWC training inputs (NumPy), or an already
                converted ``(D, C, H, W)`` torch tensor (see :func:`nhwc_to_torch`).
            data_y: ``(D,)`` integer class ids (NumPy or torch int64).
            ids: ``(n, tau, b)`` sample ids of every node's minibatches.
            w: ``(n, tau, b)`` 0/1 weights (0 pads a short minibatch); the loss of
                a step is ``sum(w * ce) / max(sum(w), 1)`` as in the simulator.
            nodes: which nodes to train (default: all).

        Returns:
            ``(len(nodes),)`` mean minibatch loss of each trained node.
        """
        torch = _torch()
        xt = data_x if torch.is_tensor(data_x) else nhwc_to_torch(data_x)
        yt = (
            data_y
            if torch.is_tensor(data_y)
            else torch.from_numpy(np.asarray(data_y, np.int64))
        )
        ids_t = torch.from_numpy(np.asarray(ids, np.int64))
        w_t = torch.from_numpy(np.asarray(w, np.float32))
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
                out = module(xt[idx])
                ce = torch.nn.functional.cross_entropy(out, yt[idx], reduction="none")
                loss = (ce * ws).sum() / ws.sum().clamp(min=1.0)
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

    def evaluate(
        self,
        data_x: np.ndarray | Any,
        data_y: np.ndarray | Any,
        chunk: int = 512,
        nodes: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every node's model on one shared test set (forward only, no autograd).

        Args:
            data_x: ``(D, H, W, C)`` NHWC inputs, or an NCHW torch tensor.
            data_y: ``(D,)`` class ids.
            chunk: samples per forward pass.
            nodes: which nodes to evaluate (default: all).

        Returns:
            ``(loss, accuracy)``, each ``(len(nodes),)``: mean cross-entropy and the
            percentage of argmax hits, as ``evaluation.shared_metrics`` reports.
        """
        torch = _torch()
        xt = data_x if torch.is_tensor(data_x) else nhwc_to_torch(data_x)
        yt = (
            data_y
            if torch.is_tensor(data_y)
            else torch.from_numpy(np.asarray(data_y, np.int64))
        )
        module = self.module
        module.eval()
        losses, accs = [], []
        with torch.inference_mode():
            for i in range(len(self.x)) if nodes is None else nodes:
                load_flat(module, self.spec, self.x[i])
                loss_sum = 0.0
                hits = 0
                for start in range(0, xt.shape[0], chunk):
                    out = module(xt[start : start + chunk])
                    yb = yt[start : start + chunk]
                    loss_sum += float(
                        torch.nn.functional.cross_entropy(out, yb, reduction="sum")
                    )
                    hits += int((out.argmax(dim=1) == yb).sum())
                size = max(int(xt.shape[0]), 1)
                losses.append(loss_sum / size)
                accs.append(100.0 * hits / size)
        return np.asarray(losses, np.float32), np.asarray(accs, np.float32)

    def stacked(self) -> np.ndarray:
        """All nodes' models as one ``(n, N)`` array."""
        return np.stack(self.x)
