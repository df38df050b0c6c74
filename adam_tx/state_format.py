"""How a per-parameter moment is stored between steps.

A format turns a moment held in the compute dtype into what the state keeps
(``store``) and back (``load``). The moment math never sees the storage: the
same formula runs whether a moment is kept in float32, bfloat16 or a quantized
form, and every format keeps the state a plain pytree (checkpointable,
shardable), born with its parameter's sharding.

Default storage dtypes (``mu_dtype=None`` / ``nu_dtype=None``):

* ``"nearest"``: the parameter's dtype, except float16 parameters, whose
  moments are float32: float16's range (6e-8 .. 65504) loses ``v = g^2`` both
  ways (``g = 1e-3`` underflows to 0 within 3000 steps, ``g = 300`` overflows
  to inf). bfloat16 parameters keep bfloat16 moments: bfloat16 has float32's
  range, and its coarse steps are what ``"stochastic"`` is for.
* ``"stochastic"``: bfloat16, rounded stochastically (asking for stochastic
  rounding is asking for bfloat16 storage; an explicit float32 dtype stores
  float32, to nearest).
* ``"int8"`` / ``"int4"``: blockwise codes for leaves of >= 4096 elements,
  ``dtype`` (default float32) for smaller ones.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from adam_tx import quantization
from adam_tx._engine import placement
from adam_tx._engine.validate import (
    check_choice,
    check_float_dtype,
    check_nonnegative_int,
)
from adam_tx.rounding import stochastic_round_bf16

STATE_FORMATS = ("nearest", "stochastic", "int8", "int4")
BF16 = jnp.dtype(jnp.bfloat16)


def default_dtype(param: Any) -> jnp.dtype:
    """A moment's storage dtype when none is given: the parameter's, float32 for
    a float16 parameter (see the module docstring)."""
    dtype = jnp.result_type(param)
    return jnp.dtype(jnp.float32) if dtype == jnp.float16 else dtype


def cast(x: jax.Array, dtype: Any) -> jax.Array:
    """``x.astype(dtype)``, to nearest.

    XLA's own ``convert``, not the bit-level :func:`~adam_tx.rounding.to_bfloat16`
    (the same values, and ~15% faster alone on XLA:CPU, jax 0.10.2): in a step
    whose update reads the stored moment back (:func:`reads_stored`), XLA
    fuses the cheap integer operations of the bit version into the update's
    loop too, which then recomputes the rounding from the old moment, so XLA
    copies that moment before its own loop overwrites it; a narrowing
    ``convert`` it does not duplicate, and the update reads the stored array.
    ``tests/test_fast_path.py`` pins the copy-free program.
    """
    return x.astype(jnp.dtype(dtype))


class Plain(NamedTuple):
    """Store the moment as an array of ``dtype`` (None: :func:`default_dtype`)."""

    dtype: Any = None

    def init(self, param: jax.Array) -> jax.Array:
        dtype = default_dtype(param) if self.dtype is None else self.dtype
        return placement.zeros_like(param, dtype)

    def load(self, entry: jax.Array, dtype) -> jax.Array:
        return cast(entry, dtype)

    def store(self, value: jax.Array, entry: jax.Array, key=None) -> jax.Array:
        return cast(value, entry.dtype)


class Stochastic(NamedTuple):
    """Like :class:`Plain`, but bfloat16 storage rounds stochastically.

    ``store`` takes a PRNG key (the transform keeps one in ``state.rng``, seeded
    by ``seed``, and derives a key per step, leaf and moment with ``fold_in``);
    see :mod:`adam_tx.rounding`. Storage in any other dtype rounds to nearest.
    """

    dtype: Any = BF16
    seed: int = 0
    needs_key = True

    def init(self, param: jax.Array) -> jax.Array:
        return Plain(self.dtype).init(param)

    def load(self, entry: jax.Array, dtype) -> jax.Array:
        return cast(entry, dtype)

    def store(self, value: jax.Array, entry: jax.Array, key=None) -> jax.Array:
        if entry.dtype != BF16:
            return cast(value, entry.dtype)
        return stochastic_round_bf16(value, key)


class Blockwise(NamedTuple):
    """Blockwise 8- or 4-bit storage (:mod:`adam_tx.quantization`).

    A leaf of at least ``min_size`` elements is kept as
    :class:`~adam_tx.quantization.Blocks` (8 bits: one uint8 code per element
    and one float32 scale per block of 256 along the last axis, 2.03
    bytes/param for Adam's two moments) or
    :class:`~adam_tx.quantization.Nibbles` (4 bits, two codes per byte, blocks
    of 128: 1.06 bytes/param; a leaf whose last axis is odd gets 8-bit codes).
    A smaller leaf is a plain array of ``dtype`` (default float32), where the
    codes would save little and cost accuracy.

    ``signed`` picks the code map: signed for a first moment; for a
    non-negative moment (a second moment, AdaMax's norm) the unsigned map,
    which has no zero, applied to the moment's square root: ``sqrt(v)`` spans
    half the decades of ``v``, and is never stored as 0, so the update
    ``m / (sqrt(v) + eps)`` cannot blow up where ``v`` is small in its block
    (Li et al. 2023).
    """

    signed: bool = True
    dtype: Any = None
    bits: int = 8
    min_size: int = 4096

    @property
    def block_size(self) -> int:
        return (
            quantization.BLOCK_SIZE if self.bits == 8 else quantization.BLOCK_SIZE_4BIT
        )

    def _bits_for(self, shape: tuple[int, ...]) -> int:
        """4 where pairs of codes along the last axis can be packed, else 8."""
        return 4 if self.bits == 4 and shape and shape[-1] % 2 == 0 else 8

    def init(self, param: jax.Array) -> Any:
        shape = tuple(jnp.shape(param))
        if int(np.prod(shape, dtype=np.int64)) < self.min_size:
            return Plain(self.dtype or jnp.float32).init(param)
        bits = self._bits_for(shape)
        q = quantization.quantize(
            placement.zeros_like(param, jnp.float32), signed=self.signed, bits=bits
        )
        return _placed(q, param)

    def load(self, entry: Any, dtype) -> jax.Array:
        q = quantization.as_quantized(entry)
        if q is None:
            return entry.astype(dtype)
        x = quantization.dequantize(q, signed=self.signed)
        return (x if self.signed else x * x).astype(dtype)

    def coded(self, value: jax.Array) -> jax.Array:
        """What the codes hold of a moment: the moment, or its square root."""
        return value if self.signed else jnp.sqrt(value)

    def store(self, value: jax.Array, entry: Any, key=None, absmax=None) -> Any:
        """The codes of ``value``; ``absmax``: the block maxima of
        ``coded(value)`` (:func:`block_scales`), when already computed."""
        q = quantization.as_quantized(entry)
        if q is None:
            return value.astype(entry.dtype)
        bits = 4 if isinstance(q, quantization.Nibbles) else 8
        new = quantization.quantize(
            self.coded(value), signed=self.signed, bits=bits, absmax=absmax
        )
        return quantization.like(entry, new)


def quantized(fmt: Any, entry: Any) -> bool:
    """Whether ``entry`` is kept by ``fmt`` as blockwise codes."""
    return isinstance(fmt, Blockwise) and quantization.as_quantized(entry) is not None


def block_scales(fmts, values, entries) -> list[Any]:
    """Per moment, the block maxima its codes will be scaled by (None for a
    moment that is not quantized): those of the moments stored with one block
    grid in one loop (:func:`~adam_tx.quantization.block_maxima`)."""
    out: list[Any] = [None] * len(fmts)
    groups: dict[int, list[int]] = {}
    for i, (fmt, entry) in enumerate(zip(fmts, entries)):
        if quantized(fmt, entry):
            block = _block_size(quantization.as_quantized(entry))
            groups.setdefault(block, []).append(i)
    for block, members in groups.items():
        xs = [fmts[i].coded(values[i]) for i in members]
        for i, m in zip(members, quantization.block_maxima(xs, block)):
            out[i] = m
    return out


def _placed(q: Any, param: Any) -> Any:
    """Eager ``init`` on a committed, sharded parameter: codes on the
    parameter's sharding, scales by :func:`~adam_tx.quantization.scale_spec`
    (traced or explicit-typed, they are placed by the computation itself)."""
    sharding = getattr(param, "sharding", None)
    if placement.is_tracer(param) or not isinstance(sharding, NamedSharding):
        return q
    spec = quantization.scale_spec(
        tuple(param.shape), sharding.spec, sharding.mesh, _block_size(q)
    )
    fields = q._asdict()
    scales = jax.device_put(fields.pop("absmax"), NamedSharding(sharding.mesh, spec))
    ((name, codes),) = fields.items()
    if name == "codes":
        codes = jax.device_put(codes, sharding)
    return type(q)(**{name: codes, "absmax": scales})


def _block_size(q: Any) -> int:
    if isinstance(q, quantization.Nibbles):
        return quantization.BLOCK_SIZE_4BIT
    return quantization.BLOCK_SIZE


def _concrete_seed(seed: Any) -> Any:
    """None means 0; a concrete integer array (``optax.inject_hyperparams``
    passes every number as one) is its integer. A traced seed stays as given
    and is refused: the rounding key is fixed when the transform is built."""
    if seed is None:
        return 0
    concrete = isinstance(seed, jax.Array) and not isinstance(seed, jax.core.Tracer)
    if concrete and seed.shape == () and jnp.issubdtype(seed.dtype, jnp.integer):
        return int(seed)
    return seed


def moment_format(
    name: str,
    dtype: Any,
    state_format: str = "nearest",
    *,
    signed: bool = True,
    seed: int | None = 0,
) -> Plain | Stochastic | Blockwise:
    """The storage format for a moment argument such as ``mu_dtype``.

    ``state_format`` is one of :data:`STATE_FORMATS`:

    * ``"nearest"`` stores the moment as ``dtype`` rounded to nearest (None:
      the parameter's dtype, float32 for float16 parameters);
    * ``"stochastic"`` stores it as ``dtype`` (None: bfloat16), rounding
      bfloat16 storage stochastically with ``seed``;
    * ``"int8"`` / ``"int4"`` quantize leaves of at least 4096 elements
      blockwise (``signed`` picks the code map) and keep smaller ones in
      ``dtype`` (None: float32).

    >>> moment_format("mu_dtype", None, "stochastic").dtype
    dtype(bfloat16)
    """
    dtype = check_float_dtype(name, dtype)
    check_choice("state_format", state_format, STATE_FORMATS)
    seed = _concrete_seed(seed)
    check_nonnegative_int("seed", seed)
    if state_format == "stochastic":
        return Stochastic(BF16 if dtype is None else jnp.dtype(dtype), seed)
    if state_format in ("int8", "int4"):
        return Blockwise(signed, dtype, int(state_format[3:]))
    return Plain(dtype)


def needs_key(fmt: Any) -> bool:
    """Whether ``fmt.store`` needs a PRNG key."""
    return getattr(fmt, "needs_key", False)


def reads_stored(fmt: Any) -> bool:
    """Whether the update reads this moment as stored (``load(store(new))``)
    rather than as computed (``new``): True for :class:`Plain` and
    :class:`Stochastic`, False for :class:`Blockwise`.

    With bfloat16 storage the update then uses the rounded moment, as
    PyTorch's optimizers do with bfloat16 state, and XLA reads it from the
    stored array. The unrounded one would have to be kept in a float32
    temporary, or recomputed in the update's loop from the old moment, which
    XLA then copies before the moment's own loop overwrites it: 61 MiB of
    temporaries and 3x the float32 step time at 16M parameters (XLA:CPU, jax
    0.10.2). For float32 moments both are the same value.

    Blockwise codes are not read back: the update uses the moment before
    quantization (its error enters from the next step on), recomputed in the
    update's own loop from the old codes; the encoding loops run apart from
    it (block scales first, from one variadic max over both moments), so the
    old codes are the only thing XLA copies (1 byte per element and moment;
    ``tests/test_fast_path.py`` pins it).
    """
    return not isinstance(fmt, Blockwise)
