"""Transforms that optax keeps stateless, and whose ``update`` takes ``None``.

optax's ``clip``, ``clip_by_global_norm``, ``adaptive_grad_clip``,
``add_decayed_weights`` and ``scale`` keep ``EmptyState()``, so optax code may
call ``update(updates, None, params)``. Ours keep a step count and their
hyperparameters; given ``None`` they start from a fresh state (count 0, the
hyperparameters they were built with) and return the next one.
"""

from __future__ import annotations

import optax

from adam_tx._engine import fusion


def accepting_no_state(
    tx: optax.GradientTransformationExtraArgs,
) -> optax.GradientTransformationExtraArgs:
    """``tx`` (one adam_tx piece) whose ``update`` also takes ``state=None``."""
    piece = fusion.program_of(tx)
    fresh = lambda state: piece.init(None) if state is None else state
    return fusion.transformation(
        piece.replace(
            prepare=lambda state, *args: piece.prepare(fresh(state), *args),
            finish=lambda state, *args: piece.finish(fresh(state), *args),
        )
    )
