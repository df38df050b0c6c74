"""How moments are stored: dtypes, stochastic rounding, int8 (adam_tx/state_format.py,
adam_tx/rounding.py, adam_tx/memory.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx
from adam_tx.quantization import Blocks
from adam_tx.rounding import stochastic_round_bf16

BF16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)

# Every moment-based transform, and the fields holding its moments.
SCALERS = {
    "adam": (adam_tx.scale_by_adam, ("mu", "nu")),
    "nadam": (lambda **kw: adam_tx.scale_by_adam(nesterov=True, **kw), ("mu", "nu")),
    "amsgrad": (adam_tx.scale_by_amsgrad, ("mu", "nu", "nu_max")),
    "adabelief": (adam_tx.scale_by_belief, ("mu", "nu")),
    "adamax": (adam_tx.scale_by_adamax, ("mu", "nu")),
}
ALIASES = ["adam", "adamw", "nadam", "nadamw", "amsgrad", "adabelief", "adamax"]


def mixed_params():
    """One leaf large enough to quantize (>= 4096 elements) and small ones."""
    rng = np.random.default_rng(0)
    return {
        "big": jnp.asarray(rng.normal(size=(80, 64)), jnp.float32),
        "small": jnp.asarray(rng.normal(size=(7, 3)), jnp.float32),
        "scalar": jnp.asarray(0.5, jnp.float32),
    }


def grads_at(params, step):
    return jax.tree.map(lambda p: jnp.sin(p * (step + 1.0)) + 0.1 * p, params)


def moment_state(opt_state):
    """The scale_by_* state inside an alias's chain state."""
    return opt_state[0] if isinstance(opt_state, tuple) else opt_state


@pytest.mark.parametrize("name", list(SCALERS))
@pytest.mark.parametrize("mu_dtype, nu_dtype", [(BF16, F32), (F32, BF16)])
def test_mu_and_nu_dtypes_are_independent(name, mu_dtype, nu_dtype):
    make, fields = SCALERS[name]
    tx = make(mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    params = mixed_params()
    state = tx.init(params)
    _, state = jax.jit(tx.update)(grads_at(params, 0), state)
    for field in fields:
        want = mu_dtype if field == "mu" else nu_dtype
        assert {x.dtype for x in jax.tree.leaves(getattr(state, field))} == {want}


# adamw runs every format in test_state_is_stable_under_jit_scan_and_flatten.
@pytest.mark.parametrize(
    "name, fmt", [(name, "int8") for name in ALIASES] + [("amsgrad", "stochastic")]
)
def test_aliases_take_the_state_format(name, fmt):
    kw = {"mu_dtype": BF16, "nu_dtype": BF16} if fmt == "stochastic" else {}
    opt = getattr(adam_tx, name)(1e-2, state_format=fmt, **kw)
    params = mixed_params()
    state = opt.init(params)
    ref = getattr(adam_tx, name)(1e-2)
    ref_state = ref.init(params)
    step = jax.jit(opt.update)
    for t in range(2):
        g = grads_at(params, t)
        u, state = step(g, state, params)
        u_ref, ref_state = ref.update(g, ref_state, params)
    inner = moment_state(state)
    if fmt == "int8":
        assert isinstance(inner.mu["big"], Blocks) and isinstance(
            inner.nu["big"], Blocks
        )
        assert inner.mu["small"].dtype == F32
    # Two steps from zero moments: every format stays close to float32.
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_ref)):
        np.testing.assert_allclose(a, b, rtol=0.1, atol=2e-3)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="state_format='fp8'"):
        adam_tx.adam(state_format="fp8")
    with pytest.raises(ValueError, match="seed=-1"):
        adam_tx.scale_by_adam(state_format="stochastic", seed=-1)
    with pytest.raises(ValueError, match="nu_dtype"):
        adam_tx.scale_by_belief(nu_dtype=jnp.int8)


def _adam_step_reference(m_old, v_old, g, t, b1=0.9, b2=0.999, eps=1e-8):
    """Adam's new moments and, from given moments, its update (float64)."""
    m = b1 * m_old + (1 - b1) * g
    v = b2 * v_old + (1 - b2) * g * g

    def update(m, v):
        return (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)

    return m, v, update


@pytest.mark.parametrize("kw", [{}, {"state_format": "stochastic"}])
def test_bfloat16_update_reads_the_stored_moments(kw):
    """With bfloat16 moments the update is computed from the moments as
    stored (rounded), as PyTorch's optimizers do with bfloat16 state
    (``state_format.reads_stored``), not from the unrounded new moments."""
    rng = np.random.default_rng(0)
    g1, g2 = (jnp.asarray(rng.normal(size=5000), F32) for _ in range(2))
    tx = adam_tx.scale_by_adam(mu_dtype=BF16, nu_dtype=BF16, **kw)
    step = jax.jit(tx.update)
    _, state = step(g1, tx.init(g1))
    m_old = np.asarray(state.mu, np.float64)
    v_old = np.asarray(state.nu, np.float64)
    u, state = step(g2, state)
    m, v, update = _adam_step_reference(m_old, v_old, np.asarray(g2, np.float64), 2)
    stored = update(np.asarray(state.mu, np.float64), np.asarray(state.nu, np.float64))
    np.testing.assert_allclose(np.asarray(u), stored, rtol=2e-6, atol=1e-7)
    # The unrounded moments give an update that differs by up to ~a bf16 step.
    assert np.max(np.abs(update(m, v) - stored)) > 1e-3


def test_int8_update_reads_the_unquantized_moments():
    """Blockwise codes are not read back: the update uses the new moments
    before quantization (from the dequantized old ones)."""
    rng = np.random.default_rng(1)
    g1, g2 = (jnp.asarray(rng.normal(size=(64, 128)), F32) for _ in range(2))
    tx = adam_tx.scale_by_adam(state_format="int8")
    step = jax.jit(tx.update)
    _, state = step(g1, tx.init(g1))
    assert isinstance(state.mu, Blocks)
    fmt_m = adam_tx.state_format.moment_format("mu_dtype", None, "int8")
    fmt_v = adam_tx.state_format.moment_format("nu_dtype", None, "int8", signed=False)
    m_old = np.asarray(fmt_m.load(state.mu, F32), np.float64)
    v_old = np.asarray(fmt_v.load(state.nu, F32), np.float64)
    u, state = step(g2, state)
    m, v, update = _adam_step_reference(m_old, v_old, np.asarray(g2, np.float64), 2)
    np.testing.assert_allclose(np.asarray(u), update(m, v), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------ stochastic rounding


def test_stochastic_rounding_is_unbiased():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=512) * 10 ** rng.uniform(-3, 3, 512), F32)
    draws = 2000
    keys = jax.random.split(jax.random.PRNGKey(0), draws)
    rounded = jax.vmap(lambda k: stochastic_round_bf16(x, k).astype(F32))(keys)
    ulp = jnp.abs(x) * 2.0**-7  # a bf16 step is at most 2^-7 of |x|
    mean_err = (rounded.mean(0) - x) / ulp
    # The mean of 2000 draws of an error in (-1, 1) ulp: standard error < 0.012.
    assert float(jnp.max(jnp.abs(mean_err))) < 0.06
    nearest_err = (x.astype(jnp.bfloat16).astype(F32) - x) / ulp
    assert float(jnp.mean(jnp.abs(nearest_err))) > 0.1  # nearest is biased per value
    # Every draw is one of the two bf16 neighbours.
    lo_hi = jnp.abs(rounded - x) <= ulp
    assert bool(jnp.all(lo_hi))


def test_stochastic_rounding_passes_special_values():
    x = jnp.array([0.0, -0.0, jnp.inf, -jnp.inf, jnp.nan, 1.0, -2.0], F32)
    r = stochastic_round_bf16(x, jax.random.PRNGKey(1)).astype(F32)
    np.testing.assert_array_equal(np.asarray(r), np.asarray(x))


def _second_moment_after(steps, **kw):
    """v after ``steps`` steps of a constant gradient 1 (fp32: 1 - 0.999^t)."""
    tx = adam_tx.scale_by_adam(nu_dtype=BF16, **kw)
    g = jnp.ones(2000, F32)

    def body(state, _):
        return tx.update(g, state)[1], None

    state, _ = jax.lax.scan(body, tx.init(g), None, length=steps)
    return float(state.nu.astype(F32).mean())


def test_stochastic_rounding_keeps_bf16_second_moment_moving():
    exact = 1 - 0.999**1500
    nearest = _second_moment_after(1500)
    sr = _second_moment_after(1500, state_format="stochastic")
    assert abs(nearest - exact) > 0.1  # stalls: 0.001 (1 - v) is under half a step
    assert abs(sr - exact) < 0.01


def test_stochastic_rounding_is_deterministic_per_seed_and_varies_by_leaf():
    params = {"a": jnp.full(4000, 0.3, F32), "b": jnp.full(4000, 0.3, F32)}
    grads = jax.tree.map(lambda p: p * 1.001, params)

    def run(seed):
        tx = adam_tx.scale_by_adam(
            mu_dtype=BF16, nu_dtype=BF16, state_format="stochastic", seed=seed
        )
        state = tx.init(params)
        for _ in range(2):
            _, state = tx.update(grads, state)
        return state

    s0, s0_again, s1 = run(0), run(0), run(1)
    assert s0.rng.dtype == jnp.uint32
    for x, y in zip(jax.tree.leaves(s0), jax.tree.leaves(s0_again)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(s0.mu["a"], s1.mu["a"])
    assert not np.array_equal(s0.mu["a"], s0.mu["b"])  # per-leaf keys


# ------------------------------------------------- structure, jit, scan


FORMATS = {
    "fp32": {},
    "bf16": {"mu_dtype": BF16, "nu_dtype": BF16},
    "bf16+SR": {"mu_dtype": BF16, "nu_dtype": BF16, "state_format": "stochastic"},
    "int8": {"state_format": "int8"},
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_state_is_stable_under_jit_scan_and_flatten(fmt):
    opt = adam_tx.adamw(1e-2, **FORMATS[fmt])
    params = mixed_params()
    state = opt.init(params)
    spec = jax.tree.map(lambda x: (x.shape, x.dtype), state)

    def body(carry, t):
        p, s = carry
        u, s = opt.update(grads_at(p, t), s, p)
        return (optax.apply_updates(p, u), s), None

    (params2, state2), _ = jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(4.0)))(
        (params, state)
    )
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state2) == spec
    leaves, treedef = jax.tree.flatten(state2)
    again = jax.tree.unflatten(treedef, [np.asarray(x) for x in leaves])
    assert jax.tree.structure(again) == jax.tree.structure(state)
    # The restored state continues exactly like the original.
    g = grads_at(params2, 9.0)
    u1, _ = opt.update(g, state2, params2)
    u2, _ = opt.update(g, again, params2)
    for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
        np.testing.assert_array_equal(a, b)


def test_int8_adam_tracks_fp32_adam():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(256, 64)), F32)
    w_true = jnp.asarray(rng.normal(size=(64, 96)), F32)
    y = jnp.tanh(x @ w_true)
    params = {"w": jnp.zeros((64, 96), F32), "b": jnp.zeros(96, F32)}

    def loss(p):
        return jnp.mean((jnp.tanh(x @ p["w"] + p["b"]) - y) ** 2)

    def train(opt, steps=300):
        def body(carry, _):
            p, s = carry
            value, g = jax.value_and_grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), value

        (_, s), losses = jax.jit(
            lambda p: jax.lax.scan(body, (p, opt.init(p)), None, length=steps)
        )(params)
        return np.asarray(losses), s

    ref, _ = train(adam_tx.adam(1e-2))
    q, state = train(adam_tx.adam(1e-2, state_format="int8"))
    assert isinstance(state[0].mu["w"], Blocks)
    assert ref[-1] < 0.2 * ref[0]  # the problem is actually being solved
    np.testing.assert_allclose(q[::25], ref[::25], rtol=0.05)


# ------------------------------------------------------------------ bytes


def test_state_bytes_and_report():
    params = {"big": jnp.zeros((128, 256)), "small": jnp.zeros(100)}
    n = 128 * 256
    fp32 = adam_tx.state_report(adam_tx.adam().init(params), params)
    bf16 = adam_tx.state_report(
        adam_tx.adam(mu_dtype=BF16, nu_dtype=BF16).init(params), params
    )
    int8 = adam_tx.state_report(adam_tx.adam(state_format="int8").init(params), params)
    assert fp32.large_bytes_per_param == 8.0 and bf16.large_bytes_per_param == 4.0
    assert int8.large_bytes == 2 * (n + 4 * n // 256)
    assert int8.large_bytes_per_param == pytest.approx(2.03125)
    # Totals include small leaves (float32 under int8) and the count/hyperparams.
    scalars = adam_tx.state_bytes(adam_tx.adam().init({}))
    assert fp32.total_bytes == 8 * (n + 100) + scalars
    assert int8.total_bytes == int8.large_bytes + 8 * 100 + scalars
    assert "bytes/param" in str(int8)
