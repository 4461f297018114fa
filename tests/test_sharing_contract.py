"""Contract of every registered strategy: jit, vmap, shapes, dtypes, one trace, bytes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax.errors import ConfigError
from jwins_jax.sharing import STRATEGIES, RoundInputs, make_sharing, message_bytes
from jwins_jax.topology import neighbor_table, regular

N = 301
PARAMS = {
    "full": {},
    "random": {"alpha": 0.3},
    "topk": {"alpha": 0.2, "accumulation": "legacy"},
    "wavelet": {"alpha": 0.2, "level": 3},
    "jwins": {"level": 3},
    "choco": {"alpha": 0.2, "gamma": 0.5},
}


def _setup(n=8):
    table = neighbor_table(regular(n, 3, seed=0))
    x0 = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(0), (N,)), (n, N))
    return table, x0


def test_every_strategy_is_in_the_contract():
    assert set(STRATEGIES) == set(PARAMS)


@pytest.mark.parametrize("name", STRATEGIES)
def test_jit_shapes_dtypes_and_single_trace(name):
    table, x0 = _setup()
    sh = make_sharing(name, N, **PARAMS[name])
    traces = []

    def step(state, x, key):
        traces.append(1)
        return sh.step(state, x, key, table, sh.hp)

    step = jax.jit(step)
    state = sh.init(x0)
    x = x0
    for r in range(3):
        x = x + 0.1 * jax.random.normal(jax.random.PRNGKey(10 + r), x.shape)
        x_new, state, stats = step(state, x, jax.random.PRNGKey(r))
        assert x_new.shape == x.shape and x_new.dtype == jnp.float32
        for key in ("meta_bytes", "sent", "receivers"):
            assert stats[key].shape == (8,) and stats[key].dtype == jnp.int32
        assert stats["full"].dtype == jnp.bool_
        assert np.all(np.asarray(stats["sent"]) > 0)
        np.testing.assert_array_equal(np.asarray(stats["receivers"]), 3)
        x = x_new
    assert len(traces) == 1, "a strategy step must trace once"
    assert np.all(np.isfinite(np.asarray(x)))
    # state keeps shapes and dtypes
    s2 = sh.init(x0)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), s2) == jax.tree.map(
        lambda a: (a.shape, a.dtype), state
    )


@pytest.mark.parametrize("name", STRATEGIES)
def test_vmap_over_independent_runs(name):
    """Two runs side by side (e.g. two seeds of a sweep) equal the runs one by one."""
    table, x0 = _setup()
    sh = make_sharing(name, N, **PARAMS[name])
    xs = jnp.stack([x0 + 0.1, x0 - 0.2]) + 0.05 * jax.random.normal(
        jax.random.PRNGKey(1), (2,) + x0.shape
    )
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    states = jax.vmap(sh.init)(jnp.stack([x0, x0]))
    out, _, stats = jax.jit(jax.vmap(lambda s, x, k: sh.step(s, x, k, table, sh.hp)))(
        states, xs, keys
    )
    for b in range(2):
        single, _, st = jax.jit(lambda s, x, k: sh.step(s, x, k, table, sh.hp))(
            sh.init(x0), xs[b], keys[b]
        )
        np.testing.assert_allclose(
            np.asarray(out[b]), np.asarray(single), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_array_equal(
            np.asarray(stats["sent"][b]), np.asarray(st["sent"])
        )


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


@pytest.mark.parametrize("name", ["random", "topk", "wavelet", "jwins", "choco"])
def test_traced_hyperparameters_vmap_like_separate_builds(name):
    """A vmapped step over two hyperparameter values equals two strategies built with
    those values: the traced options really are arguments, not constants."""
    table, x0 = _setup()
    base = dict(PARAMS[name])
    traced = {
        "random": [{"alpha": 0.2}, {"alpha": 0.5}],
        "topk": [{"alpha": 0.1}, {"alpha": 0.3}],
        "wavelet": [
            {"alpha": 0.1, "metadata_cap": 0.5},
            {"alpha": 0.6, "metadata_cap": 0.5},
        ],
        "jwins": [{"alpha_list": [0.1, 0.2]}, {"alpha_list": [0.3, 1.0]}],
        "choco": [{"alpha": 0.1, "gamma": 0.3}, {"alpha": 0.4, "gamma": 0.9}],
    }[name]
    built = [make_sharing(name, N, **{**base, **t}) for t in traced]
    hps = jax.tree.map(lambda *a: jnp.stack(a), *[b.hp for b in built])
    x = x0 + 0.1 * jax.random.normal(jax.random.PRNGKey(4), x0.shape)
    key = jax.random.PRNGKey(7)
    sh = built[0]
    states = jax.vmap(sh.init)(jnp.stack([x0, x0]))
    out, _, stats = jax.jit(jax.vmap(lambda s, h: sh.step(s, x, key, table, h)))(
        states, hps
    )
    sent = []
    for b, one in enumerate(built):
        single, _, st = jax.jit(lambda s: one.step(s, x, key, table, one.hp))(
            one.init(x0)
        )
        np.testing.assert_allclose(
            np.asarray(out[b]), np.asarray(single), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_array_equal(
            np.asarray(stats["sent"][b]), np.asarray(st["sent"])
        )
        sent.append(np.asarray(st["sent"]).sum())
    assert sent[0] != sent[1], "the two hyperparameter values must make a difference"
