"""Datasets bring their settings (issue 18 section 4): the registry's defaults fill a
config's unset fields, a set field always wins (file, flag, sweep axis), runs say
which values came from the dataset, sweeps group resolved configs, README's table
is the registry's."""

from __future__ import annotations

import json
import pathlib

import pytest

from jwins_jax import cli
from jwins_jax import experiment as ex
from jwins_jax import sweep as sw
from jwins_jax.config import Config
from jwins_jax.data import DATASET_FIELDS, DATASETS
from jwins_jax.data.registry import defaults_table
from jwins_jax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
# The paper's settings, written out here (SPEC 3, 7.4; experiments/README.md):
# model, partition, rounds, local_steps, batch_size, lr, eval_every.
CELEBA = ("celeba_cnn", "natural", 1537, 8, 8, 0.001, 10)
DIGITS = ("digits_cnn", "dirichlet", 150, 3, 8, 0.05, 10)


def _settings(c: Config) -> tuple:
    return tuple(getattr(c, f) for f in DATASET_FIELDS)


def test_unset_fields_take_the_dataset_settings_and_set_ones_win():
    assert _settings(Config().validate()) == DIGITS
    c = Config(dataset="celeba").validate()
    assert _settings(c) == CELEBA
    assert c.dataset_defaults_used() == dict(zip(DATASET_FIELDS, CELEBA))
    own = Config(dataset="celeba", lr=0.05, rounds=1537).validate()
    assert (own.lr, own.rounds) == (0.05, 1537)
    used = own.dataset_defaults_used()
    assert "lr" not in used and "rounds" not in used  # set, even to the same value
    assert used["local_steps"] == 8 and used["model"] == "celeba_cnn"
    # the stand-in runs the job of the dataset it replaces
    assert _settings(Config(dataset="synthetic_celeba").validate()) == CELEBA


def test_config_file_null_and_flags(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"dataset": "synthetic_reddit", "lr": None, "rounds": 9})
    )
    c = Config.from_file(path).validate()
    assert (c.lr, c.rounds, c.local_steps, c.model) == (1.0, 9, 4, "reddit_rnn")
    assert "rounds" not in c.dataset_defaults_used()
    args = cli.build_parser().parse_args(
        ["run", "--config", str(path), "--local-steps", "2"]
    )
    c = cli.config_from_args(args).validate()
    assert (c.rounds, c.local_steps, c.batch_size) == (9, 2, 16)
    # eval_every (11) is capped at rounds: the value is no longer the dataset's
    assert c.eval_every == 9
    assert set(c.dataset_defaults_used()) == {"model", "partition", "batch_size", "lr"}


def test_which_values_came_from_the_dataset_survives_replace_and_validate():
    c = Config(dataset="synthetic_femnist", batch_size=4).validate()
    used = c.dataset_defaults_used()
    named = c.replace(name="x")  # as a sweep names its configs
    assert named.dataset_defaults_used() == used
    assert named.validate().dataset_defaults_used() == used
    moved = named.replace(rounds=3)
    assert "rounds" not in moved.dataset_defaults_used()
    # another dataset brings its own values instead of keeping the old ones
    other = c.replace(dataset="synthetic_celeba").validate()
    assert (other.lr, other.local_steps, other.batch_size) == (0.001, 8, 4)
    assert other.model == "celeba_cnn"


def test_unsupported_partition_is_a_config_error():
    with pytest.raises(ConfigError, match="partition='dirichlet' is not allowed"):
        Config(dataset="movielens", partition="dirichlet").validate()
    with pytest.raises(ConfigError, match="allowed: iid, dirichlet, kshard"):
        Config(partition="natural").validate()
    assert Config(dataset="synthetic_femnist", partition="iid").validate().partition


def test_status_line_names_the_dataset_values():
    said: list[str] = []
    c = Config(dataset="synthetic_reddit", lr=0.5, eval_every=3).validate()
    ex.load_data(c, said.append)
    assert said[0] == (
        "synthetic_reddit brings model=reddit_rnn, partition=natural, rounds=562, "
        "local_steps=4, batch_size=16 (set a field to override)"
    )
    assert said[1] == "loading synthetic_reddit"
    said.clear()
    every = dict(zip(DATASET_FIELDS, DIGITS))
    ex.load_data(Config(**every).validate(), said.append)
    assert said == ["loading digits"]


def test_run_prints_the_status_line_before_a_missing_file_stops_it(tmp_path, capsys):
    argv = ["run", "--dataset", "reddit", "--data-dir", str(tmp_path / "none")]
    code = cli.main([*argv, "--out-dir", str(tmp_path / "out"), "--lr", "0.5"])
    out, err = capsys.readouterr()
    assert code == 2 and "reddit_vocab.pck" in err
    assert (
        "reddit brings model=reddit_rnn, partition=natural, rounds=562, "
        "local_steps=4, batch_size=16, eval_every=11" in out
    )
    assert not (tmp_path / "out").exists()


def test_help_lists_the_values_per_dataset():
    run = cli.build_parser()._subparsers._group_actions[0].choices["run"]
    helps = {a.dest: a.help for a in run._actions}
    for field in DATASET_FIELDS:
        for name, info in DATASETS.items():
            if info.stands_in_for is None:
                value = getattr(info.defaults, field)
                text = f"{value:g}" if isinstance(value, float) else str(value)
                assert name in helps[field] and text in helps[field], field
    assert "reddit: 562" in helps["rounds"] and "reddit: 1;" in helps["lr"]
    assert "'per dataset'" in run.description


def test_sweep_groups_configs_resolved_per_dataset(tmp_path):
    spec = sw.parse_spec(
        {
            "name": "s",
            "base": {"nodes": 8, "topology": "ring", "out_dir": str(tmp_path)},
            "configs": [
                {"dataset": "synthetic_celeba", "lr": [0.001, 0.01]},
                {"dataset": "synthetic_celeba", "local_steps": 8, "seed": 3},
                {"dataset": "synthetic_celeba", "local_steps": 2},
                {"dataset": "synthetic_shakespeare"},
            ],
        }
    )
    groups = spec.groups()
    sizes = sorted(len(g) for g in groups)
    # the three celeba configs with tau 8 (one set, two from the dataset) share a
    # program; tau 2 and Shakespeare need their own
    assert sizes == [1, 1, 3]
    for group in groups:
        c = group[0].config
        assert (
            _settings(c)[:5]
            == _settings(
                Config(dataset=c.dataset, local_steps=c.local_steps).validate()
            )[:5]
        )
    shakespeare = next(g for g in groups if g[0].config.dataset.endswith("speare"))
    assert shakespeare[0].config.lr == 0.5 and shakespeare[0].config.rounds == 3150


@pytest.mark.parametrize(
    "name", [n for n, info in DATASETS.items() if info.files is None]
)
def test_datasets_without_files_build_with_their_own_settings(name):
    """What ``jwins run --dataset X`` builds for every X that needs no files: the
    data, the partition over 96 nodes on the paper's graph, the model and the
    strategy (host side; the programs are compiled by other tests)."""
    c = Config(dataset=name).validate()
    exp, inputs, _ = ex.build(c)
    assert exp.model.name == c.model and inputs.nodes.index.shape[0] == 96
    assert int(inputs.nodes.size.sum()) == inputs.train_y.shape[0]


def test_readme_table_is_the_registry():
    assert defaults_table() in (REPO / "README.md").read_text()
