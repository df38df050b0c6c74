"""clip, clip_by_global_norm and adaptive_grad_clip against the formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as R

import adam_tx


def test_clip_matches_reference(mode):
    R.check_against_reference(lambda: adam_tx.clip(0.5), lambda: R.Clip(0.5), mode)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_clip_by_global_norm_matches_reference(max_norm, mode):
    R.check_against_reference(
        lambda: adam_tx.clip_by_global_norm(max_norm),
        lambda: R.ClipByGlobalNorm(max_norm),
        mode,
    )


def test_adaptive_grad_clip_matches_reference(mode):
    R.check_against_reference(
        lambda: adam_tx.adaptive_grad_clip(0.3),
        lambda: R.AdaptiveGradClip(0.3),
        mode,
    )


def test_eager():
    R.check_against_reference(
        lambda: adam_tx.chain(
            adam_tx.adaptive_grad_clip(0.5), adam_tx.clip_by_global_norm(1.0)
        ),
        lambda: R.Chain(R.AdaptiveGradClip(0.5), R.ClipByGlobalNorm(1.0)),
        R.EAGER,
    )


def test_global_norm_state_is_the_pre_clip_norm(tree):
    ref = R.ClipByGlobalNorm(1.0)
    tx = adam_tx.clip_by_global_norm(1.0)
    _, state = jax.jit(tx.update)(tree, tx.init(tree))
    ref.update([np.asarray(x, np.float64) for x in jax.tree.leaves(tree)], None)
    np.testing.assert_allclose(float(state.global_norm), ref.norm, rtol=1e-6)
    np.testing.assert_allclose(float(state.clip_factor), ref.factor, rtol=1e-6)
    assert state.global_norm.dtype == jnp.float32


def test_global_norm_accumulates_in_float32_for_float16():
    # 2000 x 300^2 = 1.8e8 overflows float16 (max 65504); the norm must not.
    g = {"a": jnp.full((1000,), 300.0, jnp.float16), "b": -jnp.full((1000,), 300.0)}
    g["b"] = g["b"].astype(jnp.float16)
    tx = adam_tx.clip_by_global_norm(1.0)
    u, state = jax.jit(tx.update)(g, tx.init(g))
    expected = 300.0 * np.sqrt(2000.0)
    np.testing.assert_allclose(float(state.global_norm), expected, rtol=1e-6)
    np.testing.assert_allclose(float(adam_tx.global_norm(g)), expected, rtol=1e-6)
    assert u["a"].dtype == jnp.float16
    np.testing.assert_allclose(
        np.asarray(u["a"], np.float32), 1 / np.sqrt(2000.0), rtol=1e-3
    )


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: adam_tx.clip(0.3), lambda: optax.clip(0.3)),
        (
            lambda: adam_tx.clip_by_global_norm(2.0),
            lambda: optax.clip_by_global_norm(2.0),
        ),
        (
            lambda: adam_tx.adaptive_grad_clip(0.3),
            lambda: optax.adaptive_grad_clip(0.3),
        ),
    ],
    ids=["clip", "clip_by_global_norm", "adaptive_grad_clip"],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_parity(ours, theirs, dtype):
    R.check_against_transform(ours, theirs, dtype)


@pytest.mark.parametrize(
    "factory, arg",
    [
        (adam_tx.clip, "max_delta"),
        (adam_tx.clip_by_global_norm, "max_norm"),
        (adam_tx.adaptive_grad_clip, "clipping"),
    ],  # fmt: skip
)
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_thresholds_are_rejected(factory, arg, value):
    with pytest.raises(ValueError, match=rf"{arg}={value}.*\(0.0, inf\)"):
        factory(value)
