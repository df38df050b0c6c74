"""Ordering loops by a dependency that changes no bit.

The XLA behaviour relied on (measured with jax 0.10.2, XLA:CPU): when a loop
reads a buffer that a sibling loop overwrites in place (a donated moment, the
parameters), and nothing orders the two, XLA copies the buffer before the
step, so that either order is correct. A data dependency of the writing loop
on the reading loop's result removes the copy: the reader runs first. The
dependency is made bitwise: ``x | ((bits(y) >> h) >> h)`` with ``h`` half the
bit width is ``x`` for every ``y``, and XLA does not fold the two shifts to
zero. Taking ``y`` through a square root (:func:`adam_tx._engine.xla.once.root`)
keeps XLA from copying the scalar work behind it into every loop.

Pinned by ``tests/test_xla_rules.py``: if the copy no longer appears without
the dependency, or still appears with it, that test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

from adam_tx._engine.xla.once import root


def _zero_bits(y: jax.Array) -> jax.Array:
    """``(bits(y) >> h) >> h``, ``h`` half of ``y``'s width: 0, as a uint32."""
    width = 8 * jnp.dtype(y.dtype).itemsize
    uint = jnp.dtype(f"uint{width}")
    half = jnp.asarray(width // 2, uint)
    bits = jax.lax.bitcast_convert_type(y, uint)
    srl = jax.lax.shift_right_logical
    return srl(srl(bits, half), half).astype(jnp.uint32)


def zero_from(scalars: Iterable[jax.Array]) -> jax.Array:
    """A ``uint32`` 0 that XLA sees as computed from every one of ``scalars``,
    each taken through :func:`~adam_tx._engine.xla.once.root` (sums over leaves)."""
    zero = jnp.uint32(0)
    for s in scalars:
        zero = zero | _zero_bits(root(s).astype(jnp.float32))
    return zero


@jax.custom_jvp
def or_zero_bits(x: jax.Array, zero: jax.Array) -> jax.Array:
    """``x``, bit for bit (``zero`` is 0), but computed from ``zero``.

    Its derivative is the identity in ``x``: a bitcast has no tangent in JAX,
    and without this rule every derivative flowing through an ordered value
    (the learning rate, a norm reading the parameters) came out zero. The rule
    changes nothing in the forward program.
    """
    uint = jnp.dtype(f"uint{8 * x.dtype.itemsize}")
    bits = jax.lax.bitcast_convert_type(x, uint) | zero.astype(uint)
    return jax.lax.bitcast_convert_type(bits, x.dtype)


@or_zero_bits.defjvp
def _or_zero_bits_jvp(primals, tangents):
    x, zero = primals
    dx, _ = tangents
    return or_zero_bits(x, zero), dx


def ordered_after(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x``, bit for bit, but computed from the scalar ``y``: the loop writing
    ``x`` runs after the loop computing ``y``. ``y`` is used as it is (an
    element of an array, not a sum: nothing to compute once), and ``x`` has
    no derivative rule through it: moments are not differentiated."""
    uint = jnp.dtype(f"uint{8 * jnp.dtype(x.dtype).itemsize}")
    as_bits = jax.lax.bitcast_convert_type(x, uint)
    return jax.lax.bitcast_convert_type(as_bits | _zero_bits(y).astype(uint), x.dtype)


def after(scalars: Iterable[jax.Array], arrays: bool = False) -> Callable[[Any], Any]:
    """``x -> x`` for floating scalars (and arrays, with ``arrays``), bit for
    bit, but computed from every one of ``scalars``; other values pass as they
    are. For ``jax.tree.map`` over a pytree of per-step values."""
    zero = zero_from(scalars)

    def ordered(x):
        if not isinstance(x, jax.Array) or (x.shape and not arrays):
            return x
        if not jnp.issubdtype(x.dtype, jnp.floating):
            return x
        return or_zero_bits(x, zero)

    return ordered


def entry_after(entry: Any, other: Any) -> Any:
    """:func:`ordered_after` for stored moments: every array of ``entry`` (a
    plain array, or the codes and scales of a quantized one) after the first
    element of the first array of ``other`` (a scalar: the order costs no
    pass)."""
    y = jax.tree.leaves(other)[0]
    if not jnp.size(y):
        return entry
    first = _first_element(y)
    return jax.tree.map(lambda x: ordered_after(x, first), entry)


def _first_element(y: jax.Array) -> jax.Array:
    """``ravel(y)[0]``; on explicitly sharded axes (where jax does not slice a
    sharded dimension) taken in auto mode, replicated."""
    spec = getattr(getattr(jax.typeof(y), "sharding", None), "spec", None)
    if spec is not None and any(a is not None for a in spec):
        take = jax.sharding.auto_axes(
            lambda t: jnp.ravel(t)[0], out_sharding=jax.sharding.PartitionSpec()
        )
        return take(y)
    return jnp.ravel(y)[0]


def shadow(tree: Any, y: jax.Array, salt: int = 0) -> Any:
    """Every array of ``tree``, bit for bit, but computed from the scalar
    ``y``: values XLA cannot merge with the originals, nor with the shadows
    of another ``salt`` (``0 <= salt < 16``).

    The XLA behaviour relied on (jax 0.10.2, XLA:CPU): when a loop reads an
    elementwise expression and also, through a reduction, that expression's
    maxima (a new moment and its block scales, when the moment is encoded),
    XLA stores the expression in a leaf-sized temporary and reads it back in
    both loops. A reduction of the same expression computed from shadows of
    its inputs is another value: XLA computes it inside the reduction, and
    again inside the encoding loop, and stores nothing.
    """
    bits = jax.lax.bitcast_convert_type(y, jnp.dtype(f"uint{8 * y.dtype.itemsize}"))
    srl = jax.lax.shift_right_logical
    # (b >> (16 + salt)) >> 16 is 0 for any 32-bit b; XLA folds neither shift.
    zero = srl(srl(bits.astype(jnp.uint32), jnp.uint32(16 + salt)), jnp.uint32(16))

    def one(x):
        if not isinstance(x, jax.Array) or not x.shape:
            return x
        if jnp.issubdtype(x.dtype, jnp.floating):
            return or_zero_bits(x, zero)
        if jnp.issubdtype(x.dtype, jnp.integer):
            return x | zero.astype(x.dtype)
        return x

    return jax.tree.map(one, tree)
