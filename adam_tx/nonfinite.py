"""The non-finite guard: skip a step whose gradients hold a NaN or an Inf.

    finite_t = isfinite(sum_leaves sum(g^2))
    params, inner state <- unchanged (updates = 0)   if not finite_t
    consecutive_t = 0 if finite_t else consecutive_{t-1} + 1
    total_t = total_{t-1} + (not finite_t)

The test reads every gradient once, as a sum of squares accumulated in at
least float32: NaN and Inf propagate through it, and a finite gradient whose
squared norm overflows (norm > ~1.8e19 in float32) is treated as non-finite
too. When the inner transform is made of adam_tx pieces, the test is a
``reduce_input`` of the fused pass and the selection between the new and the
old state happens inside the same per-leaf loop, so the guard adds no pass
over the parameters or moments. Any other inner transform is run as usual and
its results selected afterwards.

Guards nest in either order. A guard's own counters are bookkeeping, not
optimizer state: when an enclosing guard skips a step, the inner guard still
sees it (:func:`enclosing_ok`), so ``skip_nonfinite(loss_scaling(tx))`` backs
the loss scale off on an overflow exactly as ``loss_scaling(skip_nonfinite(tx))``
does, while the parameters and moments stay frozen in both. Each skipped step
is counted once, by the outermost guard that refused it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx._engine import fusion
from adam_tx._engine.counting import INT32_MAX
from adam_tx._engine.dtypes import compute_dtype, hyper_dtype
from adam_tx._engine.placement import placed_init
from adam_tx._engine.wrapper_args import check_int, check_transform
from adam_tx._engine.xla.once import finite_flag
from adam_tx.clipping import sum_of_squares


class SkipNonfiniteState(NamedTuple):
    """State of :func:`skip_nonfinite`.

    ``total``: steps skipped so far; ``consecutive``: skipped in a row up to the
    last step; ``failed``: ``consecutive >= max_consecutive`` (always False
    without a limit); ``grad_norm``: global norm of the last gradients seen
    (0 before the first step, inf or NaN on a skipped step). The counters do
    not move on a step that an enclosing guard skipped.
    """

    total: jax.Array
    consecutive: jax.Array
    failed: jax.Array
    grad_norm: jax.Array
    inner_state: Any


# Wrapper states whose own fields are bookkeeping (see the module docstring);
# loss_scale registers LossScaleState.
GUARD_STATES: list[type] = [SkipNonfiniteState]

# Finiteness flags of the unfused guards whose inner update is being traced.
_ENCLOSING: list[jax.Array] = []


def enclosing_ok() -> jax.Array | bool:
    """Whether every unfused guard around the current trace let the step pass
    (``True`` outside any). Fused guards pass theirs to :class:`Bookkeeping`."""
    ok: jax.Array | bool = True
    for flag in _ENCLOSING:
        ok = flag if ok is True else jnp.logical_and(ok, flag)
    return ok


@contextlib.contextmanager
def _enclosed_by(flag: jax.Array) -> Iterator[None]:
    _ENCLOSING.append(flag)
    try:
        yield
    finally:
        _ENCLOSING.pop()


def _and(a: jax.Array | bool, b: jax.Array | bool) -> jax.Array | bool:
    if a is True:
        return b
    return a if b is True else jnp.logical_and(a, b)


class GuardedCtx(NamedTuple):
    """A guarded piece's step: whether the guard let the step pass, and the
    inner piece's own context."""

    ok: jax.Array | bool
    inner: Any


class Bookkeeping:
    """The ``finish`` of a guard head: it runs on every step, skipped or not,
    and ``run(state, ctx, fields, partials, outer_ok)`` receives whether the
    enclosing guards let the step pass (:func:`guard_piece` passes its flag
    down; called by the engine directly, the unfused guards' flags are read)."""

    def __init__(self, run: Callable[..., Any]):
        self.run = run

    def __call__(self, state, ctx, fields, partials):
        return self.run(state, ctx, fields, partials, enclosing_ok())


def select_state(ok: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``ok``, ``old`` elsewhere, except the own fields of the
    guard states inside (already computed knowing ``ok``)."""
    is_guard = lambda n: isinstance(n, tuple(GUARD_STATES))

    def pick(n, o):
        if is_guard(n):
            return n._replace(
                inner_state=select_state(ok, n.inner_state, o.inner_state)
            )
        return jnp.where(ok, n, o)

    return jax.tree.map(pick, new, old, is_leaf=is_guard)


def _saturating_add(count: jax.Array, inc: jax.Array) -> jax.Array:
    return jnp.where(count < INT32_MAX, count + inc, count).astype(jnp.int32)


def count_skips(
    total: jax.Array, consecutive: jax.Array, finite: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(total, consecutive)`` after a step that was ``finite`` or skipped."""
    skipped = jnp.logical_not(finite).astype(jnp.int32)
    consecutive = jnp.where(finite, 0, _saturating_add(consecutive, 1))
    return _saturating_add(total, skipped), consecutive.astype(jnp.int32)


def select(finite: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where the step was finite, ``old`` elsewhere, leaf by leaf."""
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)


def guard_piece(piece: fusion.Piece, finite: Callable[[], jax.Array]):
    """``piece`` made a no-op (zero output, state unchanged) unless ``finite()``.

    ``finite`` is read in ``prepare`` (after the guard's head has computed it);
    the per-leaf selection runs inside the fused leaf loop, and ``finish``
    selects only the per-step fields (per-leaf fields were selected per leaf).
    """

    def prepare(state, params, reduced):
        return GuardedCtx(finite(), piece.prepare(state, params, reduced))

    def guarded_leaf(ctx, x, entries, p, info, outer_ok):
        inner_ctx = ctx.inner
        ok = jnp.logical_and(ctx.ok, outer_ok)  # nested guards: all must pass
        if piece.guarded_leaf is not None:
            return piece.guarded_leaf(inner_ctx, x, entries, p, info, ok)
        return fusion.select_leaf(piece, inner_ctx, x, entries, p, info, ok)

    def leaf(ctx, x, entries, p, info):
        return guarded_leaf(ctx, x, entries, p, info, True)

    def finish(state, ctx, new_fields, partials):
        ok = ctx.ok
        new = piece.finish(state, ctx.inner, new_fields, partials)
        if not piece.fields:
            return select(ok, new, state)
        kept = {f: getattr(new, f) for f in piece.fields}
        rest = new._replace(**{f: None for f in piece.fields})
        old = state._replace(**{f: None for f in piece.fields})
        return select(ok, rest, old)._replace(**kept)

    if isinstance(piece.finish, Bookkeeping):  # an inner guard's head
        run = piece.finish.run
        finish = Bookkeeping(
            lambda state, ctx, fields, partials, outer_ok: run(
                state, ctx.inner, fields, partials, _and(ctx.ok, outer_ok)
            )
        )

    # A skipped step's later reductions are never used (their pieces keep their
    # state), so a guarded scaling piece still scales by its own factor.
    scales_by = piece.scales_by and (lambda ctx: piece.scales_by(ctx.inner))
    return piece.replace(
        prepare=prepare,
        leaf=leaf,
        finish=finish,
        guarded_leaf=guarded_leaf,
        scales_by=scales_by,
    )


def guard_head(
    name: str,
    init: Callable[[Any], Any],
    advance: Callable[[Any, jax.Array, Any], Any],
    set_finite: Callable[[jax.Array], None],
    scale: jax.Array | None = None,
) -> fusion.Piece:
    """The piece a guard runs before its inner pieces, for one update.

    Formula: ``x -> s x`` (``s = scale``, or the identity without one); the step
    is finite when ``sum((s g)^2)`` is. It passes ``finite_flag`` of that sum
    to ``set_finite`` and, in ``finish`` (a :class:`Bookkeeping`, run even on
    steps an enclosing guard skips), the sum to ``advance(state, squares,
    outer_ok)``, which returns the state with its own fields advanced. It
    declares the scaling (``scales_by``, ``squares_factor``) so that the engine
    shares one read of the raw gradient with every later sum of squares, such
    as clipping's.
    """
    factor = jnp.ones([], hyper_dtype()) if scale is None else scale

    def apply(x):
        if scale is None:
            return x
        x = x.astype(compute_dtype(x.dtype))
        return x * scale.astype(x.dtype)

    def prepare(state, params, reduced):
        set_finite(finite_flag(reduced[0]))
        return reduced[0]

    return fusion.Piece(
        name=name,
        init=init,
        prepare=prepare,
        leaf=lambda ctx, x, entries, p, info: (apply(x), (), ()),
        finish=Bookkeeping(
            lambda state, squares, fields, partials, outer_ok: advance(
                state, squares, outer_ok
            )
        ),
        reduce_input=lambda x: (sum_of_squares(apply(x)).astype(hyper_dtype()),),
        scales_by=lambda ctx: factor,
        squares_factor=lambda: factor,
    )


def guarded_transform(
    name: str,
    inner: optax.GradientTransformation,
    init: Callable[[Any], Any],
    head: Callable[[Any, Callable[[jax.Array], None]], fusion.Piece],
    plain: Callable[..., Any],
) -> optax.GradientTransformationExtraArgs:
    """A wrapper that runs ``inner`` only on steps its head finds finite.

    ``init(params)`` builds the wrapper state (field ``inner_state``).
    ``head(state, set_finite)`` builds the wrapper's own piece for one update;
    its ``prepare`` must call ``set_finite(flag)``. ``plain(updates, state,
    params, **extra)`` is the unfused update used when ``inner`` is not made of
    adam_tx pieces. ``init`` is wrapped so that its scalars are replicated on
    the parameters' mesh.
    """
    init = placed_init(init)
    program = fusion.program_of(inner)
    if program is None:
        return optax.GradientTransformationExtraArgs(init, plain)

    def expand(state):
        flag: list[jax.Array] = []
        return head(state, flag.append), lambda p: guard_piece(p, lambda: flag[-1])

    wrapper = fusion.Wrapper(
        name,
        program,
        expand,
        lambda s: s.inner_state,
        lambda s, inner_state: s._replace(inner_state=inner_state),
    )
    return optax.GradientTransformationExtraArgs(init, fusion.FusedUpdate(wrapper))


def sum_of_squares_tree(tree: Any, scale: jax.Array | None = None) -> jax.Array:
    """``sum_leaves sum((scale * g)^2)`` in ``hyper_dtype()`` (>= float32)."""
    total = jnp.zeros([], hyper_dtype())
    for x in jax.tree.leaves(tree):
        total = total + sum_of_squares(x if scale is None else x * scale).astype(
            total.dtype
        )
    return total


def guarded_inner_update(inner, squares, updates, inner_state, params, extra_args):
    """Run a foreign ``inner`` transform, keeping its state when a step is bad.

    The unfused path of the guards: ``squares`` (the gradients' sum of squares)
    is non-finite exactly when some gradient is NaN or Inf; then the updates are
    zeros and ``inner_state`` is returned unchanged, but for the bookkeeping of
    the guards inside it, which see the flag through :func:`enclosing_ok`.
    """
    finite = jnp.isfinite(squares)
    tx = optax.with_extra_args_support(inner)
    with _enclosed_by(finite):
        new_updates, new_inner = tx.update(updates, inner_state, params, **extra_args)
    new_updates = jax.tree.map(
        lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates
    )
    return new_updates, select_state(finite, new_inner, inner_state)


def skip_nonfinite(
    inner: optax.GradientTransformation, max_consecutive: int | None = None
) -> optax.GradientTransformationExtraArgs:
    """Run ``inner`` only on steps whose gradients are all finite.

    Formula: ``u = inner(g) if isfinite(sum(g^2)) else 0`` (the inner state
    advances only on finite steps), as torch.amp's ``GradScaler`` skips them.

    On a step with a NaN or Inf gradient the updates are zeros and the inner
    state is left as it was (its step count does not advance, so bias
    corrections and schedules continue as if the step never happened); the
    counters ``total`` and ``consecutive`` of :class:`SkipNonfiniteState` go up.
    With ``max_consecutive``, ``failed`` becomes True once that many steps in a
    row were skipped: the training loop can stop (see :func:`adam_tx.stats`,
    key ``nonfinite_failed``). Wrap the whole optimizer, so that nothing outside
    the guard (e.g. weight decay) moves the parameters on a skipped step.

    Args:
      inner: the transform to guard (fused with the guard when it is an adam_tx
        transform or chain).
      max_consecutive: the number (an integer in [1, 2**31 - 1]) of
        consecutive skipped steps that counts as a hard failure, or None.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.skip_nonfinite(adam_tx.adam(0.1))
    >>> p = jnp.ones(2); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([1.0, jnp.nan]), s, p)
    >>> u.tolist(), int(s.total), int(s.inner_state[0].count)
    ([0.0, 0.0], 1, 0)
    """
    inner = check_transform("inner", inner)
    if max_consecutive is not None:
        max_consecutive = check_int("max_consecutive", max_consecutive, 1)
    limit = INT32_MAX if max_consecutive is None else max_consecutive

    def init(params):
        # Distinct arrays per field: a donated state may not alias a buffer twice.
        return SkipNonfiniteState(
            jnp.zeros([], jnp.int32),
            jnp.zeros([], jnp.int32),
            jnp.zeros([], bool),
            jnp.zeros([], hyper_dtype()),
            inner.init(params),
        )

    def advance(state, squares, outer_ok):
        finite = jnp.isfinite(squares)
        total, consecutive = count_skips(state.total, state.consecutive, finite)
        failed = consecutive >= limit if max_consecutive else jnp.zeros([], bool)
        new = (total, consecutive, failed, jnp.sqrt(squares))
        if outer_ok is not True:  # skipped outside: not this guard's step
            new = select(outer_ok, new, state[:4])
        return SkipNonfiniteState(*new, state.inner_state)

    def head(state, set_finite):
        return guard_head("skip_nonfinite", init, advance, set_finite)

    def plain(updates, state, params=None, **extra_args):
        squares = sum_of_squares_tree(updates)
        outer_ok = enclosing_ok()
        new_updates, inner_state = guarded_inner_update(
            inner, squares, updates, state.inner_state, params, extra_args
        )
        new_state = advance(state, squares, outer_ok)
        return new_updates, new_state._replace(inner_state=inner_state)

    return guarded_transform("skip_nonfinite", inner, init, head, plain)
