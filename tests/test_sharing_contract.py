"""The contract kit (jwins_jax.testing.contract) on every built-in strategy, the kit
against broken strategies it must reject, and checks specific to the built-ins."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax.errors import ConfigError
from jwins_jax.sharing import (
    REGISTRY,
    STRATEGIES,
    RoundInputs,
    make_sharing,
    message_bytes,
    register,
)
from jwins_jax.testing.contract import check_strategy, contract_graph
from jwins_jax.topology import neighbor_table, regular

N = 301
PARAMS = {
    "full": {},
    "random": {"alpha": 0.3},
    "topk": {"alpha": 0.2, "accumulation": "legacy"},
    "wavelet": {"alpha": 0.2, "level": 3},
    "jwins": {"level": 3},
    "fft": {"alpha": 0.2, "accumulation": "legacy"},
    "choco": {"alpha": 0.2, "gamma": 0.5},
}
# two values of each strategy's traced options (the same list lengths: one program)
VMAP = {
    "full": None,
    "random": [{"alpha": 0.2}, {"alpha": 0.5}],
    "topk": [{"alpha": 0.1}, {"alpha": 0.3}],
    "wavelet": [
        {"alpha": 0.1, "metadata_cap": 0.5},
        {"alpha": 0.6, "metadata_cap": 0.5},
    ],
    "jwins": [
        {"alpha_list": [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0]},
        {"alpha_list": [0.3, 1.0, 0.3, 1.0, 0.3, 1.0, 0.3]},
    ],
    "fft": [{"alpha": 0.1, "metadata_cap": 0.5}, {"alpha": 0.3, "metadata_cap": 0.2}],
    "choco": [{"alpha": 0.1, "gamma": 0.3}, {"alpha": 0.4, "gamma": 0.9}],
}
# the setting that shares everything (CHOCO-SGD has none; full sharing is one)
FULL = {
    "full": None,
    "random": {"alpha": 1.0, "metadata_cap": 0.5},
    "topk": {"alpha": 1.0},
    "wavelet": {"alpha": 1.0},
    "jwins": {"alpha_list": [1.0] * 7},
    "fft": {"alpha": 1.0},
    "choco": None,
}


def _setup(n=8):
    table = neighbor_table(regular(n, 3, seed=0))
    x0 = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(0), (N,)), (n, N))
    return table, x0


def test_every_strategy_is_in_the_contract():
    assert set(STRATEGIES) == set(PARAMS) == set(VMAP) == set(FULL)


@pytest.mark.parametrize("name", STRATEGIES)
def test_builtin_strategy_passes_the_contract_kit(name):
    report = check_strategy(
        name, PARAMS[name], vmap_params=VMAP[name], full_params=FULL[name]
    )
    assert {"stats", "vmap", "traces", "locality", "faults"} <= set(report["checks"])
    assert ("full share" in report["checks"]) == (FULL[name] is not None)


# ------------------------------------------------------ the kit rejects broken ones
def _broken(step=None, init=None, hparams=None, name="broken"):
    """Full sharing with one part replaced."""
    base = make_sharing("full", 64)
    changes = {"name": name}
    if step is not None:
        changes["step"] = step
    if init is not None:
        changes["init"] = init
    if hparams is not None:
        changes["hparams"] = hparams
    return dataclasses.replace(base, **changes)


def _full_step(state, x, key, table, hp, inputs=None):
    return make_sharing("full", x.shape[1]).step(state, x, key, table, hp, inputs)


def test_kit_rejects_a_strategy_that_mixes_beyond_the_table():
    def step(state, x, key, table, hp, inputs=None):
        x_new, state, stats = _full_step(state, x, key, table, hp)
        return 0.9 * x_new + 0.1 * jnp.mean(x, axis=0), state, stats

    with pytest.raises(AssertionError, match="not its peers"):
        check_strategy(_broken(step))


def test_kit_rejects_a_table_taken_at_build_time():
    fixed = neighbor_table(contract_graph(8))

    def step(state, x, key, table, hp, inputs=None):
        return _full_step(state, x, key, fixed, hp)

    with pytest.raises(AssertionError, match="failed link|offline"):
        check_strategy(_broken(step))


def test_kit_rejects_state_without_the_node_axis_and_wrong_stats():
    with pytest.raises(AssertionError, match="node axis"):
        check_strategy(_broken(init=lambda x0: {"count": jnp.zeros(())}))

    def lying(state, x, key, table, hp, inputs=None):
        x_new, state, stats = _full_step(state, x, key, table, hp)
        return x_new, state, {**stats, "meta_bytes": stats["meta_bytes"] + 8}

    with pytest.raises(AssertionError, match="full share must carry no metadata"):
        check_strategy(_broken(lying))

    def no_receivers(state, x, key, table, hp, inputs=None):
        x_new, state, stats = _full_step(state, x, key, table, hp)
        return x_new, state, {**stats, "receivers": stats["receivers"] * 0 + 2}

    with pytest.raises(AssertionError, match="receivers"):
        check_strategy(_broken(no_receivers))


def test_kit_rejects_a_strategy_that_ignores_the_weights():
    """Averaging over the table's ids alone also hears failed links and offline
    neighbours (under faults their weight is 0, their id is still listed)."""

    def step(state, x, key, table, hp, inputs=None):
        _, state, stats = _full_step(state, x, key, table, hp)
        total = x
        for c in range(table.idx.shape[1]):
            total = total + x[table.idx[:, c]]
        return total / (table.idx.shape[1] + 1), state, stats

    with pytest.raises(AssertionError, match="failed link|offline"):
        check_strategy(_broken(step))


def test_kit_rejects_traced_values_taken_as_constants():
    """A factory that bakes its traced option into the step instead of reading hp."""
    from jwins_jax.sharing import OPTIONS

    def factory(n_params, alpha=0.1):
        base = make_sharing("full", n_params)

        def step(state, x, key, table, hp, inputs=None):
            x_new, state, stats = base.step(state, x, key, table, hp)
            return x + alpha * (x_new - x), state, stats

        return dataclasses.replace(
            base, hparams=lambda alpha: {"alpha": jnp.float32(alpha)}, step=step
        )

    register("kit_constant", factory, {"alpha": OPTIONS["alpha"]})
    try:
        with pytest.raises(AssertionError, match="built with|make no difference"):
            check_strategy(
                "kit_constant",
                vmap_params=[{"alpha": 0.1}, {"alpha": 0.9}],
                n_params=64,
            )
    finally:
        REGISTRY.pop("kit_constant")


def test_jwins_alpha_draws_are_uniform():
    n = 64
    table = neighbor_table(regular(n, 4, seed=1))
    sh = make_sharing("jwins", N, level=3)
    x0 = jnp.zeros((n, N))
    state = sh.init(x0)
    step = jax.jit(lambda s, x, k: sh.step(s, x, k, table, sh.hp))
    counts = {}
    keys = jax.random.split(jax.random.PRNGKey(0), 60)
    x = x0
    for key in keys:
        x = x + jax.random.normal(key, x.shape)
        x, state, stats = step(state, x, key)
        for s in np.asarray(stats["sent"]):
            counts[int(s)] = counts.get(int(s), 0) + 1
    # 7 list entries give 7 distinct message sizes, each drawn ~1/7 of the time
    assert len(counts) == 7
    total = sum(counts.values())
    freqs = np.array(list(counts.values())) / total
    expected = 1 / 7
    sigma = np.sqrt(expected * (1 - expected) / total)
    assert np.all(np.abs(freqs - expected) < 5 * sigma), freqs


def test_jwins_full_share_fraction_and_reset():
    """alpha = 1.0 (>= cap 0.5) sends all M coefficients with no metadata."""
    table, x0 = _setup()
    sh = make_sharing("jwins", N, level=3)
    state = sh.init(x0)
    alphas = jnp.array([1.0, 0.1, 0.4, 1.0, 0.2, 0.25, 0.3, 0.15])
    x = x0 + 0.1 * jax.random.normal(jax.random.PRNGKey(5), x0.shape)
    _, state, stats = sh.step(
        state, x, jax.random.PRNGKey(0), table, sh.hp, RoundInputs(alphas=alphas)
    )
    full = np.asarray(stats["full"])
    np.testing.assert_array_equal(full, np.asarray(alphas) >= 0.5)
    m = sh.info["coefficients"]
    sent = np.asarray(stats["sent"])
    assert np.all(sent[full] == m)
    assert np.all(np.asarray(stats["meta_bytes"])[full] == 0)
    assert np.all(np.asarray(stats["meta_bytes"])[~full] > 0)
    for i in np.flatnonzero(~full):
        assert sent[i] == round(float(alphas[i]) * m)


def test_registry_rejects_unknown_names_and_parameters():
    with pytest.raises(ConfigError, match="allowed: full"):
        make_sharing("nope", 10)
    with pytest.raises(ConfigError, match="no parameter 'gamma'"):
        make_sharing("topk", 10, gamma=0.1)


@pytest.mark.parametrize("name", ["topk", "wavelet", "jwins"])
def test_partial_round_where_nobody_sends_keeps_every_model(name):
    """k = 0 on every node: no values, no metadata, and every model comes back
    unchanged (up to the transform's round trip) through the no-sender branch."""
    table, x0 = _setup()
    params = dict(PARAMS[name])
    if name == "jwins":
        params["alpha_list"] = [1e-6]
    else:
        params["alpha"] = 1e-6
    sh = make_sharing(name, N, **params)
    x = x0 + 0.1 * jax.random.normal(jax.random.PRNGKey(3), x0.shape)
    step = jax.jit(lambda s, x: sh.step(s, x, jax.random.PRNGKey(0), table, sh.hp))
    x_new, _, stats = step(sh.init(x0), x)
    values, meta = message_bytes(stats)
    assert np.all(np.asarray(stats["sent"]) == 0)
    assert np.all(values == 0) and np.all(meta == 0)
    np.testing.assert_allclose(np.asarray(x_new), np.asarray(x), rtol=0, atol=2e-6)


def test_byte_counters_do_not_overflow_for_large_models_on_dense_graphs():
    """4 N receivers overflows int32 for N of millions; the host multiplies in int64."""
    stats = {
        "sent": np.array([4_317_906], np.int32),
        "meta_bytes": np.array([0], np.int32),
        "receivers": np.array([1023], np.int32),
    }
    values, meta = message_bytes(stats)
    assert values.dtype == np.int64 and int(values[0]) == 4 * 4_317_906 * 1023
    assert int(values[0]) > 2**31
