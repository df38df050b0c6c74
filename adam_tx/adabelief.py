"""AdaBelief: Adam whose second moment tracks the "belief" in the gradient,
the squared deviation of the gradient from its EMA (Zhuang et al., "AdaBelief
Optimizer: Adapting Stepsizes by the Belief in Observed Gradients", NeurIPS
2020), in optax's form:

    m_t = b1 m_{t-1} + (1 - b1) g_t
    s_t = b2 s_{t-1} + (1 - b2) (g_t - m_t)^2 + eps_root
    u_t = m_hat / (sqrt(s_hat) + eps)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from adam_tx import hyperparams
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx.adam import (
    ADAM_RANGES,
    adam_corrections,
    adam_hypers,
    check_adam_args,
    first_moment_direction,
)
from adam_tx.bias_correction import debias
from adam_tx.moments import abs_sq, adaptive_step, ema, ema_plus
from adam_tx.state_format import moment_format


class ScaleByBeliefState(NamedTuple):
    """State of :func:`scale_by_belief`: the step count, the first moment and the belief
    ``s``.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(ScaleByBeliefState, **ADAM_RANGES)


def scale_by_belief(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-16,
    eps_root: Numeric = 1e-16,
    *,
    mu_dtype: DType | None = None,
    nu_dtype: DType | None = None,
    nesterov: bool = False,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescale updates by AdaBelief's moment estimates (module docstring).

    Defaults (eps = eps_root = 1e-16) are optax's and the paper's.
    ``mu_dtype``, ``nu_dtype``, ``state_format`` and ``seed`` choose how the
    moments are stored, as in :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_belief()
    >>> u, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
    >>> round(u.tolist()[0], 4)  # m_hat = 1, s_hat = 0.9^2: 1 / 0.9
    1.1111

    Args:
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the root of the belief ``s_t`` in the denominator.
      eps_root: added to ``s_t`` at every step (inside the root), as optax.
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
      Observed Gradients", NeurIPS 2020.
    """
    check_adam_args(b1, b2, eps, eps_root)
    formats = {
        "mu": moment_format("mu_dtype", mu_dtype, state_format, seed=seed),
        "nu": moment_format(
            "nu_dtype", nu_dtype, state_format, signed=False, seed=seed
        ),
    }

    def moments(c, g, m, s):
        m = ema(m, g, c.hp["b1"], c.hp["1-b1"])
        s = ema_plus(s, abs_sq(g - m), c.hp["b2"], c.hp["1-b2"], c.hp["eps_root"])
        return m, s

    def update(c, g, m, s):
        m_hat = first_moment_direction(c, m, g, bias_correction=True, nesterov=nesterov)
        return adaptive_step(m_hat, debias(s, c.scalars["c2"]), c.hp["eps"])

    math = SplitMath(moments, update)

    return counted_transform(
        "scale_by_belief",
        ScaleByBeliefState,
        adam_hypers(b1, b2, eps, eps_root),
        formats,
        math,
        scalars=adam_corrections(True, nesterov),
    )
