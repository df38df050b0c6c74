"""skip_nonfinite: skipped steps leave no trace, fused or not."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx
from adam_tx._engine.counting import INT32_MAX


def _problem(seed=0, n=64, d=5):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(200, n, d)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(200, n)), jnp.float32)
    params = {"w": jnp.asarray(rng.normal(size=d), jnp.float32), "b": jnp.zeros([])}
    return params, x, y


def _loss(params, x, y):
    return jnp.mean((jnp.tanh(x @ params["w"]) + params["b"] - y) ** 2)


def _optimizers():
    lr = optax.cosine_decay_schedule(0.05, 200)  # moves with the inner count
    return {
        "fused": adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(lr)),
        "foreign": optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr)),
    }


@pytest.mark.parametrize("kind", ["fused", "foreign"])
def test_injected_steps_leave_no_trace(kind):
    """200 steps with NaN/Inf injected == the same run without those steps."""
    params0, xs, ys = _problem()
    opt = adam_tx.skip_nonfinite(_optimizers()[kind])

    @jax.jit
    def step(params, state, x, y, poison):
        g = jax.grad(_loss)(params, x, y)
        g = {"w": g["w"].at[1].add(poison), "b": g["b"]}
        u, state = opt.update(g, state, params)
        return adam_tx.apply_updates(params, u), state

    rng = np.random.default_rng(1)
    bad = set(rng.choice(200, size=30, replace=False).tolist())
    poisons = [np.nan, np.inf, -np.inf]

    params, state, batch = params0, opt.init(params0), 0
    for t in range(200):
        poison = poisons[t % 3] if t in bad else 0.0
        params, state = step(params, state, xs[batch], ys[batch], poison)
        batch += t not in bad
    clean, clean_state = params0, opt.init(params0)
    for b in range(batch):
        clean, clean_state = step(clean, clean_state, xs[b], ys[b], 0.0)

    for k in params:
        np.testing.assert_array_equal(np.asarray(params[k]), np.asarray(clean[k]))
    assert int(state.total) == len(bad) and int(clean_state.total) == 0
    inner = jax.tree.leaves(state.inner_state)
    for a, b in zip(inner, jax.tree.leaves(clean_state.inner_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kind", ["fused", "foreign"])
def test_counters_and_failure_flag(kind):
    opt = adam_tx.skip_nonfinite(_optimizers()[kind], max_consecutive=2)
    p = {"w": jnp.ones(3), "b": jnp.zeros([])}
    state = opt.init(p)
    good = {"w": jnp.ones(3), "b": jnp.ones([])}
    bad = {"w": jnp.array([1.0, jnp.nan, 1.0]), "b": jnp.ones([])}
    seen = []
    for g in (bad, bad, good, bad):
        u, state = opt.update(g, state, p)
        seen.append((int(state.total), int(state.consecutive), bool(state.failed)))
        if g is bad:
            assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(u))
    assert seen == [(1, 1, False), (2, 2, True), (2, 0, False), (3, 1, False)]
    stats = adam_tx.stats(state)
    assert float(stats["skipped_steps"]) == 3 and float(stats["nonfinite_failed"]) == 0


def test_fused_matches_plain_implementation():
    """The fused guard takes the same steps as the unfused fallback."""
    params0, xs, ys = _problem(2)
    fused = adam_tx.skip_nonfinite(adam_tx.adam(0.1))
    # A foreign member forces the plain path around the same adam_tx math.
    plain = adam_tx.skip_nonfinite(adam_tx.chain(adam_tx.adam(0.1), optax.identity()))
    results = []
    for opt in (fused, plain):
        p, s = params0, opt.init(params0)
        for t in range(6):
            g = jax.grad(_loss)(p, xs[t], ys[t])
            if t == 2:
                g = {"w": g["w"].at[0].set(jnp.inf), "b": g["b"]}
            u, s = opt.update(g, s, p)
            p = adam_tx.apply_updates(p, u)
        results.append(p)
    for k in params0:
        np.testing.assert_allclose(results[0][k], results[1][k], rtol=1e-6)


def test_guard_adds_no_reduction_to_clipping():
    """With clipping inside, the finiteness test and the norm are one reduction."""
    p = {"a": jnp.ones((64, 64)), "b": jnp.ones(100)}
    inner = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3))

    def reductions(opt):
        s = opt.init(p)
        txt = jax.jit(opt.update).lower(p, s, p).compile().as_text()
        return len(re.findall(r" reduce\(", txt))

    assert reductions(adam_tx.skip_nonfinite(inner)) == reductions(inner)


def test_counts_saturate_through_the_guard():
    opt = adam_tx.skip_nonfinite(adam_tx.adam(0.1))
    p = jnp.ones(2)
    state = opt.init(p)
    adam_state = state.inner_state[0]._replace(count=jnp.int32(INT32_MAX - 1))
    state = state._replace(
        total=jnp.int32(INT32_MAX),
        inner_state=(adam_state,) + state.inner_state[1:],
    )
    for g in (jnp.ones(2), jnp.ones(2), jnp.array([jnp.nan, 1.0])):
        u, state = jax.jit(opt.update)(g, state, p)
        assert bool(jnp.all(jnp.isfinite(u)))
    assert int(state.inner_state[0].count) == INT32_MAX
    assert int(state.total) == INT32_MAX


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_consecutive_is_checked(bad):
    with pytest.raises(ValueError, match="max_consecutive"):
        adam_tx.skip_nonfinite(adam_tx.adam(), max_consecutive=bad)


_STATEFUL = {
    "adam": lambda **kw: adam_tx.adam(0.05, **kw),
    "adamw_nesterov": lambda **kw: adam_tx.adamw(0.05, nesterov=True, **kw),
    "adabelief": lambda **kw: adam_tx.adabelief(0.05, **kw),
    "amsgrad_nu_hat": lambda **kw: adam_tx.amsgrad(0.05, max_of="nu_hat", **kw),
    "amsgrad_nu": lambda **kw: adam_tx.amsgrad(0.05, max_of="nu", **kw),
    "adamax": lambda **kw: adam_tx.adamax(0.05, **kw),
    "rmsprop": lambda: adam_tx.rmsprop(0.01, momentum=0.9),
    "rmsprop_centered": lambda: adam_tx.rmsprop(0.01, centered=True),
    "adagrad": lambda: adam_tx.adagrad(0.1),
    "sgd_momentum": lambda: adam_tx.sgd(0.1, momentum=0.9, nesterov=True),
}
_FORMATS = {
    "float32": {},
    "bfloat16": {"mu_dtype": jnp.bfloat16},
    "int8": {"state_format": "int8"},
    "stochastic": {"state_format": "stochastic"},
}
_CASES = [(o, "float32") for o in _STATEFUL] + [
    (o, f)
    for o in ("adam", "adabelief", "amsgrad_nu")
    for f in _FORMATS
    if f != "float32"
]


@pytest.mark.parametrize("name, fmt", _CASES)
def test_every_optimizer_and_format_skips_without_a_trace(name, fmt):
    """A skipped step leaves nothing behind, and finite steps are the unguarded
    steps: the guard computes the update from the moments it keeps
    (``Piece.guarded_leaf``) for float32 moments, and selects the update and
    the stored moments for rounded formats."""
    inner = _STATEFUL[name](**_FORMATS[fmt])
    guarded = adam_tx.loss_scaling(adam_tx.skip_nonfinite(inner), init_scale=1.0)
    rng = np.random.default_rng(3)
    # 4096 elements: large enough for int8 blocks, and a small leaf beside it.
    params = {
        "w": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
    }
    grads = [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        for _ in range(6)
    ]

    def run(opt, steps, poison_at=()):
        p, s = params, opt.init(params)
        step = jax.jit(lambda p, s, g: opt.update(g, s, p))
        for t, g in enumerate(steps):
            if t in poison_at:
                g = {"w": g["w"].at[3, 4].set(jnp.nan), "b": g["b"]}
            u, s = step(p, s, g)
            p = adam_tx.apply_updates(p, u)
        return p, s

    plain, _ = run(inner, grads)
    clean, clean_state = run(guarded, grads)
    poisoned, poisoned_state = run(guarded, grads[:2] + grads[1:2] + grads[2:], {2})
    for k in params:
        # The same program with and without the poisoned step: bit for bit.
        np.testing.assert_array_equal(poisoned[k], clean[k])
        # Another program (unguarded): XLA may fuse and round differently.
        np.testing.assert_allclose(clean[k], plain[k], rtol=1e-6, atol=1e-6)
    inner_state = poisoned_state.inner_state.inner_state
    clean_inner = clean_state.inner_state.inner_state
    for a, b in zip(jax.tree.leaves(inner_state), jax.tree.leaves(clean_inner)):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def debug_nans():
    previous = jax.config.jax_debug_nans
    jax.config.update("jax_debug_nans", True)
    try:
        yield
    finally:
        jax.config.update("jax_debug_nans", previous)


@pytest.mark.parametrize(
    "wrap",
    [
        adam_tx.skip_nonfinite,
        adam_tx.loss_scaling,
        lambda tx: adam_tx.skip_nonfinite(adam_tx.loss_scaling(tx)),
        lambda tx: adam_tx.loss_scaling(adam_tx.skip_nonfinite(tx)),
    ],
    ids=["skip", "scaling", "skip(scaling)", "scaling(skip)"],
)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_guards_run_under_jax_debug_nans(wrap, jit, debug_nans):
    """Guards start from finite values: init, finite steps and stats() raise
    nothing with jax_debug_nans on (NaN gradients still do: that is its job)."""
    opt = wrap(adam_tx.chain(adam_tx.adamw(0.1), adam_tx.track_stats()))
    p = {"w": jnp.ones(3), "b": jnp.zeros([])}
    init = jax.jit(opt.init) if jit else opt.init
    update = jax.jit(opt.update) if jit else opt.update
    state = init(p)
    assert float(adam_tx.stats(state)["grad_norm"]) == 0.0
    adam_tx.stats(state)  # update_param_ratio is 0, not 0 / 0
    for _ in range(2):
        _, state = update({"w": jnp.ones(3), "b": jnp.ones([])}, state, p)
    assert all(np.isfinite(float(v)) for v in adam_tx.stats(state).values())
    with pytest.raises(FloatingPointError):
        jax.block_until_ready(update({"w": jnp.full(3, jnp.nan), "b": 1.0}, state, p))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"inner": None}, TypeError, "inner must be an optax.GradientTransformation"),
        ({"inner": 3}, TypeError, "got 3 of type int"),
        ({"max_consecutive": 2**40}, ValueError, r"max_consecutive=1099511627776"),
        ({"max_consecutive": "2"}, TypeError, "max_consecutive"),
    ],
)
def test_arguments_are_named(kwargs, error, match):
    kwargs = {"inner": adam_tx.adam(), **kwargs}
    with pytest.raises(error, match=match):
        adam_tx.skip_nonfinite(**kwargs)


@pytest.mark.parametrize("kind", ["fused", "foreign"])
def test_inner_guard_counters_freeze_on_a_step_skipped_outside(kind):
    """A skip_nonfinite inside a skipping guard keeps its counters: each
    skipped step is counted once, by the outermost guard that refused it."""
    outer = adam_tx.skip_nonfinite(adam_tx.skip_nonfinite(_optimizers()[kind]))
    p = {"w": jnp.ones(3), "b": jnp.zeros([])}
    state = outer.init(p)
    for g in ({"w": jnp.full(3, jnp.inf), "b": jnp.ones([])},) * 2:
        _, state = outer.update(g, state, p)
    assert int(state.total) == 2 and int(state.inner_state.total) == 0
    assert float(adam_tx.stats(state)["skipped_steps"]) == 2
