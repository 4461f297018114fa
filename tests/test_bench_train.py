"""benchmarks/bench_train.py runs without PyTorch and reports its rows as missing.

No timing assertions: only that the script runs end to end on a tiny size and that
its evaluation formulations agree.
"""

import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_train
import torch_baseline


def test_quick_run_without_torch(monkeypatch, capsys):
    monkeypatch.setattr(torch_baseline, "torch_available", lambda: False)
    res = bench_train.main(
        ["--quick", "--models", "digits_cnn", "--nodes", "4", "--test-samples", "40"]
    )
    r = res["models"]["digits_cnn"]
    assert r["train_pytorch_s"] is None and r["eval_pytorch_s"] is None
    assert r["train_vectorized_s"] > 0 and r["eval_vectorized_s"] > 0
    assert r["compile_train_s"] > 0 and r["compile_eval_s"] > 0
    assert r["eval_agrees_with_training_forward"]
    out = capsys.readouterr().out
    assert "not installed" in out and "digits_cnn" in out


def test_quick_run_with_torch(capsys):
    pytest.importorskip("torch")
    res = bench_train.main(
        ["--quick", "--models", "digits_cnn", "--nodes", "3", "--test-samples", "40"]
    )
    r = res["models"]["digits_cnn"]
    assert r["train_pytorch_s"] > 0 and r["eval_pytorch_s"] > 0
