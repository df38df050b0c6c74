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

A :func:`adam_tx.group_small_leaves` state records which parameters share a
vector (its :class:`adam_tx.grouping.Layout`); the manifest keeps it, and a
target with another layout is refused naming the first differing parameter,
even where every array has the same shape.

Resuming after a crash: ``restore(manager, "latest_valid", target)`` restores
the newest step that is intact, skipping (and naming, in a
:class:`SkippedCheckpointsWarning` and the log) the newer ones that are
corrupted; :func:`restore_latest_valid` also returns the step it chose. Saves
that never finished leave ``*.orbax-checkpoint-tmp*`` folders behind, which
Orbax ignores: :func:`unfinished_saves` lists them, the warning names them,
and :func:`remove_unfinished_saves` deletes them (or create the manager with
``CheckpointManagerOptions(cleanup_tmp_directories=True)``). Without
``"latest_valid"`` a damaged step is an error, never skipped silently.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from adam_tx._engine.tree import path_str

FORMAT = "adam_tx.checkpoint/1"
LATEST_VALID = "latest_valid"
UNFINISHED = "*.orbax-checkpoint-tmp*"
_GOLDEN = np.uint32(0x9E3779B9)
_log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that does not match its target, or cannot be read intact."""


class CorruptedCheckpointError(CheckpointError):
    """A checkpoint whose files cannot be read, or whose arrays do not have
    the checksums written when it was saved."""


class SkippedCheckpointsWarning(UserWarning):
    """``restore(..., "latest_valid", ...)`` skipped corrupted steps or found
    unfinished saves. ``skipped``: ``{step: reason}``; ``restored``: the step
    restored; ``unfinished``: the leftover temporary folders."""

    def __init__(
        self, message: str, skipped: dict[int, str], restored: int, unfinished: list
    ):
        super().__init__(message)
        self.skipped = skipped
        self.restored = restored
        self.unfinished = unfinished


class RestoredCheckpoint(NamedTuple):
    """What :func:`restore_latest_valid` restored: the ``tree``, its ``step``,
    the newer steps ``skipped`` as corrupted (``{step: reason}``) and the
    ``unfinished`` save folders found."""

    tree: Any
    step: int
    skipped: dict[int, str]
    unfinished: list[pathlib.Path]


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


def _layouts(tree: Any) -> list[Any]:
    """The grouped layouts in ``tree`` (:class:`adam_tx.grouping.Layout`)."""
    from adam_tx.grouping import Layout  # grouping imports this module

    is_layout = lambda x: isinstance(x, Layout)
    return [x for x in jax.tree.leaves(tree, is_leaf=is_layout) if is_layout(x)]


def _layout_mismatch(saved: list | None, target: Any) -> str | None:
    from adam_tx.grouping import Layout

    wanted = _layouts(target)
    if not wanted and not saved:
        return None
    if saved is None or len(saved) != len(wanted):
        return (
            f"the checkpoint holds {len(saved or [])} grouped layouts "
            f"(group_small_leaves states), the target {len(wanted)}"
        )
    for rows, layout in zip(saved, wanted):
        problem = Layout.from_description(rows).difference(
            layout, "checkpoint", "target"
        )
        if problem is not None:
            return f"grouped layouts differ (group_small_leaves): {problem}"
    return None


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
    step = _check_step(step)
    manifest = {
        "format": FORMAT,
        "treedef": str(jax.tree.structure(tree)),
        "layouts": [layout.describe() for layout in _layouts(tree)],
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


def _check_step(step: Any) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an integer >= 0, got {step!r}")
    if step < 0:
        raise ValueError(f"step={step!r} is out of range: expected an integer >= 0")
    return int(step)


def restore(manager: Any, step: int | str | None, target: Any) -> Any:
    """Restore the tree saved as ``step`` into ``target``.

    Args:
      manager: an ``orbax.checkpoint.CheckpointManager``.
      step: the step to restore; None for ``manager.latest_step()``; or
        ``"latest_valid"`` for the newest step that is intact: newer corrupted
        steps are skipped and named in a :class:`SkippedCheckpointsWarning`
        (and the log), as are unfinished saves (:func:`restore_latest_valid`
        also returns the step).
      target: a tree of ``jax.ShapeDtypeStruct`` (with ``sharding``, e.g. from
        :func:`abstract_state`) or of arrays; the result takes its structure,
        NamedTuple types, dtypes and shardings. A leaf without a sharding goes
        to the default device (replicated over all devices when multi-process).

    Returns:
      The restored tree, bit for bit as saved.

    Raises:
      CheckpointError: no such step; or the target's structure, shapes, dtypes
        or grouped layouts differ from the checkpoint's (naming the first
        differing path).
      CorruptedCheckpointError: the checkpoint is truncated or corrupted (with
        ``"latest_valid"``: every step is).
    """
    if step == LATEST_VALID:
        return restore_latest_valid(manager, target).tree
    if step is None:
        step = manager.latest_step()
        if step is None:
            raise CheckpointError(f"no checkpoint in {manager.directory}")
    elif isinstance(step, str):
        raise ValueError(
            f"step={step!r} is not valid: expected an integer, None or {LATEST_VALID!r}"
        )
    return _restore_step(manager, _check_step(step), target)


def restore_latest_valid(manager: Any, target: Any) -> RestoredCheckpoint:
    """Restore the newest intact step into ``target`` (see :func:`restore`).

    Steps are tried newest first; a corrupted one is skipped, a target that
    does not match a readable checkpoint raises (that is the caller's mistake,
    not damage). Skipped steps and unfinished saves are reported by a
    :class:`SkippedCheckpointsWarning` and on the ``adam_tx.checkpoint`` log.

    Raises:
      CheckpointError: no checkpoint, or the target does not match.
      CorruptedCheckpointError: every step is corrupted.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    unfinished = unfinished_saves(manager)
    if not steps:
        raise CheckpointError(
            f"no checkpoint in {manager.directory}"
            + (
                f" (unfinished saves: {[p.name for p in unfinished]})"
                if unfinished
                else ""
            )
        )
    skipped: dict[int, str] = {}
    for step in steps:
        try:
            tree = _restore_step(manager, step, target)
        except CorruptedCheckpointError as err:
            skipped[step] = str(err)
            continue
        if skipped or unfinished:
            message = (
                f"restored checkpoint step {step} from {manager.directory}"
                + (f"; skipped corrupted steps {sorted(skipped)}" if skipped else "")
                + (
                    f"; unfinished saves left behind: {[p.name for p in unfinished]}"
                    if unfinished
                    else ""
                )
            )
            _log.warning(message)
            warnings.warn(
                SkippedCheckpointsWarning(message, skipped, step, unfinished),
                stacklevel=2,
            )
        return RestoredCheckpoint(tree, step, skipped, unfinished)
    reasons = "; ".join(f"step {k}: {v}" for k, v in skipped.items())
    raise CorruptedCheckpointError(
        f"every checkpoint in {manager.directory} is corrupted: {reasons}"
    )


def unfinished_saves(manager: Any) -> list[pathlib.Path]:
    """The temporary folders of saves that never finished (a crash during
    ``save``), which Orbax neither lists nor restores."""
    root = pathlib.Path(str(manager.directory))
    return sorted(p for p in root.glob(UNFINISHED) if p.is_dir())


def remove_unfinished_saves(manager: Any) -> list[pathlib.Path]:
    """Delete :func:`unfinished_saves` and return them. Call it only when no
    save is in progress (not during an asynchronous save, and on one process
    of a multi-process job)."""
    removed = unfinished_saves(manager)
    for path in removed:
        shutil.rmtree(path)
    return removed


def _restore_step(manager: Any, step: int, target: Any) -> Any:
    import orbax.checkpoint as ocp

    where = f"checkpoint step {step} in {manager.directory}"
    try:
        manifest = manager.restore(
            step, args=ocp.args.Composite(manifest=ocp.args.JsonRestore())
        ).manifest
    except Exception as e:  # orbax raises many types for missing/broken files
        if step not in manager.all_steps():
            raise CheckpointError(f"no {where}") from e
        raise CorruptedCheckpointError(
            f"cannot read the manifest of {where}: {e}"
        ) from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{where} was not written by adam_tx.checkpoint.save")
    saved = manifest["leaves"]
    problem = _first_mismatch(saved, _describe(target))
    if problem is None:
        problem = _layout_mismatch(manifest.get("layouts"), target)
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
        raise CorruptedCheckpointError(f"cannot read the arrays of {where}: {e}") from e
    for s, c in zip(saved, checksums(leaves), strict=True):
        if c != s["checksum"]:
            raise CorruptedCheckpointError(
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
