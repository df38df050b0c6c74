"""Griffe extension for the docs build: show docstring doctests as code.

adam_tx docstrings carry bare ``>>>`` examples (run by pytest's doctest
collection). Rendered as Markdown, their output lines (``[0.0, 0.5]``) would
read as reference links, so each run of example lines is wrapped in a
``pycon`` fence before rendering.
"""

from __future__ import annotations

import griffe


def fence_doctests(text: str) -> str:
    """Wrap each ``>>>`` example and its output lines in a ```` ```pycon ```` fence."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
