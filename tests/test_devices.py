"""The node axis sharded over 4 (forced) CPU devices gives the single-device metrics.

Runs in a subprocess: the number of host devices is fixed when JAX starts.
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, pathlib, sys
import jax
from jwins_jax import devices, runner
from jwins_jax.config import Config
from jwins_jax.results import read_metrics

out = pathlib.Path(sys.argv[1])
assert len(jax.devices()) == 4
result = {}
for n, sharing in ((8, "full"), (8, "choco"), (6, "jwins")):
    base = Config(nodes=n, topology="ring", partition="dirichlet", rounds=3, eval_every=2,
                  local_steps=1, test_subset=64, lr=0.1, sharing=sharing, out_dir=str(out),
                  level=2 if sharing == "jwins" else None)
    mesh = devices.node_mesh(n)
    runs = {}
    for shard in (True, False):
        name = f"{sharing}-{n}-{shard}"
        runner.run_config(base.replace(name=name, shard_nodes=shard))
        runs[shard] = read_metrics(out / name)
    result[f"{sharing}-{n}"] = {"mesh": mesh.size, "sharded": runs[True],
                                "single": runs[False]}
print("RESULT" + json.dumps(result))
"""


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("devices")
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.mark.parametrize("case", ["full-8", "choco-8", "jwins-6"])
def test_sharded_run_equals_single_device(sharded, case):
    res = sharded[case]
    # 8 nodes over all 4 devices; 6 nodes over 3 (the most that divide 6)
    assert res["mesh"] == (4 if case.endswith("-8") else 3)
    a, b = res["sharded"], res["single"]
    assert [r["round"] for r in a] == [r["round"] for r in b] == [2, 3]
    for x, y in zip(a, b):
        assert x["bytes_per_node"] == y["bytes_per_node"]
        assert x["test_acc"]["mean"] == pytest.approx(y["test_acc"]["mean"], abs=0.05)
        assert x["train_loss"]["mean"] == pytest.approx(
            y["train_loss"]["mean"], rel=1e-4
        )
        assert x["consensus_distance"] == pytest.approx(
            y["consensus_distance"], rel=1e-3, abs=1e-7
        )


def test_node_mesh_divides_the_nodes():
    from jwins_jax import devices

    assert devices.node_mesh(8, enabled=False) is None
    assert devices.node_mesh(7) is None  # one CPU device here, or a prime n
