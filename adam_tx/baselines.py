"""The baselines Adam is compared with: RMSProp, AdaGrad and SGD momentum.

RMSProp (Tieleman & Hinton 2012), per leaf:

    v_t = a v_{t-1} + (1 - a) g^2             (centered: also m_t = EMA of g)
    d_t = sqrt(v_t + eps)                     (eps_in_sqrt=True, optax)
    d_t = sqrt(v_t) + eps                     (eps_in_sqrt=False, torch)
    centered: v_t is replaced by v_t - m_t^2 inside the square root.

AdaGrad (Duchi et al. 2011): ``s_t = s_{t-1} + g^2``, ``u = g / (sqrt(s_t) + eps)``
with eps outside the root, as torch.optim.Adagrad.

Momentum (Polyak 1964; Sutskever et al. 2013 for Nesterov), torch's form:
``b_1 = g_1``, ``b_t = mu b_{t-1} + (1 - dampening) g_t``;
``u = b_t``, or ``g_t + mu b_t`` with Nesterov.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adam_tx import hyperparams
from adam_tx._stateful import SplitMath, counted_transform
from adam_tx._validate import check_decay, check_nonnegative, check_range
from adam_tx.moments import ema, ema_sq
from adam_tx.state_format import moment_format


class ScaleByRmsState(NamedTuple):
    count: jax.Array
    nu: Any
    hyperparams: dict


class ScaleByStddevState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    hyperparams: dict


class ScaleByAdagradState(NamedTuple):
    count: jax.Array
    sum_of_squares: Any
    hyperparams: dict


class TraceState(NamedTuple):
    count: jax.Array
    trace: Any
    hyperparams: dict


def scale_by_rms(
    decay=0.9,
    eps=1e-8,
    initial_scale: float = 0.0,
    *,
    centered: bool = False,
    eps_in_sqrt: bool = True,
    nu_dtype=None,
):
    """Divide updates by the root of an EMA of squared gradients (RMSProp).

    Args:
      decay: EMA decay in [0, 1) (torch's ``alpha``; torch defaults to 0.99).
      eps: stabiliser; inside the root if ``eps_in_sqrt`` (optax), outside
        otherwise (torch.optim.RMSprop).
      initial_scale: initial value of the squared-gradient EMA (torch: 0).
      centered: subtract the squared EMA of the gradient (variance estimate).
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

    def init_moment(field, p, f):
        return f.init(p) + (initial_scale if field == "nu" else 0.0)

    if centered:

        def moments(c, g, m, v):
            m = ema(m, g, c.hp["decay"], c.hp["1-decay"])
            return m, ema_sq(v, g, c.hp["decay"], c.hp["1-decay"])

        def update(c, g, m, v):
            return g / denominator(c, v - m * m)

        math = SplitMath(moments, update)

        return counted_transform(
            "scale_by_stddev",
            ScaleByStddevState,
            hypers,
            {"mu": fmt, "nu": fmt},
            math,
            init_moment=init_moment,
        )

    math = SplitMath(
        lambda c, g, v: (ema_sq(v, g, c.hp["decay"], c.hp["1-decay"]),),
        lambda c, g, v: g / denominator(c, v),
    )

    return counted_transform(
        "scale_by_rms",
        ScaleByRmsState,
        hypers,
        {"nu": fmt},
        math,
        init_moment=init_moment,
    )


def scale_by_adagrad(initial_accumulator_value: float = 0.0, eps=1e-10):
    """Divide updates by the root of the running sum of squared gradients.

    ``s_t = s_{t-1} + g^2``, ``u = g / (sqrt(s_t) + eps)``: torch.optim.Adagrad's
    placement of eps and its defaults (optax.adagrad puts eps inside the root
    and starts the sum at 0.1).

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_adagrad(eps=0.0)
    >>> tx.update(jnp.array([-3.0]), tx.init(jnp.zeros(1)))[0].tolist()
    [-1.0]

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
      and Stochastic Optimization", JMLR 2011.
    """
    check_nonnegative("initial_accumulator_value", initial_accumulator_value)
    check_nonnegative("eps", eps)

    math = SplitMath(
        lambda c, g, s: (s + g * g,),
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


def trace(decay=0.9, *, nesterov: bool = False, dampening=0.0, accumulator_dtype=None):
    """Momentum: ``b_t = decay b_{t-1} + (1 - dampening) g_t`` (``b_1 = g_1``).

    Returns ``b_t``, or ``g_t + decay b_t`` with ``nesterov=True``; the same as
    torch.optim.SGD's momentum buffer, and as optax.trace when dampening is 0.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.trace(0.5)
    >>> s = tx.init(jnp.zeros(1))
    >>> u, s = tx.update(jnp.ones(1), s)
    >>> tx.update(jnp.ones(1), s)[0].tolist()
    [1.5]
    """
    check_decay("decay", decay)
    check_range("dampening", dampening, 0.0, 1.0)
    if nesterov and (callable(dampening) or dampening != 0):
        raise ValueError(f"dampening={dampening!r} must be 0 when nesterov=True")

    def moments(c, g, b):
        decayed = c.hp["decay"] * b + c.hp["1-dampening"] * g
        return (jnp.where(c.scalars["first"], g, decayed),)

    def update(c, g, b):
        return g + c.hp["decay"] * b if nesterov else b

    math = SplitMath(moments, update)

    return counted_transform(
        "trace",
        TraceState,
        (
            hyperparams.Hyper("decay", decay),
            hyperparams.Hyper("dampening", dampening, complement=True),
        ),
        {"trace": moment_format("accumulator_dtype", accumulator_dtype)},
        math,
        scalars=lambda hp, count: {"first": (count == 1).astype(hp["decay"].dtype)},
    )
