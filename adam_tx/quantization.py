"""Blockwise 8-bit quantization with dynamic (exponent-based) code maps.

A tensor is flattened, padded with zeros to a multiple of ``block_size`` and
cut into blocks. Each block keeps one float32 scale, its absolute maximum
``a = max |x|``, and one uint8 code per element: the index of the entry of a
sorted 256-value map nearest to ``x / a`` (which lies in [-1, 1]):

    code = argmin_k |map[k] - x / a|          x ~= map[code] * a

The maps are the *dynamic tree* code of Dettmers (2015), as used for optimizer
state by Dettmers et al. (2021). Read as bits, a code is: a sign bit (signed
map only); then ``e`` zero bits, whose count is the exponent; then a 1 bit that
ends the exponent; the remaining ``f`` bits are a linear fraction. Its value is

    +-10^(-e) * (0.1 + 0.9 * (k + 1) / 2^f),   k = 0 .. 2^f - 1

so each decade ``(10^-(e+1), 10^-e]`` is split evenly, large magnitudes get
many fraction bits and small ones a wide range. A code of all zeros is 0. The
signed map (7 payload bits) reaches down to 1e-6 of the block maximum, the
unsigned one (8 payload bits, for non-negative second moments) to 1e-7. The
top value of each map is exactly 1, so a block's largest element is stored
exactly.

Blocks are independent: a NaN or Inf poisons only its own block's scale.

References:
  Dettmers, "8-Bit Approximations for Parallelism in Deep Learning", ICLR 2016.
  Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
  Quantization", ICLR 2022 (arXiv:2110.02861).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

BLOCK_SIZE = 256


@functools.cache
def dynamic_map(signed: bool) -> np.ndarray:
    """The sorted 256-entry dynamic tree code map (float32, values in [-1, 1]).

    >>> m = dynamic_map(signed=False)
    >>> m.shape, float(m[0]), float(m[-1]), f"{m[1]:.1e}"
    ((256,), 0.0, 1.0, '1.0e-07')
    >>> s = dynamic_map(signed=True)
    >>> float(s[0]), float(s[-1]), int((s == 0).sum())  # -0 and +0 both decode 0
    (-1.0, 1.0, 2)
    """
    payload = 7 if signed else 8
    magnitudes = [0.0]  # the all-zero payload
    for e in range(payload):  # e leading zeros, then the 1 that ends them
        f = payload - e - 1  # fraction bits left
        k = np.arange(2**f)
        magnitudes.extend(10.0**-e * (0.1 + 0.9 * (k + 1) / 2**f))
    values = np.array(magnitudes)
    if signed:
        values = np.concatenate([-values, values])
    assert values.size == 256
    # + 0.0 turns -0.0 into 0.0, so that zero always decodes as +0.
    return (np.sort(values) + 0.0).astype(np.float32)


def nearest_code(y: jax.Array, code_map: jax.Array) -> jax.Array:
    """Index of the entry of the sorted ``code_map`` nearest to each ``y``.

    A binary search finds the neighbours ``map[i-1] < y <= map[i]``; the nearer
    one wins (ties go down). NaN maps to the last code.
    """
    n = code_map.shape[0]
    hi = jnp.clip(jnp.searchsorted(code_map, y, method="scan"), 1, n - 1)
    lo = hi - 1
    up = (code_map[hi] - y) < (y - code_map[lo])
    return jnp.where(up | jnp.isnan(y), hi, lo).astype(jnp.uint8)


class Blocks(NamedTuple):
    """A quantized tensor: codes with the tensor's shape and per-block scales."""

    codes: jax.Array  # uint8, the original shape
    absmax: jax.Array  # float32, [ceil(size / block_size)]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)


def num_blocks(size: int, block_size: int = BLOCK_SIZE) -> int:
    return max(1, math.ceil(size / block_size))


def _blocked(x: jax.Array, block_size: int) -> jax.Array:
    flat = jnp.ravel(x)
    pad = num_blocks(flat.size, block_size) * block_size - flat.size
    return jnp.pad(flat, (0, pad)).reshape(-1, block_size)


def quantize(
    x: jax.Array, *, signed: bool = True, block_size: int = BLOCK_SIZE
) -> Blocks:
    """Quantize ``x`` blockwise to the nearest code of the dynamic map.

    ``x ~= map[codes] * absmax`` per block; the error of each element is at most
    half the gap between the two map entries around ``x / absmax``, times
    ``absmax`` (0.9 / 128 of the block maximum for the signed map).

    >>> import jax.numpy as jnp
    >>> q = quantize(jnp.array([0.5, -2.0, 0.0, 1e-9]))
    >>> [round(v, 4) for v in dequantize(q).tolist()]  # 0.25 of the max: 0.2547
    [0.5094, -2.0, 0.0, 0.0]
    """
    blocks = _blocked(x.astype(jnp.float32), block_size)
    absmax = jnp.max(jnp.abs(blocks), axis=1)
    # An all-zero block has scale 0; divide by 1 instead so its codes are 0.
    scale = jnp.where(absmax > 0, absmax, 1.0)
    codes = nearest_code(blocks / scale[:, None], jnp.asarray(dynamic_map(signed)))
    codes = jnp.ravel(codes)[: x.size].reshape(x.shape)
    return Blocks(codes, absmax)


def dequantize(
    q: Blocks, *, signed: bool = True, dtype=jnp.float32, block_size: int = BLOCK_SIZE
) -> jax.Array:
    """``map[codes] * absmax``, back in the tensor's shape, as ``dtype``."""
    values = _blocked(jnp.asarray(dynamic_map(signed))[q.codes], block_size)
    out = jnp.ravel(values * q.absmax[:, None])[: q.codes.size]
    return out.reshape(q.codes.shape).astype(dtype)
