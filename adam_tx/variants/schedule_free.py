"""Schedule-free learning (Defazio et al., "The Road Less Scheduled", NeurIPS
2024, arXiv:2405.15682), as optax.contrib.schedule_free:

    z_{t+1} = z_t + u_t              (u_t: the base optimizer's step, taken at y_t)
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
    y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1}      (the parameters)
    c_{t+1} = w_t / sum_{i<=t} w_i,   w_t = max_{i<=t}(lr_i)^weight_lr_power

Only ``z`` is stored: the parameters are ``y``, and ``x = (y - (1 - b1) z) / b1``
(:func:`schedule_free_eval_params`, where evaluation belongs). The parameter
update is computed from the new ``z`` alone,

    y_{t+1} - y_t = c (z_{t+1} - y_t) + (1 - b1)(1 - c) u_t,

so the step reads each buffer once and fuses with the base optimizer's pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine import fusion
from adam_tx._engine.counting import safe_increment
from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.fusion import chain
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx._engine.validate import (
    check_decay,
    check_float_dtype,
    check_nonnegative,
    check_nonnegative_int,
    check_value,
    is_schedule,
)
from adam_tx.bias_correction import correction, debias
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.moments import adaptive_step, ema_sq
from adam_tx.schedules import linear
from adam_tx.state_format import Plain, moment_format
from adam_tx.variants._common import nonnegative_decay


class ScaleByScheduleFreeState(NamedTuple):
    """State of :func:`scale_by_schedule_free`: ``z``, and the running maximum
    of the learning rate and the sum of the averaging weights."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    z: Any
    hyperparams: dict
    max_lr: jax.Array | None = None
    weight_sum: jax.Array | None = None


class ScaleByRmsDebiasedState(NamedTuple):
    """State of :func:`scale_by_rms_debiased`: the step count and the second moment."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(
    ScaleByScheduleFreeState,
    b1=(0.0, 1.0, False, False),
    learning_rate=hyperparams.NONNEGATIVE,
)
hyperparams.register_ranges(
    ScaleByRmsDebiasedState, b2=hyperparams.DECAY, eps=hyperparams.NONNEGATIVE
)


def scale_by_rms_debiased(
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    *,
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Adam without momentum: ``u = g / (sqrt(v_hat) + eps)``, ``v_hat = v / (1 -
    b2^t)`` (optax.scale_by_rms(eps_in_sqrt=False, bias_correction=True)), the
    base direction of schedule-free AdamW, with no first moment stored.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.scale_by_rms_debiased()
    >>> tx.update(jnp.array([2.0, -0.5]), tx.init(jnp.zeros(2)))[0].tolist()
    [1.0, -1.0]

    Args:
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024 (Algorithm 1).
    """
    check_decay("b2", b2)
    check_nonnegative("eps", eps)
    nu = moment_format("nu_dtype", nu_dtype, state_format, signed=False, seed=seed)
    formats = {"nu": nu}

    def moments(c, g, v):
        return (ema_sq(v, g, c.hp["b2"], c.hp["1-b2"]),)

    def update(c, g, v):
        return adaptive_step(g, debias(v, c.scalars["c2"]), c.hp["eps"])

    return counted_transform(
        "scale_by_rms_debiased",
        ScaleByRmsDebiasedState,
        (hyperparams.Hyper("b2", b2, complement=True), hyperparams.Hyper("eps", eps)),
        formats,
        SplitMath(moments, update),
        scalars=lambda hp, count: {"c2": correction(hp["1-b2"], count)},
    )


def averaging_weight(lr, max_lr, weight_sum, power: float):
    """``(c, max_lr', weight_sum')``: the averaging coefficient of this step.

    Formula: ``max_lr' = max(max_lr, lr)``, ``w = max_lr'^power``, ``weight_sum'
    = weight_sum + w``, ``c = w / weight_sum'`` (0 while every weight is 0).
    """
    max_lr = jnp.maximum(max_lr, lr)
    weight = max_lr**power
    total = weight_sum + weight
    return jnp.where(total == 0, jnp.zeros_like(total), weight / total), max_lr, total


def scale_by_schedule_free(
    learning_rate: ScalarOrSchedule = 0.0025,
    b1: Numeric = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: DType | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Turn the base optimizer's steps into schedule-free steps (module docstring).

    Chain it after a complete base optimizer whose updates are steps ``u_t``
    (learning rate and sign applied) taken at the parameters ``y_t``, e.g.
    ``chain(scale_by_rms_debiased(), add_decayed_weights(wd),
    scale_by_learning_rate(lr), scale_by_schedule_free(lr))``; the base should
    have no momentum. Needs ``params``.

    Args:
      learning_rate: the base optimizer's learning rate (constant or schedule),
        read only for the averaging weights; like optax, a schedule is
        evaluated at ``t + 1`` here, where the base evaluates it at ``t``.
      b1: the interpolation ``y = b1 x + (1 - b1) z``, in (0, 1).
      weight_lr_power: the power of the running maximum learning rate in the
        averaging weights (>= 0).
      state_dtype: storage dtype of ``z`` (default: the parameters').

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.scale_by_schedule_free(1.0, b1=0.9)
    >>> p = jnp.array([1.0]); s = tx.init(p)
    >>> u, s = tx.update(jnp.array([-0.5]), s, p)  # first step: x = z = 0.5
    >>> u.tolist(), s.z.tolist()
    ([-0.5], [0.5])

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    check_nonnegative("learning_rate", learning_rate)
    if is_schedule(b1):
        raise TypeError(f"b1 must be a number, got the callable {b1!r}")
    check_value("b1", b1, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    if is_schedule(weight_lr_power):
        raise TypeError(f"weight_lr_power must be a number, got {weight_lr_power!r}")
    check_value("weight_lr_power", weight_lr_power, 0.0, None)
    power = float(weight_lr_power)
    state_dtype = check_float_dtype("state_dtype", state_dtype)
    rate = learning_rate
    if is_schedule(learning_rate):
        rate = lambda count: learning_rate(safe_increment(jnp.asarray(count)))  # noqa: E731

    def init_z(field, p, fmt):
        # A copy, not p itself: a donated state may not alias the parameters.
        return jnp.array(p, dtype=state_dtype or jnp.result_type(p), copy=True)

    def moments(c, u, z):
        return (z + u,)

    def update(c, u, z):
        y = c.param.astype(u.dtype)
        z = z.astype(state_dtype or c.param.dtype).astype(u.dtype)  # as stored
        ck, one_minus_b1 = c.scalars["ck"], c.hp["1-b1"]
        return ck * (z - y) + one_minus_b1 * (1 - ck) * u

    hypers = (
        hyperparams.Hyper("learning_rate", rate),
        hyperparams.Hyper("b1", b1, complement=True),
    )
    tx = counted_transform(
        "scale_by_schedule_free",
        ScaleByScheduleFreeState,
        hypers,
        {"z": Plain(state_dtype)},
        SplitMath(moments, update),
        needs_params=True,
        init_moment=init_z,
    )
    return _with_averaging_weights(tx, power)


def _with_averaging_weights(tx, power: float):
    """``tx`` whose state also carries ``max_lr`` and ``weight_sum``, and whose
    per-step scalars hold this step's averaging coefficient ``ck``."""
    piece = fusion.program_of(tx)

    def init(params):
        state = piece.init(params)
        # Distinct arrays: a donated state may not alias a buffer twice.
        return state._replace(
            max_lr=jnp.zeros([], hyper_dtype()), weight_sum=jnp.zeros([], hyper_dtype())
        )

    def prepare(state, params, reduced):
        ctx = piece.prepare(state, params, reduced)
        ck, max_lr, total = averaging_weight(
            ctx.hp["learning_rate"], state.max_lr, state.weight_sum, power
        )
        extra = {"ck": ck, "max_lr": max_lr, "weight_sum": total}
        return ctx._replace(scalars={**ctx.scalars, **extra})

    def finish(state, ctx, fields, partials):
        new = piece.finish(state, ctx, fields, partials)
        s = ctx.scalars
        return new._replace(max_lr=s["max_lr"], weight_sum=s["weight_sum"])

    return fusion.transformation(
        piece.replace(init=init, prepare=prepare, finish=finish)
    )


def schedule_free_adamw(
    learning_rate: ScalarOrSchedule = 0.0025,
    warmup_steps: int | None = None,
    b1: Numeric = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: DType | None = None,
    *,
    mask: Any | Callable[..., Any] | None = None,
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Schedule-free AdamW (optax.contrib.schedule_free_adamw's arguments).

    The chain ``scale_by_rms_debiased(b2, eps)``, ``add_decayed_weights(wd)``
    (at ``y``), ``scale_by_learning_rate(lr)``, ``scale_by_schedule_free(lr,
    b1)``, fused into one pass per leaf. ``warmup_steps``: a linear warmup from
    0, optax's ``warmup_constant_schedule``. Evaluate the model at
    :func:`schedule_free_eval_params`.

    optax's schedule is evaluated one step later for the averaging weights than
    for the base step (see :func:`scale_by_schedule_free`); the authors'
    ``schedulefree.AdamWScheduleFree`` evaluates both at ``t + 1``. Without
    warmup the three agree.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.schedule_free_adamw(0.1)
    >>> p = jnp.array([1.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0]), s, p)
    >>> round(float(u[0]), 6)  # first step: y = z = p - lr * g / |g|
    -0.1

    Args:
      learning_rate: peak step size, a float, an array or a schedule ``count -> value``.
      warmup_steps: steps of linear warmup from 0 (None: none).
      b1: interpolation between the average ``x`` and ``z`` at which gradients are taken
        (plays momentum's part).
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      weight_decay: decoupled weight decay rate, applied at ``y``; 0: none.
      weight_lr_power: power ``p`` of the largest learning rate so far in the averaging
        weights.
      state_dtype: storage dtype of ``z`` (None: the parameter's).
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    if warmup_steps is not None:
        check_nonnegative_int("warmup_steps", warmup_steps)
        if warmup_steps > 0:
            check_nonnegative("learning_rate", learning_rate)
            if is_schedule(learning_rate):
                raise TypeError(
                    "learning_rate must be a number when warmup_steps is given"
                )
            learning_rate = linear(0.0, float(learning_rate), warmup_steps)
    return chain(
        scale_by_rms_debiased(
            b2, eps, nu_dtype=nu_dtype, state_format=state_format, seed=seed
        ),
        nonnegative_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
        scale_by_schedule_free(learning_rate, b1, weight_lr_power, state_dtype),
    )


def _schedule_free_states(state: Any) -> list[ScaleByScheduleFreeState]:
    found = []

    def visit(node):
        if isinstance(node, ScaleByScheduleFreeState):
            found.append(node)
        return node

    is_leaf = lambda n: isinstance(n, ScaleByScheduleFreeState)  # noqa: E731
    jax.tree.map(visit, state, is_leaf=is_leaf)
    return found


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """The parameters to evaluate a schedule-free model at: ``x``.

    Formula: ``x = (y - (1 - b1) z) / b1``, ``y`` the parameters and ``z`` from
    the :class:`ScaleByScheduleFreeState` found in ``state`` (anywhere inside a
    chain or wrapper); optax.contrib.schedule_free_eval_params.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.schedule_free_adamw(0.1)
    >>> p = jnp.array([1.0]); s = opt.init(p)
    >>> for g in (2.0, 1.0):
    ...     u, s = opt.update(jnp.array([g]), s, p)
    ...     p = adam_tx.apply_updates(p, u)
    >>> x = adam_tx.variants.schedule_free_eval_params(s, p)
    >>> bool(x[0] > p[0])  # x averages the z iterates; y leans toward the newest z
    True

    Args:
      state: the schedule-free optimizer's state (or a state containing it).
      params: the current parameters ``y``.

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    found = _schedule_free_states(state)
    if len(found) != 1:
        raise ValueError(
            f"schedule_free_eval_params needs a state holding exactly one "
            f"ScaleByScheduleFreeState (from adam_tx.variants.schedule_free_adamw "
            f"or scale_by_schedule_free); found {len(found)}"
        )
    sf = found[0]
    b1 = jnp.asarray(sf.hyperparams["b1"], hyper_dtype())
    one_minus_b1 = jnp.asarray(sf.hyperparams["1-b1"], hyper_dtype())

    def x_of(y, z):
        dtype = jnp.promote_types(jnp.result_type(y), jnp.float32)
        y, z = y.astype(dtype), z.astype(dtype)
        x = (y - one_minus_b1.astype(dtype) * z) / b1.astype(dtype)
        return x.astype(jnp.result_type(y))

    return jax.tree.map(x_of, params, sf.z)
