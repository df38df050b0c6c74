"""Cautious masking (Liang et al., "Cautious Optimizers: Improving Training
with One Line of Code", arXiv:2411.16085, 2024): drop the entries of an
update direction whose sign disagrees with the gradient, and rescale the rest
per leaf so that the step keeps its size:

    phi_t = [u_t * g_t > 0]                 (elementwise)
    u_t <- u_t * phi_t * d / (||phi_t||_0 + 1)      (d = the leaf's size)

The mask needs both the direction ``u_t`` and the gradient ``g_t``. A piece of
an adam_tx chain sees only the output of the piece before it, so a mask
chained after ``scale_by_adam`` would have no gradient to compare with.
:func:`cautious` therefore wraps the direction instead: its leaf function
calls the direction's and masks the result with the direction's own input,
inside the same fused pass, for any adam_tx direction (``scale_by_adam``,
``scale_by_radam``, ``scale_by_belief``...). Wrapping anything else (an optax
transform, a chain) runs it unfused and masks its output with its input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adam_tx._engine import fusion
from adam_tx._engine.fusion import chain
from adam_tx._engine.storage import stores_moments
from adam_tx._engine.typing import Numeric, ScalarOrSchedule
from adam_tx._engine.wrapper_args import check_transform
from adam_tx.adam import scale_by_adam
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.variants._common import (
    in_loop_sum_of_squares,
    nonnegative_decay,
)


def cautious_mask(u: jax.Array, g: jax.Array) -> jax.Array:
    """The cautious mask of one leaf of ``d`` entries.

    Formula: ``u * [u g > 0] * d / (nnz + 1)``; ``nnz`` counts the entries
    kept; the ``+ 1`` (the paper's Algorithm 1 and its reference code) keeps
    the scale finite when nothing agrees. For complex
    leaves agreement is ``re(u conj(g)) > 0``.

    Args:
      u: one leaf of the update direction.
      g: the gradient leaf of the same shape.

    Reference: Liang et al., "Cautious Optimizers: Improving Training with One
    Line of Code", 2024.

    >>> import jax.numpy as jnp
    >>> u = cautious_mask(jnp.array([1.0, -2.0, 3.0]), jnp.array([2.0, 1.0, 1.0]))
    >>> u.tolist()  # two of three agree: scale 3 / (2 + 1)
    [1.0, 0.0, 3.0]
    """
    g = g.astype(u.dtype)
    agree = jnp.real(u * jnp.conj(g)) > 0 if jnp.iscomplexobj(u) else u * g > 0
    real = jnp.real(u).dtype
    kept = in_loop_sum_of_squares(agree.astype(real), jnp.abs(g))  # 0/1: sum = nnz
    scale = jnp.size(u) / (kept + 1.0)
    return jnp.where(agree, u, jnp.zeros_like(u)) * scale.astype(real)


def _masked(leaf_fn):
    def leaf(ctx, x, entries, p, info, *ok):
        u, new_entries, partials = leaf_fn(ctx, x, entries, p, info, *ok)
        return cautious_mask(u, x), new_entries, partials

    return leaf


def cautious(direction: optax.GradientTransformation) -> Any:
    """Mask ``direction``'s updates where their sign disagrees with the
    gradient (module docstring): ``u <- u [u g > 0] d / (nnz + 1)`` per leaf.

    The state is ``direction``'s own (e.g. a ``ScaleByAdamState``): a
    checkpoint of the plain direction restores into the cautious one. Chain
    decay and the learning rate after it, as :func:`cautious_adamw` does.

    Args:
      direction: the transform whose output is masked: an adam_tx direction
        such as ``adam_tx.scale_by_adam()`` (fused), or any optax transform.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.variants.cautious(adam_tx.trace(decay=0.9))
    >>> s = tx.init(jnp.zeros(3))
    >>> u, s = tx.update(jnp.array([1.0, -1.0, 1.0]), s)
    >>> u, s = tx.update(jnp.array([1.0, 1.0, -0.1]), s)  # momentum (1.9, 0.1, 0.8)
    >>> [round(x, 4) for x in u.tolist()]  # two agree: scale 3 / (2 + 1)
    [1.9, 0.1, 0.0]

    References:
      Liang, Chen, Liu & Liu, "Cautious Optimizers: Improving Training with One
      Line of Code", arXiv:2411.16085, 2024.
    """
    direction = check_transform("direction", direction)
    piece = fusion.program_of(direction)
    if isinstance(piece, fusion.Piece):
        masked = piece.replace(
            name=f"cautious({piece.name})",
            leaf=_masked(piece.leaf),
            guarded_leaf=piece.guarded_leaf and _masked(piece.guarded_leaf),
            scales_by=None,  # no longer its input times a scalar
        )
        return fusion.transformation(masked)
    inner = optax.with_extra_args_support(direction)

    def update(updates, state, params=None, **extra_args):
        u, state = inner.update(updates, state, params, **extra_args)
        return jax.tree.map(cautious_mask, u, updates), state

    return optax.GradientTransformationExtraArgs(direction.init, update)


@stores_moments
def cautious_adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    weight_decay: ScalarOrSchedule = 1e-4,
    *,
    mask: Any | Callable[..., Any] | None = None,
    nesterov: bool = False,
    **storage: Any,
) -> optax.GradientTransformationExtraArgs:
    """Cautious AdamW (C-AdamW): ``chain(cautious(scale_by_adam(...)),
    add_decayed_weights(wd, mask), scale_by_learning_rate(lr))``.

    ``p <- p - lr (cautious(m_hat / (sqrt(v_hat) + eps)) + wd p)``: the decay is
    neither masked nor rescaled, as in the paper's C-AdamW. ``storage``:
    ``mu_dtype``, ``nu_dtype``, ``state_format``, ``seed`` as in
    :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> opt = adam_tx.variants.cautious_adamw(0.1, weight_decay=0.0)
    >>> p = jnp.zeros(2); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([1.0, -2.0]), s, p)
    >>> [round(float(x), 4) for x in u]  # Adam's first step, scaled by 2 / (2 + 1)
    [-0.0667, 0.0667]

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      weight_decay: decoupled weight decay rate (AdamW's), multiplied by the learning
        rate; a float, an array or a schedule ``count -> value``. 0 adds no decay.
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Liang, Chen, Liu & Liu, "Cautious Optimizers: Improving Training with One
      Line of Code", arXiv:2411.16085, 2024.
    """
    return chain(
        cautious(scale_by_adam(b1, b2, eps, eps_root, nesterov=nesterov, **storage)),
        nonnegative_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
