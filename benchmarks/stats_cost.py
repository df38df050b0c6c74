"""Cost of step statistics: AdamW step time with ``track_stats`` on vs off.

Every contender takes the same step, ``chain(clip_by_global_norm(1), adamw)``;
"every=k" appends :func:`adam_tx.track_stats` (update and parameter norms
measured on one step in k) and also returns :func:`adam_tx.stats` from the
jitted step, as a training loop that logs them would. "in-pass" is
``track_stats()`` with the norms forced into the update pass (the layout used
on GPU/TPU), to show what it costs on this backend. ``--guards`` adds the plain step
wrapped in ``skip_nonfinite``, ``loss_scaling`` and both (no statistics): the
cost of the non-finite guard and of dynamic loss scaling. Steps are jitted with
parameters and optimizer state donated, the contenders are interleaved (one
step of each in turn, the order rotating, so machine noise hits all alike) and the first
``--warmup`` steps are excluded. Per contender the median step time is
reported, split into steps that measure the norms and steps that do not; the
cost per step of ``every=k`` is ``((k - 1) * median_skip + median_measure) / k``
(a robust mean over a k-step cycle).

Usage::

    python benchmarks/stats_cost.py                 # 16M parameters, 200 steps
    python benchmarks/stats_cost.py --size 1M --steps 40 --every 1 4
    python benchmarks/stats_cost.py --every 1 --guards
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import adam_tx
from adam_tx._engine import fusion

GUARDS = {
    "skip_nonfinite": adam_tx.skip_nonfinite,
    "loss_scaling": adam_tx.loss_scaling,
    "loss_scaling+skip": lambda tx: adam_tx.loss_scaling(adam_tx.skip_nonfinite(tx)),
}


def make_step(every: int | None, in_pass: bool | None = None, guard: str | None = None):
    members = [adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3)]
    if every is not None:
        members.append(adam_tx.track_stats(every=every))
    opt = adam_tx.chain(*members)
    if guard is not None:
        opt = GUARDS[guard](opt)

    def step(params, state, grads):
        with fusion.reductions_in_pass(in_pass):
            updates, state = opt.update(grads, state, params)
        params = adam_tx.apply_updates(params, updates)
        logged = adam_tx.stats(state) if every is not None else {}
        return params, state, logged

    return opt, jax.jit(step, donate_argnums=(0, 1))


def run(
    size: int,
    leaves: int,
    steps: int,
    warmup: int,
    everies,
    in_pass: bool,
    guards: bool = False,
):
    rng = np.random.default_rng(0)
    rows = 1000  # weight matrices of shape (1000, size / (1000 * leaves))
    shape = (rows, size // (rows * leaves))
    make = lambda: {
        f"w{i}": jnp.asarray(rng.normal(size=shape), jnp.float32) for i in range(leaves)
    }
    grads = make()
    specs = {"off": (None, None, 1, None)}
    specs.update({f"every={k}": (k, None, k, None) for k in everies})
    if in_pass:
        specs["in-pass"] = (1, True, 1, None)
    if guards:
        specs.update({name: (None, None, 1, name) for name in GUARDS})
    contenders = {}
    for name, (every, forced, _, guard) in specs.items():
        opt, step = make_step(every, forced, guard)
        params = make()
        contenders[name] = [step, params, opt.init(params)]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(warmup + steps):
        # Rotate who goes first, so that no contender always follows the same one.
        for name in names[i % len(names) :] + names[: i % len(names)]:
            entry = contenders[name]
            step, params, state = entry
            start = time.perf_counter()
            params, state, logged = step(params, state, grads)
            jax.block_until_ready((params, state, logged))
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
            entry[1], entry[2] = params, state
    out = {}
    for name, (_, _, k, _) in specs.items():
        t = times[name]
        # Step i (from 0) measures the norms when i % k == 0.
        due = [(j + warmup) % k == 0 for j in range(len(t))]
        measures = [x for x, d in zip(t, due) if d]
        skips = [x for x, d in zip(t, due) if not d]
        if not measures:
            raise SystemExit(f"{name}: no measuring step in {len(t)} timed steps")
        measure = statistics.median(measures)
        skip = statistics.median(skips) if skips else measure
        out[name] = (measure, skip, ((k - 1) * skip + measure) / k)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="16M", help="parameters, e.g. 16M")
    parser.add_argument("--leaves", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument(
        "--in-pass", action="store_true", help="also time the GPU/TPU layout"
    )
    parser.add_argument(
        "--guards",
        action="store_true",
        help="also time skip_nonfinite / loss_scaling around the plain step",
    )
    args = parser.parse_args()
    scale = {"K": 10**3, "M": 10**6}
    text = args.size.upper()
    size = int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)
    res = run(
        size,
        args.leaves,
        args.steps,
        args.warmup,
        args.every,
        args.in_pass,
        args.guards,
    )
    print(
        f"params={size} leaves={args.leaves} steps={args.steps} "
        f"backend={jax.default_backend()} (medians, ms)"
    )
    base = res["off"][2]
    print("| contender | measuring step | other steps | per step | vs off |")
    print("|---|---|---|---|---|")
    for name, (measure, skip, per_step) in res.items():
        print(
            f"| {name} | {measure * 1e3:.2f} | {skip * 1e3:.2f} | "
            f"{per_step * 1e3:.2f} | {100 * (per_step / base - 1):+.1f}% |"
        )


if __name__ == "__main__":
    main()
