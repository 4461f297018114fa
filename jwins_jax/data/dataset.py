"""The :class:`Dataset` type every loader returns (SPEC 7.2), and where files live.

Loaders (:mod:`jwins_jax.data.images`, :mod:`~jwins_jax.data.leaf`,
:mod:`~jwins_jax.data.reddit`, :mod:`~jwins_jax.data.movielens`,
:mod:`~jwins_jax.data.synthetic`) import this module and nothing of each other's
registry; :mod:`jwins_jax.data.registry` imports the loaders.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Where the file-based workloads (femnist, celeba, shakespeare, reddit, movielens)
# look when no data_dir is given.
DEFAULT_DATA_DIR = "data"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset with a training split and a test split, held on the host.

    Attributes:
        name: One of ``jwins_jax.data.DATASETS``.
        x_train: Training inputs, ``(D, *input_shape)``: float32 images (NHWC) or
            int32 token / id sequences.
        y_train: Training targets, ``(D,)``: int32 class ids in
            ``[0, num_classes)``, or float32 values for a ``rating`` task.
        x_test: Test inputs.
        y_test: Test targets.
        num_classes: Number of classes (0 for a ``rating`` task).
        task: Name of the scoring rule in :mod:`jwins_jax.tasks`.
        users_train: ``(D,)`` int32 user (writer, speaker, rater) of each training
            sample, for natural partitions; ``None`` when the data has no users.
        users_test: ``(D_test,)`` int32 user of each test sample when every node
            tests on its own users' samples (a local test set, MovieLens); ``None``
            when every node tests on the whole global test split.
        natural: How a natural partition assigns users to nodes: ``"shuffled"``
            (sorted users shuffled with the seed, ``floor(U / n)`` per node, SPEC
            7.1) or ``"contiguous"`` (MovieLens); ``None`` when there are no users.
        drop_last: Whether local training skips a final short minibatch (FEMNIST).
    """

    name: str
    x_train: np.ndarray  # (D, *input_shape) float32 or int32
    y_train: np.ndarray  # (D,) int32 class ids or float32 targets
    x_test: np.ndarray  # (D_test, *input_shape)
    y_test: np.ndarray  # (D_test,)
    num_classes: int
    task: str = "classification"
    users_train: np.ndarray | None = None  # (D,) int32
    users_test: np.ndarray | None = None  # (D_test,) int32
    natural: str | None = None
    drop_last: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, e.g. ``(H, W, C)`` or ``(sequence_length,)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])
