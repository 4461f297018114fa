"""relthresh keeps the jwins_jax strategy contract and counts its bytes exactly.

Run with the package installed (its entry point registers the strategy).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pywt

from jwins_jax import sharing
from jwins_jax.testing.contract import check_strategy, contract_graph
from jwins_jax.topology import neighbor_table

N = 301


def test_the_entry_point_registers_it():
    assert "relthresh" in sharing.strategies()
    assert sharing.get("relthresh").source.startswith("entry point relthresh")
    assert sharing.get("relthresh").traced == ("tau",)


def test_contract():
    report = check_strategy(
        "relthresh",
        {"level": 3},
        n_params=N,
        vmap_params=[{"tau": 0.05}, {"tau": 0.5}],
        full_params={"tau": 0.0, "wire_dtype": "float32"},
    )
    assert "full share" in report["checks"]


def _elias_bytes(indices):
    gaps = np.diff(indices)
    bits = int(np.sum(2 * np.floor(np.log2(gaps)).astype(int) + 1))
    return 0 if len(indices) == 0 else (bits + 7) // 8 + 16


def test_bytes_match_a_numpy_pywavelets_selection():
    """First round: the score is |W(x - x0)|; node i sends the coefficients at
    least tau times its largest, 2 bytes per value plus the Elias-gamma indices."""
    nodes, tau = 8, 0.3
    rng = np.random.default_rng(1)
    x0 = np.repeat(rng.standard_normal((1, N)).astype(np.float32), nodes, 0)
    x = (x0 + 0.1 * rng.standard_normal((nodes, N))).astype(np.float32)
    table = neighbor_table(contract_graph(nodes))
    sh = sharing.make_sharing("relthresh", N, level=3, tau=tau, wire_dtype="float16")
    step = jax.jit(lambda s, x: sh.step(s, x, jax.random.PRNGKey(0), table, sh.hp))
    _, _, stats = step(sh.init(jnp.asarray(x0)), jnp.asarray(x))
    for i in range(nodes):
        coef = pywt.coeffs_to_array(pywt.wavedec(x[i] - x0[i], "sym2", level=3))[0]
        score = np.abs(coef)
        chosen = np.flatnonzero(score >= np.float32(tau) * score.max())
        assert int(stats["sent"][i]) == len(chosen) < len(score)
        assert int(stats["value_bytes"][i]) == 2 * len(chosen)
        assert int(stats["meta_bytes"][i]) == _elias_bytes(chosen)
