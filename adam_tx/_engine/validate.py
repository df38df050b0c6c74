"""Argument checks run when a transform is built, never while tracing.

Every check names the argument, the value it got and the range it wanted, so a
typo in a hyperparameter fails at construction with a message that says how to
fix it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_schedule(value: Any) -> bool:
    """True for a schedule (a callable of the step count), False for a number.

    A class is not a schedule, though callable: ``jnp.float32`` passed for a
    rate is a mistake to report, not a schedule whose value at step 0 is 0.
    """
    return callable(value) and not isinstance(value, type)


def is_traced(value: Any) -> bool:
    """True for a value only known when the step runs (a tracer under ``jit``,
    ``vmap`` or ``grad``): it cannot be checked when the transform is built."""
    return isinstance(value, jax.core.Tracer)


# Steps at which a schedule's values are checked when a transform is built: the
# start, the first steps, and a spread of horizons (a schedule's own horizon
# and the step past it too, when it says what it is: ``schedule.horizon``).
PROBE_STEPS = (0, 1, 2, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 2**31 - 1)


def _as_float(name: str, value: Any) -> float:
    """A concrete real scalar as a Python float, or a TypeError naming ``name``."""
    if isinstance(value, (str, bytes, bool)):
        raise TypeError(
            f"{name} must be a real number or a schedule (a callable of the step "
            f"count), got {value!r} of type {type(value).__name__}"
        )
    if isinstance(value, int) and abs(value) > int(np.finfo(np.float64).max):
        raise ValueError(f"{name}={value!r} is out of range: too large for a float")
    try:
        arr = np.asarray(value)
    except Exception as err:
        raise TypeError(
            f"{name} must be a real number or a schedule, got {value!r}"
        ) from err
    if isinstance(value, jax.Array) and np.iscomplexobj(arr) and not arr.imag.any():
        # optax.inject_hyperparams casts every value to the parameters' dtype:
        # a real rate arrives as complex with a zero imaginary part.
        arr = arr.real
    if arr.dtype == object or not (
        # jnp's issubdtype knows bfloat16 and the other ml_dtypes floats.
        jnp.issubdtype(arr.dtype, jnp.integer)
        or jnp.issubdtype(arr.dtype, jnp.floating)
    ):
        kind = "complex" if np.iscomplexobj(arr) else type(value).__name__
        raise TypeError(
            f"{name} must be a real number or a schedule (a callable of the step "
            f"count), got {value!r} ({kind})"
        )
    if arr.shape != ():
        raise TypeError(
            f"{name} must be a scalar (shape ()), got an array of shape {arr.shape}"
        )
    try:
        return float(arr)
    except OverflowError as err:  # an integer beyond float range
        raise ValueError(f"{name}={value!r} is out of range: too large") from err


def _hyper_max() -> float:
    x64 = jax.config.jax_enable_x64
    return float(np.finfo(np.float64 if x64 else np.float32).max)


def _interval(low, high, low_inclusive, high_inclusive) -> str:
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    out = ("[" if low_inclusive and low is not None else "(") + lo + ", "
    return out + hi + ("]" if high_inclusive and high is not None else ")")


def check_value(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    where: str = "",
) -> None:
    """Raise unless the concrete ``value`` is a finite real scalar in range.

    ``TypeError`` for a value that is not a real scalar (a string, a complex
    number, an array of another shape), ``ValueError`` for one out of range.
    Non-finite values are refused whatever the range. Traced values pass: they
    are checked by :func:`adam_tx.debug.checked` at run time, if asked.
    """
    if is_traced(value):
        return
    x = _as_float(name, value)
    # Hyperparameters are held in float32 (float64 under x64): a finite value
    # beyond its range would be stored as inf.
    ok = math.isfinite(x) and abs(x) <= _hyper_max()
    if ok and low is not None:
        ok = x >= low if low_inclusive else x > low
    if ok and high is not None:
        ok = x <= high if high_inclusive else x < high
    if not ok:
        interval = _interval(low, high, low_inclusive, high_inclusive)
        held = ""
        if math.isfinite(x) and abs(x) > _hyper_max():
            held = f" (held as a float: |{name}| <= {_hyper_max():.3g})"
        raise ValueError(
            f"{name}={value!r}{where} is out of range: expected a finite {name} "
            f"in {interval}{held}"
        )


def probe_steps(schedule: Callable[..., Any]) -> tuple[int, ...]:
    """The steps at which :func:`check_range` evaluates a schedule."""
    steps = set(PROBE_STEPS)
    horizon = getattr(schedule, "horizon", None)
    if isinstance(horizon, (int, np.integer)) and not isinstance(horizon, bool):
        steps |= {int(horizon) // 2, int(horizon), int(horizon) + 1}
    return tuple(sorted(s for s in steps if 0 <= s <= 2**31 - 1))


def check_schedule_values(name: str, schedule: Callable[..., Any], **bounds) -> None:
    """Evaluate ``schedule`` at :func:`probe_steps` and check every value.

    A schedule that returns NaN, a negative learning rate or ``b1 = 1`` is
    refused when the transform is built, not found out as NaN updates later.
    Values that are traced (a schedule closing over a traced value) pass.
    """
    for step in probe_steps(schedule):
        try:
            value = schedule(jnp.asarray(step, jnp.int32))
        except Exception as err:
            raise ValueError(
                f"{name} is a schedule that fails at step {step}: "
                f"{type(err).__name__}: {err}"
            ) from err
        if is_traced(value):
            return
        if np.ndim(value) != 0 or not np.isrealobj(value):
            raise TypeError(
                f"{name} is a schedule that returns {value!r} at step {step}; a "
                "schedule must return a real scalar"
            )
        where = f" (its schedule's value at step {step})"
        check_value(name, float(value), where=where, **bounds)


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise ``ValueError`` unless ``value`` lies in the given range.

    A constant is checked as given (:func:`check_value`); a schedule at the
    steps of :func:`probe_steps`; a traced value passes.
    """
    bounds = dict(
        low=low, high=high, low_inclusive=low_inclusive, high_inclusive=high_inclusive
    )
    if is_schedule(value):
        check_schedule_values(name, value, **bounds)
    else:
        check_value(name, value, **bounds)


def check_decay(name: str, value: Any) -> None:
    """A decay rate (b1, b2, momentum, ...) must lie in [0, 1)."""
    check_range(name, value, 0.0, 1.0, high_inclusive=False)


def check_nonnegative(name: str, value: Any) -> None:
    check_range(name, value, 0.0, None)


def check_positive(name: str, value: Any) -> None:
    check_range(name, value, 0.0, None, low_inclusive=False)


def _check_int(name: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an integer, got {value!r} of type {type(value).__name__}"
        )
    if value < low or (high is not None and value > high):
        top = "" if high is None else f" and <= {high}"
        raise ValueError(
            f"{name}={value!r} is out of range: expected an integer >= {low}{top}"
        )


def check_positive_int(name: str, value: Any, high: int | None = None) -> None:
    _check_int(name, value, 1, high)


def check_nonnegative_int(name: str, value: Any, high: int | None = None) -> None:
    _check_int(name, value, 0, high)


def check_axes(name: str, value: Any) -> None:
    """``value`` is None, an integer axis or a tuple of integer axes."""
    axes = value if isinstance(value, (tuple, list)) else (value,)

    def is_int(a: Any) -> bool:
        return isinstance(a, (int, np.integer)) and not isinstance(a, bool)

    if value is None or (axes and all(is_int(a) for a in axes)):
        return
    raise TypeError(
        f"{name}={value!r} is not valid: expected None, an integer axis or a tuple "
        "of integer axes"
    )


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid: expected one of {choices}")


def check_float_dtype(name: str, value: Any) -> Any:
    """Return the canonical floating dtype for ``value`` (None passes through)."""
    if value is None:
        return None
    if isinstance(value, (np.ndarray, jax.Array)):  # jnp.dtype(arr) is deprecated
        raise ValueError(
            f"{name}={value!r} is not a dtype: expected a floating dtype (for an "
            f"array's, pass arr.dtype)"
        )
    try:
        dtype = jnp.dtype(value)
    except TypeError as err:
        raise ValueError(
            f"{name}={value!r} is not a dtype: expected a floating dtype"
        ) from err
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise ValueError(
            f"{name}={value!r} is not a floating dtype: expected e.g. jnp.float32, "
            "jnp.bfloat16 or (for complex parameters) jnp.complex64"
        )
    return dtype


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")
    return value
