"""Hyperparameters held in the optimizer state.

Every rate of an adam_tx transform (learning rate, b1, b2, eps, weight decay, ...)
lives in its state as a scalar of :func:`adam_tx._engine.dtypes.hyper_dtype` (float32,
float64 under ``jax_enable_x64``), never in the parameter dtype. A constant is
read from the state each step, so :func:`set_hyperparams` changes it between
steps without recompiling; a schedule is evaluated at the step count and its
value written to the state, so it can be logged.

One source of truth per hyperparameter, decided by what the factory is given:

* a Python or NumPy number: a constant held in the state, read each step and
  changed with :func:`set_hyperparams`;
* a schedule: evaluated at the step count each step, its value written to the
  state for logging;
* a JAX array or tracer (what ``optax.inject_hyperparams`` passes, and what a
  ``jax.vmap`` sweep or ``jax.grad`` with respect to a hyperparameter passes):
  owned by the caller, used as given, and *not* stored in the adam_tx state, so
  that neither copy can silently override the other (with
  ``inject_hyperparams``, ``state.hyperparams`` of the wrapper is the one place
  to read and set it, and ``optax.tree_utils.tree_get`` finds it once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adam_tx._engine.dtypes import hyper_dtype
from adam_tx._engine.typing import ScalarOrSchedule
from adam_tx._engine.validate import check_value, is_schedule


class Hyper(NamedTuple):
    """A named hyperparameter: a constant or a schedule of the step count.

    ``complement=True`` (decay rates) also keeps ``1 - value`` under the name
    ``"1-<name>"``, computed in float64 from the Python number: in float32,
    ``1 - float32(0.999)`` is 1.3e-5 away from 0.001, while torch.optim and optax
    both use the exact complement.
    """

    name: str
    value: ScalarOrSchedule
    complement: bool = False


def complement_name(name: str) -> str:
    return "1-" + name


def is_external(value: Any) -> bool:
    """Whether a hyperparameter is owned by the caller: a JAX array or tracer
    (see the module docstring), not stored in the state."""
    return isinstance(value, (jax.Array, jax.core.Tracer))


def _real(value: jax.Array) -> jax.Array:
    """A caller's value as a real array: ``optax.inject_hyperparams`` casts its
    values to the parameters' dtype, so with complex parameters a rate arrives
    as complex (its imaginary part, 0, is checked when concrete)."""
    return jnp.real(value) if jnp.iscomplexobj(value) else value


# The range of each hyperparameter as held by a state class, checked by
# set_hyperparams: {(state class, name): (low, high, low_inclusive,
# high_inclusive)}. A name a state class did not register is checked as a
# finite real scalar.
_RANGES: dict[tuple[type, str], tuple[Any, Any, bool, bool]] = {}

DECAY = (0.0, 1.0, True, False)
NONNEGATIVE = (0.0, None, True, True)
POSITIVE = (0.0, None, False, True)


def register_ranges(state_cls: type, **ranges: tuple[Any, Any, bool, bool]) -> None:
    """Declare the valid range of ``state_cls``'s hyperparameters, so that
    :func:`set_hyperparams` refuses what the factory would have refused.

    Each range is ``(low, high, low_inclusive, high_inclusive)``, e.g.
    :data:`DECAY` for a decay rate in [0, 1).
    """
    for name, bounds in ranges.items():
        _RANGES[(state_cls, name)] = bounds


def check_setting(state_cls: type, name: str, value: Any) -> None:
    """The checks of :func:`set_hyperparams` for one value (tracers pass)."""
    low, high, low_inc, high_inc = _RANGES.get(
        (state_cls, name), (None, None, True, True)
    )
    check_value(name, value, low, high, low_inclusive=low_inc, high_inclusive=high_inc)


def _with_complement(name: str, value: Any, complement: bool) -> dict[str, jax.Array]:
    out = {name: jnp.asarray(value, hyper_dtype())}
    if complement:
        if isinstance(value, jax.core.Tracer):
            comp = 1 - out[name]
        else:  # a concrete number: take the complement in float64
            comp = 1.0 - np.float64(value)
        out[complement_name(name)] = jnp.asarray(comp, hyper_dtype())
    return out


def init_values(hypers: tuple[Hyper, ...]) -> dict[str, jax.Array]:
    """The hyperparameter dict stored in a freshly initialised state (values
    owned by the caller, :func:`is_external`, are not stored)."""
    zero = jnp.zeros([], jnp.int32)
    out: dict[str, jax.Array] = {}
    for h in hypers:
        if is_external(h.value):
            continue
        value = h.value(zero) if is_schedule(h.value) else h.value
        out.update(_with_complement(h.name, value, h.complement))
    return out


def current_values(
    hypers: tuple[Hyper, ...], stored: Mapping[str, jax.Array], count: jax.Array
) -> dict[str, jax.Array]:
    """Values in force at ``count``: schedules are evaluated, constants read."""
    out = {}
    for h in hypers:
        if is_external(h.value):
            out.update(_with_complement(h.name, _real(h.value), h.complement))
        elif is_schedule(h.value):
            out.update(_with_complement(h.name, h.value(count), h.complement))
        else:
            out[h.name] = jnp.asarray(stored[h.name], hyper_dtype())
            if h.complement:
                key = complement_name(h.name)
                out[key] = jnp.asarray(stored[key], hyper_dtype())
    return out


def _has_hyperparams(node: Any) -> bool:
    return (
        isinstance(node, tuple)
        and hasattr(node, "_fields")
        and "hyperparams" in node._fields
        and isinstance(node.hyperparams, dict)
    )


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
    """Return ``opt_state`` with the named hyperparameters replaced.

    Works inside and outside ``jax.jit``; the new values are arrays in the state,
    so the compiled step is reused (no recompilation). Every adam_tx state in the
    tree that holds a hyperparameter of that name is updated (inside ``chain``,
    ``optax.masked``, ``optax.MultiSteps``...). A hyperparameter given as a
    schedule is recomputed at the next step, so setting it has no lasting effect.

    Args:
      opt_state: the state returned by ``init`` / ``update``.
      **values: e.g. ``learning_rate=3e-4, b2=0.95``.

    Returns:
      A state of the same structure.

    Every concrete value is checked as the factory checks it: a finite real
    scalar in the hyperparameter's range (``b1=1.0``, ``eps=-1``,
    ``learning_rate=nan`` or ``'0.1'`` are refused). Traced values (inside
    ``jit``) pass unchecked.

    Raises:
      KeyError: if a name matches no hyperparameter in the state (the message lists
        the names that exist).
      TypeError: for a value that is not a real scalar.
      ValueError: for a value out of the hyperparameter's range.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.adamw(1e-3)
    >>> state = opt.init({"w": jnp.ones(3)})
    >>> state = adam_tx.set_hyperparams(state, learning_rate=3e-4)
    >>> float(adam_tx.get_hyperparams(state)["learning_rate"])  # doctest: +ELLIPSIS
    0.0003...
    """
    found: set[str] = set()

    def replace(node: Any) -> Any:
        if not _has_hyperparams(node):
            return node
        new = dict(node.hyperparams)
        for name, value in values.items():
            if name in new:
                check_setting(type(node), name, value)
                new.update(_with_complement(name, value, complement_name(name) in new))
                found.add(name)
        return node._replace(hyperparams=new)

    out = jax.tree.map(replace, opt_state, is_leaf=_has_hyperparams)
    missing = set(values) - found
    if missing:
        raise KeyError(
            f"no hyperparameter named {sorted(missing)} in the optimizer state; "
            f"available: {sorted(get_hyperparams(opt_state))}"
        )
    return out


def get_hyperparams(opt_state: Any) -> dict[str, jax.Array]:
    """The hyperparameter values in the state, by name (first occurrence wins).

    Reads every ``state.hyperparams`` dict in the tree (optax's
    ``inject_hyperparams`` keeps them the same way): constants as set, schedules
    at their value for the last step, decay rates with their exact complements.

    >>> import adam_tx, jax.numpy as jnp
    >>> hp = adam_tx.get_hyperparams(adam_tx.adamw(1e-3).init(jnp.zeros(2)))
    >>> sorted(hp)
    ['1-b1', '1-b2', 'b1', 'b2', 'eps', 'eps_root', 'learning_rate', 'weight_decay']
    >>> float(hp["learning_rate"]) == float(jnp.float32(1e-3))
    True

    Args:
      opt_state: an optimizer state (any pytree of states).
    """
    out: dict[str, jax.Array] = {}

    def visit(node: Any) -> Any:
        if _has_hyperparams(node):
            for name, value in node.hyperparams.items():
                out.setdefault(name, value)
        return node

    jax.tree.map(visit, opt_state, is_leaf=_has_hyperparams)
    return out
