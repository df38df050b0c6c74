"""Stochastic rounding of float32 values to bfloat16.

A bfloat16 is a float32 with its low 16 bits dropped. Rounding to nearest loses
any update smaller than half a bfloat16 step: ``v <- 0.999 v + 0.001 g^2``
stalls once ``0.001 g^2`` is below ``2^-9 v``. Stochastic rounding instead
rounds up with probability equal to the dropped fraction,

    P(round up) = (x - floor_bf16(x)) / (ceil_bf16(x) - floor_bf16(x))

so ``E[round(x)] = x`` and small updates survive on average. It is computed on
the bits: add a uniform random integer in [0, 2^16) to the float32 bit pattern
(sign-magnitude, so this rounds the magnitude away from zero with exactly that
probability) and truncate the low 16 bits.

References:
  Gupta et al., "Deep Learning with Limited Numerical Precision", ICML 2015.
  Zamirai et al., "Revisiting BFloat16 Training", arXiv:2010.06192, 2020.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def stochastic_round_bf16(x: jax.Array, key: jax.Array) -> jax.Array:
    """Round ``x`` to bfloat16 up or down at random, unbiased in expectation.

    NaN and infinities pass through unchanged.

    >>> import jax, jax.numpy as jnp
    >>> x = jnp.full([10000], 1.0 + 2.0**-10)  # a quarter of a bf16 step above 1
    >>> r = stochastic_round_bf16(x, jax.random.PRNGKey(0)).astype(jnp.float32)
    >>> sorted(set(r.tolist())), round(float(r.mean() - 1.0) * 2**10, 1)
    ([1.0, 1.0078125], 1.0)
    """
    x = x.astype(jnp.float32)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    noise = jax.random.bits(key, x.shape, jnp.uint32) >> 16
    rounded = (bits + noise) & jnp.uint32(0xFFFF0000)
    out = jax.lax.bitcast_convert_type(rounded, jnp.float32)
    return jnp.where(jnp.isfinite(x), out, x).astype(jnp.bfloat16)
