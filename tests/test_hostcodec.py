"""fpzip measured on the host (``fpzip_every``, SPEC 5.4): the codec on one message,
the messages a measured round returns against what the round sent, a run's
``fpzip_*`` records, the counters a checkpoint keeps, and the one-line refusal when
the codec is not installed."""

import json

import fpzip
import jax
import numpy as np
import pytest

from jwins_jax import checkpoint, cli, experiment, gossip, hostcodec
from jwins_jax.config import Config
from jwins_jax.errors import ConfigError
from jwins_jax.results import RunLog, read_metrics
from jwins_jax.runner import run_config


def test_fpzip_bytes_are_the_codecs_and_lossless():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    data = fpzip.compress(x, precision=0, order="C")
    assert hostcodec.fpzip_bytes(x) == len(data) < 4 * x.size
    np.testing.assert_array_equal(fpzip.decompress(data, order="C").ravel(), x)
    z = (x[:500] + 1j * x[500:]).astype(np.complex64)  # parts interleaved
    parts = np.stack([z.real, z.imag], axis=1).reshape(-1)
    assert hostcodec.fpzip_bytes(z) == len(fpzip.compress(parts, precision=0))
    assert hostcodec.fpzip_bytes(np.zeros(0, np.float32)) == 0
    mask = np.zeros((3, 1000), bool)
    mask[0, ::3] = True
    mask[2] = True
    sizes = hostcodec.message_bytes(np.stack([x, x, x]), mask)
    assert sizes.dtype == np.int64
    assert sizes.tolist() == [
        len(fpzip.compress(x[::3], precision=0)),
        0,
        len(data),
    ]


def _small(**changes) -> Config:
    base = Config(
        nodes=6,
        topology="ring",
        partition="iid",
        rounds=3,
        eval_every=3,
        local_steps=1,
        batch_size=8,
        test_subset=32,
        fpzip_every=2,
    )
    return base.replace(**changes)


def test_a_measured_round_returns_what_the_round_sent():
    exp, inputs, hp = experiment.build(_small())
    state = exp.init(jax.random.PRNGKey(3), hp)
    plain, metrics = jax.jit(exp.round_step)(state, hp, inputs)
    measured, m_metrics, (values, mask) = jax.jit(exp.measured_round)(state, hp, inputs)
    np.testing.assert_allclose(measured.x, plain.x, rtol=1e-6, atol=1e-6)
    for key in ("sent", "value_bytes", "meta_bytes", "receivers"):
        np.testing.assert_array_equal(m_metrics[key], metrics[key])
    np.testing.assert_array_equal(np.sum(mask, axis=1), metrics["sent"])
    # full sharing's messages are the trained models that W averages
    mixed = gossip.mix(exp.table(inputs, state.round), values)
    np.testing.assert_allclose(mixed, measured.x, rtol=1e-5, atol=1e-6)


def test_a_run_reports_the_measured_bytes_next_to_the_counted(tmp_path):
    """Top-k at alpha 0.3: rounds 0 and 2 of 3 are measured (round 0 alone, then
    round 1 in a block, then round 2 alone and the evaluation); the run is the run
    without the measurement."""
    out = str(tmp_path / "runs")
    config = _small(out_dir=out, sharing="topk", alpha=0.3)
    measured = run_config(config.replace(name="fz"))
    plain = run_config(config.replace(name="plain", fpzip_every=0))
    (rec,) = read_metrics(measured["run_dir"])
    (ref,) = read_metrics(plain["run_dir"])
    assert not any(k.startswith("fpzip") for k in ref)
    assert rec["bytes_per_node"] == ref["bytes_per_node"]
    assert rec["test_loss"]["mean"] == pytest.approx(ref["test_loss"]["mean"], 1e-5)
    assert rec["fpzip_rounds"] == 2
    # top-k sends the same count every round: 2 of the 3 rounds
    counted = rec["fpzip_counted_value_bytes_per_node"]
    assert counted == pytest.approx(rec["value_bytes_per_node"] * 2 / 3)
    ratio = rec["fpzip_ratio"]
    assert 0.5 < ratio < 1.0
    assert rec["fpzip_value_bytes_per_node"] == pytest.approx(ratio * counted)
    assert rec["fpzip_bytes_per_node"] == pytest.approx(
        rec["meta_bytes_per_node"] + ratio * rec["value_bytes_per_node"]
    )


def test_checkpoints_keep_the_fpzip_counters(tmp_path):
    config = _small().validate()
    log = RunLog(config, tmp_path, {})
    log.fpzip_cum[:] = [5, 6, 7, 8, 9, 10]
    log.fpzip_counted_cum[:] = 11
    log.fpzip_rounds = 4
    saved = json.loads(json.dumps(checkpoint._to_json(log.counters())))
    back = RunLog(config, tmp_path, {}, counters=checkpoint._from_json(saved))
    assert back.fpzip_cum.tolist() == [5, 6, 7, 8, 9, 10]
    assert back.fpzip_counted_cum.tolist() == [11] * 6 and back.fpzip_rounds == 4


def test_without_fpzip_the_option_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hostcodec, "fpzip_available", lambda: False)
    with pytest.raises(ConfigError, match=r"jwins_jax\[fpzip\]"):
        Config(fpzip_every=5).validate()
    assert Config(fpzip_every=0).validate().fpzip_every == 0
    out = tmp_path / "out"
    code = cli.main(["run", "--fpzip-every", "5", "--out-dir", str(out), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "fpzip_every=5 needs the fpzip codec" in lines[0]
    assert "pip install 'jwins_jax[fpzip]'" in lines[0]
    assert not out.exists()
