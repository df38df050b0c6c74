"""How adam_tx pieces compose into one elementwise pass per parameter leaf.

Every adam_tx transform is described by a :class:`Piece`: the math of one leaf
(``leaf``) separated from the scalar work done once per step (``prepare`` and
``finish``). A lone piece is an ordinary ``optax.GradientTransformation``; when
pieces are chained with :func:`adam_tx.chain`, their leaf functions are
composed, so that for each parameter the whole chain (clip, moments, bias
correction, decay, learning rate) is a single expression that XLA compiles into
one loop: no clipped-gradient or bias-corrected tree is ever written to memory.

A piece that needs a global reduction of its input (the global norm for
clipping, the finiteness test for the non-finite guard) declares
``reduce_input``; the engine evaluates the preceding leaf functions inside that
reduction, so the reduction reads the raw inputs and nothing intermediate is
stored either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.placement import placed_init
from adam_tx._engine.reduce import sums_of_squares
from adam_tx._engine.tree import check_float_leaves, check_same_structure, path_str
from adam_tx._engine.xla.ordering import after

Partials = tuple[jax.Array, ...]


class LeafInfo(NamedTuple):
    """Static facts about the leaf being updated."""

    index: int
    path: str


class Init(Protocol):
    """``params -> state``: the piece's state (a NamedTuple)."""

    def __call__(self, params: Any, /) -> Any: ...


class Prepare(Protocol):
    """``(state, params, reduced) -> ctx``: the scalar work of one step."""

    def __call__(self, state: Any, params: Any, reduced: Partials | None, /) -> Any: ...


class LeafFn(Protocol):
    """``(ctx, x, entries, param, info) -> (x_out, entries, partials)``."""

    def __call__(
        self,
        ctx: Any,
        x: jax.Array,
        entries: tuple[Any, ...],
        param: Any,
        info: LeafInfo,
        /,
    ) -> tuple[jax.Array, tuple[Any, ...], Partials]: ...


class GuardedLeafFn(Protocol):
    """``(ctx, x, entries, param, info, ok) -> (x_out, entries, partials)``."""

    def __call__(
        self,
        ctx: Any,
        x: jax.Array,
        entries: tuple[Any, ...],
        param: Any,
        info: LeafInfo,
        ok: jax.Array | bool,
        /,
    ) -> tuple[jax.Array, tuple[Any, ...], Partials]: ...


class Finish(Protocol):
    """``(state, ctx, new_fields, partial_sums) -> new_state``."""

    def __call__(
        self, state: Any, ctx: Any, new_fields: tuple[Any, ...], partials: Partials, /
    ) -> Any: ...


_CALLABLES = ("init", "prepare", "leaf", "finish")
_OPTIONAL_CALLABLES = (
    "reduce_input",
    "reduce_when",
    "scales_by",
    "squares_factor",
    "guarded_leaf",
    "reduce_in_pass",
)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Piece:
    """One transform, split into its per-step scalar work and per-leaf math.

    Built with keywords only; the invariants below are checked when it is
    built (a ``TypeError`` or ``ValueError`` naming the piece and the field),
    so a malformed piece fails where it is written, not deep in a trace. What
    cannot be checked by looking (that ``scales_by`` tells the truth, that
    ``guarded_leaf(ok=True)`` is ``leaf``) is checked numerically for every
    transform in ``tests/catalog.py`` by ``tests/test_conformance.py``; see
    ``docs/contributing.md``.

    Attributes:
      name: for error messages.
      init: ``params -> state`` (a NamedTuple).
      prepare: ``(state, params, reduced) -> ctx``; scalar work once per step
        (count increment, bias corrections, schedule values). ``reduced`` is the
        sum over leaves of ``reduce_input`` (or None). ``ctx`` is the piece's
        own value, handed back to ``leaf`` and ``finish``; make it a
        NamedTuple so that its parts are read by name.
      leaf: ``(ctx, x, leaf_state, param, info) -> (x_out, leaf_state, partials)``
        where ``leaf_state`` holds this leaf's entry of each field in ``fields``
        and ``partials`` are float32 scalars summed over leaves for ``finish``.
      finish: ``(state, ctx, new_fields, partial_sums) -> new_state``;
        ``new_fields`` holds one tree per entry of ``fields``.
      fields: names of state fields that hold one entry per parameter leaf
        (distinct, in the order ``leaf`` receives them).
      reduce_input: optional ``x -> tuple of scalars`` summed over all leaves of
        this piece's input before ``prepare``; ``(x, param) -> tuple of
        scalars`` when ``reduce_params`` is set.
      needs_params: whether ``leaf`` (or ``reduce_input``) reads the parameter.
      reduce_params: whether ``reduce_input`` also reads the parameter (before
        any piece's update overwrites it). Requires ``reduce_input`` and
        ``needs_params``.
      reduce_when: optional ``state -> bool scalar``; the reduction then runs
        only on steps where it is true (``lax.cond``) and ``prepare`` gets
        zeros on the others. Requires ``reduce_input``.
      guarded_leaf: optional ``(ctx, x, leaf_state, param, info, ok) -> (x_out,
        leaf_state, partials)``: ``leaf`` made a no-op (zero output, state
        kept) where the scalar ``ok`` is False, written so that the output is
        computed from the kept state. Guards (:mod:`adam_tx.nonfinite`) use it
        when present; selecting ``leaf``'s outputs instead makes XLA recompute
        the new state from the old in the update loop, and so copy the donated
        state before overwriting it.
      scales_by: optional ``ctx -> scalar``, declaring that ``leaf`` keeps no
        state and returns its input times that scalar (in the compute dtype).
        Requires ``fields == ()``.
      squares_factor: optional ``() -> scalar k``, declaring that
        ``reduce_input(x)`` is ``(k^2 sum(x^2),)`` in the hyperparameter dtype.
        When every piece before this one ``scales_by`` a scalar, the engine
        sums the raw input's squares (read straight from memory, and shared by
        all such pieces) times ``k^2`` and those scalars squared, instead of
        evaluating their leaf functions inside the reduction. Requires
        ``reduce_input`` without ``reduce_params``.
      reduce_in_pass: optional function like ``reduce_input``; on backends that
        fuse a reduction into the loop producing its input (not XLA:CPU, see
        :func:`reductions_in_pass`) it replaces ``reduce_input``: it is
        evaluated on this piece's leaf input inside the update pass and summed
        into the partials ``finish`` receives, and ``prepare`` gets ``None``.
        Requires ``reduce_input``.
    """

    name: str
    init: Init
    prepare: Prepare
    leaf: LeafFn
    finish: Finish
    fields: tuple[str, ...] = ()
    reduce_input: Callable[..., Partials] | None = None
    needs_params: bool = False
    reduce_params: bool = False
    reduce_when: Callable[[Any], jax.Array] | None = None
    scales_by: Callable[[Any], jax.Array] | None = None
    squares_factor: Callable[[], jax.Array] | None = None
    guarded_leaf: GuardedLeafFn | None = None
    reduce_in_pass: Callable[..., Partials] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Piece name must be a non-empty str, got {self.name!r}")
        where = f"Piece {self.name!r}"
        for f in _CALLABLES:
            if not callable(getattr(self, f)):
                raise TypeError(
                    f"{where}: {f} must be callable, got {getattr(self, f)!r}"
                )
        for f in _OPTIONAL_CALLABLES:
            value = getattr(self, f)
            if value is not None and not callable(value):
                raise TypeError(f"{where}: {f} must be callable or None, got {value!r}")
        if not isinstance(self.fields, tuple) or not all(
            isinstance(f, str) and f for f in self.fields
        ):
            raise TypeError(
                f"{where}: fields must be a tuple of state field names, got "
                f"{self.fields!r}"
            )
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"{where}: fields repeat a name: {self.fields!r}")
        for f in ("needs_params", "reduce_params"):
            if not isinstance(getattr(self, f), bool):
                raise TypeError(
                    f"{where}: {f} must be a bool, got {getattr(self, f)!r}"
                )
        needs_reduction = (
            "reduce_params",
            "reduce_when",
            "squares_factor",
            "reduce_in_pass",
        )
        for f in needs_reduction:
            if getattr(self, f) and self.reduce_input is None:
                raise ValueError(f"{where}: {f} is set but reduce_input is None")
        if self.reduce_params and not self.needs_params:
            raise ValueError(f"{where}: reduce_params requires needs_params=True")
        if self.squares_factor is not None and self.reduce_params:
            raise ValueError(
                f"{where}: squares_factor declares a sum of the input's squares, "
                "which cannot also read the parameters (reduce_params)"
            )
        if self.scales_by is not None and self.fields:
            raise ValueError(
                f"{where}: scales_by declares a stateless scaling, but the piece "
                f"keeps per-leaf fields {self.fields!r}"
            )

    def replace(self, **changes: Any) -> Piece:
        """A copy with ``changes`` applied, checked like a new piece."""
        return dataclasses.replace(self, **changes)


# A program is a Piece, a Wrapper, or a tuple of programs (a chain, whose state
# is a tuple).
Program = Any


class Wrapper(NamedTuple):
    """A program whose state holds the state of an ``inner`` program.

    Wrappers such as the non-finite guard and loss scaling run a piece of their
    own (the head) before the inner pieces and alter each inner piece, all in
    the same fused pass. ``expand(state)`` is called once per update with the
    wrapper's state and returns the head piece and the function applied to every
    inner piece; as the engine prepares pieces in order, the head's ``prepare``
    runs before any inner piece's, so both may share per-update values through
    that call's closure. ``inner_of(state)`` and ``with_inner(state, inner)``
    read and replace the inner state within the wrapper's state.
    """

    name: str
    inner: Program
    expand: Callable[[Any], tuple[Piece, Callable[[Piece], Piece]]]
    inner_of: Callable[[Any], Any]
    with_inner: Callable[[Any, Any], Any]


class FusedUpdate:
    """The ``update`` of a transform made of adam_tx pieces.

    Kept as an object (not a closure) so that :func:`chain` can see the pieces
    of its members and fuse across them.
    """

    def __init__(self, program: Program):
        self.program = program

    def __call__(self, updates, state, params=None, **extra_args):
        del extra_args
        return run_program(self.program, state, updates, params)


def select_leaf(piece: Piece, ctx, x, entries, p, info, ok):
    """``piece.leaf`` made a no-op where ``ok`` is False, by selecting its
    outputs: zero output, the old per-leaf state kept."""
    y, new_entries, parts = piece.leaf(ctx, x, entries, p, info)
    keep = lambda n, o: jnp.where(ok, n, o)
    kept = tuple(jax.tree.map(keep, n, e) for n, e in zip(new_entries, entries))
    return jnp.where(ok, y, jnp.zeros_like(y)), kept, parts


def transformation(piece: Piece) -> optax.GradientTransformationExtraArgs:
    """The ``GradientTransformation`` of a single piece."""
    return optax.GradientTransformationExtraArgs(
        placed_init(piece.init), FusedUpdate(piece)
    )


def program_of(tx: optax.GradientTransformation) -> Program | None:
    update = tx.update
    return update.program if isinstance(update, FusedUpdate) else None


def _flatten(program: Program, state: Any) -> list[tuple[Piece, Any]]:
    if isinstance(program, Piece):
        return [(program, state)]
    if isinstance(program, Wrapper):
        head, wrap = program.expand(state)
        inner = _flatten(program.inner, program.inner_of(state))
        return [(head, state)] + [(wrap(p), s) for p, s in inner]
    out = []
    for sub, sub_state in zip(program, state, strict=True):
        out.extend(_flatten(sub, sub_state))
    return out


def _unflatten(program: Program, states: list[Any]) -> Any:
    if isinstance(program, Piece):
        return states.pop(0)
    if isinstance(program, Wrapper):
        head_state = states.pop(0)
        return program.with_inner(head_state, _unflatten(program.inner, states))
    return tuple(_unflatten(sub, states) for sub in program)


def run_program(program: Program, state: Any, updates: Any, params: Any):
    if updates is None:
        # No updates (the empty tree, as optax maps it): no step is taken, and
        # the state is returned as given.
        return None, state
    pairs = _flatten(program, state)
    pieces = [p for p, _ in pairs]
    new_updates, new_states = run_pieces(pieces, [s for _, s in pairs], updates, params)
    return new_updates, _unflatten(program, list(new_states))


def _split_fields(piece: Piece, state: Any, treedef, updates) -> list[tuple[Any, ...]]:
    """Per leaf, the tuple of this piece's per-leaf state entries."""
    per_field = []
    for field in piece.fields:
        tree = getattr(state, field)
        try:
            per_field.append(treedef.flatten_up_to(tree))
        except (ValueError, TypeError):
            check_same_structure(
                tree, updates, "updates", f"state {piece.name}.{field}"
            )
            raise
    n = treedef.num_leaves
    return [tuple(f[j] for f in per_field) for j in range(n)]


def _check_leaf_shapes(piece: Piece, leaf_states, g_leaves, paths) -> None:
    for j, entries in enumerate(leaf_states):
        for field, entry in zip(piece.fields, entries):
            # Plain moments are arrays; other state formats check themselves.
            shape = getattr(entry, "shape", None)
            if shape is not None and tuple(shape) != tuple(jnp.shape(g_leaves[j])):
                raise ValueError(
                    f"updates do not match state {piece.name}.{field}: at "
                    f"'{paths[j]}' expected shape {tuple(entry.shape)}, got "
                    f"{jnp.shape(g_leaves[j])}"
                )


def _sum_partials(acc: Partials | None, part: Partials) -> Partials:
    if acc is None:
        return tuple(part)
    return tuple(a + b for a, b in zip(acc, part, strict=True))


_IN_PASS_OVERRIDE: list[bool | None] = [None]


@contextlib.contextmanager
def reductions_in_pass(enabled: bool | None):
    """Trace updates with in-pass reductions forced on or off (tests, benchmarks).

    By default (``None``) the choice is made per backend when the step is
    lowered, with ``jax.lax.platform_dependent``: XLA:CPU never fuses a
    reduction into the loop that produces its input (it would store the
    update, copy the donated parameters and make extra passes: BENCHMARKS.md,
    "Cost of step statistics"), so there a piece's ``reduce_in_pass`` reduction
    runs as a read-only pre-pass; XLA:GPU and XLA:TPU fuse it into the update
    loop as extra outputs, so there it is summed as partials of the pass.

    The setting is read when a step is traced, and ``jax.jit`` reuses the
    trace of a function it has seen: trace a new function inside the block.
    """
    previous = _IN_PASS_OVERRIDE[0]
    _IN_PASS_OVERRIDE[0] = enabled
    try:
        yield
    finally:
        _IN_PASS_OVERRIDE[0] = previous


def run_pieces(
    pieces: Sequence[Piece], states: Sequence[Any], updates: Any, params: Any
) -> tuple[Any, list[Any]]:
    """Apply ``pieces`` in order as one fused pass; return updates and states."""
    forced = _IN_PASS_OVERRIDE[0]
    if all(p.reduce_in_pass is None for p in pieces) or forced is not None:
        return _run_pieces(pieces, states, updates, params, bool(forced))
    run = lambda in_pass: lambda s, u, p: _run_pieces(pieces, s, u, p, in_pass)
    return jax.lax.platform_dependent(
        list(states), updates, params, cpu=run(False), default=run(True)
    )


def _run_pieces(
    pieces: Sequence[Piece],
    states: Sequence[Any],
    updates: Any,
    params: Any,
    in_pass: bool,
) -> tuple[Any, list[Any]]:
    flat_with_path, treedef = jax.tree_util.tree_flatten_with_path(updates)
    g_leaves = [leaf for _, leaf in flat_with_path]
    paths = [path_str(p) for p, _ in flat_with_path]
    check_float_leaves(updates, "updates")
    n = len(g_leaves)
    if any(p.needs_params for p in pieces) and params is None:
        names = [p.name for p in pieces if p.needs_params]
        raise ValueError(
            f"{names[0]} needs `params`: call update(updates, state, params)"
        )
    if params is not None:
        check_same_structure(params, updates, "updates", "params")
        p_leaves = treedef.flatten_up_to(params)
    else:
        p_leaves = [None] * n
    infos = [LeafInfo(j, paths[j]) for j in range(n)]
    leaf_states = []
    for piece, state in zip(pieces, states, strict=True):
        split = _split_fields(piece, state, treedef, updates)
        _check_leaf_shapes(piece, split, g_leaves, paths)
        leaf_states.append(split)

    ctxs: list[Any] = []
    param_reductions: list[Partials] = []

    def forward(upto: int, j: int) -> jax.Array:
        x = g_leaves[j]
        for k in range(upto):
            x = pieces[k].leaf(ctxs[k], x, leaf_states[k][j], p_leaves[j], infos[j])[0]
        return x

    raw_squares: dict[int, jax.Array] = {}

    def raw_sum_of_squares(j: int) -> jax.Array:
        if j not in raw_squares:
            raw_squares[j] = sums_of_squares(g_leaves[j])[0].astype(hyper_dtype())
        return raw_squares[j]

    def reduce(i: int) -> Partials:
        piece, reduced = pieces[i], None
        if piece.squares_factor and all(p.scales_by for p in pieces[:i]):
            # sum((s x)^2) = s^2 sum(x^2): one read of the raw input, shared.
            scale = piece.squares_factor().astype(hyper_dtype())
            for k in range(i):
                scale = scale * pieces[k].scales_by(ctxs[k]).astype(hyper_dtype())
            total = sum(
                (raw_sum_of_squares(j) for j in range(n)), jnp.zeros([], hyper_dtype())
            )
            return (total * (scale * scale),)
        part = None
        for j in range(n):
            param = (p_leaves[j],) if piece.reduce_params else ()
            if param and part is not None:
                # Leaf after leaf: a reduction that recomputes the update may
                # keep per-row sums (track_stats), so one leaf's at a time. The
                # loop reads the parameter through a bitwise no-op on the
                # previous leaf's sums.
                param = (after(part, arrays=True)(param[0]),)
            part = piece.reduce_input(forward(i, j), *param)
            reduced = _sum_partials(reduced, part)
        if reduced is None:  # empty tree
            empty = (jnp.zeros([0], jnp.float32),) * (1 + piece.reduce_params)
            reduced = piece.reduce_input(*empty)
        return reduced

    in_pass_pieces = {
        i for i, p in enumerate(pieces) if in_pass and p.reduce_in_pass is not None
    }
    for i, (piece, state) in enumerate(zip(pieces, states)):
        reduced = None
        if piece.reduce_input is not None and i not in in_pass_pieces:
            if piece.reduce_when is None:
                reduced = reduce(i)
            else:
                compute = functools.partial(reduce, i)
                skip = lambda c=compute: jax.tree.map(
                    lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(c)
                )
                reduced = jax.lax.cond(piece.reduce_when(state), compute, skip)
            if piece.reduce_params:
                param_reductions.append(reduced)
        ctxs.append(piece.prepare(state, params, reduced))

    if param_reductions:
        # Those reductions read parameters and state that the pass below
        # overwrites in place, and nothing in the pass depends on them. Making
        # the pass's scalars depend on their results orders the pass after
        # them, so XLA neither copies the donated buffers nor merges a
        # reduction's recomputed leaf functions with the pass (which would
        # store the update).
        ctxs = jax.tree.map(after(r for part in param_reductions for r in part), ctxs)

    out_leaves = []
    new_leaf_states: list[list[tuple[Any, ...]]] = [[] for _ in pieces]
    partial_sums: list[Partials | None] = [None] * len(pieces)
    for j in range(n):
        x = g_leaves[j]
        for i, piece in enumerate(pieces):
            x_in = x
            x, entries, part = piece.leaf(
                ctxs[i], x, leaf_states[i][j], p_leaves[j], infos[j]
            )
            if i in in_pass_pieces:
                param = (p_leaves[j],) if piece.reduce_params else ()
                part = tuple(part) + tuple(piece.reduce_in_pass(x_in, *param))
            new_leaf_states[i].append(entries)
            if part:
                partial_sums[i] = _sum_partials(partial_sums[i], part)
        # Arithmetic ran in the compute dtype; updates keep the gradient's dtype.
        out_leaves.append(x.astype(jnp.result_type(g_leaves[j])))

    new_states = []
    for i, (piece, state) in enumerate(zip(pieces, states)):
        fields = tuple(
            treedef.unflatten([entries[f] for entries in new_leaf_states[i]])
            for f in range(len(piece.fields))
        )
        new_states.append(piece.finish(state, ctxs[i], fields, partial_sums[i] or ()))
    return treedef.unflatten(out_leaves), new_states


def chain(
    *transforms: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
    """Apply transforms in sequence; a drop-in for :func:`optax.chain`.

    The state is the same tuple of member states that ``optax.chain`` builds, so
    checkpoints and state-walking code see no difference. Runs of adjacent
    adam_tx transforms are fused into one elementwise pass per leaf (see module
    docstring); any other optax transform in the chain runs as usual between
    them, receiving the extra arguments ``optax.chain`` would pass.

    Example:
      >>> import adam_tx, optax, jax.numpy as jnp
      >>> tx = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3))
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)

    Args:
      *transforms: the ``optax.GradientTransformation`` pieces, applied in order.
    """
    programs = [program_of(t) for t in transforms]
    if transforms and all(p is not None for p in programs):
        init = _chain_init(transforms)
        return optax.GradientTransformationExtraArgs(init, FusedUpdate(tuple(programs)))

    init = _chain_init(transforms)
    # Group adjacent fusable members; foreign transforms run on their own.
    groups: list[tuple[list[int], Program | None]] = []
    for idx, prog in enumerate(programs):
        if prog is not None and groups and groups[-1][1] is not None:
            groups[-1][0].append(idx)
            groups[-1] = (groups[-1][0], groups[-1][1] + (prog,))
        else:
            groups.append(([idx], (prog,) if prog is not None else None))

    def update(updates, state, params=None, **extra_args):
        new_state = list(state)
        for members, prog in groups:
            if prog is None:
                (idx,) = members
                tx = optax.with_extra_args_support(transforms[idx])
                updates, new_state[idx] = tx.update(
                    updates, state[idx], params, **extra_args
                )
            else:
                sub = tuple(state[i] for i in members)
                updates, sub_new = run_program(prog, sub, updates, params)
                for i, s in zip(members, sub_new):
                    new_state[i] = s
        return updates, tuple(new_state)

    return optax.GradientTransformationExtraArgs(init, update)


def _chain_init(transforms):
    def init(params):
        return tuple(t.init(params) for t in transforms)

    return placed_init(init)
