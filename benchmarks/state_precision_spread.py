"""Seed-to-seed spread of the digits task in ``state_precision.py``.

One digits run per batch order cannot tell a state format's effect from the
trajectory noise of a 99%-accurate MLP; this reruns every format over several
batch orders (same initialisation) and prints mean, std, min and max of the
final held-out loss.

    python benchmarks/state_precision_spread.py --seeds 5 --steps 1500
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

import jax
import numpy as np

import adam_tx


def _load_benchmark():
    path = pathlib.Path(__file__).with_name("state_precision.py")
    spec = importlib.util.spec_from_file_location("state_precision", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["state_precision"] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args(argv)
    sp = _load_benchmark()
    (xt, yt), (xe, ye) = sp.digits_data()
    model = sp.MLP(256)
    params = model.init(jax.random.PRNGKey(0), xt[:1])
    results: dict[str, list[float]] = {fmt: [] for fmt in sp.FORMATS}
    for seed in range(1, args.seeds + 1):
        rng = np.random.default_rng(seed)
        order = [rng.integers(0, len(xt), 64) for _ in range(args.steps)]

        def batches(i, order=order):
            return xt[order[i]], yt[order[i]]

        def eval_fn(p):
            return sp.xent(model.apply(p, xe), ye)

        for fmt, kwargs in sp.FORMATS.items():
            opt = adam_tx.adam(1e-3, **kwargs)
            loss, _, _ = sp.train(model, params, opt, batches, eval_fn, args.steps)
            results[fmt].append(loss)
        print(seed, {f: round(v[-1], 4) for f, v in results.items()}, flush=True)
    for fmt, v in results.items():
        print(
            f"{fmt:8s} mean {np.mean(v):.4f} std {np.std(v, ddof=1):.4f} "
            f"min {min(v):.4f} max {max(v):.4f}"
        )
    return results


if __name__ == "__main__":
    main()
