"""Record torch.optim.RAdam and schedulefree.AdamWScheduleFree trajectories as
golden vectors for ``adam_tx.variants``.

Run with torch and schedulefree installed, from the repository root:

    python tests/golden/make_variants.py

A seeded NumPy generator fixes the problem: three parameters (a vector, a
matrix, a scalar), their initial values and one gradient per step for
``STEPS`` steps, with a per-step random scale. The gradients do not depend on
the parameters, so a rounding difference in one step is never amplified by
later ones. Each case runs the real optimizer (``foreach=False``) in float32
and float64 and records the parameters after every step, and for the
schedule-free case also the evaluation parameters ``x`` after the last step
(``optimizer.eval()``). Everything goes to ``variants.npz``: the problem under
``problem/...``, the cases as JSON under ``cases`` and the trajectories under
``traj/<case>/<dtype>/<leaf>`` (shape ``(STEPS, *leaf_shape)``).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).with_name("variants.npz")
SEED = 20261202
STEPS = 30
SHAPES = {"bias": (8,), "kernel": (4, 8), "scale": ()}
DTYPES = ("float32", "float64")

CASES = [
    {"name": "radam", "torch": "RAdam", "kwargs": {"lr": 1e-2}},
    {"name": "radam_b2", "torch": "RAdam", "kwargs": {"lr": 1e-2, "betas": [0.8, 0.9]}},
    {"name": "radam_l2", "torch": "RAdam",
     "kwargs": {"lr": 1e-2, "betas": [0.9, 0.9], "weight_decay": 0.1}},
    {"name": "radam_decoupled", "torch": "RAdam",
     "kwargs": {"lr": 1e-2, "betas": [0.9, 0.9], "weight_decay": 0.1,
                "decoupled_weight_decay": True}},
    {"name": "sf_adamw", "torch": "AdamWScheduleFree", "kwargs": {"lr": 0.05}},
    {"name": "sf_adamw_wd", "torch": "AdamWScheduleFree",
     "kwargs": {"lr": 0.05, "betas": [0.5, 0.99], "weight_decay": 0.1}},
]  # fmt: skip


def problem() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    out = {}
    scales = rng.uniform(0.1, 3.0, size=STEPS)
    for name, shape in SHAPES.items():
        out[f"problem/init/{name}"] = rng.normal(size=shape)
        grads = rng.normal(size=(STEPS, *shape))
        out[f"problem/grads/{name}"] = grads * scales.reshape((-1,) + (1,) * len(shape))
    return out


def run(case: dict, prob: dict, dtype: str) -> dict[str, np.ndarray]:
    import torch

    tdtype = getattr(torch, dtype)
    params = {
        n: torch.tensor(prob[f"problem/init/{n}"], dtype=tdtype, requires_grad=True)
        for n in SHAPES
    }
    kwargs = dict(case["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    if case["torch"] == "RAdam":
        opt = torch.optim.RAdam(list(params.values()), foreach=False, **kwargs)
    else:
        import schedulefree

        opt = schedulefree.AdamWScheduleFree(
            list(params.values()), foreach=False, **kwargs
        )
        opt.train()
    traj = {n: [] for n in SHAPES}
    for t in range(STEPS):
        for n, p in params.items():
            p.grad = torch.tensor(prob[f"problem/grads/{n}"][t], dtype=tdtype)
        opt.step()
        for n, p in params.items():
            traj[n].append(p.detach().numpy().copy())
    out = {f"traj/{case['name']}/{dtype}/{n}": np.stack(v) for n, v in traj.items()}
    if case["torch"] != "RAdam":
        opt.eval()
        for n, p in params.items():
            out[f"eval/{case['name']}/{dtype}/{n}"] = p.detach().numpy().copy()
    return out


def main() -> None:
    prob = problem()
    out = dict(prob)
    for case in CASES:
        for dtype in DTYPES:
            out.update(run(case, prob, dtype))
    out["cases"] = np.array(json.dumps(CASES))
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({len(out)} arrays)")


if __name__ == "__main__":
    main()
