"""LAMB: Adam with decoupled decay, each leaf's step rescaled by its trust
ratio (You et al., "Large Batch Optimization for Deep Learning: Training BERT
in 76 minutes", ICLR 2020), in optax.lamb's form:

    u_t = m_hat / (sqrt(v_hat + eps_root) + eps) + wd p        (per leaf)
    p <- p - lr * (||p|| / ||u_t||) u_t                        (ratio 1 if a norm is 0)

The trust ratio is a per-leaf reduction of the update. Chained after the Adam
direction and the decay, :func:`scale_by_trust_ratio` computes ``||u_t||``
inside the same fused pass from the moments just written (XLA re-evaluates
the few elementwise operations of ``u_t`` in the reduction and again in the
update, so the update tree is never stored: ``tests/test_variants.py::
test_lamb_fuses_without_storing_the_update`` checks the compiled step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine.fusion import chain
from adam_tx._engine.reduce import sums_of_squares
from adam_tx._engine.stateful import counted_transform
from adam_tx._engine.storage import stores_moments
from adam_tx._engine.typing import Numeric, ScalarOrSchedule
from adam_tx._engine.validate import check_nonnegative, check_positive
from adam_tx.adam import scale_by_adam
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.moments import abs_sq
from adam_tx.variants._common import nonnegative_decay


class ScaleByTrustRatioState(NamedTuple):
    """State of :func:`scale_by_trust_ratio`: the step count and its hyperparameters."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    hyperparams: dict


hyperparams.register_ranges(
    ScaleByTrustRatioState,
    min_norm=hyperparams.NONNEGATIVE,
    trust_coefficient=hyperparams.POSITIVE,
    eps=hyperparams.NONNEGATIVE,
)


def leaf_norm(x: jax.Array, min_norm) -> jax.Array:
    """``max(||x||_2, min_norm)`` over the whole leaf, in ``x``'s (compute) dtype."""
    return jnp.maximum(jnp.sqrt(jnp.sum(abs_sq(x))), min_norm)


def scale_by_trust_ratio(
    min_norm: Numeric = 0.0, trust_coefficient: Numeric = 1.0, eps: Numeric = 0.0
) -> optax.GradientTransformationExtraArgs:
    """Scale each leaf's update by its trust ratio (optax.scale_by_trust_ratio).

    Formula: ``u <- u * k ||p|| / (||u|| + eps)`` per leaf, with both norms
    floored at ``min_norm`` and ``k = trust_coefficient``; the ratio is 1 where
    either norm is 0 (a zero-initialised leaf still moves). Needs ``params``.

    Args:
      min_norm: floor of both norms (>= 0).
      trust_coefficient: ``k`` (> 0).
      eps: added to the update's norm (>= 0).

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.scale_by_trust_ratio()
    >>> p = jnp.array([3.0, 4.0])
    >>> tx.update(jnp.array([0.6, 0.0]), tx.init(p), p)[0].tolist()  # 0.6 * 5/0.6
    [5.0, 0.0]

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in
      76 minutes", ICLR 2020.
    """
    check_nonnegative("min_norm", min_norm)
    check_positive("trust_coefficient", trust_coefficient)
    check_nonnegative("eps", eps)

    def math(c, u):
        p_sq, u_sq = sums_of_squares(c.param.astype(u.dtype), u)
        p_norm = jnp.maximum(jnp.sqrt(p_sq).astype(u.dtype), c.hp["min_norm"])
        u_norm = jnp.maximum(jnp.sqrt(u_sq).astype(u.dtype), c.hp["min_norm"])
        ratio = c.hp["trust_coefficient"] * p_norm / (u_norm + c.hp["eps"])
        ratio = jnp.where((p_norm == 0) | (u_norm == 0), 1.0, ratio)
        return u * ratio.astype(u.dtype), ()

    hypers = (
        hyperparams.Hyper("min_norm", min_norm),
        hyperparams.Hyper("trust_coefficient", trust_coefficient),
        hyperparams.Hyper("eps", eps),
    )
    return counted_transform(
        "scale_by_trust_ratio",
        ScaleByTrustRatioState,
        hypers,
        {},
        math,
        needs_params=True,
    )


@stores_moments
def lamb(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-6,
    eps_root: Numeric = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[..., Any] | None = None,
    **storage: Any,
) -> optax.GradientTransformationExtraArgs:
    """LAMB (optax.lamb's arguments and chain): ``chain(scale_by_adam,
    add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate)``.

    ``p <- p - lr * (||p|| / ||u||) u`` per leaf, ``u`` AdamW's direction
    (module docstring). ``storage``: ``mu_dtype``, ``nu_dtype``,
    ``state_format``, ``seed`` as in :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.lamb(0.1)
    >>> p = jnp.array([3.0, 4.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([1.0, -1.0]), s, p)
    >>> [round(float(x), 4) for x in u]  # |p| = 5, u = (1, -1): lr * 5 / sqrt(2)
    [-0.3536, 0.3536]

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the root of the second moment (LAMB's default 1e-6).
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      weight_decay: decay rate added to the step before the trust ratio, a float, an
        array or a schedule ``count -> value``. 0 adds no decay.
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in
      76 minutes", ICLR 2020.
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, **storage),
        nonnegative_decay(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )
