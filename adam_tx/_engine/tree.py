"""Pytree helpers: path names, structure checks with readable errors."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def path_str(path: tuple[Any, ...]) -> str:
    """``('layer', 0, 'w')``-style key path as ``layer/0/w`` (root is ``<root>``)."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts) if parts else "<root>"


def leaf_paths(tree: Any) -> list[str]:
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _describe_first_difference(expected: Any, got: Any) -> str:
    exp = jax.tree_util.tree_flatten_with_path(expected)[0]
    got_ = jax.tree_util.tree_flatten_with_path(got)[0]
    for (pe, le), (pg, lg) in zip(exp, got_):
        if path_str(pe) != path_str(pg):
            return f"expected a leaf at '{path_str(pe)}', found '{path_str(pg)}'"
        if jnp.shape(le) != jnp.shape(lg):
            return (
                f"at '{path_str(pe)}': expected shape {jnp.shape(le)}, "
                f"got {jnp.shape(lg)}"
            )
    if len(exp) > len(got_):
        return f"missing leaf '{path_str(exp[len(got_)][0])}'"
    if len(got_) > len(exp):
        return f"unexpected extra leaf '{path_str(got_[len(exp)][0])}'"
    return "the container types differ (e.g. dict vs list, or different NamedTuples)"


def check_same_structure(
    expected: Any, got: Any, what: str, against: str, *, shapes: bool = True
) -> None:
    """Raise ``ValueError`` naming the first path where ``got`` differs.

    Shapes are compared too: a gradient of the wrong shape would otherwise fail
    deep inside XLA with a message that names no parameter.
    """
    same = jax.tree.structure(expected) == jax.tree.structure(got)  # type: ignore[operator]  # jax's stub; PyTreeDef has ==
    if same and shapes:
        for le, lg in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
            if jnp.shape(le) != jnp.shape(lg):
                same = False
                break
    if not same:
        detail = _describe_first_difference(expected, got)
        raise ValueError(f"{what} does not match {against}: {detail}")


def check_float_leaves(params: Any, what: str = "params") -> None:
    """Integer or boolean parameters cannot be optimized by gradient steps."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{what} leaf '{path_str(path)}' has dtype {dtype}; adam_tx "
                "optimizes floating-point leaves only. Cast it to a float dtype or "
                "keep it out of the optimized tree (e.g. with optax.masked)."
            )
