"""AdamW step bandwidth on an accelerator: adam_tx vs optax vs torch fused.

Measures the device's copy bandwidth first, then one optimizer step of each
contender, jitted with donated buffers, median over ``--steps`` steps:

* model-shaped trees (``benchmarks/shapes.py``): a 12-layer d=384 GPT (148
  leaves), a ResNet-18-ish CNN (62 leaves), GPT-2 small, and 1B parameters in
  8 flat leaves;
* AdamW alone and with global-norm clipping, for adam_tx, optax and torch's
  fused AdamW (``clip_grad_norm_(foreach=True)`` for the clipped one);
* float32 and bfloat16 parameters (state in the parameter dtype, as torch's
  fused AdamW keeps it);
* adam_tx's state formats at float32 parameters: bf16 moments, bf16 with
  stochastic rounding, int8 (and int4 when the package has it).

Each row reports the effective bandwidth, the bytes a step must move (read p,
g and the state; write p and the state, counted from the actual arrays)
divided by the step time, as a fraction of the copy bandwidth. Then the cost
of step statistics (``track_stats``) in both layouts.

Sized to finish in under 5 minutes on one NVIDIA H200. ``--tiny`` shrinks
every size so that the script runs on a CPU in seconds (the test suite runs it
that way). Writes ``gpu_step.md`` (one table) and ``gpu_step.json`` to
``$OUT`` (or ``--out``) when set.

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
from adam_tx._engine import fusion  # noqa: E402

try:  # run as a script (benchmarks/ on sys.path) or imported by the tests
    import shapes as model_shapes  # noqa: E402
except ImportError:  # pragma: no cover
    from benchmarks import shapes as model_shapes  # noqa: E402

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


def jax_step_time(tx, shapes, dtype, steps: int) -> tuple[float, int]:
    """Median step time and the bytes one step must move."""
    key = jax.random.PRNGKey(0)
    params = [jax.random.normal(key, s, dtype) for s in shapes]
    grads = [1e-3 * jnp.ones(s, dtype) for s in shapes]
    box = {"p": params, "s": tx.init(params)}
    p_bytes = sum(x.size * x.dtype.itemsize for x in params)
    moved = 3 * p_bytes + 2 * adam_tx.state_bytes(box["s"])  # p, g in; p out

    def update(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    fn = jax.jit(update, donate_argnums=(0, 1))

    def step():
        box["p"], box["s"] = fn(box["p"], box["s"], grads)

    t = _median_time(step, steps, lambda: jax.block_until_ready(box["p"]))
    box.clear()  # free the device buffers before the next contender
    gc.collect()
    return t, moved


def torch_step_time(torch, shapes, dtype, steps: int, device, clip=False):
    tdtype = {jnp.float32: torch.float32, jnp.bfloat16: torch.bfloat16}[dtype]
    params = [torch.randn(s, dtype=tdtype, device=device) for s in shapes]
    for p in params:
        p.grad = 1e-3 * torch.ones_like(p)
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD, fused=True)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        if clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()

    t = _median_time(step, steps, sync)
    p_bytes = sum(p.numel() * p.element_size() for p in params)
    opt = params = None  # free the device memory before the next contender
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return t, 7 * p_bytes


def contenders(clip: bool):
    # State follows the parameter dtype in every contender (torch's fused
    # AdamW keeps its state in the parameter dtype).
    ours = lambda **kw: adam_tx.adamw(LR, weight_decay=WD, **kw)
    theirs = lambda: optax.adamw(LR, weight_decay=WD)
    if clip:
        return {
            "adam_tx clip": lambda: adam_tx.chain(
                adam_tx.clip_by_global_norm(1.0), ours()
            ),
            "optax clip": lambda: optax.chain(optax.clip_by_global_norm(1.0), theirs()),
        }
    return {"adam_tx": ours, "optax": theirs}


def format_contenders():
    """adam_tx's low-memory state formats, at float32 parameters."""
    bf16 = dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    out = {
        "adam_tx bf16 state": dict(bf16),
        "adam_tx bf16+SR state": dict(bf16, state_format="stochastic"),
        "adam_tx int8 state": dict(state_format="int8"),
    }
    if "int4" in getattr(adam_tx.state_format, "STATE_FORMATS", ()):
        out["adam_tx int4 state"] = dict(state_format="int4")
    return {
        name: (lambda kw=kw: adam_tx.adamw(LR, weight_decay=WD, **kw))
        for name, kw in out.items()
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
            "gpt 2x8 (tiny)": list(model_shapes.gpt(2, 8, 101, 16).values()),
            "flat (tiny)": uniform_shapes(1 << 16, 4),
        }
        copy_n = 1 << 18
    else:
        cases = {
            "gpt 12x384": list(model_shapes.gpt(12, 384).values()),
            "resnet18": list(model_shapes.resnet().values()),
            "gpt2-124M": gpt2_shapes(),
            "1B flat": uniform_shapes(1 << 30, 8),
        }
        copy_n = 1 << 30
    # bf16 parameters on the two largest cases (the last one only, tiny), the
    # state formats on the first and the last.
    bf16_cases = list(cases)[-1:] if args.tiny else list(cases)[-2:]
    format_cases = list(cases)[-1:] if args.tiny else [list(cases)[0], list(cases)[-1]]
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

    def record(case, n, dtype, name, t, moved):
        row = {
            "case": case,
            "params": n,
            "dtype": jnp.dtype(dtype).name,
            "contender": name,
            "step_ms": 1e3 * t,
            "bytes_per_param": moved / n,
            "fraction_of_copy": moved / t / bandwidth,
        }
        rows.append(row)
        print(
            f"{case:18s} {row['dtype']:8s} {name:24s} {row['step_ms']:9.3f} ms "
            f"{row['bytes_per_param']:5.1f} B/param "
            f"{row['fraction_of_copy']:6.1%} of copy",
            flush=True,
        )

    for case, shapes in cases.items():
        n = sum(int(jnp.prod(jnp.array(s))) for s in shapes)
        dtypes = (jnp.float32, jnp.bfloat16) if case in bf16_cases else (jnp.float32,)
        for dtype in dtypes:
            for clip in (False, True):
                for name, make in contenders(clip).items():
                    record(
                        case,
                        n,
                        dtype,
                        name,
                        *jax_step_time(make(), shapes, dtype, steps),
                    )
                if torch is not None:
                    name = "torch fused" + (" clip" if clip else "")
                    t = torch_step_time(torch, shapes, dtype, steps, torch_device, clip)
                    record(case, n, dtype, name, *t)
        if case in format_cases:
            for name, make in format_contenders().items():
                t = jax_step_time(make(), shapes, jnp.float32, steps)
                record(case, n, jnp.float32, name, *t)
    # Cost of step statistics (issue 3): the first case, float32.
    case, shapes = next(iter(cases.items()))
    n = sum(int(jnp.prod(jnp.array(s))) for s in shapes)
    for name, (make, in_pass) in stats_contenders().items():
        with fusion.reductions_in_pass(in_pass):
            t = jax_step_time(make(), shapes, jnp.float32, steps)
        record(case, n, jnp.float32, name, *t)
    table = [
        "| case | params | dtype | contender | step ms | B/param moved "
        "| fraction of copy bw |"
    ]
    table.append("|---|---|---|---|---|---|---|")
    for r in rows:
        table.append(
            f"| {r['case']} | {r['params']:,} | {r['dtype']} | {r['contender']} | "
            f"{r['step_ms']:.3f} | {r['bytes_per_param']:.1f} | "
            f"{r['fraction_of_copy']:.1%} |"
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
