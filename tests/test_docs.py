"""The documentation site builds with ``mkdocs build --strict`` (warnings fail)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
# A Sphinx role as Markdown renders it (":func:<code>x</code>") or left raw.
ROLE_TEXT = re.compile(
    r":(?:py:)?(?:func|meth|class|mod|data|attr|obj|exc|const|type):(?:<code>|`)"
)


def _docs_module(name: str):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings") is None
    or importlib.util.find_spec("latex2mathml") is None
    or importlib.util.find_spec("mkdocs_jupyter") is None,
    reason="the docs extra's packages are in the test extras",
)
def test_docs_build_strict(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "", "HOME": str(tmp_path)},
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "WARNING" not in log, log
    assert (tmp_path / "index.html").exists()
    api = (tmp_path / "api" / "optimizers" / "index.html").read_text()
    assert "adamw" in api and "Decoupled Weight Decay" in api
    pages = {
        str(path.relative_to(tmp_path)): path.read_text()
        for path in tmp_path.rglob("*.html")
    }
    # Sphinx roles in docstrings became links or code (docs/_roles.py).
    leftover = {
        name: ROLE_TEXT.findall(text)[:3]
        for name, text in pages.items()
        if ROLE_TEXT.search(text)
    }
    assert not leftover, f"Sphinx role text left in the HTML: {leftover}"
    links = sum(
        text.count('class="autorefs autorefs-internal"') for text in pages.values()
    )
    assert links >= 100, f"only {links} cross-reference links on the site"
    # A role naming a documented object links to its entry.
    transforms = pages["api/transforms/index.html"]
    assert re.search(r'<a class="autorefs[^>]*href="[^"]*#adam_tx[^"]*"', transforms)
    # Every name in adam_tx.__all__ has an API entry: a heading with its id.
    ids = {
        i for text in pages.values() for i in re.findall(r'id="(adam_tx[^"]*)"', text)
    }
    missing = [name for name in _public_names() if not _entry_ids(name) & ids]
    assert not missing, f"no API entry for {missing}"
    # The notebooks are pages showing their stored outputs (docs/_notebooks.py);
    # 04's plotly chart is drawn by the plotly.js the site serves.
    for path in NOTEBOOKS:
        page = pages[f"notebooks/{path.stem}/index.html"]
        assert 'class="jp-OutputArea-child' in page, path.name
    assert pages["notebooks/01_toy_quadratic/index.html"].count("data:image/png") >= 1
    nb04 = pages["notebooks/04_optimizer_comparison/index.html"]
    assert "Plotly.newPlot" in nb04 and "/plotly.min.js" in nb04
    assert "application/vnd.plotly.v1+json" not in nb04
    assert (tmp_path / "assets" / "javascripts" / "plotly.min.js").exists()
    # Math is MathML (docs/_math.py): nothing left for a script to typeset.
    for name, text in pages.items():
        assert 'class="arithmatex"' not in text, name
        prose = re.sub(r"<(pre|code|script)\b.*?</\1>", "", text, flags=re.S)
        assert not re.search(r"\$[^$<>]+\$", prose), f"raw $...$ in {name}"
    for name, boxes in [("moments", 1), ("weight_decay", 1), ("variants", 8)]:
        text = pages[f"{name}/index.html"]
        assert text.count('<math xmlns="http://www.w3.org/1998/Math/MathML"') > 3
        assert text.count('display="block"><mrow><mtable>') >= boxes, name


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[!_]*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_stores_small_outputs(path):
    # The docs show the stored outputs (notebooks/_execute.py writes them):
    # there must be some, and they must stay small.
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any(c.get("outputs") for c in code), (
        f"{path.name} has no stored outputs: run python notebooks/_execute.py"
    )
    assert path.stat().st_size < 600_000, f"{path.name} is over 600 kB"
    for cell in code:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            assert len(json.dumps(data)) <= 200_000, path.name
            if "application/vnd.plotly.v1+json" in data:
                html = "".join(data.get("text/html", ""))
                assert "Plotly.newPlot" in html and len(html) < 100_000, path.name


def _public_names() -> list[str]:
    import adam_tx

    return list(adam_tx.__all__)


def _entry_ids(name: str) -> set[str]:
    """The ids an API entry for ``adam_tx.<name>`` may have: its public path
    or where it is defined (mkdocstrings uses the path it renders it under)."""
    import types

    import adam_tx

    obj = getattr(adam_tx, name)
    if isinstance(obj, types.ModuleType):
        return {obj.__name__}
    qualname = getattr(obj, "__qualname__", name)
    return {f"adam_tx.{name}", f"{getattr(obj, '__module__', '')}.{qualname}"}


def test_markdown_examples_run():
    # The ``pycon`` examples written in the pages (not docstrings: pytest's
    # doctest collection runs those).
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner()
    ran = 0
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for block in re.findall(r"```pycon\n(.*?)```", page.read_text(), flags=re.S):
            test = parser.get_doctest(block, {}, page.name, str(page), 0)
            result = runner.run(test)
            assert result.failed == 0, f"{page}: a pycon example fails"
            ran += result.attempted
    assert ran >= 1


def _table(text: str) -> list[str]:
    start = text.index("| topic | torch.optim | adam_tx |")
    lines = text[start:].splitlines()
    return lines[: next(i for i, line in enumerate(lines) if not line.startswith("|"))]


def test_pytorch_table_matches_readme():
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "pytorch.md").read_text()
    if "| topic | torch.optim | adam_tx |" not in readme:
        pytest.skip("README.md has no 'Coming from PyTorch' table")
    assert _table(page) == _table(readme), (
        "docs/pytorch.md's table is a copy of README.md's 'Coming from PyTorch' "
        "table: update both"
    )


def test_doctest_fences():
    fence_doctests = _docs_module("_doctest_fences").fence_doctests
    text = "Summary.\n\n    >>> f(1)\n    [0.0, 1.0]\n\nAfter."
    assert fence_doctests(text) == (
        "Summary.\n\n    ```pycon\n    >>> f(1)\n    [0.0, 1.0]\n    ```\n\nAfter."
    )


def test_math_becomes_mathml():
    pytest.importorskip("latex2mathml")
    math = _docs_module("_math")
    page = (
        '<p>with <span class="arithmatex">\\(\\hat m_t &lt; 1\\)</span></p>\n'
        '<div class="arithmatex">\\[\\frac{a}{b}\\]</div>'
    )
    out = math.render_math(page)
    assert "arithmatex" not in out
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">' in out
    assert "<mo>&#x0003C;</mo>" in out  # the escaped < reached latex2mathml as <
    assert 'display="block"><mrow><mfrac>' in out
    with pytest.raises(ValueError):
        math.to_mathml(r"\begin{aligned} a &= b \end{aligned}", "block")


def test_roles_rewritten():
    roles = _docs_module("_roles")
    targets = {"chain": "adam_tx._engine.fusion.chain", "adam_tx.grouping.Layout": None}
    text = (
        "See :func:`chain` and :class:`~adam_tx.grouping.Layout`.\n"
        "```python\n:func:`kept` in a fence\n```\n"
    )
    out, count = roles.rewrite_roles(text, targets.get)
    assert count == 2
    assert out == (
        'See <autoref identifier="adam_tx._engine.fusion.chain" optional>'
        "<code>chain</code></autoref> and `Layout`.\n"
        "```python\n:func:`kept` in a fence\n```\n"
    )


def test_roles_resolve_against_the_package():
    griffe = pytest.importorskip("griffe")

    roles = _docs_module("_roles")
    ext = roles.SphinxRoles()
    loader = griffe.GriffeLoader(extensions=griffe.load_extensions(ext))
    pkg = loader.load("adam_tx")
    collection = loader.modules_collection
    alias = pkg["alias"]
    assert roles.resolve("chain", alias, collection) == "adam_tx._engine.fusion.chain"
    assert roles.resolve("adam_tx.adamw", pkg, collection) == "adam_tx.alias.adamw"
    assert roles.resolve("no_such_name", alias, collection) is None
    assert ext.converted > 100
    left = [
        obj.path
        for obj in _objects(pkg)
        if obj.docstring is not None and ROLE_TEXT.search(obj.docstring.value)
    ]
    assert not left, left


def _objects(obj):
    import griffe

    yield obj
    for member in obj.members.values():
        if not isinstance(member, griffe.Alias):
            yield from _objects(member)


def test_getting_started_examples_run():
    text = (ROOT / "docs" / "index.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "docs/index.md", "exec"), namespace)
    # The last block defines a Flax NNX train step: train with it (the first
    # step's learning rate is 0: warmup starts there).
    import jax.numpy as jnp

    x, y = jnp.ones((2, 16)), jnp.zeros((2, 4))
    model, optimizer = namespace["model"], namespace["optimizer"]
    losses = [float(namespace["train_step"](model, optimizer, x, y)) for _ in range(3)]
    assert losses[2] < losses[0]
