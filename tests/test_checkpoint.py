"""Tests for adam_tx.checkpoint: exact round trips, mismatches, corruption, resume."""

from __future__ import annotations

import inspect
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import subprocesses
from jax.sharding import PartitionSpec as P

import adam_tx
from adam_tx.checkpoint import CheckpointError, abstract_state, restore, save

PARAMS = {"w": jnp.arange(12.0).reshape(4, 3) / 7, "b": jnp.ones(3)}

OPTIMIZERS = {
    "adam": lambda: adam_tx.adam(1e-2),
    "adamw": lambda: adam_tx.adamw(1e-2, weight_decay=0.1),
    "amsgrad": lambda: adam_tx.amsgrad(1e-2),
    "adabelief": lambda: adam_tx.adabelief(1e-2),
    "adamax": lambda: adam_tx.adamax(1e-2),
    "nadam": lambda: adam_tx.nadam(1e-2),
    "rmsprop": lambda: adam_tx.rmsprop(1e-2),
    "adagrad": lambda: adam_tx.adagrad(1e-2),
    "sgd": lambda: adam_tx.sgd(1e-2, momentum=0.9),
    "clip+adamw": lambda: adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-2)
    ),
    "clip+adam(mu bf16)": lambda: adam_tx.chain(
        adam_tx.clip(0.5), adam_tx.adam(1e-2, mu_dtype=jnp.bfloat16)
    ),
}


def trained_state(tx, steps=2):
    state = tx.init(PARAMS)
    for i in range(steps):
        grads = jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)), PARAMS)
        _, state = tx.update(grads, state, PARAMS)
    return state


def assert_identical(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.sharding == w.sharding
        if jnp.issubdtype(w.dtype, jax.dtypes.prng_key):
            g, w = jax.random.key_data(g), jax.random.key_data(w)
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.fixture
def manager(tmp_path):
    with ocp.CheckpointManager(tmp_path / "ckpt") as m:
        yield m


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_round_trip_is_exact(name, manager):
    tx = OPTIMIZERS[name]()
    state = adam_tx.set_hyperparams(trained_state(tx), learning_rate=3e-3)
    save(manager, 2, state)
    restored = restore(manager, 2, abstract_state(tx, PARAMS))
    assert_identical(restored, state)
    # the restored state steps on exactly like the original
    g = jax.tree.map(jnp.cos, PARAMS)
    assert_identical(tx.update(g, restored, PARAMS), tx.update(g, state, PARAMS))


def test_train_state_with_params_and_prng_key(manager):
    tx = OPTIMIZERS["clip+adamw"]()
    train = {"params": PARAMS, "opt": trained_state(tx), "key": jax.random.key(7)}
    save(manager, 5, train)
    assert_identical(restore(manager, None, train), train)


def test_restore_keeps_the_target_sharding(manager):
    mesh = jax.make_mesh((1,), ("data",))
    sh = adam_tx.sharding.state_sharding(
        adam_tx.adam(1e-3),
        PARAMS,
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
        zero_axis="data",
    )
    tx = adam_tx.adam(1e-3)
    state = jax.jit(tx.init, out_shardings=sh)(PARAMS)
    save(manager, 0, state)
    restored = restore(manager, 0, abstract_state(tx, PARAMS, sh))
    assert_identical(restored, state)
    assert restored[0].mu["w"].sharding.spec == jax.sharding.PartitionSpec("data")


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (lambda: adam_tx.amsgrad(1e-2), r"at '0/nu_max/b'|container types"),
        (lambda: adam_tx.adam(1e-2, mu_dtype=jnp.bfloat16), r"'0/mu/b'.*dtype"),
        (lambda: adam_tx.rmsprop(1e-2), r"at '0/nu/b' the checkpoint holds '0/mu/b'"),
    ],
)
def test_restoring_into_another_optimizer_names_the_path(other, message, manager):
    save(manager, 1, trained_state(adam_tx.adam(1e-2)))
    with pytest.raises(CheckpointError, match=message):
        restore(manager, 1, abstract_state(other(), PARAMS))


def test_other_parameters_are_named(manager):
    save(manager, 1, adam_tx.adam(1e-2).init(PARAMS))
    params = {"w": jnp.ones((4, 2)), "b": jnp.ones(3)}
    with pytest.raises(CheckpointError, match=r"'0/mu/w': shape \[4, 2\]"):
        restore(manager, 1, abstract_state(adam_tx.adam(1e-2), params))


def data_files(manager, step):
    root = pathlib.Path(manager.directory) / str(step) / "state"
    files = [p for p in root.rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files, sorted(root.rglob("*"))
    return files


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_damaged_checkpoint_raises(damage, manager):
    tx = OPTIMIZERS["clip+adamw"]()
    state = trained_state(tx)
    save(manager, 3, state)
    files = data_files(manager, 3)
    for path in files:
        data = bytearray(path.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x10
            path.write_bytes(bytes(data))
        elif damage == "truncate":
            path.write_bytes(bytes(data[: len(data) // 2]))
        elif damage == "delete":
            path.unlink()
    if damage == "manifest":
        manifest = pathlib.Path(manager.directory) / "3" / "manifest" / "metadata"
        manifest.write_text(manifest.read_text()[:-20])
    with pytest.raises(CheckpointError):
        restore(manager, 3, abstract_state(tx, PARAMS))


def test_missing_step_raises(manager):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        restore(manager, None, abstract_state(adam_tx.adam(1e-2), PARAMS))


def test_checksums_see_every_bit():
    x = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
    base = adam_tx.checkpoint.checksums(x)
    for i in range(6):
        flipped = x.reshape(-1).at[i].set(x.reshape(-1)[i] * -1 + 0.5).reshape(2, 3)
        assert adam_tx.checkpoint.checksums(flipped) != base
    swapped = x.reshape(-1)[jnp.array([1, 0, 2, 3, 4, 5])].reshape(2, 3)
    assert adam_tx.checkpoint.checksums(swapped) != base
    for dtype in (jnp.bfloat16, jnp.int32, jnp.uint8, jnp.bool_):
        assert len(adam_tx.checkpoint.checksums(x.astype(dtype))[0]) == 2
    assert adam_tx.checkpoint.checksums(optax.EmptyState()) == []


@pytest.mark.slow
def test_resume_in_a_fresh_process_is_bit_identical(tmp_path):
    """30 steps == 13 steps, checkpoint, new process, restore, 17 steps."""
    full = subprocesses.start("resume_training.py", "full", tmp_path)
    first = subprocesses.start("resume_training.py", "first", tmp_path)
    subprocesses.finish([full, first], timeout=300)
    subprocesses.run("resume_training.py", "resume", tmp_path, timeout=300)
    a, b = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resume.npz")
    assert sorted(a) == sorted(b) and len(a) > 20
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_quantized_moments_round_trip_and_shard(manager):
    """8-bit block moments (a NamedTuple of codes and scales) need no special case."""
    if "state_format" not in inspect.signature(adam_tx.adam).parameters:
        pytest.skip("quantized state formats are not in this tree yet")
    params = {"w": jnp.ones((64, 256)), "b": jnp.ones(8)}
    tx = adam_tx.adam(1e-3, state_format="int8")
    state = tx.update(jax.tree.map(jnp.sin, params), tx.init(params), params)[1]
    save(manager, 1, state)
    assert_identical(restore(manager, 1, abstract_state(tx, params)), state)
    mesh = jax.sharding.AbstractMesh((4, 2), ("data", "model"))
    shard = {
        "w": jax.sharding.NamedSharding(mesh, P(None, "model")),
        "b": jax.sharding.NamedSharding(mesh, P()),
    }
    sh = adam_tx.sharding.state_sharding(tx, params, shard, zero_axis="data")
    codes, scales = jax.tree.leaves(sh[0].mu["w"])  # codes: the parameter's shape
    assert (codes.spec, scales.spec) == (P("data", "model"), P("data"))


def _corrupt(manager, step):
    for path in data_files(manager, step):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))


def test_latest_valid_skips_corrupted_steps_and_names_them(manager):
    from adam_tx.checkpoint import (
        RestoredCheckpoint,
        SkippedCheckpointsWarning,
        restore_latest_valid,
    )

    tx = OPTIMIZERS["adamw"]()
    states = {step: trained_state(tx, steps=step) for step in (1, 2, 3)}
    for step, state in states.items():
        save(manager, step, state)
    _corrupt(manager, 3)
    _corrupt(manager, 2)
    target = abstract_state(tx, PARAMS)
    # The default stays explicit: the newest step is corrupted, so it raises.
    with pytest.raises(adam_tx.checkpoint.CorruptedCheckpointError, match="step 3"):
        restore(manager, None, target)
    with pytest.warns(SkippedCheckpointsWarning, match=r"step 1.*\[2, 3\]") as seen:
        restored = restore(manager, "latest_valid", target)
    assert_identical(restored, states[1])
    warning = seen[0].message
    assert sorted(warning.skipped) == [2, 3] and warning.restored == 1
    assert "checksum" in warning.skipped[3]
    got = restore_latest_valid(manager, target)
    assert isinstance(got, RestoredCheckpoint) and got.step == 1
    assert_identical(got.tree, states[1])


def test_latest_valid_raises_when_every_step_is_corrupted(manager):
    tx = OPTIMIZERS["adam"]()
    save(manager, 1, trained_state(tx))
    _corrupt(manager, 1)
    with pytest.raises(adam_tx.checkpoint.CorruptedCheckpointError, match="every"):
        restore(manager, "latest_valid", abstract_state(tx, PARAMS))


def test_latest_valid_does_not_skip_a_target_mismatch(manager):
    """A wrong target is the caller's mistake, not damage: it raises."""
    save(manager, 1, trained_state(adam_tx.adam(1e-2)))
    save(manager, 2, trained_state(adam_tx.adam(1e-2)))
    target = abstract_state(adam_tx.amsgrad(1e-2), PARAMS)
    with pytest.raises(CheckpointError, match="does not match") as err:
        restore(manager, "latest_valid", target)
    assert not isinstance(err.value, adam_tx.checkpoint.CorruptedCheckpointError)


def test_unfinished_saves_are_reported_and_can_be_removed(manager):
    from adam_tx.checkpoint import (
        SkippedCheckpointsWarning,
        remove_unfinished_saves,
        unfinished_saves,
    )

    tx = OPTIMIZERS["adam"]()
    state = trained_state(tx)
    save(manager, 4, state)
    leftover = pathlib.Path(manager.directory) / "5.orbax-checkpoint-tmp-1234"
    (leftover / "state").mkdir(parents=True)
    assert unfinished_saves(manager) == [leftover]
    assert manager.all_steps() == [4]  # orbax does not list it
    with pytest.warns(SkippedCheckpointsWarning, match="5.orbax-checkpoint-tmp"):
        restored = restore(manager, "latest_valid", abstract_state(tx, PARAMS))
    assert_identical(restored, state)
    assert remove_unfinished_saves(manager) == [leftover] and not leftover.exists()
    assert unfinished_saves(manager) == []


@pytest.mark.parametrize("step", ["newest", -1, 1.5, True])
def test_bad_steps_are_named(step, manager):
    save(manager, 0, adam_tx.adam(1e-2).init(PARAMS))
    with pytest.raises((TypeError, ValueError), match="step"):
        restore(manager, step, abstract_state(adam_tx.adam(1e-2), PARAMS))


def test_grouped_layout_is_checked_on_restore(manager):
    """a:(4,), b:(12,) grouped is one (16,) vector at 'a' and an empty 'b';
    so is a:(12,), b:(4,): same shapes everywhere, other parameters."""
    tx = adam_tx.group_small_leaves(adam_tx.adam(1e-2))
    params = {"a": jnp.ones(4), "b": jnp.ones(12)}
    state = tx.update(jax.tree.map(jnp.sin, params), tx.init(params), params)[1]
    save(manager, 1, state)
    assert_identical(restore(manager, 1, abstract_state(tx, params)), state)
    swapped = {"a": jnp.ones(12), "b": jnp.ones(4)}
    shapes = [x.shape for x in jax.tree.leaves(abstract_state(tx, swapped))]
    assert shapes == [x.shape for x in jax.tree.leaves(state)]
    with pytest.raises(CheckpointError, match=r"grouped layouts differ.*at 'a'"):
        restore(manager, 1, abstract_state(tx, swapped))
