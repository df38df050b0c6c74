"""Every state format and wrapper survives the frameworks' containers.

Three jitted steps through flax.nnx.Optimizer (and an ``nnx.scan`` over steps),
a linen ``TrainState``, ``equinox.filter_jit`` and an Orbax
``CheckpointManager`` round trip, each compared with the same steps taken by
the bare optimizer. The model has a 4096-element kernel so that int8 state
quantizes it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from flax.training import train_state

import adam_tx

FORMATS = {
    "fp32": {},
    "bf16": dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "stochastic": dict(
        state_format="stochastic", mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16
    ),
    "int8": dict(state_format="int8"),
}
WRAPPERS = {
    "plain": lambda tx: tx,
    "skip_nonfinite": adam_tx.skip_nonfinite,
    "loss_scaling": adam_tx.loss_scaling,
    "track_stats": lambda tx: adam_tx.chain(tx, adam_tx.track_stats()),
}
CASES = [(f, w) for f in FORMATS for w in WRAPPERS]
# Each format plain, and each wrapper over fp32 and int8 (the containers that
# only jit a pytree need no more).
LEAN = sorted(
    {(f, "plain") for f in FORMATS}
    | {(f, w) for f in ("fp32", "int8") for w in WRAPPERS}
)
X = jnp.linspace(-1.0, 1.0, 4 * 8).reshape(4, 8)


def make_tx(fmt, wrapper):
    return WRAPPERS[wrapper](adam_tx.adamw(1e-2, **FORMATS[fmt]))


def _loss(params, x=X):
    h = jnp.tanh(x @ params["kernel"] + params["bias"])
    return jnp.mean(h**2)


def _params():
    k = jax.random.normal(jax.random.PRNGKey(0), (8, 512)) * 0.1
    return {"kernel": k, "bias": jnp.zeros(512)}


def reference_run(tx, steps=3):
    params = _params()
    state = tx.init(params)
    for _ in range(steps):
        g = jax.grad(_loss)(params)
        u, state = jax.jit(tx.update)(g, state, params)
        params = optax.apply_updates(params, u)
    return params, state


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_same_run(params, state, want, want_state, fmt="fp32"):
    """Same parameters (to float32 rounding: the container jits the gradient
    with the update, the reference does not) and a state of the same layout.

    A quantized state turns that rounding into, at worst, a neighbouring code
    (about 1% of one element's moment): there, an element may differ by 2% of
    one step (lr 1e-2) and no more."""
    atol = 2e-4 if fmt in ("int8", "int4") else 1e-6
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol)
    assert jax.tree.structure(state) == jax.tree.structure(want_state)
    for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(want_state)):
        assert (jnp.shape(x), jnp.result_type(x)) == (jnp.shape(y), jnp.result_type(y))


class Layer(nnx.Module):
    def __init__(self):
        p = _params()
        self.kernel = nnx.Param(p["kernel"])
        self.bias = nnx.Param(p["bias"])

    def __call__(self, x):
        return jnp.tanh(x @ self.kernel + self.bias)


def _nnx_loss(model):
    return jnp.mean(model(X) ** 2)


@pytest.mark.parametrize("fmt, wrapper", CASES)
def test_nnx_optimizer(fmt, wrapper):
    model = Layer()
    optimizer = nnx.Optimizer(model, make_tx(fmt, wrapper), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        optimizer.update(model, nnx.grad(_nnx_loss)(model))

    for _ in range(3):
        step(model, optimizer)
    want, _ = reference_run(make_tx(fmt, wrapper))
    atol = 2e-4 if fmt in ("int8", "int4") else 1e-6  # see assert_same_run
    np.testing.assert_allclose(model.kernel[...], want["kernel"], rtol=1e-4, atol=atol)


NNX_SCAN_FORMATS = [
    pytest.param(
        f,
        marks=pytest.mark.xfail(
            strict=True,
            reason="pending: a quantized moment (Blocks: codes + scales) sits "
            "under one nnx Variable (init maps over the Params of "
            "nnx.state(model)); nnx.scan's carry output turns that value into "
            "an nnx State, and the carry structures differ (a TypeError, not a "
            "wrong number). nnx.Optimizer without scan works",
        ),
    )
    if f in ("int8", "int4")
    else f
    for f in FORMATS
]


@pytest.mark.parametrize("fmt", NNX_SCAN_FORMATS)
def test_nnx_scan_over_steps(fmt):
    model = Layer()
    optimizer = nnx.Optimizer(model, make_tx(fmt, "skip_nonfinite"), wrt=nnx.Param)

    @nnx.scan(in_axes=(nnx.Carry, None), out_axes=nnx.Carry, length=3)
    def steps(carry, _):
        model, optimizer = carry
        optimizer.update(model, nnx.grad(_nnx_loss)(model))
        return model, optimizer

    nnx.jit(lambda m, o: steps((m, o), None))(model, optimizer)
    want, _ = reference_run(make_tx(fmt, "skip_nonfinite"))
    np.testing.assert_allclose(model.kernel[...], want["kernel"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fmt, wrapper", LEAN)
def test_linen_train_state(fmt, wrapper):
    tx = make_tx(fmt, wrapper)
    state = train_state.TrainState.create(apply_fn=None, params=_params(), tx=tx)

    @jax.jit
    def step(state):
        return state.apply_gradients(grads=jax.grad(_loss)(state.params))

    for _ in range(3):
        state = step(state)
    want, want_opt = reference_run(make_tx(fmt, wrapper))
    assert_same_run(state.params, state.opt_state, want, want_opt, fmt)


@pytest.mark.parametrize("fmt, wrapper", LEAN)
def test_equinox_filter_jit(fmt, wrapper):
    eqx = pytest.importorskip("equinox")
    tx = make_tx(fmt, wrapper)
    params = _params()
    state = tx.init(eqx.filter(params, eqx.is_array))

    @eqx.filter_jit
    def step(params, state):
        g = eqx.filter_grad(_loss)(params)
        u, state = tx.update(g, state, params)
        return eqx.apply_updates(params, u), state

    for _ in range(3):
        params, state = step(params, state)
    want, want_opt = reference_run(make_tx(fmt, wrapper))
    assert_same_run(params, state, want, want_opt, fmt)


@pytest.mark.parametrize("fmt, wrapper", CASES)
def test_orbax_round_trip(fmt, wrapper, tmp_path):
    tx = make_tx(fmt, wrapper)
    _, state = reference_run(tx)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        adam_tx.checkpoint.save(manager, 3, state)
        target = adam_tx.checkpoint.abstract_state(tx, _params())
        restored = adam_tx.checkpoint.restore(manager, 3, target)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    assert_trees_equal(restored, state)
