"""FEMNIST, CelebA and Shakespeare from LEAF JSON files (SPEC 7.2); Reddit's are
read by :mod:`jwins_jax.data.reddit` with the folder reader of this module.

Nothing is downloaded: the files are prepared once with LEAF
(https://github.com/TalwalkarLab/leaf) and laid out under the data directory
(``data_dir``, default ``./data``) as::

    DATA_DIR/femnist/train/*.json       DATA_DIR/femnist/test/*.json
    DATA_DIR/celeba/train/*.json        DATA_DIR/celeba/test/*.json
    DATA_DIR/celeba/img_align_celeba/   (the CelebA images named in the JSON files)
    DATA_DIR/shakespeare/train/*.json   DATA_DIR/shakespeare/test/*.json
    DATA_DIR/reddit/train/*.json        DATA_DIR/reddit/test/*.json
    DATA_DIR/reddit/vocab/reddit_vocab.pck

Each JSON file holds ``{"users": [...], "num_samples": ..., "user_data": {user:
{"x": [...], "y": [...]}}}``: LEAF's own multi-user files (``leaf/data/<name>/data/
{train,test}``) and decentralizepy's one-file-per-user copies (``per_user_data``)
both fit; ``num_samples`` is not read. Preparing them:

* FEMNIST: ``./preprocess.sh -s niid --sf 1.0 -k 0 -t sample`` in
  ``leaf/data/femnist``; copy ``data/train`` and ``data/test``.
* CelebA: put the aligned CelebA images and attribute files in
  ``leaf/data/celeba/data/raw`` (see LEAF's README), run
  ``./preprocess.sh -s niid --sf 1.0 -k 5 -t sample`` in ``leaf/data/celeba``; copy
  ``data/train``, ``data/test`` and ``data/raw/img_align_celeba``.
* Shakespeare: ``./preprocess.sh -s niid --sf 1.0 -k 0 -t sample -tf 0.8`` in
  ``leaf/data/shakespeare``; copy ``data/train`` and ``data/test``. The paper uses a
  96-user subset (``shakespeare_sub96``, D = 97,545, one user per node) whose choice
  of users is not published: keep the files of 96 users in both folders.

What the loaders produce (SPEC 7.2):

* Training users are sorted by name and numbered 0..U-1 in that order
  (``users_train``); their samples are concatenated in that order, each user's in
  file order. The original sorts its per-user file names ``<user>.json`` instead;
  the two orders agree unless a user name continues a shorter one with a character
  below ``"."`` (e.g. ``"a-1"`` and ``"a"``). ``natural="shuffled"``: the natural
  partition shuffles these users with the seed (``partition.user_nodes``).
* The test set is global (every node tests on all of it): files in sorted name
  order, users in file order, samples in file order. (The original reads the test
  folder in ``os.listdir`` order, which is unspecified.) A user appearing twice in
  one folder is an error.
* FEMNIST: ``x`` (D, 28, 28, 1) float32 as stored by LEAF (in [0, 1]); ``y`` int32 in
  [0, 62). ``drop_last=True`` (SPEC 2.1).
* CelebA: ``x`` (D, 84, 84, 3) float32 raw 0-255 pixel values, not normalised: each
  image is opened with PIL, resized to 84x84 with PIL's default filter and converted
  to RGB, as the original does. The original opens ``<name without extension>.png``;
  we look for that file first and then for the name as written in the JSON file
  (LEAF names the ``.jpg`` originals). ``y`` int32 in {0, 1}. One image takes
  84 KiB as float32: 5.4 GB for the 63,741 training images of SPEC 3, about 15 GB
  for all 180,000 of LEAF's full CelebA train split. (The model casts its input to
  float32, so a caller may keep the pixels as uint8 instead.)
* Shakespeare: ``x`` (D, 80) int32 character ids, ``y`` (D,) int32 id of the next
  character. The vocabulary is the original's 92-character list, which holds ``{``
  and ``}`` twice; the char -> id map keeps the last occurrence, so ids 86 and 88
  exist in the model but never occur. The test set keeps every 30th sample
  (positions 0, 30, 60, ... of the test order above, SPEC 7.2).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np

from jwins_jax.data.dataset import DEFAULT_DATA_DIR, Dataset
from jwins_jax.errors import ConfigError

LEAF_URL = "https://github.com/TalwalkarLab/leaf"

# The original Shakespeare vocabulary (decentralizepy datasets/Shakespeare.py): 92
# slots; "{" sits at 86 and 87 and "}" at 88 and 89.
SHAKESPEARE_VOCAB = (
    "dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\n"
    "aeimquyAEIMQUY]!%)-159\r{{}}<>"
)
SHAKESPEARE_SEQ_LENGTH = 80
SHAKESPEARE_TEST_STRIDE = 30  # test on every 30th test sample (SPEC 7.2)
FEMNIST_CLASSES = 62
CELEBA_CLASSES = 2
CELEBA_IMAGE_SIZE = 84


def char_to_id() -> dict[str, int]:
    """The Shakespeare char -> id map; a repeated character keeps its last slot."""
    table: dict[str, int] = {}
    for i, ch in enumerate(SHAKESPEARE_VOCAB):
        table[ch] = i  # a later slot overwrites an earlier one
    return table


_PREPARE = {
    "femnist": (
        "run `./preprocess.sh -s niid --sf 1.0 -k 0 -t sample` in leaf/data/femnist "
        f"({LEAF_URL}) and copy its data/train and data/test folders to {{root}}/train "
        "and {root}/test"
    ),
    "celeba": (
        "run `./preprocess.sh -s niid --sf 1.0 -k 5 -t sample` in leaf/data/celeba "
        f"({LEAF_URL}, raw CelebA images in data/raw) and copy data/train, data/test "
        "and data/raw/img_align_celeba to {root}/train, {root}/test and "
        "{root}/img_align_celeba"
    ),
    "shakespeare": (
        "run `./preprocess.sh -s niid --sf 1.0 -k 0 -t sample -tf 0.8` in "
        f"leaf/data/shakespeare ({LEAF_URL}) and copy the files of 96 users "
        "(shakespeare_sub96) from data/train and data/test to {root}/train and "
        "{root}/test"
    ),
    "reddit": (
        "download LEAF's subsampled Reddit data (the link in leaf/data/reddit/README.md, "
        f"{LEAF_URL}) into leaf/data/reddit/data, run `python build_vocab.py "
        "--data-dir ./data/train --target-dir vocab` there and copy data/train, "
        "data/test and vocab/reddit_vocab.pck to {root}/train, {root}/test and "
        "{root}/vocab/reddit_vocab.pck"
    ),
}


def how_to_prepare(name: str, root: pathlib.Path) -> str:
    """How to prepare the LEAF dataset ``name`` into ``root`` (one clause)."""
    return _PREPARE[name].format(root=root)


def dataset_root(name: str, data_dir: str | None) -> pathlib.Path:
    """``data_dir/name`` (``data_dir`` None: ``./data``)."""
    base = pathlib.Path(DEFAULT_DATA_DIR if data_dir is None else data_dir)
    return base.expanduser() / name


UserSamples = tuple[str, list[Any], list[Any]]


def read_leaf_dir(
    directory: pathlib.Path, name: str, root: pathlib.Path
) -> list[UserSamples]:
    """Reads every ``*.json`` file of a LEAF folder.

    Args:
        directory: the folder, e.g. ``DATA_DIR/femnist/train``.
        name: the dataset, for error messages.
        root: ``DATA_DIR/<name>``, for error messages.

    Returns:
        ``(user, x, y)`` for every user: files in sorted name order, users in the
        order of the file's ``"users"`` list (or of ``"user_data"`` without one).

    Raises:
        ConfigError: no such folder, no JSON file in it, a file that is not LEAF
            JSON, a user without data or with ``len(x) != len(y)``, or a user that
            appears twice.
    """
    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if not files:
        raise ConfigError(
            f"dataset={name} needs LEAF JSON files in {directory}, which has none: "
            f"{how_to_prepare(name, root)}"
        )
    out: list[UserSamples] = []
    seen: dict[str, pathlib.Path] = {}
    for path in files:

        def bad(reason: str, path: pathlib.Path = path) -> ConfigError:
            return ConfigError(
                f"{path} is not a LEAF JSON file of dataset={name} ({reason}): "
                f"{how_to_prepare(name, root)}"
            )

        try:
            with open(path, encoding="utf-8") as f:
                content = json.load(f)
        except json.JSONDecodeError as err:
            raise bad(f"invalid JSON at line {err.lineno} column {err.colno}") from None
        except (OSError, UnicodeDecodeError):
            raise bad("it cannot be read as UTF-8 text") from None
        if not isinstance(content, dict) or not isinstance(
            content.get("user_data"), dict
        ):
            raise bad('no "user_data" object')
        user_data = content["user_data"]
        users = content.get("users", list(user_data))
        if not isinstance(users, list):
            raise bad('"users" is not a list')
        for user in users:
            if not isinstance(user, str) or user not in user_data:
                raise bad(f'user {user!r} has no entry in "user_data"')
            if user in seen:
                raise bad(f"user {user!r} also appears in {seen[user]}")
            seen[user] = path
            samples = user_data[user]
            if not isinstance(samples, dict) or not all(
                isinstance(samples.get(k), list) for k in ("x", "y")
            ):
                raise bad(f'user {user!r} has no "x" and "y" lists')
            if len(samples["x"]) != len(samples["y"]):
                raise bad(
                    f"user {user!r} has {len(samples['x'])} inputs but "
                    f"{len(samples['y'])} targets"
                )
            out.append((user, samples["x"], samples["y"]))
    return out


def load_leaf(
    name: str,
    data_dir: str | None,
    convert: Callable[[list[Any], list[Any], pathlib.Path], tuple[np.ndarray, ...]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reads train and test folders and converts every user's samples.

    ``convert(x, y, where)`` returns the ``(x, y)`` arrays of one user's samples,
    raising ``ConfigError`` naming ``where`` (the folder) for bad values.

    Returns:
        ``x_train, y_train, users_train, x_test, y_test``.
    """
    root = dataset_root(name, data_dir)
    train = read_leaf_dir(root / "train", name, root)
    test = read_leaf_dir(root / "test", name, root)
    train.sort(key=lambda u: u[0])  # users sorted by name, numbered in that order
    xs, ys, users = [], [], []
    for uid, (_, x, y) in enumerate(train):
        if not y:
            continue
        cx, cy = convert(x, y, root / "train")
        xs.append(cx)
        ys.append(cy)
        users.append(np.full(len(cy), uid, dtype=np.int32))
    if sum(len(y) for y in ys) == 0:
        raise ConfigError(
            f"dataset={name} has no training samples in {root / 'train'}: "
            f"{how_to_prepare(name, root)}"
        )
    txs, tys = [], []
    for _, x, y in test:
        if y:
            cx, cy = convert(x, y, root / "test")
            txs.append(cx)
            tys.append(cy)
    if sum(len(y) for y in tys) == 0:
        raise ConfigError(
            f"dataset={name} has no test samples in {root / 'test'}: "
            f"{how_to_prepare(name, root)}"
        )
    return (
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(users),
        np.concatenate(txs),
        np.concatenate(tys),
    )


def _int_labels(
    y: list[Any], num_classes: int, where: pathlib.Path, name: str
) -> np.ndarray:
    try:
        labels = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        labels = None
    if (
        labels is None
        or labels.ndim != 1
        or np.any(labels != np.round(labels))
        or labels.min() < 0
        or labels.max() >= num_classes
    ):
        raise ConfigError(
            f"dataset={name}: the labels in {where} must be integers in "
            f"[0, {num_classes}): {how_to_prepare(name, where.parent)}"
        )
    return labels.astype(np.int32)


def load_femnist(data_dir: str | None = None) -> Dataset:
    """FEMNIST (SPEC 7.2): 28x28 grey-scale characters of 62 classes, by writer.

    Args:
        data_dir: the data directory (``None``: ``./data``); reads
            ``data_dir/femnist/{train,test}/*.json``.

    Returns:
        ``x`` (D, 28, 28, 1) float32, ``y`` int32 in [0, 62), ``users_train`` the
        writer of each training sample, ``natural="shuffled"``, ``drop_last=True``.

    Raises:
        ConfigError: missing or malformed files (one line: what and how to fix).
    """

    def convert(
        x: list[Any], y: list[Any], where: pathlib.Path
    ) -> tuple[np.ndarray, np.ndarray]:
        try:
            images = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            images = None
        if images is None or images.ndim != 2 or images.shape[1] != 28 * 28:
            raise ConfigError(
                f"dataset=femnist: every input in {where} must be a list of 784 "
                f"pixel values: {how_to_prepare('femnist', where.parent)}"
            )
        labels = _int_labels(y, FEMNIST_CLASSES, where, "femnist")
        return images.reshape(-1, 28, 28, 1), labels

    x_train, y_train, users, x_test, y_test = load_leaf("femnist", data_dir, convert)
    return Dataset(
        name="femnist",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=FEMNIST_CLASSES,
        users_train=users,
        natural="shuffled",
        drop_last=True,
    )


def load_celeba_image(images_dir: pathlib.Path, name: str) -> np.ndarray:
    """One CelebA image as the original reads it: (84, 84, 3) uint8 RGB.

    Opens ``<name without extension>.png`` (what the original opens) or else
    ``name`` itself in ``images_dir``, resizes it to 84x84 with PIL's default filter
    and converts it to RGB, in that order.

    Raises:
        ConfigError: neither file exists or it is not an image.
    """
    from PIL import Image, UnidentifiedImageError

    stem = pathlib.PurePath(name).stem
    candidates = [images_dir / f"{stem}.png", images_dir / name]
    path = next((p for p in candidates if p.is_file()), None)
    root = images_dir.parent
    if path is None:
        raise ConfigError(
            f"dataset=celeba: image {images_dir / name} (or {stem}.png) does not "
            f"exist: {how_to_prepare('celeba', root)}"
        )
    try:
        with Image.open(path) as img:
            resized = img.resize((CELEBA_IMAGE_SIZE, CELEBA_IMAGE_SIZE))
            return np.asarray(resized.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError):
        raise ConfigError(
            f"dataset=celeba: {path} is not a readable image: {how_to_prepare('celeba', root)}"
        ) from None


def load_celeba(data_dir: str | None = None) -> Dataset:
    """CelebA (SPEC 7.2): 84x84 RGB faces, a binary attribute, by celebrity.

    Args:
        data_dir: the data directory (``None``: ``./data``); reads
            ``data_dir/celeba/{train,test}/*.json`` and the images they name in
            ``data_dir/celeba/img_align_celeba/``.

    Returns:
        ``x`` (D, 84, 84, 3) float32 raw pixel values 0-255 (not normalised),
        ``y`` int32 in {0, 1}, ``users_train`` the celebrity of each training
        sample, ``natural="shuffled"``.

    Raises:
        ConfigError: missing or malformed files or images (one line).
    """
    images_dir = dataset_root("celeba", data_dir) / "img_align_celeba"

    def convert(
        x: list[Any], y: list[Any], where: pathlib.Path
    ) -> tuple[np.ndarray, np.ndarray]:
        if not all(isinstance(v, str) for v in x):
            raise ConfigError(
                f"dataset=celeba: every input in {where} must be an image file name: "
                f"{how_to_prepare('celeba', where.parent)}"
            )
        labels = _int_labels(y, CELEBA_CLASSES, where, "celeba")
        images = np.stack([load_celeba_image(images_dir, v) for v in x])
        return images.astype(np.float32), labels

    x_train, y_train, users, x_test, y_test = load_leaf("celeba", data_dir, convert)
    return Dataset(
        name="celeba",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=CELEBA_CLASSES,
        users_train=users,
        natural="shuffled",
    )


def encode_text(texts: list[Any], length: int, where: pathlib.Path) -> np.ndarray:
    """Maps strings of ``length`` characters to (len(texts), length) int32 ids.

    Raises:
        ConfigError: a value that is not a string of that length, or a character
            outside the vocabulary.
    """
    if not all(isinstance(t, str) and len(t) == length for t in texts):
        raise ConfigError(
            f"dataset=shakespeare: every {'input' if length > 1 else 'target'} in "
            f"{where} must be a string of {length} character(s): "
            f"{how_to_prepare('shakespeare', where.parent)}"
        )
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    table = np.full(128, -1, dtype=np.int32)
    for ch, i in char_to_id().items():
        table[ord(ch)] = i
    ids = table[np.minimum(codes, 127)]
    unknown = (codes > 127) | (ids < 0)
    if np.any(unknown):
        ch = chr(int(codes[np.flatnonzero(unknown)[0]]))
        raise ConfigError(
            f"dataset=shakespeare: {where} holds the character {ch!r}, which is not "
            f"in the 92-slot vocabulary: {how_to_prepare('shakespeare', where.parent)}"
        )
    return ids.reshape(len(texts), length)


def load_shakespeare(data_dir: str | None = None) -> Dataset:
    """Shakespeare (SPEC 7.2): next character after 80, by speaking role.

    Args:
        data_dir: the data directory (``None``: ``./data``); reads
            ``data_dir/shakespeare/{train,test}/*.json``.

    Returns:
        ``x`` (D, 80) int32 ids, ``y`` (D,) int32 ids in [0, 92), ``users_train``
        the role of each training sample, ``natural="shuffled"``; the test set is
        every 30th test sample.

    Raises:
        ConfigError: missing or malformed files (one line).
    """

    def convert(
        x: list[Any], y: list[Any], where: pathlib.Path
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = encode_text(x, SHAKESPEARE_SEQ_LENGTH, where)
        return ids, encode_text(y, 1, where)[:, 0]

    x_train, y_train, users, x_test, y_test = load_leaf(
        "shakespeare", data_dir, convert
    )
    keep = slice(None, None, SHAKESPEARE_TEST_STRIDE)
    return Dataset(
        name="shakespeare",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test[keep],
        y_test=y_test[keep],
        num_classes=len(SHAKESPEARE_VOCAB),
        users_train=users,
        natural="shuffled",
    )
