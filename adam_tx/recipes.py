"""Ready-made training recipes: clipping, AdamW (or SGD late) and warmup-cosine.

Each recipe is a function of the run length (``total_steps``) and the peak
learning rate, and returns one :func:`adam_tx.chain`:

- :func:`general`: deep nets in general: clip the global norm to 1.0, AdamW
  (b1 0.9, b2 0.999, eps 1e-8, weight decay 1e-4 off biases, norms and
  embeddings), linear warmup then cosine annealing.
- :func:`transformer`: the same with b2 = 0.98 and a warmup proportional to
  the run.
- :func:`vision`: AdamW for fast progress, optionally switched late in the run
  to SGD with momentum (Keskar & Socher 2017) for the final accuracy.

The learning rate in force, the clip factor and the other hyperparameters are
all in the state (:func:`adam_tx.get_hyperparams`).
"""

from __future__ import annotations

from typing import Any

import optax

from adam_tx import schedules
from adam_tx._engine.fusion import chain
from adam_tx.alias import adamw, sgd
from adam_tx.clipping import clip_by_global_norm
from adam_tx.switch import switch
from adam_tx.weight_decay import add_decayed_weights, decay_mask


def _check_steps(total_steps: int, warmup_steps: int) -> None:
    if int(total_steps) != total_steps or total_steps < 2:
        raise ValueError(f"total_steps must be an integer >= 2, got {total_steps}")
    if int(warmup_steps) != warmup_steps or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be an integer in [0, total_steps={total_steps}), "
            f"got {warmup_steps}"
        )


def warmup_cosine(
    total_steps: int, peak_lr: float, warmup_steps: int
) -> optax.Schedule:
    """``0 -> peak_lr`` linearly over ``warmup_steps``, cosine to 0 at the end."""
    _check_steps(total_steps, warmup_steps)
    return schedules.warmup_cosine_decay(
        0.0, peak_lr, int(warmup_steps), int(total_steps)
    )


def _adamw_chain(
    total_steps: int,
    peak_lr: float,
    warmup_steps: int,
    b2: float,
    weight_decay: float,
    clip_norm: float,
    mask: Any,
) -> optax.GradientTransformationExtraArgs:
    lr = warmup_cosine(total_steps, peak_lr, warmup_steps)
    return chain(
        clip_by_global_norm(clip_norm),
        adamw(lr, b1=0.9, b2=b2, eps=1e-8, weight_decay=weight_decay, mask=mask),
    )


def general(
    total_steps: int,
    peak_lr: float = 1e-3,
    *,
    warmup_steps: int | None = None,
    weight_decay: float = 1e-4,
    clip_norm: float = 1.0,
    mask: Any = decay_mask,
) -> optax.GradientTransformationExtraArgs:
    """Deep nets in general: ``chain(clip_by_global_norm(1.0), adamw(...))``.

    AdamW with b1 = 0.9, b2 = 0.999, eps = 1e-8, ``weight_decay`` 1e-4 applied
    where ``mask`` (default :func:`adam_tx.decay_mask`: not biases, norm scales
    or embeddings); the learning rate rises linearly from 0 to ``peak_lr``
    over ``warmup_steps`` (default ``min(3000, max(1, total_steps // 10))``:
    the usual few hundred to 3,000 steps, at most a tenth of the run), then
    follows a cosine
    to 0 at ``total_steps``.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.recipes.general(1000, 1e-3)
    >>> s = tx.init({"w": jnp.ones(2)})
    >>> float(adam_tx.get_hyperparams(s)["b2"])
    0.9990000128746033
    """
    if warmup_steps is None:
        warmup_steps = min(3000, max(1, total_steps // 10))
    return _adamw_chain(
        total_steps, peak_lr, warmup_steps, 0.999, weight_decay, clip_norm, mask
    )


def transformer(
    total_steps: int,
    peak_lr: float = 1e-3,
    *,
    warmup_fraction: float = 0.05,
    weight_decay: float = 1e-4,
    clip_norm: float = 1.0,
    mask: Any = decay_mask,
) -> optax.GradientTransformationExtraArgs:
    """Transformers / NLP: as :func:`general` with b2 = 0.98 and
    ``warmup_steps = max(1, round(warmup_fraction * total_steps))``.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.recipes.transformer(1000, 5e-4)
    >>> s = tx.init({"w": jnp.ones(2)})
    >>> round(float(adam_tx.get_hyperparams(s)["b2"]), 6)
    0.98
    """
    if not 0 < warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in (0, 1), got {warmup_fraction}")
    warmup_steps = max(1, round(warmup_fraction * total_steps))
    return _adamw_chain(
        total_steps, peak_lr, warmup_steps, 0.98, weight_decay, clip_norm, mask
    )


def vision(
    total_steps: int,
    peak_lr: float = 1e-3,
    *,
    warmup_steps: int | None = None,
    weight_decay: float = 1e-4,
    clip_norm: float = 1.0,
    mask: Any = decay_mask,
    switch_at: float | None = None,
    sgd_lr: optax.ScalarOrSchedule | None = None,
    sgd_momentum: float = 0.9,
) -> optax.GradientTransformationExtraArgs:
    """Vision CNNs: :func:`general`'s AdamW, optionally SGD+momentum late on.

    With ``switch_at`` (a fraction of the run in (0, 1)), the optimizer is
    :func:`adam_tx.switch` of the AdamW chain and
    ``chain(clip_by_global_norm, sgd(sgd_lr, sgd_momentum, weight_decay=wd))``
    at step ``round(switch_at * total_steps)``. ``sgd_lr=None`` takes SGD's
    learning rate from AdamW's effective step size at the switch (SWATS, see
    :mod:`adam_tx.switch`); the SGD phase's decay is L2 (coupled) on the
    ``mask``-ed leaves, as torch's SGD.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.recipes.vision(100, 1e-3, switch_at=0.75, sgd_lr=0.05)
    >>> s = tx.init({"w": jnp.ones(2)})
    >>> type(s).__name__
    'SwitchState'
    """
    adam_part = general(
        total_steps,
        peak_lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        clip_norm=clip_norm,
        mask=mask,
    )
    if switch_at is None:
        return adam_part
    if not 0 < switch_at < 1:
        raise ValueError(f"switch_at must be a fraction in (0, 1), got {switch_at}")
    at_step = round(switch_at * total_steps)
    sgd_part = chain(
        clip_by_global_norm(clip_norm),
        add_decayed_weights(weight_decay, mask),
        sgd(1.0 if sgd_lr is None else sgd_lr, momentum=sgd_momentum),
    )
    return switch(adam_part, sgd_part, at_step, swats=sgd_lr is None)
