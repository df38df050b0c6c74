"""Bad input fails early and says what was wrong."""

import jax
import jax.numpy as jnp
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


def test_schedules_are_not_range_checked_at_construction():
    adam_tx.adam(lambda t: -1.0)  # values are only known per step


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
