"""The paper's FEMNIST, CelebA, Shakespeare, Reddit and MovieLens configs, and the
settings each dataset brings, match SPEC 3 / 7.4.

Read with ``tomllib`` directly, so that the check does not depend on the config
dataclass; ``tests/test_experiments.py`` validates every file through it.
"""

from __future__ import annotations

import pathlib

import pytest
import tomllib

from jwins_jax.data import DATASETS, PARTITIONS
from jwins_jax.models import MODELS, get_model

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"

# dataset -> (rounds T, tau, batch b, lr, test interval, {sharing: alpha}); SPEC 3 rows
# (HEAD scripts) and SPEC 7.4 step configs; MovieLens's T is our choice (README).
PAPER = {
    "femnist": (
        813,
        47,
        16,
        0.01,
        10,
        {"full": None, "jwins": None, "topk": 0.1, "random": 0.1},
    ),
    "celeba": (
        1537,
        8,
        8,
        0.001,
        10,
        {"full": None, "jwins": None, "topk": 0.1, "random": 0.1},
    ),
    "shakespeare": (
        3150,
        2,
        16,
        0.5,
        31,
        {"full": None, "jwins": None, "topk": 0.1, "random": 0.1},
    ),
    "reddit": (
        562,
        4,
        16,
        1.0,
        11,
        {"full": None, "jwins": None, "topk": 0.1, "random": 0.1},
    ),
    "movielens": (450, 10, 16, 0.1, 10, {"full": None, "jwins": None, "random": 0.3}),
}
MODEL = {
    "femnist": "femnist_cnn",
    "celeba": "celeba_cnn",
    "shakespeare": "shakespeare_lstm",
    "reddit": "reddit_rnn",
    "movielens": "movielens_mf",
}
CASES = [(ds, sharing) for ds, row in PAPER.items() for sharing in row[5]]


@pytest.mark.parametrize(("dataset", "sharing"), CASES)
def test_paper_workload_config(dataset, sharing):
    path = EXPERIMENTS / f"{dataset}_{sharing}_paper.toml"
    c = tomllib.loads(path.read_text())
    rounds, tau, batch, lr, every, alphas = PAPER[dataset]
    assert (c["nodes"], c["topology"], c["partition"]) == (96, "edges", "natural")
    assert (c["rounds"], c["local_steps"], c["batch_size"]) == (rounds, tau, batch)
    assert (c["lr"], c["eval_every"], c["sharing"]) == (lr, every, sharing)
    assert c["dataset"] == dataset and c["dataset"] in DATASETS
    assert c["model"] == MODEL[dataset] and c["model"] in MODELS
    assert c["partition"] in PARTITIONS
    if alphas[sharing] is not None:
        assert c["alpha"] == alphas[sharing]
    if sharing == "jwins":
        assert c["alpha_list"] == [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0]
        assert (c["metadata_cap"], c["wavelet"], c["level"]) == (0.5, "sym2", 4)
        assert c["accumulation"] == "legacy"
    assert get_model(c["model"]).num_params > 0


def test_every_paper_workload_config_is_listed():
    files = {p.name for p in EXPERIMENTS.glob("*_paper.toml")}
    wanted = {f"{ds}_{sharing}_paper.toml" for ds, sharing in CASES}
    assert wanted <= files
    readme = (EXPERIMENTS / "README.md").read_text()
    assert all(name in readme for name in wanted)


@pytest.mark.parametrize("dataset", PAPER)
def test_dataset_brings_the_paper_settings(dataset):
    rounds, tau, batch, lr, every, _ = PAPER[dataset]
    for name in (dataset, f"synthetic_{dataset}"):
        d = DATASETS[name].defaults
        assert (d.rounds, d.local_steps, d.batch_size, d.lr, d.eval_every) == (
            rounds,
            tau,
            batch,
            lr,
            every,
        )
        assert (d.model, d.partition) == (MODEL[dataset], "natural")


def test_cifar_and_digits_bring_their_settings():
    # SPEC 3 cifar HEAD row: tau 3, b 8, lr 0.01, T 2166, ta 21, Dirichlet(1)
    for name in ("cifar10", "synthetic_cifar"):
        d = DATASETS[name].defaults
        assert (d.model, d.partition, d.rounds, d.local_steps) == (
            "gn_lenet",
            "dirichlet",
            2166,
            3,
        )
        assert (d.batch_size, d.lr, d.eval_every) == (8, 0.01, 21)
    # digits: the simulator's own job, unchanged (make run)
    d = DATASETS["digits"].defaults
    assert (d.model, d.partition, d.rounds, d.local_steps) == (
        "digits_cnn",
        "dirichlet",
        150,
        3,
    )
    assert (d.batch_size, d.lr, d.eval_every) == (8, 0.05, 10)
