"""Reddit from LEAF JSON files and LEAF's vocabulary pickle (SPEC 7.1, 7.2).

Nothing is downloaded. The files are prepared once with LEAF
(https://github.com/TalwalkarLab/leaf, ``data/reddit``) and laid out under the data
directory (``data_dir``, default ``./data``) as::

    DATA_DIR/reddit/train/*.json   DATA_DIR/reddit/test/*.json
    DATA_DIR/reddit/vocab/reddit_vocab.pck

Preparing them: download LEAF's subsampled Reddit data (linked in
``leaf/data/reddit/README.md``) into ``leaf/data/reddit/data``, run
``python build_vocab.py --data-dir ./data/train --target-dir vocab`` there, and copy
``data/train``, ``data/test`` and ``vocab/reddit_vocab.pck``. (The original reads the
vocabulary from ``<train dir>/../../vocab/``; here it sits next to the two folders.)

LEAF's format (``leaf/data/reddit/source/preprocess.py``): a user's ``"x"`` is a list
of comments, each a list of rows of 10 token strings, and ``"y"`` holds one dict per
comment whose ``"target_tokens"`` has as many rows (its other keys, the comment's
metadata, are not read). A comment of tokens ``w1 .. wm`` becomes the input
``<BOS> w1 .. wm <EOS>`` and the target ``w1 .. wm <EOS> <PAD>``, both padded with
``<PAD>`` to a multiple of 10 and cut into rows of 10 (:func:`comment_rows`).

The vocabulary (``build_vocab.py``) is a pickled plain dict ``{"vocab": {token: id},
"size": 10000, "unk_symbol": 1, "pad_symbol": 0}``: ``<PAD>`` is 0, ``<UNK>`` is 1
and the 9,998 most frequent training tokens are numbered 1..9998 by falling
frequency (ties by token), so the most frequent token shares id 1 with ``<UNK>``
(unless it is ``<PAD>``, which keeps 0 and leaves its own id unused). ``<BOS>`` and
``<EOS>`` are ordinary tokens of the vocabulary. Ids lie in [0, 9999): the model's
9,999 embedding rows, row 0 the padding row. The pickle holds no object other than
dicts, strings and integers, so it is read with :func:`read_vocab_pickle`, which
builds nothing else and never imports or calls anything a pickle names.

What the loader produces (the original's ``Reddit.prepare_data``):

* Every token becomes its id; a token missing from the vocabulary becomes
  ``unk_symbol``.
* One sample per row, the rows of a user's comments in order: ``x`` the 10 input
  ids (int32, trailing ``<PAD>`` ids included: the model reads all 10 steps); ``y``
  the last id of the target row that is not ``pad_symbol``, i.e. the word that
  follows the input's last real token, or ``<EOS>`` for a comment's last row
  (:func:`samples_from_rows`). Rows whose target is 0 (a target row of padding
  only) are dropped, as the original drops them.
* Training users are sorted by name and numbered in that order
  (``natural="shuffled"``, SPEC 7.2's "same" as FEMNIST). A user all of whose rows
  are dropped owns no sample and takes no part in the natural partition (the
  original still counts its file); LEAF's preprocessing cannot produce such a
  training user, since the first target row of a comment always holds a word or
  ``<EOS>``.
* The test set is global: every test user's samples, files in sorted name order
  (the original lists the folder in ``os.listdir`` order, which is unspecified),
  evaluated whole (SPEC 7.2: no stride, unlike Shakespeare).
"""

from __future__ import annotations

import io
import pathlib
import pickle
from typing import Any

import numpy as np

from jwins_jax.data.dataset import Dataset
from jwins_jax.data.leaf import dataset_root, how_to_prepare, load_leaf
from jwins_jax.errors import ConfigError

SEQ_LENGTH = 10
VOCAB_ROWS = 9999  # ids 0..9998: the RNN's embedding rows and classes
PAD_ID = 0  # the model's padding_idx; a target 0 drops its sample
VOCAB_FILE = "reddit_vocab.pck"


def vocab_path(data_dir: str | None) -> pathlib.Path:
    """``DATA_DIR/reddit/vocab/reddit_vocab.pck``."""
    return dataset_root("reddit", data_dir) / "vocab" / VOCAB_FILE


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asked for a class or function (``module.name``), which is refused."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds dicts, lists, tuples, sets, strings, bytes, numbers, booleans and None
    only: every opcode that would import a class or function (``GLOBAL``,
    ``STACK_GLOBAL``, ``INST``, ``OBJ``, the extension registry) goes through
    :meth:`find_class`, which refuses, so nothing named in the file is ever called."""

    def find_class(self, module: str, name: str) -> Any:
        raise RefusedPickle(f"{module}.{name}")


def read_vocab_pickle(data: bytes) -> Any:
    """Unpickles ``data`` that may hold only plain containers, strings and numbers.

    Raises:
        RefusedPickle: the pickle names a class or function (it would construct or
            call it); nothing of it was executed.
        pickle.UnpicklingError, EOFError, ValueError: malformed data.
    """
    return _PlainUnpickler(io.BytesIO(data)).load()


def _is_id(value: Any) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value < VOCAB_ROWS
    )


def load_vocab(data_dir: str | None) -> tuple[dict[str, int], int]:
    """LEAF's Reddit vocabulary.

    Args:
        data_dir: the data directory (``None``: ``./data``).

    Returns:
        ``(token -> id, unk_symbol)``.

    Raises:
        ConfigError: a missing file, a pickle that names any class or function
            (refused unread), or contents that are not LEAF's vocabulary dict
            (ids outside [0, 9999), ``pad_symbol`` other than 0); one line saying
            how to prepare it.
    """
    path = vocab_path(data_dir)
    root = path.parent.parent
    how = how_to_prepare("reddit", root)
    if not path.is_file():
        raise ConfigError(f"dataset=reddit needs {path}, which does not exist: {how}")
    try:
        content = read_vocab_pickle(path.read_bytes())
    except RefusedPickle as err:
        raise ConfigError(
            f"{path} is refused: it would construct or call {err} (the vocabulary "
            f"may hold only plain dicts, strings and numbers); {how}"
        ) from None
    except OSError as err:
        raise ConfigError(f"{path} cannot be read ({err.strerror}): {how}") from None
    except Exception:  # noqa: BLE001 - any malformed pickle
        raise ConfigError(
            f"{path} is not a pickle of LEAF's Reddit vocabulary: {how}"
        ) from None

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"{path} is not LEAF's Reddit vocabulary ({reason}): {how}")

    if not isinstance(content, dict) or not isinstance(content.get("vocab"), dict):
        raise bad('no "vocab" dict')
    vocab = content["vocab"]
    if not all(isinstance(k, str) and _is_id(v) for k, v in vocab.items()):
        raise bad(f"every token must map to an integer id in [0, {VOCAB_ROWS})")
    unk, pad = content.get("unk_symbol"), content.get("pad_symbol")
    if not _is_id(unk):
        raise bad(f"unk_symbol={unk!r} is not an id in [0, {VOCAB_ROWS})")
    if pad != PAD_ID or isinstance(pad, bool):
        raise bad(f"pad_symbol={pad!r}, the model's padding row is {PAD_ID}")
    return vocab, unk


def comment_rows(
    words: np.ndarray, bos: int, eos: int, pad: int = PAD_ID
) -> tuple[np.ndarray, np.ndarray]:
    """LEAF's preprocessing of one comment of token ids into input and target rows.

    Args:
        words: ``(m,)`` ids of the comment's tokens.
        bos, eos, pad: the ids of ``<BOS>``, ``<EOS>`` and ``<PAD>``.

    Returns:
        ``(x_rows, y_rows)``, each ``(ceil((m + 2) / 10), 10)`` int32: the rows of
        ``<BOS> words <EOS>`` and of ``words <EOS> <PAD>``, padded with ``pad``.
    """
    words = np.asarray(words, np.int32)
    x = np.concatenate([[bos], words, [eos]]).astype(np.int32)
    y = np.concatenate([words, [eos, pad]]).astype(np.int32)
    rows = -(-len(x) // SEQ_LENGTH)
    out = np.full((2, rows * SEQ_LENGTH), pad, np.int32)
    out[0, : len(x)], out[1, : len(y)] = x, y
    return out[0].reshape(rows, SEQ_LENGTH), out[1].reshape(rows, SEQ_LENGTH)


def samples_from_rows(
    x_rows: np.ndarray, y_rows: np.ndarray, pad: int = PAD_ID
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of input and target rows (SPEC 7.2): the target of a row is its last
    id that is not ``pad`` (``pad`` when there is none); rows whose target is 0 are
    dropped.

    Args:
        x_rows: ``(S, 10)`` input ids.
        y_rows: ``(S, 10)`` target ids.
        pad: the vocabulary's ``pad_symbol``.

    Returns:
        ``(x, y)``: ``(S', 10)`` int32 inputs and ``(S',)`` int32 targets, the kept
        rows in order.
    """
    x_rows = np.asarray(x_rows, np.int32).reshape(-1, SEQ_LENGTH)
    y_rows = np.asarray(y_rows, np.int32).reshape(-1, SEQ_LENGTH)
    real = y_rows != pad
    last = SEQ_LENGTH - 1 - np.argmax(real[:, ::-1], axis=1)
    target = np.where(
        real.any(axis=1), y_rows[np.arange(len(y_rows)), last], pad
    ).astype(np.int32)
    keep = target != 0
    return x_rows[keep], target[keep]


def _rows(rows: list[Any], what: str, where: pathlib.Path) -> None:
    if not all(
        isinstance(r, list)
        and len(r) == SEQ_LENGTH
        and all(isinstance(t, str) for t in r)
        for r in rows
    ):
        raise ConfigError(
            f"dataset=reddit: every {what} row in {where} must be a list of "
            f"{SEQ_LENGTH} token strings: {how_to_prepare('reddit', where.parent)}"
        )


def load_reddit(data_dir: str | None = None) -> Dataset:
    """Reddit (SPEC 7.2): the next word after 10 tokens, by user.

    Args:
        data_dir: the data directory (``None``: ``./data``); reads
            ``data_dir/reddit/{train,test}/*.json`` and
            ``data_dir/reddit/vocab/reddit_vocab.pck``.

    Returns:
        ``x`` (D, 10) int32 token ids, ``y`` (D,) int32 ids in [1, 9999),
        ``users_train`` the user of each training sample, ``natural="shuffled"``,
        the global test set.

    Raises:
        ConfigError: missing, malformed or refused files (one line: which file and
            how to prepare it).
    """
    vocab, unk = load_vocab(data_dir)

    def ids(rows: list[list[str]]) -> np.ndarray:
        flat = [vocab.get(token, unk) for row in rows for token in row]
        return np.asarray(flat, np.int32).reshape(len(rows), SEQ_LENGTH)

    def convert(
        x: list[Any], y: list[Any], where: pathlib.Path
    ) -> tuple[np.ndarray, np.ndarray]:
        inputs: list[Any] = []
        targets: list[Any] = []
        for comment, label in zip(x, y, strict=True):
            rows = label.get("target_tokens") if isinstance(label, dict) else None
            if not isinstance(comment, list) or not isinstance(rows, list):
                raise ConfigError(
                    f"dataset=reddit: every comment in {where} must be a list of rows "
                    f'with a "target_tokens" list of rows: '
                    f"{how_to_prepare('reddit', where.parent)}"
                )
            if len(comment) != len(rows):
                raise ConfigError(
                    f"dataset=reddit: a comment in {where} has {len(comment)} input "
                    f"rows but {len(rows)} target rows: "
                    f"{how_to_prepare('reddit', where.parent)}"
                )
            inputs.extend(comment)
            targets.extend(rows)
        _rows(inputs, "input", where)
        _rows(targets, "target", where)
        return samples_from_rows(ids(inputs), ids(targets))

    x_train, y_train, users, x_test, y_test = load_leaf("reddit", data_dir, convert)
    return Dataset(
        name="reddit",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=VOCAB_ROWS,
        users_train=users,
        natural="shuffled",
    )
