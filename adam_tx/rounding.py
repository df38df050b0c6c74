"""Rounding float32 to bfloat16: to nearest, and stochastically.

A bfloat16 is a float32 with its low 16 bits dropped. Rounding to nearest loses
any update smaller than half a bfloat16 step: ``v <- 0.999 v + 0.001 g^2``
stalls once ``0.001 g^2`` is below ``2^-9 v``. Stochastic rounding instead
rounds up with probability equal to the dropped fraction,

    P(round up) = (x - floor_bf16(x)) / (ceil_bf16(x) - floor_bf16(x))

so ``E[round(x)] = x`` and small updates survive on average. It is computed on
the bits: add a uniform random integer in [0, 2^16) to the float32 bit pattern
(sign-magnitude, so this rounds the magnitude away from zero with exactly that
probability) and truncate the low 16 bits.

The random integers are a counter-based hash (:func:`hash_bits`) of the key and
the element's index: two rounds of MurmurHash3's 32-bit finalizer, a dozen
integer operations per element that fuse into the update loop, where
``jax.random.bits`` (threefry) costs 20 rounds per element. The same key gives
the same bits, on one device or sharded.

Both conversions are also written on the bits (:func:`to_bfloat16`,
:func:`from_bfloat16`; ``tests/test_rounding.py`` checks they equal
``astype``). Alone they are a little faster than XLA:CPU's ``convert`` (jax
0.10.2), but the state formats use ``convert``
(:func:`adam_tx.state_format.cast`): inside a step XLA keeps a rounded moment
that the update reads back in memory only when the rounding is a ``convert``.

References:
  Gupta et al., "Deep Learning with Limited Numerical Precision", ICML 2015.
  Zamirai et al., "Revisiting BFloat16 Training", arXiv:2010.06192, 2020.
  Appleby, "MurmurHash3" (public domain), the 32-bit finalizer ``fmix32``.
  Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011
  (counter-based generators).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_HIGH = np.uint32(0xFFFF0000)


def _bits(x: jax.Array) -> jax.Array:
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


def to_bfloat16(x: jax.Array) -> jax.Array:
    """``x`` rounded to the nearest bfloat16, ties to even (as ``astype``).

    ``bits + 0x7FFF + (bit 16 of bits)``, then the high 16 bits; NaN stays a
    (quiet) NaN.

    >>> import jax.numpy as jnp
    >>> to_bfloat16(jnp.array([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8])).tolist()
    [1.0, 1.015625]
    """
    x = jnp.asarray(x, jnp.float32)
    bits = _bits(x)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) >> 16
    rounded = jnp.where(jnp.isnan(x), (bits >> 16) | 0x40, rounded)
    half = jax.lax.convert_element_type(rounded, jnp.uint16)
    return jax.lax.bitcast_convert_type(half, jnp.bfloat16)


def from_bfloat16(x: jax.Array) -> jax.Array:
    """A bfloat16 ``x`` as float32 (exact: its bits, shifted up 16)."""
    half = jax.lax.bitcast_convert_type(x, jnp.uint16)
    bits = jax.lax.convert_element_type(half, jnp.uint32) << 16
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's finalizer: a bijection of uint32 that mixes every bit."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
    """The row-major index of every element (uint32, wrapping past 2^32)."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        iota = jax.lax.broadcasted_iota(jnp.uint32, shape, axis)
        index = index + iota * np.uint32(stride % 2**32)
        stride *= shape[axis]
    return index


def _key_words(key: jax.Array) -> list[jax.Array]:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    key = jnp.asarray(key).astype(jnp.uint32)
    return [key[..., i] for i in range(key.shape[-1])]


def hash_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform uint32 bits for every element of ``shape``, from ``key``.

    ``h = fmix32(fmix32(i * 0x9E3779B9 ^ k0) ^ k1)`` for the element index
    ``i`` and the key's words ``k0, k1`` (each further word folded in the same
    way). For a fixed key, ``i -> h`` is a bijection of uint32, so the bits of
    a leaf's elements never repeat. ``key`` is a raw ``uint32[2]`` key
    (``jax.random.PRNGKey``) or a typed one (``jax.random.key``).

    >>> import jax
    >>> a = hash_bits(jax.random.PRNGKey(0), (4,))
    >>> again = hash_bits(jax.random.PRNGKey(0), (4,))
    >>> a.dtype, len(set(a.tolist())), bool((a == again).all())
    (dtype('uint32'), 4, True)
    """
    h = _flat_index(tuple(shape)) * np.uint32(0x9E3779B9)
    for word in _key_words(key):
        h = _fmix32(h ^ word)
    return h


def stochastic_round_bf16(x: jax.Array, key: jax.Array) -> jax.Array:
    """Round ``x`` to bfloat16 up or down at random, unbiased in expectation.

    NaN and infinities pass through unchanged. The randomness is
    :func:`hash_bits` of ``key``: pass a different key for every step, leaf
    and moment (``jax.random.fold_in``).

    >>> import jax, jax.numpy as jnp
    >>> x = jnp.full([10000], 1.0 + 2.0**-10)  # a quarter of a bf16 step above 1
    >>> r = stochastic_round_bf16(x, jax.random.PRNGKey(0)).astype(jnp.float32)
    >>> sorted(set(r.tolist())), round(float(r.mean() - 1.0) * 2**10, 1)
    ([1.0, 1.0078125], 1.0)
    """
    x = jnp.asarray(x, jnp.float32)
    noise = hash_bits(key, x.shape) >> 16
    rounded = (_bits(x) + noise) & _HIGH
    out = jax.lax.bitcast_convert_type(rounded, jnp.float32)
    # Exact: the low 16 bits are zero (or x is not finite, and passes as is).
    return jnp.where(jnp.isfinite(x), out, x).astype(jnp.bfloat16)
