"""Record torch.optim parameter trajectories as golden vectors for adam_tx.

Run with torch installed, from the repository root:

    python tests/golden/make_optimizers.py

The problem is fixed by a seeded NumPy generator: a pytree of four parameters
(a scalar, a vector, a matrix and a 3-d array, at most 64 elements each), an
initial value for each and one gradient per step for ``STEPS`` steps, with a
per-step random scale so that moments see gradients of changing size. The
gradients do not depend on the parameters, so a rounding difference in one step
is never amplified by later ones: the trajectories compare the optimizers, not
the chaos of a loss surface.

Each case in ``CASES`` runs a real ``torch.optim`` optimizer on that problem
with torch's single-tensor implementation (``foreach=False``), in float32 and
in float64, and records the parameters after the steps in ``SNAPSHOTS``. A case
with ``"lr": "schedule"`` sets ``param_groups[0]["lr"]`` from ``lr_schedule``
before each step. The same run with ``foreach=True`` must agree (checked here
and by the live test). Everything is saved to ``optimizers.npz``: the problem,
the cases as JSON and the trajectories under ``traj/<case>/<dtype>/<leaf>``.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).with_name("optimizers.npz")
SEED = 20261128
STEPS = 100
SNAPSHOTS = (1, 2, 3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
SHAPES = {"bias": (8,), "kernel": (4, 8), "scale": (), "conv": (2, 3, 5)}
GRAD_SCALES = {"bias": 0.1, "kernel": 1.0, "scale": 3.0, "conv": 0.01}
DTYPES = ("float32", "float64")
# foreach=True and foreach=False must agree to this relative bound (the metric
# of tests/test_torch_parity.py: max |a - b| / max |b| per leaf).
FOREACH_RTOL = {"float32": 1e-6, "float64": 1e-13}


def lr_schedule(base: float, steps: int = STEPS) -> np.ndarray:
    """A changing learning rate: linear warmup, cosine decay, a drop at 70%."""
    t = np.arange(steps, dtype=np.float64)
    warm = 10
    cos = 0.5 * (1 + np.cos(np.pi * np.clip(t - warm, 0, None) / (steps - warm)))
    lr = np.where(t < warm, (t + 1) / warm, 0.1 + 0.9 * cos)
    return base * np.where(t >= 0.7 * steps, 0.3 * lr, lr)


def case(name, torch_cls, lr, changing_lr=False, **kwargs):
    return {
        "name": name,
        "torch": torch_cls,
        "lr": lr,
        "changing_lr": changing_lr,
        "kwargs": kwargs,
    }


CASES: list[dict] = [
    case("adam", "Adam", 1e-2),
    case("adam_betas_eps", "Adam", 3e-2, betas=(0.8, 0.99), eps=1e-6),
    case("adam_l2", "Adam", 1e-2, weight_decay=0.1),
    case("adam_changing_lr", "Adam", 2e-2, True),
    case("adamw", "AdamW", 1e-2),  # torch's default weight_decay, 1e-2
    case("adamw_wd", "AdamW", 1e-2, weight_decay=0.3),
    case("adamw_changing_lr", "AdamW", 2e-2, True, weight_decay=0.1),
    case("amsgrad", "Adam", 1e-2, amsgrad=True),
    case("amsgrad_l2", "Adam", 1e-2, amsgrad=True, weight_decay=0.05),
    case("adamw_amsgrad", "AdamW", 1e-2, amsgrad=True, weight_decay=0.05),
    case("adamax", "Adamax", 2e-2),
    case("adamax_wd", "Adamax", 2e-2, weight_decay=0.1, betas=(0.8, 0.99)),
    case("rmsprop", "RMSprop", 1e-2),
    case("rmsprop_centered", "RMSprop", 1e-2, centered=True),
    case("rmsprop_momentum", "RMSprop", 1e-3, momentum=0.9),
    case("rmsprop_centered_momentum", "RMSprop", 1e-3, centered=True, momentum=0.9),
    case("rmsprop_wd", "RMSprop", 1e-2, alpha=0.9, eps=1e-6, weight_decay=0.1),
    case("rmsprop_changing_lr", "RMSprop", 1e-2, True, momentum=0.5),
    case("adagrad", "Adagrad", 1e-1),
    case(
        "adagrad_acc_lr_decay",
        "Adagrad",
        1e-1,
        initial_accumulator_value=0.1,
        lr_decay=0.01,
    ),
    case("adagrad_wd", "Adagrad", 1e-1, weight_decay=0.1, eps=1e-6),
    case("sgd", "SGD", 1e-2),
    case("sgd_momentum", "SGD", 1e-2, momentum=0.9),
    case("sgd_nesterov", "SGD", 1e-2, momentum=0.9, nesterov=True),
    case("sgd_dampening", "SGD", 1e-2, momentum=0.9, dampening=0.5),
    case("sgd_wd", "SGD", 1e-2, momentum=0.8, weight_decay=0.1),
    case("sgd_changing_lr", "SGD", 5e-2, True, momentum=0.9, nesterov=True),
    # Recorded to document a convention that differs (torch's momentum decay).
    case("nadam", "NAdam", 1e-2),
]


def make_problem(seed: int = SEED) -> dict:
    """Initial parameters, per-step gradients and the changing learning rate."""
    rng = np.random.default_rng(seed)
    init = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = {}
    for k, s in SHAPES.items():
        size = np.exp(0.5 * rng.standard_normal((STEPS,) + (1,) * len(s)))
        grads[k] = GRAD_SCALES[k] * size * rng.standard_normal((STEPS, *s))
    return {"init": init, "grads": grads, "lr_schedule": lr_schedule(1.0)}


def run_torch(spec: dict, problem: dict, dtype: str, foreach: bool = False) -> dict:
    """Run one case with torch.optim; returns ``{leaf: (len(SNAPSHOTS), *shape)}``."""
    import torch

    tdtype = getattr(torch, dtype)
    params = {
        k: torch.tensor(v, dtype=tdtype, requires_grad=True)
        for k, v in problem["init"].items()
    }
    kwargs = dict(spec["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    opt = getattr(torch.optim, spec["torch"])(
        list(params.values()), lr=spec["lr"], foreach=foreach, **kwargs
    )
    lrs = spec["lr"] * problem["lr_schedule"]
    out = {k: [] for k in params}
    for t in range(STEPS):
        if spec["changing_lr"]:
            opt.param_groups[0]["lr"] = float(lrs[t])
        for k, p in params.items():
            p.grad = torch.tensor(problem["grads"][k][t], dtype=tdtype)
        opt.step()
        if t + 1 in SNAPSHOTS:
            for k, p in params.items():
                out[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


def relative_error(ours: dict, ref: dict) -> float:
    """max over leaves of ``max |a - b| / max |b|`` (the parity metric)."""
    return max(
        float(np.max(np.abs(np.asarray(ours[k], np.float64) - ref[k])))
        / float(np.max(np.abs(ref[k])))
        for k in ref
    )


def main() -> None:
    import torch

    torch.set_num_threads(1)
    problem = make_problem()
    arrays = {
        "cases": np.array(json.dumps(CASES)),
        "snapshots": np.array(SNAPSHOTS),
        "lr_schedule": problem["lr_schedule"],
        "torch_version": np.array(torch.__version__),
    }
    for k in SHAPES:
        arrays[f"init/{k}"] = problem["init"][k]
        arrays[f"grads/{k}"] = problem["grads"][k]
    for spec in CASES:
        for dtype in DTYPES:
            traj = run_torch(spec, problem, dtype)
            fused = run_torch(spec, problem, dtype, foreach=True)
            err = relative_error(fused, traj)
            print(f"{spec['name']:28s} {dtype}: foreach vs single-tensor {err:.2e}")
            assert err <= FOREACH_RTOL[dtype], (spec["name"], dtype, err)
            for k, v in traj.items():
                arrays[f"traj/{spec['name']}/{dtype}/{k}"] = v
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
