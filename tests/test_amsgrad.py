"""scale_by_amsgrad: both conventions against the float64 formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as R

import adam_tx


@pytest.mark.parametrize("max_of", ["nu_hat", "nu"])
def test_matches_reference(max_of, mode):
    R.check_against_reference(
        lambda: adam_tx.scale_by_amsgrad(max_of=max_of),
        lambda: R.Amsgrad(max_of=max_of),
        mode,
        # Large early gradients, then small ones: the max is what steps.
        grad_scale=lambda t: 10.0 if t < 3 else 0.1,
    )


def test_eager():
    R.check_against_reference(
        lambda: adam_tx.scale_by_amsgrad(max_of="nu"),
        lambda: R.Amsgrad(max_of="nu"),
        R.EAGER,
    )


def test_eps_root_matches_reference():
    kw = {"eps": 0.0, "eps_root": 1e-6, "max_of": "nu"}
    R.check_against_reference(
        lambda: adam_tx.scale_by_amsgrad(**kw), lambda: R.Amsgrad(**kw), "float64-jit"
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_parity_nu_hat(dtype):
    R.check_against_transform(
        lambda: adam_tx.amsgrad(1e-2),
        lambda: optax.amsgrad(1e-2),
        dtype,
        rtol32=R.OPTAX_ADAM_RTOL,
        grad_scale=lambda t: 10.0 if t < 3 else 0.1,
    )


def test_conventions_differ_after_a_spike():
    # One large gradient then small ones: "nu_hat" remembers v_hat at full
    # size, "nu" shrinks the remembered raw v by the growing 1 - b2^t.
    grads = [jnp.array([10.0])] + [jnp.array([0.01])] * 20
    out = {}
    for max_of in ("nu_hat", "nu"):
        tx = adam_tx.scale_by_amsgrad(max_of=max_of)
        state = tx.init(jnp.zeros(1))
        for g in grads:
            u, state = tx.update(g, state)
        out[max_of] = float(u[0])
    assert out["nu"] > 1.5 * out["nu_hat"] > 0


def test_nu_max_is_non_decreasing_and_uses_nu_dtype(tree):
    tx = adam_tx.scale_by_amsgrad(nu_dtype=jnp.float32, mu_dtype=jnp.bfloat16)
    state = tx.init(tree)
    rng = np.random.default_rng(1)
    step = jax.jit(tx.update)
    prev = state.nu_max
    for t in range(10):
        g = jax.tree.map(
            lambda x, s=1.0 / (t + 1): jnp.asarray(s * rng.normal(size=x.shape)), tree
        )
        g = jax.tree.map(lambda x: x.astype(jnp.float32), g)
        _, state = step(g, state)
        for a, b in zip(jax.tree.leaves(prev), jax.tree.leaves(state.nu_max)):
            assert np.all(np.asarray(b) >= np.asarray(a))
        prev = state.nu_max
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.nu_max))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.mu))


def test_unknown_max_of():
    with pytest.raises(ValueError, match=r"max_of='v_hat'.*nu_hat"):
        adam_tx.scale_by_amsgrad(max_of="v_hat")
