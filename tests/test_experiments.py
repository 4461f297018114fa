"""The shipped experiment configs parse, validate and match the paper's settings."""

import pathlib

import pytest

from jwins_jax.config import Config
from jwins_jax.sharing.partial import PAPER_ALPHA_LIST
from jwins_jax.errors import ConfigError

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.name)
def test_experiment_configs_validate(path):
    c = Config.from_file(path).validate()
    assert c.nodes == 96 and c.topology == "edges"


def test_paper_cifar_config_matches_spec():
    c = Config.from_file(EXPERIMENTS / "cifar_jwins_paper.toml").validate()
    # SPEC 3 (cifar HEAD): tau 3, b 8, lr 0.01, T 2166, ta 21; SPEC 4.5 JWINS table
    assert (c.local_steps, c.batch_size, c.lr, c.rounds, c.eval_every) == (3, 8, 0.01, 2166, 21)
    assert c.model == "gn_lenet" and c.sharing == "jwins"
    assert c.alpha_list == PAPER_ALPHA_LIST and c.metadata_cap == 0.5
    assert (c.wavelet, c.level, c.accumulation, c.selection) == ("sym2", 4, "legacy", "change")


def test_unknown_field_in_config_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('nodes = 8\nlearning_rate = 0.1\n')
    with pytest.raises(ConfigError, match="unknown field 'learning_rate'"):
        Config.from_file(p)


def test_malformed_config_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{nodes: 8")
    with pytest.raises(ConfigError, match="is not valid"):
        Config.from_file(p)
