"""Gradient clipping: elementwise, by global norm, and adaptive (unit-wise).

The global norm is accumulated in float32 (float64 for float64 leaves) even
when gradients are bfloat16 or float16: a half-precision sum of squares
overflows on large models. The clip factor is a scalar applied inside the
fused elementwise pass, so no clipped copy of the gradients is ever stored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adam_tx import _fusion, hyperparams
from adam_tx._dtypes import compute_dtype, hyper_dtype
from adam_tx._reduce import sums_of_squares
from adam_tx._stateful import counted_transform
from adam_tx._validate import check_positive, check_range


class ClipState(NamedTuple):
    count: jax.Array
    hyperparams: dict


class ClipByGlobalNormState(NamedTuple):
    """``global_norm``: the norm before clipping; ``clip_factor``: 1.0 if unclipped."""

    global_norm: jax.Array
    clip_factor: jax.Array
    hyperparams: dict


class AdaptiveGradClipState(NamedTuple):
    count: jax.Array
    hyperparams: dict


def sum_of_squares(x: jax.Array) -> jax.Array:
    """``sum(x^2)`` accumulated in at least float32, in one fast loop (``_reduce``)."""
    return sums_of_squares(x)[0]


def global_norm(tree: Any) -> jax.Array:
    """``sqrt(sum over leaves of sum(x^2))``, accumulated in at least float32.

    The norm that :func:`clip_by_global_norm` clips (Pascanu, Mikolov & Bengio,
    "On the difficulty of training recurrent neural networks", ICML 2013).

    >>> import adam_tx, jax.numpy as jnp
    >>> float(adam_tx.global_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
    5.0
    """
    leaves = jax.tree.leaves(tree)
    total = sum(
        (sum_of_squares(x).astype(hyper_dtype()) for x in leaves),
        jnp.zeros([], hyper_dtype()),
    )
    return jnp.sqrt(total)


def clip_factor(norm: jax.Array, max_norm: jax.Array) -> jax.Array:
    """``min(1, max_norm / norm)``: 1 when the norm is within bounds.

    (torch's ``clip_grad_norm_`` uses ``max_norm / (norm + 1e-6)``, clamped to 1.)
    """
    return jnp.where(norm < max_norm, jnp.ones_like(norm), max_norm / norm)


def clip(max_delta=1.0):
    """Clip every element of the updates to ``[-max_delta, max_delta]``.

    Formula: ``u <- min(max(u, -max_delta), max_delta)``, elementwise.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.clip(1.0)
    >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(jnp.zeros(2)))[0].tolist()
    [-1.0, 0.5]
    """
    check_positive("max_delta", max_delta)

    def math(c, g):
        d = c.hp["max_delta"]
        return jnp.clip(g, -d, d), ()

    return counted_transform(
        "clip", ClipState, (hyperparams.Hyper("max_delta", max_delta),), {}, math
    )


def clip_by_global_norm(max_norm=1.0):
    """Scale updates by ``min(1, max_norm / ||g||)``, ``||g||`` the global L2 norm.

    ``||g|| = sqrt(sum_leaves sum(g^2))`` (Pascanu et al., "On the difficulty of
    training recurrent neural networks", 2013). The pre-clip norm and the factor
    applied are kept in the state (``global_norm``, ``clip_factor``).

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
        return hp, norm, clip_factor(norm, hp["max_norm"])

    def leaf(ctx, x, entries, p, info):
        x = x.astype(compute_dtype(x.dtype))
        return x * ctx[2].astype(x.dtype), (), ()

    def finish(state, ctx, fields, partials):
        hp, norm, factor = ctx
        return ClipByGlobalNormState(norm, factor, hp)

    piece = _fusion.Piece(
        "clip_by_global_norm",
        init,
        prepare,
        leaf,
        finish,
        (),
        reduce_input,
        scales_by=lambda ctx: ctx[2],
        squares_factor=lambda: jnp.ones([], hyper_dtype()),
    )
    return _fusion.transformation(piece)


def unitwise_norm(x: jax.Array) -> jax.Array:
    """L2 norm of each unit, broadcast to ``x.shape`` (Brock et al. 2021).

    Units: the whole array for rank <= 1, axis 0 for rank 2-3 (inputs of a
    linear layer), axes (0, 1, 2) for rank 4 (HWIO convolutions), (0, 1, 2, 3)
    for rank 5; optax's convention.
    """
    axes = {0: None, 1: None, 2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}
    if x.ndim not in axes:
        raise ValueError(f"adaptive_grad_clip supports ranks 0-5, got shape {x.shape}")
    sq = jnp.sum(x * x, axis=axes[x.ndim], keepdims=True)
    return jnp.broadcast_to(jnp.sqrt(sq), x.shape)


def adaptive_grad_clip(clipping=0.01, eps=1e-3):
    """Clip each unit's gradient to ``clipping * max(||p_unit||, eps)``.

    ``g <- g * max_norm / ||g_unit||`` where ``||g_unit|| > max_norm`` (Brock et
    al., "High-Performance Large-Scale Image Recognition Without Normalization",
    2021); units as in :func:`unitwise_norm`. Needs ``params``.

    Args:
      clipping: the allowed ratio of gradient to parameter norm (> 0).
      eps: floor on the parameter norm, so zero-initialised weights can move.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.adaptive_grad_clip(0.1)
    >>> p = jnp.array([3.0, 4.0])
    >>> tx.update(jnp.array([1.0, 0.0]), tx.init(p), p)[0].tolist()
    [0.5, 0.0]
    """
    check_positive("clipping", clipping)
    check_range("eps", eps, 0.0, None, low_inclusive=False)

    def math(c, g):
        g_norm = unitwise_norm(g)
        max_norm = c.hp["clipping"] * jnp.maximum(
            unitwise_norm(c.param.astype(g.dtype)), c.hp["eps"]
        )
        clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6))
        return jnp.where(g_norm < max_norm, g, clipped), ()

    return counted_transform(
        "adaptive_grad_clip",
        AdaptiveGradClipState,
        (hyperparams.Hyper("clipping", clipping), hyperparams.Hyper("eps", eps)),
        {},
        math,
        needs_params=True,
    )
