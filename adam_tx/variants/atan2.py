"""Adam-atan2: Adam without eps, the division replaced by ``atan2``
(Everett et al., "Scaling Exponents Across Parameterizations and Optimizers",
ICML 2024, appendix C.5):

    u_t = a atan2(m_hat, b sqrt(v_hat))

``atan2`` is bounded by ``pi/2``, defined at ``(0, 0)`` (0) and unchanged when
the gradient is scaled by any ``c > 0`` (``m_hat`` and ``sqrt(v_hat)`` both
scale by ``c``), so there is no eps to tune with the gradients' size. For
``|m_hat| << b sqrt(v_hat)`` the step is ``(a/b) m_hat / sqrt(v_hat)``, Adam's
with ``lr a / b``; ``a = b = 1`` are the paper's constants (``a = 4/pi ~ 1.27``
instead makes the step equal Adam's where ``|m_hat| = sqrt(v_hat)``).
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
from adam_tx._engine.validate import check_decay, check_positive
from adam_tx.adam import adam_corrections, first_moment_direction
from adam_tx.bias_correction import debias
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.moments import ema, ema_sq
from adam_tx.variants._common import adam_formats, nonnegative_decay


class ScaleByAdamAtan2State(NamedTuple):
    """State of :func:`scale_by_adam_atan2`: the step count and Adam's two moments."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(
    ScaleByAdamAtan2State,
    b1=hyperparams.DECAY,
    b2=hyperparams.DECAY,
    a=hyperparams.POSITIVE,
    b=hyperparams.POSITIVE,
)


def scale_by_adam_atan2(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    a: Numeric = 1.0,
    b: Numeric = 1.0,
    *,
    nesterov: bool = False,
    mu_dtype: DType | None = None,
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescale updates by ``a atan2(m_hat, b sqrt(v_hat))`` (module docstring).

    Args:
      b1, b2: decays of the moments, in [0, 1); floats or schedules.
      a: scale of the step (> 0).
      b: scale of ``sqrt(v_hat)`` inside ``atan2`` (> 0).
      nesterov: NAdam's look-ahead for ``m_hat``.
      mu_dtype, nu_dtype, state_format, seed: as in :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.scale_by_adam_atan2()
    >>> u, _ = tx.update(jnp.array([1e-3, -3.0, 0.0]), tx.init(jnp.zeros(3)))
    >>> [round(x, 4) for x in u.tolist()]  # atan2(g, |g|) = pi/4, atan2(0, 0) = 0
    [0.7854, -0.7854, 0.0]

    References:
      Everett et al., "Scaling Exponents Across Parameterizations and
      Optimizers", ICML 2024.
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_positive("a", a)
    check_positive("b", b)
    formats = adam_formats(mu_dtype, nu_dtype, state_format, seed)
    hypers = (
        hyperparams.Hyper("b1", b1, complement=True),
        hyperparams.Hyper("b2", b2, complement=True),
        hyperparams.Hyper("a", a),
        hyperparams.Hyper("b", b),
    )

    def moments(c, g, m, v):
        m = ema(m, g, c.hp["b1"], c.hp["1-b1"])
        return m, ema_sq(v, g, c.hp["b2"], c.hp["1-b2"])

    def update(c, g, m, v):
        m_hat = first_moment_direction(c, m, g, bias_correction=True, nesterov=nesterov)
        root = c.hp["b"] * jnp.sqrt(debias(v, c.scalars["c2"]))
        return c.hp["a"] * jnp.arctan2(m_hat, root)

    return counted_transform(
        "scale_by_adam_atan2",
        ScaleByAdamAtan2State,
        hypers,
        formats,
        SplitMath(moments, update),
        scalars=adam_corrections(True, nesterov),
    )


@stores_moments
def adam_atan2(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    weight_decay: ScalarOrSchedule = 1e-4,
    *,
    a: Numeric = 1.0,
    b: Numeric = 1.0,
    mask: Any | Callable[..., Any] | None = None,
    nesterov: bool = False,
    **storage: Any,
) -> optax.GradientTransformationExtraArgs:
    """Adam-atan2 with decoupled weight decay, as :func:`adam_tx.adamw` takes it.

    ``p <- p - lr (a atan2(m_hat, b sqrt(v_hat)) + wd p)``. ``storage``:
    ``mu_dtype``, ``nu_dtype``, ``state_format``, ``seed``.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.adam_atan2(0.1, weight_decay=0.0)
    >>> p = jnp.zeros(1); s = opt.init(p)
    >>> round(float(opt.update(jnp.array([5.0]), s, p)[0][0]), 4)  # -0.1 pi / 4
    -0.0785

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      weight_decay: decoupled weight decay rate (AdamW's), multiplied by the learning
        rate; a float, an array or a schedule ``count -> value``. 0 adds no decay.
      a: scale of the ``atan2`` step (the paper's 1).
      b: scale of ``sqrt(v_hat)`` inside ``atan2`` (the paper's 1).
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
      Everett et al., "Scaling Exponents Across Parameterizations and
      Optimizers", ICML 2024.
    """
    return chain(
        scale_by_adam_atan2(b1, b2, a, b, nesterov=nesterov, **storage),
        nonnegative_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
