"""The common shape of a stateful adam_tx transform.

Most transforms keep a step count, a dict of hyperparameters and zero or more
per-parameter moments, and do the same scalar bookkeeping each step. That
bookkeeping is written here once; a transform supplies only its per-leaf math.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adam_tx import hyperparams
from adam_tx._engine import fusion
from adam_tx._engine.counting import safe_increment, zero_count
from adam_tx._engine.dtypes import compute_dtype
from adam_tx._engine.tree import check_float_leaves
from adam_tx._engine.xla.ordering import shadow
from adam_tx.state_format import block_scales, needs_key, quantized, reads_stored


class StepCtx(NamedTuple):
    """Per-step scalars: the new count, hyperparameters in force, and extras."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hp: dict[str, jax.Array]
    scalars: dict[str, jax.Array]
    static: Any = None
    rng: jax.Array | None = None  # this step's key, for stochastic formats


class LeafScalars(NamedTuple):
    """``StepCtx`` values cast to one leaf's compute dtype, for the math."""

    hp: dict[str, jax.Array]
    scalars: dict[str, jax.Array]
    param: jax.Array | None
    info: fusion.LeafInfo
    static: Any = None


class SplitMath(NamedTuple):
    """A transform's per-leaf math in two halves.

    ``moments(c, g, *moments) -> new_moments`` and ``update(c, g,
    *new_moments) -> u``: the update depends on the old moments only through
    the new ones. Called, it is the ``math`` of :func:`counted_transform`; the
    split lets a guard compute ``u`` from the moments it keeps
    (``Piece.guarded_leaf``).
    """

    moments: Callable[..., tuple[jax.Array, ...]]
    update: Callable[..., jax.Array]

    def __call__(self, c, g, *moments):
        new = self.moments(c, g, *moments)
        return self.update(c, g, *new), new


def _cast(d: dict[str, jax.Array], dtype) -> dict[str, jax.Array]:
    return {k: v.astype(dtype) for k, v in d.items()}


def counted_transform(
    name: str,
    state_cls: type,
    hypers: tuple[hyperparams.Hyper, ...],
    formats: dict[str, Any],
    math: SplitMath | Callable[..., tuple[jax.Array, tuple[jax.Array, ...]]],
    *,
    scalars: Callable[[dict, jax.Array], dict] = lambda hp, count: {},
    needs_params: bool = False,
    static: Callable[[Any], Any] | None = None,
    init_moment: Callable[[str, jax.Array, Any], Any] | None = None,
):
    """Build the GradientTransformation of a counted, moment-keeping transform.

    ``state_cls`` has fields ``count``, one per key of ``formats`` (in order),
    and ``hyperparams``. ``math(c, g, *moments) -> (update, new_moments)`` gets
    the leaf's gradient and loaded moments in the compute dtype and ``c``, a
    :class:`LeafScalars`. ``scalars(hp, count)`` computes per-step scalars
    (e.g. bias corrections) once, outside the leaf loop. ``static(params)``
    computes trace-time facts about the parameters (e.g. a decay mask), passed
    to ``math`` as ``c.static``.
    """
    fields = tuple(formats)
    fmts = tuple(formats.values())
    # Stochastic formats share one key, kept in ``state.rng`` and never advanced:
    # step, leaf and moment are folded in, so a run is reproducible from its seed
    # and resumes exactly from a checkpoint.
    keyed = [fmt for fmt in fmts if needs_key(fmt)]

    def init(params):
        check_float_leaves(params)
        moments = {
            f: jax.tree.map(
                (lambda p, f=f, fmt=fmt: init_moment(f, p, fmt))
                if init_moment
                else fmt.init,
                params,
            )
            for f, fmt in zip(fields, fmts)
        }
        rng = {"rng": jax.random.PRNGKey(keyed[0].seed)} if keyed else {}
        return state_cls(
            count=zero_count(),
            **moments,
            hyperparams=hyperparams.init_values(hypers),
            **rng,
        )

    def prepare(state, params, reduced):
        hp = hyperparams.current_values(hypers, state.hyperparams, state.count)
        count = safe_increment(state.count)
        extra = static(params) if static is not None else None
        rng = jax.random.fold_in(state.rng, count) if keyed else None
        return StepCtx(count, hp, scalars(hp, count), extra, rng)

    def scalars_of(ctx, x, p, info):
        dtype = compute_dtype(x.dtype)
        c = LeafScalars(
            _cast(ctx.hp, dtype), _cast(ctx.scalars, dtype), p, info, ctx.static
        )
        return c, dtype

    def store(ctx, info, new, entries, scales):
        keys = [None] * len(fmts)
        if keyed:
            leaf_key = jax.random.fold_in(ctx.rng, info.index)
            keys = [jax.random.fold_in(leaf_key, i) for i in range(len(fmts))]
        return tuple(
            fmt.store(v, e, key) if s is None else fmt.store(v, e, key, absmax=s)
            for fmt, v, e, key, s in zip(fmts, new, entries, keys, scales)
        )

    def moments_of(c, g, loaded):
        return (
            math.moments(c, g, *loaded)
            if isinstance(math, SplitMath)
            else math(c, g, *loaded)[1]
        )

    def scales_of(ctx, c, g, entries, dtype):
        """Block scales of the quantized moments, from a second computation
        of the new moments (:func:`adam_tx._engine.xla.ordering.shadow`): one
        reduction loop, and no moment stored in a temporary."""
        if not any(quantized(f, e) for f, e in zip(fmts, entries)):
            return [None] * len(fmts)
        g, entries = shadow((g, entries), ctx.count)
        loaded = [fmt.load(e, dtype) for fmt, e in zip(fmts, entries)]
        return block_scales(fmts, moments_of(c, g, loaded), entries)

    def update_moments(ctx, c, g, entries, new, dtype):
        """The new moments the update reads: for quantized ones, computed
        once more from shadows of the old ones, so that XLA decodes them in
        the update's own loop (it stores a decoding read by two loops)."""
        if not any(quantized(f, e) for f, e in zip(fmts, entries)):
            return new
        g, entries = shadow((g, entries), ctx.count, salt=1)
        loaded = [fmt.load(e, dtype) for fmt, e in zip(fmts, entries)]
        return math.moments(c, g, *loaded)

    # Which moments the update reads as stored (rounded: bfloat16, as
    # PyTorch's bf16 state) rather than as computed (state_format.reads_stored).
    as_stored = tuple(reads_stored(fmt) for fmt in fmts)

    def update_of(c, g, new, stored, dtype):
        moments = [
            fmt.load(s, dtype) if flag else n
            for fmt, flag, n, s in zip(fmts, as_stored, new, stored)
        ]
        return math.update(c, g, *moments)

    def leaf(ctx, x, entries, p, info):
        c, dtype = scalars_of(ctx, x, p, info)
        loaded = [fmt.load(e, dtype) for fmt, e in zip(fmts, entries)]
        g = x.astype(dtype)
        scales = scales_of(ctx, c, g, entries, dtype)
        if not isinstance(math, SplitMath):
            u, new = math(c, g, *loaded)
            return u, store(ctx, info, new, entries, scales), ()
        new = math.moments(c, g, *loaded)
        stored = store(ctx, info, new, entries, scales)
        new = update_moments(ctx, c, g, entries, new, dtype)
        return update_of(c, g, new, stored, dtype), stored, ()

    def guarded_leaf(ctx, x, entries, p, info, ok):
        c, dtype = scalars_of(ctx, x, p, info)
        loaded = [fmt.load(e, dtype) for fmt, e in zip(fmts, entries)]
        g = x.astype(dtype)
        new = math.moments(c, g, *loaded)
        # A moment read as stored is selected before it is stored: storing the
        # old moment, which its format holds exactly, gives it back bit for
        # bit, and the update reads the kept array itself (a select after the
        # rounding would be recomputed in the update's loop from the old
        # moment, which XLA would then copy before overwriting it).
        early = [
            flag and jnp.dtype(jnp.result_type(e)).itemsize <= jnp.dtype(dtype).itemsize
            for flag, e in zip(as_stored, entries)
        ]
        values = [
            jnp.where(ok, n, o) if f else n for f, n, o in zip(early, new, loaded)
        ]
        stored = store(ctx, info, values, entries, scales_of(ctx, c, g, entries, dtype))
        keep = lambda n, o: jnp.where(ok, n, o)
        kept = tuple(
            s if f else jax.tree.map(keep, s, e)
            for f, s, e in zip(early, stored, entries)
        )
        # On a finite step the kept moments are the stored ones: the update is
        # the unguarded one, bit for bit.
        new = update_moments(ctx, c, g, entries, new, dtype)
        u = update_of(c, g, new, kept, dtype)
        return jnp.where(ok, u, jnp.zeros_like(u)), kept, ()

    def finish(state, ctx, new_fields, partials):
        # Only the values the state holds are written back: a value the
        # caller owns (an array or tracer, hyperparams.is_external) is in
        # ctx.hp but not in the state, and writing it would change the
        # state's structure after the first step (a recompile, a scan carry
        # mismatch, a rate found twice by tree_get).
        held = {k: ctx.hp[k] for k in state.hyperparams}
        return state._replace(
            count=ctx.count, hyperparams=held, **dict(zip(fields, new_fields))
        )

    piece = fusion.Piece(
        name=name,
        init=init,
        prepare=prepare,
        leaf=leaf,
        finish=finish,
        fields=fields,
        needs_params=needs_params,
        guarded_leaf=guarded_leaf if isinstance(math, SplitMath) else None,
    )
    return fusion.transformation(piece)
