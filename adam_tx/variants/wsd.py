"""The warmup-stable-decay (WSD) learning-rate schedule (Hägele et al.,
"Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations",
NeurIPS 2024, arXiv:2405.18392; Hu et al., "MiniCPM", 2024):

    t < W:            lr(t) = init + (peak - init) t / W
    W <= t < T - D:   lr(t) = peak
    T - D <= t < T:   lr(t) = end + (peak - end) f((t - T + D) / D)
    t >= T:           lr(t) = end

with the cooldown shape ``f`` one of ``"linear"`` (``1 - x``), ``"cosine"``
(``(1 + cos(pi x)) / 2``) or ``"1-sqrt"`` (``1 - sqrt(x)``, the paper's best).
The stable phase needs no horizon, so a run can be extended and cooled down
from a checkpoint of the stable phase.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.typing import Schedule
from adam_tx._engine.validate import (
    check_choice,
    check_nonnegative_int,
    check_positive_int,
    check_value,
)

COOLDOWNS = ("linear", "cosine", "1-sqrt")


def cooldown_shape(x: Any, cooldown: str) -> Any:
    """``f(x)`` for the cooldown fraction ``x`` in [0, 1]: 1 at the start, 0 at
    the end. The cosine is written ``cos(pi x / 2)^2`` (no cancellation near
    the end)."""
    if cooldown == "linear":
        return 1.0 - x
    if cooldown == "cosine":
        return jnp.cos(math.pi / 2 * x) ** 2
    return 1.0 - jnp.sqrt(x)


def _number(name: str, value: Any) -> float:
    if callable(value):
        raise TypeError(f"{name} must be a number, got the callable {value!r}")
    check_value(name, value, 0.0, None)
    return float(value)


def _offset(count: Any, start: int, length: int) -> Any:
    """``clip(count - start, 0, length) / length`` in ``hyper_dtype()``; exact
    for Python integers of any size."""
    if isinstance(count, int) and not isinstance(count, bool):
        return jnp.asarray(min(max(count - start, 0), length) / length, hyper_dtype())
    c = jnp.asarray(count)
    if jnp.issubdtype(c.dtype, jnp.integer) and start <= jnp.iinfo(c.dtype).max:
        s = jnp.clip(c - jnp.asarray(start, c.dtype), 0, length)
        return s.astype(hyper_dtype()) / length
    s = jnp.clip(c.astype(hyper_dtype()) - start, 0, length)
    return s / length


def wsd_schedule(
    peak_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
    *,
    decay_fraction: float = 0.2,
    init_value: float = 0.0,
    end_value: float = 0.0,
    cooldown: str = "1-sqrt",
) -> Schedule:
    """Warmup, stable, decay (module docstring for the formula).

    Args:
      peak_value: the stable learning rate (>= 0).
      total_steps: ``T``, where the cooldown ends (an integer >= 1); the
        schedule's ``horizon``.
      warmup_steps: ``W``, the linear warmup from ``init_value`` (>= 0).
      decay_steps: ``D``, the cooldown's length (>= 1); default
        ``round(decay_fraction * T)``, at least 1.
      decay_fraction: the cooldown's share of ``T`` when ``decay_steps`` is not
        given, in (0, 1] (the paper finds 0.2 enough).
      init_value: the value at step 0 (>= 0).
      end_value: the value from step ``T`` on (>= 0).
      cooldown: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.

    Returns:
      A schedule ``count -> value`` with ``schedule.horizon == total_steps``.

    >>> s = wsd_schedule(1.0, 10, warmup_steps=2, decay_steps=4, cooldown="linear")
    >>> [round(float(s(t)), 2) for t in range(12)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]

    References:
      Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed
      Training Durations", NeurIPS 2024.
    """
    peak = _number("peak_value", peak_value)
    init = _number("init_value", init_value)
    end = _number("end_value", end_value)
    check_positive_int("total_steps", total_steps)
    check_nonnegative_int("warmup_steps", warmup_steps)
    check_choice("cooldown", cooldown, COOLDOWNS)
    if decay_steps is None:
        _number("decay_fraction", decay_fraction)
        if not 0.0 < decay_fraction <= 1.0:
            raise ValueError(
                f"decay_fraction={decay_fraction!r} is out of range: expected a "
                "fraction of total_steps in (0, 1]"
            )
        decay_steps = max(1, round(decay_fraction * total_steps))
    check_positive_int("decay_steps", decay_steps)
    if warmup_steps + decay_steps > total_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps!r} + decay_steps={decay_steps!r} is out of "
            f"range: expected at most total_steps={total_steps!r}"
        )
    decay_start = total_steps - decay_steps

    def schedule(count: Any) -> Any:
        value = jnp.asarray(peak, hyper_dtype())
        if warmup_steps:
            w = _offset(count, 0, warmup_steps)
            value = jnp.where(w < 1, init + (peak - init) * w, value)
        x = _offset(count, decay_start, decay_steps)
        cooled = end + (peak - end) * cooldown_shape(x, cooldown)
        return jnp.where(x > 0, cooled, value).astype(hyper_dtype())

    schedule.horizon = total_steps  # type: ignore[attr-defined]  # read by schedule users
    return schedule
