"""The loss-spike guard: skip a step whose loss or gradient norm jumps far
above its running mean, as OLMo-core's ``SkipStepOptimizer`` and MaxText's
``skip_step_on_spikes`` do:

    spike_t = n_t >= warmup_steps and (loss_t > k mean_loss or ||g_t|| > k mean_norm)
    params, inner state <- unchanged (updates = 0)     if spike_t or not finite
    mean_x = EMA of x over the accepted steps (decay b, bias-corrected)

A skipped step leaves the running means alone, so one spike does not raise
the bar for the next. The loss arrives as an extra argument,
``update(grads, state, params, loss=loss)`` (``optax.GradientTransformationExtraArgs``);
without it only the gradient norm is watched. The guard assumes a positive
loss (cross-entropy): ``k mean`` is no bar for a negative mean.

When the inner transform is made of adam_tx pieces the norm is a reduction of
the fused pass, shared with clipping's, and the selection happens inside the
per-leaf loop, exactly as for :func:`adam_tx.skip_nonfinite`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx._engine import fusion
from adam_tx._engine.counting import INT32_MAX
from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.placement import placed_init
from adam_tx._engine.validate import check_value
from adam_tx._engine.wrapper_args import check_int, check_transform
from adam_tx.clipping import sum_of_squares
from adam_tx.nonfinite import (
    GUARD_STATES,
    Bookkeeping,
    count_skips,
    enclosing_ok,
    guard_piece,
    select,
    select_state,
    sum_of_squares_tree,
)


class SkipSpikesState(NamedTuple):
    """State of :func:`skip_spikes`.

    ``accepted``: steps that entered the running means; ``loss_ema`` and
    ``norm_ema``: their EMAs, not yet divided by ``1 - decay^accepted``;
    ``total`` and ``consecutive``: skipped steps (spikes or non-finite), all
    and in a row; ``loss`` and ``grad_norm``: the last step's. The counters do
    not move on a step an enclosing guard skipped.
    """

    accepted: jax.Array
    loss_ema: jax.Array
    norm_ema: jax.Array
    total: jax.Array
    consecutive: jax.Array
    loss: jax.Array
    grad_norm: jax.Array
    inner_state: Any


GUARD_STATES.append(SkipSpikesState)


class _Rule(NamedTuple):
    factor: float
    decay: float
    warmup_steps: int
    max_consecutive: int


def running_mean(ema: jax.Array, n: jax.Array, decay: float) -> jax.Array:
    """``ema / (1 - decay^n)``, the bias-corrected mean (``inf`` for ``n = 0``)."""
    n = n.astype(ema.dtype)
    return ema / -jnp.expm1(n * jnp.log(jnp.asarray(decay, ema.dtype)))


def accept(state: SkipSpikesState, loss, norm: jax.Array, rule: _Rule) -> jax.Array:
    """Whether this step is taken: finite, and no spike once warmed up (or
    ``max_consecutive`` steps in a row were already refused)."""
    ok = jnp.isfinite(norm)
    big = norm > rule.factor * running_mean(state.norm_ema, state.accepted, rule.decay)
    if loss is not None:
        ok = ok & jnp.isfinite(loss)
        mean_loss = running_mean(state.loss_ema, state.accepted, rule.decay)
        big = big | (loss > rule.factor * mean_loss)
    watching = (state.accepted >= rule.warmup_steps) & (
        state.consecutive < rule.max_consecutive
    )
    return ok & ~(watching & big)


def advance(state, loss, norm, ok, outer_ok, rule: _Rule) -> SkipSpikesState:
    """The guard's own fields after a step (``ok``: this guard took it)."""
    seen = loss if loss is not None else jnp.zeros([], hyper_dtype())
    # After max_consecutive refusals the level moved: the means restart here.
    restart = ok & (state.consecutive >= rule.max_consecutive)
    keep = lambda old: jnp.where(restart, jnp.zeros_like(old), old)  # noqa: E731
    ema = lambda old, x: jnp.where(  # noqa: E731
        ok, rule.decay * keep(old) + (1 - rule.decay) * x, old
    )
    total, consecutive = count_skips(state.total, state.consecutive, ok)
    before = keep(state.accepted)
    accepted = jnp.where(ok & (before < INT32_MAX), before + 1, before)
    new = (
        accepted.astype(jnp.int32),
        ema(state.loss_ema, seen),
        ema(state.norm_ema, norm),
        total,
        consecutive,
        seen,
        norm,
    )
    if outer_ok is not True:  # skipped outside: not this guard's step
        new = select(outer_ok, new, state[:7])
    return SkipSpikesState(*new, state.inner_state)


def _as_loss(loss: Any) -> jax.Array | None:
    if loss is None:
        return None
    loss = jnp.asarray(loss)
    if loss.shape != ():
        raise ValueError(f"loss must be a scalar, got an array of shape {loss.shape}")
    return loss.astype(hyper_dtype())


def skip_spikes(
    inner: optax.GradientTransformation,
    factor: float = 6.0,
    *,
    decay: float = 0.99,
    warmup_steps: int = 100,
    max_consecutive: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Skip steps whose loss or gradient norm exceeds ``factor`` times its
    running mean (module docstring); ``update(grads, state, params, loss=...)``.

    Args:
      inner: the optimizer to guard (fused with the guard when it is made of
        adam_tx pieces).
      factor: ``k`` (> 1): a step is a spike above ``k`` times the mean.
      decay: decay of the running means' EMA, in (0, 1) (0.99: about the last
        100 accepted steps).
      warmup_steps: accepted steps before the guard starts judging (>= 0).
      max_consecutive: after this many skipped steps in a row the next step
        is taken whatever its loss (the level itself moved, e.g. new data) and
        the running means restart from it, ``warmup_steps`` included; None:
        never. Non-finite steps are always skipped.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.skip_spikes(adam_tx.sgd(1.0), 3.0, warmup_steps=2)
    >>> p = jnp.zeros(1); s = opt.init(p)
    >>> for loss in (1.0, 1.2, 10.0, 1.1):
    ...     u, s = opt.update(jnp.array([1.0]), s, p, loss=jnp.asarray(loss))
    ...     print(u.tolist(), int(s.total))
    [-1.0] 0
    [-1.0] 0
    [0.0] 1
    [-1.0] 1

    References:
      Groeneveld et al., "OLMo: Accelerating the Science of Language Models",
      ACL 2024 (OLMo-core's skip-step optimizer); MaxText's
      ``skip_step_on_spikes``.
    """
    inner = check_transform("inner", inner)
    for name, value in (("factor", factor), ("decay", decay)):
        if callable(value):
            raise TypeError(f"{name} must be a number, got the callable {value!r}")
    check_value("factor", factor, 1.0, None, low_inclusive=False)
    check_value("decay", decay, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    if max_consecutive is not None:
        max_consecutive = check_int("max_consecutive", max_consecutive, 1)
    rule = _Rule(
        float(factor),
        float(decay),
        warmup_steps,
        INT32_MAX if max_consecutive is None else max_consecutive,
    )

    def init(params):
        # Distinct arrays per field: a donated state may not alias a buffer twice.
        zeros = lambda dtype: jnp.zeros([], dtype)  # noqa: E731
        return SkipSpikesState(
            zeros(jnp.int32),
            zeros(hyper_dtype()),
            zeros(hyper_dtype()),
            zeros(jnp.int32),
            zeros(jnp.int32),
            zeros(hyper_dtype()),
            zeros(hyper_dtype()),
            inner.init(params),
        )

    init = placed_init(init)
    program = fusion.program_of(inner)

    def head(state, loss, set_ok):
        def prepare(state, params, reduced):
            norm = jnp.sqrt(reduced[0])
            # ok reads the sum over leaves through sqrt, so XLA computes it once
            # rather than in every leaf's loop (adam_tx._engine.xla.once).
            ok = accept(state, loss, norm, rule)
            set_ok(ok)
            return loss, norm, ok

        def finish(state, ctx, fields, partials, outer_ok):
            loss_, norm, ok = ctx
            return advance(state, loss_, norm, ok, outer_ok, rule)

        return fusion.Piece(
            name="skip_spikes",
            init=init,
            prepare=prepare,
            leaf=lambda ctx, x, entries, p, info: (x, (), ()),
            finish=Bookkeeping(finish),
            reduce_input=lambda x: (sum_of_squares(x).astype(hyper_dtype()),),
            scales_by=lambda ctx: jnp.ones([], hyper_dtype()),
            squares_factor=lambda: jnp.ones([], hyper_dtype()),
        )

    def fused(updates, state, params, loss):
        def expand(state):
            flag: list[jax.Array] = []
            return head(state, loss, flag.append), lambda p: guard_piece(
                p, lambda: flag[-1]
            )

        wrapper = fusion.Wrapper(
            "skip_spikes",
            program,
            expand,
            lambda s: s.inner_state,
            lambda s, inner_state: s._replace(inner_state=inner_state),
        )
        return fusion.run_program(wrapper, state, updates, params)

    def plain(updates, state, params, loss, extra_args):
        norm = jnp.sqrt(sum_of_squares_tree(updates))
        ok = accept(state, loss, norm, rule)
        tx = optax.with_extra_args_support(inner)
        new_updates, new_inner = tx.update(
            updates, state.inner_state, params, **extra_args
        )
        new_updates = jax.tree.map(
            lambda u: jnp.where(ok, u, jnp.zeros_like(u)), new_updates
        )
        new_state = advance(state, loss, norm, ok, enclosing_ok(), rule)
        inner_state = select_state(ok, new_inner, state.inner_state)
        return new_updates, new_state._replace(inner_state=inner_state)

    def update(updates, state, params=None, *, loss=None, **extra_args):
        loss = _as_loss(loss)
        if program is not None:
            return fused(updates, state, params, loss)
        return plain(updates, state, params, loss, extra_args)

    return optax.GradientTransformationExtraArgs(init, update)
