"""Adamax: Adam with the infinity norm in place of the second moment (Kingma &
Ba 2015, section 7.1):

    m_t = b1 m_{t-1} + (1 - b1) g_t
    u_t = max(b2 u_{t-1}, |g_t| + eps)
    step = (m_t / (1 - b1^t)) / u_t

eps sits inside the max, as in torch.optim.Adamax and optax.adamax, so the two
libraries agree; the infinity norm needs no bias correction.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from adam_tx import hyperparams
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx._engine.validate import check_decay, check_nonnegative
from adam_tx.bias_correction import correction, debias
from adam_tx.moments import ema, ema_infinity_norm
from adam_tx.state_format import moment_format


class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`: the step count, the first moment and the
    infinity norm ``u``.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(
    ScaleByAdamaxState,
    b1=hyperparams.DECAY,
    b2=hyperparams.DECAY,
    eps=hyperparams.NONNEGATIVE,
)


def scale_by_adamax(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    *,
    mu_dtype: DType | None = None,
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescale updates by Adamax's bias-corrected first moment over the
    exponentially weighted infinity norm (module docstring).

    ``mu_dtype``, ``nu_dtype``, ``state_format`` and ``seed`` choose how the
    moments are stored, as in :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_adamax()
    >>> u, _ = tx.update(jnp.array([-2.0]), tx.init(jnp.zeros(1)))
    >>> round(u.tolist()[0], 6)
    -1.0

    Args:
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to ``|g_t|`` in the infinity-norm update.
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, 7.1.
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_nonnegative("eps", eps)
    formats = {
        "mu": moment_format("mu_dtype", mu_dtype, state_format, seed=seed),
        "nu": moment_format(
            "nu_dtype", nu_dtype, state_format, signed=False, seed=seed
        ),
    }

    def moments(c, g, m, u):
        m = ema(m, g, c.hp["b1"], c.hp["1-b1"])
        return m, ema_infinity_norm(u, g, c.hp["b2"], c.hp["eps"])

    def update(c, g, m, u):
        return debias(m, c.scalars["c1"]) / u

    math = SplitMath(moments, update)

    return counted_transform(
        "scale_by_adamax",
        ScaleByAdamaxState,
        (
            hyperparams.Hyper("b1", b1, complement=True),
            hyperparams.Hyper("b2", b2),
            hyperparams.Hyper("eps", eps),
        ),
        formats,
        math,
        scalars=lambda hp, count: {"c1": correction(hp["1-b1"], count)},
    )
