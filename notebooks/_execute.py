"""Execute the notebooks and store their outputs, kept small, in the files.

The docs show the notebooks with these stored outputs (mkdocs-jupyter, with
no execution at build time), so a reader sees every table and plot without
running anything. After editing a notebook (or ``_build.py`` /
``_build_06.py``, which write them with outputs cleared), run::

    python notebooks/_build.py && python notebooks/_build_06.py
    python notebooks/_execute.py            # all, or name some: 04_*.ipynb

and commit the notebooks. ``tests/test_notebooks.py`` executes them again in
CI and ignores what is stored.

What is kept: text, tables and PNG plots. A plotly figure is kept as its own
MIME type (JupyterLab draws it) plus an HTML ``div`` that draws it with the
plotly.js that the docs build serves from the installed ``plotly`` package
(``docs/_notebooks.py``), so it stays interactive offline and the file does
not carry plotly.js (3.5 MB). Execution timestamps and widget state are
dropped, and an output over ``MAX_OUTPUT_BYTES`` is replaced by a note.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import nbclient
import nbformat

HERE = pathlib.Path(__file__).parent
CELL_TIMEOUT_S = 300
MAX_OUTPUT_BYTES = 200_000
PLOTLY = "application/vnd.plotly.v1+json"
DROP = ("application/javascript", "application/vnd.jupyter.widget-view+json")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def plotly_html(figure: dict) -> str:
    """A ``div`` drawing ``figure`` with a global ``Plotly`` (not bundled)."""
    import plotly.io

    return plotly.io.to_html(
        figure, include_plotlyjs=False, full_html=False, default_height="450px"
    )


def shrink(nb) -> None:
    """Keep each output small; drop what only a live session needs."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data is None:
                continue
            for key in DROP:
                data.pop(key, None)
            if PLOTLY in data:
                data["text/html"] = plotly_html(data[PLOTLY])
            out["metadata"] = {
                k: v for k, v in out.get("metadata", {}).items() if k != "transient"
            }
            size = len(json.dumps(data))
            if size > MAX_OUTPUT_BYTES:
                out["data"] = {
                    "text/plain": f"(output of {size} bytes not stored: "
                    "run the notebook to see it)"
                }


def execute(path: pathlib.Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute(env=_env())
    shrink(nb)
    nbformat.write(nb, path)
    print(f"{path.name}: {path.stat().st_size} bytes with outputs", flush=True)


def main(names: list[str]) -> None:
    paths = [HERE / n for n in names] or sorted(HERE.glob("[!_]*.ipynb"))
    for path in paths:
        execute(path)


if __name__ == "__main__":
    main(sys.argv[1:])
