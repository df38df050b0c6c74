"""ADOPT: Adam with the current gradient left out of its own normalisation
(Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the
Optimal Rate", NeurIPS 2024), as optax.contrib.adopt:

    step 0:  v_0 = g_0^2, m_0 = 0 (the update is 0)
    step t:  m_t = b1 m_{t-1} + (1 - b1) clip(g_t / max(sqrt(v_{t-1}), eps), c_t)
             v_t = b2 v_{t-1} + (1 - b2) g_t^2
             u_t = m_t       (Nesterov: b1 m_t + (1 - b1) clip(...))

``clip(x, c) = min(max(x, -c), c)`` with ``c_t = clip_value_fn(t)``, ``t^(1/4)``
by default (the paper's stabilisation); no bias correction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine import fusion
from adam_tx._engine.fusion import chain
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.storage import stores_moments
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx._engine.validate import (
    check_callable,
    check_decay,
    check_nonnegative,
    check_positive,
)
from adam_tx._engine.xla.ordering import entry_after
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.moments import ema, ema_sq
from adam_tx.variants._common import (
    adam_formats,
    decoupled_decay,
)


class ScaleByAdoptState(NamedTuple):
    """State of :func:`scale_by_adopt` (optax keeps a ScaleByAdamState)."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(
    ScaleByAdoptState,
    b1=hyperparams.DECAY,
    b2=hyperparams.DECAY,
    eps=hyperparams.POSITIVE,
    clip_value=hyperparams.NONNEGATIVE,
)


def quarter_power(count: jax.Array) -> jax.Array:
    """``c_t = t^(1/4)``, ADOPT's default clipping schedule."""
    return jnp.asarray(count) ** 0.25


def scale_by_adopt(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.9999,
    eps: Numeric = 1e-6,
    mu_dtype: DType | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = quarter_power,
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescale updates by ADOPT's momentum of normalised gradients (module
    docstring); optax.contrib.scale_by_adopt's arguments.

    Args:
      b1: decay of the momentum, in [0, 1); float or schedule.
      b2: decay of the second moment, in [0, 1); float or schedule.
      eps: floor of ``sqrt(v)`` in the normalisation (> 0).
      mu_dtype, nu_dtype, state_format, seed: how the moments are stored, as in
        :func:`adam_tx.scale_by_adam`.
      nesterov: apply the momentum once more to the normalised gradient.
      use_clipping: clip the normalised gradient to ``[-c_t, c_t]``.
      clip_value_fn: ``c_t`` as a function of the step count ``t`` (0 on the
        first update, whose momentum update is then 0); its value is kept in
        ``state.hyperparams["clip_value"]``.

    Nesterov's update reads the old momentum besides the new one, so under a
    guard (:func:`adam_tx.skip_nonfinite`) it takes the selecting path (see
    :class:`adam_tx._engine.stateful.SplitMath`); the plain form does not.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.scale_by_adopt()
    >>> s = tx.init(jnp.zeros(2))
    >>> u, s = tx.update(jnp.array([2.0, -1.0]), s)  # step 0 only records g^2
    >>> u.tolist(), s.nu.tolist()
    ([0.0, 0.0], [4.0, 1.0])
    >>> u, s = tx.update(jnp.array([2.0, 1.0]), s)  # (1 - b1) * g / |g_0|
    >>> [round(x, 6) for x in u.tolist()]
    [0.1, 0.1]

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with
      the Optimal Rate", NeurIPS 2024.
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_positive("eps", eps)
    for name, flag in (("nesterov", nesterov), ("use_clipping", use_clipping)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    hypers = [
        hyperparams.Hyper("b1", b1, complement=True),
        hyperparams.Hyper("b2", b2, complement=True),
        hyperparams.Hyper("eps", eps),
    ]
    if use_clipping:
        check_callable("clip_value_fn", clip_value_fn)
        check_nonnegative("clip_value_fn", clip_value_fn)
        hypers.append(hyperparams.Hyper("clip_value", clip_value_fn))
    formats = adam_formats(mu_dtype, nu_dtype, state_format, seed)

    def scalars(hp, count):
        # The first update only initialises v (decay 0) and keeps m (decay 1).
        first = count == 1
        one, zero = jnp.ones([], hp["b1"].dtype), jnp.zeros([], hp["b1"].dtype)
        return {
            "b1": jnp.where(first, one, hp["b1"]),
            "1-b1": jnp.where(first, zero, hp["1-b1"]),
            "b2": jnp.where(first, zero, hp["b2"]),
            "1-b2": jnp.where(first, one, hp["1-b2"]),
        }

    def normalised(c, g, v):
        x = g / jnp.maximum(jnp.sqrt(v), c.hp["eps"])
        if use_clipping:
            x = jnp.clip(x, -c.hp["clip_value"], c.hp["clip_value"])
        return x

    def moments(c, g, m, v):
        s = c.scalars
        m = ema(m, normalised(c, g, v), s["b1"], s["1-b1"])
        return m, ema_sq(v, g, s["b2"], s["1-b2"])

    def update(c, g, m, v):
        return m

    if not nesterov:
        math = SplitMath(moments, update)
    else:

        def math(c, g, m, v):
            x = normalised(c, g, v)
            new = moments(c, g, m, v)
            return ema(new[0], x, c.scalars["b1"], c.scalars["1-b1"]), new

    return _v_after_m(
        counted_transform(
            "scale_by_adopt",
            ScaleByAdoptState,
            tuple(hypers),
            formats,
            math,
            scalars=scalars,
        )
    )


def _v_after_m(tx):
    """``tx`` whose stored ``v`` is written after its stored ``m``.

    The new momentum reads the old second moment, which the second moment's
    own loop overwrites in place: unordered, XLA copies the donated ``v``.
    Ordered on what is stored (so also on the moments a guard keeps), the
    ``v`` loop runs second and nothing is copied (:mod:`adam_tx._engine.xla.ordering`).
    """
    piece = fusion.program_of(tx)

    def ordered(leaf_fn):
        def leaf(ctx, x, entries, p, info, *ok):
            u, (m, v), partials = leaf_fn(ctx, x, entries, p, info, *ok)
            return u, (m, entry_after(v, m)), partials

        return leaf

    return fusion.transformation(
        piece.replace(
            leaf=ordered(piece.leaf),
            guarded_leaf=piece.guarded_leaf and ordered(piece.guarded_leaf),
        )
    )


@stores_moments
def adopt(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.9999,
    eps: Numeric = 1e-6,
    mu_dtype: DType | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = quarter_power,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[..., Any] | None = None,
    **storage: Any,
) -> optax.GradientTransformationExtraArgs:
    """ADOPT: ``chain(scale_by_adopt(...), scale_by_learning_rate(lr))``, as
    optax.contrib.adopt; ``weight_decay > 0`` adds decoupled decay between them
    (``p <- p - lr (u + wd p)``, the official implementation's ``decouple=True``).

    ``storage``: ``nu_dtype``, ``state_format``, ``seed`` as in
    :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.adopt(0.1)
    >>> p = jnp.zeros(1); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([3.0]), s, p)
    >>> float(u[0]) == 0.0  # the first update only initialises v
    True

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value`` (ADOPT's default 0.9999).
      eps: floor of ``sqrt(v_{t-1})`` in the normalisation.
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      use_clipping: clip the normalised gradient to ``[-c_t, c_t]``.
      clip_value_fn: the clip bound ``c_t`` as a function of the step (default
        ``t^(1/4)``).
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
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with
      the Optimal Rate", NeurIPS 2024.
    """
    return chain(
        scale_by_adopt(
            b1,
            b2,
            eps,
            mu_dtype,
            nesterov=nesterov,
            use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
            **storage,
        ),
        *decoupled_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
