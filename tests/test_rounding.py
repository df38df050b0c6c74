"""Rounding to bfloat16 and the counter-based random bits (adam_tx/rounding.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adam_tx.rounding import (
    from_bfloat16,
    hash_bits,
    stochastic_round_bf16,
    to_bfloat16,
)

F32 = jnp.float32


def _awkward_floats() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2**16, 1000, dtype=np.uint32) << 16) | 0x8000  # exact ties
    special = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 3.4028235e38, -3.4028235e38, 1e-45, 1e-39],
        np.float32,
    )
    return np.concatenate(
        [bits.view(np.float32), ties.view(np.float32), special]
    ).astype(np.float32)


def test_to_bfloat16_is_astype_on_the_bits():
    x = jnp.asarray(_awkward_floats())
    got = np.asarray(jax.jit(to_bfloat16)(x)).view(np.uint16)
    want = np.asarray(jax.jit(lambda v: v.astype(jnp.bfloat16))(x)).view(np.uint16)
    nan = np.isnan(np.asarray(x))
    np.testing.assert_array_equal(got[~nan], want[~nan])
    assert np.all(np.isnan(np.asarray(to_bfloat16(x)[nan], np.float32)))


def test_from_bfloat16_is_exact():
    x = jnp.asarray(_awkward_floats()).astype(jnp.bfloat16)
    got = np.asarray(jax.jit(from_bfloat16)(x))
    want = np.asarray(x.astype(F32))
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_hash_bits_are_deterministic_and_depend_on_key_and_index():
    key = jax.random.PRNGKey(3)
    a = np.asarray(hash_bits(key, (64, 100)))
    np.testing.assert_array_equal(a, np.asarray(hash_bits(key, (64, 100))))
    assert len(np.unique(a)) == a.size  # a bijection of the index, per key
    b = np.asarray(hash_bits(jax.random.fold_in(key, 1), (64, 100)))
    assert np.mean(a == b) < 1e-3
    # The flat index, not the shape, decides: (6400,) gives the same bits.
    np.testing.assert_array_equal(a.ravel(), np.asarray(hash_bits(key, (6400,))))
    # A typed key is the same key.
    typed = jax.random.wrap_key_data(key)
    np.testing.assert_array_equal(a, np.asarray(hash_bits(typed, (64, 100))))


@pytest.mark.parametrize("seed", [0, 1])
def test_hash_bits_look_uniform(seed):
    n = 1 << 20
    bits = np.asarray(hash_bits(jax.random.PRNGKey(seed), (n,))).astype(np.uint64)
    # Every bit is set half the time (standard error 2^-11).
    freq = np.array([((bits >> k) & 1).mean() for k in range(32)])
    assert np.all(np.abs(freq - 0.5) < 0.004), freq
    # The 16 bits stochastic rounding uses: flat over 256 buckets (chi-square,
    # 255 degrees of freedom: mean 255, sd 22.6).
    counts = np.bincount((bits >> 24).astype(np.int64), minlength=256)
    chi2 = np.sum((counts - n / 256) ** 2 / (n / 256))
    assert chi2 < 255 + 6 * 22.6
    # Neighbouring elements are uncorrelated.
    u = (bits >> 16).astype(np.float64)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01


@pytest.mark.parametrize("value", [1.0 + 2.0**-10, 3.0 * (1 + 2.0**-12), -7e-5, 0.3])
def test_stochastic_rounding_is_unbiased_over_elements(value):
    # One key, many elements of one value: the mean over elements is the value.
    x = jnp.full(1 << 18, value, F32)
    r = np.asarray(jax.jit(stochastic_round_bf16)(x, jax.random.PRNGKey(7)), np.float64)
    lo = np.asarray(x.astype(jnp.bfloat16), np.float64)[0]
    ulp = abs(np.spacing(np.float32(value)).astype(np.float64)) * 2**16
    value = float(np.float32(value))
    assert set(np.unique(r)) <= {
        lo,
        lo + ulp * np.sign(value),
        lo - ulp * np.sign(value),
    }
    # Standard error of the mean: at most ulp / 2 / sqrt(2^18) = ulp / 1024.
    assert abs(r.mean() - value) < 5 * ulp / 1024


def test_stochastic_rounding_under_vmap_and_jit_agree():
    x = jnp.linspace(-3.0, 3.0, 1000, dtype=F32) * 1.0001
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    batched = jax.vmap(lambda k: stochastic_round_bf16(x, k))(keys)
    for i in range(4):
        np.testing.assert_array_equal(
            np.asarray(batched[i], F32),
            np.asarray(stochastic_round_bf16(x, keys[i]), F32),
        )
