"""MkDocs hook for the docs build: LaTeX math becomes MathML at build time.

``pymdownx.arithmatex`` (generic mode) marks ``$...$`` and ``$$...$$`` in the
pages and docstrings as ``<span class="arithmatex">\\(...\\)</span>`` and
``<div class="arithmatex">\\[...\\]</div>``. This hook converts each one to
MathML with the pure-Python ``latex2mathml``, which browsers render natively:
no JavaScript, no fonts to bundle, and the build needs no network. A formula
that latex2mathml cannot express (an environment it does not know, which it
would leave as a stray ``&``) is reported as a warning, so the strict build
fails on it.
"""

from __future__ import annotations

import html
import logging
import re

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.hooks.math")

INLINE = re.compile(r'<span class="arithmatex">\\\((?P<tex>.*?)\\\)</span>', re.S)
BLOCK = re.compile(r'<div class="arithmatex">\\\[(?P<tex>.*?)\\\]</div>', re.S)
# What latex2mathml emits for input it did not understand.
BROKEN = re.compile(r"<mi>&</mi>|<mo />|\\")


def to_mathml(tex: str, display: str) -> str:
    """One formula as a ``<math>`` element; raises ValueError if garbled."""
    mathml = convert(html.unescape(tex).strip(), display=display)
    if BROKEN.search(mathml):
        raise ValueError(f"latex2mathml cannot render {tex!r}")
    return mathml


def render_math(text: str, where: str = "") -> str:
    def sub(display: str):
        def replace(match: re.Match) -> str:
            try:
                return to_mathml(match["tex"], display)
            except Exception as err:  # noqa: BLE001  (any failure: warn)
                log.warning("%s: %s", where, err)
                return match[0]

        return replace

    text = BLOCK.sub(sub("block"), text)
    return INLINE.sub(sub("inline"), text)


def on_page_content(html_text: str, page, **kwargs) -> str:
    if "arithmatex" not in html_text:
        return html_text
    return render_math(html_text, page.file.src_path)
