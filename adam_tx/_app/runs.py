"""Training runs behind the ``adam-tx`` command: optimizers by name, the jitted
step of the character LM, metrics files and plots.

Nothing here imports Flax, tqdm or matplotlib at import time (the command's
parser reads :data:`OPTIMIZERS` without the demo extra installed); the model
(:mod:`adam_tx.charlm`) and the plots import them when first used."""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adam_tx
from adam_tx import schedules, state_format
from adam_tx.hyperparams import set_hyperparams
from adam_tx.lr_finder import RangeTestResult
from adam_tx.memory import state_report

OPTIMIZERS: dict[str, tuple[Callable[..., Any], float, dict[str, Any]]] = {
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


def lr_schedule(name: str, peak: float, steps: int) -> optax.ScalarOrSchedule:
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


def momentum_schedule(name: str, steps: int) -> optax.Schedule | None:
    """The momentum (Adam's ``b1``, SGD's momentum) cycled with the schedule
    ``name``, or None to keep the optimizer's constant one.

    ``one-cycle`` cycles it inversely to the learning rate, 0.95 -> 0.85 ->
    0.95 over the same phases (torch ``OneCycleLR(cycle_momentum=True)``'s
    defaults).
    """
    if name == "one-cycle":
        return schedules.one_cycle_momentum(max(steps, 2))
    return None


def momentum_name(optimizer: str) -> str | None:
    """The optimizer's momentum argument (``b1`` or ``momentum``), if it has one
    in use (RMSProp's and Adagrad's are off in this table)."""
    alias, _, extra = OPTIMIZERS[optimizer]
    params = inspect.signature(alias).parameters
    if "b1" in params:
        return "b1"
    return "momentum" if extra.get("momentum") else None


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
    optimizer: str,
    lr: optax.ScalarOrSchedule,
    *,
    state: str = "fp32",
    clip_norm: float = 1.0,
    momentum: optax.ScalarOrSchedule | None = None,
) -> optax.GradientTransformationExtraArgs:
    """``chain(clip_by_global_norm(clip_norm), <optimizer>(lr, ...))``, with
    ``momentum`` (a float or schedule) as its ``b1`` or momentum if given."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}")
    alias, _, extra = OPTIMIZERS[optimizer]
    kwargs = {**extra, **state_kwargs(optimizer, state)}
    name = momentum_name(optimizer)
    if momentum is not None and name is not None:
        kwargs[name] = momentum
    return adam_tx.chain(adam_tx.clip_by_global_norm(clip_norm), alias(lr, **kwargs))


def step_stats(opt_state: Any) -> dict[str, jax.Array]:
    """Learning rate, ``b1`` (Adam family), gradient norm before clipping and
    clip factor, from the optimizer state (:func:`adam_tx.stats`)."""
    found = adam_tx.stats(opt_state)
    keys = {"learning_rate": "lr", "b1": "b1", "grad_norm": "grad_norm"}
    out = {short: found[key] for key, short in keys.items() if key in found}
    out["clip_factor"] = found["clip_factor"]
    return out


def memory_line(opt_state: Any, params: Any, fp32_state: Any) -> tuple[str, dict]:
    """A line saying the state's bytes and the saving against ``fp32_state``
    (the same optimizer's float32 state, or its shapes), and the figures."""
    ours, fp32 = state_report(opt_state, params), state_report(fp32_state, params)
    saved = fp32.total_bytes - ours.total_bytes
    figures = {
        "state_bytes": ours.total_bytes,
        "state_bytes_fp32": fp32.total_bytes,
        "bytes_per_param": ours.bytes_per_param,
        "bytes_per_param_fp32": fp32.bytes_per_param,
    }
    line = (
        f"optimizer state: {ours.total_bytes / 1e6:.2f} MB "
        f"({ours.bytes_per_param:.2f} bytes/param; "
        f"{ours.large_bytes_per_param:.2f} on leaves >= {ours.min_size} elements)"
    )
    if saved:
        line += (
            f"; fp32 state: {fp32.total_bytes / 1e6:.2f} MB, saved "
            f"{saved / 1e6:.2f} MB ({100 * saved / fp32.total_bytes:.0f}%)"
        )
    return line, figures


def make_step(
    graphdef: Any, tx: optax.GradientTransformation, *, feed_lr: bool = False
) -> Callable:
    """The jitted train step ``(params, opt_state, batch, lr) -> (params,
    opt_state, loss, stats)``; ``lr`` is written into the state when
    ``feed_lr`` (one compile for any learning rate), else ignored."""
    from adam_tx import charlm

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


def make_eval(graphdef: Any, eval_set: np.ndarray) -> Callable[[Any], jax.Array]:
    """``params -> mean loss`` over the fixed held-out batches."""
    from adam_tx import charlm

    loss_fn = charlm.functional_loss(graphdef)

    @jax.jit
    def evaluate(params):
        return jnp.mean(jax.lax.map(lambda b: loss_fn(params, b), eval_set))

    return evaluate


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """SIGINT held back (blocked, then delivered on exit) where the platform
    can block signals; a no-op elsewhere."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    old = mask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


class MetricsWriter:
    """Writes one JSON object per line to ``stream``, flushed at once, so an
    interrupted run keeps everything written so far."""

    def __init__(self, stream: IO[str]) -> None:
        self.rows: list[dict[str, Any]] = []
        self._file = stream

    def write(self, row: dict[str, Any]) -> None:
        row = {k: v if isinstance(v, str | int) else float(v) for k, v in row.items()}
        line = json.dumps(row) + "\n"
        # A Ctrl-C between the file and the list would make the summary count
        # a step the file lacks (or the reverse): it is delivered after both.
        with _sigint_deferred():
            self._file.write(line)
            self._file.flush()
            self.rows.append(row)

    def close(self) -> None:
        self._file.close()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Loss (train and held-out), learning rate (and a cycled b1) and gradient
    norm vs step, as a PNG at ``path``."""
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
    b1 = [r["b1"] for r in train if "b1" in r]
    if len(b1) == len(train) and min(b1, default=0) != max(b1, default=0):
        twin = axes[1].twinx()
        twin.plot([r["step"] for r in train], b1, "C1--")
        twin.set_ylabel("b1 (dashed)")
        axes[1].set_title("learning rate and b1")
    axes[2].plot([r["step"] for r in train], [r["grad_norm"] for r in train])
    axes[2].set(xlabel="step", title="gradient norm (before clipping)")
    axes[2].set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bars(names: list[str], values: list[float], path: str, title: str) -> None:
    """A bar chart as a PNG at ``path`` (``nan``: target not reached, drawn as an
    empty bar)."""
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
    """Seconds since it was made, when called."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


PEAK_LR_RULE = "the lr by which the smoothed loss made 90% of its fall"


def suggest_peak_lr(
    lrs: np.ndarray, smoothed: np.ndarray, diverged_at: float | None = None
) -> tuple[float, str]:
    """A peak learning rate for the demo's warmup-cosine schedule, read from a
    range test, and the rule's name.

    Formula: with ``L_0 = smoothed[0]`` and ``L_min = min(smoothed)`` (before
    the blow-up), the first ``lr_i`` with
    ``smoothed_i <= L_min + 0.1 (L_0 - L_min)``: the end of the steep part of
    the descent, before the flat bottom whose minimum wanders with the noise.

    Measured on the demo task (``adam-tx lr-find``, then ``adam-tx compare
    --optimizers adamw --steps 400`` at each rate: 400 warmup-cosine steps):
    the rule suggests 3.5e-3 (seeds 0 and 1), which reaches a held-out loss of
    1.963, against 1.982 for the best of the sweep 3e-4 ... 3e-2 (3e-3). The
    range test's other readings train worse: its steepest point (1.5e-4) to
    more than 2.47 and its minimum / 10 (1.4e-3) to 2.16; the minimum itself
    moves from 1.4e-2 to 3.2e-2 between seeds 0 and 1.

    >>> lrs = np.array([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    >>> suggest_peak_lr(lrs, np.array([5.0, 4.0, 2.2, 2.0, 3.0]))[0]
    0.01
    """
    keep = len(lrs) - 1 if diverged_at is not None else len(lrs)
    lrs, smoothed = np.asarray(lrs[:keep]), np.asarray(smoothed[:keep])
    if len(lrs) < 2:
        raise ValueError(f"need at least 2 finite range-test steps, got {len(lrs)}")
    low = float(np.min(smoothed))
    level = low + 0.1 * (float(smoothed[0]) - low)
    first = int(np.argmax(smoothed <= level))
    return float(lrs[first]), PEAK_LR_RULE


def plot_range_test(result: RangeTestResult, suggested: float, path: str) -> None:
    """The range test as a PNG at ``path``: loss and smoothed loss vs lr, with
    the suggested peak lr marked (and the steepest point, for reference)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(result.lrs, result.losses, alpha=0.3, label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed loss")
    ax.axvline(suggested, c="g", label=f"suggested peak lr {suggested:.1e}")
    ax.axvline(
        result.steepest, ls=":", c="grey", label=f"steepest {result.steepest:.1e}"
    )
    finite = result.smoothed[np.isfinite(result.smoothed)]
    if finite.size:
        ax.set_ylim(finite.min() * 0.95, min(finite.max(), 1.5 * finite[0]) * 1.02)
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss (nats/char)")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
