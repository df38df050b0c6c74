"""MkDocs hook for the docs build: the notebooks, with their stored outputs.

The notebooks live in ``notebooks/``, outside ``docs/``. This hook adds each
``notebooks/[!_]*.ipynb`` to the site's files before the mkdocs-jupyter
plugin looks at them (hence the event priority), so each becomes a page at
``notebooks/<name>/`` showing the outputs stored in the file (the build
executes nothing; ``notebooks/_execute.py`` stores them).

A plotly figure is stored as a ``div`` that needs a global ``Plotly``. The
hook serves ``plotly.min.js`` from the installed ``plotly`` package (nothing
is fetched at build time, nothing vendored in the repository) and loads it
only on the pages that draw a figure.
"""

from __future__ import annotations

import pathlib

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File
from mkdocs.utils import get_relative_url

ROOT = pathlib.Path(__file__).parent.parent
NOTEBOOKS = ROOT / "notebooks"
PLOTLY_JS = "assets/javascripts/plotly.min.js"


def _plotly_js() -> pathlib.Path | None:
    try:
        import plotly
    except ImportError:
        return None
    path = pathlib.Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.exists() else None


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files, config, **kwargs):
    for path in sorted(NOTEBOOKS.glob("[!_]*.ipynb")):
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    js = _plotly_js()
    if js is not None:
        files.append(File.generated(config, PLOTLY_JS, abs_src_path=str(js)))
    return files


def on_post_page(output: str, page, config, **kwargs) -> str:
    if "Plotly.newPlot" not in output:
        return output
    src = get_relative_url(PLOTLY_JS, page.url)
    return output.replace("</head>", f'<script src="{src}"></script>\n</head>', 1)
