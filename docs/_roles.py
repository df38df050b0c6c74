"""Griffe extension for the docs build: turn Sphinx roles into links.

adam_tx docstrings name other objects with Sphinx roles (``:func:`chain```,
``:class:`~adam_tx.grouping.Layout```, ``:mod:`adam_tx.rounding```).
mkdocstrings renders Markdown, where such a role would show as literal
``:func:`` text. Once the package is loaded, each role is resolved the way
Sphinx would (the object's own scope, then its module, then ``adam_tx``) and
rewritten into an optional autorefs reference: the rendered page links to the
object's API entry where it has one, and shows the name as plain code where it
has none (private helpers, objects outside the package). Nothing is left as
role text, and no unresolved reference warns.
"""

from __future__ import annotations

import html
import re

import griffe

ROLE = re.compile(
    r":(?:py:)?(?P<kind>func|meth|class|mod|data|attr|obj|exc|const|type)"
    r":`(?P<target>[^`]+)`"
)
FENCE = re.compile(r"^\s*(```|~~~)")
ROOT = "adam_tx"


def _lookup(collection: griffe.ModulesCollection, path: str) -> griffe.Object | None:
    try:
        obj = collection.get_member(path)
    except (KeyError, ValueError, griffe.AliasResolutionError):
        return None
    if isinstance(obj, griffe.Alias):
        try:
            obj = obj.final_target
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return obj


def resolve(
    target: str, scope: griffe.Object, collection: griffe.ModulesCollection
) -> str | None:
    """The canonical path of a role's target seen from ``scope``, or None."""
    target = target.lstrip(".")
    candidates = []
    if target.startswith(ROOT + ".") or target == ROOT:
        candidates.append(target)
    else:
        node: griffe.Object | None = scope
        while node is not None:
            candidates.append(f"{node.path}.{target}")
            node = node.parent
        candidates += [f"{ROOT}.{target}", f"{ROOT}.variants.{target}"]
    for path in candidates:
        obj = _lookup(collection, path)
        if obj is not None and obj.path.split(".")[0] == ROOT:
            return obj.path
    return None


def rewrite_roles(
    text: str,
    resolve_target=lambda target: None,
) -> tuple[str, int]:
    """Rewrite every role in ``text`` (outside code fences).

    ``resolve_target`` maps a role's target to the identifier to link to, or
    None when there is nothing to link to. Returns the new text and the
    number of roles rewritten.
    """
    count = 0

    def replace(match: re.Match) -> str:
        nonlocal count
        count += 1
        raw = match["target"].strip()
        shown = raw.lstrip("~.")
        if raw.startswith("~"):
            shown = shown.rsplit(".", 1)[-1]
        identifier = resolve_target(raw.lstrip("~"))
        if identifier is None:
            return f"`{shown}`"
        return (
            f'<autoref identifier="{html.escape(identifier)}" optional>'
            f"<code>{html.escape(shown)}</code></autoref>"
        )

    out, in_fence = [], False
    for line in text.splitlines(keepends=True):
        if FENCE.match(line):
            in_fence = not in_fence
        out.append(line if in_fence else ROLE.sub(replace, line))
    return "".join(out), count


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package."""

    def __init__(self) -> None:
        super().__init__()
        self.converted = 0

    def _walk(self, obj: griffe.Object, collection, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value, n = rewrite_roles(
                obj.docstring.value,
                lambda target: resolve(target, obj, collection),
            )
            self.converted += n
        for member in obj.members.values():
            if not isinstance(member, griffe.Alias):
                self._walk(member, collection, seen)

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs):
        if pkg.name == ROOT:
            self._walk(pkg, loader.modules_collection, set())
