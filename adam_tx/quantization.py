"""Blockwise 8- and 4-bit quantization with dynamic (exponent-based) code maps.

A tensor is cut into blocks along its last axis (several whole rows of the
second-last axis when the last axis is shorter than a block). Each block keeps
one float32 scale, its largest finite magnitude ``a = max |x|``, and one code
per element: the index of the value of a code map nearest to ``x / a``:

    code = argmin_k |map[k] - x / a|          x ~= map[code] * a

The maps are the *dynamic tree* code of Dettmers (2015), as used for optimizer
state by Dettmers et al. (2021). Read as bits, a code is: a sign bit (signed
map only); then ``e`` zero bits, whose count is the exponent; then a 1 bit that
ends the exponent; the remaining ``f`` bits are a linear fraction. Its value is

    +-10^(-e) * (0.1 + 0.9 * (k + 1) / 2^f),   k = 0 .. 2^f - 1

so each decade ``(10^-(e+1), 10^-e]`` is split evenly. With 8 bits the signed
map reaches down to 1e-6 of the block maximum, the unsigned one to 1e-7; with
4 bits, to 1e-2 and 1e-3. The top value of each map is exactly 1, so a block's
largest element is stored exactly.

One code of each map decodes to NaN (:func:`codebook`): the signed map's second
zero (-0), and the unsigned map's zero. The unsigned map therefore has no zero:
a value below its smallest code is stored as that code, never as 0, which is
what a second moment needs (Li et al. 2023: a second moment rounded to zero
turns ``m / (sqrt(v) + eps)`` into ``m / eps``). A non-finite element is stored
as the NaN code and the block scale ignores it: it stays visible, and its
neighbours keep their values.

Codes come without a search (:func:`encode`), exactly as the nearest-value
search (:func:`reference_encode`) returns them, ties included: 8-bit codes in
closed form (the decade from comparisons, the position in it by arithmetic),
4-bit codes from a table of float32 bit-pattern bins (:func:`encode_table`).
Decoding is a table lookup (:func:`decode`). XLA:CPU behaviours relied on
(jax 0.10.2): ``docs/contributing.md``, "XLA behaviours".

References:
  Dettmers, "8-Bit Approximations for Parallelism in Deep Learning", ICLR 2016.
  Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
  Quantization", ICLR 2022 (arXiv:2110.02861).
  Li, Chen & Zhu, "Memory Efficient Optimizers with 4-bit States", NeurIPS 2023
  (arXiv:2309.01507).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from adam_tx._engine import placement

BLOCK_SIZE = 256  # 8-bit codes
BLOCK_SIZE_4BIT = 128


@functools.cache
def dynamic_map(signed: bool, bits: int = 8) -> np.ndarray:
    """The sorted ``2**bits``-entry dynamic tree code map (float32, in [-1, 1]).

    >>> m = dynamic_map(signed=False)
    >>> m.shape, float(m[0]), float(m[-1]), f"{m[1]:.1e}"
    ((256,), 0.0, 1.0, '1.0e-07')
    >>> s = dynamic_map(signed=True)
    >>> float(s[0]), float(s[-1]), int((s == 0).sum())  # -0 and +0 both decode 0
    (-1.0, 1.0, 2)
    """
    payload = bits - 1 if signed else bits
    magnitudes = [0.0]  # the all-zero payload
    for e in range(payload):  # e leading zeros, then the 1 that ends them
        f = payload - e - 1  # fraction bits left
        k = np.arange(2**f)
        magnitudes.extend(10.0**-e * (0.1 + 0.9 * (k + 1) / 2**f))
    values = np.array(magnitudes)
    if signed:
        values = np.concatenate([-values, values])
    assert values.size == 2**bits
    # + 0.0 turns -0.0 into 0.0, so that zero always decodes as +0.
    return (np.sort(values) + 0.0).astype(np.float32)


class Codebook(NamedTuple):
    """What a code means: ``values[code]``, with one code reserved for NaN.

    The magnitudes are piecewise linear in the magnitude index ``m``: for
    ``2^f - 1 <= m < 2^(f+1)``, ``mag(m) = starts[f] + steps[f] (m - 2^f + 1)``
    with ``starts[f] = mag(2^f - 1)``. The constants carry few enough bits
    that every ``mag(m)`` is exact float32 arithmetic (fused multiply-add or
    not), so the closed forms below reproduce ``values`` bit for bit.
    """

    values: np.ndarray  # float32[2^bits]; NaN at nan_code
    nan_code: int
    finite: np.ndarray  # the other values, sorted; finite[j] is code j + (j >= nan)
    starts: np.ndarray  # float64[payload + 1]: mag(2^f - 1); starts[payload] = 1
    steps: np.ndarray  # float64[payload]
    payload: int  # bits of magnitude


def _round_bits(x: float, bits: int) -> float:
    """``x`` rounded to ``bits`` significant bits."""
    mantissa, exponent = math.frexp(x)
    return math.ldexp(round(mantissa * 2**bits), exponent - bits)


def _exact_magnitudes(payload: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dettmers's magnitudes, with each decade's start rounded to 13 bits
    (1e-4 relative) so that ``start + step * i`` is exact in float32."""
    starts = np.zeros(payload + 1)
    starts[payload] = 1.0
    for f in range(
        payload - 1, 0, -1
    ):  # decade e = payload - 1 - f starts at 10^-(e+1)
        starts[f] = _round_bits(10.0 ** -(payload - f), 13)
    steps = (starts[1:] - starts[:-1]) / 2.0 ** np.arange(payload)
    mags = [0.0]
    for f in range(payload):
        i = np.arange(1, 2**f + 1)
        mags.extend(starts[f] + steps[f] * i)
    mags = np.array(mags)
    assert np.array_equal(mags.astype(np.float32).astype(np.float64), mags)
    assert np.array_equal(steps.astype(np.float32).astype(np.float64), steps)
    return mags, starts, steps


@functools.cache
def codebook(signed: bool, bits: int = 8) -> Codebook:
    """The codes of the signed or unsigned map of ``bits`` bits.

    Code order is the order of :func:`dynamic_map`, whose values these are to
    1e-4 relative.

    >>> book = codebook(signed=False)
    >>> book.nan_code, f"{book.values[1]:.2e}", float(book.values[255])
    (0, '1.00e-07', 1.0)
    >>> codebook(signed=True).nan_code  # the map's -0
    127
    """
    payload = bits - 1 if signed else bits
    mags, starts, steps = _exact_magnitudes(payload)
    values = np.concatenate([-mags[::-1], mags]) if signed else mags
    values = values.astype(np.float32)
    nan_code = 2 ** (bits - 1) - 1 if signed else 0
    assert values[nan_code] == 0
    values[nan_code] = np.nan
    finite = np.delete(values, nan_code)
    return Codebook(values, nan_code, finite, starts, steps, payload)


def nearest_code(y: jax.Array, code_map: jax.Array) -> jax.Array:
    """Index of the entry of the sorted ``code_map`` nearest to each ``y``.

    A binary search finds the neighbours ``map[i-1] < y <= map[i]``; the nearer
    one wins (ties go down). NaN maps to the last index. This is the plain
    reference the closed form :func:`encode` is tested against.
    """
    n = code_map.shape[0]
    hi = jnp.clip(jnp.searchsorted(code_map, y, method="scan"), 1, n - 1)
    lo = hi - 1
    up = (code_map[hi] - y) < (y - code_map[lo])
    return jnp.where(up | jnp.isnan(y), hi, lo).astype(jnp.int32)


def reference_encode(y: jax.Array, signed: bool = True, bits: int = 8) -> jax.Array:
    """Codes by search over the finite values; non-finite ``y``: the NaN code."""
    book = codebook(signed, bits)
    j = nearest_code(jnp.asarray(y, jnp.float32), jnp.asarray(book.finite))
    code = j + (j >= book.nan_code)
    return jnp.where(jnp.isfinite(y), code, book.nan_code).astype(jnp.uint8)


def _magnitude_index(a: np.ndarray, neg: bool, mags: np.ndarray, unsigned: bool):
    """NumPy, float32: the magnitude index :func:`reference_encode` gives
    ``|y| = a`` (the nearer of the two magnitudes around ``a``, compared as
    ``(hi - a) < (a - lo)`` in float32; for negative ``y`` the larger
    magnitude wins a tie; the unsigned map has no zero)."""
    a = np.asarray(a, np.float32)
    k = np.clip(np.searchsorted(mags, a, side="right") - 1, 0, mags.size - 2)
    with np.errstate(invalid="ignore", over="ignore"):
        d_hi, d_lo = mags[k + 1] - a, a - mags[k]
    m = k + np.where(neg, d_hi <= d_lo, d_hi < d_lo)
    return np.maximum(m, 1) if unsigned else m


class EncodeTable(NamedTuple):
    """Bins of the float32 bit pattern of ``a = |y|`` (:func:`encode`).

    Bin ``j >= 1`` holds the floats whose pattern shifted right by ``shift``
    is ``j - 1 + key0`` (``2^(23 - shift)`` bins per octave); bin 0 all
    smaller ones, the last bin all from 1 up. Each bin's entry packs its
    lowest magnitude index ``m0`` (above bit ``shift + 1``) and the low bits
    of the first pattern in the bin whose index is ``m0 + 1`` (``2^shift``:
    none), so that ``m = m0 + (low bits of a >= threshold)``. Signed maps
    keep a second table for negative ``y`` (its ties go the other way).
    """

    shift: int
    key0: int
    bins: int
    entries: np.ndarray  # int32[bins] (unsigned) or int32[2 bins] (signed)


def _bin_table(mags: np.ndarray, signed: bool, per_octave: int, low_octave: int):
    shift = 23 - per_octave
    key0 = (127 + low_octave) << per_octave
    bins = ((-low_octave) << per_octave) + 2
    j = np.arange(bins, dtype=np.int64)
    first = np.where(j == 0, 0, (j - 1 + key0) << shift)
    last = np.where(j == 0, key0 << shift, (j + key0) << shift) - 1
    view = lambda b: np.asarray(b, np.uint32).view(np.float32)
    tables = []
    for neg in (False, True) if signed else (False,):
        m0 = _magnitude_index(view(first), neg, mags, not signed)
        m1 = _magnitude_index(view(last), neg, mags, not signed)
        m0[-1] = m1[-1] = mags.size - 1  # from 1 up: the largest
        # Bin 0 and the last bin span several keys: they must hold one index.
        if np.any(m1 - m0 > 1) or m1[0] != m0[0]:
            return None
        lo, hi = first, last
        for _ in range(32):  # the first pattern whose index is m0 + 1
            mid = (lo + hi) // 2
            up = _magnitude_index(view(mid), neg, mags, not signed) > m0
            hi, lo = np.where(up, mid, hi), np.where(up, lo, mid + 1)
        low = np.where(m1 > m0, hi & ((1 << shift) - 1), 1 << shift)
        tables.append((m0 << (shift + 1)) | low)
    entries = np.concatenate(tables)
    assert entries.max() < 2**31
    return EncodeTable(shift, key0, bins, entries.astype(np.int32))


@functools.cache
def encode_table(signed: bool, bits: int = 8) -> EncodeTable:
    """The coarsest bins (fewest per octave, then fewest octaves) in which
    every bin holds at most two neighbouring magnitude indices."""
    mags = _exact_magnitudes(bits - 1 if signed else bits)[0].astype(np.float32)
    for per_octave in range(12):
        for low_octave in range(-1, -64, -1):
            table = _bin_table(mags, signed, per_octave, low_octave)
            if table is not None:
                return table
    raise AssertionError("no bins found")  # pragma: no cover


def _take(table: np.ndarray, index: jax.Array) -> jax.Array:
    """``table[index]`` for an index known to be in range: XLA:CPU (jax
    0.10.2) fuses the gather into the loop around it and reads the table from
    cache, faster than any chain of selects."""
    index = index.astype(jnp.uint32)  # no negative indices to wrap
    # On an explicit-axis mesh the gather's output sharding is not inferred
    # from a replicated table and a sharded index: it is the index's.
    sharding = placement.explicit_sharding(index)
    out = {} if sharding is None else {"out_sharding": sharding}
    return jnp.asarray(table).at[index].get(mode="promise_in_bounds", **out)


def _f32(x: float) -> np.float32:
    return np.float32(x)


def _encode_by_decades(y: jax.Array, signed: bool, bits: int) -> jax.Array:
    """The code of each ``y`` in [-1, 1] (unsigned: [0, 1]), in closed form.

    The decade of ``|y|`` (``starts[f] <= |y| < starts[f+1]``) comes from
    comparisons; in it the magnitudes are evenly spaced, so
    ``i = floor((|y| - starts[f]) / steps[f])`` finds the two magnitudes around
    ``|y|``, and the nearer one wins by the rule of :func:`nearest_code`
    (``(hi - y) < (y - lo)`` in float32; ties go to the lower value), so the
    codes are exactly those of the search :func:`reference_encode`. No table
    lookups: the selects vectorize (8 lanes on AVX2), where XLA:CPU loads a
    gathered value one element at a time.
    """
    book = codebook(signed, bits)
    y = jnp.asarray(y, jnp.float32)
    a = jnp.abs(y)
    start = jnp.zeros_like(a)
    step = jnp.full_like(a, _f32(book.steps[0]))
    inverse = jnp.full_like(a, _f32(1 / book.steps[0]))
    base = jnp.zeros(a.shape, jnp.int32)  # 2^f - 1
    for f in range(1, book.payload):
        inside = a >= _f32(book.starts[f])
        start = jnp.where(inside, _f32(book.starts[f]), start)
        step = jnp.where(inside, _f32(book.steps[f]), step)
        inverse = jnp.where(inside, _f32(1 / book.steps[f]), inverse)
        base = jnp.where(inside, 2**f - 1, base)
    i = jnp.clip(jnp.floor((a - start) * inverse), 0, base.astype(jnp.float32))
    lo = start + step * i
    d_lo, d_hi = a - lo, (lo + step) - a
    if signed:
        neg = y < 0
        up = jnp.where(neg, d_hi <= d_lo, d_hi < d_lo)
        m = base + i.astype(jnp.int32) + up.astype(jnp.int32)
        half = 2 ** (bits - 1)
        code = jnp.where(neg & (m > 0), half - 1 - m, half + m)
    else:
        m = base + i.astype(jnp.int32) + (d_hi < d_lo).astype(jnp.int32)
        code = jnp.maximum(m, 1)  # no zero: below the smallest value, that value
    return jnp.where(jnp.isfinite(y), code, book.nan_code).astype(jnp.uint8)


def _encode_by_table(y: jax.Array, signed: bool, bits: int) -> jax.Array:
    """The codes of :func:`encode` from one lookup: the float32 bit pattern
    of ``|y|`` falls in a bin (:func:`encode_table`, built from the search's
    own float32 comparison) that holds at most two neighbouring magnitudes,
    and the bin's threshold says which."""
    table = encode_table(signed, bits)
    book = codebook(signed, bits)
    y = jnp.asarray(y, jnp.float32)
    pattern = jax.lax.bitcast_convert_type(jnp.abs(y), jnp.int32)
    shift = table.shift
    index = jnp.clip((pattern >> shift) - (table.key0 - 1), 0, table.bins - 1)
    if signed:
        neg = y < 0
        index = index + jnp.where(neg, table.bins, 0)
    # entry = (m0 << (shift + 1)) + 2^(shift + 1) - threshold: one use of the
    # gathered value (XLA stores a gather read twice), and
    # m = m0 + (low bits >= threshold) in one addition and one shift.
    m0 = table.entries >> (shift + 1)
    threshold = table.entries & ((2 << shift) - 1)
    packed = (m0 << (shift + 1)) + (2 << shift) - threshold
    m = (_take(packed, index) + (pattern & ((1 << shift) - 1))) >> (shift + 1)
    if signed:
        half = 2 ** (bits - 1)
        code = jnp.where(neg & (m > 0), half - 1 - m, half + m)
    else:
        code = m
    return jnp.where(jnp.isfinite(y), code, book.nan_code).astype(jnp.uint8)


def encode(y: jax.Array, signed: bool = True, bits: int = 8) -> jax.Array:
    """The code of each ``y`` in [-1, 1] (unsigned: [0, 1]): that of the
    nearest value, exactly as the search :func:`reference_encode` finds it
    (ties to the lower value), without a search.

    8 bits: in closed form (the decade by comparisons, the position in it by
    arithmetic), which XLA:CPU vectorizes. 4 bits: by table
    (:func:`encode_table`), whose single lookup beats the selects where the
    loop is not vectorized anyway (the packing of nibbles). Both are tested
    against the search on a dense grid and were checked equal to it over
    every float32 in [-1, 1] (jax 0.10.2).

    >>> import jax.numpy as jnp
    >>> encode(jnp.array([0.0, 1.0, -1.0, jnp.nan])).tolist()
    [128, 255, 0, 127]
    """
    if bits == 4:
        return _encode_by_table(y, signed, bits)
    return _encode_by_decades(y, signed, bits)


def decode(codes: jax.Array, signed: bool = True, bits: int = 8) -> jax.Array:
    """``values[codes]`` (float32; the NaN code decodes to NaN), by table."""
    book = codebook(signed, bits)
    return _take(book.values, jnp.asarray(codes).astype(jnp.int32))


# ------------------------------------------------------------------- layout


def block_grid(shape: tuple[int, ...], block_size: int) -> tuple[int, int]:
    """``(rows, cols)`` of one block over the last two axes of ``shape``.

    A last axis of ``L >= block_size`` is cut into ``ceil(L / block_size)``
    near-equal runs of ``cols <= block_size``; a shorter one is a whole row,
    and ``rows`` of them (along the second-last axis) make a block of at most
    ``block_size`` elements.

    >>> block_grid((2000, 1000), 256), block_grid((4096, 8), 256)
    ((1, 250), (32, 8))
    """
    if not shape:
        return 1, 1
    last = shape[-1]
    if last >= block_size or len(shape) == 1:
        return 1, math.ceil(last / math.ceil(last / block_size))
    rows = shape[-2]
    per = max(1, block_size // max(last, 1))
    return math.ceil(rows / math.ceil(rows / per)), max(last, 1)


def scale_shape(shape: tuple[int, ...], block_size: int) -> tuple[int, ...]:
    """Shape of the block scales: ``shape`` with its last (two) axes counted in
    blocks, e.g. ``(2000, 1000) -> (2000, 4)`` for blocks of 256."""
    rows, cols = block_grid(shape, block_size)
    if len(shape) <= 1:
        return (math.ceil(shape[0] / cols),) if shape else (1,)
    return (*shape[:-2], math.ceil(shape[-2] / rows), math.ceil(shape[-1] / cols))


def _aligned(entry: Any, n: int, block: int, mesh: Any) -> Any:
    """The longest major part of a dimension's mesh axes whose shards hold
    whole blocks (``n / shards`` a multiple of ``block``); None if none."""
    names = entry if isinstance(entry, tuple) else (entry,)
    for k in range(len(names), 0, -1):
        shards = math.prod(mesh.shape[a] for a in names[:k])
        if n % shards == 0 and (n // shards) % block == 0:
            return names[:k] if isinstance(entry, tuple) else names[0]
    return None


def _blocked_spec(
    shape: tuple[int, ...], spec: PartitionSpec, mesh: Any, block_size: int
) -> tuple[Any, ...]:
    """Per axis of the ``(..., M, L)`` view, the mesh axes it keeps when cut in
    blocks: a sharded axis keeps those over which blocks do not straddle
    shards."""
    dims = list(spec) + [None] * (len(shape) - len(spec))
    rows, cols = block_grid(shape, block_size)
    if len(shape) == 1:
        dims, shape = [None, *dims], (1, *shape)
    for axis, blk in ((-2, rows), (-1, cols)):
        if dims[axis] is not None:
            dims[axis] = _aligned(dims[axis], shape[axis], blk, mesh)
    return tuple(dims)


def scale_spec(
    shape: tuple[int, ...], spec: PartitionSpec, mesh: Any, block_size: int
) -> PartitionSpec:
    """Where the scales of a leaf of ``shape`` sharded as ``spec`` live: the
    leading axes as the leaf; the blocked axes as the leaf where blocks align
    with its shards, else replicated."""
    dims = _blocked_spec(tuple(shape), spec, mesh, block_size)
    return PartitionSpec(*(dims[1:] if len(shape) == 1 else dims))


# ------------------------------------------------------------ quantized tensor


class Blocks(NamedTuple):
    """A quantized tensor: one uint8 code per element and per-block scales."""

    codes: jax.Array  # uint8, the tensor's shape (and sharding)
    absmax: jax.Array  # float32, scale_shape(shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)


class Nibbles(NamedTuple):
    """A 4-bit quantized tensor: two codes per uint8 along the last axis."""

    pairs: jax.Array  # uint8, shape[:-1] + (shape[-1] // 2,); low nibble first
    absmax: jax.Array  # float32, scale_shape(shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.pairs.shape[:-1], 2 * self.pairs.shape[-1])


def as_quantized(entry: Any) -> Blocks | Nibbles | None:
    """``entry`` as :class:`Blocks` / :class:`Nibbles`, also from the mapping a
    framework or checkpoint may turn them into (``{"codes": .., "absmax": ..}``,
    e.g. an ``nnx.State``); None for a plain array."""
    if isinstance(entry, Blocks | Nibbles):
        return entry
    if isinstance(entry, Mapping):
        keys = set(entry.keys())
        for cls in (Blocks, Nibbles):
            if keys == set(cls._fields):
                return cls(*(_unwrap(entry[k]) for k in cls._fields))
    return None


def _unwrap(x: Any) -> Any:
    """A framework variable's array (``nnx.Variable.get_value``), else ``x``."""
    get = getattr(x, "get_value", None)
    return get() if callable(get) else x


def like(entry: Any, new: Blocks | Nibbles) -> Any:
    """``new`` in the container ``entry`` came in, so that trees of old and new
    entries keep one structure (a guard's ``where(ok, new, old)``)."""
    if isinstance(entry, Blocks | Nibbles) or not isinstance(entry, Mapping):
        return new
    leaves, treedef = jax.tree_util.tree_flatten_with_path(entry)
    fields = new._asdict()
    names = [_key_name(path[0]) for path, _ in leaves]
    return jax.tree.unflatten(treedef, [fields[n] for n in names])


def _key_name(key: Any) -> str:
    return str(getattr(key, "key", getattr(key, "name", key)))


class _View(NamedTuple):
    """A leaf seen as ``lead + (M, L)`` and cut into ``(rows, cols)`` blocks."""

    shape: tuple[int, ...]  # the leaf's
    lead: tuple[int, ...]
    m: int
    n: int
    rows: int
    cols: int
    mesh: Any  # an explicit-axis mesh, or None
    dims: tuple[Any, ...]  # mesh axes of lead + (M, L) once blocked
    spec: PartitionSpec | None  # the leaf's own, on an explicit-axis mesh

    @property
    def blocks(self) -> tuple[int, int]:
        return math.ceil(self.m / self.rows), math.ceil(self.n / self.cols)


def _view(x: jax.Array, block_size: int) -> _View:
    shape = tuple(x.shape)
    rows, cols = block_grid(shape, block_size)
    full = shape if len(shape) >= 2 else (1,) * (2 - len(shape)) + shape
    sharding = placement.explicit_sharding(x)
    mesh = None if sharding is None else sharding.mesh
    spec = None if sharding is None else sharding.spec
    dims = (None,) * len(full)
    if mesh is not None:
        dims = _blocked_spec(shape or (1,), spec, mesh, block_size)
    return _View(shape, full[:-2], full[-2], full[-1], rows, cols, mesh, dims, spec)


def _reshape(x: jax.Array, shape: tuple[int, ...], v: _View, dims) -> jax.Array:
    if tuple(x.shape) == tuple(shape):
        return x
    if v.mesh is None:
        return x.reshape(shape)
    out = NamedSharding(v.mesh, PartitionSpec(*dims))
    return jax.lax.reshape(x, shape, out_sharding=out)


def _in_blocks(x: jax.Array, v: _View) -> jax.Array:
    """``x`` as ``lead + (M/rows, rows, L/cols, cols)``, zero-padded."""
    if v.mesh is not None:  # blocks that straddle shards: gather that axis first
        own = v.dims[-len(v.shape) :] if v.shape else ()
        x = jax.sharding.reshard(x, PartitionSpec(*own))
    mb, nb = v.blocks
    x = _reshape(x, (*v.lead, v.m, v.n), v, v.dims)
    pad = [(0, 0)] * len(v.lead) + [(0, mb * v.rows - v.m), (0, nb * v.cols - v.n)]
    if any(p for _, p in pad):
        x = jnp.pad(x, pad)
    dims = (*v.dims[:-2], v.dims[-2], None, v.dims[-1], None)
    return _reshape(x, (*v.lead, mb, v.rows, nb, v.cols), v, dims)


def block_maxima(xs: list[jax.Array], block_size: int) -> list[jax.Array]:
    """Per block of each of ``xs`` (one shape), the largest finite ``|x|``:
    ``lead + (M/rows, L/cols)`` each, in one loop.

    One variadic reduction: on XLA:CPU (jax 0.10.2) a lone ``max`` goes to a
    library kernel that needs its input in memory, so the expression the
    caller passes (a new moment) would be stored in a leaf-sized temporary;
    a reduction of two or more operands stays a loop that computes it. A
    lone ``x`` is reduced as the maxima of ``x`` and ``-x``. Non-finite
    elements count as 0.
    """
    v = _view(xs[0], block_size)
    blocks = [_in_blocks(jnp.asarray(x, jnp.float32), v) for x in xs]
    finite = lambda x, y: jnp.where(jnp.isfinite(x), y, np.float32(0))
    if len(blocks) == 1:
        (x,) = blocks
        operands = [finite(x, x), finite(x, -x)]
    else:
        operands = [finite(x, jnp.abs(x)) for x in blocks]
    rank = blocks[0].ndim
    axes = (rank - 3, rank - 1)
    maxima = jax.lax.reduce(
        tuple(operands),
        tuple(np.float32(0) for _ in operands),
        lambda a, b: tuple(jnp.maximum(p, q) for p, q in zip(a, b)),
        axes,
    )
    if len(blocks) == 1:
        return [jnp.abs(jnp.maximum(*maxima))]  # abs: a zero block's max is +0
    return list(maxima)


def _expand(s: jax.Array, v: _View) -> jax.Array:
    """Block values ``lead + (M/rows, L/cols)`` repeated over their elements."""
    mb, nb = v.blocks
    full = (*v.lead, mb, v.rows, nb, v.cols)
    x = jnp.broadcast_to(s[..., :, None, :, None], full)
    x = _reshape(x, (*v.lead, mb * v.rows, nb * v.cols), v, v.dims)
    if (mb * v.rows, nb * v.cols) != (v.m, v.n):
        x = x[..., : v.m, : v.n]
    x = _reshape(x, v.shape, v, v.dims[-len(v.shape) :] if v.shape else ())
    if v.mesh is not None:  # split further where the leaf is (a local slice)
        x = jax.sharding.reshard(x, v.spec)
    return x


def _scales_of(absmax: jax.Array, v: _View) -> jax.Array:
    """The stored scales (``scale_shape``) seen as ``lead + (M/rows, L/cols)``."""
    return absmax.reshape((*v.lead, *v.blocks))


def quantize(
    x: jax.Array,
    *,
    signed: bool = True,
    bits: int = 8,
    block_size: int | None = None,
    absmax: jax.Array | None = None,
) -> Blocks | Nibbles:
    """Quantize ``x`` blockwise (:func:`block_grid`) to the nearest code.

    ``x ~= values[codes] * absmax`` per block; the error of each finite element
    is at most half the gap between the two map values around ``x / absmax``,
    times ``absmax`` (0.9 / 128 of the block maximum for the signed 8-bit map);
    below the unsigned map's smallest value (1e-7), it is that value. The codes
    have ``x``'s shape and sharding (4 bits: two per byte along the last axis,
    which must have even length); ``absmax`` has :func:`scale_shape`.

    Args:
      x: the tensor (cast to float32).
      signed: the signed map (any sign) or the unsigned one (``x >= 0``).
      bits: 8 or 4.
      block_size: elements per block (default 256 for 8 bits, 128 for 4).
      absmax: the blocks' scales, if already known (:func:`block_maxima` of
        ``x``, in its ``lead + (M/rows, L/cols)`` layout).

    >>> import jax.numpy as jnp
    >>> q = quantize(jnp.array([0.5, -2.0, 0.0, 1e-9]))
    >>> [round(v, 4) for v in dequantize(q).tolist()]  # 0.25 of the max: 0.2547
    [0.5094, -2.0, 0.0, 0.0]
    """
    block_size = block_size or (BLOCK_SIZE if bits == 8 else BLOCK_SIZE_4BIT)
    if bits == 4 and (not x.shape or x.shape[-1] % 2):
        raise ValueError(
            f"4-bit codes are packed in pairs along the last axis, which must "
            f"have even length; got shape {tuple(x.shape)}"
        )
    x = jnp.asarray(x).astype(jnp.float32)
    v = _view(x, block_size)
    if absmax is None:
        (absmax,) = block_maxima([x], block_size)
    # An all-zero block has scale 0; divide by 1 instead so its codes are 0.
    # Multiplying by the reciprocal fuses into the encoding loop; a divide
    # (expensive to XLA) would be stored first.
    inverse = 1 / jnp.where(absmax > 0, absmax, 1.0)
    codes = encode(x * _expand(inverse, v), signed, bits)
    absmax = absmax.reshape(scale_shape(v.shape, block_size))
    if bits == 4:
        return Nibbles(_pack(codes, v), absmax)
    return Blocks(codes, absmax)


def dequantize(
    q: Any,
    *,
    signed: bool = True,
    dtype: Any = jnp.float32,
    block_size: int | None = None,
) -> jax.Array:
    """``values[codes] * absmax``, in the tensor's shape, as ``dtype``."""
    q = as_quantized(q)
    bits = 4 if isinstance(q, Nibbles) else 8
    block_size = block_size or (BLOCK_SIZE if bits == 8 else BLOCK_SIZE_4BIT)
    codes = q.codes if bits == 8 else _unpack(q.pairs)
    v = _view(codes, block_size)
    values = decode(codes, signed, bits) * _expand(_scales_of(q.absmax, v), v)
    return values.astype(dtype)


def _pack(codes: jax.Array, v: _View) -> jax.Array:
    """Two 4-bit codes per byte: element ``2i`` low, ``2i + 1`` high.

    On an explicit-axis mesh whose shards of the last axis hold an odd number
    of codes, the pairs are kept whole along that axis (replicated there).
    """
    shape = (*v.shape[:-1], v.shape[-1] // 2, 2)
    if v.mesh is None:
        pairs = codes.reshape(shape)
    else:
        dims = list(v.spec) + [None] * (codes.ndim - len(v.spec))
        if (
            dims[-1] is not None
            and _aligned(dims[-1], shape[-2], 1, v.mesh) != dims[-1]
        ):
            dims[-1] = None
            codes = jax.sharding.reshard(codes, PartitionSpec(*dims))
        pairs = _reshape(codes, shape, v, (*dims, None))
    return pairs[..., 0] | (pairs[..., 1] << 4)


def _unpack(pairs: jax.Array) -> jax.Array:
    """Element ``i``: the low nibble of byte ``i // 2`` for even ``i``, the
    high one for odd ``i``; a broadcast and a shift by ``4 (i % 2)``, which
    XLA:CPU fuses into each loop reading the codes (a stack of the two
    nibbles is a concatenate, which it stores first)."""
    shape = (*pairs.shape[:-1], 2 * pairs.shape[-1])
    both = jnp.broadcast_to(pairs[..., None], (*pairs.shape, 2))
    sharding = placement.explicit_sharding(pairs)
    if sharding is None:
        both = both.reshape(shape)
    else:
        both = jax.lax.reshape(both, shape, out_sharding=sharding)
    odd = jax.lax.broadcasted_iota(jnp.uint8, shape, len(shape) - 1) & 1
    return (both >> (odd << 2)) & 15
