"""Bad input through the command line, class by class (issue 11, "hardening").

Every case must end with exactly one line on stderr naming what is wrong, exit status
2, and nothing written under the output directory. A second part covers how runs end
when something other than input goes wrong: signals, a full disk, an unexpected error.
"""

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from jwins_jax import cli, results
from jwins_jax.config import Config
from jwins_jax.errors import ConfigError
from jwins_jax.sharing import REGISTRY

SMALL = [
    "--nodes",
    "6",
    "--topology",
    "ring",
    "--rounds",
    "2",
    "--eval-every",
    "2",
    "--local-steps",
    "1",
    "--test-subset",
    "32",
    "--quiet",
]


def _check(argv, capsys, out: pathlib.Path, message: str, code: int = 2):
    got = cli.main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir()), "nothing may be written"


# ------------------------------------------------------------- flags of `run`
FLAG_CASES = [
    # names
    (["--topology", "hypercube"], "topology='hypercube' is unknown"),
    (["--dataset", "mnist"], "dataset='mnist' is unknown"),
    (["--partition", "zipf"], "partition='zipf' is unknown"),
    (["--model", "resnet"], "model='resnet' is unknown"),
    (["--sharing", "gossip"], "sharing='gossip' is unknown"),
    (["--sharing", "topk", "--accumulation", "sometimes"], "accumulation='sometimes'"),
    (["--sharing", "jwins", "--selection", "random"], "selection='random'"),
    (["--sharing", "jwins", "--wavelet-backend", "fft"], "wavelet_backend='fft'"),
    (["--sharing", "topk", "--topk-method", "heap"], "topk_method='heap'"),
    (["--sharing", "wavelet", "--wavelet", "nosuch"], "nosuch"),
    # numbers out of range
    (["--lr", "0"], "lr=0.0"),
    (["--lr", "-1"], "lr=-1.0"),
    (["--lr", "inf"], "lr=inf"),
    (["--lr", "nan"], "lr=nan"),
    (["--momentum", "1"], "momentum=1.0"),
    (["--momentum", "-0.1"], "momentum=-0.1"),
    (["--weight-decay", "inf"], "weight_decay=inf"),
    (["--weight-decay", "-1"], "weight_decay=-1.0"),
    (["--beta", "1.5"], "beta=1.5"),
    (["--dirichlet-alpha", "0"], "dirichlet_alpha=0.0"),
    (["--rounds", "0"], "rounds=0"),
    (["--rounds", "1000000000000"], "rounds=1000000000000"),
    (["--rounds", "2147483648"], "rounds=2147483648"),
    (["--seed", "-1"], "seed=-1"),
    (["--seed", "9223372036854775808"], "seed=9223372036854775808"),
    (["--local-steps", "1000000"], "local_steps=1000000"),
    (["--local-steps", "-2"], "local_steps=-2"),
    (["--batch-size", "0"], "batch_size=0"),
    (["--batch-size", "100000"], "batch_size=100000 is larger than"),
    (["--eval-every", "0"], "eval_every=0"),
    (["--nodes", "1"], "nodes=1"),
    (["--nodes", "5000"], "nodes=5000"),
    (["--degree", "0"], "degree=0"),
    (["--shards", "1000000000"], "shards=1000000000"),
    (["--partition", "kshard", "--shards", "5000"], "shards=5000"),
    (["--train-chunk", "-1"], "train_chunk=-1"),
    (["--test-subset", "-5"], "test_subset=-5"),
    (["--checkpoint-every", "-1"], "checkpoint_every=-1"),
    (["--link-failure", "1.5"], "link_failure=1.5"),
    (["--churn", "-0.5"], "churn=-0.5"),
    # strategy options
    (["--sharing", "topk", "--alpha", "1.5"], "alpha=1.5"),
    (["--sharing", "topk", "--alpha", "0"], "alpha=0.0"),
    (["--sharing", "jwins", "--alpha-list", ""], "alpha_list is empty"),
    (["--sharing", "jwins", "--alpha-list", "0.1,1.2"], "alpha_list entry=1.2"),
    (["--sharing", "jwins", "--alpha-list", "a,b"], "not a list of numbers"),
    (["--sharing", "jwins", "--metadata-cap", "0"], "metadata_cap=0.0"),
    (["--sharing", "wavelet", "--metadata-cap", "1.5"], "metadata_cap=1.5"),
    (["--sharing", "wavelet", "--level", "40"], "level=40"),
    (["--sharing", "wavelet", "--level", "0"], "level=0"),
    (["--sharing", "choco", "--gamma", "0"], "gamma=0.0"),
    (["--sharing", "fft", "--float-precision", "-1"], "float_precision=-1"),
    (["--float-precision", "16777216"], "float_precision=16777216"),
    (["--fpzip-every", "-2"], "fpzip_every=-2"),
    # flag syntax
    (["--rounds", "abc"], "invalid int value"),
    (["--lr", "fast"], "invalid float value"),
    (["--no-such-flag", "1"], "unrecognized arguments"),
    # combinations
    (
        ["--edges-file", "x.edges", "--topology", "ring"],
        "only used with topology='edges'",
    ),
    (["--dynamic", "--topology", "ring"], "dynamic=True"),
    (["--dynamic", "--topology", "regular", "--degree", "6"], "degree=6"),
    (
        ["--dataset", "synthetic_movielens", "--partition", "iid"],
        "partition='iid' is not allowed with dataset='synthetic_movielens'",
    ),
    (
        ["--dataset", "movielens", "--partition", "dirichlet"],
        "partition='dirichlet' is not allowed with dataset='movielens': allowed: "
        "natural",
    ),
    (
        ["--partition", "natural"],
        "partition='natural' is not allowed with dataset='digits'",
    ),
    (
        ["--sharing", "jwins", "--fpzip-every", "2", "--float-precision", "127"],
        "fpzip_every=2 is not allowed with float_precision=127",
    ),
]


@pytest.mark.parametrize("flags,message", FLAG_CASES, ids=[m for _, m in FLAG_CASES])
def test_bad_flags(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    argv = ["run", *SMALL, "--out-dir", str(out), *flags]
    if "--nodes" in flags:  # the case sets its own node count
        i = argv.index("--nodes")
        del argv[i : i + 2]
    if "--topology" in flags:
        i = argv.index("--topology")
        del argv[i : i + 2]
    _check(argv, capsys, out, message)


# A dataset read from files, run with its own settings (no flag but the data
# directory), when the files are missing: the file it looked for and how to make it.
MISSING_DATA = {
    "cifar10": ("cifar10", "tfds build cifar10"),
    "femnist": ("femnist/train", "leaf/data/femnist"),
    "celeba": ("celeba/train", "leaf/data/celeba"),
    "shakespeare": ("shakespeare/train", "leaf/data/shakespeare"),
    "reddit": ("reddit/vocab/reddit_vocab.pck", "build_vocab.py"),
    "movielens": ("movielens/ratings.csv", "ml-latest-small.zip"),
}


@pytest.mark.parametrize("dataset", MISSING_DATA)
def test_dataset_without_its_files(tmp_path, capsys, dataset):
    out = tmp_path / "out"
    where, how = MISSING_DATA[dataset]
    argv = ["run", "--dataset", dataset, "--data-dir", str(tmp_path / "d")]
    _check([*argv, "--out-dir", str(out), "--quiet"], capsys, out, how)
    _check([*argv, "--out-dir", str(out), "--quiet"], capsys, out, where)


# ----------------------------------------------------------- names and paths
NAME_CASES = [
    ("", "name=''"),
    (".", "name='.'"),
    ("..", "name='..'"),
    ("../../x", "name='../../x'"),
    ("/abs/path", "name='/abs/path'"),
    ("a" * 300, "name='aaaa"),
    ("-x", "name='-x'"),
    ("tab\there", "name="),
]


@pytest.mark.parametrize("name,message", NAME_CASES, ids=range(len(NAME_CASES)))
def test_bad_run_names(tmp_path, capsys, name, message):
    out = tmp_path / "out"
    _check(
        ["run", *SMALL, "--out-dir", str(out), f"--name={name}"], capsys, out, message
    )


def test_out_dir_that_is_a_file_or_under_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    _check(["run", *SMALL, "--out-dir", str(f)], capsys, tmp_path / "none", "is a file")
    _check(
        ["run", *SMALL, "--out-dir", str(f / "sub")],
        capsys,
        tmp_path / "none",
        "is a file",
    )
    assert f.read_text() == "x"


def test_out_dir_that_cannot_be_created(tmp_path, capsys):
    # /proc refuses new directories even to root
    _check(
        ["run", *SMALL, "--out-dir", "/proc/jwins-test"],
        capsys,
        tmp_path / "none",
        "/proc/jwins-test",
    )


# ------------------------------------------------------------ config files
def _config_file(tmp_path, text: str | bytes, suffix=".toml") -> pathlib.Path:
    p = tmp_path / f"cfg{suffix}"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


FILE_CASES = [
    ('dynamic = "false"\n', "dynamic='false' is not allowed"),
    ("nodes = 8.5\n", "nodes=8.5 is not allowed"),
    ("nodes = true\n", "nodes=True is not allowed"),
    ("out_dir = 5\n", "out_dir=5 is not allowed"),
    ("name = 3\n", "name=3 is not allowed"),
    ("edges_file = [1]\n", "edges_file=[1] is not allowed"),
    ('lr = "0.1"\n', "lr='0.1' is not allowed"),
    ('alpha_list = [0.1, "x"]\n', "alpha_list entry='x'"),
    ("alpha_list = 0.3\n", "alpha_list=0.3 is not allowed"),
    ('name = "a\\u0000b"\n', "NUL"),
    ("learning_rate = 0.1\n", "unknown field 'learning_rate'"),
    ("[base\n", "is not valid"),
    (b"nodes = 8\n\xff\xfe\n", "is not UTF-8"),
    ("seed = 18446744073709551615\n", "seed=18446744073709551615"),
]


@pytest.mark.parametrize("text,message", FILE_CASES, ids=range(len(FILE_CASES)))
def test_bad_config_files(tmp_path, capsys, text, message):
    out = tmp_path / "out"
    path = _config_file(tmp_path, text)
    _check(
        ["run", *SMALL, "--out-dir", str(out), "--config", str(path)],
        capsys,
        out,
        message,
    )


def test_config_file_that_is_not_a_table_or_has_no_known_suffix(tmp_path, capsys):
    out = tmp_path / "out"
    path = _config_file(tmp_path, "[1, 2]", suffix=".json")
    _check(
        ["run", "--config", str(path), "--out-dir", str(out)],
        capsys,
        out,
        "must hold a table",
    )
    path = _config_file(tmp_path, "nodes = 8", suffix=".yaml")
    _check(
        ["run", "--config", str(path), "--out-dir", str(out)],
        capsys,
        out,
        "unknown format",
    )
    _check(
        ["run", "--config", str(tmp_path / "missing.toml"), "--out-dir", str(out)],
        capsys,
        out,
        "does not exist",
    )


# ------------------------------------------------------------- null values
def _config_via_cli(path: pathlib.Path) -> Config:
    """What `jwins run --config PATH` runs (the function the command line calls)."""
    return cli.config_from_args(
        cli.build_parser().parse_args(["run", "--config", str(path)])
    )


def test_every_field_given_as_null(tmp_path):
    """null (JSON) means the default for an optional field and is refused with one
    line naming the file and the field for every other; every field is tried."""
    refused, defaulted = [], []
    path = tmp_path / "cfg.json"
    for name in Config.fields():
        # a strategy's parameter is tried with a strategy that takes it
        owner = next((s for s in REGISTRY if name in REGISTRY[s].params), None)
        base = {"sharing": owner} if owner else {}
        path.write_text(json.dumps({**base, name: None}))
        try:
            got = _config_via_cli(path).validate()
        except ConfigError as err:
            text = str(err)
            assert "\n" not in text
            assert text.startswith(f"{path}: {name}=null is not allowed"), text
            assert "must not be null" in text and "leave it out" in text, text
            refused.append(name)
            continue
        path.write_text(json.dumps(base))
        assert got == _config_via_cli(path).validate(), name
        defaulted.append(name)
    assert {"nodes", "seed", "sharing", "out_dir", "dynamic", "bandwidth_mbps"} <= set(
        refused
    )
    # the dataset's settings, a strategy's parameters, derived and optional fields
    assert {
        "model",
        "name",
        "alpha",
        "edges_file",
        "train_chunk",
        "rounds",
        "lr",
        "downlink_mbps",
    } <= set(defaulted)
    assert all(Config.fields()[n].default is None for n in defaulted)


def test_null_values_through_the_command_line(tmp_path, capsys):
    out = tmp_path / "out"
    path = _config_file(tmp_path, json.dumps({"nodes": None}), suffix=".json")
    _check(
        ["run", "--config", str(path), "--out-dir", str(out)],
        capsys,
        out,
        "nodes=null is not allowed: nodes must not be null; give an integer",
    )
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"base": {"momentum": None}}))
    _check(["sweep", str(spec), "--out-dir", str(out)], capsys, out, "momentum=null")
    spec.write_text(json.dumps({"grid": {"seed": [1, None]}}))
    _check(["sweep", str(spec), "--out-dir", str(out)], capsys, out, "seed=null")
    _check(
        ["sweep", str(spec), "--config", str(path), "--out-dir", str(out)],
        capsys,
        out,
        f"{path}: nodes=null",
    )
    # null spec keys and optional fields: their defaults
    spec.write_text(
        json.dumps(
            {
                "name": None,
                "batch": None,
                "one_program": None,
                "grid": None,
                "configs": None,
                "base": {"model": None, "alpha": None, "nodes": 6, "topology": "ring"},
            }
        )
    )
    assert cli.main(["sweep", str(spec), "--dry-run", "--out-dir", str(out)]) == 0
    assert "sweep 'spec': 1 configs" in capsys.readouterr().out
    fields = {"model": None, "name": None, "train_chunk": None, "edges_file": None}
    path.write_text(json.dumps(fields))
    assert cli.main(["run", *SMALL, "--config", str(path), "--out-dir", str(out)]) == 0
    assert (out / "full-digits-n6-s90" / "summary.json").is_file()


# ---------------------------------------------------------------- compare
def test_compare_input_checks(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["compare", *SMALL, "--out-dir", str(out)]
    _check(
        base + ["--sharing", "jwins"], capsys, out, "takes --strategies, not --sharing"
    )
    _check(
        base + ["--strategies", "full,full"], capsys, out, "names full more than once"
    )
    _check(base + ["--strategies", "full,gossip"], capsys, out, "'gossip' is unknown")
    _check(base + ["--strategies", ","], capsys, out, "--strategies is empty")
    # a strategy whose options fail late (its wavelet level) leaves no directory
    _check(
        base + ["--strategies", "full,wavelet", "--level", "30"],
        capsys,
        out,
        "level=30",
    )


# ------------------------------------------------------------------- show
def test_show_of_malformed_runs(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert cli.main(["show", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli.main(["show", str(run)]) == 2
    assert "not a results directory" in capsys.readouterr().err
    record = {
        "round": 10,
        "test_acc": {"mean": 50.0, "std": 1.0},
        "bytes_per_node": 100.0,
    }
    # a killed run's last line cut off, a line damaged in the middle
    (run / "metrics.jsonl").write_text(
        json.dumps({**record, "round": 5}) + "\n[3]\n" + json.dumps(record) + "\n{cut"
    )
    for text, reason in (
        (b"{not json", "summary.json is not JSON (Expecting property name"),
        (b"[1, 2]", "summary.json is not a JSON object (it holds a list)"),
        (b"\xff\xfe", "summary.json is not UTF-8 text"),
    ):
        (run / "summary.json").write_bytes(text)
        assert cli.main(["show", str(run)]) == 0
        out = capsys.readouterr()
        assert "Traceback" not in out.err and "stopped" not in out.out
        assert "status: unknown (summary.json is unreadable)" in out.out
        assert reason in out.out, out.out
        assert "50.00" in out.out and "metrics.jsonl: 2 evaluations" in out.out
        assert "metrics.jsonl: malformed lines (not shown): 2, 4" in out.out
    (run / "summary.json").write_bytes(b"{}")
    assert cli.main(["show", str(run)]) == 0
    assert "status: unknown" in capsys.readouterr().out
    # a killed run: metrics but no summary
    (run / "summary.json").unlink()
    assert cli.main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert (
        "50.00" in out
        and "no summary.json: still running, or stopped without one" in out
    )


# ------------------------------------------------------- how runs end
# A run long enough to be stopped in the middle (checkpoints every 10 rounds).
LONG = [
    "--nodes",
    "8",
    "--topology",
    "ring",
    "--rounds",
    "300",
    "--eval-every",
    "5",
    "--checkpoint-every",
    "10",
    "--local-steps",
    "1",
    "--test-subset",
    "32",
]


def _start(tmp_path, *extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "jwins_jax.cli", "run", *LONG]
    cmd += ["--out-dir", str(tmp_path), "--name", "r", *extra]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _wait_for_records(
    path: pathlib.Path, count: int = 1, timeout: float = 300.0
) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.is_file() and path.read_text().count("\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError("the run wrote no metrics in time")


@pytest.fixture(scope="module")
def long_run_metrics(tmp_path_factory):
    """The metrics of LONG run without a stop."""
    out = tmp_path_factory.mktemp("long")
    argv = ["run", *LONG, "--checkpoint-every", "0", "--quiet"]
    assert cli.main(argv + ["--out-dir", str(out), "--name", "whole"]) == 0
    return _strip(results.read_metrics(out / "whole"))


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
    ids=["SIGTERM", "SIGINT", "SIGKILL"],
)
def test_a_signal_mid_run_leaves_a_true_directory_that_resumes(
    tmp_path, capsys, long_run_metrics, sig
):
    """SIGTERM and SIGINT end the run with a checkpoint and an ``interrupted``
    summary; SIGKILL leaves no summary, which `jwins show` says; either way every
    metrics line is whole and --resume gives the metrics of a run never stopped."""
    proc = _start(tmp_path)
    run = tmp_path / "r"
    _wait_for_records(run / "metrics.jsonl", count=3)  # a checkpoint at 10
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in err
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # every line whole
    assert cli.main(["show", str(run)]) == 0
    shown = capsys.readouterr().out
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert not (run / "summary.json").exists()
        assert (
            "status: unknown (no summary.json: still running, or stopped without one"
            in shown
        )
    else:
        assert proc.returncode == 130, err
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        assert "--resume" in summary["error"]
        assert "status: interrupted" in shown
    assert (run / "checkpoints").is_dir() and "newest checkpoint: round" in shown
    assert cli.main(["run", "--resume", str(run), "--quiet"]) == 0
    assert _strip(results.read_metrics(run)) == long_run_metrics


class _FullDisk:
    """``os.write`` to one file fails as a disk that fills up: the ``at``-th write
    writes half of its data (a short write) and every later one raises ENOSPC; with
    ``cut_fails``, cutting the file back (``os.ftruncate``) is refused as well."""

    def __init__(self, monkeypatch, name: str, at: int, cut_fails: bool = False):
        self.name, self.at, self.count = name, at, 0
        self.real_write, self.real_truncate = os.write, os.ftruncate
        monkeypatch.setattr(os, "write", self.write)
        if cut_fails:
            monkeypatch.setattr(os, "ftruncate", self.ftruncate)

    def _ours(self, fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}").endswith(self.name)
        except OSError:
            return False

    def write(self, fd, data):
        if not self._ours(fd):
            return self.real_write(fd, data)
        self.count += 1
        if self.count < self.at:
            return self.real_write(fd, data)
        if self.count == self.at:
            return self.real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def ftruncate(self, fd, length):
        if self._ours(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real_truncate(fd, length)


def _summary_cannot_be_written(monkeypatch):
    real = pathlib.Path.write_bytes

    def write_bytes(self, data):
        if self.name == "summary.json.tmp":
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


def _strip(records):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


def test_full_disk_keeps_whole_lines_and_says_where_to_resume(
    tmp_path, monkeypatch, capsys
):
    """A metrics line that fails part-way (ENOSPC) is cut back; the one-line message
    names the full disk, the file, the last checkpoint and the resume command, and
    says whether summary.json holds it. When the cut and summary.json are refused
    too, the message says so, `jwins show` reports the partial line by number, and
    either run resumes to the metrics of a run that never failed."""
    out = tmp_path / "out"
    argv = ["run", *SMALL, "--rounds", "6", "--checkpoint-every", "2"]
    argv += ["--out-dir", str(out)]
    assert cli.main(argv + ["--name", "whole"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:
        _FullDisk(m, "metrics.jsonl", at=2)
        assert cli.main(argv + ["--name", "d"]) == 1
    err = capsys.readouterr().err
    run = out / "d"
    assert len(err.strip().splitlines()) == 1, err
    assert (
        f"jwins: failed: the disk is full (No space left on device) writing "
        f"{run / 'metrics.jsonl'}; metrics.jsonl keeps the evaluations up to round 2; "
        f"the last checkpoint is round 2 ({run / 'checkpoints' / '2'}): free space, "
        f"then resume with: jwins run --resume {run}; summary.json records this"
    ) in err
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 1 and json.loads(lines[0])["round"] == 2
    assert lines[0].endswith("\n")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "the disk is full" in summary["error"]
    assert not list(run.rglob("*.tmp"))

    with monkeypatch.context() as m:
        _FullDisk(m, "metrics.jsonl", at=2, cut_fails=True)
        _summary_cannot_be_written(m)
        assert cli.main(argv + ["--name", "e"]) == 1
    err = capsys.readouterr().err
    run = out / "e"
    assert len(err.strip().splitlines()) == 1, err
    assert "the file may end with part of a line" in err
    assert "summary.json could not be written either (No space left" in err
    assert not (run / "summary.json").exists() and not list(run.rglob("*.tmp"))
    assert cli.main(["show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "no summary.json" in shown
    assert "metrics.jsonl: malformed lines (not shown): 2" in shown
    assert "newest checkpoint: round 2" in shown

    expected = _strip(results.read_metrics(out / "whole"))
    for name in ("d", "e"):
        assert cli.main(["run", "--resume", str(out / name), "--quiet"]) == 0
        assert _strip(results.read_metrics(out / name)) == expected
        assert results.load_metrics(out / name).malformed == []


def test_unexpected_error_is_one_line_and_a_failed_summary(
    tmp_path, monkeypatch, capsys
):
    def boom(self, *args, **kwargs):
        raise MemoryError("out of host memory")

    monkeypatch.setattr(results.RunLog, "record", boom)
    out = tmp_path / "out"
    code = cli.main(["run", *SMALL, "--out-dir", str(out), "--name", "m"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "MemoryError: out of host memory" in err
    summary = json.loads((out / "m" / "summary.json").read_text())
    assert summary["status"] == "failed" and "MemoryError" in summary["error"]


def test_compare_goes_on_after_a_diverged_strategy(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "compare",
            *SMALL,
            "--strategies",
            "full,jwins",
            "--level",
            "2",
            "--lr",
            "1e30",
            "--rounds",
            "4",
            "--out-dir",
            str(out),
            "--name",
            "c",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    comparison = json.loads((out / "c" / "comparison.json").read_text())
    assert set(comparison) == {"full", "jwins"}
    assert {s["status"] for s in comparison.values()} == {"diverged"}
    assert "diverged" in captured.out
