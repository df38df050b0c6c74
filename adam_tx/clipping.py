"""Gradient clipping: elementwise, by global norm, and adaptive (unit-wise).

The global norm is accumulated in float32 (float64 for float64 leaves) even
when gradients are bfloat16 or float16: a half-precision sum of squares
overflows on large models. A float32 sum of squares itself overflows once the
norm passes ~1.8e19 (optax and torch then clip by a factor of 0, a silently
zero step); :func:`global_norm` then recomputes the norm from the gradients
divided by their largest magnitude, so any finite gradient has a finite norm
up to the float32 maximum. Complex leaves count ``|x|^2 = re(x)^2 + im(x)^2``.
The clip factor is a scalar applied inside the fused elementwise pass, so no
clipped copy of the gradients is ever stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine import fusion
from adam_tx._engine.dtypes import compute_dtype, hyper_dtype
from adam_tx._engine.reduce import sums_of_squares
from adam_tx._engine.stateful import counted_transform
from adam_tx._engine.stateless import accepting_no_state
from adam_tx._engine.typing import Numeric
from adam_tx._engine.validate import check_axes, check_positive, check_range
from adam_tx.moments import abs_sq


class ClipState(NamedTuple):
    """State of :func:`clip`: the step count and the bound in force."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hyperparams: dict


class ClipByGlobalNormState(NamedTuple):
    """``global_norm``: the norm before clipping; ``clip_factor``: 1.0 if unclipped."""

    global_norm: jax.Array
    clip_factor: jax.Array
    hyperparams: dict


class _GlobalNormCtx(NamedTuple):
    """One step of :func:`clip_by_global_norm`: the rates in force, the norm
    and the factor every leaf is multiplied by."""

    hp: dict[str, jax.Array]
    norm: jax.Array
    factor: jax.Array


class AdaptiveGradClipState(NamedTuple):
    """State of :func:`adaptive_grad_clip`: the step count and its hyperparameters."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hyperparams: dict


def sum_of_squares(x: jax.Array) -> jax.Array:
    """``sum(|x|^2)`` in at least float32, in one fast loop (``_engine.reduce``)."""
    return sums_of_squares(x)[0]


def rescaled_squares(leaves: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(m, s)`` with ``m = max |x|`` and ``s = sum (|x| / m)^2`` over all leaves.

    ``m * sqrt(s)`` is the L2 norm without squaring any element of ``x``: the
    form that stays finite where ``sum(x^2)`` overflows (LAPACK's ``xNRM2``
    scales the same way). ``m`` is inf if some element is.
    """
    dtype = hyper_dtype()
    m = jnp.zeros([], dtype)
    for x in leaves:
        if jnp.size(x):
            m = jnp.maximum(m, jnp.max(jnp.abs(x)).astype(dtype))
    # Not |x| / m: XLA divides by a scalar as a multiplication by its
    # reciprocal, which is subnormal (flushed to 0) for m > 2^126, and it
    # cancels constant rescalings. Exact power-of-two shifts by m's exponent e
    # (in two halves, each a normal factor) bring m into [0.5, 1) instead.
    e = jnp.frexp(jnp.where(jnp.isfinite(m), m, jnp.ones([], dtype)))[1]
    down = lambda v: jnp.ldexp(jnp.ldexp(v, -(e // 2)), -(e - e // 2))
    total = jnp.zeros([], dtype)
    for x in leaves:
        total = total + jnp.sum(jnp.square(down(jnp.abs(x).astype(dtype))))
    scaled_m = down(m)
    s = total / jnp.where(scaled_m > 0, scaled_m * scaled_m, jnp.ones([], dtype))
    return m, s


def norm_of_squares(
    total: jax.Array, leaves: Callable[[], Sequence[jax.Array]]
) -> jax.Array:
    """``sqrt(total)``, or where ``total`` overflowed to inf, the rescaled norm.

    ``leaves()`` gives the summed arrays again; it runs only in that rare case
    (``lax.cond``), so the common step pays nothing. NaN stays NaN, and a norm
    beyond the float maximum (or an infinite element) is inf.
    """

    def rescaled():
        m, s = rescaled_squares(leaves())
        return jnp.where(jnp.isfinite(m), m * jnp.sqrt(s), m)

    return jax.lax.cond(jnp.isposinf(total), rescaled, lambda: jnp.sqrt(total))


def global_norm(updates: Any) -> jax.Array:
    """``sqrt(sum over leaves of sum(|x|^2))``, accumulated in at least float32.

    The norm that :func:`clip_by_global_norm` clips (Pascanu, Mikolov & Bengio,
    "On the difficulty of training recurrent neural networks", ICML 2013).
    Where the sum of squares overflows, the norm is ``m sqrt(sum (x / m)^2)``
    with ``m = max |x|`` (:func:`norm_of_squares`), so it is finite for every
    finite tree whose norm is below the float maximum.

    >>> import adam_tx, jax.numpy as jnp
    >>> float(adam_tx.global_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
    5.0
    >>> f"{float(adam_tx.global_norm(jnp.array([3e19, 4e19]))):.4e}"  # sum(x^2) = inf
    '5.0000e+19'

    Args:
      updates: a pytree of arrays.
    """
    leaves = jax.tree.leaves(updates)
    total = sum(
        (sum_of_squares(x).astype(hyper_dtype()) for x in leaves),
        jnp.zeros([], hyper_dtype()),
    )
    return norm_of_squares(total, lambda: leaves)


def clip_factor(norm: jax.Array, max_norm: jax.Array) -> jax.Array:
    """``min(1, max_norm / norm)``: 1 when the norm is within bounds.

    (torch's ``clip_grad_norm_`` uses ``max_norm / (norm + 1e-6)``, clamped to 1.)
    """
    return jnp.where(norm < max_norm, jnp.ones_like(norm), max_norm / norm)


def clip(max_delta: Numeric = 1.0) -> optax.GradientTransformationExtraArgs:
    """Clip every element of the updates to ``[-max_delta, max_delta]``.

    Formula: ``u <- min(max(u, -max_delta), max_delta)``, elementwise.
    ``update(updates, None)`` is accepted, as optax's stateless ``clip`` is.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.clip(1.0)
    >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(jnp.zeros(2)))[0].tolist()
    [-1.0, 0.5]

    Args:
      max_delta: bound on each update entry's magnitude.
    """
    check_positive("max_delta", max_delta)

    def math(c, g):
        d = c.hp["max_delta"]
        return jnp.clip(g, -d, d), ()

    return accepting_no_state(
        counted_transform(
            "clip", ClipState, (hyperparams.Hyper("max_delta", max_delta),), {}, math
        )
    )


def clip_by_global_norm(
    max_norm: Numeric = 1.0,
) -> optax.GradientTransformationExtraArgs:
    """Scale updates by ``min(1, max_norm / ||g||)``, ``||g||`` the global L2 norm.

    ``||g|| = sqrt(sum_leaves sum(|g|^2))`` (Pascanu et al., "On the difficulty
    of training recurrent neural networks", 2013). The pre-clip norm and the
    factor applied are kept in the state (``global_norm``, ``clip_factor``);
    ``update(updates, None)`` is accepted, as optax's stateless transform is.

    Args:
      max_norm: the largest allowed global norm (> 0), float or schedule.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.clip_by_global_norm(1.0)
    >>> u, s = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
    >>> u.tolist(), float(s.global_norm), float(s.clip_factor)
    ([0.6000000238418579, 0.800000011920929], 5.0, 0.20000000298023224)
    """
    check_positive("max_norm", max_norm)
    hypers = (hyperparams.Hyper("max_norm", max_norm),)

    def init(params):
        del params
        return ClipByGlobalNormState(
            jnp.zeros([], hyper_dtype()),
            jnp.ones([], hyper_dtype()),
            hyperparams.init_values(hypers),
        )

    def reduce_input(x):
        return (sum_of_squares(x).astype(hyper_dtype()),)

    def prepare(state, params, reduced):
        # max_norm schedules see step 0 always: clipping keeps no step count.
        hp = hyperparams.current_values(
            hypers, state.hyperparams, jnp.zeros([], jnp.int32)
        )
        norm = jnp.sqrt(reduced[0])
        if len(reduced) == 3:  # (sum of squares, m, s) of rescaled_squares
            m, s = reduced[1:]
            rescaled = jnp.where(jnp.isfinite(m), m * jnp.sqrt(s), m)
            norm = jnp.where(jnp.isposinf(reduced[0]), rescaled, norm)
        return _GlobalNormCtx(hp, norm, clip_factor(norm, hp["max_norm"]))

    def leaf(ctx, x, entries, p, info):
        x = x.astype(compute_dtype(x.dtype))
        return x * ctx.factor.astype(x.dtype), (), ()

    def finish(state, ctx, fields, partials):
        return ClipByGlobalNormState(ctx.norm, ctx.factor, ctx.hp)

    piece = fusion.Piece(
        name="clip_by_global_norm",
        init=init,
        prepare=prepare,
        leaf=leaf,
        finish=finish,
        reduce_input=reduce_input,
        scales_by=lambda ctx: ctx.factor,
        squares_factor=lambda: jnp.ones([], hyper_dtype()),
    )
    return accepting_no_state(fusion.transformation(piece))


def unitwise_norm(x: jax.Array, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    """L2 norm of each unit, broadcast to ``x.shape`` (Brock et al. 2021).

    Formula: ``sqrt(sum(|x|^2))`` over the unit's axes: ``axis`` if given; else
    the whole array when at most one axis is longer than 1, axis 0 for rank
    2-3 (inputs of a linear layer), axes (0, 1, 2) for rank 4 (HWIO
    convolutions), (0, 1, 2, 3) for rank 5; optax's convention.

    >>> import jax.numpy as jnp
    >>> unitwise_norm(jnp.array([[3.0, 0.0], [4.0, 1.0]])).tolist()
    [[5.0, 1.0], [5.0, 1.0]]
    """
    if axis is None:
        default = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}
        if jnp.squeeze(x).ndim <= 1:
            axis = None
        elif x.ndim in default:
            axis = default[x.ndim]
        else:
            raise ValueError(
                f"adaptive_grad_clip infers units for ranks 0-5, got shape "
                f"{x.shape}: pass axis= to say which axes a unit spans"
            )
    sq = jnp.sum(abs_sq(x), axis=axis, keepdims=True)
    return jnp.broadcast_to(jnp.sqrt(sq), x.shape)


def adaptive_grad_clip(
    clipping: Numeric = 0.01,
    eps: Numeric = 1e-3,
    axis: int | tuple[int, ...] | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Clip each unit's gradient to ``clipping * max(||p_unit||, eps)``.

    ``g <- g * max_norm / ||g_unit||`` where ``||g_unit|| > max_norm`` (Brock et
    al., "High-Performance Large-Scale Image Recognition Without Normalization",
    2021); units as in :func:`unitwise_norm`. Needs ``params``; the state may
    be ``None``, as optax's stateless transform takes it.

    Args:
      clipping: the allowed ratio of gradient to parameter norm (> 0).
      eps: floor on the parameter norm, so zero-initialised weights can move.
      axis: the axes a unit spans (None: inferred from the rank).

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.adaptive_grad_clip(0.1)
    >>> p = jnp.array([3.0, 4.0])
    >>> tx.update(jnp.array([1.0, 0.0]), tx.init(p), p)[0].tolist()
    [0.5, 0.0]
    """
    check_positive("clipping", clipping)
    check_range("eps", eps, 0.0, None, low_inclusive=False)
    check_axes("axis", axis)

    def math(c, g):
        g_norm = unitwise_norm(g, axis)
        p_norm = unitwise_norm(c.param.astype(g.dtype), axis)
        max_norm = c.hp["clipping"] * jnp.maximum(p_norm, c.hp["eps"])
        clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6))
        return jnp.where(g_norm < max_norm, g, clipped), ()

    return accepting_no_state(
        counted_transform(
            "adaptive_grad_clip",
            AdaptiveGradClipState,
            (hyperparams.Hyper("clipping", clipping), hyperparams.Hyper("eps", eps)),
            {},
            math,
            needs_params=True,
        )
    )
