"""jwins bench-kernels: its outputs, checks and skips (the small preset at one size)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from jwins_jax import cli, kernelbench, sharing, topology
from tests.test_extension import OWN_OPTIONS, stride_sharing


@pytest.fixture
def stride_registered():
    sharing.register("stride", stride_sharing, OWN_OPTIONS)
    yield
    sharing.REGISTRY.pop("stride")


def test_small_preset_times_checks_and_writes(stride_registered, tmp_path, capsys):
    code = cli.main(
        ["bench-kernels", "--preset", "small", "--sizes", "1000",
         "--out-dir", str(tmp_path), "--name", "kb", "--quiet"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads((tmp_path / "kb" / "kernels.json").read_text())
    rows = result["rows"]
    assert result["settings"]["nodes"] == [1, 8]
    measured = [r for r in rows if "median_s" in r]
    assert {r["family"] for r in measured} == set(kernelbench.FAMILIES)
    assert {r["n"] for r in measured} == {1, 8}
    for r in measured:
        assert r["correct"], r
        assert r["compile_s"] > 0 and r["min_s"] <= r["median_s"] <= r["max_s"]
        # unused arguments are pruned from a program (the stride selection reads
        # only its score's shape), its output is not
        assert r["output_bytes"] > 0 and r["total_bytes"] >= r["output_bytes"]
    names = {r["kernel"] for r in measured if r["family"] == "selection"}
    assert {"topk bisect", "topk sort", "topk top_k", "lax.approx_max_k"} <= names
    for r in measured:
        if r["kernel"] == "lax.approx_max_k":
            assert r["exactness"] == "approximate" and 0 <= r["recall"] <= 1
        if r["kernel"].startswith("topk"):
            assert r["exactness"] == "exact"
    (own,) = [r for r in measured if r["source"] == "stride" and r["n"] == 8]
    assert own["family"] == "selection" and own["kept"] == pytest.approx(334 / 1000)
    fills_n1 = [r for r in rows if r["family"] == "fill" and r["n"] == 1]
    assert fills_n1 and all(r["skipped"] == "needs n >= 3" for r in fills_n1)
    with open(tmp_path / "kb" / "kernels.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert (tmp_path / "kb" / "time_vs_N.png").stat().st_size > 10_000
    assert "median ms" in out and "recall" in out and "stride: stride" in out


def test_sizes_that_do_not_fit_or_take_too_long_are_skipped():
    result = kernelbench.run(
        [1000], [8], families=["ranking"], registered=False, memory_bytes=1000
    )
    assert result["rows"] and all(
        r["skipped"].startswith("does not fit") for r in result["rows"]
    )
    result = kernelbench.run(
        [1000, 4000], [2], families=["ranking"], registered=False, time_budget_s=1e-9
    )
    first = [r for r in result["rows"] if r["N"] == 1000]
    second = [r for r in result["rows"] if r["N"] == 4000]
    assert all("median_s" in r for r in first)
    assert all(r["skipped"].startswith("estimated") for r in second)


@pytest.mark.parametrize(
    "flags, what",
    [
        (["--families", "gossip"], "--families='gossip' is not allowed"),
        (["--sizes", "8"], "--sizes=8 is not allowed"),
        (["--nodes", "0"], "--nodes=0 is not allowed"),
        (["--repeats", "0"], "--repeats=0 is not allowed"),
    ],
)
def test_bad_flags_give_one_line_and_status_2(flags, what, tmp_path, capsys):
    code = cli.main(["bench-kernels", *flags, "--out-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and what in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


def test_a_baseline_runs_once_per_turn_with_its_kernels_and_sees_their_outputs():
    """Ways of one name are shared by the kernels of a family: one call per turn."""
    calls, compared = [], []

    def numpy_mix(kernel, data):
        if not kernel.name.startswith("full mix"):
            return None
        w = topology.mh_matrix(data.adj).astype(np.float32)
        host = np.asarray(data.x)

        def call():
            calls.append(kernel.name)
            return 1.0 + len(calls)  # the seconds the other way reports

        def compare(out):
            compared.append(kernel.name)
            want = w @ host
            return {"baseline_error": float(np.max(np.abs(np.asarray(out) - want)))}

        return kernelbench.Baseline("numpy mix", call, compare)

    result = kernelbench.run(
        [1000], [5], families=["fill"], repeats=2, registered=False, baseline=numpy_mix
    )
    rows = {r["kernel"]: r for r in result["rows"]}
    mixes = [f"full mix ({f})" for f in ("table", "bcoo", "dense")]
    assert compared == mixes
    turns = rows[mixes[0]]["repeats"]
    assert turns >= 2 and len(calls) == 1 + turns  # first call, then once a turn
    times = [2.0 + t for t in range(1, turns + 1)]
    for name in mixes:
        r = rows[name]
        assert r["baseline"] == "numpy mix" and r["repeats"] == turns
        assert r["baseline_repeats"] == turns
        assert r["baseline_median_s"] == pytest.approx(float(np.median(times)))
        assert r["baseline_error"] < 1e-5
    for name in ("fill_with_own", "masked_average"):
        assert "baseline" not in rows[name] and rows[name]["correct"]
