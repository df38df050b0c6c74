"""Record torch learning-rate schedulers as golden vectors for adam_tx.schedules.

Run with torch installed, from the repository root:

    python tests/golden/make_schedules.py

Each configuration in ``CONFIGS`` builds a real torch scheduler on a dummy
optimizer and records ``param_groups[0]["lr"]`` (and ``betas[0]`` for
``OneCycleLR`` on Adam) before each optimizer step, so entry ``t`` is the value
used by update ``t`` (optax's count convention: 0 is the first update). The
configurations are stored in the npz as JSON next to the values, together with
the adam_tx schedule each one should equal (``ours``: function name, kwargs).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).with_name("schedules.npz")


def _one_cycle(name, total, max_lr, **kw):
    ours_kw = {
        k: kw[k] for k in ("pct_start", "anneal_strategy", "three_phase") if k in kw
    }
    lr_kw = {k: kw[k] for k in ("div_factor", "final_div_factor") if k in kw}
    mom_kw = {k: kw[k] for k in ("base_momentum", "max_momentum") if k in kw}
    return {
        "name": name,
        "torch": "OneCycleLR",
        "kwargs": {"max_lr": max_lr, "total_steps": total, **kw},
        "steps": total,
        "ours": [
            "one_cycle",
            {"total_steps": total, "max_value": max_lr, **ours_kw, **lr_kw},
        ],
        "ours_momentum": [
            "one_cycle_momentum",
            {"total_steps": total, **ours_kw, **mom_kw},
        ],
    }


CONFIGS: list[dict] = [
    _one_cycle("onecycle_cos_2phase", 100, 0.01),
    _one_cycle(
        "onecycle_linear_2phase",
        57,
        0.1,
        pct_start=0.25,
        anneal_strategy="linear",
        div_factor=10.0,
        final_div_factor=100.0,
    ),
    _one_cycle(
        "onecycle_cos_3phase",
        80,
        1e-3,
        pct_start=0.35,
        three_phase=True,
        base_momentum=0.8,
        max_momentum=0.9,
    ),
    _one_cycle(
        "onecycle_linear_3phase",
        33,
        3e-4,
        pct_start=0.45,
        anneal_strategy="linear",
        three_phase=True,
    ),
    _one_cycle("onecycle_cos_tiny", 3, 0.5, pct_start=0.3),
    {
        "name": "cosine_annealing",
        "torch": "CosineAnnealingLR",
        "lr": 0.1,
        "kwargs": {"T_max": 50, "eta_min": 1e-4},
        "steps": 51,
        "ours": ["cosine_decay", {"init_value": 0.1, "decay_steps": 50, "alpha": 1e-3}],
    },
    {
        "name": "cosine_annealing_zero",
        "torch": "CosineAnnealingLR",
        "lr": 0.03,
        "kwargs": {"T_max": 30},
        "steps": 31,
        "ours": ["cosine_decay", {"init_value": 0.03, "decay_steps": 30}],
    },
    {
        "name": "step_lr",
        "torch": "StepLR",
        "lr": 0.3,
        "kwargs": {"step_size": 7, "gamma": 0.5},
        "steps": 40,
        "ours": ["step_decay", {"init_value": 0.3, "step_size": 7, "factor": 0.5}],
    },
    {
        "name": "multistep_lr",
        "torch": "MultiStepLR",
        "lr": 1.0,
        "kwargs": {"milestones": [5, 12, 30], "gamma": 0.1},
        "steps": 40,
        "ours": [
            "step_decay",
            {"init_value": 1.0, "milestones": [5, 12, 30], "factor": 0.1},
        ],
    },
    {
        "name": "linear_lr_up",
        "torch": "LinearLR",
        "lr": 0.02,
        "kwargs": {"start_factor": 0.25, "end_factor": 1.0, "total_iters": 10},
        "steps": 20,
        "ours": [
            "linear",
            {"init_value": 0.005, "end_value": 0.02, "transition_steps": 10},
        ],
    },
    {
        "name": "linear_lr_down",
        "torch": "LinearLR",
        "lr": 0.5,
        "kwargs": {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 15},
        "steps": 25,
        "ours": [
            "linear",
            {"init_value": 0.5, "end_value": 0.05, "transition_steps": 15},
        ],
    },
    {
        "name": "exponential_lr",
        "torch": "ExponentialLR",
        "lr": 0.05,
        "kwargs": {"gamma": 0.95},
        "steps": 60,
        "ours": [
            "exponential_decay",
            {"init_value": 0.05, "transition_steps": 1, "decay_rate": 0.95},
        ],
    },
]


def torch_values(config: dict) -> dict[str, np.ndarray]:
    """Step the torch scheduler of ``config``; return float64 ``lr`` (and ``b1``)."""
    import warnings

    import torch

    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    if config["torch"] == "OneCycleLR":
        optimizer = torch.optim.Adam([param], lr=1.0)
    else:
        optimizer = torch.optim.SGD([param], lr=config["lr"])
    cls = getattr(torch.optim.lr_scheduler, config["torch"])
    scheduler = cls(optimizer, **config["kwargs"])
    lr, b1 = [], []
    for _ in range(config["steps"]):
        group = optimizer.param_groups[0]
        lr.append(float(group["lr"]))
        if config["torch"] == "OneCycleLR":
            b1.append(float(group["betas"][0]))
        # No optimizer.step(): the parameter has no gradient, and only the
        # schedule is wanted. Silence torch's warning about the call order.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()
    out = {"lr": np.asarray(lr, dtype=np.float64)}
    if b1:
        out["b1"] = np.asarray(b1, dtype=np.float64)
    return out


def main() -> None:
    import torch

    arrays: dict[str, np.ndarray] = {
        "configs": np.asarray(json.dumps(CONFIGS)),
        "torch_version": np.asarray(torch.__version__),
    }
    for config in CONFIGS:
        for key, values in torch_values(config).items():
            arrays[f"{config['name']}/{key}"] = values
    np.savez(OUT, **arrays)
    print(f"wrote {len(arrays) - 2} vectors to {OUT}")


if __name__ == "__main__":
    main()
