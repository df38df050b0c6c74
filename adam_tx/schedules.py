"""Schedules: pure, jit-safe functions of the integer step count.

A schedule maps the step count (a Python int or a traced integer scalar; 0 is the
first update, as in optax) to a scalar of ``hyper_dtype()``: float32, or float64
under ``jax_enable_x64``. Every argument is checked at construction.

Step counts and horizons may exceed int32 (``decay_steps=10**10``, a Python
count of ``10**10``): offsets such as ``t - transition_begin`` are taken in
integers where they fit the count's dtype, so they are exact, and in floating
point where they do not.

Constants are computed in double precision in Python, and interpolations are
sums of non-negative terms (cosine weights as ``sin(pi/2 * q)**2`` rather than
``(1 + cos(pi * (1 - q))) / 2``), so float32 values stay within ~1e-6 relative
of the exact ones where the textbook forms cancel near the end of a decay.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.typing import Schedule
from adam_tx._engine.validate import (
    check_callable,
    check_choice,
    check_nonnegative_int,
    check_positive_int,
    check_range,
)


def _number(name: str, value: Any, *, positive: bool = False, high=math.inf) -> float:
    """A finite number in [0, high) (or (0, high)); schedules are refused here."""
    if callable(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    check_range(
        name, value, 0.0, high, low_inclusive=not positive, high_inclusive=False
    )
    return float(value)


def _sequence(name: str, value: Any) -> list[Any]:
    """``value`` as a list, or a TypeError naming ``name``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{name}={value!r} is not valid: expected a sequence (list or tuple)"
        )
    return list(value)


def _const(value: float) -> Any:
    return jnp.asarray(value, dtype=hyper_dtype())


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _since(count: Any, start: int = 0) -> Any:
    """``floor(count) - start`` as a ``hyper_dtype()`` array.

    Exact for Python integers of any size, and for integer arrays whose dtype
    holds ``start`` (the integer difference is taken first, so a late
    ``start`` costs no precision); otherwise in floating point (a ``start``
    beyond an int32 count's range is never reached by it anyway).
    """
    if _is_int(count):
        return _const(float(int(count) - start))
    c = jnp.asarray(count)
    if jnp.issubdtype(c.dtype, jnp.signedinteger) and start <= jnp.iinfo(c.dtype).max:
        return (c - jnp.asarray(start, c.dtype)).astype(hyper_dtype())
    if not jnp.issubdtype(c.dtype, jnp.integer):
        c = jnp.floor(c)
    return c.astype(hyper_dtype()) - _const(start)


def _periods(count: Any, start: int, period: int) -> Any:
    """``floor(max(count - start, 0) / period)``, exact where ``_since`` is."""
    if _is_int(count):
        return _const(max(int(count) - start, 0) // period)
    c = jnp.asarray(count)
    if jnp.issubdtype(c.dtype, jnp.signedinteger) and max(start, period) <= (
        jnp.iinfo(c.dtype).max
    ):
        n = jnp.maximum(c - jnp.asarray(start, c.dtype), 0)
        return (n // jnp.asarray(period, c.dtype)).astype(hyper_dtype())
    return jnp.floor(jnp.maximum(_since(count, start), 0) / _const(period))


def _clamp(count: Any, high: int) -> Any:
    """``count`` floored and clamped to ``[0, high]``, keeping integers exact."""
    if _is_int(count):
        return min(max(int(count), 0), high)
    c = jnp.asarray(count)
    if not jnp.issubdtype(c.dtype, jnp.signedinteger):
        return jnp.clip(jnp.floor(c.astype(hyper_dtype())), 0, high)
    if high > jnp.iinfo(c.dtype).max:  # such a count never passes ``high``
        return jnp.maximum(c, 0)
    return jnp.clip(c, 0, high)


def _cos_weight(q: Any) -> Any:
    """``(1 + cos(pi * (1 - q))) / 2`` for q in [0, 1], without cancellation."""
    return jnp.sin(_const(math.pi / 2) * q) ** 2


def constant(value: float) -> Schedule:
    """A schedule that returns ``value`` at every step.

    Formula: ``v(t) = value``.

    Args:
      value: the constant, finite and >= 0.

    Returns:
      A schedule ``count -> value``.

    >>> float(constant(0.5)(7))
    0.5

    Reference: torch ``ConstantLR(factor=1)``; ``optax.constant_schedule``.
    """
    value = _number("value", value)
    return lambda count: _const(value)


def linear(
    init_value: float,
    end_value: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value``, constant after.

    Formula: with ``T = transition_steps`` and ``s = clip(t - transition_begin, 0,
    T)``, ``v(t) = init_value + (end_value - init_value) * s / T``.

    Args:
      init_value: value up to step ``transition_begin``, >= 0.
      end_value: value from step ``transition_begin + T`` on, >= 0.
      transition_steps: ``T``, the length of the ramp, an integer >= 1.
      transition_begin: step at which the ramp starts, an integer >= 0.

    Returns:
      A schedule ``count -> value``.

    >>> [round(float(linear(0.0, 1.0, 4)(t)), 2) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]

    Reference: ``optax.linear_schedule``; torch ``LinearLR(start_factor,
    end_factor, total_iters)`` on base rate ``lr`` equals ``linear(lr *
    start_factor, lr * end_factor, total_iters)``.
    """
    init_value = _number("init_value", init_value)
    end_value = _number("end_value", end_value)
    check_positive_int("transition_steps", transition_steps)
    check_nonnegative_int("transition_begin", transition_begin)

    def schedule(count: Any) -> Any:
        steps = _const(transition_steps)
        s = jnp.clip(_since(count, transition_begin), 0, steps)
        return (_const(init_value) * (steps - s) + _const(end_value) * s) / steps

    return schedule


def _cosine(init: float, end: float, steps: int, exponent: float) -> Schedule:
    """``end + (init - end) * w**exponent``, ``w = (1 + cos(pi min(t, T) / T)) / 2``."""

    def schedule(count: Any) -> Any:
        s = jnp.clip(_since(count), 0, _const(steps))
        w = _cos_weight((_const(steps) - s) / _const(steps))
        if exponent != 1.0:
            w = w**exponent
        return _const(end) + _const(init - end) * w

    return schedule


def cosine_decay(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    """Cosine decay from ``init_value`` to ``alpha * init_value``, flat after.

    Formula: with ``T = decay_steps`` and ``s = min(t, T)``,
    ``v(t) = init * ((1 - alpha) * (0.5 * (1 + cos(pi * s / T)))**exponent + alpha)``.

    Torch ``CosineAnnealingLR(T_max, eta_min)`` on base rate ``lr`` equals
    ``cosine_decay(lr, T_max, alpha=eta_min / lr)`` for steps ``0..T_max``. After
    ``T_max`` torch's cosine keeps going and climbs back to ``lr`` at ``2 *
    T_max`` (period ``2 * T_max``); this schedule stays at ``alpha * init_value``.

    Args:
      init_value: value at step 0, >= 0.
      decay_steps: ``T``, an integer >= 1.
      alpha: final value as a fraction of ``init_value``, >= 0.
      exponent: power applied to the cosine weight, > 0.

    Returns:
      A schedule ``count -> value``.

    >>> [round(float(cosine_decay(1.0, 4)(t)), 4) for t in (0, 2, 4, 9)]
    [1.0, 0.5, 0.0, 0.0]

    Reference: Loshchilov & Hutter, "SGDR" (arXiv:1608.03983);
    ``optax.cosine_decay_schedule``.
    """
    init_value = _number("init_value", init_value)
    check_positive_int("decay_steps", decay_steps)
    alpha = _number("alpha", alpha)
    exponent = _number("exponent", exponent, positive=True)
    return _cosine(init_value, alpha * init_value, decay_steps, exponent)


def warmup_cosine_decay(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule:
    """Linear warmup to ``peak_value``, then cosine decay to ``end_value``.

    Formula: for ``t < W = warmup_steps``, ``v(t) = init + (peak - init) * t / W``;
    then, with ``D = decay_steps - W`` and ``s = min(t - W, D)``,
    ``v(t) = end + (peak - end) * (0.5 * (1 + cos(pi * s / D)))**exponent``.

    Args:
      init_value: value at step 0, >= 0.
      peak_value: value at step ``W``, >= 0.
      warmup_steps: ``W``, an integer >= 0.
      decay_steps: length of warmup plus decay, an integer > ``warmup_steps``.
      end_value: value from step ``decay_steps`` on, >= 0.
      exponent: power applied to the cosine weight, > 0.

    Returns:
      A schedule ``count -> value``.

    >>> s = warmup_cosine_decay(0.0, 1.0, 2, 6)
    >>> [round(float(s(t)), 4) for t in range(8)]
    [0.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]

    Reference: Goyal et al. (arXiv:1706.02677) for the warmup, SGDR
    (arXiv:1608.03983) for the decay; ``optax.warmup_cosine_decay_schedule``
    (which, unlike this, drops ``end_value`` when ``peak_value == 0``).
    """
    init_value = _number("init_value", init_value)
    peak_value = _number("peak_value", peak_value)
    check_nonnegative_int("warmup_steps", warmup_steps)
    check_positive_int("decay_steps", decay_steps)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"decay_steps={decay_steps!r} is out of range: expected decay_steps > "
            f"warmup_steps={warmup_steps!r} (decay_steps includes the warmup)"
        )
    end_value = _number("end_value", end_value)
    exponent = _number("exponent", exponent, positive=True)
    decay = _cosine(peak_value, end_value, decay_steps - warmup_steps, exponent)
    if warmup_steps == 0:
        return decay
    return join([linear(init_value, peak_value, warmup_steps), decay], [warmup_steps])


def step_decay(
    init_value: float,
    *,
    step_size: int | None = None,
    milestones: Sequence[int] | None = None,
    factor: float = 0.1,
) -> Schedule:
    """Multiply by ``factor`` every ``step_size`` steps, or at each milestone.

    Formula: ``v(t) = init * factor**k`` with ``k = t // step_size``, or
    ``k = number of milestones m with m <= t``.

    Args:
      init_value: value at step 0, >= 0.
      step_size: period of the decay, an integer >= 1 (torch ``StepLR``).
      milestones: strictly increasing integers >= 1 (torch ``MultiStepLR``).
        Give exactly one of ``step_size`` and ``milestones``.
      factor: multiplier applied at each decay, > 0 (torch's ``gamma``).

    Returns:
      A schedule ``count -> value``.

    >>> [round(float(step_decay(1.0, milestones=[2, 3])(t)), 4) for t in range(5)]
    [1.0, 1.0, 0.1, 0.01, 0.01]

    Reference: torch ``StepLR(step_size, gamma)`` is ``step_decay(lr,
    step_size=step_size, factor=gamma)``; ``MultiStepLR(milestones, gamma)`` is
    ``step_decay(lr, milestones=milestones, factor=gamma)``.
    """
    init_value = _number("init_value", init_value)
    factor = _number("factor", factor, positive=True)
    if (step_size is None) == (milestones is None):
        raise ValueError(
            f"step_size={step_size!r}, milestones={milestones!r}: expected exactly "
            "one of step_size and milestones"
        )
    if step_size is not None:
        check_positive_int("step_size", step_size)
        return exponential_decay(init_value, step_size, factor, staircase=True)
    milestones = _sequence("milestones", milestones)
    if not milestones:
        raise ValueError("milestones=[] is out of range: expected at least one")
    for i, m in enumerate(milestones):
        check_positive_int(f"milestones[{i}]", m)
    if any(b <= a for a, b in itertools.pairwise(milestones)):
        raise ValueError(
            f"milestones={milestones!r} is out of range: expected strictly "
            "increasing integers >= 1"
        )
    table = [init_value * factor**k for k in range(len(milestones) + 1)]

    def schedule(count: Any) -> Any:
        k = sum((_since(count, m) >= 0).astype(jnp.int32) for m in milestones)
        return jnp.asarray(table, dtype=hyper_dtype())[k]

    return schedule


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """Exponential decay ``init * decay_rate**p``, optionally bounded.

    Formula: ``p = max(t - transition_begin, 0) / transition_steps`` (floored
    when ``staircase``), ``v(t) = init * decay_rate**p``, bounded below by
    ``end_value`` when ``decay_rate < 1`` (above when ``decay_rate > 1``).
    Computed as ``init * exp(p * log(decay_rate))`` with the log taken in double
    precision: in float32, raising the rounded rate to ``p`` loses more.

    The arguments are ``optax.exponential_decay``'s, in its order. Where optax
    logs and falls back to a constant schedule (``transition_steps <= 0``,
    ``decay_rate == 0``) or to 0 (``transition_begin < 0``), this raises.

    Args:
      init_value: value up to step ``transition_begin``, >= 0.
      transition_steps: steps per factor of ``decay_rate``, an integer >= 1.
      decay_rate: multiplier per ``transition_steps`` steps, > 0.
      transition_begin: step at which the decay starts, an integer >= 0.
      staircase: decay in jumps every ``transition_steps`` steps.
      end_value: optional bound, >= 0.

    Returns:
      A schedule ``count -> value``.

    >>> [round(float(exponential_decay(1.0, 1, 0.5)(t)), 4) for t in range(4)]
    [1.0, 0.5, 0.25, 0.125]

    Reference: ``optax.exponential_decay``; torch ``ExponentialLR(gamma)`` on base
    rate ``lr`` is ``exponential_decay(lr, 1, gamma)``.
    """
    init_value = _number("init_value", init_value)
    if isinstance(transition_steps, float) and 0 < transition_steps < 1:
        raise TypeError(
            f"transition_steps={transition_steps!r} must be an integer; the "
            "arguments are optax's (init_value, transition_steps, decay_rate): "
            f"for a rate of {transition_steps!r} per step write "
            f"exponential_decay({init_value!r}, 1, {transition_steps!r})"
        )
    # Beyond int64 a period is longer than any count (int32) anyway, and would
    # not convert to a float.
    check_positive_int("transition_steps", transition_steps, high=2**63 - 1)
    decay_rate = _number("decay_rate", decay_rate, positive=True)
    check_nonnegative_int("transition_begin", transition_begin)
    if end_value is not None:
        end_value = _number("end_value", end_value)
    clip = jnp.maximum if decay_rate < 1.0 else jnp.minimum
    log_rate = math.log(decay_rate)

    def schedule(count: Any) -> Any:
        if staircase:
            p = _periods(count, transition_begin, transition_steps)
        else:
            n = jnp.maximum(_since(count, transition_begin), 0)
            p = n / _const(transition_steps)
        value = _const(init_value) * jnp.exp(p * _const(log_rate))
        return value if end_value is None else clip(value, _const(end_value))

    return schedule


def _one_cycle(
    total_steps: int,
    pct_start: float,
    anneal_strategy: str,
    three_phase: bool,
    levels: tuple[float, float, float],
) -> Schedule:
    """torch ``OneCycleLR``'s phase logic, shared by the lr and momentum cycles.

    With ``levels = (low, high, final)``, phases go ``low -> high -> final``, or
    ``low -> high -> low -> final`` with ``three_phase``. Phase ``i`` ends at step
    ``e_i``: ``pct_start * total - 1``, (``2 * pct_start * total - 2``,)
    ``total - 1``; step ``t`` uses the first phase with ``t <= e_i``, at
    ``pct = (t - e_{i-1}) / (e_i - e_{i-1})``.
    """
    check_positive_int("total_steps", total_steps)
    pct_start = _number("pct_start", pct_start, positive=True, high=1.0)
    check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
    low, high, final = levels
    if three_phase and pct_start > 0.5:
        raise ValueError(
            f"pct_start={pct_start!r} is out of range: expected pct_start in (0, 0.5] "
            "with three_phase=True (the rise and the fall take pct_start each)"
        )
    if pct_start * total_steps == 1.0:
        raise ValueError(
            f"pct_start={pct_start!r} is out of range for total_steps={total_steps!r}: "
            "pct_start * total_steps == 1 makes the first phase empty (torch divides "
            "by zero there)"
        )
    if three_phase:
        ends = [pct_start * total_steps - 1, 2 * pct_start * total_steps - 2]
        values = [(low, high), (high, low), (low, final)]
    else:
        ends = [pct_start * total_steps - 1]
        values = [(low, high), (high, final)]
    ends.append(float(total_steps - 1))
    # (start_step, end_step, start_value, end_value) per phase.
    phases = [(s, e, a, b) for s, e, (a, b) in zip([0.0, *ends], ends, values)]

    def anneal(c: Any, phase: tuple[float, float, float, float]) -> Any:
        s, e, a, b = phase
        # t - x from the integer count and the split x = whole + frac: exact
        # for the whole part, and XLA cannot fold the two constants together.
        pct = (_since(c, math.floor(s)) - _const(s % 1)) / (e - s)
        q = (_const(e % 1) - _since(c, math.floor(e))) / (e - s)
        # The smaller of pct, 1 - pct is accurate; take the other as 1 minus it,
        # so the weights sum to 1 and each phase ends exactly on its end value.
        small = pct <= q
        pct, q = jnp.where(small, pct, 1 - q), jnp.where(small, 1 - pct, q)
        if anneal_strategy == "cos":
            pct, q = _cos_weight(pct), _cos_weight(q)
        # a * (1 - w) + b * w: both terms >= 0, so no cancellation in float32.
        return _const(a) * q + _const(b) * pct

    def schedule(count: Any) -> Any:
        c = _clamp(count, total_steps - 1)
        out = anneal(c, phases[-1])
        for phase in reversed(phases[:-1]):
            # t <= e  <=>  t <= floor(e) for an integer step t.
            before = _since(c, math.floor(phase[1])) <= 0
            out = jnp.where(before, anneal(c, phase), out)
        return out

    return schedule


def one_cycle(
    total_steps: int,
    max_value: float,
    *,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """The 1cycle learning rate: warm up to ``max_value``, anneal far below start.

    Formula: ``initial = max_value / div_factor``, ``min = initial /
    final_div_factor``; phases ``initial -> max -> min`` ending at steps
    ``pct_start * total_steps - 1`` and ``total_steps - 1``, or with
    ``three_phase`` ``initial -> max -> initial -> min`` ending at
    ``pct_start * total_steps - 1``, ``2 * pct_start * total_steps - 2`` and
    ``total_steps - 1``. Within a phase from ``(s, a)`` to ``(e, b)``,
    ``pct = (t - s) / (e - s)`` and ``v = b + (a - b) / 2 * (1 + cos(pi * pct))``
    (``"cos"``) or ``v = a + (b - a) * pct`` (``"linear"``). Steps past
    ``total_steps - 1`` keep the last value.

    Args:
      total_steps: length of the cycle, an integer >= 1.
      max_value: the peak value, > 0.
      pct_start: fraction of the steps spent rising, in (0, 1) (in (0, 0.5] with
        ``three_phase``).
      anneal_strategy: ``"cos"`` or ``"linear"``.
      div_factor: ``max_value / initial``, > 0.
      final_div_factor: ``initial / min``, > 0.
      three_phase: fall back to ``initial`` symmetrically before the final
        annihilation phase.

    Returns:
      A schedule ``count -> value``.

    >>> s = one_cycle(10, 1.0, pct_start=0.2, div_factor=10.0, final_div_factor=1.0)
    >>> [round(float(s(t)), 4) for t in (0, 1, 9)]
    [0.1, 1.0, 0.1]

    Reference: Smith & Topin, "Super-Convergence" (arXiv:1708.07120); the
    learning rates of torch ``OneCycleLR(optimizer, max_lr, total_steps, ...)``
    for steps ``0..total_steps - 1``.
    """
    max_value = _number("max_value", max_value, positive=True)
    div_factor = _number("div_factor", div_factor, positive=True)
    final_div_factor = _number("final_div_factor", final_div_factor, positive=True)
    initial = max_value / div_factor
    levels = (initial, max_value, initial / final_div_factor)
    return _one_cycle(total_steps, pct_start, anneal_strategy, three_phase, levels)


def one_cycle_momentum(
    total_steps: int,
    *,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
) -> Schedule:
    """The 1cycle momentum: the inverse of :func:`one_cycle`, for Adam's ``b1``.

    Formula: the phases of :func:`one_cycle` with values ``max_momentum ->
    base_momentum -> max_momentum`` (two phases) or ``max_momentum ->
    base_momentum -> max_momentum -> max_momentum`` (three), annealed the same
    way: momentum is lowest where the learning rate peaks.

    Args:
      total_steps: length of the cycle, an integer >= 1.
      base_momentum: momentum at the learning-rate peak, in [0, 1).
      max_momentum: momentum at the start and end, in [0, 1).
      pct_start: as in :func:`one_cycle`.
      anneal_strategy: ``"cos"`` or ``"linear"``.
      three_phase: as in :func:`one_cycle`.

    Returns:
      A schedule ``count -> value``.

    >>> s = one_cycle_momentum(10, pct_start=0.2)
    >>> [round(float(s(t)), 4) for t in (0, 1, 9)]
    [0.95, 0.85, 0.95]

    Reference: Smith, "A disciplined approach to neural network
    hyper-parameters" (arXiv:1803.09820); torch ``OneCycleLR(...,
    cycle_momentum=True)``, which sets ``betas[0]`` of Adam to these values.
    """
    base_momentum = _number("base_momentum", base_momentum, high=1.0)
    max_momentum = _number("max_momentum", max_momentum, high=1.0)
    levels = (max_momentum, base_momentum, max_momentum)
    return _one_cycle(total_steps, pct_start, anneal_strategy, three_phase, levels)


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` on ``[boundaries[i-1], boundaries[i])``, restarted.

    Formula: with ``b_{-1} = 0``, for ``b_{i-1} <= t < b_i``,
    ``v(t) = schedules[i](t - b_{i-1})`` (the first schedule sees ``t`` itself).

    Args:
      schedules: at least one schedule.
      boundaries: ``len(schedules) - 1`` strictly increasing integers >= 0.

    Returns:
      A schedule ``count -> value``.

    >>> s = join([constant(1.0), linear(1.0, 0.0, 2)], [2])
    >>> [float(s(t)) for t in range(5)]
    [1.0, 1.0, 1.0, 0.5, 0.0]

    Reference: ``optax.join_schedules``; torch ``SequentialLR``.
    """
    schedules = _sequence("schedules", schedules)
    boundaries = _sequence("boundaries", boundaries)
    if not schedules:
        raise ValueError("schedules=[] is out of range: expected at least one")
    for i, s in enumerate(schedules):
        check_callable(f"schedules[{i}]", s)
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"boundaries={boundaries!r} has length {len(boundaries)}: expected "
            f"len(schedules) - 1 = {len(schedules) - 1}"
        )
    for i, b in enumerate(boundaries):
        check_nonnegative_int(f"boundaries[{i}]", b)
    if any(b <= a for a, b in itertools.pairwise(boundaries)):
        raise ValueError(
            f"boundaries={boundaries!r} is out of range: expected strictly "
            "increasing integers >= 0"
        )

    def schedule(count: Any) -> Any:
        if _is_int(count):  # any size: pick the piece in Python
            i = sum(count >= b for b in boundaries)
            start = boundaries[i - 1] if i else 0
            return jnp.asarray(schedules[i](count - start), dtype=hyper_dtype())
        c = jnp.asarray(count)
        out = jnp.asarray(schedules[0](c), dtype=hyper_dtype())
        for b, s in zip(boundaries, schedules[1:]):
            if jnp.issubdtype(c.dtype, jnp.integer) and b > jnp.iinfo(c.dtype).max:
                break  # a count of this dtype never reaches b
            out = jnp.where(c < b, out, jnp.asarray(s(c - b), dtype=hyper_dtype()))
        return out

    return schedule
