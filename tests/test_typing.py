"""Every public function in ``adam_tx.__all__`` is fully annotated."""

from __future__ import annotations

import inspect

import pytest

import adam_tx


def _public_functions() -> list[str]:
    names = []
    for name in adam_tx.__all__:
        obj = getattr(adam_tx, name)
        if inspect.isclass(obj) or not callable(obj):
            continue
        if inspect.isfunction(obj) or hasattr(obj, "__signature__"):
            names.append(name)
    return names


def test_there_are_public_functions() -> None:
    assert len(_public_functions()) > 20


@pytest.mark.parametrize("name", _public_functions())
def test_public_function_is_annotated(name: str) -> None:
    sig = inspect.signature(getattr(adam_tx, name))
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.annotation is inspect.Parameter.empty
    ]
    assert not missing, f"{name}: parameters without annotations: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, (
        f"{name}: no return annotation"
    )


def test_type_hints_resolve():
    """``typing.get_type_hints`` works on the public functions, the aliases
    wrapped by ``stores_moments`` included (names resolved in their module)."""
    import typing

    for name in ("adam", "adamw", "nadamw", "lamb", "radam", "cautious_adamw"):
        hints = typing.get_type_hints(getattr(adam_tx, name))
        assert "learning_rate" in hints and "return" in hints, name
