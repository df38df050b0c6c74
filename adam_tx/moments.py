"""The moment formulas, written once for one array and reused by every path.

Each function is the textbook formula on arrays that are already in the compute
dtype (see :mod:`adam_tx._engine.dtypes`); the transforms in :mod:`adam_tx.adam`,
:mod:`adam_tx.amsgrad`, :mod:`adam_tx.adabelief`, :mod:`adam_tx.adamax` and
:mod:`adam_tx.baselines` call them on each leaf.

References:
  Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ema(moment: jax.Array, x: jax.Array, decay, one_minus_decay) -> jax.Array:
    """Exponential moving average: ``m_t = b m_{t-1} + (1 - b) x_t``.

    ``1 - b`` is passed in, not recomputed: it is held exactly (see
    :class:`adam_tx.hyperparams.Hyper`), where ``1 - float32(b)`` is not.
    """
    return decay * moment + one_minus_decay * x


def ema_plus(
    moment: jax.Array, x: jax.Array, decay, one_minus_decay, floor
) -> jax.Array:
    """An EMA with a constant added at each step:
    ``m_t = b m_{t-1} + ((1 - b) x_t + c)``.

    The constant joins the new term before the sum, not after it (``b m +
    (1 - b) x + c`` in optax's AdaBelief): the two differ by at most one
    rounding of the sum, and only where ``c`` is not below half an ulp of it.
    Added last, XLA:CPU (jax 0.10.2) recomputes the new moment inside the
    parameter's loop from the old one, which the moment's own loop overwrites
    in place, so it copies the donated moment every step
    (``tests/test_xla_rules.py`` pins that; ``tests/test_conformance.py``
    counts AdaBelief's copies).
    """
    return decay * moment + (one_minus_decay * x + floor)


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|^2`` elementwise: ``x^2`` for real ``x``, ``re(x)^2 + im(x)^2`` for
    complex ``x`` (``x * x`` would rotate a complex gradient's phase into the
    second moment, so that an imaginary gradient moves the parameter along the
    real axis)."""
    if jnp.iscomplexobj(x):
        return jnp.square(x.real) + jnp.square(x.imag)
    return x * x


def ema_sq(moment: jax.Array, x: jax.Array, decay, one_minus_decay) -> jax.Array:
    """EMA of the elementwise squared modulus: ``v_t = b v_{t-1} + (1 - b) |x_t|^2``."""
    return ema(moment, abs_sq(x), decay, one_minus_decay)


def ema_infinity_norm(u: jax.Array, x: jax.Array, decay: jax.Array, eps) -> jax.Array:
    """Adamax's exponentially weighted infinity norm: ``u_t = max(b u, |x| + eps)``.

    eps sits inside the max, as in both torch.optim.Adamax and optax.adamax.
    """
    return jnp.maximum(decay * u, jnp.abs(x) + eps)


def adaptive_step(m_hat: jax.Array, v_hat: jax.Array, eps, eps_root=0.0) -> jax.Array:
    """Adam's direction: ``m_hat / (sqrt(v_hat + eps_root) + eps)``."""
    return m_hat / (jnp.sqrt(v_hat + eps_root) + eps)


def nesterov_momentum(m_hat_next, g_hat, decay, one_minus_decay) -> jax.Array:
    """NAdam's look-ahead: ``b m_t/(1-b^{t+1}) + (1-b) g_t/(1-b^t)``.

    Called with the two bias-corrected terms already divided (Dozat, 2016,
    "Incorporating Nesterov Momentum into Adam", in optax's form: no momentum
    decay schedule).
    """
    return decay * m_hat_next + one_minus_decay * g_hat
