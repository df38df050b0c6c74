"""Adam's moment estimation and preconditioning: :func:`scale_by_adam`.

    m_t = b1 m_{t-1} + (1 - b1) g_t            v_t = b2 v_{t-1} + (1 - b2) g_t^2
    m_hat = m_t / (1 - b1^t)                   v_hat = v_t / (1 - b2^t)
    u_t = m_hat / (sqrt(v_hat + eps_root) + eps)

With ``nesterov=True`` (NAdam, optax's form) ``m_hat`` is replaced by
``b1 m_t / (1 - b1^{t+1}) + (1 - b1) g_t / (1 - b1^t)``.

References:
  Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
  Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from adam_tx import hyperparams
from adam_tx._engine.counting import safe_increment
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx._engine.validate import check_decay, check_nonnegative
from adam_tx.bias_correction import correction, debias
from adam_tx.moments import adaptive_step, ema, ema_sq, nesterov_momentum
from adam_tx.state_format import moment_format


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`: count first, as in optax."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


def check_adam_args(b1, b2, eps, eps_root) -> None:
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_nonnegative("eps", eps)
    check_nonnegative("eps_root", eps_root)


# What set_hyperparams accepts for the Adam-family states (as the factories).
ADAM_RANGES = dict(
    b1=hyperparams.DECAY,
    b2=hyperparams.DECAY,
    eps=hyperparams.NONNEGATIVE,
    eps_root=hyperparams.NONNEGATIVE,
)
hyperparams.register_ranges(ScaleByAdamState, **ADAM_RANGES)


def adam_hypers(b1, b2, eps, eps_root) -> tuple[hyperparams.Hyper, ...]:
    return (
        hyperparams.Hyper("b1", b1, complement=True),
        hyperparams.Hyper("b2", b2, complement=True),
        hyperparams.Hyper("eps", eps),
        hyperparams.Hyper("eps_root", eps_root),
    )


def adam_corrections(bias_correction: bool, nesterov: bool):
    """Per-step bias corrections ``1 - b^t`` (and ``1 - b1^{t+1}`` for NAdam)."""

    def scalars(hp, count):
        if not bias_correction:
            return {}
        out = {"c1": correction(hp["1-b1"], count), "c2": correction(hp["1-b2"], count)}
        if nesterov:
            out["c1_next"] = correction(hp["1-b1"], safe_increment(count))
        return out

    return scalars


def first_moment_direction(c, m, g, *, bias_correction: bool, nesterov: bool):
    """``m_hat`` (or NAdam's look-ahead) from the updated first moment."""
    b1, c1 = c.hp["b1"], c.hp["1-b1"]
    if not bias_correction:
        return nesterov_momentum(m, g, b1, c1) if nesterov else m
    if nesterov:
        return nesterov_momentum(
            debias(m, c.scalars["c1_next"]), debias(g, c.scalars["c1"]), b1, c1
        )
    return debias(m, c.scalars["c1"])


def scale_by_adam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    *,
    bias_correction: bool = True,
    nu_dtype: DType | None = None,
    nesterov: bool = False,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescale updates by Adam's bias-corrected moment estimates.

    ``u = m_hat / (sqrt(v_hat + eps_root) + eps)`` (module docstring has the
    full recurrence). The result is a direction; chain
    :func:`adam_tx.scale_by_learning_rate` to take a step.

    Args:
      b1: decay of the first moment, in [0, 1); a float or a schedule of the step
        (e.g. :func:`adam_tx.schedules.one_cycle_momentum`).
      b2: decay of the second moment, in [0, 1); float or schedule.
      eps: added to the denominator outside the square root (>= 0).
      eps_root: added inside the square root (>= 0).
      bias_correction: divide the moments by ``1 - b^t``; False gives the
        uncorrected EMAs (their early steps are shrunk by the zero start).
      mu_dtype: storage dtype of the first moment (default: the parameter's).
      nu_dtype: storage dtype of the second moment (default: the parameter's).
      nesterov: use NAdam's Nesterov look-ahead for the first moment.
      state_format: how the moments are stored between steps (see
        :mod:`adam_tx.state_format`): ``"nearest"`` (``mu_dtype``/``nu_dtype``,
        rounded to nearest), ``"stochastic"`` (bfloat16 storage rounded
        stochastically, key in ``state.rng``) or ``"int8"`` (blockwise 8-bit
        for leaves of >= 4096 elements, 2.03 bytes/param instead of 8).
      seed: seed of the stochastic rounding key (None: 0).

    Returns:
      An ``optax.GradientTransformation`` with state :class:`ScaleByAdamState`.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_adam()
    >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
    >>> [round(x, 6) for x in u.tolist()]  # first step: g / (|g| + eps)
    [1.0, -1.0]

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    check_adam_args(b1, b2, eps, eps_root)
    formats = {
        "mu": moment_format("mu_dtype", mu_dtype, state_format, seed=seed),
        "nu": moment_format(
            "nu_dtype", nu_dtype, state_format, signed=False, seed=seed
        ),
    }

    def moments(c, g, m, v):
        return ema(m, g, c.hp["b1"], c.hp["1-b1"]), ema_sq(
            v, g, c.hp["b2"], c.hp["1-b2"]
        )

    def update(c, g, m, v):
        m_hat = first_moment_direction(
            c, m, g, bias_correction=bias_correction, nesterov=nesterov
        )
        v_hat = debias(v, c.scalars["c2"]) if bias_correction else v
        return adaptive_step(m_hat, v_hat, c.hp["eps"], c.hp["eps_root"])

    math = SplitMath(moments, update)

    return counted_transform(
        "scale_by_adam",
        ScaleByAdamState,
        adam_hypers(b1, b2, eps, eps_root),
        formats,
        math,
        scalars=adam_corrections(bias_correction, nesterov),
    )
