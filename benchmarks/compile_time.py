"""Trace, lower and compile time of one AdamW step with many parameter leaves.

Contenders: ``chain(clip_by_global_norm(1), adamw)`` ("plain"), the same with
``track_stats()`` last ("stats"), and wrapped in
``loss_scaling(skip_nonfinite(...))`` ("guards"). Each is jitted fresh; the
three phases are timed once (compilation is not repeated, since XLA caches).

Usage::

    python benchmarks/compile_time.py               # 200 leaves of 64 x 32
    python benchmarks/compile_time.py --leaves 50
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import adam_tx


def contenders():
    base = lambda *extra: adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3), *extra
    )
    return {
        "plain": lambda: base(),
        "stats": lambda: base(adam_tx.track_stats()),
        "guards": lambda: adam_tx.loss_scaling(adam_tx.skip_nonfinite(base())),
    }


def measure(tx, leaves: int, shape=(64, 32)) -> dict[str, float]:
    params = {f"w{i}": jnp.ones(shape) for i in range(leaves)}

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return adam_tx.apply_updates(p, u), s

    start = time.perf_counter()
    traced = jax.jit(step, donate_argnums=(0, 1)).trace(params, tx.init(params), params)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    lowered.compile()
    done = time.perf_counter()
    return {
        "trace": traced_at - start,
        "lower": lowered_at - traced_at,
        "compile": done - lowered_at,
    }


def main(argv=None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=200)
    args = parser.parse_args(argv)
    out = {name: measure(make(), args.leaves) for name, make in contenders().items()}
    print(f"leaves={args.leaves} (64 x 32 each), jax {jax.__version__}, seconds")
    print("| contender | trace | lower | compile |")
    print("|---|---|---|---|")
    for name, t in out.items():
        print(f"| {name} | {t['trace']:.2f} | {t['lower']:.2f} | {t['compile']:.2f} |")
    return out


if __name__ == "__main__":
    main()
