"""The paper's other workloads' data (SPEC 7.1-7.3): LEAF (Reddit included) and
MovieLens loaders on small files written here, the natural partitions, local test
sets and the synthetic stand-ins."""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest

from jwins_jax.data import (
    DATASETS,
    STAND_INS,
    load_dataset,
    local_test_parts,
    partition,
    user_nodes,
)
from jwins_jax.data.leaf import SHAKESPEARE_VOCAB, char_to_id
from jwins_jax.data.reddit import comment_rows, samples_from_rows
from jwins_jax.errors import ConfigError
from jwins_jax.models import get_model

REAL = ("femnist", "celeba", "shakespeare", "movielens")
SYNTHETIC = tuple(f"synthetic_{name}" for name in (*REAL, "reddit"))


def _one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Error" not in message
    return message


def _write_leaf(path, users: dict[str, tuple[list, list]], per_user_int=False):
    """Writes one LEAF JSON file holding ``users`` (name -> (x, y))."""
    path.parent.mkdir(parents=True, exist_ok=True)
    num = [len(y) for _, y in users.values()]
    content = {
        "users": list(users),
        "num_samples": num[0] if per_user_int else num,
        "user_data": {u: {"x": x, "y": y} for u, (x, y) in users.items()},
    }
    path.write_text(json.dumps(content))


def _pixels(value: float, count: int) -> list:
    return [[value] * 784 for _ in range(count)]


@pytest.fixture(scope="module")
def synthetic():
    return {name: load_dataset(name) for name in SYNTHETIC}


# ----------------------------------------------------------------------- FEMNIST


def _femnist_dir(root):
    femnist = root / "femnist"
    # A LEAF multi-user file (users out of name order) and a per-user file of
    # decentralizepy, whose num_samples is an int.
    _write_leaf(
        femnist / "train" / "all_data_0.json",
        {
            "f_0002": (_pixels(0.2, 3), [5, 61, 0]),
            "f_0001": (_pixels(0.1, 2), [1, 1]),
        },
    )
    _write_leaf(
        femnist / "train" / "f_0000.json",
        {"f_0000": (_pixels(0.0, 1), [7])},
        per_user_int=True,
    )
    _write_leaf(femnist / "test" / "b.json", {"f_0001": (_pixels(0.5, 1), [3])})
    _write_leaf(femnist / "test" / "a.json", {"f_0002": (_pixels(0.6, 2), [4, 2])})
    return root


def test_femnist_loader(tmp_path):
    data = load_dataset("femnist", data_dir=str(_femnist_dir(tmp_path)))
    assert data.name == "femnist" and data.num_classes == 62
    assert data.x_train.shape == (6, 28, 28, 1) and data.x_train.dtype == np.float32
    assert data.y_train.dtype == np.int32 and data.users_train.dtype == np.int32
    # Users sorted by name and numbered in that order; samples in file order.
    assert data.users_train.tolist() == [0, 1, 1, 2, 2, 2]
    assert data.y_train.tolist() == [7, 1, 1, 5, 61, 0]
    np.testing.assert_allclose(data.x_train[:, 0, 0, 0], [0, 0.1, 0.1, 0.2, 0.2, 0.2])
    # The global test set: files in name order (a.json first).
    assert data.y_test.tolist() == [4, 2, 3] and data.x_test.shape == (3, 28, 28, 1)
    assert data.users_test is None and data.natural == "shuffled"
    assert data.drop_last and data.task == "classification"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "invalid JSON at line 1"),
        ('{"users": ["u"]}', 'no "user_data"'),
        ('{"users": ["u"], "user_data": {}}', "no entry"),
        ('{"users": ["u"], "user_data": {"u": {"x": [[0.5]], "y": [1]}}}', "784"),
        (
            '{"users": ["u"], "user_data": {"u": {"x": [[0.5], [0.5]], "y": [1]}}}',
            "2 inputs but 1 targets",
        ),
    ],
)
def test_femnist_malformed_file_is_one_line_error(tmp_path, content, reason):
    _femnist_dir(tmp_path)
    bad = tmp_path / "femnist" / "train" / "zz.json"
    bad.write_text(content)
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("femnist", data_dir=str(tmp_path))
    message = _one_line(excinfo)
    assert reason in message and "preprocess.sh" in message
    if "784" not in reason:
        assert str(bad) in message


def test_femnist_bad_labels_and_duplicate_users(tmp_path):
    _femnist_dir(tmp_path)
    _write_leaf(
        tmp_path / "femnist" / "test" / "c.json", {"f_9": (_pixels(0, 1), [62])}
    )
    with pytest.raises(ConfigError, match=r"integers in \[0, 62\)"):
        load_dataset("femnist", data_dir=str(tmp_path))
    (tmp_path / "femnist" / "test" / "c.json").unlink()
    _write_leaf(tmp_path / "femnist" / "train" / "dup.json", {"f_0001": ([], [])})
    with pytest.raises(ConfigError, match="'f_0001' also appears in"):
        load_dataset("femnist", data_dir=str(tmp_path))


@pytest.mark.parametrize("name", REAL)
def test_missing_data_names_the_path_and_how_to_prepare(tmp_path, name):
    with pytest.raises(ConfigError) as excinfo:
        load_dataset(name, data_dir=str(tmp_path))
    message = _one_line(excinfo)
    assert str(tmp_path / name) in message
    if name == "movielens":
        assert "ratings.csv" in message
        assert "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip" in (
            message
        )
    else:
        assert str(tmp_path / name / "train") in message
        assert f"leaf/data/{name}" in message and "./preprocess.sh -s niid" in message
    if name == "femnist":
        assert "./preprocess.sh -s niid --sf 1.0 -k 0 -t sample" in message


def test_missing_test_folder_is_named(tmp_path):
    _femnist_dir(tmp_path)
    for f in (tmp_path / "femnist" / "test").iterdir():
        f.unlink()
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("femnist", data_dir=str(tmp_path))
    assert str(tmp_path / "femnist" / "test") in _one_line(excinfo)


# ------------------------------------------------------------------------ CelebA


def _celeba_dir(root):
    from PIL import Image

    images = root / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    # The original opens "<stem>.png" for a JSON name "<stem>.jpg".
    Image.new("RGB", (178, 218), (200, 10, 30)).save(images / "000001.png")
    gradient = np.tile(np.arange(100, dtype=np.uint8), (90, 1))  # (90, 100) grey
    Image.fromarray(gradient, mode="L").save(images / "000002.png")
    # Only the .jpg exists: the name as written in the JSON file is used.
    Image.new("RGB", (50, 60), (0, 128, 255)).save(images / "000003.jpg", quality=100)
    _write_leaf(
        root / "celeba" / "train" / "t.json",
        {"9": (["000002.jpg", "000001.jpg"], [1, 0]), "10": (["000003.jpg"], [0])},
    )
    _write_leaf(root / "celeba" / "test" / "t.json", {"11": (["000001.jpg"], [1])})
    return root


def test_celeba_loader_raw_pixels(tmp_path):
    from PIL import Image

    root = _celeba_dir(tmp_path)
    data = load_dataset("celeba", data_dir=str(root))
    assert data.x_train.shape == (3, 84, 84, 3) and data.x_train.dtype == np.float32
    assert data.num_classes == 2 and data.natural == "shuffled" and not data.drop_last
    # Users "10" < "9" as strings.
    assert data.users_train.tolist() == [0, 1, 1] and data.y_train.tolist() == [0, 1, 0]
    # Raw 0-255 values, not normalised; a constant image stays constant.
    assert np.all(data.x_train[2] == np.array([200, 10, 30], np.float32))
    assert np.all(data.x_test[0] == np.array([200, 10, 30], np.float32))
    jpeg = data.x_train[0]
    assert np.abs(jpeg - np.array([0, 128, 255])).max() <= 3  # lossy JPEG
    # A grey image becomes three equal channels, resized with PIL's default filter.
    grey = data.x_train[1]
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    images = tmp_path / "celeba" / "img_align_celeba"
    with Image.open(images / "000002.png") as img:
        want = np.asarray(img.resize((84, 84)), np.float32)
    np.testing.assert_array_equal(grey[..., 1], want)
    assert grey.min() >= 0 and grey.max() > 90 and grey.max() <= 255


def test_celeba_missing_image(tmp_path):
    root = _celeba_dir(tmp_path)
    _write_leaf(root / "celeba" / "test" / "u.json", {"12": (["999.jpg"], [0])})
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("celeba", data_dir=str(root))
    message = _one_line(excinfo)
    assert str(root / "celeba" / "img_align_celeba" / "999.jpg") in message
    assert "img_align_celeba" in message


# ------------------------------------------------------------------- Shakespeare


def test_shakespeare_vocabulary_quirks():
    assert len(SHAKESPEARE_VOCAB) == 92 and len(set(SHAKESPEARE_VOCAB)) == 90
    table = char_to_id()
    assert table["{"] == 87 and table["}"] == 89  # the last occurrence wins
    assert SHAKESPEARE_VOCAB[86] == "{" and SHAKESPEARE_VOCAB[88] == "}"
    assert sorted(set(range(92)) - set(table.values())) == [86, 88]
    assert table["d"] == 0 and table[">"] == 91 and table["\n"] == 62
    assert table[" "] == 13 and table["\r"] == 85


def _line(i: int) -> str:
    text = f"{i:03d} {{x}}\n\r" + "abc" * 30
    return text[:80]


def test_shakespeare_loader_ids_and_every_30th_test_sample(tmp_path):
    root = tmp_path / "shakespeare"
    _write_leaf(
        root / "train" / "b.json",
        {"ROLE_B": ([_line(0), _line(1)], ["{", "}"])},
    )
    _write_leaf(root / "train" / "a.json", {"ROLE_A": ([_line(2)], ["d"])})
    # 65 test samples over two files and users: kept positions 0, 30, 60.
    _write_leaf(
        root / "test" / "1.json",
        {"ROLE_B": ([_line(i) for i in range(40)], ["a"] * 40)},
    )
    _write_leaf(
        root / "test" / "2.json",
        {"ROLE_A": ([_line(100 + i) for i in range(25)], [">"] * 25)},
    )
    data = load_dataset("shakespeare", data_dir=str(tmp_path))
    assert data.x_train.shape == (3, 80) and data.x_train.dtype == np.int32
    assert data.y_train.dtype == np.int32 and data.num_classes == 92
    assert data.users_train.tolist() == [0, 1, 1]  # ROLE_A < ROLE_B
    assert data.y_train.tolist() == [0, 87, 89]
    table = char_to_id()
    assert data.x_train[1].tolist() == [table[c] for c in _line(0)]
    assert 86 not in data.x_train and 88 not in data.x_train
    assert data.x_test.shape == (3, 80)
    first = [table[c] for c in _line(0)]
    assert data.x_test[0].tolist() == first
    assert data.x_test[1].tolist() == [table[c] for c in _line(30)]
    assert data.x_test[2].tolist() == [table[c] for c in _line(100 + 20)]
    assert data.y_test.tolist() == [table["a"], table["a"], 91]
    assert data.natural == "shuffled" and data.users_test is None


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        (["~" * 80], ["a"], "'~'"),
        (["a" * 79], ["a"], "80 character"),
        (["a" * 80], ["ab"], "1 character"),
    ],
)
def test_shakespeare_malformed(tmp_path, x, y, reason):
    root = tmp_path / "shakespeare"
    _write_leaf(root / "train" / "a.json", {"R": (x, y)})
    _write_leaf(root / "test" / "a.json", {"R": (["a" * 80], ["a"])})
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("shakespeare", data_dir=str(tmp_path))
    assert reason in _one_line(excinfo)


# ------------------------------------------------------------------------ Reddit

# LEAF's build_vocab.py: <PAD> 0, <UNK> 1, then the tokens by falling count from 1
# on, so the most frequent token ("the") shares id 1 with <UNK>.
REDDIT_VOCAB = {
    "vocab": {
        "<PAD>": 0,
        "<UNK>": 1,
        "the": 1,
        "<EOS>": 2,
        "<BOS>": 3,
        "cat": 4,
        "sat": 5,
        "on": 6,
        "mat": 7,
        "a": 8,
        "dog": 9998,
    },
    "size": 10000,
    "unk_symbol": 1,
    "pad_symbol": 0,
}
P = "<PAD>"


def _reddit_dir(root, vocab=REDDIT_VOCAB):
    reddit = root / "reddit"
    (reddit / "vocab").mkdir(parents=True)
    (reddit / "vocab" / "reddit_vocab.pck").write_bytes(pickle.dumps(vocab))
    # "the cat sat on the mat": one row; "a dog sat on a cat on the mat zebra" (9
    # words + <BOS>, <EOS> = 11 tokens): a full row and a row whose target row is
    # all padding (dropped). user "b" comes first in the file, "a" sorts first.
    comment_1 = (
        [["<BOS>", "the", "cat", "sat", "on", "the", "mat", "<EOS>", P, P]],
        [["the", "cat", "sat", "on", "the", "mat", "<EOS>", P, P, P]],
    )
    words = ["a", "dog", "sat", "on", "a", "cat", "on", "the", "mat"]
    comment_2 = (
        [["<BOS>", *words], ["<EOS>", *[P] * 9]],
        [[*words, "<EOS>"], [P] * 10],
    )
    comment_3 = (
        [["<BOS>", "zebra", "mat", "<EOS>", *[P] * 6]],
        [["zebra", "mat", "<EOS>", *[P] * 7]],
    )

    def user(*comments):
        x = [c[0] for c in comments]
        y = [{"target_tokens": c[1], "created_utc": 0.0} for c in comments]
        return x, y

    _write_leaf(
        reddit / "train" / "all.json",
        {"b": user(comment_3), "a": user(comment_1, comment_2)},
    )
    _write_leaf(reddit / "test" / "all.json", {"c": user(comment_2)})
    return reddit


def test_reddit_rows_follow_leaf_preprocessing():
    # <BOS>=3, <EOS>=2: a comment of 12 words fills 14 slots, two rows of 10.
    words = np.arange(10, 22)
    x, y = comment_rows(words, bos=3, eos=2)
    assert x.tolist() == [[3, *range(10, 19)], [19, 20, 21, 2, 0, 0, 0, 0, 0, 0]]
    assert y.tolist() == [list(range(10, 20)), [20, 21, 2, 0, 0, 0, 0, 0, 0, 0]]
    kept_x, target = samples_from_rows(x, y)
    assert target.tolist() == [19, 2] and kept_x.tolist() == x.tolist()
    # 8 words: <BOS> w1..w8 <EOS> is one full row, its target row ends in <PAD>.
    x, y = comment_rows(np.arange(10, 18), bos=3, eos=2)
    assert x.shape == (1, 10) and samples_from_rows(x, y)[1].tolist() == [2]
    # 9 words: the second target row is all padding and is dropped.
    x, y = comment_rows(np.arange(10, 19), bos=3, eos=2)
    assert x.shape == (2, 10) and samples_from_rows(x, y)[1].tolist() == [2]


def test_reddit_loader_ids_targets_and_users(tmp_path):
    _reddit_dir(tmp_path)
    data = load_dataset("reddit", data_dir=str(tmp_path))
    assert data.name == "reddit" and data.num_classes == 9999
    assert data.x_train.dtype == np.int32 and data.x_train.shape == (3, 10)
    assert data.x_train.tolist() == [
        [3, 1, 4, 5, 6, 1, 7, 2, 0, 0],  # user "a", comment 1
        [3, 8, 9998, 5, 6, 8, 4, 6, 1, 7],  # its second comment's first row
        [3, 1, 7, 2, 0, 0, 0, 0, 0, 0],  # user "b": "zebra" is unknown -> 1
    ]
    assert data.y_train.tolist() == [2, 2, 2]  # <EOS> ends each row's target
    assert data.users_train.tolist() == [0, 0, 1]
    assert data.natural == "shuffled" and data.users_test is None
    assert data.x_test.tolist() == [[3, 8, 9998, 5, 6, 8, 4, 6, 1, 7]]
    assert data.y_test.tolist() == [2]


def test_reddit_files_build_an_experiment_with_the_datasets_settings(tmp_path):
    """LEAF-format files through the pipeline's host side: the dataset's own
    model and natural partition, one user per node."""
    from jwins_jax import experiment as ex
    from jwins_jax.config import Config

    _reddit_dir(tmp_path)
    c = Config(
        dataset="reddit", data_dir=str(tmp_path), nodes=2, topology="complete"
    ).replace(batch_size=1)
    exp, inputs, hp = ex.build(c)
    assert exp.model.name == "reddit_rnn" and exp.config.partition == "natural"
    assert sorted(inputs.nodes.size.tolist()) == [1, 2]  # users "b" and "a"
    assert float(hp.lr) == 1.0 and exp.config.local_steps == 4


def test_reddit_target_is_the_last_non_pad_token(tmp_path):
    reddit = _reddit_dir(tmp_path)
    row = ["<BOS>", "a", "dog", "sat", "on", "the", "mat", "cat", "a", "dog"]
    target = ["a", "dog", "sat", "on", "the", "mat", "cat", "a", "dog", "sat"]
    _write_leaf(
        reddit / "train" / "z.json",
        {"z": ([[row, row]], [{"target_tokens": [target, [*target[:4], *[P] * 6]]}])},
    )
    data = load_dataset("reddit", data_dir=str(tmp_path))
    assert data.y_train[data.users_train == 2].tolist() == [5, 6]  # "sat", "on"


def test_reddit_missing_vocabulary_names_the_file_and_how(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("reddit", data_dir=str(tmp_path))
    message = _one_line(excinfo)
    assert str(tmp_path / "reddit" / "vocab" / "reddit_vocab.pck") in message
    assert "build_vocab.py --data-dir ./data/train --target-dir vocab" in message
    assert "leaf/data/reddit" in message


@pytest.mark.parametrize(
    ("vocab", "reason"),
    [
        (b"not a pickle", "not a pickle of LEAF's Reddit vocabulary"),
        ({"words": {}}, 'no "vocab" dict'),
        ({**REDDIT_VOCAB, "vocab": {"big": 9999}}, "integer id in [0, 9999)"),
        ({**REDDIT_VOCAB, "pad_symbol": 1}, "pad_symbol=1"),
        ({**REDDIT_VOCAB, "unk_symbol": "1"}, "unk_symbol='1'"),
    ],
)
def test_reddit_malformed_vocabulary(tmp_path, vocab, reason):
    reddit = _reddit_dir(tmp_path)
    path = reddit / "vocab" / "reddit_vocab.pck"
    path.write_bytes(vocab if isinstance(vocab, bytes) else pickle.dumps(vocab))
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("reddit", data_dir=str(tmp_path))
    message = _one_line(excinfo)
    assert reason in message and str(path) in message and "build_vocab.py" in message


class _Planted:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_reddit_vocabulary_that_would_run_code_is_refused_unexecuted(tmp_path):
    import collections

    reddit = _reddit_dir(tmp_path)
    path = reddit / "vocab" / "reddit_vocab.pck"
    marker = tmp_path / "ran"
    planted = {**REDDIT_VOCAB, "vocab": _Planted(marker)}
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps(planted, protocol=protocol))
        with pytest.raises(ConfigError) as excinfo:
            load_dataset("reddit", data_dir=str(tmp_path))
        message = _one_line(excinfo)
        assert "is refused" in message and "system" in message and str(path) in message
        assert not marker.exists()
    pickle.loads(path.read_bytes())  # the plant is real: plain pickle runs it
    assert marker.exists()
    # Not even a harmless class: the file may hold plain containers only.
    wrapped = {**REDDIT_VOCAB, "vocab": collections.OrderedDict(REDDIT_VOCAB["vocab"])}
    path.write_bytes(pickle.dumps(wrapped))
    with pytest.raises(ConfigError, match="collections.OrderedDict"):
        load_dataset("reddit", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        ([[["a"] * 9]], [{"target_tokens": [["a"] * 10]}], "10 token strings"),
        ([[["a"] * 10]], [{"target_tokens": [["a"] * 10] * 2}], "1 input rows but 2"),
        ([[["a"] * 10]], [["a"] * 10], '"target_tokens"'),
    ],
)
def test_reddit_malformed_rows(tmp_path, x, y, reason):
    reddit = _reddit_dir(tmp_path)
    _write_leaf(reddit / "test" / "bad.json", {"u": (x, y)})
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("reddit", data_dir=str(tmp_path))
    message = _one_line(excinfo)
    assert reason in message and str(reddit / "test") in message


# --------------------------------------------------------------------- MovieLens

# userId -> number of ratings; 0.7 * m rounds half to even (15 -> 10, 25 -> 18).
_RATED = {1: 15, 2: 25, 3: 23, 7: 5, 9: 1, 12: 4}
_TRAIN = {1: 10, 2: 18, 3: 16, 7: 4, 9: 1, 12: 3}


def _ratings_csv(path, header="userId,movieId,rating,timestamp"):
    rng = np.random.default_rng(0)
    movies = [5, 1, 300, 2, 77, 1000, 42, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610]
    movies += list(range(2000, 2010))
    lines = [header]
    rows = []
    for user, count in _RATED.items():
        for movie in rng.choice(movies, size=count, replace=False):
            rating = float(rng.integers(1, 11)) / 2
            rows.append((user, int(movie), rating))
            lines.append(f"{user},{movie},{rating},964982703")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return rows, sorted(set(movies))


def test_movielens_loader_ids_split_and_local_test(tmp_path):
    rows, _ = _ratings_csv(tmp_path / "movielens" / "ratings.csv")
    data = load_dataset("movielens", data_dir=str(tmp_path), seed=3)
    assert data.task == "rating" and data.num_classes == 0
    assert data.natural == "contiguous" and not data.drop_last
    assert data.x_train.dtype == np.int32 and data.x_train.shape[1] == 2
    assert data.y_train.dtype == np.float32 and data.users_test.dtype == np.int32
    # Users 1, 2, 3, 7, 9, 12 become 0..5; movies are numbered in sorted order.
    rated = sorted({m for _, m, _ in rows})
    user_index = {u: i for i, u in enumerate(sorted(_RATED))}
    expected = sorted(
        (user_index[u], rated.index(m), r) for u, m, r in rows
    )  # all (user, item, rating) triples, 0-based
    got = sorted(
        (int(u), int(i), float(r))
        for (u, i), r in zip(
            np.concatenate([data.x_train, data.x_test]),
            np.concatenate([data.y_train, data.y_test]),
            strict=True,
        )
    )
    assert got == expected
    np.testing.assert_array_equal(data.users_train, data.x_train[:, 0])
    np.testing.assert_array_equal(data.users_test, data.x_test[:, 0])
    for user, index in user_index.items():  # round(0.7 * m) ratings go to train
        assert int(np.sum(data.users_train == index)) == _TRAIN[user]
        assert int(np.sum(data.users_test == index)) == _RATED[user] - _TRAIN[user]
    assert np.all(np.diff(data.users_train) >= 0) and np.all(
        np.diff(data.users_test) >= 0
    )
    again = load_dataset("movielens", data_dir=str(tmp_path), seed=3)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    other = load_dataset("movielens", data_dir=str(tmp_path), seed=4)
    assert not np.array_equal(np.sort(other.x_test, 0), np.sort(data.x_test, 0))


def test_movielens_unzipped_folder_layout(tmp_path):
    _ratings_csv(tmp_path / "movielens" / "ml-latest-small" / "ratings.csv")
    data = load_dataset("movielens", data_dir=str(tmp_path))
    assert len(data.y_train) + len(data.y_test) == sum(_RATED.values())


def test_movielens_malformed(tmp_path):
    path = tmp_path / "movielens" / "ratings.csv"
    _ratings_csv(path, header="user,movie,stars,time")
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("movielens", data_dir=str(tmp_path))
    assert "header" in _one_line(excinfo) and str(path) in str(excinfo.value)
    _ratings_csv(path)
    path.write_text(path.read_text() + "4,5,7.0,0\n")
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("movielens", data_dir=str(tmp_path))
    assert f"line {sum(_RATED.values()) + 2}" in _one_line(excinfo)
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},1,4.0,0" for u in range(611)]
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigError, match="611 users"):
        load_dataset("movielens", data_dir=str(tmp_path))


# ------------------------------------------------------------- natural partitions


def _original_shuffled_users(num_users: int, n: int, seed: int) -> list[list[int]]:
    """SPEC 7.1 DataPartitioner over sorted users, with integer chunk sizes."""
    order = list(range(num_users))
    rng = random.Random()
    rng.seed(seed)
    rng.shuffle(order)
    size = num_users // n
    chunks = [order[i * size : (i + 1) * size] for i in range(n - 1)]
    return [*chunks, order[(n - 1) * size :]]


@pytest.mark.parametrize(("num_users", "n"), [(9343, 96), (96, 96), (37, 5)])
def test_shuffled_natural_matches_seeded_python_shuffle(num_users, n):
    users = np.arange(num_users) * 3 + 1  # sparse, sorted ids
    node_of = user_nodes(users, n, natural="shuffled", seed=97)
    for node, chunk in enumerate(_original_shuffled_users(num_users, n, 97)):
        assert sorted(np.flatnonzero(node_of == node).tolist()) == sorted(
            (users[chunk]).tolist()
        )
    assert np.all(node_of[np.setdiff1d(np.arange(len(node_of)), users)] == -1)
    counts = np.bincount(node_of[users], minlength=n)
    size = num_users // n
    assert counts[:-1].tolist() == [size] * (n - 1)
    assert counts[-1] == num_users - (n - 1) * size  # CelebA: 128, nobody lost


def test_contiguous_natural_gives_extra_users_to_the_first_nodes():
    node_of = user_nodes(np.arange(610), 96, natural="contiguous")
    counts = np.bincount(node_of, minlength=96)
    assert counts[:34].tolist() == [7] * 34 and counts[34:].tolist() == [6] * 62
    assert np.all(np.diff(node_of) >= 0)  # users in order
    assert node_of[:8].tolist() == [0] * 7 + [1]
    assert node_of[-6:].tolist() == [95] * 6


def test_natural_partition_owns_users_and_samples():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 40, size=500)
    labels = rng.integers(0, 10, size=500)
    for rule in ("shuffled", "contiguous"):
        parts = partition(labels, 8, "natural", users=users, natural=rule, seed=5)
        assert len(parts) == 8
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(500))
        owner = np.empty(500, dtype=np.int64)
        for node, part in enumerate(parts):
            assert np.all(np.diff(part) > 0)
            owner[part] = node
        for user in np.unique(users):  # all of a user's samples on one node
            assert len(np.unique(owner[users == user])) == 1
        node_of = user_nodes(users, 8, natural=rule, seed=5)
        np.testing.assert_array_equal(owner, node_of[users])
    a = partition(labels, 8, "natural", users=users, seed=5)
    b = partition(labels, 8, "natural", users=users, seed=6)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_natural_partition_errors():
    labels = np.zeros(10, dtype=np.int32)
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    with pytest.raises(ConfigError) as excinfo:
        partition(labels, 6, "natural", users=users)
    assert "nodes=6 exceeds the 5 users" in _one_line(excinfo)
    with pytest.raises(ConfigError, match="needs a dataset with users"):
        partition(labels, 2, "natural")
    with pytest.raises(ConfigError, match="natural='random'"):
        partition(labels, 2, "natural", users=users, natural="random")
    with pytest.raises(ConfigError, match="one user per sample"):
        partition(labels, 2, "natural", users=users[:5])
    # Float targets (ratings) are fine for a natural partition.
    parts = partition(labels + 0.5, 5, "natural", users=users, natural="contiguous")
    assert [p.tolist() for p in parts] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_local_test_parts_follow_the_training_users():
    users_train = np.array([0, 0, 1, 2, 2, 3, 4, 5])
    users_test = np.array([5, 0, 3, 1, 1, 4, 2, 7])  # user 7 has no training sample
    node_of = user_nodes(users_train, 3, natural="contiguous")
    parts = local_test_parts(users_test, node_of, 3)
    assert [p.tolist() for p in parts] == [[1, 3, 4], [2, 6], [0, 5]]


def test_natural_partition_of_a_loaded_dataset(tmp_path):
    _femnist_dir(tmp_path)
    data = load_dataset("femnist", data_dir=str(tmp_path))
    parts = partition(data.y_train, 3, "natural", users=data.users_train, seed=1)
    node_of = user_nodes(data.users_train, 3, seed=1)
    assert sorted(len(p) for p in parts) == [1, 2, 3]
    for node, part in enumerate(parts):
        assert np.all(node_of[data.users_train[part]] == node)


# ------------------------------------------------------------- synthetic stand-ins


def test_synthetic_stand_ins_fit_their_models(synthetic):
    for name in SYNTHETIC:
        real = name.removeprefix("synthetic_")
        assert STAND_INS[real] == name and DATASETS[name].stands_in_for == real
        data = synthetic[name]
        spec = get_model(DATASETS[name].defaults.model)
        assert DATASETS[name].defaults == DATASETS[real].defaults
        assert data.name == name and data.input_shape == spec.input_shape
        assert data.x_train.dtype == data.x_test.dtype == np.dtype(spec.input_dtype)
        assert data.num_classes == spec.num_classes
        assert data.users_train.dtype == np.int32
        assert data.users_train.shape == data.y_train.shape
        if data.task == "classification":
            assert data.y_train.dtype == np.int32
            assert data.y_train.max() < data.num_classes and data.y_train.min() >= 0
    fem, cel = synthetic["synthetic_femnist"], synthetic["synthetic_celeba"]
    sha, mov = synthetic["synthetic_shakespeare"], synthetic["synthetic_movielens"]
    red = synthetic["synthetic_reddit"]
    assert red.natural == "shuffled" and red.x_train.shape[1:] == (10,)
    assert red.y_train.min() >= 1 and red.y_train.max() < 9999  # no target 0
    assert (red.x_train == 0).any() and (red.x_train == 1).any()  # <PAD>, <UNK>
    assert fem.drop_last and fem.natural == "shuffled" and fem.num_classes == 62
    assert fem.x_train.min() >= 0.0 and fem.x_train.max() <= 1.0
    assert cel.natural == "shuffled" and cel.x_train.max() > 200
    np.testing.assert_array_equal(cel.x_train[:5], np.round(cel.x_train[:5]))
    assert sha.natural == "shuffled" and len(np.unique(sha.users_train)) == 96
    assert 86 not in sha.x_train and 88 not in sha.y_train
    assert mov.task == "rating" and mov.natural == "contiguous"
    assert mov.users_test is not None and len(np.unique(mov.users_train)) == 610
    assert mov.x_train[:, 1].max() < 9724
    assert set(np.unique(mov.y_train)) <= {0.5 * k for k in range(1, 11)}


def test_synthetic_stand_ins_use_a_fixed_seed(synthetic):
    for name in ("synthetic_shakespeare", "synthetic_movielens"):
        again = load_dataset(name, seed=12345)
        np.testing.assert_array_equal(again.x_train, synthetic[name].x_train)
        np.testing.assert_array_equal(again.y_test, synthetic[name].y_test)


def test_synthetic_stand_ins_partition_over_96_nodes(synthetic):
    for name in SYNTHETIC:
        data = synthetic[name]
        parts = partition(
            data.y_train, 96, "natural", users=data.users_train, natural=data.natural
        )
        sizes = np.array([len(p) for p in parts])
        assert sizes.sum() == len(data.y_train)
        assert sizes.min() >= (16 if data.drop_last else 1)
        if name == "synthetic_shakespeare":  # sub96: one role per node
            for part in parts:
                assert len(np.unique(data.users_train[part])) == 1
    mov = synthetic["synthetic_movielens"]
    node_of = user_nodes(mov.users_train, 96, natural="contiguous")
    local = local_test_parts(mov.users_test, node_of, 96)
    assert sum(len(p) for p in local) == len(mov.y_test)
    assert all(len(p) > 0 for p in local)


def test_synthetic_stand_ins_are_learnable(synthetic):
    fem = synthetic["synthetic_femnist"]
    flat = fem.x_train.reshape(len(fem.y_train), -1)
    means = np.stack([flat[fem.y_train == k].mean(0) for k in range(62)])
    test = fem.x_test.reshape(len(fem.y_test), -1)
    dist = (test**2).sum(1)[:, None] - 2 * test @ means.T + (means**2).sum(1)
    assert (dist.argmin(1) == fem.y_test).mean() > 0.5  # chance 1/62
    cel = synthetic["synthetic_celeba"]
    flat = cel.x_train.reshape(len(cel.y_train), -1)
    w = flat[cel.y_train == 1].mean(0) - flat[cel.y_train == 0].mean(0)
    c = (flat[cel.y_train == 1].mean(0) + flat[cel.y_train == 0].mean(0)) / 2
    pred = (cel.x_test.reshape(len(cel.y_test), -1) - c) @ w > 0
    assert (pred == cel.y_test).mean() > 0.75
    sha = synthetic["synthetic_shakespeare"]
    counts = np.zeros((92, 92))
    np.add.at(counts, (sha.x_train[:, -1], sha.y_train), 1)
    assert (counts.argmax(1)[sha.x_test[:, -1]] == sha.y_test).mean() > 0.25
    red = synthetic["synthetic_reddit"]
    last = red.x_train.shape[1] - 1 - np.argmax(red.x_train[:, ::-1] != 0, axis=1)
    key = red.x_train[np.arange(len(last)), last]  # the last real input token
    table: dict[int, dict[int, int]] = {}
    for k, t in zip(key.tolist(), red.y_train.tolist()):
        table.setdefault(k, {}).setdefault(t, 0)
        table[k][t] += 1
    last = red.x_test.shape[1] - 1 - np.argmax(red.x_test[:, ::-1] != 0, axis=1)
    guess = [
        max(table.get(k, {0: 1}).items(), key=lambda kv: kv[1])[0]
        for k in red.x_test[np.arange(len(last)), last].tolist()
    ]
    majority = np.bincount(red.y_train).max() / len(red.y_train)
    assert (np.asarray(guess) == red.y_test).mean() > majority + 0.05
    mov = synthetic["synthetic_movielens"]
    item_mean = np.full(9724, mov.y_train.mean())
    for item in np.unique(mov.x_train[:, 1]):
        item_mean[item] = mov.y_train[mov.x_train[:, 1] == item].mean()
    rmse_item = np.sqrt(np.mean((item_mean[mov.x_test[:, 1]] - mov.y_test) ** 2))
    rmse_global = np.sqrt(np.mean((mov.y_train.mean() - mov.y_test) ** 2))
    assert rmse_item < 0.95 * rmse_global


# ------------------------------------------------------------------ the data package


def test_data_package_has_no_import_circle():
    """Within jwins_jax.data, module-level and function-level imports form no
    cycle (the loaders import the Dataset type, the registry imports the loaders)."""
    import ast
    import pathlib

    import jwins_jax.data

    root = pathlib.Path(jwins_jax.data.__file__).parent
    modules = {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((root / f"{name}.py").read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("jwins_jax.data."):
                    deps.add(node.module.split(".")[2])
                elif node.module == "jwins_jax.data":
                    deps |= {a.name for a in node.names if a.name in modules}
        graph[name] = deps & modules
    assert graph["registry"] >= {"images", "leaf", "reddit", "movielens", "synthetic"}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for dep in graph[name]:
                visit(dep, (*path, name))
            done.add(name)

    for name in sorted(graph):
        visit(name, ())
