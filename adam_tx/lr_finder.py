"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training
Neural Networks", WACV 2017, arXiv:1506.01186).

Train for ``num_steps`` steps while the learning rate grows exponentially from
``min_lr`` to ``max_lr``:

    lr_i = min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))

and record the loss. The loss first barely moves (lr too small), then falls
fastest, then blows up (lr too large). A safe maximum learning rate lies
below the blow-up; two usual picks are returned:

- ``steepest``: the lr where the smoothed loss falls fastest per unit of
  ``log(lr)`` (the most negative ``d smoothed / d log lr``);
- ``min_div_10``: the lr at the minimum of the smoothed loss, divided by 10.

The loss is smoothed by an exponential moving average with bias correction,
``s_i = beta s_{i-1} + (1 - beta) loss_i``, ``smoothed_i = s_i / (1 - beta^(i+1))``,
and the sweep stops early once ``smoothed_i > diverge_factor * min_j smoothed_j``
or the loss is not finite.

The learning rate is fed through :func:`adam_tx.set_hyperparams`, so the step
is compiled once for the whole sweep; the optimizer must therefore hold a
constant (not scheduled) ``learning_rate`` hyperparameter, as every adam_tx
alias built with a float learning rate does. A scheduled one would overwrite
the fed value at every step (no sweep would run), so it is refused: the first
step checks that the learning rate in force is the one fed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from adam_tx._engine.validate import check_callable, check_range
from adam_tx._engine.wrapper_args import check_int, check_transform
from adam_tx.hyperparams import get_hyperparams, set_hyperparams


class RangeTestResult(NamedTuple):
    """``lrs``, ``losses`` and ``smoothed`` per step run; the suggestions;
    ``diverged_at``: the lr at which the sweep stopped early (None if it ran to
    the end)."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    steepest: float
    min_div_10: float
    diverged_at: float | None


def exponential_lrs(min_lr: float, max_lr: float, num_steps: int) -> np.ndarray:
    """``min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))`` for each step ``i``.

    >>> exponential_lrs(1e-3, 1e-1, 3).round(6).tolist()
    [0.001, 0.01, 0.1]
    """
    return exponential_lr(np.arange(num_steps), min_lr, max_lr, num_steps)


def exponential_lr(i: Any, min_lr: float, max_lr: float, num_steps: int) -> Any:
    """Step ``i``'s learning rate in :func:`exponential_lrs` (``i`` may be an
    array)."""
    return min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))


def smooth(losses: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected EMA: ``s_i = beta s_{i-1} + (1-beta) x_i``, then
    ``s_i / (1 - beta^(i+1))``.

    >>> smooth(np.array([2.0, 2.0, 2.0]), 0.9).tolist()
    [2.0, 2.0, 2.0]
    """
    out, avg = np.empty(len(losses)), 0.0
    for i, x in enumerate(losses):
        avg = beta * avg + (1 - beta) * x
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[float, float]:
    """``(steepest, min_div_10)`` from a range test's learning rates and smoothed
    losses (see the module docstring)."""
    if len(lrs) < 3:
        raise ValueError(f"need at least 3 recorded steps to suggest, got {len(lrs)}")
    slope = np.gradient(smoothed, np.log(lrs))
    return float(lrs[int(np.argmin(slope))]), float(lrs[int(np.argmin(smoothed))] / 10)


def _batch_source(batches: Any) -> Callable[[int], Any]:
    if batches is None:
        return lambda i: None
    if callable(batches):
        return batches
    if isinstance(batches, Iterable):
        it = iter(batches)
        return lambda i: next(it)
    raise TypeError(
        f"batches must be None, a callable step -> batch or an iterable, "
        f"got {type(batches).__name__}"
    )


def _check(min_lr, max_lr, num_steps, beta, diverge_factor) -> int:
    for name, value in (
        ("min_lr", min_lr),
        ("max_lr", max_lr),
        ("beta", beta),
        ("diverge_factor", diverge_factor),
    ):
        if callable(value):
            raise TypeError(f"{name} must be a number, got the callable {value!r}")
    check_range("min_lr", min_lr, 0.0, None, low_inclusive=False)
    check_range("max_lr", max_lr, float(min_lr), None, low_inclusive=False)
    num_steps = check_int("num_steps", num_steps, 3)
    check_range("beta", beta, 0.0, 1.0, high_inclusive=False)
    check_range("diverge_factor", diverge_factor, 1.0, None, low_inclusive=False)
    return num_steps


def _check_constant_lr(fed: jax.Array, in_force: jax.Array) -> None:
    if float(fed) != float(in_force):
        raise ValueError(
            "optimizer's 'learning_rate' is a schedule: the range test fed "
            f"{float(fed):.3g} and the step used {float(in_force):.3g}, so no "
            "sweep would run. Build the optimizer with a float learning rate "
            "(e.g. adam_tx.adamw(1e-3)) for the range test, and the schedule "
            "afterwards"
        )


def lr_range_test(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    optimizer: optax.GradientTransformation,
    batches: Any = None,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    beta: float = 0.98,
    diverge_factor: float = 4.0,
) -> RangeTestResult:
    """Run the exponential learning-rate sweep and suggest a learning rate.

    Args:
      loss_fn: ``(params, batch) -> scalar loss``.
      params: the initial parameters (not modified).
      optimizer: a transform with a constant ``learning_rate`` hyperparameter,
        e.g. ``adam_tx.adamw(1e-3)``; its value is overwritten each step. A
        scheduled learning rate raises ``ValueError``.
      batches: None (``batch=None`` every step), a callable ``step -> batch`` or
        an iterable of batches.
      min_lr, max_lr: the sweep's range (``0 < min_lr < max_lr``).
      num_steps: steps of the sweep (an integer in [3, 2**31 - 1]).
      beta: the smoothing factor in [0, 1).
      diverge_factor: stop once the smoothed loss exceeds this multiple (> 1)
        of the best smoothed loss so far.

    Returns:
      A :class:`RangeTestResult` over the steps actually run.

    >>> import adam_tx, jax.numpy as jnp
    >>> loss = lambda p, _: 5.0 * jnp.sum(p**2)  # curvature L = 10
    >>> r = lr_range_test(loss, jnp.ones(2), adam_tx.sgd(0.1), min_lr=1e-4,
    ...                   max_lr=10.0, num_steps=100, beta=0.0)  # noiseless
    >>> 0.2 < r.diverged_at < 0.4 and r.steepest < 0.2  # GD diverges above 2/L
    True
    """
    check_callable("loss_fn", loss_fn)
    optimizer = check_transform("optimizer", optimizer)
    num_steps = _check(min_lr, max_lr, num_steps, beta, diverge_factor)
    if "learning_rate" not in get_hyperparams(optimizer.init(params)):
        raise ValueError(
            "optimizer has no 'learning_rate' hyperparameter in its state; build it "
            "with a float learning rate (e.g. adam_tx.adamw(1e-3))"
        )

    @jax.jit
    def step(params, opt_state, batch, lr):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        opt_state = set_hyperparams(opt_state, learning_rate=lr)
        fed = get_hyperparams(opt_state)["learning_rate"]
        updates, opt_state = optimizer.update(grads, opt_state, params)
        in_force = get_hyperparams(opt_state)["learning_rate"]
        return optax.apply_updates(params, updates), opt_state, loss, fed, in_force

    next_batch = _batch_source(batches)
    opt_state = optimizer.init(params)
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, diverged_at = 0.0, math.inf, None
    for i in range(num_steps):
        lr = exponential_lr(i, min_lr, max_lr, num_steps)
        params, opt_state, loss, fed, in_force = step(
            params, opt_state, next_batch(i), lr
        )
        if i == 0:
            _check_constant_lr(fed, in_force)
        lrs.append(lr)
        loss = float(loss)
        losses.append(loss)
        avg = beta * avg + (1 - beta) * loss
        smoothed = avg / (1 - beta ** (i + 1))
        if not math.isfinite(smoothed) or smoothed > diverge_factor * best:
            diverged_at = float(lr)
            break
        best = min(best, smoothed)
    losses_arr = np.asarray(losses)
    smoothed_arr = smooth(losses_arr, beta)
    lrs = np.asarray(lrs)
    # Suggestions from the finite part before the blow-up.
    keep = len(lrs) - 1 if diverged_at is not None else len(lrs)
    steepest, min_div_10 = suggest(lrs[:keep], smoothed_arr[:keep])
    return RangeTestResult(
        lrs, losses_arr, smoothed_arr, steepest, min_div_10, diverged_at
    )


def plot(result: RangeTestResult, path: str) -> None:
    """Save the range test (raw and smoothed loss vs log lr, suggestions) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, alpha=0.3, label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed loss")
    ax.axvline(result.steepest, ls="--", c="g", label=f"steepest {result.steepest:.2e}")
    ax.axvline(
        result.min_div_10, ls=":", c="r", label=f"min/10 {result.min_div_10:.2e}"
    )
    finite = result.smoothed[np.isfinite(result.smoothed)]
    if finite.size:
        ax.set_ylim(finite.min() * 0.95, min(finite.max(), 3 * finite[0]) * 1.05)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
