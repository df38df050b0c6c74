"""The engine's contract, checked for every transform in tests/catalog.py.

For each entry:

* its pieces' declarations tell the truth: a piece that declares
  ``scales_by`` returns its input times that scalar, and a piece's
  ``guarded_leaf`` with ``ok=True`` is its ``leaf``, bit for bit;
* ``chain(clip_by_global_norm, <entry>)``, jitted with donated state, makes
  the catalog's number of passes per leaf and copies no donated buffer (the
  copy-free rule: a per-leaf update reads an old moment only through the new
  one, see docs/contributing.md);
* under ``skip_nonfinite`` a step with a NaN gradient leaves the inner state
  bit for bit as it was and returns zero updates;
* every state format trains: finite updates close to the fp32 ones.
"""

from __future__ import annotations

import re

import catalog
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_fast_path import N, passes_over_params

import adam_tx
from adam_tx._engine import fusion

ENTRIES = catalog.CATALOG
IDS = [e.name for e in ENTRIES]


def _tree(seed=0, big=False):
    rng = np.random.default_rng(seed)
    shapes = {"w": (64, 80) if big else (6, 5), "b": (5,)}
    return {
        k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()
    }


def _pieces(tx, state):
    program = fusion.program_of(tx)
    assert program is not None, "not an adam_tx transform"
    return fusion._flatten(program, state)


def _contexts(tx, params, grads):
    """Each piece of ``tx`` with its context and per-leaf entries, as the
    engine prepares them, for the step ``update(grads, init(params))``."""
    state = tx.init(params)
    leaves, treedef = jax.tree.flatten(grads)
    p_leaves = treedef.flatten_up_to(params)
    out = []
    x_leaves = list(leaves)
    for piece, sub in _pieces(tx, state):
        split = fusion._split_fields(piece, sub, treedef, grads)
        reduced = None
        if piece.reduce_input is not None:
            for x, p in zip(x_leaves, p_leaves):
                part = (
                    piece.reduce_input(x, p)
                    if piece.reduce_params
                    else (piece.reduce_input(x))
                )
                reduced = fusion._sum_partials(reduced, part)
        ctx = piece.prepare(sub, params, reduced)
        infos = [fusion.LeafInfo(j, str(j)) for j in range(len(leaves))]
        out.append((piece, ctx, split, list(x_leaves), p_leaves, infos))
        x_leaves = [
            piece.leaf(ctx, x, e, p, i)[0]
            for x, e, p, i in zip(x_leaves, split, p_leaves, infos)
        ]
    return out


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_declarations_tell_the_truth(entry):
    params, grads = _tree(0), _tree(1)
    tx = adam_tx.chain(adam_tx.clip_by_global_norm(0.5), catalog.build(entry))
    checked = 0
    for piece, ctx, split, xs, ps, infos in _contexts(tx, params, grads):
        for x, e, p, info in zip(xs, split, ps, infos):
            y, new, _ = piece.leaf(ctx, x, e, p, info)
            if piece.scales_by is not None:
                assert not piece.fields, f"{piece.name} scales_by but keeps state"
                want = x * piece.scales_by(ctx).astype(x.dtype)
                np.testing.assert_allclose(y, want, rtol=1e-6, err_msg=piece.name)
                checked += 1
            if piece.guarded_leaf is not None:
                gy, gnew, _ = piece.guarded_leaf(ctx, x, e, p, info, jnp.bool_(True))
                assert jnp.array_equal(gy, y), piece.name
                for a, b in zip(jax.tree.leaves(gnew), jax.tree.leaves(new)):
                    assert jnp.array_equal(a, b), piece.name
                checked += 1
    assert checked > 0  # the clip piece at least declares scales_by


def _compiled(tx, leaves=2):
    params = {f"p{i}": jnp.full((N,), 0.5, jnp.float32) for i in range(leaves)}
    grads = {k: jnp.full((N,), 0.1, jnp.float32) for k in params}
    state = tx.init(params)

    def step(params, state, grads):
        u, state = tx.update(grads, state, params)
        return optax.apply_updates(params, u), state

    return jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()


FULL = [e for e in ENTRIES if e.passes is not None]


@pytest.mark.parametrize("entry", FULL, ids=[e.name for e in FULL])
def test_passes_per_leaf_and_no_donated_copies(entry):
    leaves = 2
    tx = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), catalog.build(entry))
    text = _compiled(tx, leaves).as_text()
    entry_hlo = text[text.index("\nENTRY") :]
    assert passes_over_params(text) == entry.passes * leaves, entry_hlo
    copies = len(re.findall(rf"f32\[{N}\]\S* copy\(", entry_hlo))
    # The catalog counts copies for a 2-leaf step, as here.
    assert copies == entry.copies, entry_hlo


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_nonfinite_step_is_skipped_bit_for_bit(entry):
    params = _tree(0)
    tx = adam_tx.skip_nonfinite(catalog.build(entry))
    state = tx.init(params)
    for seed in (1, 2):  # two finite steps first, so the state is not zeros
        _, state = tx.update(_tree(seed), state, params)
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), _tree(3))
    u, new = tx.update(bad, state, params)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(u))
    before, after = state.inner_state, new.inner_state
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        assert jnp.array_equal(a, b, equal_nan=True)


FORMATTED = [e for e in ENTRIES if e.formats]


@pytest.mark.parametrize("fmt", [f for f in catalog.FORMATS if f != "fp32"])
@pytest.mark.parametrize("entry", FORMATTED, ids=[e.name for e in FORMATTED])
def test_every_state_format_trains(entry, fmt):
    params = _tree(0, big=True)
    ref, tx = catalog.build(entry), catalog.build(entry, fmt)
    s_ref, s = ref.init(params), tx.init(params)
    tol = {"bf16": 0.05, "stochastic": 0.05, "int8": 0.1, "int4": 0.3}[fmt]
    for seed in (1, 2, 3):
        g = _tree(seed, big=True)
        u_ref, s_ref = ref.update(g, s_ref, params)
        u, s = jax.jit(tx.update)(g, s, params)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_ref)):
            assert np.isfinite(a).all()
            scale = float(jnp.abs(b).max()) or 1.0
            if fmt == "int4":
                # 16 levels per block: single entries may move by most of the
                # largest update (measured up to 0.85 of it, AdaBelief), the
                # update as a whole by 4-21% of its norm after three steps.
                err, ref_norm = jnp.linalg.norm(a - b), jnp.linalg.norm(b)
                assert float(err) <= tol * (float(ref_norm) or 1.0), (fmt, entry.name)
            else:
                assert float(jnp.abs(a - b).max()) <= tol * scale, (fmt, entry.name)


# Public factories that are wrappers or helpers, not transforms to catalog.
NOT_CATALOGED = {
    "chain",
    "group_small_leaves",
    "loss_scaling",
    "skip_nonfinite",
    "switch",
    "track_stats",
    "debug",
    "skip_spikes",  # a guard around an inner transform, like skip_nonfinite
}


def test_catalog_covers_every_public_transform():
    public = set()
    for name in adam_tx.__all__:
        obj = getattr(adam_tx, name)
        if name in NOT_CATALOGED or isinstance(obj, type) or not callable(obj):
            continue
        made = None
        for args in ((), (0.1,)):  # defaults, or one required rate
            try:
                made = obj(*args)
                break
            except Exception:  # not a factory of that shape
                continue
        if isinstance(made, optax.GradientTransformation):
            public.add(name)
    named = {e.name for e in ENTRIES}
    missing = {
        n for n in public if n not in named and not any(x.startswith(n) for x in named)
    }
    assert not missing, f"add these to tests/catalog.py: {sorted(missing)}"
