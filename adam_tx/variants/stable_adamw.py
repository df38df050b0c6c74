"""StableAdamW: AdamW whose step is clipped per leaf by the RMS of
``g^2 / v_hat`` (Adafactor's update clipping; Wortsman et al., "Stable and
low-precision training for large-scale vision-language models", NeurIPS
2023):

    RMS_t = sqrt(mean over the leaf of g_t^2 / max(v_hat_t, eps^2))
    u_t   = m_hat / (sqrt(v_hat) + eps) / max(1, RMS_t)

so the leaf's learning rate is ``lr / max(1, RMS_t)``. ``RMS_t`` compares this
step's gradient with the second moment that normalises it; it exceeds 1 when
the gradient outgrew ``v`` (a stale ``v``, typically with a large ``b2``).
The clip needs ``g`` and ``v_hat`` together, which only the Adam math has (a
piece chained after the direction sees neither), so it is written inside
:func:`scale_by_stable_adam`. :func:`stable_adamw` decays the weights with the
unclipped ``lr``, as the authors' implementation does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine.fusion import chain
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.storage import stores_moments
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx.adam import (
    ADAM_RANGES,
    adam_corrections,
    adam_hypers,
    check_adam_args,
    first_moment_direction,
)
from adam_tx.bias_correction import debias
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.moments import adaptive_step, ema, ema_sq
from adam_tx.variants._common import (
    adam_formats,
    in_loop_sum_of_squares,
    nonnegative_decay,
)


class ScaleByStableAdamState(NamedTuple):
    """State of :func:`scale_by_stable_adam`: the step count and Adam's two moments."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(ScaleByStableAdamState, **ADAM_RANGES)


def update_rms(g: jax.Array, v: jax.Array, c2, eps) -> jax.Array:
    """``sqrt(mean(|g|^2 / max(v_hat, eps^2)))`` over one leaf, ``v_hat = v / c2``.

    Written ``|g| sqrt(c2) / sqrt(max(v, eps^2 c2))`` from the stored ``v``:
    an intermediate ``v_hat`` shared with the step would be kept in a
    leaf-sized temporary by XLA:CPU, this keeps the reduction in its own loop
    (:func:`adam_tx.variants._common.in_loop_sum_of_squares`).
    """
    c2 = c2.astype(v.dtype)
    root = jnp.abs(g) * jnp.sqrt(c2) * jax.lax.rsqrt(jnp.maximum(v, eps * eps * c2))
    return jnp.sqrt(in_loop_sum_of_squares(root, g) / max(jnp.size(g), 1))


def scale_by_stable_adam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    *,
    nesterov: bool = False,
    mu_dtype: DType | None = None,
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Adam's direction divided per leaf by ``max(1, RMS_t)`` (module docstring).

    ``u = m_hat / (sqrt(v_hat + eps_root) + eps) / max(1, sqrt(mean(g^2 /
    max(v_hat, eps^2))))``. Arguments as :func:`adam_tx.scale_by_adam`'s.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.scale_by_stable_adam(b2=0.99)
    >>> s = tx.init(jnp.zeros(2))
    >>> u, s = tx.update(jnp.array([1.0, 1.0]), s)  # v_hat = g^2: RMS 1, Adam's step
    >>> [round(x, 4) for x in u.tolist()]
    [1.0, 1.0]
    >>> u, s = tx.update(jnp.array([100.0, 100.0]), s)  # g^2 / v_hat = 1.99: RMS 1.41
    >>> [round(x, 4) for x in u.tolist()]
    [0.5311, 0.5311]

    Args:
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Wortsman et al., "Stable and low-precision training for large-scale
      vision-language models", NeurIPS 2023.
    """
    check_adam_args(b1, b2, eps, eps_root)
    formats = adam_formats(mu_dtype, nu_dtype, state_format, seed)

    def moments(c, g, m, v):
        m = ema(m, g, c.hp["b1"], c.hp["1-b1"])
        return m, ema_sq(v, g, c.hp["b2"], c.hp["1-b2"])

    def update(c, g, m, v):
        m_hat = first_moment_direction(c, m, g, bias_correction=True, nesterov=nesterov)
        v_hat = debias(v, c.scalars["c2"])
        step = adaptive_step(m_hat, v_hat, c.hp["eps"], c.hp["eps_root"])
        rms = update_rms(g, v, c.scalars["c2"], c.hp["eps"])
        return step / jnp.maximum(rms, 1.0)

    return counted_transform(
        "scale_by_stable_adam",
        ScaleByStableAdamState,
        adam_hypers(b1, b2, eps, eps_root),
        formats,
        SplitMath(moments, update),
        scalars=adam_corrections(True, nesterov),
    )


@stores_moments
def stable_adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    weight_decay: ScalarOrSchedule = 1e-4,
    *,
    mask: Any | Callable[..., Any] | None = None,
    nesterov: bool = False,
    **storage: Any,
) -> optax.GradientTransformationExtraArgs:
    """StableAdamW: ``p <- p - lr (u_t + wd p)`` with ``u_t`` from
    :func:`scale_by_stable_adam`, AdamW's arguments and defaults.

    ``storage``: ``mu_dtype``, ``nu_dtype``, ``state_format``, ``seed``.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.stable_adamw(0.1, weight_decay=0.0)
    >>> p = jnp.zeros(1); s = opt.init(p)
    >>> round(float(opt.update(jnp.array([3.0]), s, p)[0][0]), 4)
    -0.1

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      weight_decay: decoupled weight decay rate (AdamW's), multiplied by the learning
        rate; a float, an array or a schedule ``count -> value``. 0 adds no decay.
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Wortsman et al., "Stable and low-precision training for large-scale
      vision-language models", NeurIPS 2023.
    """
    return chain(
        scale_by_stable_adam(b1, b2, eps, eps_root, nesterov=nesterov, **storage),
        nonnegative_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
