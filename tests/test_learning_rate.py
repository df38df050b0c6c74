"""scale_by_learning_rate and scale_by_schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as R

import adam_tx

SCHEDULE = lambda t: 0.1 / (1.0 + t)


@pytest.mark.parametrize("lr", [0.3, SCHEDULE], ids=["constant", "schedule"])
def test_matches_reference(lr, mode):
    R.check_against_reference(
        lambda: adam_tx.scale_by_learning_rate(lr),
        lambda: R.ScaleByLearningRate(lr),
        mode,
    )


def test_no_sign_flip_eager():
    R.check_against_reference(
        lambda: adam_tx.scale_by_learning_rate(SCHEDULE, flip_sign=False),
        lambda: R.ScaleByLearningRate(SCHEDULE, flip_sign=False),
        R.EAGER,
    )


@pytest.mark.parametrize("lr", [0.3, SCHEDULE], ids=["constant", "schedule"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_parity(lr, dtype):
    R.check_against_transform(
        lambda: adam_tx.scale_by_learning_rate(lr),
        lambda: optax.scale_by_learning_rate(lr),
        dtype,
    )


def test_schedule_value_is_logged_in_state():
    tx = adam_tx.scale_by_learning_rate(SCHEDULE)
    state = tx.init(jnp.ones(1))
    step = jax.jit(tx.update)
    for t in range(4):
        u, state = step(jnp.ones(1), state)
        np.testing.assert_allclose(float(u[0]), -SCHEDULE(t), rtol=1e-6)
        lr = adam_tx.get_hyperparams(state)["learning_rate"]
        np.testing.assert_allclose(float(lr), SCHEDULE(t), rtol=1e-6)


def test_scale_by_schedule_matches_optax():
    fn = lambda t: 2.0 * 0.5**t
    ours, theirs = adam_tx.scale_by_schedule(fn), optax.scale_by_schedule(fn)
    s1, s2 = ours.init(jnp.ones(2)), theirs.init(jnp.ones(2))
    for _ in range(5):
        u1, s1 = ours.update(jnp.ones(2), s1)
        u2, s2 = theirs.update(jnp.ones(2), s2)
        np.testing.assert_allclose(u1, u2, rtol=1e-7)


def test_negative_constant_learning_rate():
    with pytest.raises(ValueError, match=r"learning_rate=-0.001.*\[0.0, inf\)"):
        adam_tx.scale_by_learning_rate(-1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        adam_tx.adamw(-1e-3)


def test_no_learning_rate_is_identity_as_in_optax():
    tx = adam_tx.scale_by_learning_rate(None)
    g = jnp.array([1.0, -2.0])
    u, state = tx.update(g, tx.init(g))
    assert u.tolist() == g.tolist() and state == optax.EmptyState()
    assert optax.scale_by_learning_rate(None).init(g) == state
    # It fuses: a chain of adam_tx pieces around it is still one program.
    chained = adam_tx.chain(adam_tx.trace(0.9), tx, adam_tx.scale_by_learning_rate(0.1))
    assert adam_tx._engine.fusion.program_of(chained) is not None
