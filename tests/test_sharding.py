"""Tests for adam_tx.sharding: state layouts, ZeRO-1, and 8-device training."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import pytest
import subprocesses
from jax.sharding import AbstractMesh, NamedSharding
from jax.sharding import PartitionSpec as P

import adam_tx
from adam_tx.sharding import state_sharding, zero_spec

MESH = AbstractMesh((4, 2), ("data", "model"))
PARAMS = {
    "w": jax.ShapeDtypeStruct((12, 6), jnp.float32),
    "b": jax.ShapeDtypeStruct((6,), jnp.float32),
    "odd": jax.ShapeDtypeStruct((3, 5), jnp.float32),
}
SPECS = {"w": P(None, "model"), "b": P("model"), "odd": P()}
PARAM_SHARDING = {k: NamedSharding(MESH, s) for k, s in SPECS.items()}


def specs(tree):
    return jax.tree.map(lambda s: s.spec, tree)


@pytest.mark.parametrize(
    ("shape", "spec", "want"),
    [
        ((12, 6), P(None, "model"), P("data", "model")),
        ((6, 12), P("model"), P("model", "data")),
        ((6,), P("model"), P("model")),  # no free dimension: unchanged
        ((3, 5), P(), P()),  # nothing divisible by 4: unchanged
        ((2, 8), P(), P(None, "data")),  # 2 < 4: skip to the next dimension
        ((8, 8), P("data"), P("data")),  # already over the axis (FSDP)
        ((8, 8), P(("data", "model")), P(("data", "model"))),
        ((), P(), P()),
    ],
)
def test_zero_spec(shape, spec, want):
    assert zero_spec(shape, spec, MESH, "data") == want


def test_adam_state_follows_params_and_scalars_are_replicated():
    tx = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3))
    sh = specs(state_sharding(tx, PARAMS, PARAM_SHARDING))
    clip, (adam, decay, lr) = sh
    assert adam.mu == SPECS and adam.nu == SPECS
    scalars = [clip, adam.count, adam.hyperparams, decay, lr]
    assert all(s == P() for s in jax.tree.leaves(scalars))


def test_zero_axis_shards_moments_only():
    tx = adam_tx.amsgrad(1e-3)
    sh = specs(state_sharding(tx, PARAMS, PARAM_SHARDING, zero_axis="data"))
    want = {"w": P("data", "model"), "b": P("model"), "odd": P()}
    assert sh[0].mu == sh[0].nu == sh[0].nu_max == want
    assert sh[0].count == P() and set(sh[0].hyperparams.values()) == {P()}


def test_single_sharding_is_broadcast_to_every_parameter():
    sh = state_sharding(
        adam_tx.adam(1e-3), PARAMS, NamedSharding(MESH, P()), zero_axis="data"
    )
    assert specs(sh[0].mu) == {"w": P("data"), "b": P(), "odd": P()}


def test_innermost_match_wins_for_tuple_params():
    # A chain state is a tuple of the same length as the parameters: it must
    # not be mistaken for a tree of moments.
    params = (jax.ShapeDtypeStruct((8,), jnp.float32),) * 2
    shard = (NamedSharding(MESH, P("model")), NamedSharding(MESH, P()))
    tx = optax.chain(optax.clip(1.0), adam_tx.adam(1e-3))
    sh = specs(state_sharding(tx, params, shard, zero_axis="data"))
    assert sh[1][0].mu == (P("model"), P("data"))
    assert sh[1][0].count == P()


class Codes(NamedTuple):
    """A stand-in for a quantized moment: codes of another shape and scales."""

    codes: jax.Array
    scales: jax.Array


def blockwise_moment():
    def init(params):
        return jax.tree.map(
            lambda p: Codes(
                jnp.zeros((p.size // 2, 2), jnp.uint8),
                jnp.zeros((p.size // 2,), jnp.float32),
            ),
            params,
        )

    return optax.GradientTransformation(init, lambda u, s, p=None: (u, s))


def test_unknown_per_parameter_leaves_are_placed_conservatively():
    tx = blockwise_moment()
    plain = specs(state_sharding(tx, PARAMS, PARAM_SHARDING))
    assert set(jax.tree.leaves(plain)) == {P()}
    zero = specs(state_sharding(tx, PARAMS, PARAM_SHARDING, zero_axis="data"))
    assert zero["w"] == Codes(P("data"), P("data"))  # 36 codes, 36 scales
    assert zero["b"] == Codes(P(), P())  # 3 blocks: not divisible by 4


def test_entry_rule_overrides_the_default():
    def rule(shape, param_shape, param_spec, mesh, zero_axis):
        return P("model") if len(shape) == 2 and shape != param_shape else None

    sh = specs(
        state_sharding(blockwise_moment(), PARAMS, PARAM_SHARDING, entry_rule=rule)
    )
    assert sh["w"] == Codes(P("model"), P())


def test_bad_arguments_are_named():
    tx = adam_tx.adam(1e-3)
    with pytest.raises(ValueError, match="zero_axis='batch'.*'data', 'model'"):
        state_sharding(tx, PARAMS, PARAM_SHARDING, zero_axis="batch")
    with pytest.raises(TypeError, match="NamedSharding"):
        state_sharding(tx, PARAMS, {k: P() for k in PARAMS})
    with pytest.raises(ValueError, match="param_sharding"):
        state_sharding(tx, PARAMS, [NamedSharding(MESH, P())])


def test_init_runs_on_abstract_params_and_under_jit_with_shardings():
    mesh = jax.make_mesh((1,), ("data",))
    params = {"w": jnp.ones((4, 2)), "b": jnp.ones(2)}
    tx = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.nadamw(1e-3))
    abstract = jax.eval_shape(
        tx.init, jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    )
    sh = state_sharding(tx, params, NamedSharding(mesh, P()), zero_axis="data")
    state = jax.jit(tx.init, out_shardings=sh)(params)
    assert jax.tree.structure(state) == jax.tree.structure(abstract)
    for leaf, s in zip(jax.tree.leaves(state), jax.tree.leaves(sh)):
        assert leaf.sharding == s


@pytest.mark.slow
def test_sharded_training_on_8_devices():
    """Runs tests/scripts/sharded_training.py (~25 s of CPU) on 8 host devices."""
    out = subprocesses.run("sharded_training.py", devices=8, timeout=300)
    assert out.rstrip().endswith("OK"), out


@pytest.mark.slow
def test_explicit_axis_mesh_on_8_devices():
    """Runs tests/scripts/explicit_mesh.py on 8 host devices."""
    out = subprocesses.run("explicit_mesh.py", devices=8, timeout=300)
    assert out.rstrip().endswith("OK"), out


@pytest.mark.slow
def test_wrapper_states_keep_their_sharding_on_8_devices():
    """tests/scripts/wrapper_sharding.py: group_small_leaves (large leaves keep
    their spec), nested guards and switch under state_sharding, Auto and
    Explicit meshes, with and without ZeRO-1 (~40 s of CPU)."""
    out = subprocesses.run("wrapper_sharding.py", devices=8, timeout=400)
    assert out.rstrip().endswith("OK"), out


@pytest.mark.slow
def test_sgd_momentum_with_zero_on_an_explicit_mesh():
    out = subprocesses.run("wrapper_sharding.py", "--sgd-momentum", devices=8)
    assert out.rstrip().endswith("OK"), out


def test_state_sharding_names_bad_arguments():
    with pytest.raises(TypeError, match="tx must be an optax.GradientTransformation"):
        state_sharding(None, PARAMS, PARAM_SHARDING)
    with pytest.raises(TypeError, match="zero_axis must be a mesh axis name"):
        state_sharding(adam_tx.adam(), PARAMS, PARAM_SHARDING, zero_axis=0)
    with pytest.raises(TypeError, match="entry_rule must be callable"):
        state_sharding(adam_tx.adam(), PARAMS, PARAM_SHARDING, entry_rule="x")
