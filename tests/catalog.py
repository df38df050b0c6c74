"""Every transform adam_tx ships, in one table, with what it can do.

``tests/test_conformance.py`` runs the engine's contract over every entry:
adding a transform to the package is one module plus one entry here. An entry
names:

* ``make``: builds the transform with typical arguments;
* ``formats``: it takes ``mu_dtype``/``nu_dtype``/``state_format``/``seed``,
  so every state format is tried;
* ``passes``: the passes per leaf over parameter-sized memory that XLA:CPU
  makes for ``chain(clip_by_global_norm(1.0), <this>)`` jitted with donated
  state (``tests/test_fast_path.py`` explains the count); ``None`` for
  transforms that are not a full step;
* ``optax``: the optax factory of the same name and meaning, if any.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optax

import adam_tx


class Entry(NamedTuple):
    name: str
    make: Callable[..., optax.GradientTransformation]
    formats: bool = False
    passes: int | None = None
    optax: Callable[..., Any] | None = None
    # Donated buffers XLA copies before overwriting (0 is the rule); a nonzero
    # count is a known defect, kept here so that it cannot grow unseen.
    copies: int = 0


def _adam_family(name: str, passes: int, copies: int = 0) -> Entry:
    return Entry(
        name,
        lambda **fmt: getattr(adam_tx, name)(1e-3, **fmt),
        formats=True,
        passes=passes,
        optax=getattr(optax, name, None),
        copies=copies,
    )


def _variant(name: str, make, passes: int, optax_fn=None) -> Entry:
    return Entry(name, make, formats=True, passes=passes, optax=optax_fn)


def _nu_only(fmt: dict[str, Any]) -> dict[str, Any]:
    """Schedule-free keeps one moment (nu): the format without ``mu_dtype``."""
    return {k: v for k, v in fmt.items() if k != "mu_dtype"}


CATALOG: list[Entry] = [
    # Full optimizers (aliases).
    _adam_family("adam", 4),
    _adam_family("adamw", 4),
    _adam_family("nadam", 4),
    _adam_family("nadamw", 4),
    _adam_family("amsgrad", 5),
    # AdaBelief: no copy only because eps_root joins the new term before the
    # sum (adam_tx.moments.ema_plus); added last, XLA recomputed s_t in the
    # parameter loop and copied the donated moments.
    _adam_family("adabelief", 4),
    _adam_family("adamax", 4),
    Entry("rmsprop", lambda: adam_tx.rmsprop(1e-2), passes=3, optax=optax.rmsprop),
    Entry(
        "rmsprop_momentum",
        lambda: adam_tx.rmsprop(1e-2, momentum=0.9),
        passes=4,
    ),
    Entry("adagrad", lambda: adam_tx.adagrad(1e-2), passes=3),
    Entry("sgd", lambda: adam_tx.sgd(1e-2), passes=2),
    Entry("sgd_momentum", lambda: adam_tx.sgd(1e-2, momentum=0.9), passes=3),
    # The variants (adam_tx.variants).
    _variant("radam", lambda **f: adam_tx.radam(1e-3, **f), 4, optax.radam),
    _variant("lamb", lambda **f: adam_tx.lamb(1e-3, **f), 6, optax.lamb),
    _variant("adopt", lambda **f: adam_tx.adopt(1e-3, **f), 4),
    _variant("ademamix", lambda **f: adam_tx.ademamix(1e-3, **f), 5),
    _variant("cautious_adamw", lambda **f: adam_tx.cautious_adamw(1e-3, **f), 6),
    _variant("adam_atan2", lambda **f: adam_tx.adam_atan2(1e-3, **f), 4),
    _variant("stable_adamw", lambda **f: adam_tx.stable_adamw(1e-3, **f), 5),
    _variant(
        "schedule_free_adamw",
        lambda **f: adam_tx.schedule_free_adamw(1e-3, **_nu_only(f)),
        5,
    ),
    # Pieces.
    Entry(
        "scale_by_radam",
        lambda **fmt: adam_tx.scale_by_radam(**fmt),
        formats=True,
        optax=optax.scale_by_radam,
    ),
    Entry("scale_by_adopt", lambda **fmt: adam_tx.scale_by_adopt(**fmt), formats=True),
    Entry(
        "scale_by_ademamix",
        lambda **fmt: adam_tx.scale_by_ademamix(**fmt),
        formats=True,
    ),
    Entry(
        "scale_by_adam_atan2",
        lambda **fmt: adam_tx.scale_by_adam_atan2(**fmt),
        formats=True,
    ),
    Entry(
        "scale_by_stable_adam",
        lambda **fmt: adam_tx.scale_by_stable_adam(**fmt),
        formats=True,
    ),
    Entry(
        "scale_by_rms_debiased",
        lambda **fmt: adam_tx.scale_by_rms_debiased(**_nu_only(fmt)),
        formats=True,
    ),
    Entry("scale_by_schedule_free", lambda: adam_tx.scale_by_schedule_free(1e-3)),
    Entry(
        "scale_by_trust_ratio",
        lambda: adam_tx.scale_by_trust_ratio(),
        optax=optax.scale_by_trust_ratio,
    ),
    Entry("cautious", lambda: adam_tx.cautious(adam_tx.scale_by_adam())),
    Entry(
        "scale_by_adam",
        lambda **fmt: adam_tx.scale_by_adam(**fmt),
        formats=True,
        optax=optax.scale_by_adam,
    ),
    Entry(
        "scale_by_amsgrad", lambda **fmt: adam_tx.scale_by_amsgrad(**fmt), formats=True
    ),
    Entry(
        "scale_by_belief",
        lambda **fmt: adam_tx.scale_by_belief(**fmt),
        formats=True,
        optax=optax.scale_by_belief,
    ),
    Entry(
        "scale_by_adamax", lambda **fmt: adam_tx.scale_by_adamax(**fmt), formats=True
    ),
    Entry("scale_by_rms", lambda: adam_tx.scale_by_rms(), optax=optax.scale_by_rms),
    Entry("scale_by_adagrad", lambda: adam_tx.scale_by_adagrad()),
    Entry("trace", lambda: adam_tx.trace(0.9), optax=optax.trace),
    Entry("bias_correction", lambda: adam_tx.bias_correction(0.9)),
    Entry("clip", lambda: adam_tx.clip(0.5), optax=optax.clip),
    Entry(
        "clip_by_global_norm",
        lambda: adam_tx.clip_by_global_norm(1.0),
        optax=optax.clip_by_global_norm,
    ),
    Entry("adaptive_grad_clip", lambda: adam_tx.adaptive_grad_clip(0.1)),
    Entry("add_decayed_weights", lambda: adam_tx.add_decayed_weights(1e-2)),
    Entry("scale_by_learning_rate", lambda: adam_tx.scale_by_learning_rate(1e-2)),
    Entry("scale_by_schedule", lambda: adam_tx.scale_by_schedule(lambda t: 0.5)),
]

BY_NAME = {e.name: e for e in CATALOG}

# Storage formats every ``formats`` entry must accept, by name.
import jax.numpy as jnp  # noqa: E402

FORMATS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "stochastic": dict(
        state_format="stochastic", mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16
    ),
    "int8": dict(state_format="int8"),
    "int4": dict(state_format="int4"),
}


def build(entry: Entry, fmt: str = "fp32") -> optax.GradientTransformation:
    return entry.make(**FORMATS[fmt]) if entry.formats else entry.make()
