"""A per-step scalar that XLA computes once, not in every loop.

The XLA behaviour relied on (measured with jax 0.10.2, XLA:CPU): XLA copies a
chain of cheap scalar operations (additions, comparisons, ``isfinite``) into
each fusion that consumes it, rather than computing it once and passing the
result. The sum of squares over all leaves is such a chain, one addition per
leaf, so a flag or an ordering read by every leaf's loop carried every leaf's
addition into every loop: a program quadratic in the leaf count (a guarded
200-leaf step compiled in 134 s instead of 1 s). A square root is not
duplicated: it becomes a fusion of its own, computed once, whose result the
loops read.

Pinned by ``tests/test_xla_rules.py``, which counts the additions in a
many-leaf program with and without :func:`root`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def root(s: jax.Array) -> jax.Array:
    """``sqrt(|s|)``: finite exactly when ``s`` is, and computed once by XLA."""
    return jnp.sqrt(jnp.abs(s))


def finite_flag(squares: jax.Array) -> jax.Array:
    """``isfinite(squares)`` for a sum over leaves, read by every leaf's loop,
    taken through :func:`root` so that XLA computes the sum once."""
    return jnp.isfinite(root(squares))
