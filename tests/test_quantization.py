"""Blockwise 8-bit quantization (adam_tx/quantization.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adam_tx.quantization import (
    BLOCK_SIZE,
    Blocks,
    dequantize,
    dynamic_map,
    nearest_code,
    quantize,
)


def _gaps(code_map: np.ndarray) -> np.ndarray:
    return np.diff(code_map.astype(np.float64))


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


def _blockwise_bound(x: np.ndarray, signed: bool) -> np.ndarray:
    """Per element: half the gap of the map around x / absmax, times absmax."""
    blocks = np.pad(x.ravel(), (0, -x.size % BLOCK_SIZE)).reshape(-1, BLOCK_SIZE)
    absmax = np.abs(blocks).max(axis=1, keepdims=True)
    code_map = dynamic_map(signed).astype(np.float64)
    y = blocks / np.where(absmax > 0, absmax, 1)
    i = np.clip(np.searchsorted(code_map, y), 1, 255)
    gap = code_map[i] - code_map[i - 1]
    return (gap / 2 * absmax * (1 + 1e-5) + 1e-45).ravel()[: x.size].reshape(x.shape)


CASES = {
    "random": lambda r: r.normal(size=(37, 100)),
    "tiny": lambda r: 1e-30 * r.normal(size=(3000,)),
    "huge": lambda r: 1e30 * r.normal(size=(3000,)),
    "all_zero": lambda r: np.zeros(1000),
    "constant": lambda r: np.full((2, 700), -3.5),
    "wide_range": lambda r: r.normal(size=3000) * 10 ** r.uniform(-8, 3, 3000),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("signed", [True, False])
def test_round_trip_error_bound(case, signed):
    x = CASES[case](np.random.default_rng(1)).astype(np.float32)
    if not signed:
        x = np.abs(x)
    q = jax.jit(lambda v: quantize(v, signed=signed))(jnp.asarray(x))
    assert q.codes.dtype == jnp.uint8 and q.codes.shape == x.shape
    assert q.absmax.dtype == jnp.float32
    assert q.absmax.shape == (-(-x.size // BLOCK_SIZE),)
    back = np.asarray(dequantize(q, signed=signed))
    err = np.abs(back.astype(np.float64) - x)
    assert np.all(err <= _blockwise_bound(x, signed)), case
    # Each block's largest element (and zero) is exact; signs never flip.
    blocks = np.pad(x.ravel(), (0, -x.size % BLOCK_SIZE)).reshape(-1, BLOCK_SIZE)
    np.testing.assert_array_equal(np.asarray(q.absmax), np.abs(blocks).max(axis=1))
    assert np.all(back[x == 0] == 0)
    assert np.all(np.sign(back) * np.sign(x) >= 0)
    if case == "constant":
        np.testing.assert_array_equal(back, x)


def test_relative_error_of_large_elements():
    # Above a tenth of the block maximum, 64 (signed) or 128 (unsigned) even
    # steps per decade bound the relative error.
    x = np.random.default_rng(2).uniform(0.1, 1.0, 4096).astype(np.float32)
    x[::BLOCK_SIZE] = 1.0
    for signed, steps in [(True, 64), (False, 128)]:
        back = np.asarray(
            dequantize(quantize(jnp.asarray(x), signed=signed), signed=signed)
        )
        assert np.max(np.abs(back - x) / x) <= 0.45 / steps / 0.1 + 1e-6


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_stays_in_its_block(bad):
    rng = np.random.default_rng(3)
    x = rng.normal(size=5 * BLOCK_SIZE).astype(np.float32)
    clean = np.asarray(dequantize(quantize(jnp.asarray(x))))
    x[2 * BLOCK_SIZE + 7] = bad
    back = np.asarray(dequantize(quantize(jnp.asarray(x))))
    other = np.ones(x.size, bool)
    other[2 * BLOCK_SIZE : 3 * BLOCK_SIZE] = False
    np.testing.assert_array_equal(back[other], clean[other])
    assert not np.isfinite(back[2 * BLOCK_SIZE + 7])


def test_padding_and_small_block_size():
    x = jnp.arange(1, 11, dtype=jnp.float32)  # 10 elements, blocks of 4: 3 blocks
    q = quantize(x, block_size=4)
    assert q.absmax.tolist() == [4.0, 8.0, 10.0]
    np.testing.assert_allclose(dequantize(q, block_size=4), x, rtol=0.02)


def test_blocks_is_a_plain_pytree():
    q = quantize(jnp.ones((300, 20)))
    leaves, treedef = jax.tree.flatten(q)
    assert [leaf.dtype for leaf in leaves] == [jnp.uint8, jnp.float32]
    again = jax.tree.unflatten(treedef, leaves)
    assert isinstance(again, Blocks) and again.shape == (300, 20)
