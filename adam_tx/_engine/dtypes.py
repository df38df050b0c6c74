"""Dtype policy shared by every transform.

* Hyperparameters (learning rate, decay rates, eps, weight decay) are held in
  ``hyper_dtype()``: float32, or float64 when ``jax_enable_x64`` is on. They are
  never rounded to a low-precision parameter dtype (0.999 in bfloat16 is 1.0).
* Arithmetic on a leaf happens in ``compute_dtype(x.dtype)``: at least float32,
  so bfloat16 and float16 leaves are upcast for the math, and float64 leaves
  keep float64. Results are cast back to the storage dtype at the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def hyper_dtype() -> jnp.dtype:
    """The dtype of hyperparameters and schedule values."""
    return jnp.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)  # type: ignore[attr-defined]  # a jax config flag


def compute_dtype(dtype) -> jnp.dtype:
    """At least float32: the dtype the per-leaf arithmetic runs in."""
    return jnp.promote_types(dtype, jnp.float32)


def as_hyper(value) -> jax.Array:
    """A scalar hyperparameter as an array of ``hyper_dtype()``."""
    return jnp.asarray(value, dtype=hyper_dtype())
