"""Save and restore optimizer state with Orbax, exactly or not at all.

:func:`save` writes any pytree (an adam_tx state, or a whole train state with
parameters and PRNG keys) through an ``orbax.checkpoint.CheckpointManager``,
together with a manifest: every leaf's path, shape, dtype and a 64-bit
checksum of its bits. :func:`restore` reads it back into a *target* (an
abstract state from :func:`abstract_state`, or a live one), so the result has
the target's NamedTuple types and shardings, and it checks, before returning:

* the target's structure, shapes and dtypes match the checkpoint (else
  :class:`CheckpointError` naming the first differing path): a state restored
  into another optimizer is an error, never a silently re-shaped state;
* every restored leaf has its saved checksum (else :class:`CheckpointError`):
  a truncated or corrupted checkpoint is never half-restored.

The checksum is an integer sum computed inside ``jax.jit`` on the arrays where
they live, so it needs no gathering on a pod and does not depend on layout:
``sum(w_i (2 i + 1))`` and ``sum(mix(w_i + i c))`` over the 32-bit words
``w_i`` of the leaf, modulo 2^32 (any single flipped bit changes the first).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from adam_tx._tree import path_str

FORMAT = "adam_tx.checkpoint/1"
_GOLDEN = np.uint32(0x9E3779B9)


class CheckpointError(ValueError):
    """A checkpoint that does not match its target, or cannot be read intact."""


def _words(x: jax.Array) -> jax.Array:
    """The bits of ``x`` as uint32 words (one per element; two for 64-bit)."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}
    return lax.bitcast_convert_type(x, unsigned[x.dtype.itemsize]).astype(jnp.uint32)


def _mix(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: every input bit moves every output bit."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _checksum(x: jax.Array) -> jax.Array:
    w = _words(x)
    index = jnp.zeros(w.shape, jnp.uint32)
    stride = 1
    for d in reversed(range(w.ndim)):
        index = index + lax.broadcasted_iota(jnp.uint32, w.shape, d) * np.uint32(
            stride % 2**32
        )
        stride *= w.shape[d]
    weighted = jnp.sum(w * (2 * index + 1), dtype=jnp.uint32)
    mixed = jnp.sum(_mix(w + index * _GOLDEN), dtype=jnp.uint32)
    return jnp.stack([weighted, mixed])


@jax.jit
def _checksums(leaves: list[jax.Array]) -> jax.Array:
    return jnp.stack([_checksum(x) for x in leaves]).reshape(len(leaves), 2)


def checksums(tree: Any) -> list[list[int]]:
    """Per leaf of ``tree``, two uint32 checksums of its bits (see module doc)."""
    leaves = jax.tree.leaves(tree)
    # One jitted computation per set of devices: a computation cannot mix
    # arrays committed to different devices (e.g. a mesh and one device).
    groups: dict[Any, list[int]] = {}
    for i, x in enumerate(leaves):
        devices = getattr(getattr(x, "sharding", None), "device_set", None)
        key = frozenset(d.id for d in devices) if devices else None
        groups.setdefault(key, []).append(i)
    out: list[list[int]] = [[]] * len(leaves)
    for members in groups.values():
        sums = np.asarray(_checksums([leaves[i] for i in members])).astype(int)
        for i, row in zip(members, sums.tolist()):
            out[i] = row
    return out


def _describe(tree: Any) -> list[dict[str, Any]]:
    return [
        {"path": path_str(p), "shape": list(jnp.shape(x)), "dtype": str(x.dtype)}
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _first_mismatch(saved: list[dict], target: list[dict]) -> str | None:
    for s, t in zip(saved, target):
        if s["path"] != t["path"]:
            return f"at '{t['path']}' the checkpoint holds '{s['path']}' instead"
        for key in ("shape", "dtype"):
            if s[key] != t[key]:
                return (
                    f"at '{t['path']}': {key} {t[key]} in the target, "
                    f"{s[key]} in the checkpoint"
                )
    if len(saved) > len(target):
        return f"the checkpoint has an extra leaf '{saved[len(target)]['path']}'"
    if len(target) > len(saved):
        return f"the checkpoint lacks the leaf '{target[len(saved)]['path']}'"
    return None


def save(manager: Any, step: int, tree: Any, *, wait: bool = True) -> None:
    """Save ``tree`` (optimizer state, or any pytree of arrays) as ``step``.

    Args:
      manager: an ``orbax.checkpoint.CheckpointManager``.
      step: the step number to save under.
      tree: the pytree; its leaves may be sharded across devices and processes.
      wait: block until the checkpoint is on disk (False: Orbax finishes in the
        background; call ``manager.wait_until_finished()`` before exiting).

    >>> import tempfile, adam_tx, jax.numpy as jnp, orbax.checkpoint as ocp
    >>> tx = adam_tx.adam(1e-3)
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> manager = ocp.CheckpointManager(tempfile.mkdtemp())
    >>> save(manager, 0, state)
    >>> restored = restore(manager, 0, abstract_state(tx, params))
    >>> type(restored[0]).__name__
    'ScaleByAdamState'
    """
    import orbax.checkpoint as ocp

    leaves = jax.tree.leaves(tree)
    manifest = {
        "format": FORMAT,
        "treedef": str(jax.tree.structure(tree)),
        "leaves": [
            {**d, "checksum": c}
            for d, c in zip(_describe(tree), checksums(leaves), strict=True)
        ],
    }
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(leaves), manifest=ocp.args.JsonSave(manifest)
        ),
    )
    if wait:
        manager.wait_until_finished()


def _abstract_leaf(x: Any) -> jax.ShapeDtypeStruct:
    sharding = getattr(x, "sharding", None)
    if sharding is None and jax.process_count() == 1:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    elif sharding is None:
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("devices",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.ShapeDtypeStruct(jnp.shape(x), x.dtype, sharding=sharding)


def restore(manager: Any, step: int | None, target: Any) -> Any:
    """Restore the tree saved as ``step`` (None: the latest) into ``target``.

    Args:
      manager: an ``orbax.checkpoint.CheckpointManager``.
      step: the step to restore; None for ``manager.latest_step()``.
      target: a tree of ``jax.ShapeDtypeStruct`` (with ``sharding``, e.g. from
        :func:`abstract_state`) or of arrays; the result takes its structure,
        NamedTuple types, dtypes and shardings. A leaf without a sharding goes
        to the default device (replicated over all devices when multi-process).

    Returns:
      The restored tree, bit for bit as saved.

    Raises:
      CheckpointError: no such step; the target's structure, shapes or dtypes
        differ from the checkpoint's (naming the first differing path); or the
        checkpoint is truncated or corrupted.
    """
    import orbax.checkpoint as ocp

    if step is None:
        step = manager.latest_step()
        if step is None:
            raise CheckpointError(f"no checkpoint in {manager.directory}")
    where = f"checkpoint step {step} in {manager.directory}"
    try:
        manifest = manager.restore(
            step, args=ocp.args.Composite(manifest=ocp.args.JsonRestore())
        ).manifest
    except Exception as e:  # orbax raises many types for missing/broken files
        raise CheckpointError(f"cannot read the manifest of {where}: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{where} was not written by adam_tx.checkpoint.save")
    saved = manifest["leaves"]
    problem = _first_mismatch(saved, _describe(target))
    if problem is None and manifest["treedef"] != str(jax.tree.structure(target)):
        problem = (
            "the container types differ (e.g. another NamedTuple state): "
            f"checkpoint {manifest['treedef']}, target {jax.tree.structure(target)}"
        )
    if problem is not None:
        raise CheckpointError(f"{where} does not match the target: {problem}")

    abstract = [_abstract_leaf(x) for x in jax.tree.leaves(target)]
    try:
        leaves = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        ).state
    except Exception as e:
        raise CheckpointError(f"cannot read the arrays of {where}: {e}") from e
    for s, c in zip(saved, checksums(leaves), strict=True):
        if c != s["checksum"]:
            raise CheckpointError(
                f"{where} is corrupted: leaf '{s['path']}' does not match the "
                "checksum written when it was saved"
            )
    return jax.tree.unflatten(jax.tree.structure(target), leaves)


def abstract_state(tx: Any, params: Any, sharding: Any = None) -> Any:
    """``tx.init(params)`` as ``jax.ShapeDtypeStruct`` leaves, without computing it.

    ``sharding``: a tree of shardings for the state (e.g. from
    :func:`adam_tx.sharding.state_sharding`), a single sharding for every leaf,
    or None.
    """
    shapes = jax.eval_shape(tx.init, params)
    if sharding is None:
        return shapes
    if isinstance(sharding, jax.sharding.Sharding):
        sharding = jax.tree.map(lambda _: sharding, shapes)
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        shapes,
        sharding,
    )
