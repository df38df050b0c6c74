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

from adam_tx._validate import check_float_dtype


class Plain(NamedTuple):
    """Store the moment as an array of ``dtype`` (None: the parameter's dtype)."""

    dtype: Any = None

    def init(self, param: jax.Array) -> jax.Array:
        return jnp.zeros(jnp.shape(param), self.dtype or jnp.result_type(param))

    def load(self, entry: jax.Array, dtype) -> jax.Array:
        return entry.astype(dtype)

    def store(self, value: jax.Array, entry: jax.Array) -> jax.Array:
        return value.astype(entry.dtype)


def moment_format(name: str, dtype: Any) -> Plain:
    """The storage format for a moment argument such as ``mu_dtype``."""
    return Plain(check_float_dtype(name, dtype))
