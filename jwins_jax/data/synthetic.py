"""Synthetic stand-ins of FEMNIST, CelebA, Shakespeare, Reddit and MovieLens (SPEC 7.2),
and a large digits-shaped set for runs with many nodes.

Each has its workload's input shape and dtype, number of classes (or ratings), task,
users and natural-partition rule, so that the paper's models and the natural
partition run without the real files: a few thousand samples (CelebA: under a
thousand of its large images) and a few hundred users, enough for 96 nodes. They
are generated from the fixed seed :data:`SYNTHETIC_SEED`, not from the run seed, so
every run sees the same data. Every sample carries a class-dependent signal (a
next-character rule, a low-rank rating structure), so the models learn them:

* ``synthetic_femnist``: 192 writers with 10-30 training and 4 test samples each;
  (28, 28, 1) float32 in [0, 1]; 62 classes. An image is its class's template
  (constant on 4x4 pixel blocks) scaled by the writer's contrast, plus the writer's
  offset and nuisance pattern, plus pixel noise. Writers draw their classes from
  their own Dirichlet(0.5) mix (non-IID like FEMNIST's writers).
  ``drop_last=True``.
* ``synthetic_celeba``: 192 celebrities with 3-5 training and 1 test image each;
  (84, 84, 3) float32 integer values 0-255 (raw pixels); 2 classes. An image is its
  celebrity's face (random colours on 14x14 blocks) plus or minus a fixed pattern in
  a "mouth" region, depending on the class, plus pixel noise, rounded and clipped.
* ``synthetic_shakespeare``: 96 roles (``sub96``: one per node at 96 nodes); (80,)
  int32 character ids over the 90 ids the real vocabulary produces; the target is
  the next character. Each role's text is a Markov chain mixing a global sparse
  bigram table (four likely successors per character) with its own; every training
  window of a role's text is a sample (25-55 per role); the test set is every 30th
  window of a later part of each role's text (60 windows per role).
* ``synthetic_reddit``: 192 users (two per node at 96 nodes) writing 4-10 training
  and 2 test comments of 2-24 words each; (10,) int32 token ids in [0, 9999), 9,999
  classes. The words are 300 ids spread over the vocabulary (``<PAD>`` 0,
  ``<UNK>`` 1 for 3 % of the words, ``<BOS>`` 2, ``<EOS>`` 3); a comment is a Markov
  chain over them (three likely successors per word, else a word of the user's own
  Dirichlet(0.3) topic mix). Comments become samples exactly as LEAF's files do
  (``reddit.comment_rows``, ``reddit.samples_from_rows``): rows of 10, the target the
  last non-pad id of the target row, rows with target 0 dropped; the test set is
  global.
* ``synthetic_movielens``: 610 users rating 15-60 of 1,000 movies (ids fit the MF
  model's tables); ratings in {0.5, ..., 5} from a rank-3 model with user and item
  biases plus noise; per-user 70/30 split and local test sets exactly as the real
  loader (``movielens.ratings_dataset``), ``natural="contiguous"``.

* ``synthetic_digits``: 200,000 training and 10,000 test samples shaped like the
  embedded digits, (8, 8, 1) float32 in [-1, 1], 10 classes (balanced), for runs with
  thousands of nodes (the embedded digits have 1,437 training samples: not one per
  node at n = 10,000). An image is its class's template (a smooth 8x8 stroke pattern:
  a 4x4 grid upsampled and blurred) shifted by up to one pixel, scaled by a random
  contrast, plus pixel noise, clipped and normalised like the digits
  (``Normalize(0.5, 0.5)``). The digits CNN learns it (test accuracy well above
  chance after a few rounds, but below 100 %: the classes overlap through the noise).

All natural stand-ins set ``users_train`` (and ``users_test`` for MovieLens).
"""

from __future__ import annotations

import numpy as np

from jwins_jax.data.dataset import Dataset
from jwins_jax.data.leaf import SHAKESPEARE_TEST_STRIDE, char_to_id
from jwins_jax.data.movielens import ratings_dataset
from jwins_jax.data.reddit import VOCAB_ROWS, comment_rows, samples_from_rows

SYNTHETIC_SEED = 20230710  # fixed: the stand-ins do not depend on the run seed


def _rng(stream: int) -> np.random.Generator:
    return np.random.default_rng([SYNTHETIC_SEED, stream])


def _upsample(grid: np.ndarray, factor: int) -> np.ndarray:
    """Repeats the two axes after the first ``factor`` times each."""
    return np.repeat(np.repeat(grid, factor, axis=1), factor, axis=2)


def synthetic_femnist() -> Dataset:
    """FEMNIST-shaped data: 192 writers, (28, 28, 1) in [0, 1], 62 classes."""
    rng = _rng(1)
    writers, classes, block = 192, 62, 4
    templates = _upsample(rng.uniform(0.0, 1.0, (classes, 7, 7)), block)  # (62,28,28)
    contrast = rng.uniform(0.6, 1.0, writers)
    offset = rng.uniform(0.0, 0.2, writers)
    nuisance = _upsample(rng.normal(0.0, 0.3, (writers, 7, 7)), block)
    mix = rng.dirichlet(np.full(classes, 0.5), size=writers)  # (writers, 62)

    def draw(writer: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.choice(classes, size=count, p=mix[writer])
        x = contrast[writer] * templates[labels] + offset[writer] + nuisance[writer]
        x = x + rng.normal(0.0, 0.8, x.shape)
        return np.clip(x, 0.0, 1.0).astype(np.float32), labels.astype(np.int32)

    train_counts = rng.integers(10, 31, size=writers)
    train = [draw(w, int(c)) for w, c in enumerate(train_counts)]
    test = [draw(w, 4) for w in range(writers)]
    return Dataset(
        name="synthetic_femnist",
        x_train=np.concatenate([x for x, _ in train])[..., None],
        y_train=np.concatenate([y for _, y in train]),
        x_test=np.concatenate([x for x, _ in test])[..., None],
        y_test=np.concatenate([y for _, y in test]),
        num_classes=classes,
        users_train=np.repeat(np.arange(writers, dtype=np.int32), train_counts),
        natural="shuffled",
        drop_last=True,
    )


def synthetic_celeba() -> Dataset:
    """CelebA-shaped data: 192 celebrities, (84, 84, 3) raw 0-255 values, 2 classes."""
    rng = _rng(2)
    users, size = 192, 84
    faces = _upsample(rng.normal(128.0, 30.0, (users, 6, 6, 3)), 14)  # (U,84,84,3)
    pattern = np.zeros((size, size, 3))
    pattern[50:70, 20:64] = rng.choice([-6.0, 6.0], size=(20, 44, 3))

    def draw(user: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, size=count)
        sign = (2.0 * labels - 1.0)[:, None, None, None]
        x = faces[user] + sign * pattern
        x = x + rng.normal(0.0, 40.0, x.shape)
        x = np.clip(np.round(x), 0.0, 255.0)
        return x.astype(np.float32), labels.astype(np.int32)

    train_counts = rng.integers(3, 6, size=users)
    train = [draw(u, int(c)) for u, c in enumerate(train_counts)]
    test = [draw(u, 1) for u in range(users)]
    return Dataset(
        name="synthetic_celeba",
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=np.concatenate([x for x, _ in test]),
        y_test=np.concatenate([y for _, y in test]),
        num_classes=2,
        users_train=np.repeat(np.arange(users, dtype=np.int32), train_counts),
        natural="shuffled",
    )


def _transitions(rng: np.random.Generator, states: int, successors: int) -> np.ndarray:
    """A sparse random transition matrix: a few likely successors per state."""
    probs = np.array([0.55, 0.25, 0.12, 0.08])[:successors]
    table = np.zeros((states, states))
    for s in range(states):
        table[s, rng.choice(states, size=successors, replace=False)] = probs
    return table / table.sum(axis=1, keepdims=True)


def synthetic_shakespeare() -> Dataset:
    """Shakespeare-shaped data: 96 roles, (80,) int32 ids, next-character targets."""
    rng = _rng(3)
    roles, seq = 96, 80
    ids = np.asarray(sorted(set(char_to_id().values())), dtype=np.int32)  # 90 ids
    states = len(ids)
    shared = _transitions(rng, states, 4)
    own = np.stack([_transitions(rng, states, 4) for _ in range(roles)])
    cum = np.cumsum(0.8 * shared[None] + 0.2 * own, axis=-1)  # (roles, V, V)
    cum[..., -1] = 1.0
    train_windows = rng.integers(25, 56, size=roles)
    test_windows = 60
    test_start = seq + int(train_windows.max())
    steps = test_start + seq + test_windows
    text = np.empty((roles, steps), dtype=np.int64)
    text[:, 0] = rng.integers(0, states, size=roles)
    rows = np.arange(roles)
    for t in range(1, steps):
        u = rng.uniform(size=roles)
        nxt = (cum[rows, text[:, t - 1]] < u[:, None]).sum(axis=1)
        text[:, t] = np.minimum(nxt, states - 1)
    chars = ids[text]  # (roles, steps) vocabulary ids

    def windows(part: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        view = np.lib.stride_tricks.sliding_window_view(part, seq + 1)[:count]
        return view[:, :seq].astype(np.int32), view[:, seq].astype(np.int32)

    train = [
        windows(chars[r, : seq + 1 + c], int(c)) for r, c in enumerate(train_windows)
    ]
    test = [
        windows(chars[r, test_start : test_start + seq + test_windows], test_windows)
        for r in range(roles)
    ]
    x_test = np.concatenate([x for x, _ in test])
    y_test = np.concatenate([y for _, y in test])
    keep = slice(None, None, SHAKESPEARE_TEST_STRIDE)
    return Dataset(
        name="synthetic_shakespeare",
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test[keep],
        y_test=y_test[keep],
        num_classes=92,
        users_train=np.repeat(np.arange(roles, dtype=np.int32), train_windows),
        natural="shuffled",
    )


def synthetic_movielens() -> Dataset:
    """MovieLens-shaped ratings: 610 users, 1,000 movies, per-user local test sets."""
    rng = _rng(4)
    users, items, rank = 610, 1000, 3
    user_factors = rng.normal(size=(users, rank))
    item_factors = rng.normal(size=(items, rank))
    user_bias = rng.normal(0.0, 0.3, users)
    item_bias = rng.normal(0.0, 0.5, items)
    counts = np.minimum(15 + rng.geometric(0.15, size=users) - 1, 60)
    user_ids = np.repeat(np.arange(users), counts)
    item_ids = np.concatenate(
        [rng.choice(items, size=int(c), replace=False) for c in counts]
    )
    score = (
        3.5
        + user_bias[user_ids]
        + item_bias[item_ids]
        + 0.6
        * np.sum(user_factors[user_ids] * item_factors[item_ids], axis=1)
        / np.sqrt(rank)
        + rng.normal(0.0, 0.3, len(user_ids))
    )
    ratings = np.clip(np.round(score * 2.0) / 2.0, 0.5, 5.0).astype(np.float32)
    return ratings_dataset(
        "synthetic_movielens", user_ids, item_ids, ratings, SYNTHETIC_SEED
    )


DIGITS_TRAIN, DIGITS_TEST = 200_000, 10_000


def synthetic_digits() -> Dataset:
    """Digits-shaped data for many nodes: 200,000 + 10,000 (8, 8, 1) images, 10 classes."""
    rng = _rng(
        5
    )  # as synthetic_reddit's: unrelated sets, README's figures on this draw
    classes, side = 10, 8
    coarse = rng.uniform(0.0, 1.0, (classes, 4, 4)) ** 2  # sparse-ish strokes
    fine = _upsample(coarse, 2)  # (10, 8, 8)
    padded = np.pad(fine, ((0, 0), (1, 1), (1, 1)), mode="edge")
    blur = sum(
        padded[:, 1 + dy : 1 + dy + side, 1 + dx : 1 + dx + side]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    templates = np.pad(
        blur / blur.max(axis=(1, 2), keepdims=True), ((0, 0), (1, 1), (1, 1))
    )

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(count) % classes)
        dy, dx = rng.integers(0, 3, size=(2, count))  # shift by -1, 0 or +1 pixel
        rows = dy[:, None] + np.arange(side)[None, :]  # (count, 8)
        cols = dx[:, None] + np.arange(side)[None, :]
        x = templates[labels[:, None, None], rows[:, :, None], cols[:, None, :]]
        x = x * rng.uniform(0.6, 1.0, (count, 1, 1))
        x = x + rng.normal(0.0, 0.35, x.shape)
        x = (np.clip(x, 0.0, 1.0) - 0.5) / 0.5
        return x.astype(np.float32)[..., None], labels.astype(np.int32)

    x_train, y_train = draw(DIGITS_TRAIN)
    x_test, y_test = draw(DIGITS_TEST)
    return Dataset(
        name="synthetic_digits",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=classes,
    )


def synthetic_reddit() -> Dataset:
    """Reddit-shaped data: 192 users, (10,) int32 token ids, next-word targets."""
    rng = _rng(5)
    users, words, successors = 192, 300, 3
    unk, bos, eos = 1, 2, 3
    lexicon = rng.choice(np.arange(4, VOCAB_ROWS), size=words, replace=False)
    follow = rng.integers(0, words, size=(words, successors))
    follow_cum = np.cumsum([0.6, 0.25, 0.15])
    topic_cum = np.cumsum(rng.dirichlet(np.full(words, 0.3), size=users), axis=1)

    def comment(user: int) -> np.ndarray:
        length = int(rng.integers(2, 25))
        u = rng.uniform(size=(length, 4))
        topic = np.minimum(np.searchsorted(topic_cum[user], u[:, 0]), words - 1)
        pick = np.minimum(np.searchsorted(follow_cum, u[:, 1]), successors - 1)
        chain = topic.copy()
        for t in range(1, length):
            if u[t, 2] < 0.8:
                chain[t] = follow[chain[t - 1], pick[t]]
        return np.where(u[:, 3] < 0.03, unk, lexicon[chain])

    def samples(user: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        rows = [comment_rows(comment(user), bos, eos) for _ in range(count)]
        x_rows = np.concatenate([x for x, _ in rows])
        y_rows = np.concatenate([y for _, y in rows])
        return samples_from_rows(x_rows, y_rows)

    train_comments = rng.integers(4, 11, size=users)
    train = [samples(u, int(c)) for u, c in enumerate(train_comments)]
    test = [samples(u, 2) for u in range(users)]
    return Dataset(
        name="synthetic_reddit",
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=np.concatenate([x for x, _ in test]),
        y_test=np.concatenate([y for _, y in test]),
        num_classes=VOCAB_ROWS,
        users_train=np.concatenate(
            [np.full(len(y), u, np.int32) for u, (_, y) in enumerate(train)]
        ),
        natural="shuffled",
    )
