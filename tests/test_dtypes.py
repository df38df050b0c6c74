"""Dtype policy: updates keep the param dtype, state dtypes are what was asked,
hyperparameters stay float32 (float64 under x64), nothing recompiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as R

import adam_tx

DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64]

OPTIMIZERS = {
    "adamw": lambda: adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3, weight_decay=0.1)
    ),
    "amsgrad": lambda: adam_tx.amsgrad(1e-3, max_of="nu"),
    "adabelief": lambda: adam_tx.adabelief(1e-3),
    "adamax": lambda: adam_tx.adamax(1e-3),
    "rmsprop": lambda: adam_tx.rmsprop(1e-3, centered=True, momentum=0.9),
    "adagrad": lambda: adam_tx.adagrad(1e-3),
    "sgd": lambda: adam_tx.sgd(1e-3, 0.9),
}


def _run(make, dtype):
    params = {"w": jnp.ones((3, 2), dtype), "b": [jnp.zeros(2, dtype)]}
    opt = make()
    state = opt.init(params)
    step = jax.jit(opt.update)
    for t in range(3):
        grads = jax.tree.map(lambda p, t=t: jnp.full_like(p, 0.5 - t), params)
        updates, state = step(grads, state, params)
        params = adam_tx.apply_updates(params, updates)
    return params, updates, state, step


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_updates_keep_param_dtype_and_hypers_stay_wide(name, dtype):
    x64 = dtype == jnp.float64
    with jax.enable_x64(x64):
        params, updates, state, step = _run(OPTIMIZERS[name], dtype)
        hyper = jnp.float64 if x64 else jnp.float32
        for u in jax.tree.leaves(updates) + jax.tree.leaves(params):
            assert u.dtype == dtype
            assert np.all(np.isfinite(np.asarray(u, np.float64)))
        for hp in adam_tx.get_hyperparams(state).values():
            assert hp.dtype == hyper
        assert step._cache_size() == 1  # no recompilation across steps


def test_b2_0999_with_bfloat16_params_behaves_as_0999():
    # In bfloat16, 0.999 rounds to 1.0: v would never grow from 0 and the first
    # step would be g / eps. Held in float32, Adam's first step is g / |g| and
    # the run follows the float64 formula; moments are kept in float32 here so
    # the comparison measures the hyperparameters, not bf16 storage.
    assert float(jnp.asarray(0.999, jnp.bfloat16)) == 1.0
    make = lambda: adam_tx.scale_by_adam(b2=0.999, nu_dtype=jnp.float32)
    tx = make()
    p = jnp.ones(3, jnp.bfloat16)
    u, state = tx.update(jnp.array([2.0, -0.5, 1e-3], jnp.bfloat16), tx.init(p))
    np.testing.assert_allclose(np.asarray(u, np.float32), [1, -1, 1], rtol=1e-2)
    assert float(state.hyperparams["b2"]) == float(np.float32(0.999))
    assert state.hyperparams["b2"].dtype == jnp.float32
    # 30 steps against the float64 formula; bfloat16 updates carry 8 bits, so
    # 1e-2 relative (2.5 ulps of bf16) is the resolution of the output.
    rel = R.run_against_reference(
        make(), R.Adam(b2=0.999), dtype=jnp.bfloat16, steps=30
    )[0]
    assert rel < 1e-2


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_adam_tracks_reference(dtype):
    # Moments stored in the half dtype too (the default): errors are those of
    # 8/11-bit storage, a few percent at most over 50 steps.
    rel = R.run_against_reference(
        adam_tx.adam(1e-2), R.adam(1e-2), dtype=dtype, steps=50
    )[0]
    assert rel < 5e-2


def test_float64_state_under_x64():
    with jax.enable_x64(True):
        tx = adam_tx.scale_by_adam(mu_dtype=jnp.float32)
        state = tx.init({"w": jnp.ones(2, jnp.float64)})
        _, state = tx.update({"w": jnp.ones(2, jnp.float64)}, state)
        assert state.mu["w"].dtype == jnp.float32
        assert state.nu["w"].dtype == jnp.float64
        assert state.hyperparams["b1"].dtype == jnp.float64
