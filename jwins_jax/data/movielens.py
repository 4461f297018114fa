"""MovieLens ml-latest-small ratings (SPEC 7.2, 7.3, 10 quirks 2 and 11).

The file is prepared once: download
https://files.grouplens.org/datasets/movielens/ml-latest-small.zip and unzip it into
``DATA_DIR/movielens`` (``data_dir``, default ``./data``), so that either
``DATA_DIR/movielens/ratings.csv`` or ``DATA_DIR/movielens/ml-latest-small/ratings.csv``
exists. The csv starts with the header ``userId,movieId,rating,timestamp``;
ml-latest-small has 100,836 ratings by 610 users of 9,724 movies.

What the loader produces:

* Ids: users are numbered by their sorted ``userId`` and movies by their sorted
  ``movieId``, both from 0 (the original maps movies to 1..9724 in sorted order and
  shifts both 1-based ids by -1 inside the model; ml-latest-small's user ids are
  already 1..610). ``x`` is (D, 2) int32 ``[user, item]``; ``y`` float32 ratings in
  {0.5, 1, ..., 5}; ``task="rating"``, ``num_classes=0``.
* Split (per user, 70/30): a user with ``m`` ratings puts ``k = round(0.7 * m)`` of
  them in the training set, with Python's ``round`` (half to even) on the float64
  product as pandas' ``df.sample(frac=0.7)`` does (m = 15: 10.5, k = 10; m = 25:
  17.5, k = 18; m = 45: 31.499999999999996, k = 31), and the other ``m - k`` in its local
  test set. Which ratings go to training is a uniformly random subset drawn with
  ``numpy.random.default_rng(seed)`` (one permutation per user, users in order),
  listed in the drawn order; the test ratings keep file order. The original draws
  with pandas (HEAD: ``random_state=seed``; the paper branch: unseeded), so the
  subsets differ from the original's while their sizes are the same.
* Users are in increasing id order in both splits; ``users_train`` and
  ``users_test`` give each sample's user. ``natural="contiguous"`` (SPEC 7.2: 610 =
  96 * 6 + 34 users, nodes 0-33 own 7 users and the others 6) and every node tests on
  its own users' test ratings (``partition.local_test_parts``).
* The MF model has tables for 610 users and 9,724 movies, so a ratings file with
  more users or movies is rejected.
"""

from __future__ import annotations

import csv
import pathlib

import numpy as np

from jwins_jax.data.dataset import DEFAULT_DATA_DIR, Dataset
from jwins_jax.errors import ConfigError

MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
TRAIN_FRACTION = 0.7
MAX_USERS = 610  # rows of the MF model's user table
MAX_ITEMS = 9724  # rows of its item table
RATINGS = tuple(0.5 * k for k in range(1, 11))


def _root(data_dir: str | None) -> pathlib.Path:
    base = pathlib.Path(DEFAULT_DATA_DIR if data_dir is None else data_dir)
    return base.expanduser() / "movielens"


def _how(root: pathlib.Path) -> str:
    return f"download {MOVIELENS_URL} and unzip it into {root}"


def train_count(num_ratings: int) -> int:
    """Ratings of a user that go to training: ``round(0.7 * m)`` as pandas does."""
    return round(TRAIN_FRACTION * num_ratings)


def split_per_user(users: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-user 70/30 train/test split (see the module docstring).

    Args:
        users: ``(D,)`` integer user of every rating, in file order.
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        ``(train_ids, test_ids)``: int64 row ids; users in increasing order, each
        user's training rows in the drawn order and test rows in file order.
    """
    rng = np.random.default_rng(seed)
    order = np.argsort(users, kind="stable")
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    train, test = [], []
    for rows in np.split(order, bounds):
        if len(rows) == 0:
            continue
        k = train_count(len(rows))
        perm = rng.permutation(len(rows))
        train.append(rows[perm[:k]])
        test.append(np.sort(rows[perm[k:]]))
    return (
        np.concatenate(train).astype(np.int64),
        np.concatenate(test).astype(np.int64),
    )


def ratings_path(data_dir: str | None) -> pathlib.Path:
    """The ratings.csv that :func:`load_movielens` reads.

    Raises:
        ConfigError: neither layout exists.
    """
    root = _root(data_dir)
    candidates = [root / "ratings.csv", root / "ml-latest-small" / "ratings.csv"]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        f"dataset=movielens needs {candidates[0]} (or {candidates[1]}), which does "
        f"not exist: {_how(root)}"
    )


def read_ratings(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads ``userId,movieId,rating,...`` rows.

    Returns:
        ``(user_ids, movie_ids, ratings)`` as in the file: int64, int64, float32.

    Raises:
        ConfigError: a wrong header or a bad row, naming the file and line.
    """
    root = path.parent if path.parent.name != "ml-latest-small" else path.parent.parent
    users, movies, ratings = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != [
                "userId",
                "movieId",
                "rating",
            ]:
                raise ConfigError(
                    f"{path} does not start with the header "
                    f"userId,movieId,rating,timestamp: {_how(root)}"
                )
            for row in reader:
                if not row:
                    continue
                try:
                    user, movie, rating = int(row[0]), int(row[1]), float(row[2])
                except (IndexError, ValueError):
                    user, movie, rating = -1, -1, 0.0
                if user < 0 or movie < 0 or rating not in RATINGS:
                    raise ConfigError(
                        f"{path} line {reader.line_num} is not a rating row "
                        "(userId,movieId,rating with a rating in 0.5, 1.0, ..., 5.0): "
                        f"{_how(root)}"
                    )
                users.append(user)
                movies.append(movie)
                ratings.append(rating)
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{path} cannot be read as text: {_how(root)}") from None
    if not ratings:
        raise ConfigError(f"{path} holds no ratings: {_how(root)}")
    return (
        np.asarray(users, np.int64),
        np.asarray(movies, np.int64),
        np.asarray(ratings, np.float32),
    )


def ratings_dataset(
    name: str,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    seed: int,
) -> Dataset:
    """A rating dataset with per-user local test sets from 0-based id arrays.

    Args:
        name: the dataset name.
        users: ``(D,)`` 0-based user ids, file order.
        items: ``(D,)`` 0-based item ids.
        ratings: ``(D,)`` float32 ratings.
        seed: seed of the per-user split.
    """
    train, test = split_per_user(users, seed)
    x = np.stack([users, items], axis=1).astype(np.int32)
    return Dataset(
        name=name,
        x_train=x[train],
        y_train=ratings[train].astype(np.float32),
        x_test=x[test],
        y_test=ratings[test].astype(np.float32),
        num_classes=0,
        task="rating",
        users_train=users[train].astype(np.int32),
        users_test=users[test].astype(np.int32),
        natural="contiguous",
    )


def load_movielens(data_dir: str | None = None, seed: int = 0) -> Dataset:
    """MovieLens ml-latest-small with per-user 70/30 splits (SPEC 7.2).

    Args:
        data_dir: the data directory (``None``: ``./data``).
        seed: seed of the per-user train/test split.

    Returns:
        ``x`` (D, 2) int32 0-based ``[user, item]``, ``y`` float32 ratings,
        ``users_train`` / ``users_test``, ``task="rating"``,
        ``natural="contiguous"``.

    Raises:
        ConfigError: a missing or malformed ratings.csv, or more users or movies
            than the MF model holds (one line).
    """
    path = ratings_path(data_dir)
    user_ids, movie_ids, ratings = read_ratings(path)
    user_list, users = np.unique(user_ids, return_inverse=True)
    movie_list, items = np.unique(movie_ids, return_inverse=True)
    if len(user_list) > MAX_USERS or len(movie_list) > MAX_ITEMS:
        raise ConfigError(
            f"{path} has {len(user_list)} users and {len(movie_list)} movies, more "
            f"than the {MAX_USERS} and {MAX_ITEMS} of the MF model (ml-latest-small): "
            f"{_how(_root(data_dir))}"
        )
    return ratings_dataset("movielens", users, items, ratings, seed)
