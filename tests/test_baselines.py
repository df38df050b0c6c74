"""RMSProp, AdaGrad and momentum against the float64 formulas and optax."""

import jax.numpy as jnp
import optax
import pytest
import reference as R

import adam_tx

RMS_CASES = {
    "plain_in_sqrt": {},
    "plain_torch_eps": {"decay": 0.99, "eps_in_sqrt": False},
    "centered_in_sqrt": {"centered": True},
    "centered_torch_eps": {"decay": 0.99, "centered": True, "eps_in_sqrt": False},
    "initial_scale": {"initial_scale": 0.5, "eps": 1e-3},
}


@pytest.mark.parametrize("kw", RMS_CASES.values(), ids=RMS_CASES.keys())
def test_rms_matches_reference(kw, mode):
    R.check_against_reference(
        lambda: adam_tx.scale_by_rms(**kw), lambda: R.Rms(**kw), mode
    )


@pytest.mark.parametrize("kw", [{}, {"initial_accumulator_value": 0.1, "eps": 1e-3}])
def test_adagrad_matches_reference(kw, mode):
    R.check_against_reference(
        lambda: adam_tx.scale_by_adagrad(**kw), lambda: R.Adagrad(**kw), mode
    )


TRACE_CASES = {
    "momentum": {"decay": 0.9},
    "nesterov": {"decay": 0.9, "nesterov": True},
    "dampening": {"decay": 0.8, "dampening": 0.3},
}


@pytest.mark.parametrize("kw", TRACE_CASES.values(), ids=TRACE_CASES.keys())
def test_trace_matches_reference(kw, mode):
    R.check_against_reference(lambda: adam_tx.trace(**kw), lambda: R.Trace(**kw), mode)


def test_eager():
    R.check_against_reference(
        lambda: adam_tx.chain(adam_tx.scale_by_rms(centered=True), adam_tx.trace(0.9)),
        lambda: R.Chain(R.Rms(centered=True), R.Trace(0.9)),
        R.EAGER,
    )


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: adam_tx.rmsprop(1e-2), lambda: optax.rmsprop(1e-2)),
        (
            lambda: adam_tx.rmsprop(1e-2, centered=True, momentum=0.9),
            lambda: optax.rmsprop(1e-2, centered=True, momentum=0.9),
        ),
        (
            lambda: adam_tx.rmsprop(
                1e-2, eps_in_sqrt=False, momentum=0.9, nesterov=True
            ),
            lambda: optax.rmsprop(1e-2, eps_in_sqrt=False, momentum=0.9, nesterov=True),
        ),
        (lambda: adam_tx.trace(0.9), lambda: optax.trace(0.9)),
        (
            lambda: adam_tx.trace(0.9, nesterov=True),
            lambda: optax.trace(0.9, nesterov=True),
        ),
        (
            lambda: adam_tx.sgd(1e-2, 0.9, nesterov=True),
            lambda: optax.sgd(1e-2, 0.9, nesterov=True),
        ),
    ],
    ids=[
        "rmsprop",
        "rmsprop_centered_momentum",
        "rmsprop_eps_out",
        "trace",
        "trace_nesterov",
        "sgd_nesterov",
    ],  # fmt: skip
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_parity(ours, theirs, dtype):
    R.check_against_transform(ours, theirs, dtype)


def test_trace_nesterov_with_dampening_is_rejected():
    with pytest.raises(ValueError, match="dampening"):
        adam_tx.trace(0.9, nesterov=True, dampening=0.1)


def test_trace_accumulator_dtype():
    tx = adam_tx.trace(0.9, accumulator_dtype=jnp.float32)
    state = tx.init({"w": jnp.ones(3, jnp.bfloat16)})
    u, state = tx.update({"w": jnp.ones(3, jnp.bfloat16)}, state)
    assert state.trace["w"].dtype == jnp.float32 and u["w"].dtype == jnp.bfloat16
