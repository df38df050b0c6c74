"""bias_correction: the transform and the accurate 1 - b^t."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as R

import adam_tx
from adam_tx.bias_correction import correction


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
def test_matches_reference(decay, mode):
    R.check_against_reference(
        lambda: adam_tx.bias_correction(decay), lambda: R.BiasCorrection(decay), mode
    )


def test_eager():
    R.check_against_reference(
        lambda: adam_tx.bias_correction(0.9), lambda: R.BiasCorrection(0.9), R.EAGER
    )


@pytest.mark.parametrize("b", [0.9, 0.99, 0.999, 0.9999])
def test_correction_is_accurate_in_float32(b):
    # 1 - b^t to a few float32 ulps at every t, where 1 - float32(b)**t is off by
    # up to 1e-4 relative for b = 0.9999.
    t = np.array([1, 2, 3, 10, 100, 1000, 10_000, 100_000, 10**7])
    exact = -np.expm1(t * np.log1p(-(1.0 - b)))  # float64, from the exact 1 - b
    got = np.asarray(correction(jnp.float32(1.0 - b), jnp.asarray(t, jnp.int32)))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, exact, rtol=5e-7)


def test_debiased_ema_equals_optax_debiased_ema():
    ours = adam_tx.chain(optax.ema(0.9, debias=False), adam_tx.bias_correction(0.9))
    theirs = optax.ema(0.9, debias=True)
    rng = np.random.default_rng(0)
    s1, s2 = ours.init(jnp.zeros(4)), theirs.init(jnp.zeros(4))
    for _ in range(20):
        g = jnp.asarray(rng.normal(size=4), jnp.float32)
        u1, s1 = ours.update(g, s1)
        u2, s2 = theirs.update(g, s2)
        np.testing.assert_allclose(u1, u2, rtol=2e-6)


def test_scale_by_adam_uses_the_same_correction():
    # Adam's first step is m_hat / sqrt(v_hat) = g / |g|: exact only if both
    # corrections are accurate (b2 = 0.999 in float32).
    tx = adam_tx.scale_by_adam(eps=0.0)
    g = jnp.array([1e-3, -7.0, 3e4])
    u, _ = jax.jit(tx.update)(g, tx.init(g))
    np.testing.assert_allclose(u, [1.0, -1.0, 1.0], rtol=1e-7)


def test_decay_out_of_range():
    with pytest.raises(ValueError, match=r"decay=1.0.*\[0.0, 1.0\)"):
        adam_tx.bias_correction(1.0)
