"""Bad input fails early and says what was wrong."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adam_tx

DECAY_RANGE = r"\[0.0, 1.0\)"
NONNEG_RANGE = r"\[0.0, inf\)"


@pytest.mark.parametrize(
    "factory",
    [
        adam_tx.scale_by_adam,
        adam_tx.scale_by_amsgrad,
        adam_tx.scale_by_belief,
        adam_tx.scale_by_adamax,
        adam_tx.adam,
        adam_tx.adamw,
        adam_tx.nadam,
        adam_tx.amsgrad,
        adam_tx.adabelief,
    ],  # fmt: skip
)
@pytest.mark.parametrize("arg", ["b1", "b2"])
@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, float("nan")])
def test_decay_rates_outside_unit_interval(factory, arg, value):
    with pytest.raises(ValueError, match=rf"{arg}={value!r}.*{arg} in {DECAY_RANGE}"):
        factory(**{arg: value})


@pytest.mark.parametrize(
    "factory",
    [
        adam_tx.scale_by_adam,
        adam_tx.scale_by_amsgrad,
        adam_tx.scale_by_belief,
        adam_tx.scale_by_adamax,
        adam_tx.scale_by_rms,
        adam_tx.scale_by_adagrad,
        adam_tx.adam,
        adam_tx.adamw,
        adam_tx.rmsprop,
        adam_tx.adagrad,
    ],  # fmt: skip
)
def test_negative_eps(factory):
    with pytest.raises(ValueError, match=rf"eps=-1e-08.*eps in {NONNEG_RANGE}"):
        factory(eps=-1e-8)


@pytest.mark.parametrize(
    "factory",
    [
        adam_tx.adam,
        adam_tx.adamw,
        adam_tx.nadam,
        adam_tx.amsgrad,
        adam_tx.adabelief,
        adam_tx.adamax,
        adam_tx.rmsprop,
        adam_tx.adagrad,
        adam_tx.sgd,
        adam_tx.scale_by_learning_rate,
    ],  # fmt: skip
)
def test_negative_learning_rate(factory):
    with pytest.raises(ValueError, match=rf"learning_rate=-0.1.*{NONNEG_RANGE}"):
        factory(-0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": lambda t: -1.0}, r"learning_rate=-1.0 \(its schedule's"),
        ({"b1": lambda t: 1.0}, r"b1=1.0 .*step 0.*\[0.0, 1.0\)"),
        ({"b2": lambda t: jnp.nan}, r"b2=nan"),
        ({"eps": lambda t: jnp.where(t > 500, -1.0, 1e-8)}, r"eps=-1.0 .*step 1000"),
    ],
)
def test_schedules_are_checked_at_probe_steps(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adam_tx.adam(**kwargs)


def test_schedule_checked_past_its_declared_horizon():
    def lr(t):
        return jnp.where(t > 50, -1.0, 1e-3)

    lr.horizon = 40  # a schedule may say where it ends: 20, 40 and 41 are probed
    with pytest.raises(ValueError, match="step 100"):
        adam_tx.adam(lr)


def test_schedule_returning_an_array_is_refused():
    with pytest.raises(TypeError, match="b1 is a schedule that returns"):
        adam_tx.adam(b1=lambda t: jnp.ones(2) * 0.9)


@pytest.mark.parametrize(
    "value, error, match",
    [
        (float("inf"), ValueError, r"eps=inf is out of range: expected a finite"),
        ("1e-8", TypeError, r"eps must be a real number.*'1e-8'.*str"),
        (1e-8j, TypeError, r"eps must be a real number.*complex"),
        (True, TypeError, r"eps must be a real number.*bool"),
        (10**400, ValueError, r"eps=1000.* too large"),
        (np.ones(2), TypeError, r"eps must be a scalar.*\(2,\)"),
        (None, TypeError, r"eps must be a real number.*None"),
    ],
)
def test_wrong_types_name_the_argument(value, error, match):
    with pytest.raises(error, match=match):
        adam_tx.scale_by_adam(eps=value)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"b1": float("nan")}, ValueError),
        ({"b2": 1.0}, ValueError),
        ({"b1": 1.5}, ValueError),
        ({"eps": -1}, ValueError),
        ({"eps_root": float("inf")}, ValueError),
        ({"b1": "0.9"}, TypeError),
        ({"b1": jnp.ones(3)}, TypeError),
    ],
)
def test_set_hyperparams_checks_what_the_factory_checks(kwargs, error):
    state = adam_tx.adam(1e-3).init({"w": jnp.ones(2)})
    (name,) = kwargs
    with pytest.raises(error, match=name):
        adam_tx.set_hyperparams(state, **kwargs)


def test_set_hyperparams_lets_traced_values_through():
    state = adam_tx.adam(1e-3).init({"w": jnp.ones(2)})
    set_b1 = jax.jit(lambda s, b: adam_tx.set_hyperparams(s, b1=b))
    assert float(adam_tx.get_hyperparams(set_b1(state, 0.5))["b1"]) == 0.5


def test_integer_gradients_are_refused():
    tx = adam_tx.adam(1e-3)
    params = {"w": jnp.ones(3)}
    with pytest.raises(TypeError, match="updates leaf 'w' has dtype int32"):
        tx.update({"w": jnp.ones(3, jnp.int32)}, tx.init(params), params)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_max_norm_must_be_positive(value):
    with pytest.raises(ValueError, match=rf"max_norm={value!r}.*\(0.0, inf\)"):
        adam_tx.clip_by_global_norm(value)


@pytest.mark.parametrize("dtype", [jnp.int32, "int8", bool])
@pytest.mark.parametrize("arg", ["mu_dtype", "nu_dtype"])
def test_non_floating_moment_dtype(arg, dtype):
    with pytest.raises(ValueError, match=rf"{arg}=.*floating"):
        adam_tx.scale_by_adam(**{arg: dtype})


def test_not_a_dtype():
    with pytest.raises(ValueError, match="mu_dtype='float33'"):
        adam_tx.adamw(mu_dtype="float33")


def test_unknown_max_of():
    with pytest.raises(ValueError, match=r"max_of='max'.*\('nu_hat', 'nu'\)"):
        adam_tx.amsgrad(max_of="max")


def test_non_numeric_hyperparameter():
    with pytest.raises(TypeError, match="b1"):
        adam_tx.scale_by_adam(b1="0.9")


PARAMS = {"encoder": {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}, "head": [jnp.ones(2)]}


@pytest.mark.parametrize(
    "make",
    [
        lambda: adam_tx.adamw(1e-3),
        lambda: adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adam(1e-3)),
        adam_tx.scale_by_adam,
        adam_tx.trace,
    ],  # fmt: skip
)
def test_gradient_tree_differs_from_state(make):
    tx = make()
    state = tx.init(PARAMS)
    missing = {"encoder": {"w": jnp.ones((2, 3))}, "head": [jnp.ones(2)]}
    with pytest.raises(ValueError, match="encoder/b"):
        tx.update(missing, state, PARAMS)
    renamed = {
        "encoder": {"w": jnp.ones((2, 3)), "c": jnp.ones(3)},
        "head": [jnp.ones(2)],
    }
    with pytest.raises(ValueError, match="encoder/b"):
        tx.update(renamed, state, PARAMS)
    reshaped = {
        "encoder": {"w": jnp.ones((3, 2)), "b": jnp.ones(3)},
        "head": [jnp.ones(2)],
    }
    with pytest.raises(ValueError, match=r"encoder/w.*\(2, 3\)"):
        tx.update(reshaped, state, PARAMS)


def test_error_is_raised_under_jit_too():
    tx = adam_tx.adam(1e-3)
    state = tx.init(PARAMS)
    bad = {"encoder": {"w": jnp.ones((2, 3))}, "head": [jnp.ones(2)]}
    with pytest.raises(ValueError, match="encoder/b"):
        jax.jit(tx.update)(bad, state, PARAMS)


@pytest.mark.parametrize(
    "make", [adam_tx.adam, adam_tx.adamw, adam_tx.sgd, adam_tx.amsgrad, adam_tx.rmsprop]
)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_params_raise_type_error(make, dtype):
    params = {"w": jnp.ones(2), "steps": jnp.zeros(2, dtype)}
    with pytest.raises(TypeError, match="'steps'.*floating"):
        make(1e-3).init(params)
