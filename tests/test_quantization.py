"""Blockwise 8- and 4-bit quantization (adam_tx/quantization.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adam_tx.quantization import (
    BLOCK_SIZE,
    Blocks,
    Nibbles,
    as_quantized,
    block_grid,
    codebook,
    decode,
    dequantize,
    dynamic_map,
    encode,
    like,
    nearest_code,
    quantize,
    reference_encode,
    scale_shape,
)

BOOKS = [(True, 8), (False, 8), (True, 4), (False, 4)]


@pytest.mark.parametrize("signed", [True, False])
def test_map_structure(signed):
    m = dynamic_map(signed).astype(np.float64)
    assert m.shape == (256,) and np.all(np.diff(m) >= 0)
    assert m[-1] == 1.0 and m[0] == (-1.0 if signed else 0.0)
    assert not np.any(np.signbit(m[m == 0]))  # zero decodes as +0
    pos = m[m > 0]
    # Each decade (10^-(e+1), 10^-e] is split evenly into 2^f values.
    payload = 7 if signed else 8
    for e in range(payload):
        level = pos[(pos > 10.0 ** -(e + 1) * 1.0000001) & (pos <= 10.0**-e * 1.0001)]
        assert level.size == 2 ** (payload - e - 1), e
        if level.size > 1:
            steps = np.diff(level)
            np.testing.assert_allclose(steps, 0.9 * 10.0**-e / level.size, rtol=1e-4)
    assert pos.min() == pytest.approx(10.0 ** -(payload - 1))
    if signed:
        np.testing.assert_array_equal(np.sort(-m), m)


@pytest.mark.parametrize("signed, bits", BOOKS)
def test_codebook_is_the_dynamic_map_with_one_nan_code(signed, bits):
    book = codebook(signed, bits)
    ref = dynamic_map(signed, bits).astype(np.float64)
    values = book.values.astype(np.float64)
    assert values.shape == (2**bits,) and np.isnan(values).sum() == 1
    assert np.isnan(values[book.nan_code])
    # The map's own values, rounded (< 1e-4 relative) so decoding is exact.
    ok = ~np.isnan(values)
    np.testing.assert_allclose(values[ok], ref[ok], rtol=1e-4, atol=0)
    assert values[-1] == 1.0 and np.all(np.diff(book.finite) > 0)
    if signed:  # one zero (the other is the NaN code), symmetric
        assert (values == 0).sum() == 1 and book.nan_code == 2 ** (bits - 1) - 1
        np.testing.assert_array_equal(-book.finite[::-1], book.finite)
    else:  # no zero at all: the smallest code is 10^-(bits-1)
        assert book.nan_code == 0 and book.finite[0] > 0
        assert book.finite[0] == pytest.approx(10.0 ** -(bits - 1), rel=1e-4)


@pytest.mark.parametrize("signed, bits", BOOKS)
def test_decode_gives_the_table_bit_for_bit(signed, bits):
    codes = jnp.arange(2**bits, dtype=jnp.uint8)
    got = np.asarray(jax.jit(lambda c: decode(c, signed, bits))(codes))
    np.testing.assert_array_equal(got, codebook(signed, bits).values)
    assert not np.any(np.signbit(got[got == 0]))


def _dense_grid(signed: bool, bits: int) -> np.ndarray:
    """Uniform and log-spaced values, every map value, every midpoint and the
    floats on either side of each, zeros, the ends and non-finite values."""
    rng = np.random.default_rng(0)
    finite = codebook(signed, bits).finite
    mids = ((finite[1:].astype(np.float64) + finite[:-1]) / 2).astype(np.float32)
    edges = np.concatenate([finite, mids])
    y = np.concatenate(
        [
            np.linspace(-1 if signed else 0, 1, 400_001, dtype=np.float32),
            (10 ** rng.uniform(-12, 0, 200_000)).astype(np.float32),
            edges,
            np.nextafter(edges, np.float32(np.inf)),
            np.nextafter(edges, np.float32(-np.inf)),
            [0.0, -0.0, 1.0, 1e-30, 1e-38, 1e-45, np.nan, np.inf, -np.inf],
        ]
    ).astype(np.float32)
    if signed:
        return np.concatenate([y, -y])
    return np.abs(y)


@pytest.mark.parametrize("signed, bits", BOOKS)
def test_closed_form_codes_equal_the_search(signed, bits):
    y = jnp.asarray(_dense_grid(signed, bits))
    fast = np.asarray(jax.jit(lambda v: encode(v, signed, bits))(y))
    slow = np.asarray(jax.jit(lambda v: reference_encode(v, signed, bits))(y))
    np.testing.assert_array_equal(fast, slow)
    book = codebook(signed, bits)
    y = np.asarray(y)
    # The search is the nearest value, ties to the lower one.
    finite = np.isfinite(y)
    err = np.abs(book.values[fast[finite]].astype(np.float64) - y[finite])
    best = np.abs(book.finite[None, :].astype(np.float64) - y[finite][:5000, None])
    np.testing.assert_array_equal(err[:5000], best.min(axis=1))
    assert np.all(fast[~finite] == book.nan_code)
    zero = 2 ** (bits - 1) if signed else 1  # the unsigned map: its smallest value
    assert np.all(fast[y == 0] == zero)


@pytest.mark.parametrize("signed", [True, False])
def test_nearest_code_is_the_argmin(signed):
    code_map = dynamic_map(signed)
    rng = np.random.default_rng(0)
    y = np.concatenate(
        [
            rng.uniform(-1 if signed else 0, 1, 5000),
            np.sign(rng.normal(size=2000)) ** (not signed)
            * 10 ** rng.uniform(-9, 0, 2000),
            code_map,  # exact codes
            (code_map[1:] + code_map[:-1]) / 2,  # midpoints: either side is nearest
        ]
    ).astype(np.float32)
    codes = np.asarray(nearest_code(jnp.asarray(y), jnp.asarray(code_map)))
    err = np.abs(code_map[codes] - y)
    best = np.abs(code_map[None, :] - y[:, None]).min(axis=1)
    np.testing.assert_array_equal(err, best)


# ------------------------------------------------------------------ layout


@pytest.mark.parametrize(
    "shape, block, grid, scales",
    [
        ((2000, 1000), 256, (1, 250), (2000, 4)),
        ((128, 256), 256, (1, 256), (128, 1)),
        ((80, 64), 256, (4, 64), (20, 1)),
        ((4096, 8), 256, (32, 8), (128, 1)),
        ((3, 3, 64, 128), 256, (2, 128), (3, 3, 32, 1)),
        ((10,), 4, (1, 4), (3,)),
        ((4097,), 256, (1, 241), (17,)),
        ((7, 300), 128, (1, 100), (7, 3)),
    ],
)
def test_blocks_run_along_the_last_axis(shape, block, grid, scales):
    assert block_grid(shape, block) == grid
    assert scale_shape(shape, block) == scales
    rows, cols = grid
    assert rows * cols <= block
    # At most ~2 bytes per block more than a flat layout's 4 bytes / block.
    assert math.prod(scales) <= math.ceil(math.prod(shape) / block) * 2


def _np_block_max(x: np.ndarray, block: int) -> np.ndarray:
    """Per element, the largest finite |x| of its block (numpy, independently)."""
    rows, cols = block_grid(x.shape, block)
    v = x.reshape(x.shape if x.ndim >= 2 else (1, *x.shape))
    m, n = v.shape[-2:]
    mb, nb = -(-m // rows), -(-n // cols)
    a = np.where(np.isfinite(v), np.abs(v), 0).astype(np.float64)
    pad = [(0, 0)] * (v.ndim - 2) + [(0, mb * rows - m), (0, nb * cols - n)]
    a = np.pad(a, pad).reshape(*v.shape[:-2], mb, rows, nb, cols).max(axis=(-3, -1))
    full = np.repeat(np.repeat(a, rows, -2), cols, -1)[..., :m, :n]
    return a, full.reshape(x.shape)


def _bound(x: np.ndarray, signed: bool, bits: int, block: int) -> np.ndarray:
    """Per element: half the gap of the map around x / absmax, times absmax
    (for the unsigned map below its smallest value: that value)."""
    _, amax = _np_block_max(x, block)
    finite = codebook(signed, bits).finite.astype(np.float64)
    y = x / np.where(amax > 0, amax, 1)
    i = np.clip(np.searchsorted(finite, y), 1, finite.size - 1)
    half_gap = (finite[i] - finite[i - 1]) / 2
    if not signed:
        half_gap = np.where(y < finite[0], finite[0], half_gap)
    return half_gap * amax * (1 + 1e-5) + 1e-45


CASES = {
    "random": lambda r: r.normal(size=(37, 1000)),
    "short rows": lambda r: r.normal(size=(300, 24)),
    "tiny": lambda r: 1e-30 * r.normal(size=(3000,)),
    "huge": lambda r: 1e30 * r.normal(size=(3000,)),
    "all_zero": lambda r: np.zeros((10, 1000)),
    "constant": lambda r: np.full((2, 700), -3.5),
    "wide_range": lambda r: (
        r.normal(size=(3, 1000)) * 10 ** r.uniform(-8, 3, 3000).reshape(3, 1000)
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("signed, bits", BOOKS)
def test_round_trip_error_bound(case, signed, bits):
    x = CASES[case](np.random.default_rng(1)).astype(np.float32)
    if not signed:
        x = np.abs(x)
    block = 256 if bits == 8 else 128
    q = jax.jit(lambda v: quantize(v, signed=signed, bits=bits))(jnp.asarray(x))
    assert q.shape == x.shape and q.absmax.dtype == jnp.float32
    assert q.absmax.shape == scale_shape(x.shape, block)
    if bits == 8:
        assert q.codes.dtype == jnp.uint8 and q.codes.shape == x.shape
    else:
        assert q.pairs.dtype == jnp.uint8 and q.pairs.shape[-1] == x.shape[-1] // 2
    back = np.asarray(dequantize(q, signed=signed))
    err = np.abs(back.astype(np.float64) - x)
    assert np.all(err <= _bound(x, signed, bits, block)), case
    # Each block's largest element is exact; signs never flip; zero stays zero
    # in the signed map (the unsigned map has no zero).
    amax, _ = _np_block_max(x, block)
    np.testing.assert_array_equal(np.asarray(q.absmax), amax.reshape(q.absmax.shape))
    assert np.all(np.sign(back) * np.sign(x) >= 0)
    if signed:
        assert np.all(back[x == 0] == 0)
    if case in ("constant", "all_zero"):
        np.testing.assert_array_equal(back, x)


def test_blocks_never_mix_rows():
    # Rows of one leaf quantize as if they were separate leaves.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 600)).astype(np.float32) * np.logspace(-6, 6, 6)[:, None]
    whole = np.asarray(dequantize(quantize(jnp.asarray(x))))
    for r in range(6):
        alone = np.asarray(dequantize(quantize(jnp.asarray(x[r]))))
        np.testing.assert_array_equal(whole[r], alone)


def test_relative_error_of_large_elements():
    # Above a tenth of the block maximum, 64 (signed) or 128 (unsigned) even
    # steps per decade bound the relative error.
    x = np.random.default_rng(2).uniform(0.1, 1.0, 4096).astype(np.float32)
    x[::BLOCK_SIZE] = 1.0
    for signed, steps in [(True, 64), (False, 128)]:
        back = np.asarray(
            dequantize(quantize(jnp.asarray(x), signed=signed), signed=signed)
        )
        assert np.max(np.abs(back - x) / x) <= 0.45 / steps / 0.1 + 1e-4


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("signed, bits", BOOKS)
def test_a_nonfinite_element_stays_nonfinite_and_alone(bad, signed, bits):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 512)).astype(np.float32)
    if not signed:
        x = np.abs(x)
        bad = abs(bad)
    quant = jax.jit(lambda v: quantize(v, signed=signed, bits=bits))
    deq = lambda q: np.asarray(dequantize(q, signed=signed))
    clean_q = quant(jnp.asarray(x))
    clean = deq(clean_q)
    poisoned = x.copy()
    poisoned[2, 7] = bad
    q = quant(jnp.asarray(poisoned))
    back = deq(q)
    # The block scale ignores it, so every other element is as if it were 0
    # (or, where the clean element was the block maximum, as it would be then).
    x_zero = x.copy()
    x_zero[2, 7] = 0
    want = deq(quant(jnp.asarray(x_zero)))
    mask = np.ones(x.shape, bool)
    mask[2, 7] = False
    np.testing.assert_array_equal(back[mask], want[mask])
    assert np.all(np.isfinite(back[mask])) and np.all(np.isfinite(np.asarray(q.absmax)))
    assert np.isnan(back[2, 7])  # visible, never a plausible finite number
    # Blocks without it are untouched.
    other = np.ones(x.shape, bool)
    other[2] = False
    np.testing.assert_array_equal(back[other], clean[other])


def test_padding_and_small_block_size():
    x = jnp.arange(1, 11, dtype=jnp.float32)  # 10 elements, blocks of 4: 3 blocks
    q = quantize(x, block_size=4)
    assert q.absmax.tolist() == [4.0, 8.0, 10.0]
    np.testing.assert_allclose(dequantize(q, block_size=4), x, rtol=0.02)


def test_four_bits_pack_two_codes_per_byte():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(16, 256)), jnp.float32)
    q = quantize(x, bits=4)
    assert isinstance(q, Nibbles) and q.pairs.shape == (16, 128) and q.shape == x.shape
    codes = np.asarray(encode(x * (1 / jnp.repeat(q.absmax, 128, axis=-1)), bits=4))
    pairs = np.asarray(q.pairs)
    np.testing.assert_array_equal(pairs & 15, codes[:, 0::2])
    np.testing.assert_array_equal(pairs >> 4, codes[:, 1::2])
    with pytest.raises(ValueError, match="even length"):
        quantize(jnp.ones((4, 3)), bits=4)


def test_blocks_is_a_plain_pytree():
    q = quantize(jnp.ones((300, 20)))
    leaves, treedef = jax.tree.flatten(q)
    assert [leaf.dtype for leaf in leaves] == [jnp.uint8, jnp.float32]
    again = jax.tree.unflatten(treedef, leaves)
    assert isinstance(again, Blocks) and again.shape == (300, 20)


def test_mappings_are_read_as_quantized_entries_and_kept():
    q = quantize(jnp.ones((300, 20)))
    as_dict = {"absmax": q.absmax, "codes": q.codes}
    assert as_quantized(as_dict) == q and as_quantized(q) is q
    assert as_quantized(jnp.ones(3)) is None and as_quantized({"codes": 1}) is None
    new = quantize(2 * jnp.ones((300, 20)))
    kept = like(as_dict, new)
    assert isinstance(kept, dict) and kept["codes"] is new.codes
    assert like(q, new) is new
