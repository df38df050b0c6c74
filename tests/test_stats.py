"""stats(): the figures, where they are found, and jit/scan/vmap robustness."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx


def _params():
    return {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.1, -0.2])}


def _grads(scale=1.0):
    return {"w": scale * jnp.array([[3.0, 0.0], [0.0, 4.0]]), "b": jnp.zeros(2)}


def _optimizer():
    return adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(0.1, weight_decay=0.0),
        adam_tx.track_stats(),
    )


def test_values():
    opt, p = _optimizer(), _params()
    u, state = opt.update(_grads(), opt.init(p), p)
    got = adam_tx.stats(state)
    assert all(v.dtype == jnp.float32 and v.shape == () for v in got.values())
    u_norm = float(adam_tx.global_norm(u))
    p_norm = float(adam_tx.global_norm(p))
    want = {
        "step": 1.0,
        "learning_rate": 0.1,
        "b1": 0.9,
        "grad_norm": 5.0,
        "clip_factor": 0.2,
        "update_norm": u_norm,
        "param_norm": p_norm,
        "update_param_ratio": u_norm / p_norm,
    }
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(float(got[k]), v, rtol=1e-6, err_msg=k)


def test_no_clipping_reports_factor_one():
    opt = adam_tx.adam(0.1)
    _, state = opt.update(_grads(), opt.init(_params()), _params())
    got = adam_tx.stats(state)
    assert float(got["clip_factor"]) == 1.0 and "grad_norm" not in got


@pytest.mark.parametrize(
    "wrap",
    [
        lambda tx: tx,
        lambda tx: optax.named_chain(("opt", tx)),
        lambda tx: optax.masked(tx, lambda p: jax.tree.map(lambda _: True, p)),
        lambda tx: optax.MultiSteps(tx, every_k_schedule=1),
        lambda tx: adam_tx.skip_nonfinite(tx, max_consecutive=3),
        lambda tx: adam_tx.loss_scaling(tx, init_scale=4.0),
        lambda tx: adam_tx.loss_scaling(adam_tx.skip_nonfinite(tx)),
    ],
    ids=["chain", "named_chain", "masked", "MultiSteps", "skip", "scaling", "both"],
)
def test_found_by_type_anywhere(wrap):
    opt, p = wrap(_optimizer()), _params()
    state = opt.init(p)
    scale = 1.0
    if isinstance(state, adam_tx.LossScaleState):
        scale = float(state.scale)
    _, state = opt.update(_grads(scale), state, p)
    got = adam_tx.stats(state)
    np.testing.assert_allclose(float(got["grad_norm"]), 5.0, rtol=1e-6)
    np.testing.assert_allclose(float(got["clip_factor"]), 0.2, rtol=1e-6)
    assert float(got["learning_rate"]) == pytest.approx(0.1)
    assert float(got["step"]) == 1.0
    assert float(got["update_norm"]) > 0
    if "loss_scale" in got:
        assert float(got["loss_scale"]) == scale


def test_guard_counts_and_loss_scale():
    opt = adam_tx.loss_scaling(adam_tx.skip_nonfinite(adam_tx.adam(0.1)), init_scale=8)
    p = jnp.ones(2)
    state = opt.init(p)
    _, state = opt.update(jnp.array([jnp.inf, 0.0]), state, p)
    got = adam_tx.stats(state)
    assert float(got["skipped_steps"]) == 1.0  # counted once, not per wrapper
    assert float(got["loss_scale"]) == 4.0
    assert float(got["step"]) == 0.0


def test_learning_rate_changes_without_recompiling():
    opt, p = _optimizer(), _params()
    traces = []

    @jax.jit
    def step(params, state, lr):
        traces.append(1)
        state = adam_tx.set_hyperparams(state, learning_rate=lr)
        u, state = opt.update(_grads(), state, params)
        return adam_tx.apply_updates(params, u), state

    state, seen = opt.init(p), []
    for t in range(8):
        lr = 0.1 / (t + 1)
        p, state = step(p, state, lr)
        seen.append(float(adam_tx.stats(state)["learning_rate"]))
    assert len(traces) == 1
    np.testing.assert_allclose(seen, [0.1 / (t + 1) for t in range(8)], rtol=1e-6)

    # Setting it outside the step (between calls) reuses the compiled step too.
    step_plain = jax.jit(lambda p, s: opt.update(_grads(), s, p))
    step_plain(p, state)
    before = step_plain._cache_size()
    for lr in (1e-3, 2e-3, 3e-3):
        state = adam_tx.set_hyperparams(state, learning_rate=lr)
        _, state = step_plain(p, state)
    assert step_plain._cache_size() == before


def _guarded():
    return adam_tx.loss_scaling(
        adam_tx.skip_nonfinite(
            adam_tx.chain(
                adam_tx.clip_by_global_norm(1.0),
                adam_tx.adamw(1e-2),
                adam_tx.track_stats(),
            )
        ),
        init_scale=16.0,
        growth_interval=3,
    )


def _loss(p, x):
    return jnp.sum((p["w"] @ x - 1.0) ** 2) + jnp.sum(p["b"] ** 2)


def _grad_seq(n):
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(n, 2)), jnp.float32)
    poison = jnp.where(jnp.arange(n) % 5 == 3, jnp.inf, 0.0)
    return xs, poison


def _scaled_step(opt):
    def step(carry, inputs):
        p, s = carry
        x, poison = inputs
        g = jax.grad(lambda p: adam_tx.scale_loss(_loss(p, x), s))(p)
        g = {"w": g["w"] + poison, "b": g["b"]}
        u, s = opt.update(g, s, p)
        return (adam_tx.apply_updates(p, u), s), adam_tx.stats(s)

    return step


def test_scan_matches_python_loop():
    opt, p = _guarded(), _params()
    xs, poison = _grad_seq(12)
    step = _scaled_step(opt)
    (p_scan, s_scan), logged = jax.lax.scan(step, (p, opt.init(p)), (xs, poison))
    carry = (p, opt.init(p))
    jstep = jax.jit(step)
    for t in range(12):
        carry, _ = jstep(carry, (xs[t], poison[t]))
    for a, b in zip(jax.tree.leaves((p_scan, s_scan)), jax.tree.leaves(carry)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert logged["skipped_steps"].tolist()[-1] == 2.0
    assert logged["loss_scale"].shape == (12,)


def test_vmap_sweep_over_learning_rates():
    """A batch of independent optimizers: one learning rate per lane."""
    opt, p = _guarded(), _params()
    xs, poison = _grad_seq(6)
    lrs = jnp.array([1e-3, 1e-2, 1e-1])
    step = _scaled_step(opt)

    def run(lr):
        state = adam_tx.set_hyperparams(opt.init(p), learning_rate=lr)
        return jax.lax.scan(step, (p, state), (xs, poison))

    (p_b, s_b), logged = jax.jit(jax.vmap(run))(lrs)
    assert logged["learning_rate"].shape == (3, 6)
    np.testing.assert_allclose(logged["learning_rate"][:, -1], lrs, rtol=1e-6)
    for i, lr in enumerate(lrs.tolist()):
        (p_i, _), _ = run(lr)
        for k in p:
            np.testing.assert_allclose(p_b[k][i], p_i[k], rtol=1e-5, atol=1e-7)
    # Different learning rates, different parameters.
    assert not np.allclose(p_b["w"][0], p_b["w"][2])


def test_track_stats_needs_params():
    opt = adam_tx.chain(adam_tx.sgd(0.1), adam_tx.track_stats())
    with pytest.raises(ValueError, match="track_stats needs `params`"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "skip_nonfinite"])
def test_norms_in_a_donated_jitted_step(guard):
    """The norms read the old parameters although the step overwrites them."""
    rng = np.random.default_rng(0)
    shapes = {"w": (6, 40), "v": (2048,), "b": (7,)}
    opt = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(0.1, weight_decay=0.1),
        adam_tx.track_stats(),
    )
    if guard:
        opt = adam_tx.skip_nonfinite(opt)

    def step(params, state, grads):
        u, state = opt.update(grads, state, params)
        return optax.apply_updates(params, u), state, u

    jitted = jax.jit(step, donate_argnums=(0, 1))
    params = {
        k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()
    }
    # Fresh buffers: an init state may hold one array in two fields.
    state = jax.tree.map(jnp.copy, opt.init(params))
    last = None
    for i in range(4):
        grads = {
            k: jnp.asarray(rng.standard_normal(s), jnp.float32)
            for k, s in shapes.items()
        }
        if guard and i == 2:
            grads["b"] = grads["b"].at[0].set(jnp.nan)
        p_norm = float(adam_tx.global_norm(params))
        params, state, u = jitted(params, state, grads)
        got = adam_tx.stats(state)
        if guard and i == 2:  # skipped: the previous step's figures stay
            assert float(got["update_norm"]) == last
            continue
        want_u = float(adam_tx.global_norm(u))
        np.testing.assert_allclose(float(got["update_norm"]), want_u, rtol=1e-6)
        np.testing.assert_allclose(float(got["param_norm"]), p_norm, rtol=1e-6)
        last = float(got["update_norm"])
