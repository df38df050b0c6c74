"""The baselines Adam is compared with: RMSProp, AdaGrad and SGD momentum.

RMSProp (Tieleman & Hinton 2012), per leaf:

    v_t = a v_{t-1} + (1 - a) |g|^2           (centered: also m_t = EMA of g)
    d_t = sqrt(v_t + eps)                     (eps_in_sqrt=True, optax)
    d_t = sqrt(v_t) + eps                     (eps_in_sqrt=False, torch)
    centered: v_t is replaced by max(v_t - |m_t|^2, 0) inside the square root;
    bias_correction: m_t and v_t are divided by 1 - a^t first.

AdaGrad (Duchi et al. 2011): ``s_t = s_{t-1} + |g|^2``, ``u = g / (sqrt(s_t) +
eps)`` with eps outside the root, as torch.optim.Adagrad.

Momentum (Polyak 1964; Sutskever et al. 2013 for Nesterov), torch's form:
``b_1 = g_1``, ``b_t = mu b_{t-1} + (1 - dampening) g_t``;
``u = b_t``, or ``g_t + mu b_t`` with Nesterov.

For complex parameters ``|g|^2 = (g * conj(g)).real`` (:func:`moments.abs_sq`),
as optax computes it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.typing import DType, Numeric
from adam_tx._engine.validate import (
    check_decay,
    check_nonnegative,
    check_range,
    check_value,
    is_traced,
)
from adam_tx.bias_correction import correction, debias
from adam_tx.moments import abs_sq, ema, ema_sq
from adam_tx.state_format import moment_format


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`: the step count and the mean of squares."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    nu: Any
    hyperparams: dict


class ScaleByStddevState(NamedTuple):
    """State of the centered :func:`scale_by_rms`: the mean and the mean of squares."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    hyperparams: dict


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`: the step count and the sum of squares."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    sum_of_squares: Any
    hyperparams: dict


class TraceState(NamedTuple):
    """State of :func:`trace` (momentum): the step count and the momentum buffer."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    trace: Any
    hyperparams: dict


_RMS_RANGES = dict(decay=hyperparams.DECAY, eps=hyperparams.NONNEGATIVE)
hyperparams.register_ranges(ScaleByRmsState, **_RMS_RANGES)
hyperparams.register_ranges(ScaleByStddevState, **_RMS_RANGES)
hyperparams.register_ranges(ScaleByAdagradState, eps=hyperparams.NONNEGATIVE)
hyperparams.register_ranges(
    TraceState, decay=(0.0, 1.0, True, True), dampening=(0.0, 1.0, True, True)
)


def scale_by_rms(
    decay: Numeric = 0.9,
    eps: Numeric = 1e-8,
    initial_scale: Numeric = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    centered: bool = False,
    nu_dtype: DType | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Divide updates by the root of an EMA of squared gradients (RMSProp).

    Formula: ``v_t = decay v_{t-1} + (1 - decay) |g_t|^2``, ``u = g_t /
    sqrt(v_t + eps)`` (``eps_in_sqrt``) or ``g_t / (sqrt(v_t) + eps)``.

    Args:
      decay: EMA decay in [0, 1) (torch's ``alpha``; torch defaults to 0.99).
      eps: stabiliser; inside the root if ``eps_in_sqrt`` (optax), outside
        otherwise (torch.optim.RMSprop).
      initial_scale: initial value of the squared-gradient EMA (torch: 0).
      eps_in_sqrt: where ``eps`` goes (see ``eps``).
      bias_correction: divide the EMAs by ``1 - decay^t`` (optax's option;
        ``scale_by_rms(b2, eps_in_sqrt=False, bias_correction=True)`` is Adam
        with ``b1 = 0``).
      centered: subtract the squared EMA of the gradient (variance estimate),
        as ``optax.scale_by_stddev``.
      nu_dtype: storage dtype of the moments.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_rms(decay=0.75, eps=0.0)
    >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()  # 2/sqrt(1)
    [2.0]

    References:
      Tieleman & Hinton, "Lecture 6.5 - RMSProp", COURSERA 2012;
      Graves, "Generating Sequences With Recurrent Neural Networks", 2013.
    """
    check_decay("decay", decay)
    check_nonnegative("eps", eps)
    check_nonnegative("initial_scale", initial_scale)
    fmt = moment_format("nu_dtype", nu_dtype)
    hypers = (
        hyperparams.Hyper("decay", decay, complement=True),
        hyperparams.Hyper("eps", eps),
    )

    def denominator(c, v):
        eps_ = c.hp["eps"]
        return jnp.sqrt(v + eps_) if eps_in_sqrt else jnp.sqrt(v) + eps_

    def variance(m, v):
        # v - |m|^2 >= 0 in exact arithmetic, but 0 to rounding where the two
        # agree (the first bias-corrected step): never below 0, so never NaN.
        return jnp.maximum(v - abs_sq(m), 0)

    def hat(c, moment):
        return debias(moment, c.scalars["c"]) if bias_correction else moment

    def scalars(hp, count):
        return {"c": correction(hp["1-decay"], count)} if bias_correction else {}

    def init_moment(field, p, f):
        return f.init(p) + (initial_scale if field == "nu" else 0.0)

    sq = lambda c, g, v: ema_sq(v, g, c.hp["decay"], c.hp["1-decay"])
    if centered:
        math = SplitMath(
            lambda c, g, m, v: (ema(m, g, c.hp["decay"], c.hp["1-decay"]), sq(c, g, v)),
            lambda c, g, m, v: g / denominator(c, variance(hat(c, m), hat(c, v))),
        )
        name, state_cls, fields = "scale_by_stddev", ScaleByStddevState, ("mu", "nu")
    else:
        math = SplitMath(
            lambda c, g, v: (sq(c, g, v),),
            lambda c, g, v: g / denominator(c, hat(c, v)),
        )
        name, state_cls, fields = "scale_by_rms", ScaleByRmsState, ("nu",)

    return counted_transform(
        name,
        state_cls,
        hypers,
        dict.fromkeys(fields, fmt),
        math,
        scalars=scalars,
        init_moment=init_moment,
    )


def scale_by_adagrad(
    initial_accumulator_value: Numeric = 0.0, eps: Numeric = 1e-10
) -> optax.GradientTransformationExtraArgs:
    """Divide updates by the root of the running sum of squared gradients.

    ``s_t = s_{t-1} + |g|^2``, ``u = g / (sqrt(s_t) + eps)``: torch.optim.Adagrad's
    placement of eps and its defaults (optax's ``scale_by_rss`` puts eps inside
    the root and starts the sum at 0.1).

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_adagrad(eps=0.0)
    >>> tx.update(jnp.array([-3.0]), tx.init(jnp.zeros(1)))[0].tolist()
    [-1.0]

    Args:
      initial_accumulator_value: starting value of the sum of squared gradients.
      eps: added to the root of the sum in the denominator.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
      and Stochastic Optimization", JMLR 2011.
    """
    check_value("initial_accumulator_value", initial_accumulator_value, 0.0)
    check_nonnegative("eps", eps)

    math = SplitMath(
        lambda c, g, s: (s + abs_sq(g),),
        lambda c, g, s: g / (jnp.sqrt(s) + c.hp["eps"]),
    )

    return counted_transform(
        "scale_by_adagrad",
        ScaleByAdagradState,
        (hyperparams.Hyper("eps", eps),),
        {"sum_of_squares": moment_format("nu_dtype", None)},
        math,
        init_moment=lambda field, p, f: f.init(p) + initial_accumulator_value,
    )


def trace(
    decay: Numeric = 0.9,
    nesterov: bool = False,
    accumulator_dtype: DType | None = None,
    *,
    dampening: Numeric | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Momentum: ``b_t = decay b_{t-1} + (1 - dampening) g_t`` (``b_1 = g_1``).

    Returns ``b_t``, or ``g_t + decay b_t`` with ``nesterov=True``; the same as
    torch.optim.SGD's momentum buffer, and as optax.trace when there is no
    dampening. ``decay`` may be 1 (a running sum).

    Args:
      decay: the momentum, in [0, 1].
      nesterov: return the look-ahead ``g_t + decay b_t``.
      accumulator_dtype: storage dtype of ``b`` (default: the parameter's).
      dampening: torch's dampening in [0, 1] (None: none); not with Nesterov.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.trace(0.5)
    >>> s = tx.init(jnp.zeros(1))
    >>> u, s = tx.update(jnp.ones(1), s)
    >>> tx.update(jnp.ones(1), s)[0].tolist()
    [1.5]
    """
    check_range("decay", decay, 0.0, 1.0)
    hypers = (hyperparams.Hyper("decay", decay),)
    if dampening is not None:
        check_range("dampening", dampening, 0.0, 1.0)
        if nesterov and (callable(dampening) or is_traced(dampening) or dampening != 0):
            raise ValueError(f"dampening={dampening!r} must be 0 when nesterov=True")
        hypers += (hyperparams.Hyper("dampening", dampening, complement=True),)

    def moments(c, g, b):
        if dampening is None:  # b_1 = decay * 0 + g_1 = g_1 already
            return (c.hp["decay"] * b + g,)
        decayed = c.hp["decay"] * b + c.hp["1-dampening"] * g
        return (jnp.where(c.scalars["first"], g, decayed),)

    def update(c, g, b):
        return g + c.hp["decay"] * b if nesterov else b

    def scalars(hp, count):
        if dampening is None:
            return {}
        return {"first": (count == 1).astype(hp["decay"].dtype)}

    return counted_transform(
        "trace",
        TraceState,
        hypers,
        {"trace": moment_format("accumulator_dtype", accumulator_dtype)},
        SplitMath(moments, update),
        scalars=scalars,
    )
