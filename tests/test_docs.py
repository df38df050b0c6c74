"""The documentation site builds with ``mkdocs build --strict`` (warnings fail)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs and mkdocstrings[python] are in the test extras",
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
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from _doctest_fences import fence_doctests
    finally:
        sys.path.pop(0)
    text = "Summary.\n\n    >>> f(1)\n    [0.0, 1.0]\n\nAfter."
    assert fence_doctests(text) == (
        "Summary.\n\n    ```pycon\n    >>> f(1)\n    [0.0, 1.0]\n    ```\n\nAfter."
    )


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
