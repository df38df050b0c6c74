"""The types of hyperparameter arguments, as public signatures spell them.

A rate (learning rate, weight decay, a clipping bound...) is a number, a JAX
array (what ``optax.inject_hyperparams`` and ``jax.vmap`` pass), or a schedule:
a function of the integer step count. These are optax's ``ScalarOrSchedule``
and ``jax.typing.ArrayLike``, written here so that our signatures read the same
as optax's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax

Numeric: TypeAlias = jax.typing.ArrayLike
"""A number or an array: the type of a hyperparameter that cannot be a schedule."""

Schedule: TypeAlias = Callable[[Any], Numeric]
"""A function of the step count (an integer, or an integer array) to a scalar."""

ScalarOrSchedule: TypeAlias = float | jax.Array | Schedule
"""A constant rate or a schedule of the step count."""

DType: TypeAlias = Any
"""A dtype or anything ``jnp.dtype`` accepts (``jnp.bfloat16``, ``"float32"``)."""
