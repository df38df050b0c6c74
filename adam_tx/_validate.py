"""Argument checks run when a transform is built, never while tracing.

Every check names the argument, the value it got and the range it wanted, so a
typo in a hyperparameter fails at construction with a message that says how to
fix it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np


def is_schedule(value: Any) -> bool:
    """True for a schedule (a callable of the step count), False for a number."""
    return callable(value)


def _as_float(name: str, value: Any) -> float:
    try:
        arr = np.asarray(value)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise TypeError(
            f"{name} must be a number or a schedule, got {value!r}"
        ) from err
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(
            f"{name} must be a scalar number or a schedule (a callable of the step "
            f"count), got {value!r}"
        )
    return float(arr)


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise ``ValueError`` unless a constant ``value`` lies in the given range.

    Schedules pass unchecked: their values are only known per step.
    """
    if is_schedule(value):
        return
    x = _as_float(name, value)
    ok = not math.isnan(x)
    if ok and low is not None:
        ok = x >= low if low_inclusive else x > low
    if ok and high is not None:
        ok = x <= high if high_inclusive else x < high
    if not ok:
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        interval = ("[" if low_inclusive and low is not None else "(") + lo + ", "
        interval += hi + ("]" if high_inclusive and high is not None else ")")
        raise ValueError(
            f"{name}={value!r} is out of range: expected {name} in {interval}"
        )


def check_decay(name: str, value: Any) -> None:
    """A decay rate (b1, b2, momentum, ...) must lie in [0, 1)."""
    check_range(name, value, 0.0, 1.0, high_inclusive=False)


def check_nonnegative(name: str, value: Any) -> None:
    check_range(name, value, 0.0, None)


def check_positive(name: str, value: Any) -> None:
    check_range(name, value, 0.0, None, low_inclusive=False)


def check_positive_int(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value <= 0
    ):
        raise ValueError(f"{name}={value!r} is out of range: expected an integer >= 1")


def check_nonnegative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}={value!r} is out of range: expected an integer >= 0")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid: expected one of {choices}")


def check_float_dtype(name: str, value: Any) -> Any:
    """Return the canonical floating dtype for ``value`` (None passes through)."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError as err:
        raise ValueError(
            f"{name}={value!r} is not a dtype: expected a floating dtype"
        ) from err
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{name}={value!r} is not a floating dtype: expected e.g. jnp.float32 "
            "or jnp.bfloat16"
        )
    return dtype


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")
    return value
