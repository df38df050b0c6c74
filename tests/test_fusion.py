"""adam_tx.chain: optax.chain's state layout, mixing with optax pieces both ways,
nested chains and extra arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import reference as R

import adam_tx


def _pieces():
    return (
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.scale_by_adam(),
        adam_tx.add_decayed_weights(0.1),
        adam_tx.scale_by_learning_rate(1e-2),
    )


def test_same_state_layout_and_values_as_optax_chain(tree):
    fused, plain = adam_tx.chain(*_pieces()), optax.chain(*_pieces())
    s1, s2 = fused.init(tree), plain.init(tree)
    assert jax.tree.structure(s1) == jax.tree.structure(s2)
    for _ in range(3):
        u1, s1 = jax.jit(fused.update)(tree, s1, tree)
        u2, s2 = jax.jit(plain.update)(tree, s2, tree)
    assert jax.tree.structure(s1) == jax.tree.structure(s2)
    for a, b in zip(jax.tree.leaves((u1, s1)), jax.tree.leaves((u2, s2))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def test_fused_chain_matches_reference(mode):
    R.check_against_reference(
        lambda: adam_tx.chain(*_pieces()),
        lambda: R.Chain(
            R.ClipByGlobalNorm(1.0),
            R.Adam(),
            R.AddDecayedWeights(0.1),
            R.ScaleByLearningRate(1e-2),
        ),
        mode,
    )


def test_optax_pieces_inside_adam_tx_chain(mode):
    # Foreign transforms run between fused groups: trust ratio (LAMB) and a mask.
    mask = {"scalar": False, "mat": True, "nested": True}
    R.check_against_reference(
        lambda: adam_tx.chain(
            adam_tx.scale_by_adam(),
            optax.scale_by_trust_ratio(),
            optax.masked(adam_tx.add_decayed_weights(0.1), mask),
            adam_tx.scale_by_learning_rate(1e-2),
        ),
        lambda: R.Chain(
            R.Adam(),
            R.TrustRatio(),
            R.AddDecayedWeights(0.1, [True, True, True, True, False]),
            R.ScaleByLearningRate(1e-2),
        ),
        mode,
    )


def test_adam_tx_pieces_inside_optax_chain_and_nested_chains(tree):
    flat = adam_tx.chain(*_pieces())
    in_optax = optax.chain(*_pieces())
    nested = adam_tx.chain(adam_tx.chain(*_pieces()[:2]), adam_tx.chain(*_pieces()[2:]))
    mixed = optax.chain(adam_tx.chain(*_pieces()[:2]), optax.chain(*_pieces()[2:]))
    states = [t.init(tree) for t in (flat, in_optax, nested, mixed)]
    # Nested chains nest their states, as optax does.
    assert jax.tree.structure(states[2]) == jax.tree.structure(states[3])
    assert len(states[2]) == 2 and len(states[2][0]) == 2
    for _ in range(3):
        outs = []
        for i, t in enumerate((flat, in_optax, nested, mixed)):
            u, states[i] = jax.jit(t.update)(tree, states[i], tree)
            outs.append(u)
        for u in outs[1:]:
            for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(u)):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def _value_scaler():
    """A foreign transform that reads an extra argument (like a line search)."""

    def update(updates, state, params=None, *, value=None, **extra):
        del params, extra
        return jax.tree.map(lambda u: u * value, updates), state

    return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)


def test_extra_args_reach_foreign_members():
    tx = adam_tx.chain(
        adam_tx.scale_by_adam(), _value_scaler(), adam_tx.scale_by_learning_rate(0.1)
    )
    plain = adam_tx.chain(adam_tx.scale_by_adam(), adam_tx.scale_by_learning_rate(0.1))
    g = {"w": jnp.array([1.0, -2.0])}
    u, _ = tx.update(g, tx.init(g), g, value=3.0)
    u0, _ = plain.update(g, plain.init(g), g, value=3.0)  # ignored when fused
    np.testing.assert_allclose(u["w"], 3.0 * u0["w"], rtol=1e-6)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)


def test_state_is_a_plain_pytree_through_scan(tree):
    tx = adam_tx.chain(*_pieces())

    def body(carry, _):
        params, state = carry
        u, state = tx.update(tree, state, params)
        return (optax.apply_updates(params, u), state), None

    (params, state), _ = jax.lax.scan(body, (tree, tx.init(tree)), None, length=4)
    assert int(state[1].count) == 4
    assert jax.tree.structure(state) == jax.tree.structure(tx.init(tree))


def test_no_updates_is_no_step():
    # optax maps a None tree of updates to None (optax's add_decayed_weights
    # test calls update(None, 0, params)); a fused step does the same and
    # leaves the state as it was.
    params = {"w": jnp.ones(3)}
    tx = adam_tx.adamw(0.1)
    state = tx.init(params)
    updates, new_state = tx.update(None, state, params)
    assert updates is None and new_state is state
    assert adam_tx.add_decayed_weights(0.1).update(None, 0, params) == (None, 0)
