"""What the variant modules share: how Adam-style moments are stored, and the
optional decoupled weight decay of their aliases.

Kept here so that each variant module holds only its own formula.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from adam_tx._engine.reduce import sums_of_squares
from adam_tx._engine.validate import check_nonnegative, is_schedule
from adam_tx.hyperparams import is_external
from adam_tx.state_format import moment_format
from adam_tx.weight_decay import add_decayed_weights


def moment_formats(
    signed: dict[str, str],
    unsigned: dict[str, str],
    dtypes: dict[str, Any],
    state_format: str,
    seed: int | None,
) -> dict[str, Any]:
    """The storage format of each moment field, in state-field order.

    ``signed`` and ``unsigned`` map a state field (``"mu"``, ``"nu"``...) to the
    dtype argument that sets it (``"mu_dtype"``...), whose value is in
    ``dtypes``; unsigned fields (second moments) get the unsigned int8 code map.
    Errors name the argument, as :func:`adam_tx.state_format.moment_format` does.
    """
    out = {}
    for field, arg in signed.items():
        out[field] = moment_format(arg, dtypes[arg], state_format, seed=seed)
    for field, arg in unsigned.items():
        out[field] = moment_format(
            arg, dtypes[arg], state_format, signed=False, seed=seed
        )
    return out


def adam_formats(
    mu_dtype, nu_dtype, state_format: str, seed: int | None
) -> dict[str, Any]:
    """``{"mu": ..., "nu": ...}``: Adam's two moments, as scale_by_adam stores them."""
    return moment_formats(
        {"mu": "mu_dtype"},
        {"nu": "nu_dtype"},
        {"mu_dtype": mu_dtype, "nu_dtype": nu_dtype},
        state_format,
        seed,
    )


def decoupled_decay(
    weight_decay, mask=None
) -> tuple[optax.GradientTransformation, ...]:
    """``(add_decayed_weights(weight_decay, mask),)``, or ``()`` for a constant 0.

    The aliases require ``weight_decay >= 0`` (``add_decayed_weights`` itself
    accepts negative rates).
    """
    check_nonnegative("weight_decay", weight_decay)
    if is_schedule(weight_decay) or is_external(weight_decay):
        return (add_decayed_weights(weight_decay, mask),)
    if float(weight_decay) == 0:
        return ()
    return (add_decayed_weights(weight_decay, mask),)


def nonnegative_decay(weight_decay, mask=None) -> optax.GradientTransformation:
    """``add_decayed_weights`` kept in the chain even at 0 (where optax's alias
    keeps it, so that ``state[i]`` names the same member in both)."""
    check_nonnegative("weight_decay", weight_decay)
    return add_decayed_weights(weight_decay, mask)


def in_loop_sum_of_squares(x: jax.Array, companion: jax.Array) -> jax.Array:
    """``sum(x^2)`` over one leaf, evaluated in the loop that computes ``x``.

    On XLA:CPU a lone ``jnp.sum`` goes to a library kernel that needs its
    input in memory, so a per-leaf reduction of an expression stores the
    expression in a leaf-sized temporary; two or more sums are one variadic
    reduce that keeps it in the loop (:mod:`adam_tx._engine.reduce`). ``companion``,
    an array of ``x``'s shape that the loop reads anyway (the gradient), is
    the second sum, and is dropped. Measured with jax 0.10.2: StableAdamW's
    step then keeps no temporary (``tests/test_variants_engine.py::
    test_per_leaf_reductions_store_no_update_and_copy_no_state``).
    """
    return sums_of_squares(x, companion)[0]
