"""How a per-parameter moment is stored between steps.

A format turns a moment held in the compute dtype into what the state keeps
(``store``) and back (``load``). The moment math never sees the storage: the
same formula runs whether a moment is kept in float32, bfloat16 or a quantized
form, and every format keeps the state a plain pytree (checkpointable,
shardable).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adam_tx import _placement, quantization
from adam_tx._validate import check_choice, check_float_dtype, check_nonnegative_int
from adam_tx.rounding import stochastic_round_bf16

STATE_FORMATS = ("nearest", "stochastic", "int8")


class Plain(NamedTuple):
    """Store the moment as an array of ``dtype`` (None: the parameter's dtype)."""

    dtype: Any = None

    def init(self, param: jax.Array) -> jax.Array:
        return _placement.zeros_like(param, self.dtype or jnp.result_type(param))

    def load(self, entry: jax.Array, dtype) -> jax.Array:
        return entry.astype(dtype)

    def store(self, value: jax.Array, entry: jax.Array, key=None) -> jax.Array:
        return value.astype(entry.dtype)


class Stochastic(NamedTuple):
    """Like :class:`Plain`, but bfloat16 storage rounds stochastically.

    ``store`` takes a PRNG key (the transform keeps one in ``state.rng``, seeded
    by ``seed``, and derives a key per step, leaf and moment with ``fold_in``);
    see :mod:`adam_tx.rounding`. Storage in any other dtype rounds to nearest.
    """

    dtype: Any = None
    seed: int = 0
    needs_key = True

    def init(self, param: jax.Array) -> jax.Array:
        return Plain(self.dtype).init(param)

    def load(self, entry: jax.Array, dtype) -> jax.Array:
        return entry.astype(dtype)

    def store(self, value: jax.Array, entry: jax.Array, key=None) -> jax.Array:
        if entry.dtype != jnp.bfloat16:
            return value.astype(entry.dtype)
        return stochastic_round_bf16(value, key)


class Int8(NamedTuple):
    """Blockwise 8-bit storage (:mod:`adam_tx.quantization`) for large leaves.

    A leaf of at least ``min_size`` elements is kept as
    :class:`adam_tx.quantization.Blocks` (one uint8 code per element and one
    float32 absmax per ``block_size`` elements: 2.03 bytes/param for Adam's two
    moments); a smaller leaf is a plain array of ``dtype`` (default float32),
    where 8 bits would save little and cost accuracy. ``signed`` picks the code
    map: signed for a first moment, unsigned for a non-negative second moment.
    """

    signed: bool = True
    dtype: Any = None
    block_size: int = quantization.BLOCK_SIZE
    min_size: int = 4096

    def init(self, param: jax.Array) -> Any:
        if jnp.size(param) < self.min_size:
            return Plain(self.dtype or jnp.float32).init(param)
        zero = quantization.quantize(
            jnp.zeros(jnp.shape(param)), signed=self.signed, block_size=self.block_size
        )
        return zero

    def load(self, entry: Any, dtype) -> jax.Array:
        if not isinstance(entry, quantization.Blocks):
            return entry.astype(dtype)
        _check_not_explicitly_sharded(entry.codes)
        return quantization.dequantize(
            entry, signed=self.signed, dtype=dtype, block_size=self.block_size
        )

    def store(self, value: jax.Array, entry: Any, key=None) -> Any:
        if not isinstance(entry, quantization.Blocks):
            return value.astype(entry.dtype)
        return quantization.quantize(
            value, signed=self.signed, block_size=self.block_size
        )


def _check_not_explicitly_sharded(codes: jax.Array) -> None:
    """Blocks run across the flattened leaf: an explicit sharding cannot follow."""
    spec = getattr(getattr(jax.typeof(codes), "sharding", None), "spec", None)
    if spec and any(axis is not None for axis in spec):
        raise NotImplementedError(
            f"state_format='int8' keeps a moment in blocks of the flattened "
            f"leaf, which a leaf of shape {tuple(codes.shape)} sharded as "
            f"{spec} on an explicit-axis mesh cannot be split into; use a mesh "
            f"with Auto axes (jax.make_mesh(..., axis_types=(AxisType.Auto, "
            f"...))) or state_format='stochastic'"
        )


def moment_format(
    name: str,
    dtype: Any,
    state_format: str = "nearest",
    *,
    signed: bool = True,
    seed: int = 0,
) -> Plain | Stochastic | Int8:
    """The storage format for a moment argument such as ``mu_dtype``.

    ``state_format`` is one of :data:`STATE_FORMATS`: ``"nearest"`` stores the
    moment as ``dtype`` rounded to nearest; ``"stochastic"`` rounds bfloat16
    storage stochastically (with ``seed``); ``"int8"`` quantizes leaves of at
    least 4096 elements blockwise (``signed`` picks the code map) and keeps
    smaller ones in ``dtype`` (default float32).
    """
    dtype = check_float_dtype(name, dtype)
    check_choice("state_format", state_format, STATE_FORMATS)
    check_nonnegative_int("seed", seed)
    if state_format == "stochastic":
        return Stochastic(dtype, seed)
    if state_format == "int8":
        return Int8(signed, dtype)
    return Plain(dtype)


def needs_key(fmt: Any) -> bool:
    """Whether ``fmt.store`` needs a PRNG key."""
    return getattr(fmt, "needs_key", False)
