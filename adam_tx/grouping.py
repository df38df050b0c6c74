"""Many small parameters updated as a few large arrays: :func:`group_small_leaves`.

A model with a thousand small leaves (biases, norm scales, small kernels) pays
per-leaf costs every step: each leaf is its own loop in the compiled program,
so the step is dominated by dispatch and loop overhead rather than by memory
traffic, and the program (and its compile time) grows with the leaf count.

:func:`group_small_leaves` runs the wrapped transform with small leaves that
it treats alike concatenated into one vector per group. The transform still
sees a tree of the parameters' structure and paths, so masks and labels
(weight-decay masks as pytrees, callables or path predicates,
``optax.masked``, ``optax.partition``) are resolved on the real paths: each
group's vector sits at the path of its first member (with that member's
number of dimensions, ``(n, 1, ..., 1)``), and the other members are empty
arrays. Which leaves form a group is decided once, when the state is built,
from the transform's own program (:mod:`adam_tx._engine.leafwise`): leaves are
grouped only when they have the same dtype, are replicated (on an
explicit-axis mesh; other leaves keep their own arrays and sharding) and the
transform runs the same elementwise computation on them, mask decisions and
per-step scalars included. The grouped program is traced and checked the same
way before it is used. A transform that is not elementwise on a leaf (int8
blocks, per-leaf norms, stochastic rounding keyed by the leaf) leaves that
leaf alone. The per-leaf results are therefore exact, bit for bit, except for
global reductions (a clipping norm) whose summation order changes.

It is opt-in, not what ``adam_tx.chain`` and the aliases do: a grouped
state is not shaped like the parameters (``optax.tree_utils.tree_get(state,
"mu")`` returns the grouped moments), it compiles 2-4x slower than the
per-leaf step up to 1000 leaves, and it only pays for trees of thousands of
leaves of a few thousand elements (measured on XLA:CPU, jax 0.10.2:
BENCHMARKS.md, "Compile time against the leaf count").

The layout is part of the state (:class:`Layout`, static, in the pytree
structure): an update or a checkpoint restore with parameters of another
layout raises :class:`adam_tx.checkpoint.CheckpointError` naming the first
differing leaf, rather than applying moments to the wrong parameters.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from adam_tx._engine import leafwise, placement
from adam_tx._engine.tree import check_same_structure, path_str
from adam_tx._engine.wrapper_args import check_transform
from adam_tx.checkpoint import CheckpointError
from adam_tx.sharding import params_shaped

DEFAULT_MAX_LEAF_SIZE = 1 << 16


class LeafPlace(NamedTuple):
    """Where one parameter leaf lives in a grouped state."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    group: int  # index into Layout.groups, or -1: the leaf keeps its own arrays


class Layout:
    """The grouping of a :class:`GroupedState`: a pytree node without leaves,
    so it is part of the state's structure (``jit`` treats it as static, and a
    checkpoint records it)."""

    def __init__(self, leaves: tuple[LeafPlace, ...]):
        self.leaves = tuple(LeafPlace(*x) for x in leaves)
        groups: dict[int, list[int]] = {}
        for j, place in enumerate(self.leaves):
            if place.group >= 0:
                groups.setdefault(place.group, []).append(j)
        self.groups = tuple(tuple(groups[g]) for g in sorted(groups))
        text = repr([tuple(x) for x in self.leaves]).encode()
        self.digest = hashlib.sha1(text).hexdigest()[:12]

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Layout) and self.leaves == other.leaves

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return (
            f"Layout({len(self.leaves)} leaves, {len(self.groups)} groups, "
            f"{self.digest})"
        )

    def describe(self) -> list[list[Any]]:
        """JSON-ready: ``[path, shape, dtype, group]`` per leaf."""
        return [[p.path, list(p.shape), p.dtype, p.group] for p in self.leaves]

    @classmethod
    def from_description(cls, rows: list[list[Any]]) -> Layout:
        return cls(tuple(LeafPlace(r[0], tuple(r[1]), r[2], int(r[3])) for r in rows))

    def difference(
        self, other: Layout, mine: str, theirs: str, *, groups: bool = True
    ) -> str | None:
        """The first leaf where ``other`` differs (in its path, shape, dtype
        or, with ``groups``, its group), in words, or None."""
        for a, b in zip(self.leaves, other.leaves):
            if a.path != b.path:
                return f"at leaf '{a.path}' the {theirs} has '{b.path}' instead"
            for what, x, y in (
                ("shape", a.shape, b.shape),
                ("dtype", a.dtype, b.dtype),
            ):
                if x != y:
                    return (
                        f"at '{a.path}': {what} {x} in the {mine}, {y} in the {theirs}"
                    )
            if groups and self._mates(a) != other._mates(b):
                return (
                    f"at '{a.path}': grouped as {self._mates(a)} in the {mine}, "
                    f"{other._mates(b)} in the {theirs}"
                )
        if len(self.leaves) != len(other.leaves):
            longer, name = (
                (self, mine)
                if len(self.leaves) > len(other.leaves)
                else (other, theirs)
            )
            extra = longer.leaves[min(len(self.leaves), len(other.leaves))]
            return f"the {name} has an extra leaf '{extra.path}'"
        return None

    def _mates(self, place: LeafPlace) -> Any:
        if place.group < 0:
            return "its own arrays"
        return [self.leaves[j].path for j in self.groups[place.group]]

    def regroup(self, leaves: list[Any]) -> list[Any]:
        """Leaves in the layout the wrapped transform sees: each group's
        vector at its first member, empty arrays at the other members."""
        out = list(leaves)
        for members in self.groups:
            first = self.leaves[members[0]]
            flat = jnp.concatenate([jnp.ravel(leaves[j]) for j in members])
            flat = _replicated(flat, [leaves[j] for j in members])
            out[members[0]] = flat.reshape(_stand_in(flat.size, len(first.shape)))
            for j in members[1:]:
                place = self.leaves[j]
                out[j] = jnp.zeros(_stand_in(0, len(place.shape)), flat.dtype)
        return out

    def ungroup(self, leaves: list[Any]) -> list[Any]:
        """The inverse of :meth:`regroup` (leaves in the parameters' shapes)."""
        out = list(leaves)
        for members in self.groups:
            flat, offset = jnp.ravel(leaves[members[0]]), 0
            for j in members:
                shape = self.leaves[j].shape
                n = math.prod(shape)
                out[j] = flat[offset : offset + n].reshape(shape)
                offset += n
        return out


jax.tree_util.register_pytree_node(Layout, lambda x: ((), x), lambda aux, _: aux)


class Empty(NamedTuple):
    """A zero-size state array, kept as its shape and dtype: a pytree node
    without leaves, as checkpointers (Orbax) refuse to save zero-size arrays."""

    shape: tuple[int, ...]
    dtype: str


jax.tree_util.register_pytree_node(Empty, lambda x: ((), x), lambda aux, _: aux)


def _stored(state: Any) -> Any:
    """``state`` with its zero-size arrays as :class:`Empty` nodes."""
    return jax.tree.map(
        lambda x: (
            Empty(tuple(x.shape), jnp.dtype(x.dtype).name)
            if getattr(x, "size", 1) == 0
            else x
        ),
        state,
    )


def _loaded(state: Any) -> Any:
    """The inverse of :func:`_stored`."""
    is_empty = lambda x: isinstance(x, Empty)
    return jax.tree.map(
        lambda x: jnp.zeros(x.shape, x.dtype) if is_empty(x) else x,
        state,
        is_leaf=is_empty,
    )


class GroupedState(NamedTuple):
    """State of :func:`group_small_leaves`: the wrapped transform's state on
    the grouped layout (each group's moments at its first member, empty
    arrays at the others, every other leaf's as usual), and the layout."""

    inner: Any
    layout: Layout


def _stand_in(n: int, ndim: int) -> tuple[int, ...]:
    return (n,) + (1,) * max(ndim - 1, 0)


def _replicated(x: jax.Array, members: list[Any]) -> jax.Array:
    """``x`` replicated where its members' mesh is known (eager arrays, a mesh
    set with ``jax.set_mesh``), so grouped state is placed alike eagerly and
    under ``jit``."""
    mesh = placement.params_mesh(members)
    if mesh is not None and not placement.is_tracer(x):
        return jax.device_put(x, NamedSharding(mesh, PartitionSpec()))
    abstract = jax.sharding.get_abstract_mesh()
    on_auto_mesh = abstract is not None and not abstract.empty
    if placement.is_tracer(x) and on_auto_mesh and not placement.explicit_sharding(x):
        return jax.lax.with_sharding_constraint(x, PartitionSpec())
    return x


def _replicated_type(leaf: Any) -> bool:
    """Not split over devices in its type (explicit-axis meshes); the
    placement on an Auto mesh is not part of the type, so it is not read:
    eager, ``jit`` and ``eval_shape`` builds must agree on the layout."""
    sharding = placement.explicit_sharding(leaf)
    return sharding is None or all(axis is None for axis in sharding.spec)


def _signatures(inner, treedef, shapes, dtypes, intern) -> list[Any]:
    """Per leaf, the wrapped transform's elementwise signature on leaves of
    ``shapes`` (:func:`adam_tx._engine.leafwise.signatures`)."""
    avals = [jax.ShapeDtypeStruct(s, d) for s, d in zip(shapes, dtypes)]
    state = jax.eval_shape(inner.init, treedef.unflatten(avals))
    flat, state_def = jax.tree_util.tree_flatten_with_path(state)
    match = params_shaped(treedef)
    roles = []
    for path, node in jax.tree_util.tree_flatten_with_path(state, is_leaf=match)[0]:
        key = path_str(path)
        if not match(node):
            roles.append(leafwise.Role(None, ("state", key)))
            continue
        for j, entry in enumerate(treedef.flatten_up_to(node)):
            for sub, _ in jax.tree_util.tree_flatten_with_path(entry)[0]:
                roles.append(leafwise.Role(j, ("state", key, path_str(sub))))
    n = len(shapes)

    def update(g, s, p):
        u, new = inner.update(
            treedef.unflatten(g), state_def.unflatten(s), treedef.unflatten(p)
        )
        new_flat, new_def = jax.tree.flatten(new)
        if new_def != state_def:
            raise ValueError("the wrapped transform changes its state's structure")
        return treedef.flatten_up_to(u) + new_flat

    leaf_roles = lambda what: [leafwise.Role(j, (what,)) for j in range(n)]
    return leafwise.signatures(
        update,
        (avals, [x for _, x in flat], avals),
        leaf_roles("g") + roles + leaf_roles("p"),
        leaf_roles("u") + roles,
        n,
        intern,
    )


def _groups(inner, treedef, shapes, dtypes, candidates) -> list[tuple[int, ...]]:
    """Groups of leaves the transform provably treats alike (module docstring)."""
    intern = leafwise.Interner()
    signs = _signatures(inner, treedef, shapes, dtypes, intern)
    by_class: dict[Any, list[int]] = {}
    for j in candidates:
        if signs[j] is not None:
            by_class.setdefault((dtypes[j], signs[j]), []).append(j)
    groups = [tuple(m) for m in by_class.values() if len(m) > 1]
    while groups:
        stand_ins = list(shapes)
        for members in groups:
            total = sum(math.prod(shapes[j]) for j in members)
            stand_ins[members[0]] = _stand_in(total, len(shapes[members[0]]))
            for j in members[1:]:
                stand_ins[j] = _stand_in(0, len(shapes[j]))
        grouped_signs = _signatures(inner, treedef, stand_ins, dtypes, intern)
        grouped = {j for members in groups for j in members}
        if any(
            grouped_signs[j] != signs[j] for j in range(len(shapes)) if j not in grouped
        ):
            return []  # grouping changed how other leaves are treated
        kept = [m for m in groups if grouped_signs[m[0]] == signs[m[0]]]
        if len(kept) == len(groups):
            return groups
        groups = kept
    return []


def group_small_leaves(
    tx: optax.GradientTransformation, max_leaf_size: int = DEFAULT_MAX_LEAF_SIZE
) -> optax.GradientTransformationExtraArgs:
    """Run ``tx`` with small leaves that it treats alike concatenated into one.

    Formula: for every leaf, the update (and state) ``tx`` gives that leaf on
    its own; only the arrays it runs over change (module docstring).

    Leaves with at most ``max_leaf_size`` elements are candidates; they are
    grouped when they share a dtype, are replicated, and ``tx`` applies the
    same elementwise computation to them (the same mask decisions, partition
    labels and per-step scalars), which is read from ``tx``'s program when the
    state is built. Larger leaves, and leaves ``tx`` treats in their own way,
    pass through as they are. Masks and labels may depend on the paths, dtypes
    and numbers of dimensions of the leaves, not on their values.

    Args:
      tx: the transform to wrap (a ``GradientTransformation``), e.g.
        ``adam_tx.adamw(1e-3, mask=adam_tx.decay_mask)``.
      max_leaf_size: leaves of at most this many elements are grouped (an
        integer >= 0).

    Returns:
      A ``GradientTransformation`` with state :class:`GroupedState`.

    >>> import adam_tx, jax.numpy as jnp
    >>> params = {"b": jnp.zeros(2), "s": jnp.ones(3)}
    >>> tx = adam_tx.group_small_leaves(adam_tx.adam(0.1))
    >>> state = tx.init(params)
    >>> state.inner[0].mu["b"].shape, state.inner[0].mu["s"]  # b holds both
    ((5,), Empty(shape=(0,), dtype='float32'))
    >>> u, state = tx.update({"b": jnp.ones(2), "s": -jnp.ones(3)}, state, params)
    >>> [round(x, 4) for x in u["s"].tolist()]
    [0.1, 0.1, 0.1]
    """
    inner = optax.with_extra_args_support(check_transform("tx", tx))
    if isinstance(max_leaf_size, bool) or not isinstance(max_leaf_size, int):
        raise TypeError(f"max_leaf_size must be an int >= 0, got {max_leaf_size!r}")
    if max_leaf_size < 0:
        raise ValueError(f"max_leaf_size must be >= 0, got {max_leaf_size}")
    plans: dict[Any, Layout] = {}

    def plan(params) -> Layout:
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        places = [
            LeafPlace(path_str(p), tuple(jnp.shape(x)), jnp.result_type(x).name, -1)
            for p, x in flat
        ]
        candidates = [
            j
            for j, ((_, x), place) in enumerate(zip(flat, places))
            if math.prod(place.shape) <= max_leaf_size
            and jnp.issubdtype(jnp.result_type(x), jnp.inexact)
            and _replicated_type(x)
        ]
        key = (treedef, tuple(places), tuple(candidates))
        if key in plans:
            return plans[key]
        groups: list[tuple[int, ...]] = []
        if len(candidates) > 1:
            try:
                groups = _groups(
                    inner,
                    treedef,
                    [p.shape for p in places],
                    [jnp.result_type(x) for _, x in flat],
                    candidates,
                )
            except Exception as err:  # the transform could not be traced alone
                warnings.warn(
                    "group_small_leaves could not read how the wrapped transform "
                    f"treats each leaf, so no leaves are grouped: "
                    f"{type(err).__name__}: {err}",
                    stacklevel=3,
                )
        for g, members in enumerate(groups):
            for j in members:
                places[j] = places[j]._replace(group=g)
        plans[key] = Layout(tuple(places))
        return plans[key]

    def init(params):
        layout = plan(params)
        leaves, treedef = jax.tree.flatten(params)
        inner_state = inner.init(treedef.unflatten(layout.regroup(leaves)))
        return GroupedState(_stored(inner_state), layout)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, GroupedState):
            raise TypeError(
                f"group_small_leaves needs its own state (a GroupedState from its "
                f"init), got {type(state).__name__}"
            )
        flat, treedef = jax.tree_util.tree_flatten_with_path(updates)
        leaves = [x for _, x in flat]
        seen = Layout(
            tuple(
                LeafPlace(path_str(p), tuple(jnp.shape(x)), jnp.result_type(x).name, -1)
                for p, x in flat
            )
        )
        problem = state.layout.difference(
            seen, "grouped state", "updates", groups=False
        )
        if problem is not None:
            raise CheckpointError(
                f"updates do not match the layout of the grouped state: {problem}"
            )
        grouped_params = None
        if params is not None:
            check_same_structure(params, updates, "updates", "params")
            p_leaves = treedef.flatten_up_to(params)
            grouped_params = treedef.unflatten(state.layout.regroup(p_leaves))
        new, inner_state = inner.update(
            treedef.unflatten(state.layout.regroup(leaves)),
            _loaded(state.inner),
            grouped_params,
            **extra_args,
        )
        out = state.layout.ungroup(treedef.flatten_up_to(new))
        return treedef.unflatten(out), GroupedState(_stored(inner_state), state.layout)

    return optax.GradientTransformationExtraArgs(placement.placed_init(init), update)
