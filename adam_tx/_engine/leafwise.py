"""Which parameter leaves a transform treats alike, read from its program.

:func:`adam_tx.group_small_leaves` may only run two leaves as one array when
the wrapped transform applies the *same elementwise function* to both: the same
operations on the gradient, parameter and state elements, with the same
per-step scalars (learning rate, bias corrections, clip factor). A weight-decay
mask, ``optax.masked``, ``optax.partition`` labels, a per-leaf norm or a
stochastic rounding key folded with the leaf index all break that, and they
live in closures that cannot be inspected. Their effect can: this module traces
one update (``jax.make_jaxpr``, abstract, nothing is computed) and gives each
leaf a *signature*, a canonical form of the computation from that leaf's
inputs to its outputs (its update and its state entries).

* A variable computed only from leaf ``j``'s inputs (and shared values) is
  *local* to ``j``. Its canonical form (an interned integer) names the
  primitive, its parameters with shapes abstracted, and its operands: local
  operands by their own forms, with the leaf index left out, so that two leaves
  doing the same thing get the same form; shared operands by their identity.
* A local variable is *elementwise* when every step from the leaf's inputs to
  it is: arithmetic and comparisons on operands of one shape, operands shared
  by all elements (scalars, broadcasts of scalars), calls (``jit``,
  ``custom_jvp``) traced through, and ``cond`` whose branches are elementwise.
  A reduction, reshape, gather or loop over the leaf is not.
* A leaf's signature is None unless all its outputs are elementwise in it.

Two leaves with equal signatures (and one dtype) run, element by element, the
same program, so concatenating them changes nothing but the length of the
loop. Shared values other than inputs and constants are identified by their
computation with every leaf's contents abstracted: a sum of squares over a
leaf counts as the same value however the leaf is laid out. That lets the
grouped program (traced the same way) be checked against the per-leaf one,
and it assumes what holds for every global reduction in adam_tx and optax
(norms, finiteness tests): that it sums over all elements, so regrouping
changes its summation order only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.extend import core

# Primitives that act on each element alone (shapes checked separately).
ELEMENTWISE = frozenset(
    """abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp
    complex conj convert_element_type copy copy_p cos cosh digamma div eq erf
    erf_inv erfc exp exp2 expm1 floor ge gt imag integer_pow is_finite le
    lgamma log log1p logistic lt max min mul ne neg nextafter not or pow
    reduce_precision real rem round rsqrt select_n shift_left
    shift_right_arithmetic shift_right_logical sign sin sinh sqrt square sub
    tan tanh xor population_count bitcast_convert_type""".split()  # noqa: SIM905
)
# Primitives that call a jaxpr once: traced through.
CALLS = frozenset(
    """jit pjit closed_call core_call custom_jvp_call custom_vjp_call
    custom_vjp_call_jaxpr checkpoint remat""".split()  # noqa: SIM905
)


class Rec(NamedTuple):
    """What the analysis knows of one variable."""

    leaves: int  # the leaves it is computed from, as a bitset (bit j: leaf j)
    gid: int  # canonical form, leaf indices kept (identity across leaves)
    lid: int | None  # local elementwise form (one leaf only), index dropped
    # Equal in every element of every leaf: a scalar of no leaf or of several
    # leaves, or a broadcast of one (never a value of one leaf alone).
    uniform: bool
    shape: tuple[int, ...]


class Interner:
    """Canonical keys to small integers, shared by the traces compared."""

    def __init__(self) -> None:
        self.ids: dict[Hashable, int] = {}

    def __call__(self, key: Hashable) -> int:
        return self.ids.setdefault(key, len(self.ids))


def _one_leaf(bits: int) -> bool:
    return bits != 0 and bits & (bits - 1) == 0


def _shared(r: Rec) -> bool:
    """Seen alike by every element: a uniform value of no leaf, or a scalar
    computed from several leaves (a global norm, a finiteness flag)."""
    return r.uniform and not _one_leaf(r.leaves)


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(getattr(v.aval, "shape", ()))


def _dtype(v: Any) -> str:
    return str(getattr(v.aval, "dtype", ""))


class _Tracer:
    """Propagates :class:`Rec` through a jaxpr (and the jaxprs inside it)."""

    def __init__(self, intern: Interner):
        self.intern = intern
        self.jaxpr_ids: dict[int, int] = {}

    def const(self, value: Any) -> Rec:
        arr = np.asarray(value)
        flat = arr.reshape(-1)
        uniform = arr.ndim == 0 or (flat.size > 0 and bool(np.all(flat == flat[0])))
        if uniform and flat.size:
            key = ("const", str(arr.dtype), flat[0].item())
        else:
            digest = hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()
            key = ("const", str(arr.dtype), arr.shape, digest)
        return Rec(0, self.intern(key), None, uniform, arr.shape)

    def read(self, env: dict, v: Any) -> Rec:
        if isinstance(v, core.Literal):
            return self.const(v.val)
        return env[v]

    def run(self, jaxpr: Any, ins: Sequence[Rec], consts: Sequence[Any] = ()):
        env: dict[Any, Rec] = {}
        for v, c in zip(jaxpr.constvars, consts):
            env[v] = self.const(c)
        for v, r in zip(jaxpr.invars, ins, strict=True):
            env[v] = r
        for eqn in jaxpr.eqns:
            outs = self.eqn(eqn, [self.read(env, x) for x in eqn.invars])
            for v, r in zip(eqn.outvars, outs, strict=True):
                env[v] = r
        return [self.read(env, v) for v in jaxpr.outvars]

    def eqn(self, eqn: Any, ins: list[Rec]) -> list[Rec]:
        name = eqn.primitive.name
        if name in CALLS:
            sub = next(
                (
                    eqn.params[k]
                    for k in ("jaxpr", "call_jaxpr", "fun_jaxpr")
                    if k in eqn.params
                ),
                None,
            )
            if sub is not None:
                if isinstance(sub, core.ClosedJaxpr):
                    return self.run(
                        sub.jaxpr, ins[len(ins) - len(sub.jaxpr.invars) :], sub.consts
                    )
                return self.run(sub, ins[len(ins) - len(sub.invars) :])
        if name == "optimization_barrier":
            return list(ins)
        if name == "cond":
            return self.cond(eqn, ins)
        return self.generic(eqn, name, ins)

    def generic(self, eqn: Any, name: str, ins: list[Rec]) -> list[Rec]:
        if name == "broadcast_in_dim" and ins and not ins[0].shape:
            params: Hashable = "scalar"  # the same value whatever the shape
        else:
            params = self.params(eqn.params, ins)
        elementwise = name in ELEMENTWISE or name == "broadcast_in_dim"
        return [
            self.combine((name, params, k), ins, _shape(v), _dtype(v), elementwise)
            for k, v in enumerate(eqn.outvars)
        ]

    def cond(self, eqn: Any, ins: list[Rec]) -> list[Rec]:
        # For the elementwise question a cond is a select between its branches'
        # values: each branch is traced with the operands' records.
        index, operands = ins[0], ins[1:]
        branches = [
            self.run(b.jaxpr, operands, b.consts) for b in eqn.params["branches"]
        ]
        return [
            self.combine(
                ("cond",),
                [index] + [b[k] for b in branches],
                _shape(v),
                _dtype(v),
                True,
            )
            for k, v in enumerate(eqn.outvars)
        ]

    def combine(self, key, operands, shape, dtype, elementwise: bool) -> Rec:
        """The record of a value computed from ``operands`` by ``key``."""
        full = local = 0
        for r in operands:
            full |= r.leaves
            if not _shared(r):
                local |= r.leaves
        gids = tuple(r.gid for r in operands)
        if elementwise and all(_shared(r) for r in operands):
            return Rec(full, self.intern((key, gids)), None, True, shape)
        if (
            elementwise
            and _one_leaf(local)
            and all(
                _shared(r) or (r.lid is not None and r.shape == shape) for r in operands
            )
        ):
            refs = tuple(("G", r.gid) if _shared(r) else ("l", r.lid) for r in operands)
            lid = self.intern((key, refs, dtype))
            return Rec(local, self.intern(("L", local, lid)), lid, False, shape)
        if full and not shape:
            # A reduction of those leaves, however they are laid out.
            gid = self.intern(("reduced", full, dtype))
        else:
            gid = self.intern((key, gids))
        return Rec(full, gid, None, not shape and not _one_leaf(full), shape)

    def params(self, params: dict, ins: list[Rec]) -> Hashable:
        def canon(key, value):
            if isinstance(value, core.ClosedJaxpr):
                return ("jaxpr", self.jaxpr_id(value.jaxpr, value.consts))
            if isinstance(value, core.Jaxpr):
                return ("jaxpr", self.jaxpr_id(value, ()))
            if (
                key == "axes"
                and ins
                and tuple(value) == tuple(range(len(ins[0].shape)))
            ):
                return "all"
            if isinstance(value, (tuple, list)):
                if value and all(isinstance(x, (int, np.integer)) for x in value):
                    return ("ints", len(value))  # shapes and the like, abstracted
                return tuple(canon(None, x) for x in value)
            if isinstance(value, (bool, int, float, str, type(None))):
                return value
            if isinstance(value, (np.dtype, type)) or hasattr(value, "dtype"):
                return str(value)
            if callable(value):
                return type(value).__name__
            return repr(value)

        return tuple(sorted((k, canon(k, v)) for k, v in params.items()))

    def jaxpr_id(self, jaxpr: Any, consts: Sequence[Any]) -> int:
        if id(jaxpr) not in self.jaxpr_ids:
            args = [
                Rec(
                    0,
                    self.intern(("arg", i, str(v.aval))),
                    None,
                    False,
                    tuple(getattr(v.aval, "shape", ())),
                )
                for i, v in enumerate(jaxpr.invars)
            ]
            outs = self.run(jaxpr, args, consts)
            self.jaxpr_ids[id(jaxpr)] = self.intern(
                ("jaxpr", tuple(r.gid for r in outs))
            )
        return self.jaxpr_ids[id(jaxpr)]


class Role(NamedTuple):
    """An input or output of the traced update: whose, and what it is."""

    leaf: int | None  # the parameter leaf it belongs to, or None (shared)
    what: Hashable  # ("g",), ("p",), ("u",), ("state", path) or a shared path


def signatures(
    fn: Callable[..., Sequence[Any]],
    args: Sequence[Any],
    in_roles: Sequence[Role],
    out_roles: Sequence[Role],
    num_leaves: int,
    intern: Interner,
) -> list[Hashable | None]:
    """Per leaf, the signature of ``fn``'s computation for it (module docstring).

    ``fn(*args)`` returns a flat list of arrays; ``args`` are abstract
    (``jax.ShapeDtypeStruct``); ``in_roles`` and ``out_roles`` say whose each
    input and output is. Raises what tracing ``fn`` raises.
    """
    closed = jax.make_jaxpr(fn)(*args)
    tracer = _Tracer(intern)
    ins = []
    for v, role in zip(closed.jaxpr.invars, in_roles, strict=True):
        shape = tuple(v.aval.shape)
        if role.leaf is None:
            ins.append(Rec(0, intern(("in", role.what)), None, not shape, shape))
        else:
            gid = intern(("in", role.leaf, role.what))
            lid = intern(("in", role.what))
            ins.append(Rec(1 << role.leaf, gid, lid, False, shape))
    outs = tracer.run(closed.jaxpr, ins, closed.consts)
    per_leaf: list[list[Any] | None] = [[] for _ in range(num_leaves)]
    for rec, role in zip(outs, out_roles, strict=True):
        j = role.leaf
        if j is None or per_leaf[j] is None:
            continue
        if rec.leaves == 1 << j and rec.lid is not None:
            per_leaf[j].append((role.what, "l", rec.lid))
        elif _shared(rec):
            per_leaf[j].append((role.what, "G", rec.gid))
        else:
            per_leaf[j] = None
    return [None if s is None else tuple(s) for s in per_leaf]
