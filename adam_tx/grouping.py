"""Many small parameters updated as a few large arrays: :func:`group_small_leaves`.

A model with a thousand small leaves (biases, norm scales, small kernels) pays
per-leaf costs every step: each leaf is its own loop in the compiled program,
so the step is dominated by dispatch and loop overhead rather than by memory
traffic, and the program (and its compile time) grows with the leaf count.

:func:`group_small_leaves` wraps any *elementwise* transform (every adam_tx
optimizer is one) so that it sees the small leaves of each dtype concatenated
into one flat vector; its state keeps those leaves' moments flat, too. The
Adam math is the wrapped transform's, unchanged: grouping only changes which
arrays the same per-leaf formula runs over, so results are identical.

The grouped layout is opt-in: the default state keeps one moment per parameter
leaf, shaped like it, which is what sharding (:mod:`adam_tx.sharding`) and
state-walking code expect.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx._tree import check_same_structure

DEFAULT_MAX_LEAF_SIZE = 1 << 16


class GroupedState(NamedTuple):
    """State of :func:`group_small_leaves`: the wrapped transform's state,
    initialised on the grouped layout (large leaves, then one flat vector per
    dtype of small leaves)."""

    inner: Any


class _Plan(NamedTuple):
    large: tuple[int, ...]  # leaf indices kept as they are, in order
    groups: tuple[tuple[str, tuple[int, ...]], ...]  # dtype name -> leaf indices


def _plan(leaves: list[Any], max_leaf_size: int) -> _Plan:
    large, groups = [], {}
    for i, leaf in enumerate(leaves):
        if jnp.size(leaf) > max_leaf_size:
            large.append(i)
        else:
            groups.setdefault(jnp.result_type(leaf).name, []).append(i)
    return _Plan(tuple(large), tuple((k, tuple(v)) for k, v in groups.items()))


def _group(leaves: list[Any], plan: _Plan) -> dict[str, Any]:
    """The grouped tree: ``{"large": [...], "small": {dtype: flat vector}}``."""
    small = {
        dtype: jnp.concatenate([jnp.ravel(leaves[i]) for i in idx])
        for dtype, idx in plan.groups
    }
    return {"large": [leaves[i] for i in plan.large], "small": small}


def _ungroup(grouped: dict[str, Any], leaves: list[Any], plan: _Plan) -> list[Any]:
    """Split a grouped tree back into leaves shaped like ``leaves``."""
    out: list[Any] = [None] * len(leaves)
    for i, x in zip(plan.large, grouped["large"]):
        out[i] = x
    for dtype, idx in plan.groups:
        flat, offset = grouped["small"][dtype], 0
        for i in idx:
            n = jnp.size(leaves[i])
            out[i] = flat[offset : offset + n].reshape(jnp.shape(leaves[i]))
            offset += n
    return out


def group_small_leaves(
    tx: optax.GradientTransformation, max_leaf_size: int = DEFAULT_MAX_LEAF_SIZE
) -> optax.GradientTransformationExtraArgs:
    """Run ``tx`` with the small leaves of each dtype concatenated into one.

    Leaves with at most ``max_leaf_size`` elements are raveled and concatenated
    per dtype before ``tx`` sees them; updates are split back into the shapes of
    the gradients. Larger leaves pass through as they are. Since ``tx`` must
    treat every element alike, this suits elementwise transforms (adam_tx's
    optimizers, clipping by global norm). Transforms that depend on leaf shapes
    or paths (per-leaf norms, weight-decay masks by path) see the grouped layout
    instead and must not be wrapped; mask the decay outside or use
    ``max_leaf_size=0`` for those leaves' sizes.

    Args:
      tx: the transform to wrap, e.g. ``adam_tx.adamw(1e-3)``.
      max_leaf_size: leaves of at most this many elements are grouped (>= 0).

    Returns:
      A ``GradientTransformation`` with state :class:`GroupedState`.

    >>> import adam_tx, jax.numpy as jnp
    >>> params = {"b": jnp.zeros(2), "s": jnp.ones(3)}
    >>> tx = adam_tx.group_small_leaves(adam_tx.adam(0.1))
    >>> state = tx.init(params)
    >>> state.inner[0].mu["small"]["float32"].shape  # one flat moment
    (5,)
    >>> u, state = tx.update({"b": jnp.ones(2), "s": -jnp.ones(3)}, state, params)
    >>> [round(x, 4) for x in u["s"].tolist()]
    [0.1, 0.1, 0.1]
    """
    if isinstance(max_leaf_size, bool) or not isinstance(max_leaf_size, int):
        raise TypeError(f"max_leaf_size must be an int >= 0, got {max_leaf_size!r}")
    if max_leaf_size < 0:
        raise ValueError(f"max_leaf_size must be >= 0, got {max_leaf_size}")
    inner = optax.with_extra_args_support(tx)

    def init(params):
        leaves = jax.tree.leaves(params)
        return GroupedState(inner.init(_group(leaves, _plan(leaves, max_leaf_size))))

    def update(updates, state, params=None, **extra_args):
        leaves, treedef = jax.tree.flatten(updates)
        plan = _plan(leaves, max_leaf_size)
        grouped_params = None
        if params is not None:
            check_same_structure(params, updates, "updates", "params")
            grouped_params = _group(treedef.flatten_up_to(params), plan)
        new, inner_state = inner.update(
            _group(leaves, plan), state.inner, grouped_params, **extra_args
        )
        return treedef.unflatten(_ungroup(new, leaves, plan)), GroupedState(inner_state)

    return optax.GradientTransformationExtraArgs(init, update)
