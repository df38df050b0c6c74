"""PyTorch parity: adam_tx optimizers replay torch.optim trajectories.

``tests/golden/optimizers.npz`` holds torch.optim trajectories (written by
``tests/golden/make_optimizers.py`` with torch 2.13.0, single-tensor
implementation) on a fixed problem: four parameters, 100 steps of seeded random
gradients that do not depend on the parameters. Each case is replayed here with
the matching adam_tx optimizer, one jitted step called 100 times, in float32 and
in float64 (``jax.enable_x64``; the optimizer is built inside the context so its
hyperparameters are float64 too). Cases whose learning rate changes every step
are replayed twice: with a schedule, and with ``adam_tx.set_hyperparams``. When
torch is importable, ``test_parity`` also compares against the case run now by
torch, and ``test_live_*`` check that the stored vectors are what torch gives,
so CI (which installs torch) checks against real torch.

The metric, per case: the max over leaves and recorded steps of
``max |ours - torch| / max |torch|``, the error relative to the size of the
parameter leaf. Both libraries round ``p + u`` to the parameter dtype every step
and compute ``u`` with differently ordered operations (torch's ``lerp`` and
``sqrt(v) / sqrt(1 - b2^t)``, our ``b m + (1 - b) g`` and
``sqrt(v / (1 - b2^t))``), so the parameters end up a few ulps apart: the
bounds are in units of the dtype's eps. Measured (``python
tests/test_torch_parity.py`` prints the table): at most 4 eps (4.7e-7) in
float32 and 4 eps (9e-16) in float64, asserted as 8 and 16 eps, inside the
issue's targets of 1e-6 and 1e-12. AdamW is the exception (up to 27 eps,
3.2e-6, in float32; 30 eps, 6.7e-15, in float64): torch multiplies by
``1 - lr * wd`` rounded to the parameter dtype, which biases its trajectory
(see ``DECOUPLED``); asserted as 32 and 64 eps.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adam_tx
from adam_tx._engine.dtypes import hyper_dtype

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
_npz = np.load(GOLDEN / "optimizers.npz")
CASES = {c["name"]: c for c in json.loads(str(_npz["cases"]))}
SNAPSHOTS = tuple(int(s) for s in _npz["snapshots"])
LEAVES = ("bias", "conv", "kernel", "scale")
INIT = {k: _npz[f"init/{k}"] for k in LEAVES}
GRADS = {k: _npz[f"grads/{k}"] for k in LEAVES}
STEPS = GRADS["bias"].shape[0]
LR_SCHEDULE = _npz["lr_schedule"]

HAVE_TORCH = importlib.util.find_spec("torch") is not None

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
# Asserted bounds of the metric above; the targets are 1e-6 and 1e-12.
BOUNDS = {"float32": 8 * EPS32, "float64": 16 * EPS64}
# torch.optim.AdamW multiplies the parameters by ``1 - lr * wd`` rounded to the
# parameter dtype; float32(0.9999) is 1.7e-8 below 0.9999, so over 100 steps
# torch's float32 parameters shrink ~2e-6 (relative) more than the formula says.
# adam_tx adds ``lr * wd * p`` to the update instead, which has no such bias:
# test_adamw_float32_gap_is_torch_rounding pins the gap on that rounding.
DECOUPLED = {"adamw", "adamw_wd", "adamw_changing_lr", "adamw_amsgrad"}
DECOUPLED_BOUNDS = {"float32": 32 * EPS32, "float64": 64 * EPS64}


def _l2(wd, inner):
    """torch's coupled ``weight_decay``: ``g + wd * p`` before the optimizer."""
    return adam_tx.chain(adam_tx.add_decayed_weights(wd), inner)


# The adam_tx optimizer for each torch case, as a function of the learning rate
# (a float or a schedule).
OURS = {
    "adam": lambda lr: adam_tx.adam(lr),
    "adam_betas_eps": lambda lr: adam_tx.adam(lr, b1=0.8, b2=0.99, eps=1e-6),
    "adam_l2": lambda lr: _l2(0.1, adam_tx.adam(lr)),
    "adam_changing_lr": lambda lr: adam_tx.adam(lr),
    "adamw": lambda lr: adam_tx.adamw(lr, weight_decay=1e-2),
    "adamw_wd": lambda lr: adam_tx.adamw(lr, weight_decay=0.3),
    "adamw_changing_lr": lambda lr: adam_tx.adamw(lr, weight_decay=0.1),
    "amsgrad": lambda lr: adam_tx.amsgrad(lr, max_of="nu"),
    "amsgrad_l2": lambda lr: _l2(0.05, adam_tx.amsgrad(lr, max_of="nu")),
    "adamw_amsgrad": lambda lr: adam_tx.amsgrad(lr, max_of="nu", weight_decay=0.05),
    "adamax": lambda lr: adam_tx.adamax(lr),
    "adamax_wd": lambda lr: adam_tx.adamax(lr, 0.8, 0.99, weight_decay=0.1),
    "rmsprop": lambda lr: adam_tx.rmsprop(lr, decay=0.99, eps_in_sqrt=False),
    "rmsprop_centered": lambda lr: adam_tx.rmsprop(
        lr, decay=0.99, eps_in_sqrt=False, centered=True
    ),
    "rmsprop_momentum": lambda lr: adam_tx.rmsprop(
        lr, decay=0.99, eps_in_sqrt=False, momentum=0.9
    ),
    "rmsprop_centered_momentum": lambda lr: adam_tx.rmsprop(
        lr, decay=0.99, eps_in_sqrt=False, centered=True, momentum=0.9
    ),
    "rmsprop_wd": lambda lr: adam_tx.rmsprop(
        lr, decay=0.9, eps=1e-6, eps_in_sqrt=False, weight_decay=0.1
    ),
    "rmsprop_changing_lr": lambda lr: adam_tx.rmsprop(
        lr, decay=0.99, eps_in_sqrt=False, momentum=0.5
    ),
    "adagrad": lambda lr: adam_tx.adagrad(lr),
    "adagrad_acc_lr_decay": lambda lr: adam_tx.adagrad(
        lr, initial_accumulator_value=0.1, lr_decay=0.01
    ),
    "adagrad_wd": lambda lr: adam_tx.adagrad(lr, eps=1e-6, weight_decay=0.1),
    "sgd": lambda lr: adam_tx.sgd(lr),
    "sgd_momentum": lambda lr: adam_tx.sgd(lr, momentum=0.9),
    "sgd_nesterov": lambda lr: adam_tx.sgd(lr, momentum=0.9, nesterov=True),
    "sgd_dampening": lambda lr: adam_tx.sgd(lr, momentum=0.9, dampening=0.5),
    "sgd_wd": lambda lr: adam_tx.sgd(lr, momentum=0.8, weight_decay=0.1),
    "sgd_changing_lr": lambda lr: adam_tx.sgd(lr, momentum=0.9, nesterov=True),
}
# Recorded torch runs that adam_tx deliberately does NOT reproduce (see the
# convention tests at the end).
NOT_PARITY = {"nadam"}
PARITY = sorted(OURS)
CHANGING_LR = sorted(n for n in PARITY if CASES[n]["changing_lr"])


def lr_modes(name):
    return ("schedule", "set_hyperparams") if name in CHANGING_LR else ("constant",)


PARAMS = [
    pytest.param(name, dtype, id=f"{name}-{dtype}")
    for name in PARITY
    for dtype in ("float32", "float64")
]


def run_adam_tx(build, lr, dtype: str, mode: str) -> dict[str, np.ndarray]:
    """100 steps of ``build(lr)`` with a jitted step; parameters at SNAPSHOTS.

    ``mode``: ``"constant"`` (``lr`` a float), ``"schedule"`` (the learning rate
    a schedule: the torch run's value looked up at the step count) or
    ``"set_hyperparams"`` (built with a constant learning rate, replaced in the
    state by :func:`adam_tx.set_hyperparams` inside the jitted step, every step,
    without recompiling).
    """
    with jax.enable_x64(dtype == "float64"):
        lrs = jnp.asarray(lr * LR_SCHEDULE, hyper_dtype())
        if mode == "schedule":
            opt = build(lambda count: lrs[count])
        else:
            opt = build(float(lrs[0]) if mode == "set_hyperparams" else lr)

        traces = []

        @jax.jit
        def step(p, state, g, lr_t):
            traces.append(None)  # runs when (re)traced, not when executed
            if mode == "set_hyperparams":
                state = adam_tx.set_hyperparams(state, learning_rate=lr_t)
            u, state = opt.update(g, state, p)
            return adam_tx.apply_updates(p, u), state

        params = {k: jnp.asarray(v, dtype) for k, v in INIT.items()}
        state = opt.init(params)
        out = {k: [] for k in LEAVES}
        for t in range(STEPS):
            grads = {k: jnp.asarray(v[t], dtype) for k, v in GRADS.items()}
            params, state = step(params, state, grads, lrs[t])
            if t + 1 in SNAPSHOTS:
                for k in LEAVES:
                    out[k].append(np.asarray(params[k]))
        assert len(traces) == 1  # one compilation for the 100 steps
        return {k: np.stack(v) for k, v in out.items()}


def relative_error(ours: dict, ref: dict) -> float:
    """max over leaves of ``max |ours - ref| / max |ref|`` (over recorded steps)."""
    return max(
        float(np.max(np.abs(np.asarray(ours[k], np.float64) - ref[k])))
        / float(np.max(np.abs(ref[k])))
        for k in ref
    )


def golden(name: str, dtype: str) -> dict[str, np.ndarray]:
    return {k: _npz[f"traj/{name}/{dtype}/{k}"].astype(np.float64) for k in LEAVES}


@functools.cache
def ours(name: str, mode: str, dtype: str) -> dict[str, np.ndarray]:
    return run_adam_tx(OURS[name], CASES[name]["lr"], dtype, mode)


def bound(name: str, dtype: str) -> float:
    return (DECOUPLED_BOUNDS if name in DECOUPLED else BOUNDS)[dtype]


def check(name: str, dtype: str, ref: dict[str, np.ndarray]) -> None:
    for mode in lr_modes(name):
        got = ours(name, mode, dtype)
        assert all(got[k].dtype == np.dtype(dtype) for k in LEAVES)
        err = relative_error(got, ref)
        limit = bound(name, dtype)
        assert err <= limit, f"{name} ({mode}, {dtype}): {err:.3g} > {limit:.3g}"


def test_every_case_is_covered():
    assert set(OURS) | NOT_PARITY == set(CASES)


def _maker():
    spec = importlib.util.spec_from_file_location(
        "make_optimizers", GOLDEN / "make_optimizers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def live_torch(name: str, dtype: str, foreach: bool = False):
    """The case run now by the installed torch (needs torch)."""
    maker = _maker()
    return maker.run_torch(CASES[name], maker.make_problem(), dtype, foreach)


@pytest.mark.parametrize("name, dtype", PARAMS)
def test_parity(name, dtype):
    """adam_tx against the stored torch trajectory, and, when torch is
    importable, against the same case run now by torch (the adam_tx run, the
    expensive part, is shared by both comparisons)."""
    check(name, dtype, golden(name, dtype))
    if HAVE_TORCH:
        check(name, dtype, live_torch(name, dtype))


# --------------------------------------------------------------------------
# Live torch only: the stored problem and trajectories are what torch gives now.


def test_live_problem_matches_golden():
    pytest.importorskip("torch")
    problem = _maker().make_problem()
    for k in LEAVES:
        np.testing.assert_array_equal(problem["init"][k], INIT[k])
        # np.exp's SIMD kernels differ in the last bit between CPUs (AVX2 vs
        # AVX-512): the gradient scales are equal to within a float64 rounding.
        np.testing.assert_allclose(problem["grads"][k], GRADS[k], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(problem["lr_schedule"], LR_SCHEDULE)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_live_torch_matches_golden(dtype):
    pytest.importorskip("torch")
    for name in CASES:
        ref = live_torch(name, dtype)
        # torch's foreach implementation agrees with the single-tensor one,
        assert relative_error(live_torch(name, dtype, True), ref) <= BOUNDS[dtype]
        # and the stored trajectories are current.
        assert relative_error(golden(name, dtype), ref) <= BOUNDS[dtype], name


# --------------------------------------------------------------------------
# Where the AdamW float32 gap comes from.


@pytest.mark.parametrize("name", ["adamw", "adamw_wd", "adamw_amsgrad"])
def test_adamw_float32_gap_is_torch_rounding(name):
    lr = CASES[name]["lr"]
    kwargs = CASES[name]["kwargs"]
    wd = kwargs.get("weight_decay", 1e-2)
    # The decay torch applies in float32: p <- p * float32(1 - lr * wd).
    torch_wd = (1 - float(np.float32(1 - lr * wd))) / lr
    if kwargs.get("amsgrad"):
        build = lambda lr: adam_tx.amsgrad(lr, max_of="nu", weight_decay=torch_wd)
    else:
        build = lambda lr: adam_tx.adamw(lr, weight_decay=torch_wd)
    torch32, torch64 = golden(name, "float32"), golden(name, "float64")
    replay = run_adam_tx(build, lr, "float32", "constant")
    assert relative_error(replay, torch32) <= BOUNDS["float32"]
    # With the exact decay, adam_tx's float32 run is closer to the float64
    # trajectory than torch's own float32 run is.
    exact = ours(name, "constant", "float32")
    assert relative_error(exact, torch64) <= BOUNDS["float32"]
    assert relative_error(torch32, torch64) > BOUNDS["float32"]


# --------------------------------------------------------------------------
# Conventions that differ from torch.optim (README, "coming from PyTorch"):
# with adam_tx's defaults these optimizers do NOT reproduce torch's.

CONVENTIONS = {
    # torch.optim.NAdam decays the momentum, mu_t = b1 (1 - 0.5 * 0.96^(0.004 t));
    # adam_tx.nadam (optax's form) uses a constant b1.
    "nadam": lambda lr: adam_tx.nadam(lr),
    # optax-style rmsprop defaults: decay 0.9 and eps inside the square root;
    # torch: alpha 0.99 and eps outside (rmsprop(decay=0.99, eps_in_sqrt=False)).
    "rmsprop": lambda lr: adam_tx.rmsprop(lr),
    # adamw's default weight_decay is 1e-4 (optax's); torch.optim.AdamW's is 1e-2.
    "adamw": lambda lr: adam_tx.adamw(lr),
    # amsgrad defaults to max_of="nu_hat" (optax); torch keeps the max of raw nu.
    "amsgrad": lambda lr: adam_tx.amsgrad(lr),
}


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_convention_differs_from_torch(name):
    got = run_adam_tx(CONVENTIONS[name], CASES[name]["lr"], "float32", "constant")
    assert relative_error(got, golden(name, "float32")) > 1e-3


if __name__ == "__main__":
    # The parity table: measured metric per case and dtype, in eps and absolute.
    for name in PARITY:
        row = []
        for dtype, eps in (("float32", EPS32), ("float64", EPS64)):
            err = max(
                relative_error(ours(name, m, dtype), golden(name, dtype))
                for m in lr_modes(name)
            )
            row.append(f"{dtype} {err:9.2e} ({err / eps:5.1f} eps)")
        print(f"{name:26s}", "   ".join(row))
