"""Where optimizer state lives on a device mesh: :func:`state_sharding`.

An adam_tx state is a plain pytree, so ``jax.jit`` can place it anywhere; this
module says where it *should* go. The rule, applied to the state's abstract
shape (``jax.eval_shape(tx.init, params)``, nothing is materialised):

* A *params-shaped* subtree of the state (``mu``, ``nu``, ``nu_max``,
  ``trace``...: any subtree whose structure has the parameters' structure as a
  prefix) is matched to the parameters leaf by leaf. An entry with its
  parameter's shape inherits the parameter's ``PartitionSpec``.
* With ``zero_axis`` (ZeRO stage 1, Rajbhandari et al. 2020), such an entry is
  further split over that mesh axis along its first dimension that is unsharded
  and divisible by the axis size; if there is none it keeps the parameter's
  spec. Parameters stay as they are, so the step's ``apply_updates`` brings the
  sharded update back to the parameter's layout.
* Anything else, scalars above all (``count``, hyperparameters, clip norms), is
  replicated. A per-parameter array of a *different* shape than its parameter
  (the codes and block scales of a quantized moment, say) is replicated, or
  with ``zero_axis`` split along its first divisible dimension: sharding never
  changes results, only memory and communication, so unknown leaves are placed
  conservatively. Pass ``entry_rule`` to place them otherwise.

Matching is structural, so the rule applies to every state format and to
foreign optax states in a chain alike. When nested subtrees both match (a chain
state tuple of the same length as a tuple of parameters), the innermost one
wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from adam_tx._engine.wrapper_args import check_transform

# (entry shape, parameter shape, parameter spec, mesh, zero_axis) -> spec or None
EntryRule = Callable[
    [tuple[int, ...], tuple[int, ...], PartitionSpec, Mesh, str | None],
    PartitionSpec | None,
]


def _spec_axes(entry: Any) -> set[str]:
    if entry is None:
        return set()
    return set(entry) if isinstance(entry, tuple) else {entry}


def zero_spec(
    shape: tuple[int, ...], spec: PartitionSpec, mesh: Mesh, axis: str
) -> PartitionSpec:
    """``spec`` with ``axis`` added on the first free dimension it divides.

    >>> import jax
    >>> from jax.sharding import PartitionSpec as P
    >>> mesh = jax.make_mesh((1, 1), ("data", "model"))
    >>> zero_spec((6, 4), P(None, "model"), mesh, "data")
    P('data', 'model')
    """
    dims = list(spec) + [None] * (len(shape) - len(spec))
    if any(axis in _spec_axes(d) for d in dims):
        return spec  # already split over that axis (e.g. FSDP parameters)
    size = mesh.shape[axis]
    for i, (n, d) in enumerate(zip(shape, dims)):
        if d is None and n % size == 0 and n >= size:
            dims[i] = axis
            while dims and dims[-1] is None:
                dims.pop()
            return PartitionSpec(*dims)
    return spec


def default_entry_rule(
    shape: tuple[int, ...],
    param_shape: tuple[int, ...],
    param_spec: PartitionSpec,
    mesh: Mesh,
    zero_axis: str | None,
) -> PartitionSpec:
    """The placement of one per-parameter state array (see module docstring)."""
    spec = param_spec if tuple(shape) == tuple(param_shape) else PartitionSpec()
    if zero_axis is None or not shape:
        return spec
    return zero_spec(tuple(shape), spec, mesh, zero_axis)


def _param_shardings(params: Any, param_sharding: Any) -> list[NamedSharding]:
    """One ``NamedSharding`` per parameter leaf (a prefix tree is broadcast)."""
    try:
        per_leaf = jax.tree.map(
            lambda s, p: jax.tree.map(lambda _: s, p),
            param_sharding,
            params,
            is_leaf=lambda x: isinstance(x, jax.sharding.Sharding),
        )
    except (ValueError, TypeError) as e:
        raise ValueError(
            "param_sharding must be a NamedSharding or a tree of them with the "
            f"parameters' structure (or a prefix of it): {e}"
        ) from None
    leaves = jax.tree.structure(params).flatten_up_to(per_leaf)
    for s in leaves:
        if not isinstance(s, NamedSharding):
            raise TypeError(
                f"param_sharding leaves must be jax.sharding.NamedSharding, got {s!r}"
            )
    return leaves


def _children(node: Any) -> list[Any]:
    return jax.tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)[0]


def params_shaped(treedef: Any) -> Callable[[Any], bool]:
    """A predicate: is a state node an innermost params-shaped subtree (one
    entry per parameter leaf, see the module docstring)?"""

    def matches(node: Any) -> bool:
        if node is None or (treedef.num_nodes > 1 and not _children(node)):
            return False
        try:
            treedef.flatten_up_to(node)
        except (ValueError, TypeError):
            return False
        return True

    def innermost_match(node: Any) -> bool:
        if not matches(node):
            return False
        stack = [c for c in _children(node) if c is not node]
        while stack:
            child = stack.pop()
            if matches(child):
                return False
            stack.extend(c for c in _children(child) if c is not child)
        return True

    return innermost_match


def state_sharding(
    tx: Any,
    params: Any,
    param_sharding: Any,
    *,
    zero_axis: str | None = None,
    entry_rule: EntryRule | None = None,
) -> Any:
    """The ``NamedSharding`` of every leaf of ``tx.init(params)``.

    Use it as ``out_shardings`` of a jitted ``tx.init`` (the state is created in
    place, never on one device) and of the train step, so the state keeps its
    layout from step to step.

    Args:
      tx: an ``optax.GradientTransformation`` (any, adam_tx or not). A
        :func:`adam_tx.group_small_leaves` state is params-shaped too: its
        grouped vectors are replicated (or split by ``zero_axis``), the leaves
        it keeps apart follow their parameters.
      params: the parameters, or ``jax.ShapeDtypeStruct`` stand-ins.
      param_sharding: a ``NamedSharding`` for all parameters, or a tree of them
        matching ``params`` (or a prefix of it).
      zero_axis: a mesh axis name (e.g. ``"data"``) over which to split the
        moments further, ZeRO-1 style; None keeps the parameters' layout.
      entry_rule: ``(shape, param_shape, param_spec, mesh, zero_axis) -> spec or
        None`` for per-parameter state arrays; None falls back to
        :func:`default_entry_rule`.

    Returns:
      A tree of ``NamedSharding`` with the state's structure.

    >>> import adam_tx, jax, jax.numpy as jnp
    >>> from jax.sharding import NamedSharding, PartitionSpec as P
    >>> mesh = jax.make_mesh((1,), ("data",))
    >>> tx = adam_tx.adam(1e-3)
    >>> params = {"w": jnp.zeros((4, 2))}
    >>> sh = state_sharding(tx, params, NamedSharding(mesh, P()), zero_axis="data")
    >>> sh[0].mu["w"].spec, sh[0].count.spec
    (P('data',), P())
    >>> state = jax.jit(tx.init, out_shardings=sh)(params)

    References:
      Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
      Parameter Models", SC 2020.
    """
    check_transform("tx", tx)
    if zero_axis is not None and not isinstance(zero_axis, str):
        raise TypeError(
            f"zero_axis must be a mesh axis name or None, got {zero_axis!r}"
        )
    if entry_rule is not None and not callable(entry_rule):
        raise TypeError(f"entry_rule must be callable or None, got {entry_rule!r}")
    shardings = _param_shardings(params, param_sharding)
    if not shardings:
        raise ValueError("params has no leaves: there is nothing to shard")
    mesh = shardings[0].mesh
    if zero_axis is not None and zero_axis not in mesh.axis_names:
        raise ValueError(
            f"zero_axis={zero_axis!r} is not an axis of the mesh; "
            f"valid: {tuple(mesh.axis_names)} or None"
        )
    abstract_params = jax.tree.map(
        lambda p: jax.ShapeDtypeStruct(jax.numpy.shape(p), jax.numpy.result_type(p)),
        params,
    )
    abstract_state = jax.eval_shape(tx.init, abstract_params)
    treedef = jax.tree.structure(abstract_params)
    param_leaves = treedef.flatten_up_to(abstract_params)
    replicated = NamedSharding(mesh, PartitionSpec())
    innermost_match = params_shaped(treedef)

    def place(entry: Any, param: Any, sharding: NamedSharding) -> NamedSharding:
        shape = tuple(jax.numpy.shape(entry))
        spec = None
        if entry_rule is not None:
            spec = entry_rule(shape, param.shape, sharding.spec, mesh, zero_axis)
        if spec is None:
            spec = default_entry_rule(
                shape, param.shape, sharding.spec, mesh, zero_axis
            )
        return NamedSharding(mesh, spec)

    def assign(node: Any) -> Any:
        if not innermost_match(node):
            return replicated  # a leaf outside every params-shaped subtree
        entries = treedef.flatten_up_to(node)
        placed = [
            jax.tree.map(lambda e, p=p, s=s: place(e, p, s), entry)
            for entry, p, s in zip(entries, param_leaves, shardings)
        ]
        return treedef.unflatten(placed)

    return jax.tree.map(assign, abstract_state, is_leaf=innermost_match)
