"""adam_tx.switch: the switched run equals the two halves run by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx
from adam_tx.switch import SwitchState, projected_step_size, switch


def _grads(n):
    keys = jax.random.split(jax.random.key(0), n)
    return [
        {"w": jax.random.normal(k, (3, 2)), "b": jax.random.normal(k, (2,))}
        for k in keys
    ]


def test_matches_two_halves_by_hand_under_one_compile():
    first, second = adam_tx.adamw(0.1), adam_tx.sgd(0.05, momentum=0.9)
    tx = switch(first, second, at_step=3)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(1)
        u, s = tx.update(g, s, p)
        return adam_tx.apply_updates(p, u), s

    p, s = params, tx.init(params)
    for g in _grads(7):
        p, s = step(p, s, g)
    assert len(traces) == 1

    q, s1 = params, first.init(params)
    for g in _grads(7)[:3]:
        u, s1 = first.update(g, s1, q)
        q = adam_tx.apply_updates(q, u)
    s2 = second.init(params)
    for g in _grads(7)[3:]:
        u, s2 = second.update(g, s2, q)
        q = adam_tx.apply_updates(q, u)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert isinstance(s, SwitchState) and int(s.count) == 7
    # Both states kept, each advanced only on its own steps.
    assert int(s.first[0].count) == 3 and int(s.second[-1].count) == 4


def test_swats_sets_second_lr_from_first_step_size():
    beta, m = 0.9, 0.8
    first = adam_tx.adam(0.01)
    tx = switch(first, adam_tx.sgd(123.0, momentum=m), 4, swats=True, swats_beta=beta)
    params = jnp.array([1.0, -2.0, 0.5])
    grads = [jnp.array([1.0, 2.0, -1.0]) * (k + 1) for k in range(5)]
    s, p = tx.init(params), params
    for g in grads:
        u, s = tx.update(g, s, p)
        p = p + u
    lam, s1, q = 0.0, first.init(params), params
    for g in grads[:4]:
        u, s1 = first.update(g, s1, q)
        gamma = float(jnp.dot(u, u) / -jnp.dot(u, g))
        lam = beta * lam + (1 - beta) * gamma
        q = q + u
    expected = (1 - m) * lam / (1 - beta**4)
    got = float(adam_tx.get_hyperparams(s.second)["learning_rate"])
    assert got == pytest.approx(expected, rel=1e-5)
    # The fifth step is SGD at that rate (first momentum step: b = g).
    np.testing.assert_allclose(p, q - expected * grads[4], rtol=1e-5)


def test_projected_step_size_is_zero_for_ascent_directions():
    assert float(projected_step_size(jnp.ones(2), jnp.ones(2))) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"at_step": -1}, "at_step"), ({"at_step": 2, "swats_beta": 1.0}, "swats_beta")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        switch(adam_tx.adam(), adam_tx.sgd(), **kwargs)


def test_swats_needs_a_learning_rate_hyperparameter():
    tx = switch(adam_tx.adam(), optax.sgd(0.1), 2, swats=True)
    with pytest.raises(ValueError, match="learning_rate"):
        tx.init(jnp.ones(2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"first": None}, TypeError, "first must be an optax.GradientTransformation"),
        ({"second": None}, TypeError, "second must be an optax.GradientTransformation"),
        ({"at_step": 2**40}, ValueError, r"at_step=1099511627776 .*\[0, 2147483647\]"),
        ({"at_step": None}, TypeError, "at_step"),
        ({"at_step": 2.5}, ValueError, "at_step"),
        ({"swats": "yes"}, TypeError, "swats must be True or False"),
        ({"swats_beta": "0.9"}, TypeError, "swats_beta"),
        ({"swats_beta": float("nan")}, ValueError, "swats_beta"),
    ],
)
def test_every_argument_is_named(kwargs, error, match):
    kwargs = {"first": adam_tx.adam(), "second": adam_tx.sgd(), "at_step": 2, **kwargs}
    with pytest.raises(error, match=match):
        switch(**kwargs)


def test_state_records_the_switch_step():
    state = switch(adam_tx.adam(), adam_tx.sgd(), at_step=5).init(jnp.ones(2))
    assert int(state.at_step) == 5
