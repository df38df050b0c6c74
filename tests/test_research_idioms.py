"""Research idioms that build optimizers from traced values: optax's
``inject_hyperparams``, ``jax.vmap`` sweeps, meta-gradients and MAML.

A hyperparameter given as a JAX array or tracer is owned by the caller (see
:mod:`adam_tx.hyperparams`): these tests check that it takes effect and that
the numbers match optax, which builds its optimizers the same way.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx

PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([0.1])}
GRADS = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([-0.5])}

# Factories whose every argument optax.inject_hyperparams can inject.
INJECTABLE = ["adam", "adamw", "adabelief"]


def _loss(p):
    return jnp.sum((p["w"] - 1.0) ** 2) + jnp.sum(jnp.sin(p["b"]))


@pytest.mark.parametrize("name", INJECTABLE)
@pytest.mark.parametrize("jit", [False, True])
def test_inject_hyperparams_matches_optax_and_takes_effect(name, jit):
    ours = optax.inject_hyperparams(getattr(adam_tx, name), static_args=("seed",))
    theirs = optax.inject_hyperparams(getattr(optax, name))
    tx, ref = ours(learning_rate=0.1), theirs(learning_rate=0.1)
    update = jax.jit(tx.update) if jit else tx.update
    s, r = tx.init(PARAMS), ref.init(PARAMS)
    for _ in range(3):
        u, s = update(GRADS, s, PARAMS)
        v, r = ref.update(GRADS, r, PARAMS)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_allclose(a, b, rtol=3e-5, atol=1e-8)
    # Setting the injected value is the one way to change it, and it works.
    s = s._replace(hyperparams={**s.hyperparams, "learning_rate": jnp.float32(0.0)})
    u, _ = update(GRADS, s, PARAMS)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(u))


def test_injected_values_are_not_stored_twice():
    tx = optax.inject_hyperparams(adam_tx.adamw, static_args=("seed",))(0.1)
    state = tx.init(PARAMS)
    # One learning rate in the whole state: the wrapper's.
    assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(
        0.1
    )
    assert "b1" not in adam_tx.get_hyperparams(state.inner_state)
    state = optax.tree_utils.tree_set(state, learning_rate=0.5)
    assert float(state.hyperparams["learning_rate"]) == 0.5


def test_tree_get_finds_learning_rate_of_a_plain_adam_tx_optimizer():
    tx = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(0.1))
    state = tx.init(PARAMS)
    assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(
        0.1
    )


def _run(make, lr, steps=3):
    tx = make(lr)
    params, state = PARAMS, tx.init(PARAMS)
    for _ in range(steps):
        g = jax.grad(_loss)(params)
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
    return params


@pytest.mark.parametrize("name", ["adam", "adamw", "adabelief", "nadam"])
def test_vmap_learning_rate_sweep_matches_optax(name):
    lrs = jnp.array([1e-3, 1e-2, 1e-1])
    ours = jax.vmap(lambda lr: _run(getattr(adam_tx, name), lr))(lrs)
    theirs = jax.vmap(lambda lr: _run(getattr(optax, name), lr))(lrs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # ...and each row is the run with that constant learning rate.
    one = _run(getattr(adam_tx, name), 1e-2)
    np.testing.assert_allclose(ours["w"][1], one["w"], rtol=1e-6)


# Against optax, float32 results differ by a few ulps: adam_tx takes 1 - b from
# the float64 value and optax from float32 (see adam_tx.hyperparams.Hyper), so
# the comparisons with optax allow 3e-5 (updates) and 1e-4 (gradients through
# three steps).


def test_meta_gradient_wrt_learning_rate_matches_finite_differences():
    meta = lambda lr: _loss(_run(adam_tx.adamw, lr, steps=4))
    lr = 0.05
    grad = jax.grad(meta)(lr)
    with jax.enable_x64(True):
        meta64 = lambda lr: _loss(
            jax.tree.map(lambda x: x.astype(jnp.float64), _run(adam_tx.adamw, lr, 4))
        )
        h = 1e-4
        fd = (meta64(lr + h) - meta64(lr - h)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=2e-3)
    np.testing.assert_allclose(
        grad, jax.grad(lambda lr: _loss(_run(optax.adamw, lr, 4)))(lr), rtol=1e-5
    )


def test_meta_gradient_through_b1():
    meta = lambda b1: _loss(_run(lambda lr: adam_tx.adam(0.05, b1=b1), 0.0, steps=4))
    theirs = lambda b1: _loss(_run(lambda lr: optax.adam(0.05, b1=b1), 0.0, steps=4))
    np.testing.assert_allclose(jax.grad(meta)(0.9), jax.grad(theirs)(0.9), rtol=5e-4)


def test_maml_step_matches_optax():
    """One MAML outer step: inner adam steps, differentiated through."""

    def inner(make, params):
        tx = make(0.1)
        state = tx.init(params)
        for _ in range(2):
            u, state = tx.update(jax.grad(_loss)(params), state, params)
            params = optax.apply_updates(params, u)
        return _loss(jax.tree.map(lambda x: x * 1.5, params))

    ours = jax.grad(lambda p: inner(adam_tx.adam, p))(PARAMS)
    theirs = jax.grad(lambda p: inner(optax.adam, p))(PARAMS)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(ours))


def test_jit_of_a_factory_called_inside():
    @jax.jit
    def step(lr, params):
        tx = adam_tx.adamw(lr)
        u, _ = tx.update(GRADS, tx.init(params), params)
        return u

    u = step(0.1, PARAMS)
    tx = adam_tx.adamw(0.1)
    v, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
    np.testing.assert_allclose(u["w"], v["w"], rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["adam", "adamw", "nadam", "nadamw", "amsgrad", "adabelief"]
)
def test_complex_parameters_match_optax(name):
    params = {"z": jnp.array([1 + 1j, -0.5 + 2j, 0.3 - 0.1j], jnp.complex64)}
    grads = {"z": jnp.array([0.0 + 1j, 2.0 - 0.5j, -1.0 + 0.0j], jnp.complex64)}
    ours, theirs = getattr(adam_tx, name)(0.1), getattr(optax, name)(0.1)
    s, r = ours.init(params), theirs.init(params)
    for _ in range(3):
        u, s = ours.update(grads, s, params)
        v, r = theirs.update(grads, r, params)
        np.testing.assert_allclose(u["z"], v["z"], rtol=3e-5, atol=1e-8)
    # An imaginary gradient moves the parameter along the imaginary axis only.
    # (Purely imaginary parameters, so that weight decay also stays on that axis.)
    params = {"z": jnp.array([1j, -2j, 0.5j], jnp.complex64)}
    u, _ = ours.update({"z": jnp.full(3, 1j, jnp.complex64)}, ours.init(params), params)
    np.testing.assert_allclose(jnp.real(u["z"]), 0.0, atol=1e-7)


def test_complex_moment_dtype_is_accepted():
    tx = adam_tx.adam(0.1, mu_dtype=jnp.complex64)
    state = tx.init({"z": jnp.ones(2, jnp.complex64)})
    assert state[0].mu["z"].dtype == jnp.complex64


@pytest.mark.parametrize("name", ["adam", "adamw", "radam", "lamb"])
def test_inject_hyperparams_with_complex_parameters_matches_optax(name):
    # inject_hyperparams casts its values to the parameters' dtype: with
    # complex parameters every rate arrives as complex, imaginary part 0.
    p = {"w": jnp.array([1 + 1j, -1 - 1j, 0.5j], jnp.complex64)}
    ours = optax.inject_hyperparams(getattr(adam_tx, name))(learning_rate=0.01)
    theirs = optax.inject_hyperparams(getattr(optax, name))(learning_rate=0.01)
    s, t = ours.init(p), theirs.init(p)
    for _ in range(3):
        u, s = jax.jit(ours.update)(p, s, p)
        v, t = theirs.update(p, t, p)
        np.testing.assert_allclose(u["w"], v["w"], rtol=1e-5, atol=1e-8)


def test_a_complex_rate_with_an_imaginary_part_is_refused():
    with pytest.raises(TypeError, match="b1"):
        adam_tx.adam(1e-3, b1=jnp.asarray(0.9 + 0.1j, jnp.complex64))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop", "lamb", "radam"])
def test_injected_state_keeps_its_structure_across_updates(name):
    # A value the wrapper owns is never written into the inner state: the
    # state after a step has the structure of the state from init (else jit
    # recompiles and lax.scan refuses the carry).
    p = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    tx = optax.inject_hyperparams(getattr(adam_tx, name))(learning_rate=0.1)
    s0 = tx.init(p)
    _, s1 = jax.jit(tx.update)(p, s0, p)
    assert jax.tree.structure(s0) == jax.tree.structure(s1)
    found = optax.tree_utils.tree_get_all_with_path(s1, "learning_rate")
    assert len(found) == 1, found

    def body(state, _):
        return tx.update(p, state, p)[1], None

    jax.lax.scan(body, s0, None, length=2)
