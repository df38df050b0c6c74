"""Training runs behind the ``adam-tx`` command: optimizers by name, the jitted
step of the character LM, metrics files and plots."""

from __future__ import annotations

import inspect
import json
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import adam_tx
from adam_tx import charlm, schedules, state_format
from adam_tx.clipping import ClipByGlobalNormState
from adam_tx.hyperparams import get_hyperparams, set_hyperparams

OPTIMIZERS = {
    # name: (alias, default peak lr, extra kwargs)
    "adamw": (adam_tx.adamw, 3e-3, {"weight_decay": 1e-4, "mask": adam_tx.decay_mask}),
    "adam": (adam_tx.adam, 3e-3, {}),
    "amsgrad": (adam_tx.amsgrad, 3e-3, {}),
    "adabelief": (adam_tx.adabelief, 3e-3, {}),
    "adamax": (adam_tx.adamax, 6e-3, {}),
    "nadam": (adam_tx.nadam, 3e-3, {}),
    "sgd": (adam_tx.sgd, 0.3, {"momentum": 0.9}),  # SGD + momentum
    "rmsprop": (adam_tx.rmsprop, 1e-3, {}),
    "adagrad": (adam_tx.adagrad, 3e-2, {}),
}
SCHEDULES = ("warmup-cosine", "step", "one-cycle", "constant")
STATES = ("fp32", "bf16", "int8")


def lr_schedule(name: str, peak: float, steps: int):
    """The learning-rate schedule ``name`` peaking at ``peak`` over ``steps``."""
    warmup = max(1, steps // 20)
    if name == "warmup-cosine":
        return schedules.warmup_cosine_decay(0.0, peak, warmup, max(steps, warmup + 1))
    if name == "step":
        return schedules.step_decay(
            peak, milestones=[steps // 2, (3 * steps) // 4], factor=0.1
        )
    if name == "one-cycle":
        return schedules.one_cycle(max(steps, 2), peak)
    if name == "constant":
        return peak
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")


def state_kwargs(optimizer: str, state: str) -> dict[str, Any]:
    """Keyword arguments storing the optimizer's moments as ``state`` asks.

    Raises ValueError when the optimizer or this adam_tx build cannot do it."""
    alias = OPTIMIZERS[optimizer][0]
    accepted = inspect.signature(alias).parameters
    if state == "fp32":
        return {}
    if state == "bf16":
        kwargs = {"mu_dtype": jnp.bfloat16, "nu_dtype": jnp.bfloat16}
    elif state == "int8":
        if "int8" not in getattr(state_format, "STATE_FORMATS", ()):
            raise ValueError(
                "--state int8: this adam_tx build has no 8-bit state format "
                "(adam_tx.state_format has no 'int8'); use fp32 or bf16"
            )
        kwargs = {"state_format": "int8"}
    else:
        raise ValueError(f"--state must be one of {STATES}, got {state!r}")
    missing = [k for k in kwargs if k not in accepted]
    if missing:
        raise ValueError(
            f"--state {state} is not available for --optimizer {optimizer} "
            f"(adam_tx.{alias.__name__} takes no {', '.join(missing)})"
        )
    return kwargs


def make_optimizer(
    optimizer: str, lr: Any, *, state: str = "fp32", clip_norm: float = 1.0
):
    """``chain(clip_by_global_norm(clip_norm), <optimizer>(lr, ...))``."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}")
    alias, _, extra = OPTIMIZERS[optimizer]
    kwargs = {**extra, **state_kwargs(optimizer, state)}
    return adam_tx.chain(adam_tx.clip_by_global_norm(clip_norm), alias(lr, **kwargs))


def step_stats(opt_state: Any) -> dict[str, jax.Array]:
    """Learning rate, gradient norm and clip factor from the optimizer state."""
    hp = get_hyperparams(opt_state)
    clip = [
        n
        for n in jax.tree.leaves(
            opt_state, is_leaf=lambda n: isinstance(n, ClipByGlobalNormState)
        )
        if isinstance(n, ClipByGlobalNormState)
    ]
    return {
        "lr": hp["learning_rate"],
        "grad_norm": clip[0].global_norm,
        "clip_factor": clip[0].clip_factor,
    }


def make_step(graphdef, tx, *, feed_lr: bool = False):
    """The jitted train step ``(params, opt_state, batch, lr) -> (params,
    opt_state, loss, stats)``; ``lr`` is written into the state when
    ``feed_lr`` (one compile for any learning rate), else ignored."""
    loss_fn = charlm.functional_loss(graphdef)

    @jax.jit
    def step(params, opt_state, batch, lr):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        if feed_lr:
            opt_state = set_hyperparams(opt_state, learning_rate=lr)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = adam_tx.apply_updates(params, updates)
        return params, opt_state, loss, step_stats(opt_state)

    return step


def make_eval(graphdef, eval_set: np.ndarray):
    """``params -> mean loss`` over the fixed held-out batches."""
    loss_fn = charlm.functional_loss(graphdef)

    @jax.jit
    def evaluate(params):
        return jnp.mean(jax.lax.map(lambda b: loss_fn(params, b), eval_set))

    return evaluate


class MetricsWriter:
    """Appends one JSON object per line to ``path``, flushed at once, so an
    interrupted run keeps everything written so far."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self._file = open(path, "w")  # noqa: SIM115

    def write(self, row: dict[str, Any]) -> None:
        row = {k: v if isinstance(v, str | int) else float(v) for k, v in row.items()}
        self.rows.append(row)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(rows: list[dict[str, Any]], path: pathlib.Path, title: str) -> None:
    """Loss (train and held-out), learning rate and gradient norm vs step."""
    plt = _pyplot()
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if evals:
        ax.plot(
            [r["step"] for r in evals],
            [r["eval_loss"] for r in evals],
            "o-",
            label="held-out",
        )
    ax.set(xlabel="step", ylabel="loss (nats/char)", title="loss")
    ax.legend()
    axes[1].plot([r["step"] for r in train], [r["lr"] for r in train])
    axes[1].set(xlabel="step", title="learning rate")
    axes[2].plot([r["step"] for r in train], [r["grad_norm"] for r in train])
    axes[2].set(xlabel="step", title="gradient norm (before clipping)")
    axes[2].set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bars(names: list[str], values: list[float], path: pathlib.Path, title: str):
    """A bar chart (``nan``: target not reached, drawn as an empty bar)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.8))
    heights = [0 if math.isnan(v) else v for v in values]
    bars = ax.bar(names, heights)
    for bar, v in zip(bars, values):
        label = "not reached" if math.isnan(v) else f"{v:.0f}"
        ax.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
        )
    ax.set(ylabel="steps to target (lower is better)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
