"""The datasets, each declared once with everything that depends on it (SPEC 3, 7).

:data:`DATASETS` maps a name to its :class:`DatasetInfo`: how to load it, its
stand-in (or the dataset it stands in for), the partitions it supports and the
paper's run settings (:class:`RunDefaults`: model, partition, rounds, local steps,
batch size, learning rate and test interval). Every other list is derived from it:
the ``dataset`` option's choices, :data:`STAND_INS`, a config's defaults
(``Config.resolved``), ``jwins run --help`` and README's table of settings
(:func:`defaults_table`).

Where the settings come from: SPEC 3's run scripts for CIFAR-10, FEMNIST, CelebA,
Shakespeare (HEAD) and Reddit (rounds T, tau, b, lr, test interval ``ta``; they
override the step configs of SPEC 7.4); MovieLens has no run script, so its step
config's tau, b and lr are used with T = 450 of ours (experiments/README.md); the
digits defaults are the simulator's own (``make run``). A stand-in takes the
settings of the dataset it stands in for, so it runs the paper's job shape on
synthetic data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jwins_jax.data import images, leaf, movielens, reddit, synthetic
from jwins_jax.data.dataset import Dataset
from jwins_jax.data.partition import LABEL_PARTITIONS, PARTITIONS
from jwins_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RunDefaults:
    """The run settings a dataset brings; each is a config field of the same name.

    A field the user sets (config file, flag, sweep axis) wins over these.
    """

    model: str
    partition: str
    rounds: int
    local_steps: int
    batch_size: int
    lr: float
    eval_every: int


# The config fields whose default is the dataset's (in RunDefaults order).
DATASET_FIELDS = tuple(f.name for f in dataclasses.fields(RunDefaults))


@dataclasses.dataclass(frozen=True)
class LoadArgs:
    """What a loader may read besides the name (see :func:`load_dataset`)."""

    seed: int
    test_fraction: float
    synthetic_size: int
    data_dir: str | None


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """One dataset.

    Attributes:
        name: the ``dataset`` option's value.
        summary: one line for the docs: what the data are.
        loader: ``loader(LoadArgs) -> Dataset``.
        defaults: the paper's run settings.
        partitions: the ``partition`` values it supports.
        files: what must be prepared under ``data_dir`` (None: nothing; the
            docs then show ``summary``).
        stand_in: the synthetic dataset with the same shapes, classes, users and
            partition rule, for a dataset read from files.
        stands_in_for: for a stand-in, the dataset it replaces.
    """

    name: str
    summary: str
    loader: Callable[[LoadArgs], Dataset]
    defaults: RunDefaults
    partitions: tuple[str, ...]
    files: str | None = None
    stand_in: str | None = None
    stands_in_for: str | None = None


_DIGITS = RunDefaults("digits_cnn", "dirichlet", 150, 3, 8, 0.05, 10)
_CIFAR = RunDefaults("gn_lenet", "dirichlet", 2166, 3, 8, 0.01, 21)
_FEMNIST = RunDefaults("femnist_cnn", "natural", 813, 47, 16, 0.01, 10)
_CELEBA = RunDefaults("celeba_cnn", "natural", 1537, 8, 8, 0.001, 10)
_SHAKESPEARE = RunDefaults("shakespeare_lstm", "natural", 3150, 2, 16, 0.5, 31)
_REDDIT = RunDefaults("reddit_rnn", "natural", 562, 4, 16, 1.0, 11)
_MOVIELENS = RunDefaults("movielens_mf", "natural", 450, 10, 16, 0.1, 10)

_ENTRIES = (
    DatasetInfo(
        "digits",
        "scikit-learn's 8x8 digits, embedded (no download)",
        lambda a: images.load_digits(a.test_fraction),
        _DIGITS,
        LABEL_PARTITIONS,
    ),
    DatasetInfo(
        "cifar10",
        "CIFAR-10, 10 classes",
        lambda a: images.load_cifar10(a.data_dir),
        _CIFAR,
        LABEL_PARTITIONS,
        files="`tfds build cifar10 --file_format=array_record` into `data_dir`",
        stand_in="synthetic_cifar",
    ),
    DatasetInfo(
        "femnist",
        "LEAF FEMNIST, 62 classes, by writer",
        lambda a: leaf.load_femnist(a.data_dir),
        _FEMNIST,
        PARTITIONS,
        files="LEAF JSON in `data_dir/femnist/{train,test}`",
        stand_in="synthetic_femnist",
    ),
    DatasetInfo(
        "celeba",
        "LEAF CelebA, 2 classes, by celebrity",
        lambda a: leaf.load_celeba(a.data_dir),
        _CELEBA,
        PARTITIONS,
        files="LEAF JSON in `data_dir/celeba/{train,test}` + `img_align_celeba/`",
        stand_in="synthetic_celeba",
    ),
    DatasetInfo(
        "shakespeare",
        "LEAF Shakespeare (96 roles), next of 92 characters",
        lambda a: leaf.load_shakespeare(a.data_dir),
        _SHAKESPEARE,
        PARTITIONS,
        files="LEAF JSON (96 users) in `data_dir/shakespeare/{train,test}`",
        stand_in="synthetic_shakespeare",
    ),
    DatasetInfo(
        "reddit",
        "LEAF Reddit, next of 9,999 tokens, by user",
        lambda a: reddit.load_reddit(a.data_dir),
        _REDDIT,
        PARTITIONS,
        files="LEAF JSON in `data_dir/reddit/{train,test}` + `vocab/reddit_vocab.pck`",
        stand_in="synthetic_reddit",
    ),
    DatasetInfo(
        "movielens",
        "MovieLens ml-latest-small ratings, 610 users",
        lambda a: movielens.load_movielens(a.data_dir, seed=a.seed),
        _MOVIELENS,
        ("natural",),
        files="`data_dir/movielens/ratings.csv` (ml-latest-small)",
        stand_in="synthetic_movielens",
    ),
    DatasetInfo(
        "synthetic_cifar",
        "CIFAR-shaped synthetic images",
        lambda a: images.make_synthetic_cifar(
            a.seed, a.test_fraction, a.synthetic_size
        ),
        _CIFAR,
        LABEL_PARTITIONS,
        stands_in_for="cifar10",
    ),
    DatasetInfo(
        "synthetic_femnist",
        "FEMNIST-shaped synthetic writers",
        lambda a: synthetic.synthetic_femnist(),
        _FEMNIST,
        PARTITIONS,
        stands_in_for="femnist",
    ),
    DatasetInfo(
        "synthetic_celeba",
        "CelebA-shaped synthetic celebrities",
        lambda a: synthetic.synthetic_celeba(),
        _CELEBA,
        PARTITIONS,
        stands_in_for="celeba",
    ),
    DatasetInfo(
        "synthetic_shakespeare",
        "Shakespeare-shaped synthetic roles",
        lambda a: synthetic.synthetic_shakespeare(),
        _SHAKESPEARE,
        PARTITIONS,
        stands_in_for="shakespeare",
    ),
    DatasetInfo(
        "synthetic_reddit",
        "Reddit-shaped synthetic users",
        lambda a: synthetic.synthetic_reddit(),
        _REDDIT,
        PARTITIONS,
        stands_in_for="reddit",
    ),
    DatasetInfo(
        "synthetic_digits",
        "200,000 digits-shaped samples for thousands of nodes (fixed seed)",
        lambda a: synthetic.synthetic_digits(),
        _DIGITS,
        LABEL_PARTITIONS,
    ),
    DatasetInfo(
        "synthetic_movielens",
        "MovieLens-shaped synthetic ratings",
        lambda a: synthetic.synthetic_movielens(),
        _MOVIELENS,
        ("natural",),
        stands_in_for="movielens",
    ),
)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in _ENTRIES}
DATASET_NAMES = tuple(DATASETS)
# Each dataset read from prepared files -> its stand-in, which needs no files.
STAND_INS = {
    name: info.stand_in for name, info in DATASETS.items() if info.stand_in is not None
}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name``.

    Raises:
        ConfigError: an unknown name (one line listing the allowed ones).
    """
    if name not in DATASETS:
        raise ConfigError(
            f"dataset={name!r} is unknown: allowed datasets are "
            f"{', '.join(DATASET_NAMES)}"
        )
    return DATASETS[name]


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
        name: One of :data:`DATASET_NAMES`.
        seed: Generates ``"synthetic_cifar"`` and draws ``"movielens"``'s per-user
            70/30 split; the other datasets ignore it (the digits split is fixed,
            CIFAR-10 and the LEAF datasets have their own test sets, the other
            synthetic stand-ins use a fixed seed).
        test_fraction: Fraction of all samples put in the test split, for
            ``"digits"`` (stratified) and ``"synthetic_cifar"`` (whose test set has
            ``round(synthetic_size * test_fraction / (1 - test_fraction))`` samples).
            Ignored by the others.
        synthetic_size: Number of ``"synthetic_cifar"`` training samples.
        data_dir: ``tensorflow_datasets`` data directory for ``"cifar10"``
            (``None``: the tfds default, ``~/tensorflow_datasets``); the folder
            holding ``femnist/``, ``celeba/``, ``shakespeare/``, ``reddit/`` and
            ``movielens/`` for those datasets (``None``: ``./data``).

    Returns:
        The dataset.

    Raises:
        ConfigError: Unknown name, bad sizes or fractions, or a dataset whose files
            are missing or malformed (one line naming the path and how to prepare
            it).
    """
    info = dataset_info(name)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(
            f"test_fraction={test_fraction} is not allowed: it must be in (0, 1)"
        )
    return info.loader(LoadArgs(seed, test_fraction, synthetic_size, data_dir))


def check_partition(dataset: str, partition: str) -> None:
    """Raises ConfigError when ``dataset`` does not support ``partition``."""
    allowed = dataset_info(dataset).partitions
    if partition not in allowed:
        raise ConfigError(
            f"partition={partition!r} is not allowed with dataset={dataset!r}: "
            f"allowed: {', '.join(allowed)}"
        )


def defaults_table() -> str:
    """README's table of the datasets and the settings they bring (markdown).

    One row per dataset read from files or embedded; a stand-in takes the row of
    the dataset it stands in for.
    """
    head = (
        "| `--dataset` | model | partition | rounds | local_steps | batch_size "
        "| lr | eval_every | data | stand-in without data |"
    )
    rows = [head, "|" + "---|" * 10]
    for info in DATASETS.values():
        if info.stands_in_for is not None:
            continue
        d = info.defaults
        rows.append(
            f"| `{info.name}` | `{d.model}` | {d.partition} | {d.rounds} | "
            f"{d.local_steps} | {d.batch_size} | {d.lr:g} | {d.eval_every} | "
            f"{info.files or info.summary} | "
            f"{'`' + info.stand_in + '`' if info.stand_in else '-'} |"
        )
    return "\n".join(rows)
