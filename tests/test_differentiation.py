"""Updates are differentiable: jax.grad and jax.jvp through a chained update
(track_stats, skip_nonfinite, loss_scaling) match finite differences.

The sums of squares behind track_stats are a variadic ``lax.reduce`` on CPU,
which has no JVP rule in JAX; ``_engine.reduce.sums_of_squares`` carries its own.
Computed in float64 (``jax.enable_x64``), central differences with h = 1e-6
agree to ~1e-8.

With track_stats in the chain, the engine orders the update pass after the
norms through a bitwise no-op (``_engine.fusion._or_zero_bits``, a bitcast); its
``custom_jvp`` gives it the identity tangent, so derivatives through the step's
scalars (the learning rate) and through the norms' reading of the parameters
are exact too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adam_tx
from adam_tx._engine import reduce


def _chain(lr=0.05, stats=True):
    return adam_tx.chain(
        adam_tx.clip_by_global_norm(10.0),
        adam_tx.adamw(lr, weight_decay=0.1),
        *([adam_tx.track_stats()] if stats else []),
    )


WRAPS = {
    "track_stats": lambda tx: tx,
    "skip_nonfinite": adam_tx.skip_nonfinite,
    "loss_scaling": lambda tx: adam_tx.loss_scaling(tx, init_scale=4.0),
    "both": lambda tx: adam_tx.loss_scaling(adam_tx.skip_nonfinite(tx), init_scale=4.0),
    "skip(scaling)": lambda tx: adam_tx.skip_nonfinite(
        adam_tx.loss_scaling(tx, init_scale=4.0)
    ),
}


def _params():
    # (6, 16): track_stats sums rows of 8 on CPU; (5,): a compensated sum.
    w = jnp.linspace(-1.0, 1.0, 96).reshape(6, 16)
    return {"w": w, "b": jnp.linspace(0.5, 1.5, 5)}


def _objective(tx, lr_too=False, norm=False):
    """A scalar of the parameters after two steps (of the learning rate too,
    with ``lr_too``), or with ``norm`` the update norm track_stats measured."""

    def f(params, lr=0.05):
        state = tx.init(params)
        if lr_too:
            state = adam_tx.set_hyperparams(state, learning_rate=lr)
        p = params
        for t in range(2):
            g = jax.tree.map(lambda x, t=t: jnp.sin(3.0 * x + t) * x, p)
            u, state = tx.update(g, state, p)
            p = adam_tx.apply_updates(p, u)
        if norm:
            return adam_tx.stats(state)["update_norm"]
        return sum(jnp.sum(jnp.cos(x)) for x in jax.tree.leaves(p))

    return f


def _central_difference(f, x, v, h=1e-6):
    plus = jax.tree.map(lambda a, b: a + h * b, x, v)
    minus = jax.tree.map(lambda a, b: a - h * b, x, v)
    return (f(plus) - f(minus)) / (2 * h)


@pytest.mark.parametrize("wrap", list(WRAPS))
def test_grad_and_jvp_match_finite_differences(wrap):
    with jax.enable_x64(True):
        f = _objective(WRAPS[wrap](_chain()))
        params = jax.tree.map(lambda x: x.astype(jnp.float64), _params())
        direction = jax.tree.map(lambda x: jnp.cos(7.0 * x), params)
        fd = float(_central_difference(f, params, direction))
        _, tangent = jax.jvp(f, (params,), (direction,))
        grad = jax.grad(f)(params)
        along = sum(
            jnp.vdot(g, d)
            for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction))
        )
        assert abs(fd) > 1e-3  # the objective does move along the direction
        np.testing.assert_allclose(float(tangent), fd, rtol=1e-6)
        np.testing.assert_allclose(float(along), fd, rtol=1e-6)


@pytest.mark.parametrize("stats", [False, True])
def test_grad_with_respect_to_the_learning_rate(stats):
    with jax.enable_x64(True):
        tx = adam_tx.loss_scaling(adam_tx.skip_nonfinite(_chain(stats=stats)))
        params = jax.tree.map(lambda x: x.astype(jnp.float64), _params())
        f = _objective(tx, lr_too=True)
        g = lambda lr: f(params, lr)
        fd = (g(0.05 + 1e-6) - g(0.05 - 1e-6)) / 2e-6
        np.testing.assert_allclose(float(jax.grad(g)(0.05)), float(fd), rtol=1e-6)


def test_grad_of_the_measured_update_norm():
    """track_stats keeps its norms in float32: central differences with a
    larger step (1e-3) agree to ~1e-4."""
    with jax.enable_x64(True):
        f = _objective(_chain(), norm=True)
        params = jax.tree.map(lambda x: x.astype(jnp.float64), _params())
        direction = jax.tree.map(lambda x: jnp.cos(7.0 * x), params)
        fd = float(_central_difference(f, params, direction, h=1e-3))
        _, tangent = jax.jvp(f, (params,), (direction,))
        assert abs(fd) > 1e-3
        np.testing.assert_allclose(float(tangent), fd, rtol=1e-3)


@pytest.mark.parametrize("shape", [(6, 16), (5,), (3, 4)])
def test_sums_of_squares_jvp_is_twice_the_dot(shape):
    x = jnp.linspace(-2.0, 2.0, int(np.prod(shape))).reshape(shape)
    p = jnp.cos(x)
    dx, dp = jnp.sin(x), jnp.ones(shape)
    out, tangents = jax.jvp(reduce.sums_of_squares, (x, p), (dx, dp))
    np.testing.assert_allclose(tangents[0], 2 * jnp.sum(x * dx), rtol=1e-6)
    np.testing.assert_allclose(tangents[1], 2 * jnp.sum(p * dp), rtol=1e-6)
    # The forward program is the custom rule's primal: the same sums as before.
    np.testing.assert_allclose(out[0], jnp.sum(x * x), rtol=1e-6)
