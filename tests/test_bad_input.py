"""Bad input through the command line, class by class (issue 11, "hardening").

Every case must end with exactly one line on stderr naming what is wrong, exit status
2, and nothing written under the output directory. A second part covers how runs end
when something other than input goes wrong: signals, a full disk, an unexpected error.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from jwins_jax import cli, results

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
    for text in (b"{not json", b"[1, 2]", b"{}", b"\xff\xfe"):
        (run / "summary.json").write_bytes(text)
        assert cli.main(["show", str(run)]) == 0
        out = capsys.readouterr()
        assert "Traceback" not in out.err and "status:" in out.out
    # a killed run: metrics but no summary
    (run / "summary.json").unlink()
    record = {
        "round": 10,
        "test_acc": {"mean": 50.0, "std": 1.0},
        "bytes_per_node": 100.0,
    }
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n{cut off")
    assert cli.main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "50.00" in out and "unknown" in out


# ------------------------------------------------------- how runs end
def _start(tmp_path, *extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "jwins_jax.cli",
        "run",
        "--nodes",
        "8",
        "--topology",
        "ring",
        "--rounds",
        "100000",
        "--eval-every",
        "5",
        "--local-steps",
        "1",
        "--test-subset",
        "32",
        "--out-dir",
        str(tmp_path),
        "--name",
        "r",
        *extra,
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _wait_for_records(path: pathlib.Path, timeout: float = 300.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.is_file() and path.read_text().count("\n") >= 1:
            return
        time.sleep(0.2)
    raise AssertionError("the run wrote no metrics in time")


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_ends_the_run_with_a_checkpoint_and_a_true_summary(tmp_path, sig):
    proc = _start(tmp_path)
    _wait_for_records(tmp_path / "r" / "metrics.jsonl")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert "--resume" in summary["error"]
    assert (tmp_path / "r" / "checkpoints").is_dir()
    for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # every line whole


def test_full_disk_keeps_whole_lines_and_no_temporary_files(
    tmp_path, monkeypatch, capsys
):
    """A write that fails half way (ENOSPC) leaves metrics.jsonl with whole lines
    only, no *.tmp file, a one-line error and exit status 1."""
    real_open = open

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return self.f.__exit__(*a)

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device")

    calls = {"n": 0}

    def failing_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            calls["n"] += 1
            if calls["n"] >= 2:
                return HalfWriter(f)
        return f

    monkeypatch.setattr(results, "open", failing_open, raising=False)
    monkeypatch.setattr("builtins.open", failing_open)
    out = tmp_path / "out"
    code = cli.main(
        ["run", *SMALL, "--rounds", "6", "--out-dir", str(out), "--name", "d"]
    )
    monkeypatch.setattr("builtins.open", real_open)
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err
    run = out / "d"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["round"] == 2
    assert not list(run.glob("*.tmp"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left" in summary["error"]


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
