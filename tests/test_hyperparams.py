"""Hyperparameters live in the state: dtype, exact complements, no recompiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as R

import adam_tx


def test_set_and_get_under_jit_without_recompiling():
    opt = adam_tx.adamw(1e-3, weight_decay=0.1)
    params = {"w": jnp.ones(3), "b": jnp.zeros(2)}
    traces = []

    @jax.jit
    def step(params, state, lr):
        traces.append(1)  # runs once per trace
        state = adam_tx.set_hyperparams(state, learning_rate=lr)
        grads = jax.tree.map(lambda p: p - 2.0, params)
        updates, state = opt.update(grads, state, params)
        return adam_tx.apply_updates(params, updates), updates, state

    state = opt.init(params)
    ref = R.adamw(None, weight_decay=0.1)
    ref.init([np.asarray(x, np.float64) for x in jax.tree.leaves(params)])
    for t in range(8):
        lr = 1e-3 * (t + 1)
        ref.refs[-1].lr = lr
        p64 = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
        expected = ref.update([p - 2.0 for p in p64], p64)
        params, updates, state = step(params, state, jnp.float32(lr))
        got = [np.asarray(x, np.float64) for x in jax.tree.leaves(updates)]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=R.F32_RTOL)
        np.testing.assert_allclose(
            float(adam_tx.get_hyperparams(state)["learning_rate"]), lr, rtol=1e-6
        )
    assert len(traces) == 1
    assert step._cache_size() == 1


def test_set_outside_jit_does_not_recompile():
    opt = adam_tx.adam(1e-3)
    p = jnp.ones(4)
    state = opt.init(p)
    step = jax.jit(opt.update)
    for t in range(5):
        state = adam_tx.set_hyperparams(state, learning_rate=1e-3 / (t + 1), b2=0.95)
        _, state = step(p, state, p)
    assert step._cache_size() == 1
    hp = adam_tx.get_hyperparams(state)
    np.testing.assert_allclose(float(hp["b2"]), 0.95, rtol=1e-7)
    # The exact complement follows the new value.
    np.testing.assert_allclose(float(hp["1-b2"]), 0.05, rtol=1e-7)


def test_unknown_name_lists_what_exists():
    state = adam_tx.adam(1e-3).init(jnp.ones(2))
    with pytest.raises(KeyError, match="learning_rate"):
        adam_tx.set_hyperparams(state, lr=1.0)


def test_complement_is_exact():
    state = adam_tx.scale_by_adam(b2=0.999).init(jnp.ones(2))
    hp = state.hyperparams
    assert hp["1-b2"].dtype == jnp.float32
    # float32(1 - 0.999), not 1 - float32(0.999) (1.3e-5 relative away).
    assert float(hp["1-b2"]) == float(np.float32(1 - 0.999))
    assert abs(float(1 - hp["b2"]) / 1e-3 - 1) > 1e-5


def test_schedule_values_are_written_to_the_state():
    b1 = lambda t: 0.8 + 0.01 * jnp.minimum(t, 10)
    tx = adam_tx.scale_by_adam(b1=b1)
    state = tx.init(jnp.ones(1))
    for t in range(3):
        _, state = tx.update(jnp.ones(1), state)
        np.testing.assert_allclose(float(state.hyperparams["b1"]), b1(t), rtol=1e-6)
        np.testing.assert_allclose(
            float(state.hyperparams["1-b1"]), 1 - b1(t), rtol=1e-6
        )
