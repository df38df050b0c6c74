"""Decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", ICLR 2019): ``u <- u + wd * p``, applied after the adaptive
preconditioning and before the learning rate, so that the step is
``p <- p - lr * (adam_direction + wd * p)`` exactly as torch.optim.AdamW and
optax.adamw take it. Placed before the preconditioner instead, the same
transform is classical L2 regularisation (torch's ``Adam(weight_decay=...)``,
``SGD(weight_decay=...)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adam_tx import hyperparams
from adam_tx._engine.stateful import counted_transform
from adam_tx._engine.stateless import accepting_no_state
from adam_tx._engine.tree import check_same_structure, path_str
from adam_tx._engine.typing import ScalarOrSchedule
from adam_tx._engine.validate import check_range

DEFAULT_EXCLUDE = ("bias", "scale", "norm", "embed")


class AddDecayedWeightsState(NamedTuple):
    """State of :func:`add_decayed_weights`: the step count and the rate in force."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hyperparams: dict


def decay_mask(params: Any, *, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> Any:
    """The usual weight-decay mask: False for biases, norm scales, embeddings.

    Formula: ``mask(leaf) = not any(e in c.lower() for c in path for e in
    exclude)``; decaying only weights ("no bias decay") follows He et al., "Bag
    of Tricks for Image Classification with Convolutional Neural Networks",
    CVPR 2019.

    A leaf is excluded when any component of its path contains one of
    ``exclude`` (case-insensitive), e.g. ``LayerNorm_0/scale``, ``Dense_0/bias``
    or ``Embed_0/embedding``.

    Args:
      params: the parameter pytree.
      exclude: path fragments that mark a leaf as not decayed.

    Returns:
      A pytree of Python bools with the structure of ``params`` (True: decay).

    >>> import adam_tx, jax.numpy as jnp
    >>> p = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    >>> adam_tx.decay_mask(p)
    {'dense': {'bias': False, 'kernel': True}}
    """
    tokens = tuple(t.lower() for t in exclude)

    def keep(path, leaf):
        parts = path_str(path).lower().split("/")
        return not any(tok in part for tok in tokens for part in parts)

    return jax.tree_util.tree_map_with_path(keep, params)


def _is_path_predicate(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) == 2


def _is_boolean(m: Any) -> bool:
    if isinstance(m, (bool, np.bool_)):
        return True
    dtype = getattr(m, "dtype", None)
    return dtype is not None and np.dtype(dtype) == np.bool_


def check_mask_leaves(mask: Any, name: str = "mask") -> None:
    """Raise a TypeError naming the first leaf of ``mask`` that is not a bool
    or a boolean array (a mask of strings or floats is a mistake, not "on")."""
    for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]:
        if not _is_boolean(m):
            where = f" at {path_str(path)!r}" if path else ""
            raise TypeError(
                f"{name}{where} is {m!r}: expected a bool or a boolean array "
                "(a mask is a pytree of bools like params, a callable or None)"
            )


def resolve_mask(mask: Any, params: Any) -> list[Any]:
    """Per leaf of ``params``: True, False, or a boolean array.

    A mask tree may stop above the leaves, as optax's masks may: a value at a
    node (``mask=True``, ``{"encoder": False, "head": {...}}``) covers every
    leaf below it.
    """
    leaves_with_path = jax.tree_util.tree_flatten_with_path(params)[0]
    if mask is None:
        return [True] * len(leaves_with_path)
    if callable(mask):
        if _is_path_predicate(mask):
            return [bool(mask(path_str(p), leaf)) for p, leaf in leaves_with_path]
        mask = mask(params)
    check_mask_leaves(mask)
    try:
        per_leaf = jax.tree.map(
            lambda m, sub: jax.tree.map(lambda _: m, sub), mask, params
        )
    except (ValueError, TypeError):
        check_same_structure(params, mask, "weight-decay mask", "params", shapes=False)
        raise
    return jax.tree.leaves(per_leaf)


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Any | Callable[..., Any] | None = None
) -> optax.GradientTransformationExtraArgs:
    """Add ``weight_decay * params`` to the updates (decoupled weight decay).

    Args:
      weight_decay: the coefficient, a finite float or a schedule of the step;
        negative values grow the weights (optax.fromage uses them), so only the
        optimizers built on this transform require it to be >= 0.
        0 by default, as optax.add_decayed_weights; the AdamW aliases
        (:func:`adam_tx.adamw`, ``optax.adamw``) default to 1e-4, and
        torch.optim.AdamW to 1e-2.
      mask: which leaves decay: None (all), a pytree of bools like params (or
        a prefix of it, as optax's masks), a callable ``params -> pytree of
        bools`` (e.g. :func:`decay_mask`), or a predicate ``(path: str, leaf)
        -> bool`` on the ``/``-joined key path.

    Returns:
      An ``optax.GradientTransformation``; ``update`` needs ``params``.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.add_decayed_weights(0.5, mask=lambda path, p: path != "b")
    >>> params = {"w": jnp.ones(1), "b": jnp.ones(1)}
    >>> zeros = {"w": jnp.zeros(1), "b": jnp.zeros(1)}
    >>> u, _ = tx.update(zeros, tx.init(params), params)
    >>> u["w"].tolist(), u["b"].tolist()
    ([0.5], [0.0])
    """
    check_range("weight_decay", weight_decay)
    if mask is not None and not callable(mask):
        check_mask_leaves(mask)

    def math(c, g):
        on = c.static[c.info.index]
        if on is False:
            return g, ()
        decayed = g + c.hp["weight_decay"] * c.param.astype(g.dtype)
        return (decayed if on is True else jnp.where(on, decayed, g)), ()

    return accepting_no_state(
        counted_transform(
            "add_decayed_weights",
            AddDecayedWeightsState,
            (hyperparams.Hyper("weight_decay", weight_decay),),
            {},
            math,
            needs_params=True,
            static=lambda params: resolve_mask(mask, params),
        )
    )
