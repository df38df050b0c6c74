"""add_decayed_weights (with every kind of mask) and decay_mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as R

import adam_tx


def _mask_list(mask_tree):
    return jax.tree.leaves(mask_tree)


# Leaves of R.SHAPES in flatten order: mat, nested/list/0, nested/list/1/conv,
# nested/tuple/0, scalar.
PATH_PRED = lambda path, leaf: "conv" not in path and path != "scalar"
BOOL_TREE = {
    "scalar": True,
    "mat": False,
    "nested": {"list": [True, {"conv": False}], "tuple": (True,)},
}


@pytest.mark.parametrize(
    "mask, ref_mask",
    [
        (None, None),
        (BOOL_TREE, _mask_list(BOOL_TREE)),
        (lambda params: BOOL_TREE, _mask_list(BOOL_TREE)),
        (PATH_PRED, [True, True, False, True, False]),
    ],
    ids=["none", "tree", "callable", "path_predicate"],
)
def test_matches_reference(mask, ref_mask, mode):
    R.check_against_reference(
        lambda: adam_tx.add_decayed_weights(0.1, mask),
        lambda: R.AddDecayedWeights(0.1, ref_mask),
        mode,
    )


def test_schedule_and_eager():
    wd = lambda t: 0.1 / (1.0 + t)
    R.check_against_reference(
        lambda: adam_tx.add_decayed_weights(wd),
        lambda: R.AddDecayedWeights(wd),
        R.EAGER,
    )


def test_array_mask():
    mask = {"w": jnp.array([True, False, True])}
    tx = adam_tx.add_decayed_weights(0.5, mask)
    p = {"w": jnp.array([1.0, 2.0, 3.0])}
    u, _ = jax.jit(tx.update)({"w": jnp.zeros(3)}, tx.init(p), p)
    np.testing.assert_array_equal(u["w"], [0.5, 0.0, 1.5])


def test_decay_mask_excludes_biases_norms_and_embeddings():
    params = {
        "Embed_0": {"embedding": jnp.ones((4, 2))},
        "Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
        "LayerNorm_0": {"scale": jnp.ones(2), "bias": jnp.ones(2)},
        "blocks": [{"kernel": jnp.ones((2, 2))}],
    }
    mask = adam_tx.decay_mask(params)
    assert mask == {
        "Embed_0": {"embedding": False},
        "Dense_0": {"kernel": True, "bias": False},
        "LayerNorm_0": {"scale": False, "bias": False},
        "blocks": [{"kernel": True}],
    }
    assert adam_tx.decay_mask(params, exclude=("dense",))["Dense_0"]["kernel"] is False
    # The mask drives the decay: only kernels move.
    tx = adam_tx.add_decayed_weights(1.0, adam_tx.decay_mask)
    zeros = jax.tree.map(jnp.zeros_like, params)
    u, _ = tx.update(zeros, tx.init(params), params)
    assert float(u["Dense_0"]["kernel"].sum()) == 4.0
    assert float(u["Dense_0"]["bias"].sum()) == 0.0
    assert float(u["Embed_0"]["embedding"].sum()) == 0.0


def test_mask_with_wrong_structure_names_the_path():
    tx = adam_tx.add_decayed_weights(0.1, {"w": True})
    p = {"w": jnp.ones(2), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match="mask"):
        tx.update(p, tx.init(p), p)


def test_needs_params():
    tx = adam_tx.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_negative_weight_decay_grows_weights_but_aliases_refuse_it():
    # optax.fromage chains add_decayed_weights(mult - 1 < 0).
    tx = adam_tx.add_decayed_weights(-0.5)
    p = jnp.ones(2)
    assert tx.update(jnp.zeros(2), tx.init(p), p)[0].tolist() == [-0.5, -0.5]
    for alias in (adam_tx.adamw, adam_tx.nadamw):
        with pytest.raises(ValueError, match=r"weight_decay=-0.1.*\[0.0, inf\)"):
            alias(1e-3, weight_decay=-0.1)
    with pytest.raises(ValueError, match="weight_decay=nan"):
        adam_tx.add_decayed_weights(float("nan"))


def test_default_is_optax_default():
    import inspect

    import optax

    ours = inspect.signature(adam_tx.add_decayed_weights).parameters
    theirs = inspect.signature(optax.add_decayed_weights).parameters
    assert ours["weight_decay"].default == theirs["weight_decay"].default == 0.0


def test_mask_may_be_a_prefix_tree_as_in_optax():
    # optax.lars passes mask=True; optax's masks may stop above the leaves.
    p = {"enc": {"w": jnp.ones(2), "b": jnp.ones(2)}, "head": jnp.ones(1)}
    g = jax.tree.map(jnp.zeros_like, p)
    for mask, want in [
        (True, [0.5, 0.5, 0.5]),
        ({"enc": False, "head": True}, [0.0, 0.0, 0.5]),
        ({"enc": {"w": True, "b": False}, "head": False}, [0.0, 0.5, 0.0]),
    ]:
        tx = adam_tx.add_decayed_weights(0.5, mask)
        u = tx.update(g, None, p)[0]
        assert [float(x[0]) for x in jax.tree.leaves(u)] == want
    with pytest.raises(ValueError, match="weight-decay mask does not match"):
        tx = adam_tx.add_decayed_weights(0.5, {"other": True})
        tx.update(g, tx.init(p), p)
