"""Datasets held on the host as NHWC float32 arrays (SPEC 7.2).

Three image datasets are offered:

* ``"digits"`` (default): scikit-learn's embedded 8x8 handwritten digits, so the
  simulator runs without any download. Pixels 0..16 are scaled to [0, 1] and then
  normalised to [-1, 1] like SPEC 7.2's ``Normalize(0.5, 0.5)``. The train/test split
  is stratified and fixed (it does not depend on the run seed), so every run
  evaluates on the same test set.
* ``"synthetic_cifar"``: CIFAR-shaped (32, 32, 3) data in [-1, 1] with 10 learnable
  but overlapping classes, generated from ``seed``; meant for benchmarks at the
  paper's input size without a download. A sample is its class's mean image plus a
  class-independent nuisance image (both constant on 8x8 pixel blocks) plus pixel
  noise, clipped to [-1, 1]; a nearest-class-mean classifier gets about 80 % test
  accuracy, so learning curves rise over many rounds instead of saturating at once.
* ``"cifar10"``: the real CIFAR-10 read through ``tensorflow_datasets.data_source``
  (random access, no TensorFlow needed), normalised as SPEC 7.2: ToTensor then
  Normalize(0.5, 0.5), i.e. ``(v / 255 - 0.5) / 0.5``. It must have been prepared in
  ``data_dir`` beforehand.

The paper's other workloads, each with users for the natural partition (SPEC 7.2):

* ``"femnist"``, ``"celeba"``, ``"shakespeare"``: LEAF JSON files prepared once under
  ``data_dir`` (default ``./data``); layout and preparation in
  :mod:`jwins_jax.data.leaf`.
* ``"movielens"``: ml-latest-small's ratings.csv under ``data_dir``, split 70/30 per
  user with ``seed``; see :mod:`jwins_jax.data.movielens`.
* ``"synthetic_femnist"``, ``"synthetic_celeba"``, ``"synthetic_shakespeare"``,
  ``"synthetic_movielens"``: stand-ins with the same shapes, classes, task, users
  and partition rule, generated from a fixed seed; see
  :mod:`jwins_jax.data.synthetic`.
* ``"synthetic_digits"``: 200,000 digits-shaped training samples (fixed seed), for
  runs with thousands of nodes; see :mod:`jwins_jax.data.synthetic`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from jwins_jax.errors import ConfigError

DATASETS = (
    "digits",
    "synthetic_cifar",
    "cifar10",
    "femnist",
    "celeba",
    "shakespeare",
    "movielens",
    "synthetic_femnist",
    "synthetic_celeba",
    "synthetic_shakespeare",
    "synthetic_movielens",
    "synthetic_digits",
)

# Each dataset read from prepared files -> its stand-in with the same shapes, classes,
# users and partition rule, which needs no files (tests and benchmarks run on these).
STAND_INS = {
    "cifar10": "synthetic_cifar",
    "femnist": "synthetic_femnist",
    "celeba": "synthetic_celeba",
    "shakespeare": "synthetic_shakespeare",
    "movielens": "synthetic_movielens",
}

# Where the file-based workloads (femnist, celeba, shakespeare, movielens) look when
# no data_dir is given.
DEFAULT_DATA_DIR = "data"

# The digits split uses this seed whatever the run seed is: the test set is fixed.
DIGITS_SPLIT_SEED = 0

_SYNTHETIC_CLASSES = 10
_SYNTHETIC_SHAPE = (32, 32, 3)
_SYNTHETIC_BLOCK = 8  # means and nuisances are constant on 8x8 blocks (a 4x4 grid)
_SYNTHETIC_MEAN_STD = 0.2
_SYNTHETIC_NUISANCE_STD = 0.5
_SYNTHETIC_NOISE_STD = 0.3


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset with a training split and a test split, held on the host.

    Attributes:
        name: One of ``DATASETS``.
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


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    synthetic_size: int = 2048,
    data_dir: str | None = None,
) -> Dataset:
    """Loads a dataset onto the host.

    Args:
        name: One of ``DATASETS``.
        seed: Generates ``"synthetic_cifar"`` and draws ``"movielens"``'s per-user
            70/30 split; the other datasets ignore it (the digits split is fixed,
            CIFAR-10 and the LEAF datasets have their own test sets, the other
            synthetic stand-ins use a fixed seed).
        test_fraction: Fraction of all samples put in the test split, for
            ``"digits"`` (stratified) and ``"synthetic_cifar"`` (whose test set has
            ``round(synthetic_size * test_fraction / (1 - test_fraction))`` samples).
            Ignored by ``"cifar10"``.
        synthetic_size: Number of ``"synthetic_cifar"`` training samples.
        data_dir: ``tensorflow_datasets`` data directory for ``"cifar10"``
            (``None``: the tfds default, ``~/tensorflow_datasets``); the folder
            holding ``femnist/``, ``celeba/``, ``shakespeare/`` and ``movielens/``
            for those datasets (``None``: ``./data``).

    Returns:
        The dataset.

    Raises:
        ConfigError: Unknown name, bad sizes or fractions, or a dataset whose files
            are missing or malformed (one line naming the path and how to prepare
            it).
    """
    if name not in DATASETS:
        raise ConfigError(
            f"dataset={name!r} is unknown: allowed datasets are {', '.join(DATASETS)}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(
            f"test_fraction={test_fraction} is not allowed: it must be in (0, 1)"
        )
    if name == "digits":
        return _load_digits(test_fraction)
    if name == "synthetic_cifar":
        return _make_synthetic_cifar(seed, test_fraction, synthetic_size)
    if name == "cifar10":
        return _load_cifar10(data_dir)
    # Workload modules import Dataset from here, so they are imported on use.
    if name == "femnist":
        from jwins_jax.data.leaf import load_femnist

        return load_femnist(data_dir)
    if name == "celeba":
        from jwins_jax.data.leaf import load_celeba

        return load_celeba(data_dir)
    if name == "shakespeare":
        from jwins_jax.data.leaf import load_shakespeare

        return load_shakespeare(data_dir)
    if name == "movielens":
        from jwins_jax.data.movielens import load_movielens

        return load_movielens(data_dir, seed=seed)
    from jwins_jax.data.synthetic import make_synthetic

    return make_synthetic(name)


def _load_digits(test_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 - 0.5) / 0.5
    x = x[..., None]  # (1797, 8, 8, 1)
    y = digits.target.astype(np.int32)
    ids = np.arange(len(y))
    try:
        train_ids, test_ids = train_test_split(
            ids, test_size=test_fraction, random_state=DIGITS_SPLIT_SEED, stratify=y
        )
    except ValueError as err:
        raise ConfigError(
            f"test_fraction={test_fraction} is not allowed for digits: both splits "
            f"need at least one sample of each of the 10 classes ({err})".replace(
                "\n", " "
            )
        ) from err
    train_ids, test_ids = np.sort(train_ids), np.sort(test_ids)
    return Dataset(
        name="digits",
        x_train=x[train_ids],
        y_train=y[train_ids],
        x_test=x[test_ids],
        y_test=y[test_ids],
        num_classes=10,
    )


def _make_synthetic_cifar(seed: int, test_fraction: float, size: int) -> Dataset:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(
            f"synthetic_size={size!r} is not allowed: it must be a positive integer"
        )
    size = int(size)
    test_size = max(1, round(size * test_fraction / (1.0 - test_fraction)))
    rng = np.random.default_rng(seed)
    h, w, c = _SYNTHETIC_SHAPE
    grid = (h // _SYNTHETIC_BLOCK, w // _SYNTHETIC_BLOCK, c)

    def blocks(count: int, std: float) -> np.ndarray:
        g = std * rng.standard_normal((count, *grid), dtype=np.float32)
        g = np.repeat(g, _SYNTHETIC_BLOCK, axis=1)
        return np.repeat(g, _SYNTHETIC_BLOCK, axis=2)  # (count, 32, 32, 3)

    means = blocks(_SYNTHETIC_CLASSES, _SYNTHETIC_MEAN_STD)  # (10, 32, 32, 3)

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(count) % _SYNTHETIC_CLASSES)
        x = means[labels] + blocks(count, _SYNTHETIC_NUISANCE_STD)
        x += _SYNTHETIC_NOISE_STD * rng.standard_normal(
            (count, h, w, c), dtype=np.float32
        )
        return np.clip(x, -1.0, 1.0, out=x), labels.astype(np.int32)

    x_train, y_train = draw(size)
    x_test, y_test = draw(test_size)
    return Dataset(
        name="synthetic_cifar",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=_SYNTHETIC_CLASSES,
    )


def records_to_arrays(
    records: Iterable[Mapping[str, Any]],
) -> tuple[np.ndarray, np.ndarray]:
    """Converts image records to normalised NHWC arrays (SPEC 7.2 CIFAR-10 input).

    Args:
        records: Mappings with ``"image"``, a ``(H, W, C)`` or ``(H, W)`` uint8
            array, and ``"label"``, an integer class id (the records of a
            ``tensorflow_datasets`` data source).

    Returns:
        ``(x, y)``: ``x`` is ``(D, H, W, C)`` float32 equal to
        ``(image / 255 - 0.5) / 0.5`` (ToTensor then Normalize(0.5, 0.5), so in
        [-1, 1]); ``y`` is ``(D,)`` int32.
    """
    images, labels = [], []
    for record in records:
        image = np.asarray(record["image"])
        if image.ndim == 2:
            image = image[..., None]
        images.append(image)
        labels.append(int(record["label"]))
    if not images:
        raise ConfigError("the dataset has no records: expected at least one image")
    x = np.stack(images).astype(np.float32)
    x = (x / 255.0 - 0.5) / 0.5
    return x, np.asarray(labels, dtype=np.int32)


def _load_cifar10(data_dir: str | None) -> Dataset:
    import pathlib

    where = data_dir if data_dir is not None else "~/tensorflow_datasets"
    root = pathlib.Path(where).expanduser() / "cifar10"
    how = (
        "on a machine with internet run `tfds build cifar10 --file_format=array_record "
        f"--data_dir={where}` and copy that directory here"
    )
    if not any(root.glob("*/dataset_info.json")):
        raise ConfigError(
            f"dataset=cifar10 is not prepared: no {root}/<version>/dataset_info.json; {how}"
        )
    try:
        import tensorflow_datasets as tfds
        from absl import logging as absl_logging

        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)  # no warnings before our line
        try:
            train, test = tfds.data_source(
                "cifar10", split=["train", "test"], data_dir=data_dir, download=False
            )
            x_train, y_train = records_to_arrays(train)
            x_test, y_test = records_to_arrays(test)
        finally:
            absl_logging.set_verbosity(verbosity)
    except ConfigError:
        raise
    except Exception as err:  # damaged files, wrong format, missing packages
        raise ConfigError(
            f"dataset=cifar10 in {root} cannot be read ({str(err).splitlines()[0][:120]}); "
            + how
        ) from err
    return Dataset(
        name="cifar10",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
    )
