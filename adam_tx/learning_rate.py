"""Scaling by the learning rate (or any schedule), the last step of a chain.

``u <- -lr_t u``: optax's sign convention, so that ``optax.apply_updates``
(``p + u``) descends.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine import fusion
from adam_tx._engine.stateful import counted_transform
from adam_tx._engine.stateless import accepting_no_state
from adam_tx._engine.typing import ScalarOrSchedule, Schedule
from adam_tx._engine.validate import check_callable, check_nonnegative


class ScaleByLearningRateState(NamedTuple):
    """State of :func:`scale_by_learning_rate`: the step count and the rate in force."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hyperparams: dict


hyperparams.register_ranges(
    ScaleByLearningRateState, learning_rate=hyperparams.NONNEGATIVE
)


class ScaleByScheduleState(NamedTuple):
    """State of :func:`scale_by_schedule`: the step count and the scale in force."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hyperparams: dict


def identity() -> optax.GradientTransformationExtraArgs:
    """The updates unchanged, with ``optax.EmptyState()``: ``optax.identity()``
    as a piece that fuses with its neighbours.

    ``u <- u``. Where optax's chains hold an ``identity()`` (``sgd`` without
    momentum, ``scale_by_learning_rate(None)``), ours do too, so that
    ``state[i]`` is the same member in both.

    >>> import jax.numpy as jnp
    >>> tx = identity()
    >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    (Array([1., 1.], dtype=float32), EmptyState())
    """

    def leaf(ctx, x, entries, p, info):
        return x, (), ()

    piece = fusion.Piece(
        name="identity",
        init=lambda params: optax.EmptyState(),
        prepare=lambda state, params, reduced: None,
        leaf=leaf,
        finish=lambda state, ctx, fields, partials: optax.EmptyState(),
        scales_by=lambda ctx: jnp.ones([]),
    )
    return fusion.transformation(piece)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule | None = None, *, flip_sign: bool = True
) -> optax.GradientTransformationExtraArgs:
    """Multiply updates by ``-learning_rate`` (``+`` with ``flip_sign=False``).

    The learning rate in force is kept in the state as ``learning_rate``, so it
    can be logged (:func:`adam_tx.get_hyperparams`) or changed between steps
    without recompiling (:func:`adam_tx.set_hyperparams`).

    Args:
      learning_rate: a float >= 0 or a schedule of the step count (the count of
        this transform, starting at 0 for the first update); None: no scaling
        (:func:`identity`), as in optax.
      flip_sign: negate, so that adding the update to the parameters descends.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_learning_rate(0.1)
    >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0].tolist()
    [-0.10000000149011612, -0.10000000149011612]
    """
    if learning_rate is None:
        return identity()
    check_nonnegative("learning_rate", learning_rate)
    sign = -1 if flip_sign else 1

    def math(c, g):
        return sign * c.hp["learning_rate"] * g, ()

    return accepting_no_state(
        counted_transform(
            "scale_by_learning_rate",
            ScaleByLearningRateState,
            (hyperparams.Hyper("learning_rate", learning_rate),),
            {},
            math,
        )
    )


def scale_by_schedule(step_size_fn: Schedule) -> optax.GradientTransformationExtraArgs:
    """Multiply updates by ``step_size_fn(count)`` (no sign flip), as optax does.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_schedule(lambda t: 2.0 ** t)
    >>> tx.update(jnp.ones(1), tx.init(jnp.ones(1)))[0].tolist()
    [1.0]

    Args:
      step_size_fn: a schedule ``count -> scale``; updates are multiplied by it.
    """
    check_callable("step_size_fn", step_size_fn)

    def math(c, g):
        return c.hp["scale"] * g, ()

    return counted_transform(
        "scale_by_schedule",
        ScaleByScheduleState,
        (hyperparams.Hyper("scale", step_size_fn),),
        {},
        math,
    )
