"""Bias correction of exponential moving averages started at zero.

An EMA with decay ``b`` started at 0 has expectation ``(1 - b^t) E[x]`` after t
steps; dividing by ``1 - b^t`` removes that bias (Kingma & Ba 2015, section 3).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine import fusion
from adam_tx._engine.counting import safe_increment, zero_count
from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.validate import check_decay


def correction(one_minus_decay: jax.Array, count: jax.Array) -> jax.Array:
    """``1 - b**t`` from ``1 - b``, accurately: ``-expm1(t * log1p(-(1 - b)))``.

    Written this way, float32 gives ``1 - 0.999**1`` to within an ulp, where
    ``1 - float32(0.999)**1`` is 1.3e-5 off; torch.optim computes this in double.
    """
    c = jnp.asarray(one_minus_decay, hyper_dtype())
    return -jnp.expm1(count.astype(hyper_dtype()) * jnp.log1p(-c))


def debias(moment: jax.Array, corr: jax.Array) -> jax.Array:
    """``m_hat = m / (1 - b^t)`` given ``corr = 1 - b^t``."""
    return moment / corr.astype(moment.dtype)


class _StepCtx(NamedTuple):
    """One step of :func:`bias_correction`: the new count, the rates in force
    and the correction ``1 - decay**t``."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hp: dict[str, jax.Array]
    correction: jax.Array


class BiasCorrectionState(NamedTuple):
    """State of :func:`bias_correction`: the step count and the decay rate."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hyperparams: dict


hyperparams.register_ranges(BiasCorrectionState, decay=hyperparams.DECAY)


def bias_correction(decay: float = 0.9) -> optax.GradientTransformationExtraArgs:
    """Divide incoming updates by ``1 - decay**t``, t counted by this transform.

    Together with a non-debiased EMA this gives a debiased one:
    ``chain(optax.ema(0.9, debias=False), bias_correction(0.9))``.
    :func:`adam_tx.scale_by_adam` applies the same :func:`correction` to its
    moments (``bias_correction=True``).

    Args:
      decay: the EMA's decay rate in [0, 1), a float or a schedule.

    Returns:
      An ``optax.GradientTransformation``.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.bias_correction(0.5)
    >>> u, s = tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    >>> u.tolist()  # 1 / (1 - 0.5)
    [2.0, 2.0]
    """
    check_decay("decay", decay)
    hypers = (hyperparams.Hyper("decay", decay, complement=True),)

    def init(params):
        del params
        return BiasCorrectionState(zero_count(), hyperparams.init_values(hypers))

    def prepare(state, params, reduced):
        hp = hyperparams.current_values(hypers, state.hyperparams, state.count)
        count = safe_increment(state.count)
        return _StepCtx(count, hp, correction(hp["1-decay"], count))

    def leaf(ctx, x, entries, p, info):
        return debias(x, ctx.correction), (), ()

    def finish(state, ctx, fields, partials):
        return BiasCorrectionState(ctx.count, ctx.hp)

    return fusion.transformation(
        fusion.Piece(
            name="bias_correction", init=init, prepare=prepare, leaf=leaf, finish=finish
        )
    )
