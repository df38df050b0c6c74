"""RAdam: Adam whose adaptive step is rectified for the variance of its
denominator (Liu et al., "On the Variance of the Adaptive Learning Rate and
Beyond", ICLR 2020, arXiv:1908.03265):

    m_t, v_t, m_hat as in Adam
    rho_inf = 2 / (1 - b2) - 1        rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    u_t = r_t m_hat / (sqrt(v_hat + eps_root) + eps)    if rho_t >= threshold
    u_t = m_hat                                          otherwise

``eps_convention`` chooses where eps sits, as the two reference
implementations differ: ``"optax"`` (above; optax.radam) or ``"torch"``
(torch.optim.RAdam, which adds eps to ``sqrt(v_t)`` before bias correction, as
its Adam does not: ``u_t = r_t m_hat sqrt(1 - b2^t) / (sqrt(v_t) + eps)``, and
which switches on ``rho_t > threshold``).
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
from adam_tx._engine.validate import check_choice, check_value
from adam_tx.adam import (
    ADAM_RANGES,
    adam_corrections,
    adam_hypers,
    check_adam_args,
    first_moment_direction,
)
from adam_tx.bias_correction import debias
from adam_tx.hyperparams import is_external
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.moments import adaptive_step, ema, ema_sq
from adam_tx.variants._common import adam_formats, decoupled_decay

EPS_CONVENTIONS = ("optax", "torch")


class ScaleByRAdamState(NamedTuple):
    """State of :func:`scale_by_radam`: count first, as optax's ScaleByAdamState."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(ScaleByRAdamState, **ADAM_RANGES)


def _horner(x: jax.Array, coefficients: list[float]) -> jax.Array:
    """``sum_k coefficients[k] x^k``."""
    acc = jnp.zeros_like(x)
    for a in reversed(coefficients):
        acc = acc * x + a
    return acc


def _expm1_minus_id(y: jax.Array) -> jax.Array:
    """``expm1(y) - y`` for ``y <= 0``, by its Taylor series where ``|y| < 1/2``
    (there the two terms cancel to ``y^2 / 2``)."""
    small = jnp.abs(y) < 0.5
    ys = jnp.where(small, y, 0.0)
    series = ys * ys * _horner(ys, [1.0 / math.factorial(k) for k in range(2, 18)])
    yl = jnp.where(small, -1.0, y)
    return jnp.where(small, series, jnp.expm1(yl) - yl)


def _neg_log1m_minus_id(c: jax.Array) -> jax.Array:
    """``-log(1 - c) - c = c^2/2 + c^3/3 + ...`` for ``0 <= c < 1/2``."""
    small = c < 0.1
    cs = jnp.where(small, c, 0.0)
    series = cs * cs * _horner(cs, [1.0 / k for k in range(2, 18)])
    cl = jnp.where(small, 0.25, jnp.minimum(c, 0.5))
    return jnp.where(small, series, -jnp.log1p(-cl) - cl)


def rectification(one_minus_b2: jax.Array, count: jax.Array):
    """``(rho_t, rho_inf)`` of RAdam, accurate in float32.

    Formula: ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`` with ``rho_inf = 2 / (1
    - b2) - 1``. Written that way, float32 subtracts two numbers near ``2 / (1 -
    b2)`` (1999 for b2 = 0.999) and keeps a 1e-4 absolute error, which moves
    ``r_t`` by 6e-5 relative in the first rectified steps (optax's float32
    radam, which also evaluates ``1 - b2^t`` as ``1 - b2**t``, is off by up to
    6e-3). Here, with ``c = 1 - b2`` and ``y = t log(1 - c)``, the same value is
    ``rho_t = 2t - 1 - 2 S / (c (1 - b2^t))`` where ``S = b2^t - 1 + t c =
    (expm1(y) - y) - t (-log(1 - c) - c)``, each bracket by a series where it
    would cancel: the error is a few float32 ulps of ``t`` (``tests/
    test_variants.py::test_radam_rectification_is_accurate`` measures it).
    """
    dtype = hyper_dtype()
    c = jnp.asarray(one_minus_b2, dtype)
    t = count.astype(dtype)
    rho_inf = 2.0 / c - 1.0
    y = t * jnp.log1p(-c)  # log(b2^t)
    # Where t (1 - b2) >= 1, or b2 <= 1/2, the plain formula does not cancel.
    plain = rho_inf + 2.0 * t * jnp.exp(y) / jnp.expm1(y)
    series = (c < 0.5) & (y > -1.0)
    cs = jnp.where(series, c, 0.25)
    ys = jnp.where(series, y, jnp.log1p(-0.25))
    s = _expm1_minus_id(ys) - t * _neg_log1m_minus_id(cs)
    accurate = 2.0 * t - 1.0 + 2.0 * s / (cs * jnp.expm1(ys))
    return jnp.where(series, accurate, plain), rho_inf


def rectifier(rho_t: jax.Array, rho_inf: jax.Array) -> jax.Array:
    """``r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))``,
    0 where the expression is not positive (``rho_t <= 4``), never NaN."""
    num = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
    den = (rho_inf - 4.0) * (rho_inf - 2.0) * rho_t
    ok = (num > 0) & (den > 0)
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, num / jnp.where(ok, den, 1.0), 1.0)), 0)


def scale_by_radam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
    eps_convention: str = "optax",
    mu_dtype: DType | None = None,
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescale updates by RAdam's rectified Adam step (module docstring).

    ``u = r_t m_hat / (sqrt(v_hat + eps_root) + eps)`` once ``rho_t`` reaches
    ``threshold``, ``u = m_hat`` (momentum SGD) before.

    Args:
      b1: decay of the first moment, in [0, 1); float or schedule.
      b2: decay of the second moment, in [0, 1); float or schedule. ``rho_t``
        is computed from the ``b2`` in force, as if it had always been that.
      eps: added to the denominator outside the square root (>= 0).
      eps_root: added inside the square root (>= 0).
      threshold: the ``rho_t`` from which the adaptive step is used (a number
        >= 4; the paper's is 4, optax's and torch's 5).
      nesterov: NAdam's look-ahead for ``m_hat`` (optax.radam's option).
      eps_convention: ``"optax"`` (``eps`` added to ``sqrt(v_hat)``, adaptive
        once ``rho_t >= threshold``) or ``"torch"`` (``eps`` added to
        ``sqrt(v_t)``, adaptive once ``rho_t > threshold``), see the module
        docstring.
      mu_dtype, nu_dtype, state_format, seed: how the moments are stored, as in
        :func:`adam_tx.scale_by_adam`.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`ScaleByRAdamState`.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.scale_by_radam()
    >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
    >>> [round(x, 6) for x in u.tolist()]  # rho_1 = 1 < 5: the first steps are m_hat
    [0.5, -2.0]

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
      ICLR 2020.
    """
    check_adam_args(b1, b2, eps, eps_root)
    if callable(threshold):
        raise TypeError(f"threshold must be a number, got the callable {threshold!r}")
    check_value("threshold", threshold, 4.0, None)
    # A jax array (``optax.inject_hyperparams`` injects every number) is used
    # as given; the comparison with rho_t below takes either.
    threshold = threshold if is_external(threshold) else float(threshold)
    check_choice("eps_convention", eps_convention, EPS_CONVENTIONS)
    torch_eps = eps_convention == "torch"
    formats = adam_formats(mu_dtype, nu_dtype, state_format, seed)
    corrections = adam_corrections(True, nesterov)

    def scalars(hp, count):
        out = corrections(hp, count)
        rho_t, rho_inf = rectification(hp["1-b2"], count)
        adaptive = rho_t > threshold if torch_eps else rho_t >= threshold
        out["r"] = jnp.where(adaptive, rectifier(rho_t, rho_inf), 0.0)
        out["adaptive"] = adaptive.astype(rho_t.dtype)
        if torch_eps:
            out["sqrt_c2"] = jnp.sqrt(out["c2"])
        return out

    def moments(c, g, m, v):
        m = ema(m, g, c.hp["b1"], c.hp["1-b1"])
        return m, ema_sq(v, g, c.hp["b2"], c.hp["1-b2"])

    def update(c, g, m, v):
        m_hat = first_moment_direction(c, m, g, bias_correction=True, nesterov=nesterov)
        s = c.scalars
        if torch_eps:
            step = adaptive_step(m_hat, v, c.hp["eps"], c.hp["eps_root"]) * s["sqrt_c2"]
        else:
            v_hat = debias(v, s["c2"])
            step = adaptive_step(m_hat, v_hat, c.hp["eps"], c.hp["eps_root"])
        return jnp.where(s["adaptive"] > 0, s["r"] * step, m_hat)

    return counted_transform(
        "scale_by_radam",
        ScaleByRAdamState,
        adam_hypers(b1, b2, eps, eps_root),
        formats,
        SplitMath(moments, update),
        scalars=scalars,
    )


@stores_moments
def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
    weight_decay: ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any | Callable[..., Any] | None = None,
    eps_convention: str = "optax",
    **storage: Any,
) -> optax.GradientTransformationExtraArgs:
    """RAdam: :func:`scale_by_radam` then the learning rate (optax.radam's
    arguments), with torch.optim.RAdam's weight decay.

    ``p <- p - lr * u_t``, ``u_t`` the rectified step (module docstring).
    ``weight_decay`` is torch's: added to the gradient before the moments (L2,
    torch's default) or, with ``decoupled_weight_decay=True``, to the step
    (``p <- p - lr (u_t + wd p)``, torch's ``RAdam(decoupled_weight_decay=True)``
    and AdamW's form). For torch parity also pass ``eps_convention="torch"``.
    ``storage``: ``mu_dtype``, ``nu_dtype``, ``state_format``, ``seed`` as in
    :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.radam(0.1)
    >>> p = jnp.array([1.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0]), s, p)
    >>> round(float(u[0]), 6)  # not yet rectified: -lr * m_hat = -0.1 * 2
    -0.2

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
      threshold: ``rho_t`` from which the step is rectified (below it, plain momentum).
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      weight_decay: torch's weight decay: coupled L2 on the gradient, or decoupled with
        ``decoupled_weight_decay=True``; a float, an array or a schedule
        ``count -> value``. 0: none.
      decoupled_weight_decay: add the decay to the step (AdamW's form) instead of to the
        gradient.
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      eps_convention: ``"optax"`` (eps added to ``sqrt(v_hat)``) or ``"torch"`` (eps
        added to ``sqrt(v)`` before bias correction, torch.optim.RAdam).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
      ICLR 2020; torch.optim.RAdam.
    """
    if not isinstance(decoupled_weight_decay, bool):
        raise TypeError(
            f"decoupled_weight_decay must be a bool, got {decoupled_weight_decay!r}"
        )
    direction = scale_by_radam(
        b1,
        b2,
        eps,
        eps_root,
        threshold,
        nesterov=nesterov,
        eps_convention=eps_convention,
        **storage,
    )
    decay = decoupled_decay(weight_decay, mask)
    lr = scale_by_learning_rate(learning_rate)
    if decoupled_weight_decay:
        return chain(direction, *decay, lr)
    return chain(*decay, direction, lr)
