"""adam_tx.debug.checked: run-time checks of values construction cannot see."""

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.experimental import checkify

import adam_tx

P = {"w": jnp.ones(3)}
G = {"w": jnp.array([0.1, -0.2, 0.3])}


def _step(tx):
    return checkify.checkify(jax.jit(tx.update))


def test_valid_steps_report_no_error_and_equal_the_plain_step():
    tx = adam_tx.debug.checked(adam_tx.adamw(1e-3))
    err, (u, _) = _step(tx)(G, tx.init(P), P)
    assert err.get() is None
    plain = adam_tx.adamw(1e-3)
    v, _ = plain.update(G, plain.init(P), P)
    assert jnp.array_equal(u["w"], v["w"])


def test_traced_out_of_range_value_is_reported():
    tx = adam_tx.debug.checked(adam_tx.adam(1e-3))
    state = jax.jit(lambda s, lr: adam_tx.set_hyperparams(s, learning_rate=lr))(
        tx.init(P), -0.5
    )
    err, _ = _step(tx)(G, state, P)
    with pytest.raises(Exception, match=r"learning_rate=-0.5.*\[0.0, inf\)"):
        err.throw()


def test_injected_schedule_value_is_checked_at_run_time():
    # A schedule that goes wrong only after the probed steps' range: 3e6.
    bad_after = lambda t: jnp.where(t >= 3, jnp.nan, 0.9)
    tx = adam_tx.debug.checked(
        optax.inject_hyperparams(adam_tx.adam, static_args=("seed",))(1e-3)
    )
    state = tx.init(P)
    state = state._replace(hyperparams={**state.hyperparams, "b1": bad_after(3)})
    err, _ = _step(tx)(G, state, P)
    with pytest.raises(Exception, match="b1=nan in InjectStatefulHyperparamsState"):
        err.throw()


def test_refuses_a_non_transformation():
    with pytest.raises(
        TypeError, match="inner must be an optax.GradientTransformation"
    ):
        adam_tx.debug.checked(None)
