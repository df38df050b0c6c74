"""stats(): the figures, where they are found, and jit/scan/vmap robustness."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx
from adam_tx._engine import fusion


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
        "norms_step": 1.0,
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


def _guarded(every=1):
    return adam_tx.loss_scaling(
        adam_tx.skip_nonfinite(
            adam_tx.chain(
                adam_tx.clip_by_global_norm(1.0),
                adam_tx.adamw(1e-2),
                adam_tx.track_stats(every=every),
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


@pytest.mark.parametrize("every", [1, 2])
def test_scan_matches_python_loop(every):
    opt, p = _guarded(every), _params()
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


@pytest.mark.parametrize("every", [1, 2])
def test_vmap_sweep_over_learning_rates(every):
    """A batch of independent optimizers: one learning rate per lane."""
    opt, p = _guarded(every), _params()
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


def _norm_run(every, steps=7, in_pass=None, guard=False, jit=True):
    """Stats after each of ``steps`` updates of a small donated training run."""
    rng = np.random.default_rng(1)
    shapes = {"w": (6, 40), "v": (2048,), "b": (7,), "s": ()}
    opt = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(0.1, weight_decay=0.1),
        adam_tx.track_stats(every=every),
    )
    if guard:
        opt = adam_tx.skip_nonfinite(opt)

    def step(params, state, grads):
        with fusion.reductions_in_pass(in_pass):
            u, state = opt.update(grads, state, params)
        return optax.apply_updates(params, u), state

    step = jax.jit(step, donate_argnums=(0, 1)) if jit else step
    params = {
        k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()
    }
    state = opt.init(params)
    logged = []
    for i in range(steps):
        grads = {
            k: jnp.asarray(rng.standard_normal(s), jnp.float32)
            for k, s in shapes.items()
        }
        if guard and i % 3 == 1:
            grads["b"] = grads["b"].at[0].set(jnp.inf)
        params, state = step(params, state, grads)
        logged.append({k: float(v) for k, v in adam_tx.stats(state).items()})
    return logged, params


def test_every_measures_on_steps_one_plus_multiples():
    every_step, _ = _norm_run(every=1)
    sparse, _ = _norm_run(every=3)
    assert [s["norms_step"] for s in sparse] == [1, 1, 1, 4, 4, 4, 7]
    for t, got in enumerate(sparse, start=1):
        measured = every_step[int(got["norms_step"]) - 1]
        for key in ("update_norm", "param_norm", "update_param_ratio"):
            assert got[key] == measured[key], (t, key)
        # Everything else is the step's own figure.
        assert got["grad_norm"] == every_step[t - 1]["grad_norm"]
    assert [s["norms_step"] for s in every_step] == list(range(1, 8))


def test_every_counts_only_steps_taken():
    """Under skip_nonfinite, skipped steps neither count nor measure."""
    logged, _ = _norm_run(every=2, steps=7, guard=True)
    # Steps 2 and 5 (i = 1, 4) are skipped: the inner count runs 1,1,2,3,3,4,5.
    assert [s["step"] for s in logged] == [1, 1, 2, 3, 3, 4, 5]
    assert [s["norms_step"] for s in logged] == [1, 1, 1, 3, 3, 3, 5]


@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("guard", [False, True], ids=["plain", "skip_nonfinite"])
def test_in_pass_sums_match_the_pre_pass(every, guard):
    """The GPU/TPU layout (norms as partials of the update pass) gives the same
    figures and the same training run as the CPU layout (a pre-pass)."""
    pre, p_pre = _norm_run(every, in_pass=False, guard=guard)
    fused, p_fused = _norm_run(every, in_pass=True, guard=guard)
    for a, b in zip(pre, fused, strict=True):
        assert set(a) == set(b)
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=2e-6, err_msg=key)
    for k in p_pre:
        np.testing.assert_array_equal(p_fused[k], p_pre[k])


def test_in_pass_on_an_empty_tree():
    opt = adam_tx.chain(adam_tx.sgd(0.1), adam_tx.track_stats())
    with fusion.reductions_in_pass(True):
        _, state = opt.update({}, opt.init({}), {})
    got = adam_tx.stats(state)
    assert float(got["update_norm"]) == 0.0 and float(got["norms_step"]) == 1.0


def test_backends_get_their_layout():
    """CPU lowers the row-of-8 pre-pass reduction; GPU and TPU sum in the pass."""
    opt = adam_tx.chain(adam_tx.adamw(1e-3), adam_tx.track_stats())
    p = {"w": jnp.ones((64, 24))}  # rows of 8: 64 x 3 x 8

    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return adam_tx.apply_updates(p, u), s

    traced = jax.jit(step).trace(p, opt.init(p), p)
    text = {
        platform: traced.lower(lowering_platforms=(platform,)).as_text()
        for platform in ("cpu", "cuda", "tpu")
    }
    assert "64x3x8xf32" in text["cpu"]
    assert "64x3x8xf32" not in text["cuda"] and "64x3x8xf32" not in text["tpu"]
    with fusion.reductions_in_pass(True):  # what the tests above force on CPU
        # A new function: jit reuses the trace of one it has seen.
        forced_step = lambda p, s, g: step(p, s, g)
        forced = jax.jit(forced_step).trace(p, opt.init(p), p).lower().as_text()
    assert "64x3x8xf32" not in forced


@pytest.mark.parametrize("every", [0, -2, 1.5, "3", True])
def test_every_is_validated(every):
    with pytest.raises((ValueError, TypeError), match="every"):
        adam_tx.track_stats(every=every)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_accelerator_layout_lowers_with_guards(platform):
    """The GPU/TPU branch (in-pass norms under both guards, plain sums of
    squares) traces and lowers here, so a mistake in it cannot wait for a
    device to show up."""
    opt = adam_tx.loss_scaling(
        adam_tx.skip_nonfinite(
            adam_tx.chain(
                adam_tx.clip_by_global_norm(1.0),
                adam_tx.adamw(1e-3),
                adam_tx.track_stats(every=2),
            )
        )
    )
    p = {"w": jnp.ones((64, 24)), "b": jnp.ones((7,))}

    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return adam_tx.apply_updates(p, u), s, adam_tx.stats(s)

    traced = jax.jit(step, donate_argnums=(0, 1)).trace(p, opt.init(p), p)
    text = traced.lower(lowering_platforms=(platform,)).as_text()
    assert "64x3x8xf32" not in text  # no CPU rows
    assert "stablehlo.reduce" in text


def test_every_keeps_measuring_after_the_step_count_saturates():
    """track_stats(every=3) counts its own countdown: once its step count is
    stuck at the int32 maximum it still measures on every third step."""
    from adam_tx._engine.counting import INT32_MAX

    opt = adam_tx.chain(adam_tx.sgd(0.1), adam_tx.track_stats(every=3))
    p = jnp.ones(4)
    grads = [jnp.full(4, float(t + 1)) for t in range(7)]

    def measured(state):
        out = []
        for g in grads:
            _, state = opt.update(g, state, p)
            out.append(float(state[-1].update_norm))
        return out, state

    fresh, _ = measured(opt.init(p))
    state = opt.init(p)
    stuck = state[-1]._replace(count=jnp.int32(INT32_MAX - 1))
    late, state = measured(state[:-1] + (stuck,))
    assert late == fresh
    np.testing.assert_allclose(fresh, [0.2, 0.2, 0.2, 0.8, 0.8, 0.8, 1.4], rtol=1e-6)
    assert int(state[-1].count) == INT32_MAX


def _switched():
    return adam_tx.switch(adam_tx.adamw(0.1), adam_tx.sgd(0.5, momentum=0.9), at_step=2)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_stats_report_the_optimizer_in_force_after_a_switch(jit):
    opt = adam_tx.skip_nonfinite(_switched())
    p = jnp.ones(3)
    update = jax.jit(opt.update) if jit else opt.update
    report = jax.jit(adam_tx.stats) if jit else adam_tx.stats
    state, seen = opt.init(p), []
    assert float(report(state)["learning_rate"]) == pytest.approx(0.1)
    for _ in range(4):
        _, state = update(jnp.ones(3), state, p)
        seen.append({k: float(v) for k, v in report(state).items()})
    assert [s["step"] for s in seen] == [1, 2, 1, 2]  # the one in force's steps
    np.testing.assert_allclose([s["learning_rate"] for s in seen], [0.1, 0.1, 0.5, 0.5])
    # b1 belongs to adamw alone: not reported for a state that switches.
    assert "b1" not in seen[0] and seen[0]["grad_norm"] == pytest.approx(3**0.5)


def test_stats_in_force_under_scan():
    opt, p = _switched(), jnp.ones(2)

    def step(state, _):
        _, state = opt.update(jnp.ones(2), state, p)
        return state, adam_tx.stats(state)["learning_rate"]

    _, lrs = jax.lax.scan(step, opt.init(p), None, length=4)
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.5, 0.5], rtol=1e-6)


def test_grad_norm_is_the_unscaled_one_under_an_outer_guard():
    opt = adam_tx.skip_nonfinite(adam_tx.loss_scaling(adam_tx.sgd(0.1), init_scale=8.0))
    p = jnp.zeros(2)
    _, state = opt.update(jnp.array([3.0, 4.0]) * 8.0, opt.init(p), p)
    assert float(adam_tx.stats(state)["grad_norm"]) == 5.0
