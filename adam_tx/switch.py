"""Switching optimizers mid-run: ``first`` until ``at_step``, then ``second``.

Both inner states live in the switch state and the choice is a
``jax.lax.cond`` on the step count, so one compiled step serves the whole run;
each inner optimizer only advances on its own steps (``second`` starts from
its fresh ``init`` state at ``at_step``).

Optionally (``swats=True``), the learning rate of ``second`` is taken from the
effective step size of ``first`` (Keskar & Socher, "Improving Generalization
Performance by Switching from Adam to SGD", 2017). With ``p_k`` the update
``first`` produced and ``g_k`` the gradient, the step size that SGD along
``g_k`` would need to move as far along ``p_k`` is the projection

    gamma_k = (p_k . p_k) / (-p_k . g_k)

which is averaged and bias-corrected like an Adam moment,

    lambda_k = beta lambda_{k-1} + (1 - beta) gamma_k,
    Lambda_k = lambda_k / (1 - beta^k).

At ``at_step``, ``second``'s ``learning_rate`` hyperparameter is set to
``(1 - m) * Lambda`` where ``m`` is ``second``'s momentum (the ``decay`` of
its :func:`adam_tx.trace`, 0 without one): the paper's SGD step is
``p <- p - (1 - m) Lambda v`` with ``v = m v + g``. (The paper also chooses
the switch time from ``|Lambda_k - gamma_k| < eps``; here the time is fixed.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx._engine import placement
from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.placement import placed_init
from adam_tx._engine.validate import check_range
from adam_tx._engine.wrapper_args import check_bool, check_int, check_transform
from adam_tx.baselines import TraceState
from adam_tx.hyperparams import get_hyperparams, set_hyperparams


class SwitchState(NamedTuple):
    """``count``: steps taken; ``first``/``second``: the inner states;
    ``swats_lr``: the running (uncorrected) average ``lambda`` of ``gamma_k``;
    ``at_step``: the step at which ``second`` takes over (kept in the state so
    that :func:`adam_tx.stats` reports the optimizer in force)."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    first: Any
    second: Any
    swats_lr: jax.Array
    at_step: jax.Array


def second_in_force(state: SwitchState) -> jax.Array:
    """Whether ``second`` took the last step (before any step: will take the
    next one): ``count > at_step`` or ``at_step == 0``."""
    return (state.count > state.at_step) | (state.at_step == 0)


def projected_step_size(update: Any, grad: Any) -> jax.Array:
    """``gamma = (p . p) / (-p . g)`` over all leaves (0 when ``p . g >= 0``).

    >>> import jax.numpy as jnp
    >>> g = jnp.array([1.0, 1.0])
    >>> round(float(projected_step_size(-0.2 * g, g)), 6)
    0.2
    """
    pp = sum(jnp.vdot(p, p).astype(hyper_dtype()) for p in jax.tree.leaves(update))
    pg = sum(
        jnp.vdot(p, g).astype(hyper_dtype())
        for p, g in zip(jax.tree.leaves(update), jax.tree.leaves(grad))
    )
    return jnp.where(pg < 0, pp / jnp.where(pg < 0, -pg, 1), 0.0)


def switch(
    first: optax.GradientTransformation,
    second: optax.GradientTransformation,
    at_step: int,
    *,
    swats: bool = False,
    swats_beta: float = 0.999,
) -> optax.GradientTransformationExtraArgs:
    """Run ``first`` for steps ``0 .. at_step - 1``, ``second`` from ``at_step``.

    Args:
      first, second: the optimizers (``GradientTransformation``). With
        ``swats=True``, ``second`` must hold a ``learning_rate`` hyperparameter
        built from a float: a schedule is re-evaluated every step and would
        override the SWATS value.
      at_step: the step (an integer in [0, 2**31 - 1]) at which ``second``
        takes over.
      swats: set ``second``'s learning rate from ``first``'s effective step
        size at the switch (see the module docstring).
      swats_beta: the averaging factor ``beta`` of ``gamma_k``, in [0, 1).

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = switch(adam_tx.adam(0.1), adam_tx.sgd(0.5), at_step=1)
    >>> p = jnp.array([1.0]); s = tx.init(p)
    >>> u, s = tx.update(jnp.array([4.0]), s, p); round(u.tolist()[0], 6)  # Adam
    -0.1
    >>> u, s = tx.update(jnp.array([4.0]), s, p); u.tolist()  # SGD: -lr * g
    [-2.0]

    References:
      Keskar & Socher, "Improving Generalization Performance by Switching
      from Adam to SGD", arXiv:1712.07628, 2017.
    """
    first = optax.with_extra_args_support(check_transform("first", first))
    second = optax.with_extra_args_support(check_transform("second", second))
    at_step = check_int("at_step", at_step, 0)
    swats = check_bool("swats", swats)
    if callable(swats_beta):
        raise TypeError(f"swats_beta must be a number, got the callable {swats_beta!r}")
    check_range("swats_beta", swats_beta, 0.0, 1.0, high_inclusive=False)

    def init(params):
        second_state = second.init(params)
        if swats and "learning_rate" not in get_hyperparams(second_state):
            raise ValueError(
                "swats=True needs `second` to hold a 'learning_rate' hyperparameter "
                "(an adam_tx optimizer built with a float learning rate)"
            )
        return SwitchState(
            jnp.zeros([], jnp.int32),
            first.init(params),
            second_state,
            jnp.zeros([], hyper_dtype()),
            jnp.asarray(at_step, jnp.int32),
        )

    def run_first(updates, state, params, extra):
        new_updates, first_state = first.update(updates, state.first, params, **extra)
        lam = state.swats_lr
        if swats:
            gamma = projected_step_size(new_updates, updates)
            lam = swats_beta * lam + (1 - swats_beta) * gamma
        return new_updates, state._replace(first=first_state, swats_lr=lam)

    def run_second(updates, state, params, extra):
        second_state = state.second
        if swats:
            second_state = jax.lax.cond(
                state.count == at_step,
                lambda s: _set_swats_lr(s, state.swats_lr, at_step, swats_beta),
                lambda s: s,
                second_state,
            )
        new_updates, second_state = second.update(
            updates, second_state, params, **extra
        )
        return new_updates, state._replace(second=second_state)

    def update(updates, state, params=None, **extra):
        branch = lambda run: (
            lambda: _typed_like(run(updates, state, params, extra), (updates, state))
        )
        new_updates, new_state = jax.lax.cond(
            state.count < at_step, branch(run_first), branch(run_second)
        )
        return new_updates, new_state._replace(count=optax.safe_increment(state.count))

    return optax.GradientTransformationExtraArgs(placed_init(init), update)


def _typed_like(out: Any, like: Any) -> Any:
    """``out`` with each leaf's explicit-axis sharding made that of ``like``'s
    leaf: ``lax.cond`` needs both branches to return one type, and an
    optimizer's updates come out sharded like its moments (ZeRO-1: split over
    the data axis) while a stateless one's are sharded like the gradients."""

    def retype(x, want):
        want_sharding = placement.explicit_sharding(want)
        if want_sharding is None or jax.typeof(x).sharding == want_sharding:
            return x
        return jax.sharding.reshard(x, want_sharding)

    return jax.tree.map(retype, out, like)


def _momentum(state: Any) -> Any:
    """The ``decay`` of the first :class:`TraceState` in ``state`` (else 0)."""
    traces = [
        n
        for n in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, TraceState))
        if isinstance(n, TraceState)
    ]
    return traces[0].hyperparams["decay"] if traces else 0.0


def _set_swats_lr(second_state, lam, steps, beta):
    corrected = lam / (1 - jnp.asarray(beta, hyper_dtype()) ** max(steps, 1))
    momentum = _momentum(second_state)
    return set_hyperparams(second_state, learning_rate=(1 - momentum) * corrected)
