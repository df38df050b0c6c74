"""User-facing text teaches in its own words and never cites internal documents.

Users never see the internal design document, so the docs, the README, the
notebooks' markdown and the package's docstrings and comments must state the
fact or the advice itself instead of pointing at it.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent

FORBIDDEN = re.compile(r"design doc(?:ument)?|seed section", re.IGNORECASE)


def find_citations(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every line that cites an internal doc."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if FORBIDDEN.search(line)
    ]


def _text_files() -> list[pathlib.Path]:
    files = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    files += sorted((ROOT / "adam_tx").rglob("*.py"))
    # The scripts that write the notebooks hold their markdown cells' source.
    files += sorted((ROOT / "notebooks").glob("_build*.py"))
    return [path for path in files if path.is_file()]


def _notebooks() -> list[pathlib.Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_find_citations_flags_internal_references():
    text = (
        "A common range for wd is [1e-5, 5e-4].\n"
        "The Design Document recommends wd in [1e-5, 5e-4].\n"
        "See the design doc.\n"
        "As in seed section 4.\n"
        "Kingma & Ba 2015, section 3.\n"
    )
    assert [number for number, _ in find_citations(text)] == [2, 3, 4]
    assert find_citations("Worked example: minimise L(θ) = (θ - 3)².") == []


def test_scans_something():
    assert _notebooks(), "no notebooks/*.ipynb found"
    assert any(path.suffix == ".md" for path in _text_files())
    assert any(path.suffix == ".py" for path in _text_files())


@pytest.mark.parametrize("path", _text_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_citations_in_text(path):
    hits = find_citations(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT)
    assert not hits, "cites an internal document; state the content instead:\n" + (
        "\n".join(f"{rel}:{number}: {line}" for number, line in hits)
    )


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_citations_in_notebook_markdown(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT)
    hits = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        source = cell["source"]
        text = "".join(source) if isinstance(source, list) else source
        hits += [
            f"{rel}: cell {index}, line {number}: {line}"
            for number, line in find_citations(text)
        ]
    assert not hits, "cites an internal document; state the content instead:\n" + (
        "\n".join(hits)
    )
