"""AdamW step bandwidth on an accelerator: adam_tx vs optax vs torch fused.

Measures the device's copy bandwidth first, then one AdamW step (no clipping)
of each contender at GPT-2-124M-shaped leaves and at 1B parameters, with
float32 and bfloat16 parameters/gradients/state, and prints the effective
bandwidth ``bytes_per_param * params / step_time`` as a fraction of the copy
bandwidth. AdamW reads p, g, m, v and writes p, m, v: 7 arrays, so 28 B/param
in float32 and 14 B/param in bfloat16.

Then the cost of step statistics on the first case in float32:
``chain(clip_by_global_norm, adamw)`` without and with ``track_stats()``, in
the backend's layout (norms summed inside the update loop) and in the CPU
layout forced (a read-only pre-pass).

Sized to finish in under 5 minutes on one NVIDIA H200. ``--tiny`` shrinks
every size so that the script runs on a CPU in seconds (the test suite runs it
that way). Writes ``gpu_step.md`` and ``gpu_step.json`` to ``$OUT`` (or
``--out``) when set.

    python benchmarks/gpu_step.py            # on the GPU machine
    python benchmarks/gpu_step.py --tiny     # anywhere
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import statistics
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import adam_tx  # noqa: E402
from adam_tx import _fusion  # noqa: E402

LR, WD = 1e-3, 0.01


def gpt2_shapes(vocab=50257, ctx=1024, d=768, layers=12) -> list[tuple[int, ...]]:
    """Leaf shapes of GPT-2 small (124M parameters with the default sizes)."""
    block = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,)]
    block += [(d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return [(vocab, d), (ctx, d)] + block * layers + [(d,), (d,)]


def uniform_shapes(total: int, leaves: int) -> list[tuple[int, ...]]:
    return [(total // leaves,)] * leaves


def _median_time(step, steps: int, sync) -> float:
    step()
    step()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_bandwidth(n: int, steps: int) -> float:
    """Bytes per second of ``y = x * 1`` over ``n`` float32 (read + write)."""
    x = jnp.ones((n,), jnp.float32)
    fn = jax.jit(lambda x: x * 1.0)
    out = {}

    def step():
        out["y"] = fn(x)

    t = _median_time(step, steps, lambda: jax.block_until_ready(out["y"]))
    return 8 * n / t


def jax_step_time(tx, shapes, dtype, steps: int) -> float:
    key = jax.random.PRNGKey(0)
    params = [jax.random.normal(key, s, dtype) for s in shapes]
    grads = [1e-3 * jnp.ones(s, dtype) for s in shapes]
    box = {"p": params, "s": tx.init(params)}

    def update(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    fn = jax.jit(update, donate_argnums=(0, 1))

    def step():
        box["p"], box["s"] = fn(box["p"], box["s"], grads)

    t = _median_time(step, steps, lambda: jax.block_until_ready(box["p"]))
    box.clear()  # free the device buffers before the next contender
    gc.collect()
    return t


def torch_step_time(torch, shapes, dtype, steps: int, device) -> float:
    tdtype = {jnp.float32: torch.float32, jnp.bfloat16: torch.bfloat16}[dtype]
    params = [torch.randn(s, dtype=tdtype, device=device) for s in shapes]
    for p in params:
        p.grad = 1e-3 * torch.ones_like(p)
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD, fused=True)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t = _median_time(opt.step, steps, sync)
    del opt, params
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return t


def contenders():
    # State follows the parameter dtype in every contender (torch's fused
    # AdamW keeps its state in the parameter dtype).
    return {
        "adam_tx": lambda: adam_tx.adamw(LR, weight_decay=WD),
        "optax": lambda: optax.adamw(LR, weight_decay=WD),
    }


def stats_contenders():
    """AdamW + clipping without and with ``track_stats`` (both layouts)."""
    base = lambda *extra: (
        lambda: adam_tx.chain(
            adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(LR, weight_decay=WD), *extra
        )
    )
    return {
        "clip+adamw": (base(), None),
        # The backend's own layout: the sums are outputs of the update loop.
        "+track_stats": (base(adam_tx.track_stats()), None),
        # The CPU layout (a read-only pre-pass), forced, for comparison.
        "+track_stats pre-pass": (base(adam_tx.track_stats()), False),
    }


def torch_module():
    try:
        import torch
    except ImportError:
        return None
    return torch


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU-sized smoke run")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=os.environ.get("OUT"))
    args = parser.parse_args(argv)
    steps = args.steps or (3 if args.tiny else 20)
    if args.tiny:
        cases = {
            "gpt2-shaped (tiny)": gpt2_shapes(vocab=101, ctx=16, d=8, layers=2),
            "uniform (tiny)": uniform_shapes(1 << 16, 4),
        }
        copy_n = 1 << 18
    else:
        cases = {
            "gpt2-124M": gpt2_shapes(),
            "1B": uniform_shapes(1 << 30, 8),
        }
        copy_n = 1 << 30
    backend = jax.default_backend()
    torch = torch_module()
    torch_device = None
    if torch is not None:
        torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    bandwidth = copy_bandwidth(copy_n, steps)
    print(
        f"device: {jax.devices()[0].device_kind} ({backend}); "
        f"copy bandwidth {bandwidth / 1e9:.1f} GB/s",
        flush=True,
    )
    rows = []
    for case, shapes in cases.items():
        n = sum(int(jnp.prod(jnp.array(s))) for s in shapes)
        for dtype in (jnp.float32, jnp.bfloat16):
            nbytes = 7 * jnp.dtype(dtype).itemsize * n
            times = {
                name: jax_step_time(make(), shapes, dtype, steps)
                for name, make in contenders().items()
            }
            if torch is not None:
                times["torch_fused"] = torch_step_time(
                    torch, shapes, dtype, steps, torch_device
                )
            for name, t in times.items():
                row = {
                    "case": case,
                    "params": n,
                    "dtype": jnp.dtype(dtype).name,
                    "contender": name,
                    "step_ms": 1e3 * t,
                    "fraction_of_copy": nbytes / t / bandwidth,
                }
                rows.append(row)
                print(
                    f"{case:20s} {row['dtype']:8s} {name:12s} "
                    f"{row['step_ms']:9.3f} ms  {row['fraction_of_copy']:6.1%} of copy",
                    flush=True,
                )
    # Cost of step statistics (issue 3): the first case, float32.
    case, shapes = next(iter(cases.items()))
    n = sum(int(jnp.prod(jnp.array(s))) for s in shapes)
    for name, (make, in_pass) in stats_contenders().items():
        with _fusion.reductions_in_pass(in_pass):
            t = jax_step_time(make(), shapes, jnp.float32, steps)
        row = {
            "case": case,
            "params": n,
            "dtype": "float32",
            "contender": name,
            "step_ms": 1e3 * t,
            "fraction_of_copy": 7 * 4 * n / t / bandwidth,
        }
        rows.append(row)
        print(f"{case:20s} float32  {name:24s} {row['step_ms']:9.3f} ms", flush=True)
    table = ["| case | params | dtype | contender | step ms | fraction of copy bw |"]
    table.append("|---|---|---|---|---|---|")
    for r in rows:
        table.append(
            f"| {r['case']} | {r['params']:,} | {r['dtype']} | {r['contender']} | "
            f"{r['step_ms']:.3f} | {r['fraction_of_copy']:.1%} |"
        )
    header = (
        f"device: {jax.devices()[0].device_kind} ({backend}), copy bandwidth "
        f"{bandwidth / 1e9:.1f} GB/s, jax {jax.__version__}\n\n"
    )
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_step.md").write_text(header + "\n".join(table) + "\n")
        (out / "gpu_step.json").write_text(
            json.dumps({"copy_bandwidth": bandwidth, "rows": rows}, indent=2)
        )
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
