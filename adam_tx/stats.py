"""Step statistics: what the optimizer did, read from its state.

:func:`track_stats`, put last in a chain, records the norm of the final updates
and of the parameters. On XLA:CPU both are summed in one read-only reduction
per leaf that runs before the fused update pass: it reads the gradient, the
state and the parameter, recomputes the update in registers (``reduce_input``
evaluates the chain's leaf functions) and writes nothing, so no update is
stored and the donated parameters and moments are still updated in place. On
other backends the sums are partials of the update pass itself, which XLA
fuses into the update loop (``fusion.reductions_in_pass``). BENCHMARKS.md,
"Cost of step statistics", has the figures.

:func:`stats` gathers named float32 scalars from anywhere in an optimizer
state tree (inside ``chain``, ``optax.named_chain``, ``optax.masked``,
``optax.MultiSteps``, :func:`adam_tx.skip_nonfinite`,
:func:`adam_tx.loss_scaling`), finding each by the type of the state that
holds it:

==================  ==========================================================
key                 supplied by
==================  ==========================================================
step                the first adam_tx state with a ``count`` (e.g.
                    ``scale_by_adam``): steps taken; skipped steps not counted
learning_rate       the ``learning_rate`` hyperparameter in force
                    (``scale_by_learning_rate``; schedules: the current value)
b1                  the ``b1`` hyperparameter in force (``scale_by_adam`` ...)
grad_norm           ``clip_by_global_norm`` (norm before clipping), else the
                    gradient norm measured by ``loss_scaling`` (unscaled), else
                    by ``skip_nonfinite``
clip_factor         ``clip_by_global_norm`` (``min(1, max_norm / norm)``);
                    1.0 when there is no clipping
update_norm         ``track_stats``: global norm of the final updates
param_norm          ``track_stats``: global norm of the parameters before the
                    update
update_param_ratio  ``update_norm / param_norm`` (0 while both are 0)
norms_step          ``track_stats``: the step the three norms above were
                    measured at (the current step unless ``every`` > 1)
skipped_steps       ``skip_nonfinite`` (total) plus ``loss_scaling`` (overflows)
nonfinite_failed    ``skip_nonfinite(max_consecutive=...)``: 1.0 once that many
                    steps in a row were skipped, else 0.0
loss_scale          ``loss_scaling``: the current scale
==================  ==========================================================

A key is present only when its supplier is in the state (``clip_factor``
always is). Under :func:`adam_tx.switch`, the keys that both optimizers supply
are reported from the one in force (the one that took the last step); keys
that only one of them supplies are left out.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx._engine import fusion
from adam_tx._engine.counting import safe_increment, zero_count
from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.reduce import plain_sums_of_squares, sums_of_squares
from adam_tx._engine.wrapper_args import check_int
from adam_tx.clipping import ClipByGlobalNormState
from adam_tx.hyperparams import get_hyperparams
from adam_tx.loss_scale import LossScaleState
from adam_tx.nonfinite import SkipNonfiniteState
from adam_tx.switch import SwitchState, second_in_force


class TrackStatsState(NamedTuple):
    """State of :func:`track_stats`: norms measured at step ``norms_step``.

    ``count``: steps taken (saturating at the int32 maximum); ``countdown``:
    steps left before the next measurement (0: the next step measures), kept
    apart from ``count`` so that measuring goes on after ``count`` saturates.
    """

    update_norm: jax.Array
    param_norm: jax.Array
    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    norms_step: jax.Array
    countdown: jax.Array


def track_stats(every: int = 1) -> optax.GradientTransformationExtraArgs:
    """Record ``||u||`` and ``||p||`` (global L2 norms); updates pass unchanged.

    Formula: ``||x|| = sqrt(sum over leaves of sum(x^2))``.

    Put it last in :func:`adam_tx.chain`, so that ``u`` is the step added to the
    parameters and ``p`` the parameters it is added to. Needs ``params``.

    Cost. On GPU and TPU the two sums are partials of the fused update pass,
    which XLA can fuse into the update loop as extra outputs (not yet measured
    on a GPU). XLA:CPU cannot fuse a reduction into the loop that writes the
    parameters, so there they are one read-only pass per leaf before the update
    (+48% to +79% step time at 16M parameters; BENCHMARKS.md). ``every`` bounds
    that cost: the norms are measured on steps 1, 1 + every, 1 + 2 * every, ...
    (the steps a loop logging at ``i % every == 0`` reads, ``i`` counting from
    0) and kept in between, and ``adam_tx.stats`` reports the step they come
    from as ``norms_step``. The other steps skip the pass (a ``lax.cond``;
    under ``vmap`` with a batched step count both branches run): +0% to +3%
    at ``every=10``.

    Args:
      every: measure the norms once every this many steps (an integer in
        [1, 2**31 - 1]).

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.chain(adam_tx.sgd(0.5), adam_tx.track_stats())
    >>> p = jnp.array([3.0, 4.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0, 0.0]), s, p)
    >>> {k: float(v) for k, v in adam_tx.stats(s).items() if "norm" in k}
    {'update_norm': 1.0, 'param_norm': 5.0, 'norms_step': 1.0}
    """
    every = check_int("every", every, 1)

    def init(params):
        del params
        zero = lambda dtype: jnp.zeros([], dtype)
        return TrackStatsState(
            zero(jnp.float32),
            zero(jnp.float32),
            zero_count(),
            zero_count(),
            zero_count(),
        )

    def due(state):
        return state.countdown == 0

    def reduce_input(u, p):
        return tuple(s.astype(hyper_dtype()) for s in sums_of_squares(u, p))

    def reduce_in_pass(u, p):
        # Plain sums, which XLA:GPU/TPU fuse into the update loop as outputs.
        return tuple(s.astype(hyper_dtype()) for s in plain_sums_of_squares(u, p))

    def prepare(state, params, reduced):
        return reduced

    def leaf(ctx, x, entries, p, info):
        return x, (), ()

    def finish(state, reduced, fields, partials):
        # The sums come from the pre-pass (``reduced``) or, on backends that
        # fuse them into the update loop, from this pass (``partials``).
        sums = partials if reduced is None else reduced
        u2, p2 = sums or (jnp.zeros([], hyper_dtype()),) * 2
        count = safe_increment(state.count)
        now = due(state)
        keep = lambda new, old: jnp.where(now, new, old).astype(old.dtype)
        countdown = jnp.where(now, every - 1, state.countdown - 1)
        return TrackStatsState(
            keep(jnp.sqrt(u2), state.update_norm),
            keep(jnp.sqrt(p2), state.param_norm),
            count,
            keep(count, state.norms_step),
            countdown.astype(state.countdown.dtype),
        )

    piece = fusion.Piece(
        name="track_stats",
        init=init,
        prepare=prepare,
        leaf=leaf,
        finish=finish,
        reduce_input=reduce_input,
        needs_params=True,
        reduce_params=True,
        reduce_when=None if every == 1 else due,
        reduce_in_pass=reduce_in_pass,
    )
    return fusion.transformation(piece)


_TYPES = (TrackStatsState, ClipByGlobalNormState, SkipNonfiniteState, LossScaleState)


def _has_count(node: Any) -> bool:
    fields = getattr(node, "_fields", ())
    return isinstance(node, tuple) and "count" in fields and "hyperparams" in fields


def _found(opt_state: Any) -> list[Any]:
    """The states of the known types in the tree, outermost first."""
    found = []

    def visit(node: Any) -> bool:
        if isinstance(node, _TYPES) or _has_count(node):
            found.append(node)
        # Wrappers hold further states: keep descending into them.
        return isinstance(node, _TYPES) and not hasattr(node, "inner_state")

    jax.tree.leaves(opt_state, is_leaf=visit)
    return found


def _outermost_switch(opt_state: Any) -> SwitchState | None:
    is_switch = lambda n: isinstance(n, SwitchState)
    return next(
        (n for n in jax.tree.leaves(opt_state, is_leaf=is_switch) if is_switch(n)), None
    )


def _with_switch_as(opt_state: Any, switch: SwitchState, sub: Any) -> Any:
    """``opt_state`` with the node ``switch`` replaced by its sub-state ``sub``."""
    is_switch = lambda n: isinstance(n, SwitchState)
    return jax.tree.map(
        lambda n: sub if n is switch else n, opt_state, is_leaf=is_switch
    )


def stats(opt_state: Any) -> dict[str, jax.Array]:
    """Named float32 scalars describing the last step (module docstring: keys).

    Norms are global L2 norms, ``||x|| = sqrt(sum over leaves of sum(x^2))``.

    Works on concrete states and under ``jit``/``scan``/``vmap`` (with a
    batched state, each value is batched too).

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adam(0.1))
    >>> p = jnp.zeros(2); s = opt.init(p)
    >>> _, s = opt.update(jnp.array([3.0, 4.0]), s, p)
    >>> {k: round(float(v), 3) for k, v in adam_tx.stats(s).items()}
    {'step': 1.0, 'learning_rate': 0.1, 'b1': 0.9, 'grad_norm': 5.0, 'clip_factor': 0.2}

    Args:
      opt_state: an optimizer state (any pytree of states).
    """
    switch = _outermost_switch(opt_state)
    if switch is not None:
        before = stats(_with_switch_as(opt_state, switch, switch.first))
        after = stats(_with_switch_as(opt_state, switch, switch.second))
        second = second_in_force(switch)
        return {
            k: jnp.where(second, after[k], v) for k, v in before.items() if k in after
        }
    nodes = _found(opt_state)
    first = lambda cls: next((n for n in nodes if isinstance(n, cls)), None)
    out: dict[str, jax.Array] = {}
    counted = next((n for n in nodes if _has_count(n)), None)
    if counted is not None:
        out["step"] = counted.count
    hp = get_hyperparams(opt_state)
    for name in ("learning_rate", "b1"):
        if name in hp:
            out[name] = hp[name]
    clip = first(ClipByGlobalNormState)
    guards = [n for n in nodes if isinstance(n, (LossScaleState, SkipNonfiniteState))]
    # A loss scale measures unscaled gradients wherever it sits; a guard
    # outside it would measure scaled ones.
    measured = first(LossScaleState) or first(SkipNonfiniteState)
    if clip is not None:
        out["grad_norm"] = clip.global_norm
    elif measured is not None:
        out["grad_norm"] = measured.grad_norm
    out["clip_factor"] = clip.clip_factor if clip is not None else jnp.ones([])
    tracked = first(TrackStatsState)
    if tracked is not None:
        out["update_norm"] = tracked.update_norm
        out["param_norm"] = tracked.param_norm
        p_norm = tracked.param_norm
        # 0 / 0 (before the first measurement) is 0, not NaN.
        zero = (p_norm == 0) & (tracked.update_norm == 0)
        out["update_param_ratio"] = tracked.update_norm / jnp.where(zero, 1, p_norm)
        out["norms_step"] = tracked.norms_step
    if guards:
        out["skipped_steps"] = sum(  # type: ignore[assignment]  # guards is non-empty
            n.total if isinstance(n, SkipNonfiniteState) else n.overflows
            for n in guards
        )
    skip = first(SkipNonfiniteState)
    if skip is not None:
        out["nonfinite_failed"] = skip.failed
    scaler = first(LossScaleState)
    if scaler is not None:
        out["loss_scale"] = scaler.scale
    return {k: jnp.asarray(v).astype(jnp.float32) for k, v in out.items()}
