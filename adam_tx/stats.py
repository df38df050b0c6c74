"""Step statistics: what the optimizer did, read from its state.

:func:`track_stats`, put last in a chain, records the norm of the final updates
and of the parameters. Both are summed in one read-only reduction per leaf that
runs before the fused update pass: it reads the gradient, the state and the
parameter, recomputes the update in registers (``reduce_input`` evaluates the
chain's leaf functions) and writes nothing, so no update is stored and the
donated parameters and moments are still updated in place (BENCHMARKS.md, "Cost
of step statistics").

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
                    gradient norm measured by ``loss_scaling`` (unscaled) or
                    ``skip_nonfinite``
clip_factor         ``clip_by_global_norm`` (``min(1, max_norm / norm)``);
                    1.0 when there is no clipping
update_norm         ``track_stats``: global norm of the final updates
param_norm          ``track_stats``: global norm of the parameters before the
                    update
update_param_ratio  ``update_norm / param_norm``
skipped_steps       ``skip_nonfinite`` (total) plus ``loss_scaling`` (overflows)
nonfinite_failed    ``skip_nonfinite(max_consecutive=...)``: 1.0 once that many
                    steps in a row were skipped, else 0.0
loss_scale          ``loss_scaling``: the current scale
==================  ==========================================================

A key is present only when its supplier is in the state (``clip_factor``
always is).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adam_tx import _fusion
from adam_tx._dtypes import compute_dtype, hyper_dtype
from adam_tx.clipping import ClipByGlobalNormState
from adam_tx.hyperparams import get_hyperparams
from adam_tx.loss_scale import LossScaleState
from adam_tx.nonfinite import SkipNonfiniteState


class TrackStatsState(NamedTuple):
    """State of :func:`track_stats`: norms measured at the last step."""

    update_norm: jax.Array
    param_norm: jax.Array


def track_stats():
    """Record ``||u||`` and ``||p||`` (global L2 norms); updates pass unchanged.

    Formula: ``||x|| = sqrt(sum over leaves of sum(x^2))``.

    Put it last in :func:`adam_tx.chain`, so that ``u`` is the step added to the
    parameters. Needs ``params``.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.chain(adam_tx.sgd(0.5), adam_tx.track_stats())
    >>> p = jnp.array([3.0, 4.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0, 0.0]), s, p)
    >>> {k: float(v) for k, v in adam_tx.stats(s).items() if "norm" in k}
    {'update_norm': 1.0, 'param_norm': 5.0}
    """

    def init(params):
        del params
        return TrackStatsState(jnp.zeros([], jnp.float32), jnp.zeros([], jnp.float32))

    def reduce_input(u, p):
        dtype = hyper_dtype()
        return tuple(s.astype(dtype) for s in _sums_of_squares(u, p))

    def prepare(state, params, reduced):
        u2, p2 = reduced
        return TrackStatsState(
            jnp.sqrt(u2).astype(jnp.float32), jnp.sqrt(p2).astype(jnp.float32)
        )

    def leaf(ctx, x, entries, p, info):
        return x, (), ()

    def finish(state, ctx, fields, partials):
        return ctx

    piece = _fusion.Piece(
        "track_stats",
        init,
        prepare,
        leaf,
        finish,
        reduce_input=reduce_input,
        needs_params=True,
        reduce_params=True,
    )
    return _fusion.transformation(piece)


def _sums_of_squares(u: jax.Array, p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sum(u^2), sum(p^2))`` accumulated in at least float32, in one loop.

    One variadic reduction, so that XLA:CPU fuses the leaf functions computing
    ``u`` into it (a plain ``sum`` goes to a library kernel that needs every
    scalar operand broadcast to a parameter-sized array first). It sums along
    the last axis, then the row sums: summing millions of float32 terms in one
    running total would lose digits.
    """
    u = u.astype(compute_dtype(u.dtype))
    p = p.astype(compute_dtype(p.dtype))
    if u.ndim == 1:  # rows of a vector, when its length allows
        c = next((c for c in (1024, 256, 64, 16) if u.size % c == 0), 0)
        u, p = (u, p) if c == 0 else (u.reshape(-1, c), p.reshape(-1, c))
    zero = (jnp.zeros([], u.dtype), jnp.zeros([], p.dtype))
    add = lambda a, b: (a[0] + b[0], a[1] + b[1])
    axes = (u.ndim - 1,) if u.ndim else ()
    rows = jax.lax.reduce((u * u, p * p), zero, add, axes)
    return jnp.sum(rows[0]), jnp.sum(rows[1])


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
    """
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
    if clip is not None:
        out["grad_norm"] = clip.global_norm
    elif guards:
        out["grad_norm"] = guards[0].grad_norm
    out["clip_factor"] = clip.clip_factor if clip is not None else jnp.ones([])
    tracked = first(TrackStatsState)
    if tracked is not None:
        out["update_norm"] = tracked.update_norm
        out["param_norm"] = tracked.param_norm
        out["update_param_ratio"] = tracked.update_norm / tracked.param_norm
    if guards:
        out["skipped_steps"] = sum(
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
