"""adam_tx.lr_finder: the range test finds gradient descent's 2/L limit."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx
from adam_tx.lr_finder import exponential_lrs, lr_range_test, plot, smooth, suggest

CURVATURE = 10.0  # f(x) = L/2 |x|^2: gradient descent diverges for lr > 2/L


def quadratic(params, batch):
    del batch
    return 0.5 * CURVATURE * jnp.sum(params**2)


def test_quadratic_divergence_and_suggestions_in_the_stable_range():
    r = lr_range_test(
        quadratic,
        jnp.ones(4),
        adam_tx.sgd(1.0),
        min_lr=1e-4,
        max_lr=100.0,
        num_steps=120,
        beta=0.0,
    )
    limit = 2 / CURVATURE
    assert r.diverged_at is not None
    assert limit < r.diverged_at < 2 * limit
    # The loss keeps falling up to 2/L and its minimum is just above it.
    best = r.lrs[np.argmin(r.losses)]
    assert 0.5 * limit < best < 1.5 * limit
    assert r.steepest < limit and r.min_div_10 < limit
    assert r.min_div_10 == pytest.approx(best / 10)
    # Early stop: fewer steps than planned, lrs follow the exponential sweep.
    assert len(r.lrs) < 120
    np.testing.assert_allclose(r.lrs, exponential_lrs(1e-4, 100.0, 120)[: len(r.lrs)])


def test_smoothed_losses_and_batches_are_fed():
    seen = []

    def loss(p, batch):
        seen.append(batch)
        return jnp.sum((p - batch) ** 2)

    r = lr_range_test(
        loss,
        jnp.zeros(2),
        adam_tx.adam(1e-3),
        lambda i: jnp.full(2, 1.0),
        min_lr=1e-4,
        max_lr=1e-2,
        num_steps=10,
    )
    assert r.diverged_at is None and len(r.losses) == 10
    np.testing.assert_allclose(r.smoothed, smooth(r.losses, 0.98))
    # A bias-corrected EMA of a constant is that constant.
    np.testing.assert_allclose(smooth(np.full(5, 3.0), 0.9), 3.0)


def test_plot_writes_png(tmp_path):
    lrs = exponential_lrs(1e-4, 1.0, 20)
    losses = 1 + (np.log(lrs) + 5) ** 2
    s = smooth(losses, 0.5)
    steep, m10 = suggest(lrs, s)
    from adam_tx.lr_finder import RangeTestResult

    plot(RangeTestResult(lrs, losses, s, steep, m10, None), str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_lr": 0.0}, "min_lr"),
        ({"max_lr": 1e-8}, "max_lr"),
        ({"num_steps": 2}, "num_steps"),
        ({"beta": 1.0}, "beta"),
        ({"diverge_factor": 1.0}, "diverge_factor"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lr_range_test(quadratic, jnp.ones(2), adam_tx.sgd(0.1), **kwargs)


def test_needs_learning_rate_hyperparameter():
    with pytest.raises(ValueError, match="learning_rate"):
        lr_range_test(quadratic, jnp.ones(2), optax.sgd(0.1))


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: adam_tx.sgd(optax.constant_schedule(0.1)),
        lambda: adam_tx.adamw(lambda count: 1e-3 * (1.0 + 0.0 * count)),
    ],
    ids=["constant schedule", "callable"],
)
def test_a_scheduled_learning_rate_is_refused(optimizer):
    """The schedule would overwrite the fed rate each step: no sweep, yet a
    suggestion. The first step finds it out."""
    with pytest.raises(ValueError, match="learning_rate' is a schedule"):
        lr_range_test(quadratic, jnp.ones(2), optimizer(), num_steps=5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"optimizer": None}, TypeError, "optimizer must be an optax"),
        ({"loss_fn": None}, TypeError, "loss_fn must be callable"),
        ({"num_steps": 2**40}, ValueError, r"num_steps=1099511627776"),
        ({"num_steps": "9"}, TypeError, "num_steps"),
        ({"min_lr": "1e-3"}, TypeError, "min_lr"),
        ({"max_lr": float("inf")}, ValueError, "max_lr"),
        ({"beta": float("nan")}, ValueError, "beta"),
        ({"diverge_factor": lambda: 2}, TypeError, "diverge_factor"),
    ],
)
def test_every_argument_is_named(kwargs, error, match):
    kwargs = {
        "loss_fn": quadratic,
        "params": jnp.ones(2),
        "optimizer": adam_tx.sgd(0.1),
        **kwargs,
    }
    with pytest.raises(error, match=match):
        lr_range_test(**kwargs)
