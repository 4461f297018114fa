"""Wavelet transforms against PyWavelets (SPEC 4.4, Appendix B).

PyWavelets is the reference: ``coeffs_to_array(wavedec(...))`` for the forward
layout and ``waverec`` (trimmed to N) for the inverse, one row at a time. To keep
compile time low, each test jits all the transforms it checks into one program.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt

from jwins_jax import wavelets
from jwins_jax.errors import ConfigError

# Appendix B: model size N -> (sym2 bands cA4, cD4, cD3, cD2, cD1; sym2 M; haar M).
APPENDIX_B = {
    89_834: ((5617, 5617, 11231, 22460, 44918), 89_843, 89_836),
    1_690_046: ((105630, 105630, 211258, 422513, 845024), 1_690_055, 1_690_047),
    30_242: ((1892, 1892, 3782, 7562, 15122), 30_250, 30_245),
    2_683_708: ((167734, 167734, 335466, 670929, 1341855), 2_683_718, 2_683_709),
    4_317_895: ((269871, 269871, 539739, 1079476, 2158949), 4_317_906, 4_317_897),
    206_680: ((12920, 12920, 25837, 51672, 103341), 206_690, 206_681),
}
SMALL_WAVELETS = ("haar", "db1", "sym2", "db3", "coif1", "sym4")
SMALL_SIZES = (7, 8, 21, 40)


def _rows(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _pywt_forward(x, wavelet, level):
    """(B, N) -> (B, M): pywt.coeffs_to_array(pywt.wavedec(row)) per row."""
    return np.stack(
        [
            pywt.coeffs_to_array(
                pywt.wavedec(np.array(row), wavelet, level=level, mode="symmetric")
            )[0]
            for row in x
        ]
    )


def _pywt_inverse(z, n, wavelet, level):
    """(B, M) -> (B, N): pywt.waverec of the bands of each row, first N values."""
    _, slices = pywt.coeffs_to_array(pywt.wavedec(np.zeros(n), wavelet, level=level))
    out = []
    for row in z:
        coeffs = pywt.array_to_coeffs(np.array(row), slices, output_format="wavedec")
        out.append(pywt.waverec(coeffs, wavelet, mode="symmetric")[:n])
    return np.stack(out)


def _assert_close(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}"
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


def _run_all(transforms, xs, zs):
    """forward(x) and inverse([z; forward(x)]) of every transform, in one jit."""

    def run(xs, zs):
        out = []
        for t, x, z in zip(transforms, xs, zs):
            coef = t.forward(x)
            out.append((coef, t.inverse(jnp.concatenate([z, coef]))))
        return out

    return jax.jit(run)(xs, zs)


def _check_against_pywt(configs, backend, batch, seed=0):
    """Forward layout, inverse on random coefficients, and round trip, vs pywt."""
    transforms = [
        wavelets.make_wavelet_transform(n, w, level, backend) for n, w, level in configs
    ]
    xs = [_rows((batch, t.n), seed + i) for i, t in enumerate(transforms)]
    zs = [_rows((batch, t.m), seed + 1000 + i) for i, t in enumerate(transforms)]
    results = _run_all(transforms, xs, zs)
    for (n, w, level), t, x, z, (coef, back) in zip(
        configs, transforms, xs, zs, results
    ):
        what = f"{w} level {level} N={n} ({backend})"
        assert t.m == wavelets.coeff_length(n, w, level)
        want_coef = _pywt_forward(x, w, level)
        _assert_close(coef, want_coef, "forward " + what)
        _assert_close(back[:batch], _pywt_inverse(z, n, w, level), "inverse " + what)
        # dmey is only approximately invertible, in pywt as well.
        want_x = x if w != "dmey" else _pywt_inverse(want_coef, n, w, level)
        _assert_close(back[batch:], want_x, "round trip " + what)


def _all_levels(wavelet, sizes):
    return [
        (n, wavelet, level)
        for n in sizes
        for level in range(1, wavelets.max_level(n, wavelet) + 1)
    ]


# ---------------------------------------------------------------------------------
# Layout bookkeeping (no transforms compiled)
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", sorted(APPENDIX_B))
def test_band_lengths_and_m_match_appendix_b(n):
    bands, m_sym2, m_haar = APPENDIX_B[n]
    assert wavelets.band_lengths(n, "sym2", 4) == list(bands)
    assert wavelets.coeff_length(n, "sym2", 4) == m_sym2
    assert wavelets.coeff_length(n, "haar", 4) == m_haar
    pywt_bands = [
        len(c) for c in pywt.wavedec(np.zeros(n, np.float32), "sym2", level=4)
    ]
    assert pywt_bands == list(bands)


@pytest.mark.parametrize("wavelet", SMALL_WAVELETS + ("dmey", "bior2.4", "rbio3.1"))
def test_band_lengths_and_max_level_match_pywt(wavelet):
    filter_len = pywt.Wavelet(wavelet).dec_len
    for n in range(1, 300):
        assert wavelets.max_level(n, wavelet) == pywt.dwt_max_level(n, filter_len), n
        for level in range(1, wavelets.max_level(n, wavelet) + 1):
            want = [len(c) for c in pywt.wavedec(np.zeros(n), wavelet, level=level)]
            assert wavelets.band_lengths(n, wavelet, level) == want, (n, level)


# ---------------------------------------------------------------------------------
# Values against PyWavelets
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("wavelet", SMALL_WAVELETS)
def test_polyphase_matches_pywt_small_sizes(wavelet):
    configs = _all_levels(wavelet, SMALL_SIZES)
    _check_against_pywt(configs, "polyphase", batch=2)


def test_polyphase_matches_pywt_long_filter():
    # dmey (F = 102) and a biorthogonal pair, whose analysis and synthesis differ.
    configs = [(1100, "dmey", 1), (3001, "bior2.4", 3), (37, "rbio3.1", 2)]
    _check_against_pywt(configs, "polyphase", batch=2)


def test_polyphase_matches_pywt_paper_sizes():
    # Values for a subset of Appendix B (band lengths are checked for all above):
    # LeNet and CelebA (batch 2), and Reddit, whose waverec is N + 1 long (batch 1).
    configs = [(89_834, "sym2", 4), (30_242, "sym2", 4), (89_834, "haar", 4)]
    _check_against_pywt(configs, "polyphase", batch=2)
    _check_against_pywt([(4_317_895, "sym2", 4)], "polyphase", batch=1)


def test_jaxwt_backend_matches_pywt():
    configs = _all_levels("sym2", (7, 22, 33)) + _all_levels("haar", (15, 40))
    configs += [(30_242, "sym2", 4), (101, "db3", 2), (1001, "haar", 4)]
    _check_against_pywt(configs, "jaxwt", batch=2)


@pytest.mark.parametrize("backend", ["polyphase", "jaxwt"])
def test_inverse_of_non_coefficient_vectors_and_batching(backend):
    # A vector that is not forward(x) of anything (M > N), three rows at once:
    # each row must equal its own waverec, whatever the other rows hold.
    n, w, level = 1001, "sym2", 4
    t = wavelets.make_wavelet_transform(n, w, level, backend)
    z = _rows((3, t.m), 7)
    z[1] *= 1000.0
    z[2] = 0.0
    z[2, 5] = 1.0  # a single coefficient: its synthesis atom
    got = t.inverse(jnp.asarray(z))
    _assert_close(got, _pywt_inverse(z, n, w, level), f"inverse ({backend})")
    one = t.inverse(jnp.asarray(z[2:3]))
    _assert_close(one[0], got[2], "row 2 alone vs in the batch")
    assert not np.allclose(np.asarray(t.forward(t.inverse(jnp.asarray(z)))), z)


# ---------------------------------------------------------------------------------
# Transformations: jit, vmap, leading axes, linearity
# ---------------------------------------------------------------------------------


def test_jit_vmap_and_leading_axes_agree():
    t = wavelets.make_wavelet_transform(333, "db3", 3)
    x = jnp.asarray(_rows((4, 2, 333), 3))
    direct = t.forward(x)  # (4, 2, m): any leading shape
    assert direct.shape == (4, 2, t.m)
    mapped = jax.vmap(t.forward)(x)
    flat = t.forward(x.reshape(8, 333)).reshape(4, 2, t.m)
    _assert_close(mapped, direct, "vmap forward")
    _assert_close(flat, direct, "flattened batch")
    want = _pywt_forward(np.asarray(x).reshape(8, 333), "db3", 3)
    _assert_close(direct, want.reshape(4, 2, t.m), "forward vs pywt")
    back = jax.jit(jax.vmap(t.inverse))(direct)
    _assert_close(back, x, "vmap inverse round trip")
    # A single vector works too.
    _assert_close(t.forward(x[0, 0]), direct[0, 0], "1-D input")


def test_forward_is_linear_and_transposable():
    t = wavelets.make_wavelet_transform(1030, "sym2", 4)
    x, y = jnp.asarray(_rows((2, 1030), 1)), jnp.asarray(_rows((2, 1030), 2))
    _assert_close(t.forward(2.0 * x - y), 2.0 * t.forward(x) - t.forward(y), "linear")
    # <W x, z> == <x, W^T z>: the kernel differentiates like a linear map.
    z = jnp.asarray(_rows((2, t.m), 3))
    (wt_z,) = jax.linear_transpose(t.forward, x)(z)
    lhs = float(jnp.vdot(t.forward(x), z))
    rhs = float(jnp.vdot(x, wt_z))
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


# ---------------------------------------------------------------------------------
# Factory, metadata and validation
# ---------------------------------------------------------------------------------


def test_transform_metadata_and_backends():
    assert set(wavelets.BACKENDS) == {"auto", "polyphase", "jaxwt"}
    auto = wavelets.make_wavelet_transform(89_834)
    assert auto.name == "sym2/4/polyphase"
    assert (auto.n, auto.m) == (89_834, 89_843)
    assert wavelets.make_wavelet_transform(89_834) is auto  # cached
    jaxwt = wavelets.make_wavelet_transform(100, "haar", 2, backend="jaxwt")
    assert jaxwt.name == "haar/2/jaxwt"
    assert jaxwt.m == wavelets.coeff_length(100, "haar", 2)


def test_identity_transform():
    t = wavelets.identity_transform(5)
    assert (t.name, t.n, t.m) == ("identity", 5, 5)
    x = jnp.arange(10.0, dtype=jnp.float32).reshape(2, 5)
    np.testing.assert_array_equal(t.forward(x), x)
    np.testing.assert_array_equal(jax.jit(t.inverse)(x), x)


def _one_line_error(call, *words):
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    assert isinstance(info.value, ValueError)
    return message


def test_validate_wavelet_errors():
    _one_line_error(lambda: wavelets.validate_wavelet("foo", 2, 100), "'foo'", "sym")
    _one_line_error(lambda: wavelets.validate_wavelet("morl", 2, 100), "'morl'")
    _one_line_error(lambda: wavelets.validate_wavelet("sym2", 0, 100), "level=0")
    _one_line_error(lambda: wavelets.validate_wavelet("sym2", -1, 100), "level=-1")
    message = _one_line_error(lambda: wavelets.validate_wavelet("sym2", 9, 100))
    # pywt.dwt_max_level(100, 4) == 5
    assert message == "level=9 is too deep for N=100 with sym2: at most 5"
    _one_line_error(lambda: wavelets.validate_wavelet("sym2", 1, 2), "at most 0")
    _one_line_error(lambda: wavelets.validate_wavelet("sym2", 1, 0), "n=0")
    _one_line_error(lambda: wavelets.validate_wavelet("sym2", 2.0, 100), "level=2.0")
    _one_line_error(lambda: wavelets.validate_wavelet("sym2", True, 100), "level=True")
    wavelets.validate_wavelet("sym2", np.int32(5), np.int64(100))  # numpy ints fine
    wavelets.validate_wavelet("sym2", 4, 100)  # fine
    wavelets.validate_wavelet("dmey", 1, 202)  # fine: (F - 1) * 2 = 202


def test_factory_errors():
    make = wavelets.make_wavelet_transform
    _one_line_error(lambda: make(100, "sym2", 4, backend="cuda"), "backend='cuda'")
    _one_line_error(lambda: make(100, "sym2", 6), "level=6", "at most 5")
    _one_line_error(lambda: make(100, "gaus1", 1), "'gaus1'")
    _one_line_error(lambda: wavelets.band_lengths(100, "sym2", 0), "level=0")
    _one_line_error(lambda: wavelets.identity_transform(0), "n=0")
