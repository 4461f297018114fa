"""The per-node baselines, each in a fresh Python process that imports no JAX.

The original system runs one PyTorch model per node and shares with NumPy and
PyWavelets. Its engine (:mod:`jwins_jax.testing.reference`) runs here in a process of
its own: no JAX runtime, none of our allocator or XLA tuning, PyTorch with its default
threads and OpenMP settings. The process receives everything as plain data (an npz
file: initial flat models, minibatch ids, the graph, per-node alphas, the data; a JSON
file: the model's layout as names and shapes, the hyperparameters), answers one
command per line on stdin with the durations it measured (so the suite interleaves it
with our measurement), and writes its outputs back for the equality checks.

Servers (``kind``):

* ``rounds``: ``round`` trains every node with :class:`TorchNodes` and runs one round
  of :mod:`sharing_ref` (full sharing or JWINS with the given alphas); ``eval`` tests
  every node's model as our evaluation does. The first round's trained and shared
  models and byte counts are kept for the checks.
* ``kernels``: the sharing kernels node by node on one ``(n, N)`` stack (the
  inputs of :func:`jwins_jax.kernelbench.make_data`): ``wavelet_forward`` and
  ``wavelet_inverse`` (PyWavelets; the inverse of each node's own coefficients),
  ``topk`` (top-k of ``|x|`` per node at its k), ``mix`` (MH averaging) and
  ``fill_with_own`` (MH averaging of the entries each neighbour sent, the
  receiver's own values elsewhere).

Run as ``python -m benchmarks.baseline DIR`` by :class:`Baseline`.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TAG = "BASELINE "


class Rounds:
    """Per-node rounds of the original's engine (see the module docstring)."""

    def __init__(self, meta: dict[str, Any], a: dict[str, np.ndarray]):
        from jwins_jax.testing.reference import layout, sharing_ref, torch_nodes

        model = layout.ModelLayout.from_dict(meta["model"])
        self.nodes = torch_nodes.TorchNodes(model, a["x0"], **meta["sgd"])
        self.train_data = (
            torch_nodes.torch_inputs(model, a["train_x"]),
            torch_nodes.torch_targets(model, a["train_y"]),
        )
        test = (
            torch_nodes.torch_inputs(model, a["test_x"]),
            torch_nodes.torch_targets(model, a["test_y"]),
        )
        local = "tests_index" in a
        self.test = (*test, a["tests_index"], a["tests_size"]) if local else test
        self.own = (*self.train_data, a["nodes_index"], a["nodes_size"])
        self.neighbors = sharing_ref.neighbors_from_adjacency(a["adjacency"])
        self.net = sharing_ref.make_network(meta["strategy"], a["x0"], **meta["params"])
        self.ids, self.w, self.alphas = a["ids"], a["w"], a.get("alphas")
        self.check, self.done, self.outputs = meta["check"], 0, {}
        self.info = {"torch": torch_nodes.torch.__version__}
        self.info["torch_threads"] = torch_nodes.torch.get_num_threads()

    def round(self) -> dict[str, float]:
        r = self.done % len(self.ids)
        t0 = time.perf_counter()
        self.nodes.train(*self.train_data, self.ids[r], self.w[r])
        t1 = time.perf_counter()
        alphas = None if self.alphas is None else {"alpha": self.alphas[r]}
        _, stats = self.net.step(self.nodes.x, self.neighbors, alphas, stack=False)
        t2 = time.perf_counter()
        if self.done == 0 and self.check:
            self.outputs["trained"] = self.nodes.stacked()
            self.outputs["shared"] = np.stack([nd.model for nd in self.net.nodes])
            self.outputs["value_bytes"] = stats.value_bytes
            self.outputs["meta_bytes"] = stats.meta_bytes
        self.nodes.x = [nd.model for nd in self.net.nodes]
        self.done += 1
        return {"train": t1 - t0, "share": t2 - t1, "round": t2 - t0}

    def eval(self) -> dict[str, float]:
        t0 = time.perf_counter()
        self.nodes.evaluate(*self.test)
        self.nodes.evaluate(*self.own)
        return {"eval": time.perf_counter() - t0}


class Kernels:
    """The sharing kernels node by node (see the module docstring)."""

    def __init__(self, meta: dict[str, Any], a: dict[str, np.ndarray]):
        from jwins_jax.testing.reference import sharing_ref as ref

        self.ref = ref
        self.rows = [row.copy() for row in a["x"]]  # each node holds its own model
        self.k = [int(v) for v in a["k"]]
        self.transform = ref.WaveletTransform(a["x"].shape[1], **meta["wavelet"])
        self.coefs = [self.transform.forward(row) for row in self.rows]
        nbrs = ref.neighbors_from_adjacency(a["adjacency"])
        w = ref.mh_matrix(nbrs)
        self.mixing = [
            [(j, float(w[i, j])) for j in sorted(nb)] for i, nb in enumerate(nbrs)
        ]
        self.self_w = [float(w[i, i]) for i in range(len(nbrs))]
        self.sent = [np.flatnonzero(m) for m in a["mask"]]
        self.outputs: dict[str, np.ndarray] = {}
        self.info: dict[str, Any] = {}

    def _timed(self, name: str, fn) -> dict[str, float]:
        t0 = time.perf_counter()
        out = [fn(i, row) for i, row in enumerate(self.rows)]
        seconds = time.perf_counter() - t0
        self.outputs[name] = np.stack(out)
        return {name: seconds}

    def wavelet_forward(self) -> dict[str, float]:
        return self._timed(
            "wavelet_forward", lambda i, row: self.transform.forward(row)
        )

    def wavelet_inverse(self) -> dict[str, float]:
        inverse = self.transform.inverse
        return self._timed("wavelet_inverse", lambda i, row: inverse(self.coefs[i]))

    def topk(self) -> dict[str, float]:
        def one(i: int, row: np.ndarray) -> np.ndarray:
            mask = np.zeros(row.size, bool)
            mask[self.ref.topk_indices(row, self.k[i])] = True
            return mask

        return self._timed("topk", one)

    def mix(self) -> dict[str, float]:
        def one(i: int, row: np.ndarray) -> np.ndarray:
            z = self.self_w[i] * row
            for j, wij in self.mixing[i]:
                z = z + wij * self.rows[j]
            return z

        return self._timed("mix", one)

    def fill_with_own(self) -> dict[str, float]:
        def one(i: int, row: np.ndarray) -> np.ndarray:
            z = self.self_w[i] * row
            for j, wij in self.mixing[i]:
                q = row.copy()  # fill what j did not send with our own values
                q[self.sent[j]] = self.rows[j][self.sent[j]]
                z = z + wij * q
            return z

        return self._timed("fill_with_own", one)


SERVERS = {"rounds": Rounds, "kernels": Kernels}


def _reply(data: dict[str, Any]) -> None:
    sys.stdout.write(TAG + json.dumps(data) + "\n")
    sys.stdout.flush()


def serve(folder: pathlib.Path) -> None:
    """The baseline process: set up, then one command per stdin line until ``done``."""
    meta = json.loads((folder / "in.json").read_text())
    with np.load(folder / "in.npz") as npz:
        arrays = dict(npz)
    server = SERVERS[meta["kind"]](meta, arrays)
    del arrays
    _reply({**server.info, "jax_imported": "jax" in sys.modules, "pid": os.getpid()})
    for line in sys.stdin:
        command = line.strip()
        if command == "fetch":  # hand the outputs over and forget them
            np.savez(folder / "out.npz", **server.outputs)
            server.outputs = {}
            _reply({"saved": True})
        elif command == "done":
            break
        else:
            _reply(getattr(server, command)())


class Baseline:
    """A baseline process (``kind``: a key of :data:`SERVERS`) and its outputs.

    Args:
        kind: ``"rounds"`` or ``"kernels"``.
        meta: JSON-able settings (the server's ``meta``).
        arrays: the NumPy inputs.

    Attributes:
        info: what the process reported once set up (PyTorch version and threads,
            whether JAX got imported, its pid).
    """

    def __init__(self, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.dir = tempfile.TemporaryDirectory(prefix="jwins-baseline-")
        folder = pathlib.Path(self.dir.name)
        (folder / "in.json").write_text(json.dumps({**meta, "kind": kind}))
        np.savez(folder / "in.npz", **arrays)
        self.err = open(folder / "stderr", "w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.baseline", str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            cwd=REPO,
        )
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])
        self.proc.wait()
        self.err.seek(0)
        lines = self.err.read().strip().splitlines() or ["no output"]
        raise RuntimeError(f"baseline process failed: {lines[-1]}")

    def __call__(self, command: str) -> dict[str, float]:
        """Runs one command in the process; returns the durations it measured."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def fetch(self) -> dict[str, np.ndarray]:
        """The outputs the process kept since the last fetch."""
        self("fetch")
        with np.load(pathlib.Path(self.dir.name) / "out.npz") as npz:
            return dict(npz)

    def close(self) -> None:
        """Ends the process."""
        self.proc.stdin.write("done\n")
        self.proc.stdin.close()
        self.proc.wait()
        self.err.close()
        self.dir.cleanup()


if __name__ == "__main__":
    serve(pathlib.Path(sys.argv[1]))
