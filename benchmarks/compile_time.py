"""Trace, lower and compile time of one AdamW step with many parameter leaves.

Contenders: ``chain(clip_by_global_norm(1), adamw)`` ("plain", adam_tx's
default per-leaf layout), the same with ``track_stats()`` last ("stats"),
wrapped in ``loss_scaling(skip_nonfinite(...))`` ("guards"), wrapped in
``group_small_leaves`` ("grouped": one flat vector for all the leaves), and
optax's own ``chain(clip_by_global_norm(1), adamw)`` ("optax"). Each is jitted
fresh; ``init`` (where ``group_small_leaves`` plans its layout) and the three
phases of ``jit`` are timed once (compilation is not repeated, since XLA
caches).

Usage::

    python benchmarks/compile_time.py               # 200 leaves of 64 x 32
    python benchmarks/compile_time.py --leaves 10 100 1000 3000 \
        --only plain grouped optax
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import adam_tx


def contenders():
    base = lambda *extra: adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3), *extra
    )
    return {
        "plain": lambda: base(),
        "stats": lambda: base(adam_tx.track_stats()),
        "guards": lambda: adam_tx.loss_scaling(adam_tx.skip_nonfinite(base())),
        "grouped": lambda: adam_tx.group_small_leaves(base()),
        "optax": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3)),
    }


def measure(tx, leaves: int, shape=(64, 32)) -> dict[str, float]:
    params = {f"w{i}": jnp.ones(shape) for i in range(leaves)}

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return adam_tx.apply_updates(p, u), s

    start = time.perf_counter()
    state = tx.init(params)
    init_at = time.perf_counter()
    traced = jax.jit(step, donate_argnums=(0, 1)).trace(params, state, params)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    lowered.compile()
    done = time.perf_counter()
    return {
        "init": init_at - start,
        "trace": traced_at - init_at,
        "lower": lowered_at - traced_at,
        "compile": done - lowered_at,
    }


def main(argv=None) -> dict[int, dict[str, dict[str, float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, nargs="+", default=[200])
    parser.add_argument("--only", nargs="+", choices=sorted(contenders()))
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 32])
    args = parser.parse_args(argv)
    chosen = {k: v for k, v in contenders().items() if k in (args.only or [k])}
    shape = tuple(args.shape)
    print(f"leaves of shape {shape}, jax {jax.__version__}, seconds")
    print("| leaves | contender | init | trace | lower | compile | total |")
    print("|---|---|---|---|---|---|---|")
    out: dict[int, dict[str, dict[str, float]]] = {}
    for leaves in args.leaves:
        out[leaves] = {}
        for name, make in chosen.items():
            t = out[leaves][name] = measure(make(), leaves, shape)
            phases = " | ".join(
                f"{t[k]:.2f}" for k in ("init", "trace", "lower", "compile")
            )
            print(f"| {leaves} | {name} | {phases} | {sum(t.values()):.2f} |")
    return out


if __name__ == "__main__":
    main()
