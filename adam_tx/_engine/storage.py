"""How a moment-keeping alias takes its storage options: declared once.

Every alias that keeps Adam-style moments (``adam``, ``adamw``, the variants)
accepts the same options for how those moments are stored. They are declared
here, in :class:`Storage`, and given to each alias by :func:`stores_moments`,
so no alias lists them again and a new option reaches every alias at once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from adam_tx._engine.typing import DType

F = TypeVar("F", bound=Callable[..., Any])


class Storage(NamedTuple):
    """How an Adam-family alias stores its moments: each field is a keyword of
    every alias that keeps moments, passed on to its ``scale_by_*`` transform
    (see :func:`adam_tx.scale_by_adam`).

    Attributes:
      mu_dtype: storage dtype of the first moment (None: the parameter's).
        Where optax's alias has ``mu_dtype`` (``adam``, ``adamw``, ...) it stays
        in optax's positional place.
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"``, ``"stochastic"`` (bfloat16 storage rounded
        stochastically), ``"int8"`` or ``"int4"`` (blockwise quantized).
      seed: seed of the stochastic rounding key (None: 0). None by default, so
        that ``optax.inject_hyperparams`` does not take it for a rate.
    """

    mu_dtype: DType | None = None
    nu_dtype: DType | None = None
    state_format: str = "nearest"
    seed: int | None = None


def _annotation(field: str) -> Any:
    """A field's annotation as its source text (what the aliases' own
    parameters show under ``from __future__ import annotations``)."""
    ann = Storage.__annotations__[field]
    return getattr(ann, "__forward_arg__", ann)


def stores_moments(alias: F) -> F:
    """Give ``alias`` (which ends in ``**storage``) the fields of
    :class:`Storage` it does not declare itself, as keyword-only parameters.

    What ``inspect.signature``, ``optax.inject_hyperparams`` and ``help`` see
    is the full, explicit signature: no ``**kwargs`` that swallows a typo, and
    an unknown keyword is a ``TypeError`` naming it. ``alias`` receives the
    options the caller gave in ``storage``; those left at None are not passed
    on, so the ``scale_by_*`` transform's own defaults hold.
    """
    sig = inspect.signature(alias)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    if len(params) == len(sig.parameters):
        raise TypeError(f"{alias.__name__} must end in **storage")
    added = [n for n in Storage._fields if n not in sig.parameters]
    params += [
        inspect.Parameter(
            n,
            inspect.Parameter.KEYWORD_ONLY,
            default=Storage._field_defaults[n],
            annotation=_annotation(n),
        )
        for n in added
    ]
    public = sig.replace(parameters=params)

    @functools.wraps(alias)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        public.bind(*args, **kwargs)  # a TypeError naming an unknown keyword
        for n in added:
            if n in kwargs and kwargs[n] is None:
                del kwargs[n]
        return alias(*args, **kwargs)

    wrapper.__signature__ = public  # type: ignore[attr-defined]
    # ``__wrapped__`` stays: inspect.signature stops at ``__signature__``, and
    # typing.get_type_hints resolves the annotations in the alias's module.
    return wrapper  # type: ignore[return-value]
