"""Argument checks shared by the wrappers (guards, loss scaling, switch,
grouping, statistics, the range test): the wrapped transform and bounded
integers, each refused at build time with the argument's name.

Kept apart from :mod:`adam_tx._engine.validate` (hyperparameter ranges) only because
that module has another owner; the two belong together.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any

import optax

from adam_tx._engine.counting import INT32_MAX


def check_transform(name: str, value: Any) -> optax.GradientTransformation:
    """``value`` if it is a gradient transformation, else a ``TypeError``.

    Anything with callable ``init`` and ``update`` passes (optax's NamedTuples,
    and duck-typed objects built the same way).

    >>> try:
    ...     check_transform("inner", None)
    ... except TypeError as e:
    ...     print(str(e)[:52])
    inner must be an optax.GradientTransformation (an ob
    """
    if callable(getattr(value, "init", None)) and callable(
        getattr(value, "update", None)
    ):
        return value
    raise TypeError(
        f"{name} must be an optax.GradientTransformation (an object with init "
        f"and update, e.g. adam_tx.adamw(1e-3)), got {value!r:.80} of type "
        f"{type(value).__name__}"
    )


def check_int(name: str, value: Any, low: int, high: int = INT32_MAX) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (default high: the int32
    maximum, as counts live in int32 state), never an ``OverflowError``.

    ``ValueError`` for a number that is not such an integer (``1.5``, ``True``,
    ``2**40``), ``TypeError`` for anything else (``None``, ``"3"``).

    >>> try:
    ...     check_int("every", 2**40, 1)
    ... except ValueError as e:
    ...     print(e)
    every=1099511627776 is out of range: expected an integer in [1, 2147483647]
    """
    expected = f"expected an integer in [{low}, {int(high)}]"
    if isinstance(value, (bool, float)) or type(value).__name__ in ("bool_",):
        raise ValueError(f"{name}={value!r} is out of range: {expected}")
    try:
        number = operator.index(value)
    except TypeError:
        if isinstance(value, numbers.Number):
            raise ValueError(f"{name}={value!r} is out of range: {expected}") from None
        raise TypeError(
            f"{name} must be an integer, got {value!r:.80} of type "
            f"{type(value).__name__}: {expected}"
        ) from None
    if not low <= number <= high:
        raise ValueError(f"{name}={number!r} is out of range: {expected}")
    return number


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (numpy's too), else a ``TypeError``."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r:.80}")
