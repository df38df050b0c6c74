"""How many bytes an optimizer state takes: :func:`state_bytes`, :func:`state_report`.

Adam in float32 keeps 8 bytes per parameter (two moments); bfloat16 moments
take 4 and blockwise 8-bit moments (``state_format="int8"``) about 2.03: one
byte per element per moment plus a float32 scale per 256 elements. Small
leaves stay float32, so the figure that matters at scale is the one over the
large leaves, which :func:`state_report` gives separately.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np


def _nbytes(leaf: Any) -> int:
    return int(np.prod(np.shape(leaf), dtype=np.int64)) * np.dtype(leaf.dtype).itemsize


def state_bytes(opt_state: Any) -> int:
    """Total bytes of the arrays in ``opt_state`` (any pytree).

    Formula: ``sum over leaves of x.size * x.dtype.itemsize``.

    >>> import adam_tx, jax.numpy as jnp
    >>> p = jnp.zeros(1000)
    >>> state_bytes(adam_tx.scale_by_adam().init(p)) - state_bytes(
    ...     adam_tx.scale_by_adam(mu_dtype=jnp.bfloat16).init(p))
    2000

    Args:
      opt_state: any pytree; its array leaves are counted.
    """
    return sum(_nbytes(x) for x in jax.tree.leaves(opt_state) if hasattr(x, "dtype"))


class StateReport(NamedTuple):
    """Bytes of an optimizer state, per parameter, split by leaf size."""

    total_bytes: int
    num_params: int
    large_bytes: int  # state kept for parameter leaves of >= min_size elements
    large_params: int
    min_size: int

    @property
    def bytes_per_param(self) -> float:
        return self.total_bytes / max(self.num_params, 1)

    @property
    def large_bytes_per_param(self) -> float:
        return self.large_bytes / max(self.large_params, 1)

    def __str__(self) -> str:
        return (
            f"{self.total_bytes} bytes for {self.num_params} params "
            f"({self.bytes_per_param:.3f} bytes/param; "
            f"{self.large_bytes_per_param:.3f} on leaves >= {self.min_size})"
        )


def _per_leaf_entries(node: Any, params_def, param_shapes) -> list[list[Any]] | None:
    """``node``'s entries per parameter leaf if it is a params-shaped tree."""
    try:
        entries = params_def.flatten_up_to(node)
    except (ValueError, TypeError):
        return None
    for entry, shape in zip(entries, param_shapes):
        if tuple(getattr(entry, "shape", ())) != shape:
            return None
    return entries


def state_report(opt_state: Any, params: Any, *, min_size: int = 4096) -> StateReport:
    """Bytes of ``opt_state`` per parameter of ``params``.

    Formula: ``bytes_per_param = state_bytes(opt_state) / (number of parameters)``,
    and ``large_bytes_per_param`` the same over the large leaves only.

    Every sub-tree of the state shaped like ``params`` (a moment, quantized or
    not) is attributed leaf by leaf, so ``large_bytes_per_param`` counts only
    the state of parameter leaves with at least ``min_size`` elements; scalars
    (count, hyperparameters, keys) count in the total only.

    >>> import adam_tx, jax.numpy as jnp
    >>> p = {"big": jnp.zeros((256, 256)), "bias": jnp.zeros(256)}
    >>> r = state_report(adam_tx.adam(state_format="int8").init(p), p)
    >>> r.large_bytes_per_param  # 2 moments x (1 byte + 4 bytes / 256)
    2.03125

    Args:
      opt_state: the optimizer state to measure.
      params: the parameters it was initialised for.
      min_size: leaves with at least this many elements count as large.
    """
    leaves, params_def = jax.tree.flatten(params)
    shapes = [tuple(np.shape(p)) for p in leaves]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    large = [n >= min_size for n in sizes]
    large_bytes = 0

    def walk(node):
        nonlocal large_bytes
        entries = _per_leaf_entries(node, params_def, shapes)
        if entries is not None:
            large_bytes += sum(state_bytes(e) for e, big in zip(entries, large) if big)
        elif not hasattr(node, "dtype"):
            # One level down: every child is a leaf to this flatten.
            children = jax.tree.leaves(node, is_leaf=lambda x: x is not node)
            for child in children:
                walk(child)

    walk(opt_state)
    return StateReport(
        state_bytes(opt_state),
        sum(sizes),
        large_bytes,
        sum(n for n, big in zip(sizes, large) if big),
        min_size,
    )
