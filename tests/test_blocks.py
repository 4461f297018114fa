"""The public blocks of jwins_jax.sharing.blocks: each block against a per-node NumPy
loop, the built-ins' costs, and a complex-valued transform through the pipeline."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import wavelets
from jwins_jax.sharing import RoundInputs, blocks, make_sharing
from jwins_jax.sharing.base import Cost
from jwins_jax.testing.contract import contract_graph
from jwins_jax.topology import mh_matrix, neighbor_table

N = 97
ADJ = contract_graph(7)


def _data(seed=0, n=7, length=N):
    rng = np.random.default_rng(seed)
    own = rng.standard_normal((n, length)).astype(np.float32)
    received = rng.standard_normal((n, length)).astype(np.float32)
    mask = rng.random((n, length)) < 0.4
    return own, received, mask


@pytest.mark.parametrize("rule", ["fill_with_own", "masked_average"])
def test_fill_rules_match_a_per_node_loop(rule):
    """Receiver i combines, entry by entry, what each neighbour j sent (received[j]
    where mask[j]) with its own values, with MH weights."""
    own, received, mask = _data()
    w = mh_matrix(ADJ)
    fill = (
        blocks.fill_with_own() if rule == "fill_with_own" else blocks.masked_average(N)
    )
    got = np.asarray(jax.jit(fill.mix)(neighbor_table(ADJ), own, received, mask, None))
    for i in range(len(own)):
        for q in range(N):
            senders = [j for j in np.flatnonzero(ADJ[i]) if mask[j, q]]
            if rule == "fill_with_own":  # own value where nothing arrived
                want = own[i, q] + sum(
                    w[i, j] * (received[j, q] - own[i, q]) for j in senders
                )
            else:  # average over the copies that arrived, weights renormalised
                num = w[i, i] * own[i, q] + sum(
                    w[i, j] * received[j, q] for j in senders
                )
                want = num / (w[i, i] + sum(w[i, j] for j in senders))
            assert got[i, q] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_codecs_count_exact_bytes():
    _, _, mask = _data(1)
    mask[2] = False
    mask[3, :] = False
    mask[3, 40] = True
    count = mask.sum(axis=1)
    raw32 = blocks.raw_indices(4).size(jnp.asarray(mask))
    raw64 = blocks.raw_indices(8).size(jnp.asarray(mask))
    np.testing.assert_array_equal(raw32, 4 * count)
    np.testing.assert_array_equal(raw64, 8 * count)
    np.testing.assert_array_equal(blocks.seed().size(jnp.asarray(mask)), 8)
    np.testing.assert_array_equal(blocks.no_indices().size(jnp.asarray(mask)), 0)
    elias = np.asarray(blocks.elias_gamma().size(jnp.asarray(mask)))
    for row, size in zip(mask, elias):  # gaps coded in 2 floor(log2 g) + 1 bits
        idx = np.flatnonzero(row)
        bits = sum(2 * int(math.log2(g)) + 1 for g in np.diff(idx))
        assert size == (0 if len(idx) == 0 else math.ceil(bits / 8) + 16)
    for dtype, width in ((jnp.float32, 4), (jnp.complex64, 8), (jnp.float16, 2)):
        values = jnp.ones(mask.shape, dtype)
        out, nbytes, _ = blocks.raw_values().encode(
            (), values, jnp.asarray(mask), None, None
        )
        assert out is values
        np.testing.assert_array_equal(nbytes, width * count)


def test_cutoffs_round_like_python_and_mark_full_shares():
    length = 89_843  # LeNet's M: SPEC Appendix B lists k for each alpha
    cut = blocks.alpha_list(length)
    hp = cut.hparams(alpha_list=(0.1, 0.15, 0.2, 1.0), metadata_cap=0.5)
    np.testing.assert_array_equal(hp.ks, [8984, 13476, 17969, 89843])
    alpha, k, full = cut.draw(hp, None, 4, jnp.asarray([0.15, 1.0, 0.3, 0.5]))
    np.testing.assert_array_equal(k, [13476, 89843, round(0.3 * length), 44922])
    np.testing.assert_array_equal(full, [False, True, False, True])
    strict = blocks.fixed_alpha(10, cap=">")
    _, _, full = strict.draw(strict.hparams(alpha=0.5, metadata_cap=0.5), None, 2)
    assert not np.any(full)


def test_selections_keep_their_rules():
    rng = np.random.default_rng(2)
    score = np.abs(rng.standard_normal((5, N))).astype(np.float32)
    score[1, :10] = 10.0  # ties at the top
    cut = blocks.fixed_alpha(N, cap=None)
    hp = cut.hparams(alpha=0.05)  # k = 5
    inputs = RoundInputs()
    top, _ = blocks.topk(cut).select(jnp.asarray(score), None, hp, inputs)
    top = np.asarray(top)
    np.testing.assert_array_equal(top.sum(axis=1), 5)
    assert top[1, :5].all() and not top[1, 5:].any()  # ties to the lower index
    thr, _ = blocks.threshold(cut).select(jnp.asarray(score), None, hp, inputs)
    assert np.asarray(thr)[1, :10].all()  # ties kept: more than k
    given = rng.random((5, N)) < 0.5
    out, _ = blocks.topk(cut).select(
        jnp.asarray(score), None, hp, RoundInputs(mask=jnp.asarray(given))
    )
    np.testing.assert_array_equal(out, given)
    rand = blocks.bernoulli(blocks.fixed_alpha(N, cap=">"))
    bern, full = rand.select(
        jnp.zeros((5, N)), jax.random.PRNGKey(0), rand.hparams(alpha=0.3), inputs
    )
    assert not np.any(full) and 0.1 < float(np.mean(bern)) < 0.5


def _old_partial_cost(transform, n_params, change, legacy):
    """The costs partial.py declared before the blocks existed (issue 19 keeps them)."""
    length, flops = transform.m, transform.flops
    rank = length * max(1, math.ceil(math.log2(max(length, 2))))
    pre = flops + 2 * length + rank + (n_params + flops + length if change else 0)
    post = flops + (n_params + flops + length if legacy else 0)
    return Cost(pre, post, 3.0)


@pytest.mark.parametrize(
    "name, params, change, legacy",
    [
        ("topk", {"accumulation": "none"}, True, False),
        ("topk", {"accumulation": "legacy"}, True, True),
        ("wavelet", {"selection": "magnitude"}, False, False),
        (
            "wavelet",
            {"selection": "magnitude", "accumulation": "accumulate"},
            True,
            False,
        ),
        ("jwins", {}, True, True),
    ],
)
def test_builtin_costs_are_unchanged(name, params, change, legacy):
    n_params = 6090
    sh = make_sharing(name, n_params, **params)
    tr = (
        wavelets.identity_transform(n_params)
        if name == "topk"
        else wavelets.make_wavelet_transform(n_params, "sym2", 4)
    )
    assert sh.cost == _old_partial_cost(tr, n_params, change, legacy)
    assert make_sharing("random", n_params).cost == Cost(n_params, 0.0, 3.0)


def test_a_complex_transform_flows_through_the_pipeline():
    """A transform with complex64 coefficients (the door left open for an FFT):
    the accumulator takes its dtype, a value costs 8 bytes, models stay float32."""
    n_params = 64
    phase = jnp.exp(1j * jnp.linspace(0, 3, n_params)).astype(jnp.complex64)
    tr = wavelets.Transform(
        "rotate",
        n_params,
        n_params,
        lambda x: x.astype(jnp.complex64) * phase,
        lambda z: jnp.real(z / phase).astype(jnp.float32),
        flops=6.0 * n_params,
        dtype=jnp.complex64,
    )
    sh = blocks.compose(
        "rotate",
        n_params,
        transform=tr,
        score=blocks.score(tr, "change", "legacy"),
        selection=blocks.topk(blocks.fixed_alpha(n_params)),
        indices=blocks.elias_gamma(),
        params={"alpha": 0.25, "metadata_cap": 1.0},
    )
    rng = np.random.default_rng(3)
    x0 = jnp.asarray(np.repeat(rng.standard_normal((1, n_params)), 7, 0), jnp.float32)
    x = x0 + 0.1 * jnp.asarray(rng.standard_normal((7, n_params)), jnp.float32)
    state = sh.init(x0)
    assert state.acc.dtype == jnp.complex64
    x_new, state, stats = jax.jit(
        lambda s, x: sh.step(s, x, jax.random.PRNGKey(0), neighbor_table(ADJ), sh.hp)
    )(state, x)
    assert x_new.dtype == jnp.float32 and state.acc.dtype == jnp.complex64
    np.testing.assert_array_equal(stats["sent"], 16)
    np.testing.assert_array_equal(stats["value_bytes"], 8 * 16)
    # the same selection on the real rotation of the change, done per node
    w = mh_matrix(ADJ)
    p = np.asarray(x, np.complex64) * np.asarray(phase)
    change = np.abs((np.asarray(x) - np.asarray(x0)) * np.asarray(phase))
    masks = [np.argsort(-c, kind="stable")[:16] for c in change]
    z = p.copy()
    for i in range(7):
        for j in np.flatnonzero(ADJ[i]):
            z[i, masks[j]] += w[i, j] * (p[j, masks[j]] - p[i, masks[j]])
    want = np.real(z / np.asarray(phase))
    np.testing.assert_allclose(np.asarray(x_new), want, rtol=1e-5, atol=1e-5)
