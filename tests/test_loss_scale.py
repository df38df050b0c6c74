"""Dynamic loss scaling: torch GradScaler dynamics and a float16 training run."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adam_tx

# finite (True) / overflow (False) pattern exercising growth, backoff, resets.
PATTERN = [True] * 7 + [False, False, True, True, True, False] + [True] * 9


def gradscaler_reference(pattern, scale, growth, backoff, interval):
    """GradScaler.update as torch documents it, in plain Python."""
    tracker, out = 0, []
    for finite in pattern:
        if not finite:
            scale, tracker = scale * backoff, 0
        else:
            tracker += 1
            if tracker == interval:
                scale, tracker = scale * growth, 0
        out.append((scale, tracker))
    return out


def ours(pattern, **kwargs):
    opt = adam_tx.loss_scaling(adam_tx.sgd(0.1), **kwargs)
    p = jnp.zeros(3)
    state, out = opt.init(p), []
    update = jax.jit(opt.update)
    for finite in pattern:
        g = jnp.ones(3) if finite else jnp.array([1.0, jnp.inf, 0.0])
        _, state = update(g, state, p)
        out.append((float(state.scale), int(state.good_steps)))
    return out, state


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(init_scale=2.0**16, growth_interval=3),
        dict(init_scale=8.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=2),
    ],
)
def test_dynamics_match_gradscaler_reference(kwargs):
    got, state = ours(PATTERN, **kwargs)
    want = gradscaler_reference(
        PATTERN,
        kwargs["init_scale"],
        kwargs.get("growth_factor", 2.0),
        kwargs.get("backoff_factor", 0.5),
        kwargs["growth_interval"],
    )
    assert got == want
    assert int(state.overflows) == PATTERN.count(False)


def test_dynamics_match_live_torch():
    torch = pytest.importorskip("torch")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    w = torch.nn.Parameter(torch.zeros(3))
    sgd = torch.optim.SGD([w], lr=0.1)
    want = []
    for finite in PATTERN:
        sgd.zero_grad()
        scaler.scale(w.sum()).backward()
        if not finite:
            w.grad[1] = float("inf")
        scaler.step(sgd)
        scaler.update()
        want.append((scaler.get_scale(), int(scaler._growth_tracker)))
    got, _ = ours(PATTERN, init_scale=2.0**10, growth_interval=3)
    assert got == want


def test_min_and_max_scale_bound_the_scale():
    got, _ = ours([False] * 5, init_scale=8.0, min_scale=2.0)
    assert [s for s, _ in got] == [4.0, 2.0, 2.0, 2.0, 2.0]
    got, _ = ours([True] * 4, init_scale=8.0, growth_interval=1, max_scale=32.0)
    assert [s for s, _ in got] == [16.0, 32.0, 32.0, 32.0]


def test_unscaled_step_equals_unscaled_gradients():
    inner = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-2))
    opt = adam_tx.loss_scaling(inner, init_scale=1024.0)
    p = {"a": jnp.linspace(-1, 1, 6), "b": jnp.ones([])}
    g = {"a": jnp.linspace(0.5, 3, 6), "b": jnp.float32(-2.0)}
    u, s = opt.update(jax.tree.map(lambda x: x * 1024.0, g), opt.init(p), p)
    u_ref, _ = inner.update(g, inner.init(p), p)
    for k in p:
        np.testing.assert_allclose(u[k], u_ref[k], rtol=1e-6)
    np.testing.assert_allclose(s.grad_norm, adam_tx.global_norm(g), rtol=1e-6)
    assert float(adam_tx.stats(s)["loss_scale"]) == 1024.0


def test_unscaling_is_one_reduction_with_the_norm():
    p = {"a": jnp.ones((64, 64)), "b": jnp.ones(100)}
    inner = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3))

    def reductions(opt):
        txt = jax.jit(opt.update).lower(p, opt.init(p), p).compile().as_text()
        return len(re.findall(r" reduce\(", txt))

    assert reductions(adam_tx.loss_scaling(inner)) == reductions(inner)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("init_scale", 0.0),
        ("growth_factor", 1.0),
        ("backoff_factor", 1.0),
        ("growth_interval", 0),
        ("min_scale", -1.0),
    ],
)
def test_arguments_are_checked(name, value):
    with pytest.raises(ValueError, match=name):
        adam_tx.loss_scaling(adam_tx.adam(), **{name: value})


def test_scale_loss_needs_a_loss_scale_state():
    with pytest.raises(ValueError, match="loss_scaling"):
        adam_tx.scale_loss(1.0, adam_tx.adam().init(jnp.ones(2)))


# --- float16 training of a small Flax model --------------------------------
# The loss is tiny (1e-7 * MSE), so its gradient with respect to the float16
# activations (~1e-9) underflows to zero without scaling.
LOSS_FACTOR, STEPS = 1e-7, 100


def _train(compute_dtype, scaled):
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.tanh(nn.Dense(32, dtype=compute_dtype)(x))
            return nn.Dense(1, dtype=compute_dtype)(x)[:, 0]

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(128, 8)), jnp.float32)
    y = jnp.sin(x @ jnp.asarray(rng.normal(size=8), jnp.float32))
    model = MLP()
    params = model.init(jax.random.PRNGKey(0), x)  # float32 master weights
    inner = adam_tx.adam(1e-2, eps=1e-15)  # eps below the tiny gradients
    opt = adam_tx.loss_scaling(inner) if scaled else inner

    def loss_fn(p):
        err = model.apply(p, x.astype(compute_dtype)).astype(jnp.float32) - y
        return LOSS_FACTOR * jnp.mean(err**2)

    @jax.jit
    def step(p, s):
        scaled_loss = lambda p: adam_tx.scale_loss(loss_fn(p), s)
        g = jax.grad(scaled_loss if scaled else loss_fn)(p)
        u, s = opt.update(g, s, p)
        return adam_tx.apply_updates(p, u), s, g

    state, first = opt.init(params), float(loss_fn(params))
    for _ in range(STEPS):
        params, state, grads = step(params, state)
    return first, float(loss_fn(params)), grads, state


@pytest.mark.slow
def test_float16_training_needs_loss_scaling():
    first32, final32, _, _ = _train(jnp.float32, scaled=False)
    first16, final16, grads16, _ = _train(jnp.float16, scaled=False)
    _, final_scaled, _, state = _train(jnp.float16, scaled=True)
    assert final32 < 0.5 * first32
    # Unscaled float16: every gradient underflowed, the loss did not move.
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads16))
    assert final16 == first16
    # Scaled float16: within 2% of the float32 run.
    assert abs(final_scaled - final32) <= 0.02 * final32
    assert float(state.scale) >= 2.0**15  # the scale stayed in force


def test_foreign_inner_gets_unscaled_float32_gradients():
    """The unfused path (a non-adam_tx inner) unscales without underflow."""
    optax = pytest.importorskip("optax")
    p = jnp.zeros(3, jnp.float16)
    g = jnp.array([3e-8, 1e-3, -0.5], jnp.float32)  # 3e-8 underflows float16
    scaled = (g * 2.0**16).astype(jnp.float16)
    seen = []
    inner = optax.GradientTransformation(
        lambda p: optax.EmptyState(),
        lambda u, s, p=None: (seen.append(u) or u, s),
    )
    fused = adam_tx.loss_scaling(adam_tx.sgd(1.0))
    foreign = adam_tx.loss_scaling(inner)
    u_fused, _ = fused.update(scaled, fused.init(p), p)
    foreign.update(scaled, foreign.init(p), p)
    assert seen[0].dtype == jnp.float32
    np.testing.assert_allclose(seen[0], g, rtol=1e-3)
    assert float(seen[0][0]) != 0.0 and u_fused.dtype == jnp.float16


# --- nesting with skip_nonfinite ---------------------------------------------
NESTINGS = {
    "loss_scaling(tx)": lambda tx, **kw: adam_tx.loss_scaling(tx, **kw),
    "loss_scaling(skip_nonfinite(tx))": lambda tx, **kw: adam_tx.loss_scaling(
        adam_tx.skip_nonfinite(tx), **kw
    ),
    "skip_nonfinite(loss_scaling(tx))": lambda tx, **kw: adam_tx.skip_nonfinite(
        adam_tx.loss_scaling(tx, **kw)
    ),
}


def torch_scales(pattern, init_scale, growth_interval):
    """Live torch.amp.GradScaler: (scale, growth tracker) after each step."""
    torch = pytest.importorskip("torch")
    scaler = torch.amp.GradScaler(
        "cpu", init_scale=init_scale, growth_interval=growth_interval
    )
    w = torch.nn.Parameter(torch.zeros(3))
    sgd = torch.optim.SGD([w], lr=0.1)
    out = []
    for finite in pattern:
        sgd.zero_grad()
        scaler.scale(w.sum()).backward()
        if not finite:
            w.grad[1] = float("inf")
        scaler.step(sgd)
        scaler.update()
        out.append((scaler.get_scale(), int(scaler._growth_tracker)))
    return out


@pytest.mark.parametrize("nesting", list(NESTINGS))
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "foreign"])
def test_either_nesting_follows_torch_gradscaler(nesting, fused):
    """The outer guard skips the update but lets the loss scale back off."""
    optax = pytest.importorskip("optax")
    inner = adam_tx.sgd(0.1) if fused else optax.sgd(0.1)
    opt = NESTINGS[nesting](inner, init_scale=2.0**10, growth_interval=3)
    p = jnp.zeros(3)
    state, got, params = opt.init(p), [], []
    update = jax.jit(opt.update)
    for finite in PATTERN:
        g = jnp.ones(3) if finite else jnp.array([1.0, jnp.inf, 0.0])
        u, state = update(g * adam_tx.loss_scale.find_loss_scale(state).scale, state, p)
        p = adam_tx.apply_updates(p, u)
        ls = adam_tx.loss_scale.find_loss_scale(state)
        got.append((float(ls.scale), int(ls.good_steps)))
        params.append(float(p[0]))
    assert got == torch_scales(PATTERN, 2.0**10, 3)
    # Each skipped step counted once; the finite steps moved the parameters.
    assert float(adam_tx.stats(state)["skipped_steps"]) == PATTERN.count(False)
    np.testing.assert_allclose(params[-1], -0.1 * PATTERN.count(True), rtol=1e-6)


def _float16_run(nesting, steps=30):
    """A float16 model whose gradients overflow at 2**16 (so the scale backs
    off to 4096 before training can proceed), as in the issue."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, 4)), jnp.float16)
    opt = NESTINGS[nesting](adam_tx.adam(1e-2))
    p = {"w": jnp.asarray(rng.normal(size=4), jnp.float32)}

    def loss(p, s):
        pred = (x @ p["w"].astype(jnp.float16)) * jnp.float16(40.0)
        return adam_tx.scale_loss(jnp.mean(pred.astype(jnp.float32) ** 2), s)

    @jax.jit
    def step(p, s):
        g = jax.grad(lambda p: loss(p, s).astype(jnp.float16).astype(jnp.float32))(p)
        g = jax.tree.map(lambda v: v.astype(jnp.float16), g)
        u, s = opt.update(g, s, p)
        return adam_tx.apply_updates(p, u), s

    s, log = opt.init(p), []
    for _ in range(steps):
        p, s = step(p, s)
        log.append({k: float(v) for k, v in adam_tx.stats(s).items()})
    return p, log


def test_float16_training_is_the_same_in_either_nesting():
    runs = {n: _float16_run(n) for n in NESTINGS}
    p0, log0 = runs["loss_scaling(tx)"]
    keys = ("step", "skipped_steps", "loss_scale")
    last = {k: log0[-1][k] for k in keys}
    assert last["skipped_steps"] > 0 and last["step"] > 0  # it overflowed, then trained
    assert last["step"] + last["skipped_steps"] == 30
    for name, (p, log) in runs.items():
        assert [{k: e[k] for k in keys} for e in log] == [
            {k: e[k] for k in keys} for e in log0
        ], name
        np.testing.assert_array_equal(p["w"], p0["w"], err_msg=name)
    # The scale sequence is torch's on the same overflow pattern.
    pattern, skipped = [], 0.0
    for e in log0:
        pattern.append(e["skipped_steps"] == skipped)
        skipped = e["skipped_steps"]
    want = [s for s, _ in torch_scales(pattern, 2.0**16, 2000)]
    assert [e["loss_scale"] for e in log0] == want


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"inner": None}, TypeError, "inner must be an optax.GradientTransformation"),
        ({"growth_interval": 2**40}, ValueError, r"growth_interval=1099511627776"),
        ({"growth_interval": 2.0}, ValueError, "growth_interval"),
        ({"growth_interval": "3"}, TypeError, "growth_interval"),
        ({"max_scale": 1e39}, ValueError, "max_scale"),
        ({"min_scale": 1e39}, ValueError, "min_scale"),
        ({"init_scale": float("inf")}, ValueError, "init_scale"),
        ({"init_scale": 0.5}, ValueError, r"init_scale=0.5.*\[1.0"),
        ({"growth_factor": float("inf")}, ValueError, "growth_factor"),
        ({"backoff_factor": "0.5"}, TypeError, "backoff_factor"),
        ({"init_scale": lambda t: 1.0}, TypeError, "init_scale"),
    ],
)
def test_every_argument_is_named(kwargs, error, match):
    kwargs = {"inner": adam_tx.adam(), **kwargs}
    with pytest.raises(error, match=match):
        adam_tx.loss_scaling(**kwargs)
