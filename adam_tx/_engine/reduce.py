"""Sums of squares that XLA compiles into one fast loop on every backend.

Every global reduction in adam_tx is a sum of squares: the gradient norm of
clipping, the finiteness test of the non-finite guard and of loss scaling, the
update and parameter norms of ``track_stats``. The fused engine evaluates the
chain's leaf functions inside them (``Piece.reduce_input``), so what is summed
is an expression, not an array in memory. The best way to sum one depends on
the backend, and :func:`sums_of_squares` picks it when the step is lowered
(``jax.lax.platform_dependent``):

* XLA:GPU and XLA:TPU fuse an expression into a plain ``sum``: it is used.
* XLA:CPU hands a plain ``sum`` to a library kernel (YNNPACK) that needs its
  input in memory: right for a raw gradient (the engine sums those directly
  where it can, ``Piece.squares_factor``), but an expression is first stored
  in a leaf-sized temporary. Two or more sums over one expression (the update
  and parameter norms of ``track_stats``) are one variadic ``lax.reduce``,
  which keeps the expression in the loop, but as one scalar loop: square roots
  and divisions unvectorized, about 1.4 ns per element. Viewing the leaf as
  rows of 8 elements of its last axis (a free reshape) and summing each row
  lets XLA unroll the row and vectorize its 8 elements: about 3x faster, as
  fast as the memory it reads. The row sums (an eighth of the leaf) are then
  summed. A last axis that 8 and 4 do not divide is summed along that axis
  with a compensated (TwoSum) running total: slicing off a remainder would
  make XLA store the expression and copy the parameters, and a plain float32
  running total over a long axis loses digits (1e-3 relative over 2M terms).
  A single sum gets no rows: XLA folds a sum of row sums back into one sum.

Differentiation: XLA's variadic ``lax.reduce`` has no JVP rule in JAX, so
:func:`sums_of_squares` carries its own (``jax.custom_jvp``): the tangent of
``sum(x^2)`` is ``2 sum(x dx)``, a plain sum. The forward program is the same
with or without it; ``jax.grad`` and ``jax.jvp`` through any update (with
``track_stats``, guards, loss scaling) use the rule.

Figures: BENCHMARKS.md, "Cost of step statistics". The XLA:CPU behaviour
(a lone sum becomes a library fusion, a variadic reduce stays a loop over rows
of 8 with only the row sums stored) was measured with jax 0.10.2 and is pinned
by ``tests/test_xla_rules.py``; the other XLA behaviours the engine relies on
are in :mod:`adam_tx._engine.xla`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from adam_tx._engine.dtypes import compute_dtype

ROW_WIDTHS = (8, 4)


def sums_of_squares(*xs: jax.Array) -> tuple[jax.Array, ...]:
    """``sum(x^2)`` of each of ``xs`` (one shape), in at least float32, one loop.

    Formula: ``sum_i |x_i|^2``, accumulated in ``compute_dtype`` (float32 for
    float16/bfloat16/float32 leaves, float64 for float64; a complex leaf's is
    the sum of the squares of its real and imaginary parts, a real number).

    >>> import jax.numpy as jnp
    >>> [float(s) for s in sums_of_squares(jnp.array([3.0, 4.0]), jnp.ones(2))]
    [25.0, 2.0]
    """
    parts, owners = [], []
    for i, x in enumerate(xs):
        x = x.astype(compute_dtype(x.dtype))
        # |x|^2 of a complex leaf: the squares of its real and imaginary parts,
        # two more operands of the same one loop.
        for part in (x.real, x.imag) if jnp.iscomplexobj(x) else (x,):
            parts.append(part)
            owners.append(i)
    sums = _sums(*parts)
    out = [None] * len(xs)
    for i, total in zip(owners, sums, strict=True):
        out[i] = total if out[i] is None else out[i] + total
    return tuple(out)


@jax.custom_jvp
def _sums(*xs: jax.Array) -> tuple[jax.Array, ...]:
    return tuple(
        jax.lax.platform_dependent(*xs, cpu=_cpu_sums, default=plain_sums_of_squares)
    )


@_sums.defjvp
def _sums_jvp(primals, tangents):
    # d sum(x^2) = 2 sum(x dx): linear in dx, so jax.grad transposes it too.
    dots = tuple(2 * jnp.sum(x * t) for x, t in zip(primals, tangents, strict=True))
    return _sums(*primals), dots


def plain_sums_of_squares(*xs: jax.Array) -> tuple[jax.Array, ...]:
    """``jnp.sum(x * x)`` of each of ``xs`` in at least float32: the form
    XLA:GPU/TPU fuse best."""
    xs = tuple(x.astype(compute_dtype(x.dtype)) for x in xs)
    return tuple(jnp.sum(_abs_sq(x)) for x in xs)


def _abs_sq(x: jax.Array) -> jax.Array:
    if jnp.iscomplexobj(x):
        return x.real * x.real + x.imag * x.imag
    return x * x


def _cpu_sums(*xs: jax.Array) -> tuple[jax.Array, ...]:
    if len(xs) == 1:
        # XLA folds a lone sum of row sums back into one sum over the leaf: the
        # library kernel, which reads a raw gradient at memory speed.
        return plain_sums_of_squares(*xs)
    shape = xs[0].shape
    last = shape[-1] if shape else 1
    width = next((w for w in ROW_WIDTHS if last % w == 0), None)
    if width is None or any(_last_axis_sharded(x) for x in xs):
        return _compensated_sums(*xs)
    # (..., C) -> (..., C / width, width): the leading axes keep their sharding
    # (an explicitly sharded last axis cannot be split without naming one).
    rows_shape = (*shape[:-1], last // width, width)
    squares = [jnp.square(x.reshape(rows_shape)) for x in xs]
    rows = jax.lax.reduce(
        tuple(squares),
        tuple(jnp.zeros([], x.dtype) for x in squares),
        lambda a, b: tuple(u + v for u, v in zip(a, b)),
        (len(rows_shape) - 1,),
    )
    return tuple(jnp.sum(r) for r in rows)


def _last_axis_sharded(x: jax.Array) -> bool:
    """Whether ``x``'s type shards its last axis (explicit-axis meshes only)."""
    spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None)
    return bool(spec) and len(spec) == x.ndim and spec[-1] is not None


def _compensated_sums(*xs: jax.Array) -> tuple[jax.Array, ...]:
    """Sums along the last axis (then of the rows), each carrying its error.

    Reference: Knuth's TwoSum, the error-free transformation of ``a + b``
    (TAOCP vol. 2, 4.2.2): ``s = fl(a + b)`` and ``e = (a - (s - b')) + (b -
    b')`` with ``b' = s - a`` give ``a + b = s + e`` exactly.
    """
    k = len(xs)

    def merge(a, b):
        out = []
        for i in range(k):
            (s, c), (t, d) = a[2 * i : 2 * i + 2], b[2 * i : 2 * i + 2]
            out.extend(_two_sum(s, t, c + d))
        return tuple(out)

    operands, inits = [], []
    for x in xs:
        operands += [jnp.square(x), jnp.zeros_like(x)]
        inits += [jnp.zeros([], x.dtype)] * 2
    axes = (xs[0].ndim - 1,) if xs[0].ndim else ()
    sums = jax.lax.reduce(tuple(operands), tuple(inits), merge, axes)
    return tuple(jnp.sum(sums[2 * i] + sums[2 * i + 1]) for i in range(k))


def _two_sum(a, b, carried):
    """``(s, e)``: ``s = fl(a + b)``, ``e`` its rounding error plus ``carried``."""
    s = a + b
    bb = s - a
    return s, carried + ((a - (s - bb)) + (b - bb))
