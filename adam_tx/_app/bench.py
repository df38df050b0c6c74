"""Optimizer step time: adam_tx vs optax vs torch, AdamW + clipping + schedule.

The benchmark behind ``adam-tx bench`` (and ``benchmarks/step_speed.py`` in the
source tree). It lives inside the package so that the command runs this
module and never a file found next to an installed package.

Every contender takes the same step: global-norm clipping (max norm 1), AdamW
(weight decay 0.01) and a warmup-cosine learning rate. JAX steps are jitted
with parameters and optimizer state donated (``donate_argnums``), so buffers
are updated in place as in a real training loop. Contenders are interleaved
(one step of each in turn) so that noise from other work on the machine hits
them alike; the ratios of one run are what to compare. torch contenders run
when torch is installed.

Usage::

    adam-tx bench --quick
    adam-tx bench --sizes 16M --leaves 1 200 --steps 20 --json out.json \
        --markdown BENCHMARKS.md
    adam-tx bench --formats 16M 64M --steps 20

Nothing is written unless asked: ``--json PATH``, ``--markdown PATH`` (the
step-speed section of that file is replaced, other sections are kept).

``--formats`` times plain ``adamw(1e-3)`` (no clipping, no schedule) over 8
leaves of shape (2r, r) per size, with the moments stored as fp32, bf16,
bf16 + stochastic rounding, int8 and int4 codes, against optax's fp32
``adamw(1e-3)``; its table goes to its own section of the markdown file.

Memory floor for fp32 AdamW with clipping: read p, g, m, v, write p, m, v
(28 B/param) plus one read of g for the norm (4 B/param).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adam_tx

LR, WD, MAX_NORM, WARMUP, TOTAL = 1e-3, 0.01, 1.0, 100, 10_000
SECTION = "## Step speed: one pass over memory (issue 5)"
BEGIN, END = "<!-- step_speed:begin -->", "<!-- step_speed:end -->"
FORMATS_SECTION = "## Low-memory state formats: step time at 16M and 64M (issue 14)"
FORMATS_BEGIN = "<!-- step_formats:begin -->"
FORMATS_END = "<!-- step_formats:end -->"
FORMAT_LEAVES = 8


def parse_size(text: str) -> int:
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}
    text = text.strip().upper()
    if text[-1] in scale:
        return int(float(text[:-1]) * scale[text[-1]])
    return int(text)


def leaf_sizes(size: int, leaves: int) -> list[int]:
    """``leaves`` sizes summing to ``size``; the remainder goes to the first."""
    base = size // leaves
    return [base + size - base * leaves] + [base] * (leaves - 1)


def schedule() -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(0.0, LR, WARMUP, TOTAL)


def jax_optimizers() -> dict[str, Callable[[], optax.GradientTransformation]]:
    return {
        "adam_tx": lambda: adam_tx.chain(
            adam_tx.clip_by_global_norm(MAX_NORM),
            adam_tx.adamw(schedule(), weight_decay=WD),
        ),
        "adam_tx_grouped": lambda: adam_tx.group_small_leaves(
            adam_tx.chain(
                adam_tx.clip_by_global_norm(MAX_NORM),
                adam_tx.adamw(schedule(), weight_decay=WD),
            )
        ),
        "optax": lambda: optax.chain(
            optax.clip_by_global_norm(MAX_NORM),
            optax.adamw(schedule(), weight_decay=WD),
        ),
    }


def _shape(size: int | tuple[int, ...]) -> tuple[int, ...]:
    return (size,) if isinstance(size, int) else tuple(size)


class JaxContender:
    """A jitted, donated step of one optax-style optimizer."""

    def __init__(
        self,
        tx: optax.GradientTransformation,
        sizes: Sequence[int | tuple[int, ...]],
        seed: int = 0,
    ) -> None:
        """``sizes``: one entry per leaf, a length or a shape."""
        rng = np.random.default_rng(seed)
        self.params = {
            f"p{i:04d}": jnp.asarray(rng.standard_normal(_shape(n), np.float32))
            for i, n in enumerate(sizes)
        }
        self.first_key = min(self.params)  # jax's first leaf: keys sort
        self.grads = {
            k: jnp.asarray(1e-3 * rng.standard_normal(v.shape, np.float32))
            for k, v in self.params.items()
        }
        self.state = tx.init(self.params)
        self.state_bytes_per_param = adam_tx.state_report(
            self.state, self.params
        ).bytes_per_param

        def step(params, state, grads):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        start = time.perf_counter()
        self.compiled = (
            jax.jit(step, donate_argnums=(0, 1))
            .lower(self.params, self.state, self.grads)
            .compile()
        )
        self.compile_s = time.perf_counter() - start
        analysis = self.compiled.memory_analysis()
        self.temp_bytes = None if analysis is None else analysis.temp_size_in_bytes

    def step(self) -> None:
        """One step, returning when it has run.

        Blocks on one output only, as a training loop blocks on its loss: the
        outputs of one execution become ready together (PJRT; pinned by
        ``tests/test_benchmarks.py``), and blocking on every array of the
        tree walks thousands of buffers from Python (about 10 ms a step at
        1000 leaves on CPU), which torch's synchronous step never pays.
        """
        self.params, self.state = self.compiled(self.params, self.state, self.grads)
        jax.block_until_ready(self.first_output())

    def first_output(self) -> jax.Array:
        """The array the step blocks on: the first parameter leaf, looked up
        by its key (flattening 1000 leaves takes 0.3 ms, inside the timing)."""
        return self.params[self.first_key]


class TorchContender:
    """torch.optim.AdamW (fused or foreach) + clip_grad_norm_ + LambdaLR."""

    def __init__(self, torch: Any, sizes: list[int], mode: str, seed: int = 0) -> None:
        self.torch = torch
        gen = torch.Generator().manual_seed(seed)
        self.params = [torch.randn(n, generator=gen) for n in sizes]
        for p in self.params:
            p.requires_grad_(True)
            p.grad = 1e-3 * torch.randn(p.shape, generator=gen)
        flag = {"fused": True} if mode == "fused" else {"foreach": True}
        self.opt = torch.optim.AdamW(self.params, lr=LR, weight_decay=WD, **flag)
        sched = schedule()
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda t: float(sched(t)) / LR
        )
        self.compile_s = 0.0

    def step(self) -> None:
        self.torch.nn.utils.clip_grad_norm_(self.params, MAX_NORM)
        self.opt.step()
        self.sched.step()


def torch_module() -> Any:
    """torch if it is installed, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def interleaved_medians(
    contenders: Mapping[str, JaxContender | TorchContender], steps: int, warmup: int
) -> dict[str, float]:
    """Median seconds per step of each contender, one step of each in turn."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(warmup):
        for c in contenders.values():
            c.step()
    for _ in range(steps):  # interleaved: noise hits every contender alike
        for name, c in contenders.items():
            start = time.perf_counter()
            c.step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def run_case(
    size: int, leaves: int, steps: int, warmup: int, torch: Any
) -> dict[str, Any]:
    sizes = leaf_sizes(size, leaves)
    contenders: dict[str, JaxContender | TorchContender] = {
        name: JaxContender(make(), sizes) for name, make in jax_optimizers().items()
    }
    if torch is not None:
        for mode in ("fused", "foreach"):
            contenders[f"torch_{mode}"] = TorchContender(torch, sizes, mode)
    medians = interleaved_medians(contenders, steps, warmup)
    out: dict[str, Any] = {
        "size": size,
        "leaves": leaves,
        "steps": steps,
        "results": {},
    }
    for name, c in contenders.items():
        med = medians[name]
        out["results"][name] = {
            "step_ms": 1e3 * med,
            "compile_s": c.compile_s,
            "gb_per_s_at_floor": 32 * size / med / 1e9,
        }
    return out


def format_optimizers() -> dict[str, Callable[[], optax.GradientTransformation]]:
    """Plain AdamW with each way of storing the moments (issue 14)."""
    bf16 = {"mu_dtype": jnp.bfloat16, "nu_dtype": jnp.bfloat16}
    return {
        "adam_tx fp32": lambda: adam_tx.adamw(1e-3),
        "adam_tx bf16": lambda: adam_tx.adamw(1e-3, **bf16),
        "adam_tx bf16+SR": lambda: adam_tx.adamw(1e-3, state_format="stochastic"),
        "adam_tx int8": lambda: adam_tx.adamw(1e-3, state_format="int8"),
        "adam_tx int4": lambda: adam_tx.adamw(1e-3, state_format="int4"),
        "optax fp32": lambda: optax.adamw(1e-3),
    }


def format_shapes(size: int, leaves: int = FORMAT_LEAVES) -> list[tuple[int, int]]:
    """``leaves`` matrices of shape (2r, r) with about ``size`` elements in all.

    16M gives 8 x (2000, 1000), 64M 8 x (4000, 2000). The last axis is kept
    even: int4 codes pack two per byte along it (an odd one stores 8-bit codes).
    """
    cols = max(2, 2 * round(math.sqrt(size / leaves / 2) / 2))
    return [(max(1, size // leaves // cols), cols)] * leaves


def run_formats(size: int, steps: int, warmup: int) -> dict[str, Any]:
    shapes = format_shapes(size)
    contenders: dict[str, JaxContender] = {
        name: JaxContender(make(), shapes) for name, make in format_optimizers().items()
    }
    medians = interleaved_medians(contenders, steps, warmup)
    base = medians["adam_tx fp32"]
    out: dict[str, Any] = {
        "size": sum(math.prod(s) for s in shapes),
        "shapes": shapes,
        "steps": steps,
        "results": {},
    }
    for name, c in contenders.items():
        out["results"][name] = {
            "step_ms": 1e3 * medians[name],
            "vs_adam_tx_fp32": medians[name] / base,
            "state_bytes_per_param": c.state_bytes_per_param,
            "compile_s": c.compile_s,
            "temp_mib": None if c.temp_bytes is None else c.temp_bytes / 2**20,
        }
    return out


def formats_markdown(cases: list[dict[str, Any]]) -> str:
    head = "| params | format | step ms | vs adam_tx fp32 | state bytes/param "
    rows = [head + "| compile s | temp MiB |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        rows_of = len(case["shapes"])
        shape = "x".join(map(str, case["shapes"][0]))
        where = f"{fmt_size(case['size'])} ({rows_of} x {shape})"
        for name, r in case["results"].items():
            temp = "-" if r["temp_mib"] is None else f"{r['temp_mib']:.1f}"
            rows.append(
                f"| {where} | {name} | {r['step_ms']:.2f} "
                f"| {r['vs_adam_tx_fp32']:.2f}x | {r['state_bytes_per_param']:.3f} "
                f"| {r['compile_s']:.2f} | {temp} |"
            )
    return "\n".join(rows)


def fmt_size(n: int) -> str:
    return f"{n / 1e6:g}M"


def markdown(cases: list[dict[str, Any]]) -> str:
    names = list(cases[0]["results"]) if cases else []
    head = ["params", "leaves"]
    head += [f"{n} ms" for n in names]
    head += ["adam_tx / optax", "grouped / optax", "adam_tx / torch_fused"]
    head += [f"{n} compile s" for n in names if n.startswith(("adam_tx", "optax"))]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        r = case["results"]
        cells = [fmt_size(case["size"]), str(case["leaves"])]
        cells += [f"{r[n]['step_ms']:.2f}" for n in names]
        ours = r["adam_tx"]["step_ms"]
        cells.append(f"{ours / r['optax']['step_ms']:.2f}x")
        grouped = r.get("adam_tx_grouped", {}).get("step_ms")
        cells.append(f"{grouped / r['optax']['step_ms']:.2f}x" if grouped else "-")
        cells.append(
            f"{ours / r['torch_fused']['step_ms']:.2f}x" if "torch_fused" in r else "-"
        )
        cells += [
            f"{r[n]['compile_s']:.2f}"
            for n in names
            if n.startswith(("adam_tx", "optax"))
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_markdown(
    path: pathlib.Path,
    table: str,
    command: str,
    load_start: str | None = None,
    *,
    section: str = SECTION,
    begin: str = BEGIN,
    end: str = END,
) -> None:
    """Replace this benchmark's table in ``path``, leaving other sections."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = f"load average (1/5/15 min) {load_start or '?'} at the start, "
    load += f"{load_average()} at the end"
    block = (
        f"{begin}\nCommand: `{command}`; {stamp}; {platform.machine()}, "
        f"{os.cpu_count()} cores ({cpu_model()}), "
        f"{jax.device_count()}x {jax.devices()[0].platform}, jax {jax.__version__}, "
        f"optax {optax.__version__}; {load}. Medians of interleaved steps, "
        f"parameters and state donated.\n\n{table}\n{end}"
    )
    replace_block(path, block, section, begin, end)


def replace_block(
    path: pathlib.Path, block: str, section: str, begin: str, end: str
) -> None:
    """Put ``block`` (which starts with ``begin`` and ends with ``end``) in
    ``path``: in place of the previous one, else at the top of ``section``,
    else in a new ``section`` at the end; the rest of the file is kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    elif section in text:
        head, rest = text.split(section, 1)
        text = head + section + "\n\n" + block + "\n" + rest
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{block}\n"
    path.write_text(text)


def build_parser(
    markdown_default: pathlib.Path | None = None,
) -> argparse.ArgumentParser:
    """The options; ``--markdown`` alone writes to ``markdown_default`` if given,
    else it needs a path."""
    parser = argparse.ArgumentParser(
        prog="adam-tx bench",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sizes", nargs="+", default=["1M", "16M", "64M"], help="total parameters"
    )
    parser.add_argument(
        "--leaves",
        nargs="+",
        type=int,
        default=[1, 200, 1000],
        help="parameter leaves the total is split into",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        help="SIZE:LEAVES pairs (e.g. 16M:200), instead of --sizes x --leaves",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps (>= 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="1M x {1, 200}, 5 steps")
    parser.add_argument(
        "--formats",
        nargs="+",
        metavar="SIZE",
        help="instead: plain adamw with fp32/bf16/bf16+SR/int8/int4 state "
        f"(and optax fp32) over {FORMAT_LEAVES} matrices per SIZE (e.g. 16M 64M)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip torch.optim")
    parser.add_argument("--json", type=pathlib.Path, help="write results here")
    markdown_help = "write the table into this file's step-speed section"
    if markdown_default is None:
        parser.add_argument("--markdown", type=pathlib.Path, help=markdown_help)
    else:
        parser.add_argument(
            "--markdown",
            nargs="?",
            const=markdown_default,
            type=pathlib.Path,
            help=f"{markdown_help} (given alone: {markdown_default})",
        )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    markdown_default: pathlib.Path | None = None,
    command: str = "adam-tx bench",
) -> list[dict[str, Any]]:
    """Run the benchmark with command-line ``argv``; return one dict per case."""
    parser = build_parser(markdown_default)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    load_start = load_average()
    command = " ".join([command, *(argv or [])])
    if args.formats:
        return main_formats(args, load_start, command)
    if args.quick:
        args.sizes, args.leaves, args.steps = ["1M"], [1, 200], 5
    torch = None if args.no_torch else torch_module()
    if args.cases:
        pairs = [c.split(":") for c in args.cases]
        todo = [(parse_size(size), int(leaves)) for size, leaves in pairs]
    else:
        todo = [(parse_size(s), n) for s in args.sizes for n in args.leaves]
    cases = []
    for size, leaves in todo:
        case = run_case(size, leaves, args.steps, args.warmup, torch)
        cases.append(case)
        print(markdown([case]).splitlines()[-1], flush=True)
        if args.json:  # keep what is done if a long run is cut short
            args.json.write_text(json.dumps(cases, indent=2))
    table = markdown(cases)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(cases, indent=2))
    if args.markdown:
        write_markdown(args.markdown, table, command, load_start)
    return cases


def main_formats(
    args: argparse.Namespace, load_start: str, command: str
) -> list[dict[str, Any]]:
    """``--formats``: one :func:`run_formats` per size, its own markdown section."""
    cases = []
    for size in args.formats:
        cases.append(run_formats(parse_size(size), args.steps, args.warmup))
        print("\n".join(formats_markdown(cases[-1:]).splitlines()[2:]), flush=True)
        if args.json:  # keep what is done if a long run is cut short
            args.json.write_text(json.dumps(cases, indent=2))
    table = formats_markdown(cases)
    print(table)
    if args.markdown:
        write_markdown(
            args.markdown,
            table,
            command,
            load_start,
            section=FORMATS_SECTION,
            begin=FORMATS_BEGIN,
            end=FORMATS_END,
        )
    return cases
