"""Checkpoint and resume: a stopped and resumed run writes the metrics of a run that
never stopped; a save cut short is never resumed from, a damaged checkpoint is
skipped for the one before it, and checkpoints that cannot be used are refused with
one line and leave the run alone."""

import errno
import json
import os
import pathlib
import shutil
import signal

import pytest

from jwins_jax import checkpoint, cli, runner
from jwins_jax.config import Config
from jwins_jax.errors import RunFailed, Terminated
from jwins_jax.results import RunLog, load_summary, read_metrics


def _config(tmp_path, sharing, name, **extra):
    fields = dict(
        nodes=6,
        topology="ring",
        partition="dirichlet",
        rounds=8,
        eval_every=4,
        local_steps=1,
        batch_size=8,
        test_subset=64,
        lr=0.1,
        seed=5,
        sharing=sharing,
        out_dir=str(tmp_path),
        name=name,
    )
    c = Config(**{**fields, **extra})
    if sharing == "jwins":
        c = c.replace(level=2)
    return c


def _strip(records):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


def _stop_at(monkeypatch, round_):
    """Sends this process a SIGINT when the run has done ``round_`` rounds."""
    original = RunLog.add_segment

    def add_segment(self, per_round):
        original(self, per_round)
        if self.done == round_:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(RunLog, "add_segment", add_segment)
    return original


@pytest.mark.parametrize("sharing", ["jwins", "choco"])
def test_stopped_and_resumed_run_equals_an_uninterrupted_run(
    tmp_path, monkeypatch, sharing
):
    whole = runner.run_config(_config(tmp_path, sharing, "whole"))
    assert whole["status"] == "finished"
    # stop at round 6: inside the second evaluation block (rounds 5-8), after a
    # checkpoint segment (checkpoint_every=3 splits the blocks at 3 and 6)
    original = _stop_at(monkeypatch, 6)
    with pytest.raises(Terminated, match="stopped by Ctrl-C after round 6"):
        runner.run_config(_config(tmp_path, sharing, "cut", checkpoint_every=3))
    monkeypatch.setattr(RunLog, "add_segment", original)
    cut = tmp_path / "cut"
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "--resume" in summary["error"]
    assert [r["round"] for r in read_metrics(cut)] == [4]
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["3", "6"]
    resumed = runner.run_config(Config(), resume=cut)
    assert resumed["status"] == "finished" and resumed["resumed"] is True
    assert _strip(read_metrics(cut)) == _strip(read_metrics(tmp_path / "whole"))


def _stopped_run(tmp_path, monkeypatch):
    original = _stop_at(monkeypatch, 4)
    with pytest.raises(Terminated):
        runner.run_config(_config(tmp_path, "full", "r"))
    monkeypatch.setattr(RunLog, "add_segment", original)
    return tmp_path / "r"


def _snapshot(run_dir: pathlib.Path) -> dict:
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in run_dir.rglob("*")
        if p.is_file()
    }


def _resume_fails(run_dir, capsys, message):
    before = _snapshot(run_dir)
    code = cli.main(["run", "--resume", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert _snapshot(run_dir) == before, "a refused resume leaves the run as it was"


def test_bad_checkpoints_are_refused(tmp_path, monkeypatch, capsys):
    run_dir = _stopped_run(tmp_path, monkeypatch)
    assert (run_dir / "checkpoints" / "4").is_dir()
    # another config: the run's config.json no longer matches its checkpoint
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "lr": 0.3}))
    _resume_fails(run_dir, capsys, "was written for another config (differs in lr)")
    (run_dir / "config.json").write_text(json.dumps(config))
    # metrics.jsonl no longer begins with what the checkpoint saw
    metrics = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "metrics.jsonl").write_text(metrics.replace('"round": 4', '"round": 5'))
    _resume_fails(run_dir, capsys, "does not begin with the 1 lines the checkpoint")
    (run_dir / "metrics.jsonl").write_text(metrics[:10])
    _resume_fails(run_dir, capsys, "(it was changed or cut short)")
    (run_dir / "metrics.jsonl").write_text(metrics)
    # a damaged checkpoint
    for path in (run_dir / "checkpoints" / "4").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00garbage")
    _resume_fails(run_dir, capsys, "corrupt or unreadable")


def test_resume_refuses_finished_runs_flags_and_non_runs(tmp_path, capsys):
    runner.run_config(_config(tmp_path, "full", "done", rounds=4))
    _resume_fails(tmp_path / "done", capsys, "has already finished")
    code = cli.main(["run", "--resume", str(tmp_path / "done"), "--lr", "0.2"])
    assert code == 2 and "--lr" in capsys.readouterr().err
    os.makedirs(tmp_path / "empty")
    assert cli.main(["run", "--resume", str(tmp_path / "empty")]) == 2
    assert "no config.json" in capsys.readouterr().err


def _fail_save(monkeypatch, at: int):
    """The ``at``-th checkpoint save dies part-way with a full disk: its arrays are
    written to orbax's temporary directory, then writing the metadata fails."""
    from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler

    original = handler.JsonCheckpointHandler.async_save
    calls = {"n": 0}

    async def async_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(handler.JsonCheckpointHandler, "async_save", async_save)
    return lambda: monkeypatch.setattr(
        handler.JsonCheckpointHandler, "async_save", original
    )


def test_a_save_cut_short_is_never_resumed_from(tmp_path, monkeypatch, capsys):
    """A checkpoint save that fails part-way (a full disk) ends the run with a
    message naming the checkpoint and the last good one; resuming from that one, from
    the one before it when it is damaged, or from round 0 when none is left gives the
    metrics of a run that never failed; checkpoint metadata does not grow with the
    evaluations."""
    whole = tmp_path / "whole"
    runner.run_config(_config(tmp_path, "full", "whole", eval_every=1))
    restore = _fail_save(monkeypatch, at=3)  # saves at rounds 2, 4; 6 fails
    with pytest.raises(RunFailed) as failed:
        runner.run_config(
            _config(tmp_path, "full", "cut", eval_every=1, checkpoint_every=2)
        )
    restore()
    cut = tmp_path / "cut"
    text = str(failed.value)
    assert f"the disk is full (No space left on device) writing {cut}" in text
    assert "checkpoints/6" in text and "the last checkpoint is round 4" in text
    assert f"jwins run --resume {cut}" in text and "summary.json records this" in text
    summary, _ = load_summary(cut)
    assert summary["status"] == "failed" and "checkpoints/6" in summary["error"]
    names = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert names == ["2", "4", "6.orbax-checkpoint-tmp"]
    assert checkpoint.rounds(cut) == [2, 4]
    # the metadata holds where metrics.jsonl ended, not its records
    meta = [
        (cut / "checkpoints" / r / "meta" / "metadata").stat().st_size
        for r in ("2", "4")
    ]
    grown = len((cut / "metrics.jsonl").read_text().splitlines()[1]) * 2
    assert abs(meta[1] - meta[0]) < 40 < grown
    variants = {}
    for name in ("damaged", "none"):
        variants[name] = tmp_path / name
        shutil.copytree(cut, variants[name])
    for path in (variants["damaged"] / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00")
    shutil.rmtree(variants["none"] / "checkpoints")
    expected = _strip(read_metrics(whole))
    for run_dir in (cut, variants["damaged"], variants["none"]):
        resumed = runner.run_config(Config(), resume=run_dir)
        assert resumed["status"] == "finished", run_dir
        assert _strip(read_metrics(run_dir)) == expected, run_dir
        assert not any(".orbax-checkpoint-tmp" in p.name for p in run_dir.rglob("*"))
    skipped = json.loads((variants["damaged"] / "summary.json").read_text())
    assert "checkpoints/4" in skipped["skipped_checkpoints"][0]
    assert "skipped_checkpoints" not in json.loads((cut / "summary.json").read_text())
