"""Run-time checks of the values that construction could not check.

Every concrete hyperparameter is checked when a transform is built (or set with
:func:`adam_tx.set_hyperparams`), and every schedule at a spread of probe
steps. Values only known when the step runs pass unchecked: a hyperparameter
traced under ``jit``/``vmap``/``grad`` or injected by
``optax.inject_hyperparams``, a schedule's value at a step that was not probed,
a learning rate set from inside a jitted function. :func:`checked` wraps a
transform so that each update also checks, on device:

* every hyperparameter held in the resulting state is finite and in the range
  its transform declares (:func:`adam_tx.hyperparams.register_ranges`);
* every update is finite.

The checks are ``jax.experimental.checkify`` checks: free (a no-op) unless the
training step is functionalized with ``checkify.checkify``, in which case a
failed check comes back as an error value naming the hyperparameter::

    tx = adam_tx.debug.checked(adam_tx.adamw(schedule))
    step = checkify.checkify(jax.jit(train_step))
    err, out = step(...)
    err.throw()  # ValueError: adam_tx: learning_rate=-0.01 out of [0.0, inf) ...
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.experimental import checkify

from adam_tx import hyperparams
from adam_tx._engine import validate


def _check_hyperparams(state: Any) -> None:
    def visit(node: Any) -> Any:
        if not hyperparams._has_hyperparams(node):
            return node
        for name, value in node.hyperparams.items():
            if name.startswith("1-"):
                continue
            low, high, low_inc, high_inc = hyperparams._RANGES.get(
                (type(node), name), (None, None, True, True)
            )
            v = jnp.asarray(value)
            ok = jnp.isfinite(v)
            if low is not None:
                ok &= (v >= low) if low_inc else (v > low)
            if high is not None:
                ok &= (v <= high) if high_inc else (v < high)
            interval = validate._interval(low, high, low_inc, high_inc)
            checkify.debug_check(
                jnp.all(ok),
                f"adam_tx: {name}={{value}} in {type(node).__name__} is out of "
                f"range: expected a finite {name} in {interval}",
                value=v,
            )
        return node

    jax.tree.map(visit, state, is_leaf=hyperparams._has_hyperparams)


def checked(
    inner: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
    """``inner`` with run-time checks of its hyperparameters and updates.

    Args:
      inner: any ``optax.GradientTransformation`` (adam_tx's or not).

    Returns:
      A transformation with the same state and updates as ``inner``; under
      ``checkify.checkify`` a non-finite or out-of-range hyperparameter, or a
      non-finite update, is reported as a checkify error.

    >>> import adam_tx, jax, jax.numpy as jnp
    >>> from jax.experimental import checkify
    >>> tx = adam_tx.debug.checked(adam_tx.adam(1e-3))
    >>> p = jnp.ones(2); s = tx.init(p)
    >>> bad = jax.jit(lambda s, b: adam_tx.set_hyperparams(s, b1=b))(s, 1.5)
    >>> err, _ = checkify.checkify(tx.update)(jnp.ones(2), bad, p)
    >>> "b1=1.5" in str(err.get())
    True
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(f"inner must be an optax.GradientTransformation, got {inner!r}")
    inner = optax.with_extra_args_support(inner)

    def update(updates, state, params=None, **extra_args):
        _check_hyperparams(state)
        new_updates, new_state = inner.update(updates, state, params, **extra_args)
        _check_hyperparams(new_state)
        for path, leaf in jax.tree_util.tree_flatten_with_path(new_updates)[0]:
            checkify.debug_check(
                jnp.all(jnp.isfinite(leaf)),
                f"adam_tx: non-finite update at {jax.tree_util.keystr(path)}",
            )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(inner.init, update)
