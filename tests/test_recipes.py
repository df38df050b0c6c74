"""adam_tx.recipes: each recipe builds the chain its docstring documents."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx
from adam_tx import recipes

PARAMS = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}}


def _grads(scale=1.0):
    return jax.tree.map(lambda p: scale * jnp.ones_like(p), PARAMS)


def _run(tx, n, scale=1.0):
    s, p, update = tx.init(PARAMS), PARAMS, jax.jit(tx.update)
    for _ in range(n):
        u, s = update(_grads(scale), s, p)
        p = optax.apply_updates(p, u)
    return p, s


def _reference(total, peak, warmup, b2, steps, scale=1.0):
    """The documented chain, built from optax's pieces."""
    sched = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total)
    mask = {"dense": {"kernel": True, "bias": False}}
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(sched, b1=0.9, b2=b2, eps=1e-8, weight_decay=1e-4, mask=mask),
    )
    return _run(tx, steps, scale)[0]


@pytest.mark.parametrize(
    "build, warmup, b2",
    [
        (lambda: recipes.general(200, 1e-2), 20, 0.999),
        (lambda: recipes.transformer(200, 1e-2), 10, 0.98),
        (lambda: recipes.vision(200, 1e-2), 20, 0.999),
    ],
)
def test_recipe_matches_documented_chain(build, warmup, b2):
    tx = build()
    p, s = _run(tx, 25, scale=5.0)  # global norm > 1: clipping active
    hp = adam_tx.get_hyperparams(s)
    assert float(hp["b1"]) == pytest.approx(0.9)
    assert float(hp["b2"]) == pytest.approx(b2)
    assert float(hp["eps"]) == pytest.approx(1e-8)
    assert float(hp["weight_decay"]) == pytest.approx(1e-4)
    assert float(hp["max_norm"]) == 1.0
    assert isinstance(s[0], adam_tx.ClipByGlobalNormState)
    assert float(s[0].clip_factor) < 1.0
    # Step 24 is past warmup: the lr is on the cosine below the peak.
    lr = optax.warmup_cosine_decay_schedule(0.0, 1e-2, warmup, 200)(24)
    assert float(hp["learning_rate"]) == pytest.approx(float(lr), rel=1e-5)
    ref = _reference(200, 1e-2, warmup, b2, 25, scale=5.0)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_vision_switches_to_sgd_momentum():
    tx = recipes.vision(40, 1e-2, switch_at=0.5, sgd_lr=0.1, sgd_momentum=0.9)
    p, s = _run(tx, 22)
    assert type(s).__name__ == "SwitchState"
    assert int(s.count) == 22
    assert int(s.first[1][0].count) == 20  # AdamW's scale_by_adam ran 20 steps
    sgd_hp = adam_tx.get_hyperparams(s.second)
    assert float(sgd_hp["learning_rate"]) == pytest.approx(0.1)
    assert float(sgd_hp["decay"]) == pytest.approx(0.9)
    # Two SGD steps from the switch point, by hand (b1 = g, b2 = 0.9 b1 + g).
    q, _ = _run(recipes.vision(40, 1e-2, switch_at=0.5), 20)
    g = _grads()
    clip = jax.tree.map(lambda x: x / float(optax.tree.norm(g)), g)
    q_b = q["dense"]["bias"] - 0.1 * clip["dense"]["bias"]
    q_b = q_b - 0.1 * 1.9 * clip["dense"]["bias"]
    np.testing.assert_allclose(p["dense"]["bias"], q_b, rtol=1e-5)


def test_vision_swats_lr_is_positive():
    tx = recipes.vision(40, 1e-2, switch_at=0.5)
    _, s = _run(tx, 21)
    assert 0 < float(adam_tx.get_hyperparams(s.second)["learning_rate"]) < 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: recipes.general(1), "total_steps"),
        (lambda: recipes.general(10, warmup_steps=10), "warmup_steps"),
        (lambda: recipes.transformer(10, warmup_fraction=1.5), "warmup_fraction"),
        (lambda: recipes.vision(10, switch_at=1.0), "switch_at"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
