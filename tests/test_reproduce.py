"""The reproduction report (jwins reproduce): packaged specs, verdicts, a tiny run."""

from __future__ import annotations

import csv
import json
import pathlib
import re

import numpy as np
import pytest

from jwins_jax import analysis as an
from jwins_jax import reproduce as rp
from jwins_jax.sweep import load_spec


@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_claim_specs_are_the_paper_setting(dataset):
    one, two = (load_spec(p) for p in rp.spec_paths(dataset))
    for sweep in (one, two):
        seeds = {sc.config.seed for sc in sweep.configs}
        assert len(seeds) >= 3
        for sc in sweep.configs:
            c = sc.config
            assert (c.nodes, c.topology, c.edges_file, c.dataset) == (
                96,
                "edges",
                None,
                dataset,
            )
    assert {sc.config.sharing for sc in one.configs} == {"full", "jwins"}
    jwins = [sc.config for sc in one.configs if sc.config.sharing == "jwins"]
    assert all(c.alpha_list == an.PAPER_ALPHA_LIST for c in jwins)
    points: dict[str, set] = {}
    for sc in two.configs:
        c = sc.config
        points.setdefault(an.method_key(c), set()).add(an.budget_of(c))
        if c.sharing == "jwins":  # the lists in the spec are the documented mapping
            budget = an.budget_of(c)
            assert c.alpha_list == pytest.approx(an.scaled_alpha_list(budget), abs=1e-4)
            assert c.metadata_cap == 0.5
    assert set(points) == {"random", "topk", "topk_acc", "wavelet", "choco", "jwins"}
    assert all(b == set(rp.BUDGETS) for b in points.values())


def test_unknown_dataset_names_the_specs_there(tmp_path, capsys):
    assert (
        rp.main(
            [
                "--dataset",
                "nope",
                "--specs-dir",
                str(rp.SPECS_DIR),
                "--report-only",
                "--output-dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "nope_claim1.toml" in err and "digits" in err and "cifar10" in err


def test_report_only_without_finished_runs_is_one_line_and_writes_nothing(
    tmp_path, capsys
):
    for claim in (1, 2):
        sweep = tmp_path / "runs" / "reproduce-digits" / f"sweep-digits_claim{claim}"
        sweep.mkdir(parents=True)
        (sweep / "sweep.csv").write_text("index,name,status\n")
    args = ["--output-dir", str(tmp_path), "--report-only", "--rounds", "2"]
    assert rp.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "claim-1 sweep has no finished runs of full, jwins" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "reproduction").exists()
    assert not (tmp_path / "REPRODUCTION.md").exists()


TINY_BASE = """
[base]
nodes = 8
topology = "ring"
partition = "iid"
local_steps = 1
batch_size = 8
lr = 0.1
rounds = 4
eval_every = 2
test_subset = 60

[grid]
seed = [1, 2]
"""


def _tiny_specs(folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir()
    lists = [list(an.scaled_alpha_list(b)) for b in (0.1, 0.3)]
    (folder / "digits_claim1.toml").write_text(
        'name = "tiny_claim1"\n'
        + TINY_BASE
        + '\n[[configs]]\nsharing = "full"\n\n[[configs]]\nsharing = "jwins"\n'
    )
    (folder / "digits_claim2.toml").write_text(
        'name = "tiny_claim2"\n'
        + TINY_BASE
        + '\n[[configs]]\nsharing = "choco"\nalpha = [0.1, 0.3]\n'
        + f'\n[[configs]]\nsharing = "jwins"\nalpha_list = {lists}\n'
    )
    (folder / "digits_crossover.toml").write_text(
        'name = "tiny_crossover"\n'
        + TINY_BASE.replace("seed = [1, 2]", "seed = [1]\nbandwidth_mbps = [1, 1000]")
        + '\n[[configs]]\nsharing = "full"\n\n[[configs]]\nsharing = "choco"\n'
        + f'alpha = 0.1\n\n[[configs]]\nsharing = "jwins"\nalpha_list = {lists[0]}\n'
    )
    return folder


def _rows(path: pathlib.Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_of_a_tiny_run_takes_its_numbers_from_the_sweep_csvs(tmp_path, capsys):
    specs = _tiny_specs(tmp_path / "specs")
    home = tmp_path / "home"
    out, report = home / "reproduction" / "digits", home / "REPRODUCTION.md"
    args = ["--specs-dir", str(specs), "--output-dir", str(home), "--quiet"]
    assert rp.main(args) == 0
    text = report.read_text()
    for name in (
        "claim1_accuracy_vs_rounds.png",
        "claim1_accuracy_vs_bytes.png",
        "claim2_accuracy_vs_bytes.png",
        "claim2_accuracy_vs_time.png",
        "crossover_time_ratio.png",
        "bytes_values_vs_metadata.png",
        "claim1_sweep.csv",
        "claim2_sweep.csv",
        "curves.csv",
    ):
        assert (out / name).is_file(), name
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (report.parent / link).is_file(), link
    assert "## Claim 1" in text and "## Claim 2" in text and "metadata" in text
    assert "## Agreement with the paper" in text and "Claim 1 **" in text

    # Claim 1: final accuracy (mean ± sample std over seeds) and bytes per node.
    one = _rows(out / "claim1_sweep.csv")
    assert len(one) == 4
    for sharing in ("full", "jwins"):
        rows = [r for r in one if r["sharing"] == sharing]
        acc = [float(r["final_test_acc"]) for r in rows]
        nbytes = np.mean([float(r["bytes_per_node"]) for r in rows])
        line = next(
            li
            for li in text.splitlines()
            if li.startswith(f"| {rp.METHODS[sharing]} | 2 | 4 |")
        )
        assert f"{np.mean(acc):.2f} ± {np.std(acc, ddof=1):.2f} %" in line
        assert f"{nbytes / 2**20:.2f} MiB" in line
    # Claim 2: one row per method and budget, same numbers.
    two = _rows(out / "claim2_sweep.csv")
    assert len(two) == 8
    for sharing, budget, rows in (
        (
            "choco",
            0.1,
            [r for r in two if r["sharing"] == "choco" and r["alpha"] == "0.1"],
        ),
        (
            "jwins",
            0.3,
            [
                r
                for r in two
                if r["sharing"] == "jwins" and r["alpha_list"].startswith("0.0875")
            ],
        ),
    ):
        assert len(rows) == 2
        acc = [float(r["final_test_acc"]) for r in rows]
        nbytes = np.mean([float(r["bytes_per_node"]) for r in rows])
        meta = np.mean([float(r["meta_bytes_per_node"]) for r in rows])
        start = f"| {rp.METHODS[sharing]} | {budget * 100:g} % | 2 |"
        line = next(li for li in text.splitlines() if li.startswith(start))
        assert f"{np.mean(acc):.2f} ± {np.std(acc, ddof=1):.2f} %" in line
        assert f"{nbytes / 2**20:.2f} MiB" in line
        assert f"{meta / nbytes * 100:.1f} %" in line
    # The curves behind the plots are the seed means of the runs' evaluations.
    curves = _rows(out / "curves.csv")
    last = [c for c in curves if c["claim"] == "1" and c["method"] == "full"][-1]
    assert float(last["test_acc_mean"]) == pytest.approx(
        np.mean([float(r["final_test_acc"]) for r in one if r["sharing"] == "full"]),
        abs=1e-3,
    )

    # --report-only rewrites the same numbers from the runs already there.
    report.unlink()
    assert rp.main(args + ["--report-only"]) == 0
    again = report.read_text()
    strip = lambda t: re.sub(r"; the command took \d+ min", "", t)  # noqa: E731
    assert strip(again) == strip(text)

    # Bytes to reach a target: each seed's first evaluation at or above it, then the
    # mean over seeds (one rule for both claims), from the runs' metrics.jsonl.
    def first(run_dir: pathlib.Path, target: float, x: str):
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec["test_acc"]["mean"] >= target:
                return rec[x]["mean"] if x == "sim_time_s" else rec[x]
        return None

    def first_bytes(run_dir: pathlib.Path, target: float):
        return first(run_dir, target, "bytes_per_node")

    runs1, runs2 = (
        home / "runs" / "reproduce-digits" / "sweep-tiny_claim1",
        home / "runs" / "reproduce-digits" / "sweep-tiny_claim2",
    )
    full_final = np.mean(
        [float(r["final_test_acc"]) for r in one if r["sharing"] == "full"]
    )
    for frac in rp.CLAIM1_TARGETS:
        hits = {
            s: [
                first_bytes(runs1 / r["name"], frac * full_final)
                for r in one
                if r["sharing"] == s
            ]
            for s in ("full", "jwins")
        }
        row = next(
            li
            for li in text.splitlines()
            if li.startswith(f"| {frac * 100:g} % of full's")
        )
        for s in ("full", "jwins"):
            if None not in hits[s]:
                assert (
                    f"{np.mean(hits[s]) / 2**20:.2f} MiB ± {np.std(hits[s], ddof=1) / 2**20:.2f}"
                    in row
                )
            else:
                assert f"({sum(h is not None for h in hits[s])}/2)" in row
    # Claim 2's tables: per method and budget, each seed's first evaluation at or
    # above the target, its bytes (or mean clock) there; mean over seeds; the fewest
    # over budgets.
    for title, x, unit in (
        ("bytes needed", "bytes_per_node", 2**20),
        ("simulated time needed", "sim_time_s", 1),
    ):
        section = text.split(f"**Same accuracy, {title}.**")[1]
        section = section.split("**Same bytes")[0]
        for frac in rp.CLAIM2_TARGETS:
            row = next(
                li
                for li in section.splitlines()
                if li.startswith(f"| {frac * 100:g} % of")
            )
            cells = [c.strip() for c in row.strip("|").split("|")]
            for col, sharing in ((1, "jwins"), (2, "choco")):
                means = []
                for key in {
                    r["alpha"] + r["alpha_list"] for r in two if r["sharing"] == sharing
                }:
                    hits = [
                        first(runs2 / r["name"], frac * full_final, x)
                        for r in two
                        if r["sharing"] == sharing
                        and r["alpha"] + r["alpha_list"] == key
                    ]
                    if None not in hits:
                        means.append(np.mean(hits))
                suffix = " MiB" if unit != 1 else " s"
                want = f"{min(means) / unit:.2f}{suffix}" if means else "not reached"
                assert cells[col] == want, (frac, sharing, x, cells)
    # The crossover: each bandwidth's time to 80 % of full sharing's final accuracy.
    runs3 = home / "runs" / "reproduce-digits" / "sweep-tiny_crossover"
    three = _rows(out / "crossover_sweep.csv")
    section = text.split("## Beyond the paper")[1].split("## Data against")[0]
    for bw in ("1", "1000"):
        row = next(li for li in section.splitlines() if li.startswith(f"| {bw} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        got = {}
        for col, sharing in ((1, "full"), (2, "jwins"), (3, "choco")):
            (r,) = [
                r
                for r in three
                if r["sharing"] == sharing and r["bandwidth_mbps"] == bw
            ]
            got[sharing] = first(runs3 / r["name"], 0.8 * full_final, "sim_time_s")
            want = "not reached" if got[sharing] is None else f"{got[sharing]:.2f} s"
            assert cells[col] == want, (bw, sharing, cells)
        if got["jwins"] and got["full"]:
            assert cells[4] == f"{got['jwins'] / got['full']:.2f}x"
    slow = next(li for li in section.splitlines() if li.startswith("| 1 |"))
    fast = next(li for li in section.splitlines() if li.startswith("| 1000 |"))
    assert slow != fast  # the bandwidth changes the clocks

    # --dry-run prints the plan and writes nothing.
    dry = tmp_path / "dry"
    capsys.readouterr()
    assert (
        rp.main(["--specs-dir", str(specs), "--output-dir", str(dry), "--dry-run"]) == 0
    )
    printed = capsys.readouterr().out
    assert "sweep 'tiny_claim1': 4 configs" in printed
    assert str(dry / "REPRODUCTION.md") in printed and not dry.exists()


def test_verdicts_follow_their_named_thresholds():
    v = rp.Claim1Verdict
    saving = 1 - v.MIN_SAVING
    assert v(0.0, 0.4, 0.99, 90.0, saving).met is True
    assert v(-v.MAX_LOSS - 0.01, 0.4, 0.99, 90.0, saving).met is None
    assert v(0.0, 0.4, 0.99, 90.0, saving + 0.01).met is None
    assert v(0.0, 1.1, 0.99, 90.0, 1.0).met is False
    assert v(0.0, 0.4, None, None, None).met is False  # no target reached
    w = rp.Claim2Verdict
    big, small = w.MIN_RATIO, w.MIN_RATIO - 0.5
    assert w(((0.8, big), (0.9, 1.5)), (), (), ((0.1, 2.0),), ()).met is True
    assert w(((0.8, small),), (), (), ((0.1, 2.0),), ()).met is None
    assert w(((0.8, small),), (0.9,), (), ((0.1, 2.0),), ()).met is True
    assert w(((0.8, big),), (), (), ((0.1, -1.0),), ()).met is None
    assert w(((0.8, big),), (), (0.95,), ((0.1, 2.0),), ()).met is None
    assert w(((0.8, 0.9),), (), (), ((0.1, -1.0),), ()).met is False
    assert w((), (), (), (), ()).met is False  # neither reaches any target
