"""Execute every notebooks/*.ipynb top to bottom: a failing cell fails the test.

Notebooks are discovered by glob, so new ones (06 diagnostics, 07 memory, ...)
are checked as soon as they land. Each runs in a fresh ``python3`` kernel of
this interpreter, from the notebooks/ directory, with a per-cell timeout.
"""

from __future__ import annotations

import os
import pathlib
import resource
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted(
    (pathlib.Path(__file__).parent.parent / "notebooks").glob("[!_]*.ipynb")
)
CELL_TIMEOUT_S = 180


def _kernel_env() -> dict[str, str]:
    env = dict(os.environ)
    # The kernel must import the same packages as this interpreter, and must not
    # open a display window.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _execute(path: pathlib.Path) -> tuple[float, float]:
    # jupyter_client replaces a kernelspec's "python" by sys.executable, so the
    # python3 kernel runs in this interpreter's environment.
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    client.execute(env=_kernel_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, once reaped
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return time.perf_counter() - start, cpu


def test_notebooks_found():
    names = {p.name for p in NOTEBOOKS}
    for required in (
        "01_toy_quadratic.ipynb",
        "02_logistic_regression_adamw.ipynb",
        "03_schedules.ipynb",
        "04_optimizer_comparison.ipynb",
        "05_lr_range_test.ipynb",
        "08_flax_training.ipynb",
    ):
        assert required in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_valid_notebook(path):
    # Committed with small stored outputs, which the docs show
    # (notebooks/_execute.py; tests/test_docs.py checks their size). This test
    # executes the cells afresh and ignores what is stored.
    nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    wall, cpu = _execute(path)
    print(f"{path.name}: wall {wall:.1f} s, kernel CPU {cpu:.1f} s")
