"""RMSProp, AdaGrad and momentum against the float64 formulas and optax."""

import jax
import jax.numpy as jnp
import numpy as np
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


def test_trace_decay_one_is_a_running_sum():
    R.check_against_transform(
        lambda: adam_tx.trace(1.0), lambda: optax.trace(1.0), "float32"
    )
    with pytest.raises(ValueError, match=r"decay=1\.5"):
        adam_tx.trace(1.5)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("eps_in_sqrt", [True, False])
def test_rms_bias_correction_matches_optax(centered, eps_in_sqrt):
    theirs = optax.scale_by_stddev if centered else optax.scale_by_rms
    # The first bias-corrected centered variance is 0 up to rounding: eps must
    # dominate that rounding for the two to be comparable.
    kw = dict(decay=0.8, eps=1e-2, eps_in_sqrt=eps_in_sqrt, bias_correction=True)
    # Centered, step 1's variance is exactly 0 here and 1e-7-ish rounding in
    # optax (1 - 0.8**1 vs its complement): 1e-5 apart relative to eps.
    R.check_against_transform(
        lambda: adam_tx.scale_by_rms(**kw, centered=centered),
        lambda: theirs(**kw),
        "float32",
        rtol32=5e-5 if centered else R.F32_RTOL,
    )


# --------------------------------------------------------------------------
# Complex parameters: second moments of |g|^2 = (g * conj(g)).real, as optax.

COMPLEX_GRADS = [
    {"z": jnp.array([1 + 2j, -0.5j, 3.0]) * s, "x": jnp.array([0.5, -1.0]) * s}
    for s in (1.0, -0.7, 2.0, 0.3)
]


def _complex_steps(tx):
    params = {"z": jnp.array([1j, 2.0, -1 - 1j]), "x": jnp.array([1.0, 2.0])}
    params = {"z": params["z"].astype(jnp.complex64), "x": params["x"]}
    state, out = tx.init(params), []
    update = jax.jit(tx.update)
    for g in COMPLEX_GRADS:
        g = {"z": g["z"].astype(jnp.complex64), "x": g["x"]}
        u, state = update(g, state, params)
        params = optax.apply_updates(params, u)
        out.append(u)
    return out


COMPLEX_CASES = {
    "rms": (lambda: adam_tx.scale_by_rms(), lambda: optax.scale_by_rms()),
    "rms_centered": (
        lambda: adam_tx.scale_by_rms(eps=1.0, centered=True, bias_correction=True),
        lambda: optax.scale_by_stddev(eps=1.0, bias_correction=True),
    ),
    "adagrad": (
        lambda: adam_tx.scale_by_adagrad(0.1, 0.0),
        lambda: optax.scale_by_rss(0.1, 0.0),
    ),
    "trace": (lambda: adam_tx.trace(0.9, True), lambda: optax.trace(0.9, True)),
    "rmsprop": (
        lambda: adam_tx.rmsprop(0.1, momentum=0.5),
        lambda: optax.rmsprop(0.1, momentum=0.5),
    ),
    "sgd": (lambda: adam_tx.sgd(0.1, 0.9), lambda: optax.sgd(0.1, 0.9)),
}


@pytest.mark.parametrize("case", COMPLEX_CASES)
def test_complex_parameters_match_optax(case):
    ours, theirs = COMPLEX_CASES[case]
    rtol = 5e-5 if case == "rms_centered" else 2e-6  # see the bias-correction test
    for a, b in zip(_complex_steps(ours()), _complex_steps(theirs())):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            assert x.dtype == y.dtype
            np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-7)


def test_complex_second_moment_is_real_modulus():
    # A purely imaginary gradient has g * g = -|g|^2: its moment must be +|g|^2.
    tx = adam_tx.scale_by_rms(decay=0.5, eps=0.0)
    g = jnp.array([2j], jnp.complex64)
    u, state = tx.update(g, tx.init(jnp.zeros(1, jnp.complex64)))
    np.testing.assert_allclose(state.nu, [2.0])
    np.testing.assert_allclose(u, g / np.sqrt(2.0), rtol=1e-6)


def test_centered_variance_is_never_negative():
    # Step 1 with bias correction: v_hat = g^2 = m_hat^2 exactly in theory.
    tx = adam_tx.scale_by_rms(decay=0.9, eps=1e-8, centered=True, bias_correction=True)
    g = jnp.array([0.3, -1.7, 1e-3, 12.5, 0.1 + 0.2j], jnp.complex64)
    u, _ = jax.jit(tx.update)(g, tx.init(jnp.zeros_like(g)))
    assert bool(jnp.all(jnp.isfinite(u)))
