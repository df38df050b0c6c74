"""group_small_leaves: grouped steps are the per-leaf steps, bit for bit.

Grouping may only join leaves the wrapped transform treats alike; every case
below is compared with the plain per-leaf transform with
``assert_array_equal``, and also checks that grouping did happen, so that a
regression to "group nothing" (trivially exact) fails too.

Bit for bit means: the same operations on every element. That is compared op
by op (eagerly): under ``jit`` XLA rewrites scalar subexpressions differently
from one program to another (measured on jax 0.10.2, XLA:CPU: the plain
``adam`` step of one (5,) leaf differs in the last bit between the leaf
jitted alone and jitted in a 9-leaf tree), so jitted runs are compared to
within a few roundings of the updates (lr 0.05, 4 steps: 1e-7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AbstractMesh, NamedSharding
from jax.sharding import PartitionSpec as P

import adam_tx
from adam_tx.checkpoint import CheckpointError


def _params():
    rng = np.random.default_rng(0)
    shapes = {
        "embed": {"embedding": (6, 4)},
        "dense": {"kernel": (4, 5), "bias": (5,)},
        "norm": {"scale": (5,), "bias": (5,)},
        "out": {"kernel": (5, 3), "bias": (3,)},
        "gain": (),
    }
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s), jnp.float32),
        shapes,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def _by_path(path, leaf):
    return "kernel" in path


def _labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, x: "matrix" if x.ndim > 1 else "vector", params
    )


def _pytree_mask(params):
    # Python bools in the parameters' structure: only the kernels decay.
    return jax.tree_util.tree_map_with_path(
        lambda path, x: "kernel" in jax.tree_util.keystr(path), params
    )


def _ndim_is_1(params):
    return jax.tree.map(lambda x: x.ndim == 1, params)


# name: (the transform, the class of each leaf under it: what must not mix)
CASES = {
    "decay_mask (callable)": (
        lambda: adam_tx.adamw(0.05, weight_decay=1.0, mask=adam_tx.decay_mask),
        adam_tx.decay_mask,
    ),
    "pytree mask": (
        lambda: adam_tx.adamw(0.05, weight_decay=1.0, mask=_pytree_mask(_params())),
        _pytree_mask,
    ),
    "path predicate": (
        lambda: adam_tx.adamw(0.05, weight_decay=1.0, mask=_by_path),
        _pytree_mask,
    ),
    "optax.masked": (lambda: optax.masked(adam_tx.adam(0.05), _ndim_is_1), _ndim_is_1),
    "optax.partition": (
        lambda: optax.partition(
            {"matrix": adam_tx.adamw(0.05), "vector": adam_tx.sgd(0.1, momentum=0.9)},
            _labels,
        ),
        _labels,
    ),
    "optax.MultiSteps": (
        lambda: optax.MultiSteps(
            adam_tx.adamw(0.05, weight_decay=0.5, mask=adam_tx.decay_mask), 2
        ),
        adam_tx.decay_mask,
    ),
    "guards + mask": (
        lambda: adam_tx.loss_scaling(
            adam_tx.skip_nonfinite(adam_tx.adamw(0.05, mask=adam_tx.decay_mask)),
            init_scale=1.0,
        ),
        adam_tx.decay_mask,
    ),
    "optax.adamw mask": (
        lambda: optax.adamw(0.05, mask=adam_tx.decay_mask),
        adam_tx.decay_mask,
    ),
}


# optax.MultiSteps runs its inner update inside lax.cond: even eagerly, one
# compiled program per layout, and XLA:CPU contracts multiply-adds differently
# in a vectorized loop and in its scalar tail (measured: 1 ulp on 6 of 20
# elements). Bit for bit holds where the step is dispatched op by op.
COMPILED_AS_ONE = {"optax.MultiSteps"}


def _run(tx, params, steps=4, poison_at=(), jit=False):
    step = lambda p, s, g: tx.update(g, s, p)
    step = jax.jit(step) if jit else step
    rng = np.random.default_rng(1)
    p, s, updates = params, tx.init(params), []
    for t in range(steps):
        g = jax.tree.map(
            lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params
        )
        if t in poison_at:
            g["gain"] = jnp.float32(jnp.nan)
        u, s = step(p, s, g)
        p = optax.apply_updates(p, u)
        updates.append(u)
    return p, s, updates


def _groups(state):
    layout = state.layout
    return [{layout.leaves[j].path for j in m} for m in layout.groups]


@pytest.mark.parametrize("name", list(CASES))
def test_grouped_steps_are_the_per_leaf_steps_bit_for_bit(name):
    make, classes = CASES[name]
    params = _params()
    plain = make()
    grouped = adam_tx.group_small_leaves(make())
    p_ref, _, u_ref = _run(plain, params, poison_at={2})
    p_got, s_got, u_got = _run(grouped, params, poison_at={2})
    for a, b in zip(jax.tree.leaves((u_got, p_got)), jax.tree.leaves((u_ref, p_ref))):
        if name in COMPILED_AS_ONE:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=4e-7, atol=0)
        else:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    p_jit, _, _ = _run(grouped, params, poison_at={2}, jit=True)
    for a, b in zip(jax.tree.leaves(p_jit), jax.tree.leaves(p_ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2.5e-7, atol=1e-7)
    groups = _groups(s_got)
    assert groups, "nothing was grouped"
    # No group mixes leaves the transform treats differently, and leaves of
    # one class are grouped (all of them, as they share a dtype).
    paths = adam_tx._engine.tree.leaf_paths(params)
    of = dict(zip(paths, jax.tree.leaves(classes(params))))
    for members in groups:
        assert len({of[m] for m in members}) == 1, (name, groups)
    assert len(groups) == len(set(of.values())), (name, groups)


def test_the_masked_bias_is_not_decayed():
    """The issue's example: zero gradients, a bias that the mask excludes."""
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = adam_tx.adamw(0.05, weight_decay=1.0, mask=adam_tx.decay_mask)
    grouped = adam_tx.group_small_leaves(tx)
    u, _ = grouped.update(zeros, grouped.init(params), params)
    u_ref, _ = tx.update(zeros, tx.init(params), params)
    assert u["dense"]["bias"].tolist() == u_ref["dense"]["bias"].tolist() == [-0.0] * 2
    np.testing.assert_array_equal(u["dense"]["kernel"], np.full((2, 2), -0.05, "f4"))


def test_leaves_alike_share_one_vector_and_others_stay_apart():
    params = _params()
    tx = adam_tx.group_small_leaves(
        adam_tx.adamw(0.05, weight_decay=1.0, mask=adam_tx.decay_mask)
    )
    state = tx.init(params)
    decayed = {"dense/kernel", "gain", "out/kernel"}
    kept = {"embed/embedding", "dense/bias", "norm/scale", "norm/bias", "out/bias"}
    assert sorted(_groups(state), key=len) == [decayed, kept]
    mu = state.inner[0].mu
    # Each group's moments sit at its first member (with its number of
    # dimensions), the other members hold empty arrays.
    assert mu["dense"]["kernel"].shape == (20 + 1 + 15, 1)
    assert mu["out"]["kernel"].shape == (0, 1) and mu["gain"].shape == (0,)
    assert mu["dense"]["bias"].shape == (5 + 24 + 5 + 5 + 3,)


@pytest.mark.parametrize(
    "make",
    [
        lambda: adam_tx.adam(0.1, state_format="stochastic", mu_dtype=jnp.bfloat16),
        lambda: adam_tx.chain(adam_tx.adaptive_grad_clip(0.1), adam_tx.adam(0.1)),
        lambda: optax.chain(optax.clip_by_block_rms(0.5), optax.adam(0.1)),
    ],
    ids=["stochastic rounding keyed by leaf", "per-leaf norms", "optax block rms"],
)
def test_transforms_that_differ_per_leaf_are_not_grouped(make):
    params = _params()
    grouped = adam_tx.group_small_leaves(make())
    p_got, s_got, _ = _run(grouped, params, steps=2)
    p_ref, _, _ = _run(make(), params, steps=2)
    assert _groups(s_got) == []
    for a, b in zip(jax.tree.leaves(p_got), jax.tree.leaves(p_ref)):
        np.testing.assert_array_equal(a, b)


def test_int8_blocks_are_not_formed_across_leaves():
    """Ten leaves of 500 under int8 state: alone each is a plain float32
    moment (below 4096 elements), grouped they would be quantized blocks."""
    params = {f"p{i}": jnp.linspace(-1, 1, 500) * (i + 1) for i in range(10)}
    tx = adam_tx.adam(0.1, state_format="int8")
    state = adam_tx.group_small_leaves(tx).init(params)
    assert state.layout.groups == ()
    # Two leaves stay below the block size together: grouped, still plain.
    few = {k: params[k] for k in ("p0", "p1")}
    assert adam_tx.group_small_leaves(tx).init(few).layout.groups == ((0, 1),)


FORMATS = {
    "bf16 nearest": dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "bf16 stochastic": dict(state_format="stochastic", seed=3),
    "int8": dict(state_format="int8"),
    "int4": dict(state_format="int4"),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_state_format_gives_the_per_leaf_numbers(name):
    """Grouped or not, each state format's steps are the per-leaf steps, bit
    for bit, masked decay included; leaves a format keys by themselves
    (stochastic rounding draws per leaf) are left alone, and a format that
    is elementwise on small leaves is grouped."""
    make = lambda: adam_tx.adamw(
        0.05, weight_decay=0.5, mask=adam_tx.decay_mask, **FORMATS[name]
    )
    params = _params()
    p_ref, s_ref, u_ref = _run(make(), params, poison_at={2})
    p_got, s_got, u_got = _run(
        adam_tx.group_small_leaves(make()), params, poison_at={2}
    )
    for a, b in zip(jax.tree.leaves((u_got, p_got)), jax.tree.leaves((u_ref, p_ref))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    groups = _groups(s_got)
    if name == "bf16 stochastic":
        assert groups == [], groups
    else:
        assert groups, "nothing was grouped"
        mask = dict(
            zip(
                adam_tx._engine.tree.leaf_paths(params),
                jax.tree.leaves(adam_tx.decay_mask(params)),
            )
        )
        for members in groups:
            assert len({mask[m] for m in members}) == 1, groups


def test_dtypes_and_sizes_keep_apart():
    params = {
        "a": jnp.ones(3),
        "b": jnp.ones(4, jnp.bfloat16),
        "c": jnp.ones(5),
        "big": jnp.ones(40),
        "d": jnp.ones(2, jnp.bfloat16),
    }
    state = adam_tx.group_small_leaves(adam_tx.adam(0.1), max_leaf_size=10).init(params)
    assert _groups(state) == [{"a", "c"}, {"b", "d"}]


def test_update_with_another_layout_names_the_leaf():
    tx = adam_tx.group_small_leaves(adam_tx.adam(0.1))
    state = tx.init({"a": jnp.ones(4), "b": jnp.ones(12)})
    swapped = {"a": jnp.ones(12), "b": jnp.ones(4)}
    with pytest.raises(CheckpointError, match=r"at 'a': shape \(4,\) .* \(12,\)"):
        tx.update(swapped, state, swapped)
    with pytest.raises(CheckpointError, match="extra leaf 'c'"):
        more = {"a": jnp.ones(4), "b": jnp.ones(12), "c": jnp.ones(1)}
        tx.update(more, state, more)


def test_the_layout_is_static_and_survives_jit_and_eval_shape():
    tx = adam_tx.group_small_leaves(adam_tx.adamw(0.1, mask=adam_tx.decay_mask))
    params = _params()
    eager = tx.init(params)
    abstract = jax.eval_shape(tx.init, params)
    jitted = jax.jit(tx.init)(params)
    assert jax.tree.structure(eager) == jax.tree.structure(abstract)
    assert jax.tree.structure(eager) == jax.tree.structure(jitted)
    assert eager.layout == jitted.layout and "Layout(" in repr(eager.layout)


def test_large_leaves_keep_their_sharding_under_state_sharding():
    mesh = AbstractMesh((4, 2), ("data", "model"))
    params = {
        "w": jax.ShapeDtypeStruct((128, 64), jnp.float32),
        "b": jax.ShapeDtypeStruct((64,), jnp.float32),
        "s": jax.ShapeDtypeStruct((64,), jnp.float32),
    }
    shard = {
        "w": NamedSharding(mesh, P(None, "model")),
        "b": NamedSharding(mesh, P()),
        "s": NamedSharding(mesh, P()),
    }
    tx = adam_tx.group_small_leaves(adam_tx.adamw(1e-3), max_leaf_size=1000)
    sh = adam_tx.sharding.state_sharding(tx, params, shard)
    mu = jax.tree.map(lambda s: s.spec, sh.inner[0].mu)
    # 's' holds no array: its moments are in the vector at 'b'.
    empty = adam_tx.grouping.Empty((0,), "float32")
    assert mu == {"w": P(None, "model"), "b": P(), "s": empty}
    zero = adam_tx.sharding.state_sharding(tx, params, shard, zero_axis="data")
    mu = jax.tree.map(lambda s: s.spec, zero.inner[0].mu)
    # The grouped vector (b then s, 128 elements) is split over "data" too.
    assert mu == {"w": P("data", "model"), "b": P("data"), "s": empty}


def test_a_transform_that_cannot_be_traced_alone_is_not_grouped():
    def needs_value(updates, state, params=None, *, value):
        return jax.tree.map(lambda u: u * value, updates), state

    tx = optax.GradientTransformationExtraArgs(
        lambda p: optax.EmptyState(), needs_value
    )
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    grouped = adam_tx.group_small_leaves(tx)
    with pytest.warns(UserWarning, match="no leaves are grouped"):
        state = grouped.init(params)
    u, _ = grouped.update(params, state, params, value=2.0)
    assert u["b"].tolist() == [2.0] * 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tx": None}, TypeError, "tx must be an optax.GradientTransformation"),
        ({"tx": "adam"}, TypeError, "got 'adam' of type str"),
        ({"max_leaf_size": -1}, ValueError, "max_leaf_size must be >= 0, got -1"),
        ({"max_leaf_size": 2.5}, TypeError, "max_leaf_size"),
        ({"max_leaf_size": True}, TypeError, "max_leaf_size"),
    ],
)
def test_arguments_are_checked(kwargs, error, match):
    kwargs = {"tx": adam_tx.adam(), **kwargs}
    with pytest.raises(error, match=match):
        adam_tx.group_small_leaves(**kwargs)


def test_huge_max_leaf_size_is_fine():
    tx = adam_tx.group_small_leaves(adam_tx.adam(0.1), max_leaf_size=2**80)
    assert tx.init({"a": jnp.ones(2), "b": jnp.ones(2)}).layout.groups == ((0, 1),)
