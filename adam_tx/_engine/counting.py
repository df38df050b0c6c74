"""The step counter every stateful transform keeps."""

from __future__ import annotations

import jax
import jax.numpy as jnp

INT32_MAX = jnp.iinfo(jnp.int32).max


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping.

    A wrapped (negative) count would turn ``1 - b**t`` into garbage and the bias
    correction with it; a saturated one keeps ``b**t`` at 0, its limit.
    """
    return jnp.where(count < INT32_MAX, count + 1, count).astype(jnp.int32)
