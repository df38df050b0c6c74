"""scale_by_adam against the float64 textbook formulas, and optax parity."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as R

import adam_tx
from adam_tx._engine.counting import INT32_MAX

ADAM_CASES = {
    "default": {},
    "no_bias_correction": {"bias_correction": False},
    "nesterov": {"nesterov": True},
    "nesterov_no_bias_correction": {"nesterov": True, "bias_correction": False},
    "eps_root": {"eps": 0.0, "eps_root": 1e-8},
    "low_b2": {"b1": 0.5, "b2": 0.9, "eps": 1e-3},
}


@pytest.mark.parametrize("kw", ADAM_CASES.values(), ids=ADAM_CASES.keys())
def test_scale_by_adam_matches_reference(kw, mode):
    R.check_against_reference(
        lambda: adam_tx.scale_by_adam(**kw), lambda: R.Adam(**kw), mode
    )


def test_scale_by_adam_eager():
    R.check_against_reference(adam_tx.scale_by_adam, R.Adam, R.EAGER)


def test_b1_schedule_matches_reference():
    # b1 driven by a schedule (momentum cycling); evaluated at the count before
    # the step, like every adam_tx schedule.
    b1 = lambda t: 0.9 - 0.05 * jnp.cos(t / 7.0)
    R.check_against_reference(
        lambda: adam_tx.scale_by_adam(b1=b1), lambda: R.Adam(b1=b1), "float32-jit"
    )


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: adam_tx.adam(1e-2), lambda: optax.adam(1e-2)),
        (
            lambda: adam_tx.adamw(1e-2, weight_decay=0.1),
            lambda: optax.adamw(1e-2, weight_decay=0.1),
        ),
        (lambda: adam_tx.nadam(1e-2), lambda: optax.nadam(1e-2)),
        (
            lambda: adam_tx.nadamw(1e-2, weight_decay=0.1),
            lambda: optax.nadamw(1e-2, weight_decay=0.1),
        ),
        (
            lambda: adam_tx.scale_by_adam(eps_root=1e-8),
            lambda: optax.scale_by_adam(eps_root=1e-8),
        ),
    ],
    ids=["adam", "adamw", "nadam", "nadamw", "scale_by_adam_eps_root"],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_parity(ours, theirs, dtype):
    R.check_against_transform(ours, theirs, dtype, rtol32=R.OPTAX_ADAM_RTOL)


def test_more_exact_than_optax_in_float32():
    # Against the float64 formula, adam_tx's float32 Adam is closer than optax's,
    # whose float32 1 - b2**t is 1.3e-5 off at t = 1.
    ours = R.run_against_reference(adam_tx.adam(1e-2), R.adam(1e-2), steps=5)[0]
    theirs = R.run_against_reference(optax.adam(1e-2), R.adam(1e-2), steps=5)[0]
    assert ours < 1e-6 < 5e-6 < theirs


def test_seed_toy_quadratic():
    # The toy quadratic worked example (notebooks/01), in float64, step for step.
    theta, eta, b1, b2, eps, m, v = 0.0, 0.1, 0.9, 0.999, 1e-8, 0.0, 0.0
    expected = []
    for t in range(1, 21):
        grad = 2 * (theta - 3)
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad**2
        theta -= eta * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        expected.append(theta)
    with jax.enable_x64(True):
        opt = adam_tx.adam(eta)
        p = jnp.zeros([], jnp.float64)
        state = opt.init(p)
        step = jax.jit(lambda p, s: opt.update(2 * (p - 3), s, p))
        got = []
        for _ in range(20):
            u, state = step(p, state)
            p = optax.apply_updates(p, u)
            got.append(float(p))
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("mu_dtype", [None, jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("nu_dtype", [None, jnp.float16, jnp.float32])
def test_moment_dtypes_are_what_was_asked(mu_dtype, nu_dtype, tree):
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), tree)
    tx = adam_tx.scale_by_adam(mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    state = tx.init(params)
    _, state = jax.jit(tx.update)(params, state)
    for want, moments in ((mu_dtype, state.mu), (nu_dtype, state.nu)):
        for x in jax.tree.leaves(moments):
            assert x.dtype == jnp.dtype(want or jnp.bfloat16)


def test_count_saturates_at_int32_max():
    g = {"w": jnp.array([0.3, -2.0])}
    tx = adam_tx.scale_by_adam()
    state = tx.init(g)._replace(count=jnp.asarray(INT32_MAX - 1, jnp.int32))
    state = state._replace(mu={"w": jnp.array([0.1, 0.2])}, nu={"w": jnp.ones(2)})
    step = jax.jit(tx.update)
    plain = adam_tx.scale_by_adam(bias_correction=False)
    for _ in range(3):
        expected, _ = plain.update(g, plain.init(g)._replace(mu=state.mu, nu=state.nu))
        u, state = step(g, state)
        assert int(state.count) == INT32_MAX  # saturated, never wrapped
        # b^t is 0 at t ~ 2^31, so the corrections are exactly 1.
        np.testing.assert_allclose(u["w"], expected["w"], rtol=1e-6)
        assert np.all(np.isfinite(u["w"]))
