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
def test_arguments_documented(name, obj):
    # A Google-style ``Args:`` section, rendered by the docs as the argument
    # table, naming every parameter.
    params = [
        ("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "")
        + p.name
        for p in inspect.signature(obj).parameters.values()
    ]
    if not params:
        return
    doc = inspect.getdoc(obj)
    section = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)+)", doc, flags=re.M)
    assert section, f"adam_tx.{name} takes arguments but has no Args: section"
    # An entry may name several parameters: "mu_dtype, nu_dtype: ...".
    entries = re.findall(
        r"^  (\**\w+(?:, \**\w+)*)(?: \(.*?\))?:", section[1], flags=re.M
    )
    named = {n for entry in entries for n in entry.split(", ")}
    missing = [p for p in params if p not in named]
    assert not missing, f"adam_tx.{name}'s Args: section leaves out {missing}"


def _public_classes():
    for name in sorted(adam_tx.__all__):
        obj = getattr(adam_tx, name)
        if inspect.isclass(obj):
            yield name, obj


CLASSES = list(_public_classes())


@pytest.mark.parametrize("name,cls", CLASSES, ids=[n for n, _ in CLASSES])
def test_class_has_its_own_docstring(name, cls):
    # Not the generated "Name(field, ...)" of a NamedTuple: the docs hide an
    # object without a docstring, so it would have no API entry.
    doc = cls.__dict__.get("__doc__")
    assert doc and not doc.startswith(f"{cls.__name__}("), name


@pytest.mark.parametrize("name,obj", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_example_is_collected_as_doctest(name, obj):
    # The example must live in the function's own module, where
    # ``pytest --doctest-modules adam_tx`` finds it.
    module = inspect.getmodule(obj)
    tests = doctest.DocTestFinder().find(module)
    qualname = f"{module.__name__}.{obj.__qualname__}"
    assert any(t.name == qualname and t.examples for t in tests), qualname
