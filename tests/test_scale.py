"""Runs with many nodes (issue 17): a sampled evaluation (eval_nodes), the large
synthetic digits set, memory plans without running (--dry-run) and bad input to the
new flags."""

import json

import jax
import numpy as np
import pytest

from jwins_jax import cli, plan
from jwins_jax import experiment as ex
from jwins_jax.config import Config
from jwins_jax.data import load_dataset
from jwins_jax.errors import ConfigError

TINY = {
    "nodes": 8,
    "topology": "ring",
    "partition": "iid",
    "rounds": 2,
    "eval_every": 2,
    "local_steps": 1,
    "test_subset": 32,
    "lr": 0.1,
}


# ----------------------------------------------------------------- eval_nodes
@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_sampled_evaluation_equals_those_nodes_of_the_full_one(digits):
    """eval_nodes = 3 evaluates 3 distinct nodes, drawn from the state's key (the same
    key: the same nodes; other keys: other nodes), with exactly the metrics that the
    full evaluation gives those nodes; consensus and finiteness cover every node."""
    c = Config(**TINY, eval_nodes=3).validate()
    sampled = ex.build_experiment(c, digits)
    full = ex.build_experiment(c.replace(eval_nodes=0).validate(), digits)
    inputs, hp = ex.build_inputs(c, digits), ex.hparams(sampled, c)
    state = jax.jit(sampled.init)(jax.random.PRNGKey(0), hp)
    noise = jax.random.normal(jax.random.PRNGKey(1), state.x.shape)
    state = state.replace(x=state.x + 0.05 * noise)  # nodes differ
    got = jax.jit(sampled.evaluate)(state, inputs)
    ref = jax.jit(full.evaluate)(state, inputs)
    ids = np.asarray(got["eval_ids"])
    assert ids.shape == (3,) and (np.diff(ids) > 0).all() and 0 <= ids.min()
    assert ids.max() < 8
    np.testing.assert_array_equal(np.asarray(ref["eval_ids"]), np.arange(8))
    for k in ("test_acc", "test_loss", "train_acc", "train_loss"):
        assert got[k].shape == (3,)
        np.testing.assert_allclose(got[k], np.asarray(ref[k])[ids], rtol=1e-6)
    assert float(got["consensus"]) == pytest.approx(float(ref["consensus"]))
    assert got["finite"].shape == (8,)
    draws = {
        tuple(np.asarray(sampled.eval_ids(state.replace(key=jax.random.PRNGKey(i)))))
        for i in range(12)
    }
    assert len(draws) > 4  # a fresh sample each evaluation (the key moves every round)
    again = np.asarray(sampled.eval_ids(state))
    np.testing.assert_array_equal(again, ids)
    assert sampled.eval_count == 3 and full.eval_count == 8
    assert ex.build_experiment(c.replace(eval_nodes=99), digits).eval_count == 8


# -------------------------------------------------------------- synthetic_digits
def test_synthetic_digits_is_large_balanced_fixed_and_learnable():
    ds = load_dataset("synthetic_digits")
    assert ds.x_train.shape == (200_000, 8, 8, 1) and ds.x_test.shape[0] == 10_000
    assert ds.x_train.dtype == np.float32 and ds.num_classes == 10
    assert -1.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_train), 20_000)
    again = load_dataset("synthetic_digits", seed=5)  # the run seed changes nothing
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    # a nearest-class-mean classifier: far above chance (10 %), below perfect
    means = np.stack([ds.x_train[ds.y_train == k].mean(axis=0) for k in range(10)])
    dist = ((ds.x_test[:, None] - means[None]) ** 2).sum(axis=(2, 3, 4))
    accuracy = float((dist.argmin(axis=1) == ds.y_test).mean())
    assert 0.4 < accuracy < 0.95
    assert Config(dataset="synthetic_digits").validate().model == "digits_cnn"


# ------------------------------------------------------------------ memory plans
@pytest.mark.parametrize(
    "text, value",
    [
        ("80GB", 80 * 10**9),
        ("24GiB", 24 * 2**30),
        ("512 MiB", 512 * 2**20),
        ("1e3", 1000),
    ],
)
def test_sizes(text, value):
    assert plan.parse_size(text) == value


@pytest.mark.parametrize("text", ["abc", "-1GB", "0", "5XB", ""])
def test_bad_sizes(text):
    with pytest.raises(ConfigError, match="size"):
        plan.parse_size(text, "size")


def test_dry_run_extrapolates_the_compiled_peak_and_writes_nothing(
    tmp_path, capsys, monkeypatch, digits
):
    """``jwins run --dry-run`` at n = 16 fits the compiled peaks at n = 16 and 1,024;
    given the peak of a third, independent compile at n = 64 as device memory, it
    names a largest n of 56-64: the line predicts that peak within about 12 %, on
    the safe side. Nothing is written, not even the compilation cache."""
    c = Config(**{**TINY, "nodes": 16}).validate()
    exp = ex.build_experiment(c, digits)
    inputs, hp = ex.build_inputs(c, digits), ex.hparams(exp, c)
    actual = plan.block_memory(exp, inputs, hp, 64).peak
    cache = tmp_path / "cache"
    monkeypatch.setenv("JWINS_COMPILATION_CACHE", str(cache))
    out = tmp_path / "out"
    argv = ["run", "--dry-run", "--device-memory", f"{actual}B", "--out-dir", str(out)]
    for k, v in {**TINY, "nodes": 16}.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "compiled, not run; nothing written" in text
    assert "fit over n = 16 and 1024" in text
    for word in ("arguments", "temporaries", "generated code", "per node", "peak"):
        assert word in text
    most = int(text.split("at most n = ")[1].split()[0].replace(",", ""))
    assert 56 <= most <= 64
    assert not out.exists() and not cache.exists()


def test_sweep_dry_run_plans_the_batch(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "base": {**TINY, "out_dir": str(tmp_path / "out")},
                "grid": {"lr": [0.1, 0.2]},
            }
        )
    )
    argv = ["sweep", str(spec), "--dry-run", "--device-memory", "2GB"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "group 0: 2 configs" in text
    assert "configs per batch fit" in text and "per config" in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--device-memory", "8GB"], "--device-memory plans a run"),
        (["--dry-run", "--device-memory", "lots"], "--device-memory='lots'"),
        (["--dynamic", "--topology", "regular", "--degree", "1"], "degree=1"),
        (
            ["--dynamic", "--topology", "regular", "--nodes", "7", "--degree", "3"],
            "nodes*degree even",
        ),
        (["--coordinator", "nohostport"], "--coordinator='nohostport'"),
        (["--num-processes", "2", "--process-id", "2"], "--process-id=2"),
    ],
)
def test_bad_scale_flags(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    argv = ["run", "--out-dir", str(out), "--quiet", "--rounds", "2"]
    if "--nodes" not in flags:
        argv += ["--nodes", "6"]
    got = cli.main(argv + flags)
    lines = capsys.readouterr().err.strip().splitlines()
    assert got == 2 and len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
