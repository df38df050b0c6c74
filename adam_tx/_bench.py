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

Nothing is written unless asked: ``--json PATH``, ``--markdown PATH`` (the
step-speed section of that file is replaced, other sections are kept).

Memory floor for fp32 AdamW with clipping: read p, g, m, v, write p, m, v
(28 B/param) plus one read of g for the norm (4 B/param).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adam_tx

LR, WD, MAX_NORM, WARMUP, TOTAL = 1e-3, 0.01, 1.0, 100, 10_000
SECTION = "## Step speed: one pass over memory (issue 5)"
BEGIN, END = "<!-- step_speed:begin -->", "<!-- step_speed:end -->"


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


class JaxContender:
    """A jitted, donated step of one optax-style optimizer."""

    def __init__(
        self, tx: optax.GradientTransformation, sizes: list[int], seed: int = 0
    ) -> None:
        rng = np.random.default_rng(seed)
        self.params = {
            f"p{i:04d}": jnp.asarray(rng.standard_normal(n, np.float32))
            for i, n in enumerate(sizes)
        }
        self.grads = {
            k: jnp.asarray(1e-3 * rng.standard_normal(v.shape[0], np.float32))
            for k, v in self.params.items()
        }
        self.state = tx.init(self.params)

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

    def step(self) -> None:
        self.params, self.state = self.compiled(self.params, self.state, self.grads)
        jax.block_until_ready((self.params, self.state))


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
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(warmup):
        for c in contenders.values():
            c.step()
    for _ in range(steps):  # interleaved: noise hits every contender alike
        for name, c in contenders.items():
            start = time.perf_counter()
            c.step()
            times[name].append(time.perf_counter() - start)
    out: dict[str, Any] = {"size": size, "leaves": leaves, "steps": steps}
    out["results"] = {}
    for name, c in contenders.items():
        med = statistics.median(times[name])
        out["results"][name] = {
            "step_ms": 1e3 * med,
            "compile_s": c.compile_s,
            "gb_per_s_at_floor": 32 * size / med / 1e9,
        }
    return out


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


def write_markdown(path: pathlib.Path, table: str, command: str) -> None:
    """Replace this benchmark's table in ``path``, leaving other sections."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"{BEGIN}\nCommand: `{command}`; {stamp}; {platform.machine()} "
        f"{jax.device_count()}x {jax.devices()[0].platform}, jax {jax.__version__}, "
        f"optax {optax.__version__}. Medians of interleaved steps.\n\n{table}\n{END}"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    elif SECTION in text:
        head, rest = text.split(SECTION, 1)
        text = head + SECTION + "\n\n" + block + "\n" + rest
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
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
        write_markdown(args.markdown, table, " ".join([command, *(argv or [])]))
    return cases
