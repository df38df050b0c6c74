"""AdEMAMix: Adam's step with a second, slow momentum mixed in (Pagliardini,
Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older",
arXiv:2409.03137, 2024), as optax.contrib.ademamix:

    m1_t = b1 m1_{t-1} + (1 - b1) g_t        (fast EMA, bias-corrected)
    m2_t = b3 m2_{t-1} + (1 - b3) g_t        (slow EMA, not bias-corrected)
    v_t  = b2 v_{t-1} + (1 - b2) g_t^2
    u_t  = (m1_hat + alpha m2_t) / (sqrt(v_hat + eps_root) + eps)

The paper warms ``alpha`` and ``b3`` up over a long horizon (its Algorithm 1);
:func:`alpha_scheduler` and :func:`b3_scheduler` are those schedules, to pass
as ``alpha=`` and ``b3=``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.fusion import chain
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.storage import stores_moments
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx._engine.validate import (
    check_decay,
    check_nonnegative,
    check_positive_int,
    check_value,
)
from adam_tx.adam import check_adam_args
from adam_tx.bias_correction import correction, debias
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.moments import adaptive_step, ema, ema_sq
from adam_tx.variants._common import moment_formats, nonnegative_decay


class ScaleByAdemamixState(NamedTuple):
    """State of :func:`scale_by_ademamix`.

    optax's also holds ``count_m2``, a second count equal to ``count``, at
    which it evaluates ``b3`` and ``alpha``; here both are schedules of
    ``count``, with the same values.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    m1: Any
    m2: Any
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(
    ScaleByAdemamixState,
    b1=hyperparams.DECAY,
    b2=hyperparams.DECAY,
    b3=hyperparams.DECAY,
    alpha=hyperparams.NONNEGATIVE,
    eps=hyperparams.NONNEGATIVE,
    eps_root=hyperparams.NONNEGATIVE,
)


def scale_by_ademamix(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    *,
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescale updates by AdEMAMix's mixture of a fast and a slow momentum.

    ``u = (m1_hat + alpha m2) / (sqrt(v_hat + eps_root) + eps)`` (module
    docstring); optax.contrib.scale_by_ademamix's arguments and defaults.

    Args:
      b1: decay of the fast EMA, in [0, 1); float or schedule.
      b2: decay of the second moment, in [0, 1); float or schedule.
      b3: decay of the slow EMA, in [0, 1); float or schedule (e.g.
        :func:`b3_scheduler`).
      alpha: weight of the slow EMA (>= 0); float or schedule (e.g.
        :func:`alpha_scheduler`).
      eps, eps_root: added outside / inside the square root (>= 0).
      mu_dtype: storage dtype of both EMAs ``m1`` and ``m2``. optax's
        ``mu_dtype`` also sets the second moment's; here that is ``nu_dtype``.
      nu_dtype, state_format, seed: as in :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.scale_by_ademamix(alpha=5.0, b3=0.9)
    >>> u, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
    >>> round(u.tolist()[0], 5)  # (1 + 5 * (1 - 0.9) * 2 / 2): Adam's 1 + 0.5 * sign
    1.5

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
      Older", arXiv:2409.03137, 2024.
    """
    check_adam_args(b1, b2, eps, eps_root)
    check_decay("b3", b3)
    check_nonnegative("alpha", alpha)
    formats = moment_formats(
        {"m1": "mu_dtype", "m2": "mu_dtype"},
        {"nu": "nu_dtype"},
        {"mu_dtype": mu_dtype, "nu_dtype": nu_dtype},
        state_format,
        seed,
    )
    hypers = (
        hyperparams.Hyper("b1", b1, complement=True),
        hyperparams.Hyper("b2", b2, complement=True),
        hyperparams.Hyper("b3", b3, complement=True),
        hyperparams.Hyper("alpha", alpha),
        hyperparams.Hyper("eps", eps),
        hyperparams.Hyper("eps_root", eps_root),
    )

    # A schedule's complement is taken as 1 - b3(t) in float32 (6e-4 relative
    # off for b3 = 0.9999); b3_scheduler also gives it exactly.
    b3_complement = getattr(b3, "complement", None)

    def scalars(hp, count):
        out = {"c1": correction(hp["1-b1"], count), "c2": correction(hp["1-b2"], count)}
        if b3_complement is not None:  # the schedule's count: before this step
            out["1-b3"] = jnp.asarray(b3_complement(count - 1), hp["b3"].dtype)
        return out

    def moments(c, g, m1, m2, v):
        hp = c.hp
        return (
            ema(m1, g, hp["b1"], hp["1-b1"]),
            ema(m2, g, hp["b3"], c.scalars.get("1-b3", hp["1-b3"])),
            ema_sq(v, g, hp["b2"], hp["1-b2"]),
        )

    def update(c, g, m1, m2, v):
        mixed = debias(m1, c.scalars["c1"]) + c.hp["alpha"] * m2
        v_hat = debias(v, c.scalars["c2"])
        return adaptive_step(mixed, v_hat, c.hp["eps"], c.hp["eps_root"])

    return counted_transform(
        "scale_by_ademamix",
        ScaleByAdemamixState,
        hypers,
        formats,
        SplitMath(moments, update),
        scalars=scalars,
    )


@stores_moments
def ademamix(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[..., Any] | None = None,
    **storage: Any,
) -> optax.GradientTransformationExtraArgs:
    """AdEMAMix with decoupled weight decay (optax.contrib.ademamix's arguments
    and chain): ``p <- p - lr (u_t + wd p)``, ``u_t`` as in
    :func:`scale_by_ademamix`. optax's alias defaults ``alpha`` to 5.0, its
    ``scale_by_ademamix`` to 6.0; both are kept. ``storage``: ``nu_dtype``,
    ``state_format``, ``seed``.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.ademamix(0.1, b3=0.9, alpha=5.0)
    >>> p = jnp.zeros(1); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0]), s, p)
    >>> round(float(u[0]), 5)  # -lr * 1.5
    -0.15

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      b3: decay rate of the slow momentum, a float, an array or a schedule
        ``count -> value`` (e.g. ``b3_scheduler``).
      alpha: weight of the slow momentum in the numerator, a float, an array or a
        schedule ``count -> value`` (e.g. ``alpha_scheduler``).
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      weight_decay: decoupled weight decay rate (AdamW's), multiplied by the learning
        rate; a float, an array or a schedule ``count -> value``. 0 adds no decay.
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
      Older", arXiv:2409.03137, 2024.
    """
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype, **storage),
        nonnegative_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def _progress(count: Any, warmup_steps: int) -> jax.Array:
    """``min(t / T, 1)`` as a ``hyper_dtype()`` scalar (any integer count)."""
    if isinstance(count, int) and not isinstance(count, bool):
        done = min(max(count, 0), warmup_steps)
        return jnp.asarray(done / warmup_steps, hyper_dtype())
    t = jnp.clip(jnp.asarray(count).astype(hyper_dtype()), 0, warmup_steps)
    return t / warmup_steps


def alpha_scheduler(
    alpha: float, warmup_steps: int, alpha_start: float = 0.0
) -> optax.Schedule:
    """AdEMAMix's linear warmup of ``alpha`` (the paper's ``f_alpha``).

    Formula: ``alpha(t) = alpha_start + (alpha - alpha_start) min(t / T, 1)``,
    ``T = warmup_steps``; the paper warms up over the whole run.

    >>> s = alpha_scheduler(8.0, 4)
    >>> [float(s(t)) for t in (0, 2, 4, 9)]
    [0.0, 4.0, 8.0, 8.0]

    Args:
      alpha: final value of ``alpha``.
      warmup_steps: steps ``T`` over which ``alpha`` rises (the paper: the whole run).
      alpha_start: value at step 0.

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
      Older", arXiv:2409.03137, 2024, Algorithm 1.
    """
    for name, value in (("alpha", alpha), ("alpha_start", alpha_start)):
        if callable(value):
            raise TypeError(f"{name} must be a number, got the callable {value!r}")
        check_value(name, value, 0.0, None)
    check_positive_int("warmup_steps", warmup_steps)
    alpha, alpha_start = float(alpha), float(alpha_start)

    def schedule(count):
        a = _progress(count, warmup_steps)
        return alpha_start + (alpha - alpha_start) * a

    schedule.horizon = warmup_steps
    return schedule


def b3_scheduler(b3: float, warmup_steps: int, b3_start: float = 0.9) -> optax.Schedule:
    """AdEMAMix's warmup of ``b3``, linear in the EMA's half-life (``f_beta3``).

    Formula: with ``a = min(t / T, 1)``, ``b3(t) = exp(ln(b_start) ln(b3) /
    ((1 - a) ln(b3) + a ln(b_start)))``: ``b_start`` at 0, ``b3`` from ``T`` on,
    and the half-life ``ln(1/2) / ln(b3(t))`` interpolated linearly between. The
    paper starts from ``b_start = b1``.

    >>> s = b3_scheduler(0.999, 10)
    >>> [round(float(s(t)), 6) for t in (0, 10, 20)]
    [0.9, 0.999, 0.999]

    Args:
      b3: final value of ``b3``.
      warmup_steps: steps ``T`` over which the half-life rises (the paper: the whole
        run).
      b3_start: value at step 0 (the paper uses ``b1``).

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
      Older", arXiv:2409.03137, 2024, Algorithm 1.
    """
    for name, value in (("b3", b3), ("b3_start", b3_start)):
        if callable(value):
            raise TypeError(f"{name} must be a number, got the callable {value!r}")
        check_value(name, value, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    check_positive_int("warmup_steps", warmup_steps)
    if b3_start > b3:
        raise ValueError(
            f"b3_start={b3_start!r} is out of range: expected b3_start <= b3={b3!r} "
            "(the warmup lengthens the slow EMA's memory)"
        )
    ln_start, ln_end = math.log(b3_start), math.log(b3)

    def log_b3(count):
        a = _progress(count, warmup_steps)
        return ln_start * ln_end / ((1.0 - a) * ln_end + a * ln_start)

    def schedule(count):
        return jnp.exp(log_b3(count))

    schedule.horizon = warmup_steps
    schedule.complement = lambda count: -jnp.expm1(log_b3(count))  # 1 - b3(t)
    return schedule
