"""Optimizer step time: adam_tx vs optax vs torch, AdamW + clipping + schedule.

Every contender takes the same step: global-norm clipping (max norm 1), AdamW
(weight decay 0.01) and a warmup-cosine learning rate. JAX steps are jitted
with parameters and optimizer state donated (``donate_argnums``), so buffers
are updated in place as in a real training loop. Contenders are interleaved
(one step of each in turn) so that noise from other work on the machine hits
them alike; the ratios of one run are what to compare.

Usage::

    python benchmarks/step_speed.py --quick --markdown
    python benchmarks/step_speed.py --sizes 16M --leaves 1 200 --steps 20 \
        --json out.json
    python benchmarks/step_speed.py --formats 16M 64M --steps 20 --markdown

``--formats`` times plain ``adamw(1e-3)`` (no clipping, no schedule) over 8
leaves of shape (2r, r) per size, with the moments stored as fp32, bf16,
bf16 + stochastic rounding, int8 and int4 codes, against optax's fp32
``adamw(1e-3)``; its table goes to its own section of BENCHMARKS.md.

The benchmark itself is :mod:`adam_tx._app.bench` (also run as ``adam-tx bench``);
this script runs it from the source tree and writes BENCHMARKS.md when
``--markdown`` is given alone.

Memory floor for fp32 AdamW with clipping: read p, g, m, v, write p, m, v
(28 B/param) plus one read of g for the norm (4 B/param).
"""

from __future__ import annotations

import pathlib

from adam_tx._app.bench import (  # noqa: F401  (this script's names, for tests)
    BEGIN,
    END,
    FORMAT_LEAVES,
    FORMATS_BEGIN,
    FORMATS_END,
    FORMATS_SECTION,
    SECTION,
    JaxContender,
    TorchContender,
    cpu_model,
    fmt_size,
    format_optimizers,
    format_shapes,
    formats_markdown,
    interleaved_medians,
    jax_optimizers,
    leaf_sizes,
    load_average,
    markdown,
    parse_size,
    run_case,
    run_formats,
    schedule,
    torch_module,
    write_markdown,
)
from adam_tx._app.bench import main as _main

BENCHMARKS_MD = pathlib.Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def main(argv=None) -> list[dict]:
    """:func:`adam_tx._app.bench.main`, with ``--markdown`` alone meaning
    BENCHMARKS.md and the command recorded as this script's."""
    return _main(
        argv,
        markdown_default=BENCHMARKS_MD,
        command="python benchmarks/step_speed.py",
    )


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
