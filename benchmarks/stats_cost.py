"""Cost of step statistics: AdamW step time with ``track_stats`` on vs off.

Both contenders take the same step, ``chain(clip_by_global_norm(1), adamw)``;
"on" appends :func:`adam_tx.track_stats` (update and parameter norms, summed as
partials of the fused pass) and also returns :func:`adam_tx.stats` from the
jitted step, as a training loop that logs them would. Steps are jitted with
parameters and optimizer state donated, the contenders are interleaved (one
step of each in turn, so machine noise hits both alike), the first
``--warmup`` steps are excluded and medians are reported.

Usage::

    python benchmarks/stats_cost.py                 # 16M parameters, 30 steps
    python benchmarks/stats_cost.py --size 1M --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import adam_tx


def make_step(with_stats: bool):
    members = [adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3)]
    if with_stats:
        members.append(adam_tx.track_stats())
    opt = adam_tx.chain(*members)

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        params = adam_tx.apply_updates(params, updates)
        logged = adam_tx.stats(state) if with_stats else {}
        return params, state, logged

    return opt, jax.jit(step, donate_argnums=(0, 1))


def run(size: int, leaves: int, steps: int, warmup: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    rows = 1000  # weight matrices of shape (1000, size / (1000 * leaves))
    shape = (rows, size // (rows * leaves))
    make = lambda: {
        f"w{i}": jnp.asarray(rng.normal(size=shape), jnp.float32) for i in range(leaves)
    }
    grads = make()
    contenders = {}
    for name, flag in (("off", False), ("on", True)):
        opt, step = make_step(flag)
        params = make()
        contenders[name] = [step, params, opt.init(params)]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(warmup + steps):
        for name, entry in contenders.items():
            step, params, state = entry
            start = time.perf_counter()
            params, state, logged = step(params, state, grads)
            jax.block_until_ready((params, state, logged))
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
            entry[1], entry[2] = params, state
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="16M", help="parameters, e.g. 16M")
    parser.add_argument("--leaves", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    scale = {"K": 10**3, "M": 10**6}
    text = args.size.upper()
    size = int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)
    med = run(size, args.leaves, args.steps, args.warmup)
    print(f"params={size} leaves={args.leaves} steps={args.steps} (median)")
    print(f"stats off: {med['off'] * 1e3:.2f} ms")
    print(f"stats on:  {med['on'] * 1e3:.2f} ms")
    print(f"overhead:  {100 * (med['on'] / med['off'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
