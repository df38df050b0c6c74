"""Dynamic loss scaling for float16 training (torch.amp.GradScaler semantics).

Small gradients underflow in float16 (below ~6e-8 they become 0). Multiplying
the loss by a scale ``S`` multiplies every gradient by ``S``; the optimizer
divides by ``S`` again before using them. ``S`` adapts:

    g <- g_scaled * (1 / S)                       (unscale)
    overflow: any g non-finite  ->  skip the step, S <- max(S * backoff, min_scale)
    otherwise: good <- good + 1; when good == growth_interval:
               S <- min(S * growth, max_scale) (only if finite), good <- 0

Defaults are torch's (``S_0 = 2**16``, growth 2, backoff 0.5, interval 2000).
A step that an enclosing :func:`adam_tx.skip_nonfinite` skips counts as an
overflow for the scale, so ``skip_nonfinite(loss_scaling(tx))`` and
``loss_scaling(skip_nonfinite(tx))`` follow the same scale.
The unscaling and the finiteness test are one pass over the gradients: the
test is the sum of squares of the unscaled gradients (also their global norm,
kept as ``grad_norm``), and a :func:`adam_tx.clip_by_global_norm` inside the
wrapper reduces the identical expression, which XLA computes once.

References:
  Micikevicius et al., "Mixed Precision Training", ICLR 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx._engine.counting import INT32_MAX
from adam_tx._engine.dtypes import compute_dtype, hyper_dtype
from adam_tx._engine.validate import check_positive, check_range
from adam_tx._engine.wrapper_args import check_int, check_transform
from adam_tx.nonfinite import (
    GUARD_STATES,
    enclosing_ok,
    guard_head,
    guarded_inner_update,
    guarded_transform,
    sum_of_squares_tree,
)


class LossScaleState(NamedTuple):
    """State of :func:`loss_scaling`.

    ``scale``: the current loss scale (float32); ``good_steps``: finite steps
    since the last change of scale (torch's growth tracker); ``overflows``:
    steps this wrapper skipped so far (a step an enclosing guard skipped is
    counted there, but backs the scale off here too); ``grad_norm``: global
    norm of the last unscaled gradients (0 before the first step, inf or NaN
    on an overflow).
    """

    scale: jax.Array
    good_steps: jax.Array
    overflows: jax.Array
    grad_norm: jax.Array
    inner_state: Any


GUARD_STATES.append(LossScaleState)


class ScaleRule(NamedTuple):
    """The constants of the scale dynamics."""

    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    min_scale: float = 1.0
    max_scale: float = float(jnp.finfo(jnp.float32).max)


def next_scale(
    scale: jax.Array, good_steps: jax.Array, finite: jax.Array, rule: ScaleRule
) -> tuple[jax.Array, jax.Array]:
    """``(scale, good_steps)`` after a step that was ``finite`` or overflowed.

    As torch's ``_amp_update_scale_``, with the scale kept in
    ``[min_scale, max_scale]`` (a grown scale that is not finite is not taken).

    >>> import jax.numpy as jnp
    >>> rule = ScaleRule(growth_interval=2)
    >>> s, n = jnp.float32(8.0), jnp.int32(1)
    >>> [float(v) for v in next_scale(s, n, jnp.bool_(True), rule)]
    [16.0, 0.0]
    >>> [float(v) for v in next_scale(s, n, jnp.bool_(False), rule)]
    [4.0, 0.0]
    """
    f32 = jnp.float32
    grown_count = good_steps + 1
    grow = grown_count >= rule.growth_interval
    grown = scale * f32(rule.growth_factor)
    grown = jnp.where(
        grow & jnp.isfinite(grown), jnp.minimum(grown, f32(rule.max_scale)), scale
    )
    shrunk = jnp.maximum(scale * f32(rule.backoff_factor), f32(rule.min_scale))
    new_scale = jnp.where(finite, grown, shrunk).astype(f32)
    new_good = jnp.where(finite & ~grow, grown_count, 0).astype(jnp.int32)
    return new_scale, new_good


def find_loss_scale(state: Any) -> LossScaleState:
    """The first :class:`LossScaleState` in an optimizer state tree."""
    is_ls = lambda n: isinstance(n, LossScaleState)
    for node in jax.tree.leaves(state, is_leaf=is_ls):
        if is_ls(node):
            return node
    raise ValueError(
        "no LossScaleState in the optimizer state: wrap the optimizer with "
        "adam_tx.loss_scaling(...)"
    )


def scale_loss(loss: jax.Array, state: Any) -> jax.Array:
    """``loss * S``: differentiate this instead of the loss.

    ``state`` is a :class:`LossScaleState` or any optimizer state containing one.
    The product is taken in at least float32 (a float16 loss times ``2**16``
    would overflow), so compute the loss in float32 or accept float32 back.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.loss_scaling(adam_tx.adam(1e-3))
    >>> float(adam_tx.scale_loss(jnp.float32(0.5), opt.init(jnp.zeros(2))))
    32768.0

    Args:
      loss: the scalar loss.
      state: a ``LossScaleState`` or any optimizer state containing one.
    """
    ls = find_loss_scale(state)
    dtype = compute_dtype(jnp.result_type(loss))
    return jnp.asarray(loss, dtype) * ls.scale.astype(dtype)


def loss_scaling(
    inner: optax.GradientTransformation,
    *,
    init_scale: float = 2.0**16,
    growth_factor: float = 2.0,
    backoff_factor: float = 0.5,
    growth_interval: int = 2000,
    min_scale: float = 1.0,
    max_scale: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Unscale gradients of a scaled loss, skip overflowing steps, adapt the scale.

    Use with :func:`scale_loss`: ``grads = jax.grad(lambda p: scale_loss(
    loss_fn(p), opt_state))(params)``. On an overflow (a non-finite unscaled
    gradient) the updates are zeros, ``inner``'s state is unchanged and the scale
    backs off; after ``growth_interval`` finite steps in a row it grows (module
    docstring). Fused with ``inner`` when that is made of adam_tx pieces.

    Args:
      inner: the optimizer to feed unscaled gradients.
      inner: the optimizer to feed unscaled gradients (a
        ``GradientTransformation``).
      init_scale: the first scale, in ``[min_scale, max_scale]``; torch's
        default ``2**16``.
      growth_factor: multiplier on growth (finite, > 1).
      backoff_factor: multiplier on overflow, in (0, 1).
      growth_interval: finite steps in a row before growing (an integer in
        [1, 2**31 - 1]).
      min_scale: floor of the scale (finite, > 0); 1.0, as below it scaling
        cannot help.
      max_scale: ceiling of the scale, in ``[min_scale, float32 max]``, or None
        (float32 max: torch has none).

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.loss_scaling(adam_tx.sgd(1.0), init_scale=4.0)
    >>> p = jnp.zeros(1); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([8.0]), s, p)  # gradient 2.0, scaled by 4
    >>> u.tolist(), float(s.scale), float(s.grad_norm)
    ([-2.0], 4.0, 2.0)
    >>> u, s = opt.update(jnp.array([jnp.inf]), s, p)
    >>> u.tolist(), float(s.scale), int(s.overflows)
    ([0.0], 2.0, 1)
    """
    inner = check_transform("inner", inner)
    f32_max = float(jnp.finfo(jnp.float32).max)
    for name, value in (
        ("init_scale", init_scale),
        ("growth_factor", growth_factor),
        ("backoff_factor", backoff_factor),
        ("min_scale", min_scale),
        ("max_scale", max_scale),
    ):
        if callable(value):  # check_range lets schedules through
            raise TypeError(f"{name} must be a number, got the callable {value!r}")
    check_positive("init_scale", init_scale)
    check_range("growth_factor", growth_factor, 1.0, None, low_inclusive=False)
    check_range(
        "backoff_factor",
        backoff_factor,
        0.0,
        1.0,
        low_inclusive=False,
        high_inclusive=False,
    )
    growth_interval = check_int("growth_interval", growth_interval, 1)
    check_positive("min_scale", min_scale)
    check_range("min_scale", min_scale, None, f32_max)
    if max_scale is None:
        max_scale = f32_max
    check_range("max_scale", max_scale, min_scale, f32_max)
    check_range("init_scale", init_scale, min_scale, max_scale)
    rule = ScaleRule(
        growth_factor, backoff_factor, growth_interval, min_scale, max_scale
    )

    def init(params):
        # Distinct arrays per field: a donated state may not alias a buffer twice.
        return LossScaleState(
            jnp.asarray(init_scale, jnp.float32),
            jnp.zeros([], jnp.int32),
            jnp.zeros([], jnp.int32),
            jnp.zeros([], hyper_dtype()),
            inner.init(params),
        )

    def advance(state, squares, outer_ok):
        own = jnp.isfinite(squares)
        # A step skipped outside is an overflow for the scale (the scaled
        # gradients overflowed there), counted by the guard that skipped it.
        finite = own if outer_ok is True else own & outer_ok
        here = ~own if outer_ok is True else ~own & outer_ok
        scale, good = next_scale(state.scale, state.good_steps, finite, rule)
        overflows = jnp.where(
            here & (state.overflows < INT32_MAX), state.overflows + 1, state.overflows
        )
        return state._replace(
            scale=scale,
            good_steps=good,
            overflows=overflows,
            grad_norm=jnp.sqrt(squares),
        )

    def inverse(state):
        # torch: the reciprocal is taken in float64, then rounded to float32.
        return (1.0 / state.scale.astype(hyper_dtype())).astype(jnp.float32)

    def unscale(x, inv):
        x = x.astype(compute_dtype(x.dtype))
        return x * inv.astype(x.dtype)

    def head(state, set_finite):
        return guard_head("loss_scaling", init, advance, set_finite, inverse(state))

    def plain(updates, state, params=None, **extra_args):
        inv = inverse(state)
        # Kept in the compute dtype: unscaled float16 gradients would underflow.
        grads = jax.tree.map(lambda x: unscale(x, inv), updates)
        squares = sum_of_squares_tree(grads)
        outer_ok = enclosing_ok()
        new_updates, inner_state = guarded_inner_update(
            inner, squares, grads, state.inner_state, params, extra_args
        )
        new_state = advance(state, squares, outer_ok)
        return new_updates, new_state._replace(inner_state=inner_state)

    return guarded_transform("loss_scaling", inner, init, head, plain)
