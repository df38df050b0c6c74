"""Fuzz every public factory and schedule with random arguments.

Hypothesis draws, for a random subset of a factory's parameters, values of
every kind: plausible rates, zero, negatives, NaN, infinities, floats beyond
float32, huge integers, strings, None, complex numbers, booleans, arrays of
the wrong shape and schedules (good and bad). Each case must either

* raise ``ValueError`` or ``TypeError`` at construction, with a message that
  names one of the arguments it was given, or
* build, and take 3 steps on a finite problem with finite updates.

No third outcome: no AttributeError, OverflowError or error from inside
tracing, and no silent NaN. The CI profile keeps the run short; set
``HYPOTHESIS_PROFILE=nightly`` for 20x the examples.
"""

from __future__ import annotations

import inspect
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adam_tx

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
settings.register_profile(
    "nightly",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

# Factories that wrap another transformation: fuzzed around adamw.
WRAPPERS = {"skip_nonfinite", "loss_scaling", "group_small_leaves", "debug"}
# Needs two transformations and a step; fuzzed below on its own arguments.
SPECIAL = {"switch", "chain"}


def _factories() -> dict[str, object]:
    out = {}
    for name in adam_tx.__all__:
        obj = getattr(adam_tx, name)
        if isinstance(obj, type) or not callable(obj) or name in SPECIAL:
            continue
        if name in WRAPPERS or name == "track_stats":
            out[name] = obj
            continue
        try:
            made = obj() if _required(obj) == [] else obj(1e-2)
        except Exception:
            continue
        if isinstance(made, optax.GradientTransformation):
            out[name] = obj
    return out


def _required(fn) -> list[str]:
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _schedules() -> dict[str, object]:
    out = {}
    for name in dir(adam_tx.schedules):
        obj = getattr(adam_tx.schedules, name)
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        if obj.__module__ != adam_tx.schedules.__name__:
            continue
        out[name] = obj
    return out


FACTORIES = _factories()
SCHEDULES = _schedules()

VALUES = st.one_of(
    st.floats(1e-6, 1.0),
    st.floats(1.0, 100.0),
    st.integers(0, 1000),
    st.sampled_from(
        [
            0.0,
            -1.0,
            -1e-3,
            float("nan"),
            float("inf"),
            -float("inf"),
            1e300,
            10**400,
            2**31,
            True,
            None,
            "0.1",
            "nearest",
            1 + 2j,
            np.ones(3),
            jnp.float32(0.5),
            np.float64(0.9),
            (0.9, 0.99),
            lambda t: 0.5,
            lambda t: jnp.nan,
            lambda t: -1.0,
            jnp.float32,
            jnp.bfloat16,
        ]
    ),
)

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros(4)}


def _grads(t: int):
    return jax.tree.map(lambda p: jnp.cos(p + t) * 0.1, PARAMS)


def _run(tx) -> None:
    state = tx.init(PARAMS)
    for t in range(3):
        u, state = tx.update(_grads(t), state, PARAMS)
        for leaf in jax.tree.leaves(u):
            assert np.isfinite(np.asarray(leaf)).all(), f"non-finite update {u}"


def _check_outcome(build, names) -> None:
    # An argument that can only be checked against the parameters (a mask's
    # structure) may be refused by the first init/update, naming it.
    try:
        _run(build())
    except (ValueError, TypeError) as err:
        message = str(err)
        assert any(n in message for n in names), (
            f"error names none of {names}: {type(err).__name__}: {message}"
        )


def _wrapped(name, fn, kwargs):
    if name == "track_stats":
        return lambda: adam_tx.chain(adam_tx.adamw(1e-3), fn(**kwargs))
    if name == "debug":
        return lambda: fn.checked(adam_tx.adamw(1e-3), **kwargs)
    return lambda: fn(adam_tx.adamw(1e-3), **kwargs)


def _params_of(name, fn):
    target = fn.checked if name == "debug" else fn
    params = list(inspect.signature(target).parameters.values())
    if name in WRAPPERS:
        params = params[1:]  # the wrapped transformation
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_factory_builds_and_steps_or_names_the_argument(name):
    fn = FACTORIES[name]
    names = _params_of(name, fn)
    if not names:
        pytest.skip(f"{name} takes no arguments")

    @settings(settings.get_profile(PROFILE))
    @given(st.data())
    def run(data):
        chosen = data.draw(
            st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)
        )
        kwargs = {n: data.draw(VALUES, label=n) for n in chosen}
        if name in WRAPPERS or name == "track_stats":
            build = _wrapped(name, fn, kwargs)
        else:
            required = [r for r in _required(fn) if r not in kwargs]
            base = dict.fromkeys(required, 1e-2)
            build = lambda: fn(**base, **kwargs)
        # The error may name another argument the given one conflicts with.
        _check_outcome(build, names)

    run()


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_builds_and_is_finite_or_names_the_argument(name):
    fn = SCHEDULES[name]
    names = _params_of(name, fn)

    @settings(settings.get_profile(PROFILE))
    @given(st.data())
    def run(data):
        kwargs = {}
        for n in names:
            p = inspect.signature(fn).parameters[n]
            if p.default is inspect.Parameter.empty or data.draw(st.booleans()):
                kwargs[n] = data.draw(VALUES, label=n)
        try:
            schedule = fn(**kwargs)
        except (ValueError, TypeError) as err:
            assert any(n in str(err) for n in names), (
                f"error names none of {names}: {type(err).__name__}: {err}"
            )
            return
        for step in (0, 1, 7, 100, 10**6, 2**31 - 1):
            value = schedule(jnp.asarray(step, jnp.int32))
            assert np.isfinite(np.asarray(value)).all(), (name, kwargs, step, value)

    run()
