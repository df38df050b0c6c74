"""Where state is born: every state leaf that mirrors a parameter takes its
sharding, and every other state leaf (counts, hyperparameters, keys) is
replicated on the parameters' mesh.

A model that only fits sharded must have an optimizer state that is sharded
from the first array it allocates: a state built on one device and resharded
by the first step never gets there. Three cases, one function each:

* **Eager** ``init`` on committed arrays: ``jnp.zeros_like`` keeps the
  parameter's ``NamedSharding``; scalars, which no parameter mirrors, are put
  on the mesh replicated by :func:`replicate_scalars` (``jnp.zeros([])``
  alone lands on device 0).
* **Explicit-axis meshes** (``jax.set_mesh`` with ``AxisType.Explicit``), in or
  out of ``jit`` and through ``jax.eval_shape``: the sharding is part of the
  parameter's type (``jax.typeof(p).sharding``) and ``jnp.zeros_like`` carries
  it over.
* **Auto-axis meshes inside ``jit``**: a tracer carries no sharding; XLA
  decides it by propagating the shardings of the inputs through the program.
  A zero that does not depend on the parameter (a broadcast constant) gets
  none, and comes out replicated. :func:`zeros_like` therefore computes the
  zero *from* the parameter, ``where(isfinite(p), |p| * 0, 0)``, which is
  ``+0`` for every input (finite, infinite or NaN), so the propagation pass
  (Shardy) gives it the parameter's sharding.

  XLA behaviour relied on (measured on jax 0.10.2, XLA:CPU with Shardy): the
  canonicalizer that runs before sharding propagation does not fold a float
  ``x * 0`` (it is not ``0`` for ``inf`` or ``NaN``), while it does fold an
  integer ``and(x, 0)`` and a ``select`` with equal branches, which is why
  neither of those is used. ``tests/test_placement.py`` lowers the three
  forms and fails if the float form stops carrying the sharding.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec, SingleDeviceSharding


def is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def explicit_sharding(x: Any) -> NamedSharding | None:
    """The sharding in ``x``'s type on an explicit-axis mesh, else None."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    types = getattr(mesh, "axis_types", ()) or ()
    if any(t == AxisType.Explicit for t in types):
        return sharding
    return None


def zeros_like(param: Any, dtype: Any = None) -> jax.Array:
    """Zeros of ``param``'s shape in ``dtype`` (default: ``param``'s dtype),
    placed as ``param`` is: eager, explicit-typed and traced on Auto meshes.

    >>> import jax.numpy as jnp
    >>> zeros_like(jnp.ones(3), jnp.bfloat16).dtype
    dtype(bfloat16)
    """
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.result_type(param)
    if is_tracer(param) and explicit_sharding(param) is None:
        p = jnp.asarray(param)
        zero = jnp.where(jnp.isfinite(p), jnp.abs(p) * 0, 0)
        return zero.astype(dtype)
    if isinstance(param, jax.Array):
        return jnp.zeros_like(param, dtype=dtype)
    return jnp.zeros(jnp.shape(param), dtype)


def params_mesh(
    params: Any,
) -> jax.sharding.Mesh | jax.sharding.AbstractMesh | None:
    """The mesh of the first committed, multi-device-sharded parameter."""
    for leaf in jax.tree.leaves(params):
        if is_tracer(leaf) or not isinstance(leaf, jax.Array):
            continue
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, NamedSharding) and sharding.mesh.size > 1:
            return sharding.mesh
    return None


def replicate_scalars(state: Any, params: Any) -> Any:
    """Put every state leaf that sits on one device onto ``params``' mesh,
    replicated (eager ``init`` only: under tracing XLA places them).

    A leaf already sharded (a moment born with its parameter's sharding) is
    left as it is.
    """
    mesh = params_mesh(params)
    if mesh is None:
        return state
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        if (
            isinstance(leaf, jax.Array)
            and not is_tracer(leaf)
            and isinstance(leaf.sharding, SingleDeviceSharding)
        ):
            return jax.device_put(leaf, replicated)
        return leaf

    return jax.tree.map(place, state)


def placed_init(init):
    """``init`` whose scalar state leaves are replicated on the params' mesh."""

    def wrapped(params):
        return replicate_scalars(init(params), params)

    wrapped.__wrapped__ = init
    return wrapped
