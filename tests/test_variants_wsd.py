"""The WSD schedule (adam_tx/variants/wsd.py) and the loss-spike guard
(adam_tx/variants/spikes.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_variants as RV

import adam_tx
from adam_tx import variants as V
from adam_tx._engine.validate import probe_steps

# ------------------------------------------------------------------------ WSD


@pytest.mark.parametrize("cooldown", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("warmup", [0, 10])
def test_wsd_matches_the_paper(cooldown, warmup):
    """Every step of a 100-step run and past it, jitted and eager, against the
    float64 formula (float32: measured <= 6e-8 absolute on a peak of 1)."""
    kw = dict(warmup_steps=warmup, decay_steps=20, init_value=0.1, end_value=0.01)
    s = V.wsd_schedule(1.0, 100, cooldown=cooldown, **kw)
    ts = np.arange(0, 111)
    got = np.asarray(jax.jit(jax.vmap(s))(jnp.asarray(ts, jnp.int32)))
    want = [RV.wsd(t, 1.0, 100, warmup, 20, 0.1, 0.01, cooldown=cooldown) for t in ts]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)
    for t in (0, 5, 85, 99, 100, 10**12):  # Python ints of any size
        want_t = RV.wsd(t, 1.0, 100, warmup, 20, 0.1, 0.01, cooldown=cooldown)
        assert float(s(t)) == pytest.approx(want_t, abs=2e-7)


def test_wsd_horizon_is_probed_at_construction():
    s = V.wsd_schedule(3e-4, 5000)
    assert s.horizon == 5000
    assert {2500, 5000, 5001} <= set(probe_steps(s))
    opt = adam_tx.adamw(s)  # the learning rate check probes the horizon
    assert opt is not None


def test_wsd_default_cooldown_is_a_fifth():
    s = V.wsd_schedule(1.0, 1000)
    assert float(s(799)) == 1.0 and float(s(800)) == 1.0 and float(s(801)) < 1.0
    assert float(s(1000)) == 0.0


def test_wsd_drives_an_optimizer():
    s = V.wsd_schedule(0.1, 10, warmup_steps=2, decay_steps=4, cooldown="linear")
    opt = adam_tx.sgd(s)
    p = jnp.zeros(1)
    state = opt.init(p)
    steps = []
    for _ in range(11):
        u, state = opt.update(jnp.ones(1), state, p)
        steps.append(-float(u[0]))
    np.testing.assert_allclose(steps, [float(s(t)) for t in range(11)], rtol=1e-6)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"peak_value": -1.0}, ValueError, "peak_value=-1.0"),
        ({"total_steps": 0}, ValueError, "total_steps=0"),
        ({"total_steps": 10.5}, TypeError, "total_steps"),
        ({"warmup_steps": 8, "decay_steps": 5}, ValueError, "warmup_steps=8"),
        ({"decay_fraction": 1.5}, ValueError, "decay_fraction=1.5"),
        ({"decay_fraction": 0.0}, ValueError, "decay_fraction=0.0"),
        ({"cooldown": "sqrt"}, ValueError, "cooldown='sqrt'"),
        ({"end_value": float("nan")}, ValueError, "end_value=nan"),
        ({"peak_value": lambda t: 1.0}, TypeError, "peak_value"),
    ],
)
def test_wsd_bad_arguments_name_the_argument(kw, error, match):
    args = {"peak_value": 1.0, "total_steps": 10, **kw}
    with pytest.raises(error, match=match):
        V.wsd_schedule(**args)


# ----------------------------------------------------------------- the guard


def guarded(inner=None, **kw):
    kw.setdefault("warmup_steps", 3)
    return V.skip_spikes(inner or adam_tx.adamw(1e-2), 3.0, **kw)


def run(opt, losses, scales=None, params=None):
    """Steps with gradients ``scale * g0`` and the given losses; returns the
    updates and states after each step."""
    params = params or {"w": jnp.linspace(-1.0, 1.0, 6), "b": jnp.ones(2)}
    g0 = jax.tree.map(lambda p: jnp.cos(3 * p) + 0.1, params)
    state = opt.init(params)
    step = jax.jit(lambda g, s, p, loss: opt.update(g, s, p, loss=loss))
    out = []
    for i, loss in enumerate(losses):
        scale = 1.0 if scales is None else scales[i]
        g = jax.tree.map(lambda x, scale=scale: scale * x, g0)
        u, state = step(g, state, params, jnp.float32(loss))
        out.append((u, state))
    return out


def zero(u):
    return all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))


def test_a_loss_spike_is_skipped_and_leaves_the_state_bit_identical():
    steps = run(guarded(), [2.0, 2.1, 1.9, 2.0, 9.0, 2.0])
    u, state = steps[4]
    assert zero(u) and int(state.total) == 1 and int(state.consecutive) == 1
    before = steps[3][1]
    for a, b in zip(
        jax.tree.leaves(state.inner_state), jax.tree.leaves(before.inner_state)
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(state.loss_ema, before.loss_ema)  # not absorbed
    assert int(state.accepted) == 4 and float(state.loss) == 9.0
    u, state = steps[5]
    assert not zero(u) and int(state.consecutive) == 0 and int(state.accepted) == 5


def test_a_gradient_norm_spike_is_skipped():
    steps = run(guarded(), [1.0] * 6, scales=[1, 1, 1.2, 0.9, 10.0, 1.0])
    assert [zero(u) for u, _ in steps] == [False] * 4 + [True, False]
    assert float(steps[4][1].grad_norm) > 3 * float(steps[3][1].grad_norm)


def test_no_spike_is_judged_during_warmup_and_without_a_loss():
    steps = run(guarded(warmup_steps=4), [1.0, 50.0, 1.0, 1.0, 1.0])
    assert not any(zero(u) for u, _ in steps)
    opt = guarded()  # no loss: only the gradient norm is watched
    p = {"w": jnp.ones(3)}
    s = opt.init(p)
    for scale in (1.0, 1.0, 1.0, 1.0, 100.0):
        u, s = opt.update({"w": jnp.full(3, scale)}, s, p)
    assert zero(u) and int(s.total) == 1


def test_nonfinite_steps_are_skipped_too():
    steps = run(guarded(), [1.0, float("nan"), 1.0], scales=[1.0, 1.0, jnp.inf])
    assert [zero(u) for u, _ in steps] == [False, True, True]
    assert int(steps[-1][1].total) == 2 and int(steps[-1][1].accepted) == 1


def test_max_consecutive_gives_in_to_a_new_level():
    """The loss moves to a new level for good: after 2 refusals the guard takes
    the next step and restarts its means there (warmup included)."""
    losses = [1.0] * 4 + [10.0] * 5 + [10.5, 60.0]
    steps = run(guarded(max_consecutive=2), losses)
    skipped = [zero(u) for u, _ in steps]
    assert skipped == [False] * 4 + [True, True] + [False] * 4 + [True]
    assert int(steps[6][1].accepted) == 1


def test_running_mean_is_bias_corrected():
    steps = run(guarded(decay=0.9), [2.0, 4.0])
    s = steps[-1][1]
    want = (0.1 * 0.9 * 2.0 + 0.1 * 4.0) / (1 - 0.9**2)
    assert float(V.spikes.running_mean(s.loss_ema, s.accepted, 0.9)) == pytest.approx(
        want, rel=1e-6
    )


def test_fused_and_plain_inner_agree():
    """An adam_tx inner is fused with the guard; an optax one runs unfused:
    same decisions, same steps (optax's float32 bias correction: 2e-5)."""
    losses = [2.0, 2.1, 1.9, 2.0, 9.0, 2.0]
    fused = run(guarded(adam_tx.adamw(1e-2)), losses)
    plain = run(guarded(optax.adamw(1e-2)), losses)
    for (u1, s1), (u2, s2) in zip(fused, plain):
        assert int(s1.total) == int(s2.total)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-9)


def test_guard_composes_with_skip_nonfinite_and_chain():
    opt = adam_tx.skip_nonfinite(guarded())
    steps = run(opt, [1.0, 1.0, 1.0, 1.0, 20.0, 1.0])
    u, s = steps[4]
    assert zero(u) and int(s.total) == 0 and int(s.inner_state.total) == 1
    chained = optax.chain(guarded(), optax.scale(1.0))  # extra args pass through
    steps = run(chained, [1.0, 1.0, 1.0, 1.0, 20.0])
    assert zero(steps[4][0])


def test_guard_under_donation():
    opt = guarded()
    p = {"w": jnp.ones((4, 3))}
    s = opt.init(p)
    ids = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(s)]
    assert len(ids) == len(set(ids))

    @jax.jit
    def step(p, s, loss):
        u, s = opt.update(jax.tree.map(jnp.ones_like, p), s, p, loss=loss)
        return optax.apply_updates(p, u), s

    donated = jax.jit(step, donate_argnums=(0, 1))
    for _ in range(3):
        p, s = donated(p, s, jnp.float32(1.0))
    assert int(s.accepted) == 3


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"factor": 1.0}, ValueError, "factor=1.0"),
        ({"factor": lambda t: 3.0}, TypeError, "factor"),
        ({"decay": 1.0}, ValueError, "decay=1.0"),
        ({"warmup_steps": -1}, ValueError, "warmup_steps"),
        ({"max_consecutive": 0}, ValueError, "max_consecutive"),
        ({"inner": "adamw"}, TypeError, "inner"),
    ],
)
def test_guard_bad_arguments_name_the_argument(kw, error, match):
    args = {"inner": adam_tx.adamw(1e-3), **kw}
    with pytest.raises(error, match=match):
        V.skip_spikes(**args)


def test_guard_refuses_a_non_scalar_loss():
    opt = guarded()
    p = jnp.ones(2)
    with pytest.raises(ValueError, match="loss must be a scalar"):
        opt.update(jnp.ones(2), opt.init(p), p, loss=jnp.ones(2))
