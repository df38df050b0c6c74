"""Every public function documents itself: formula or reference, and an example.

For each callable in ``adam_tx.__all__`` (functions, not classes or modules)
the docstring must exist, hold a ``>>>`` example (run by pytest's doctest
collection, ``pytest adam_tx``), and give a formula or a reference. Modules
that have not landed in git yet (untracked files in a working tree shared by
several engineers) are left out; in a clean clone every module is checked.
"""

from __future__ import annotations

import doctest
import inspect
import pathlib
import re
import subprocess
import types

import pytest

import adam_tx

ROOT = pathlib.Path(__file__).parent.parent
# Re-exported from optax unchanged: its docstring is optax's.
NOT_OURS = {"apply_updates"}
REFERENCE = re.compile(
    r"References?:|arXiv|\b(19|20)\d\d\b|\bICLR\b|\bICML\b|NeurIPS|torch|optax"
)
FORMULA = re.compile(r"Formula|[^=!<>]=[^=]|<-|←|\*\*|\bsqrt\b")


def _untracked_modules() -> set[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard", "adam_tx"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    if out.returncode != 0:
        return set()
    return {
        "adam_tx." + pathlib.Path(line).with_suffix("").name
        for line in out.stdout.split()
        if line.endswith(".py")
    }


def _public_functions():
    untracked = _untracked_modules()
    for name in sorted(adam_tx.__all__):
        obj = getattr(adam_tx, name)
        if isinstance(obj, types.ModuleType) or inspect.isclass(obj):
            continue
        if not callable(obj) or name in NOT_OURS:
            continue
        if getattr(obj, "__module__", "") in untracked:
            continue
        yield name, obj


FUNCTIONS = list(_public_functions())


def test_enough_functions_checked():
    assert len(FUNCTIONS) >= 30


@pytest.mark.parametrize("name,obj", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_docstring(name, obj):
    doc = inspect.getdoc(obj)
    assert doc, f"adam_tx.{name} has no docstring"
    assert ">>>" in doc, f"adam_tx.{name}'s docstring has no >>> example"
    # The text around the examples, without their source and expected output.
    prose = "".join(
        part for part in doctest.DocTestParser().parse(doc) if isinstance(part, str)
    )
    assert FORMULA.search(prose) or REFERENCE.search(prose), (
        f"adam_tx.{name}'s docstring gives neither a formula nor a reference"
    )


@pytest.mark.parametrize("name,obj", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_example_is_collected_as_doctest(name, obj):
    # The example must live in the function's own module, where
    # ``pytest --doctest-modules adam_tx`` finds it.
    module = inspect.getmodule(obj)
    tests = doctest.DocTestFinder().find(module)
    qualname = f"{module.__name__}.{obj.__qualname__}"
    assert any(t.name == qualname and t.examples for t in tests), qualname
