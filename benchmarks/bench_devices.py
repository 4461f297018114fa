"""Rounds per second with the node axis sharded over 1, 2 and 4 devices.

Each point runs in its own process, with ``--xla_force_host_platform_device_count``
on CPU (forced host devices share the same cores, so on a CPU this measures the cost
of partitioning, not a speed-up) or on the machine's real devices when it has an
accelerator. JWINS on digits, IID, batch 1 (so that n = 1,024 nodes all hold data),
3 local steps; n = 96 on the paper graph, n = 1,024 on a random 4-regular graph.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

TAG = "DEVICES_RESULT"
HERE = pathlib.Path(__file__).resolve().parent

_CHILD = r"""
import json, sys
sys.path.insert(0, __BENCH__)
from jwins_jax.hostmem import tune_host_allocator
tune_host_allocator()
import jax
from jwins_jax.config import Config
from simulation import time_blocks
n, rounds, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = Config(nodes=n, topology="edges" if n == 96 else "regular", degree=4,
           partition="iid", batch_size=1, local_steps=3, sharing="jwins",
           rounds=rounds, eval_every=rounds, test_subset=64)
r = time_blocks(c, None, rounds, repeats, shard=True)
print("__TAG__" + json.dumps({"devices": len(jax.devices()),
                              "platform": jax.devices()[0].platform, **r}))
""".replace("__TAG__", TAG).replace("__BENCH__", repr(str(HERE)))


def point(
    n: int, count: int, rounds: int, repeats: int, timeout: float
) -> dict[str, Any]:
    env = dict(os.environ)
    import jax

    if jax.default_backend() == "cpu":
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={count}".strip()
        )
    else:  # real devices: expose the first `count`
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(count))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), str(rounds), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        return {
            "n": n,
            "devices": count,
            "error": proc.stderr.strip().splitlines()[-1:],
        }
    line = next(x for x in proc.stdout.splitlines() if x.startswith(TAG))
    return {"n": n, **json.loads(line[len(TAG) :])}


def run(opts: Any) -> dict[str, Any]:
    """The device-scaling section."""
    quick = bool(getattr(opts, "quick", False))
    sizes = (8,) if quick else (96, 1024)
    counts = (1, 2) if quick else (1, 2, 4)
    import jax

    if jax.default_backend() != "cpu":
        counts = tuple(k for k in (1, 2, 4, 8) if k <= jax.device_count())
    points = []
    for n in sizes:
        for count in counts:
            p = point(
                n,
                count,
                rounds=2 if quick else 3,
                repeats=1 if quick else 2,
                timeout=600.0 if quick else 3600.0,
            )
            print(
                f"[devices] n={n} devices={count}: {p.get('rounds_per_s', 0):.2f} "
                f"rounds/s",
                flush=True,
            )
            points.append(p)
    return {"points": points, "forced_host_devices": jax.default_backend() == "cpu"}
