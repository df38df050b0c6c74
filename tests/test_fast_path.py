"""The fused step stays one pass over memory: guards on the compiled program.

These tests read what XLA compiled for a jitted, donated training step
(clipping + AdamW + schedule) and fail if the step starts touching parameter-
sized data more often, or if donated buffers stop being updated in place.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adam_tx

N = 12289  # an odd size no scalar or index array in the program has
LEAVES = 3


def _schedule():
    return optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100)


def _adam_tx():
    return adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(_schedule(), weight_decay=0.01)
    )


def _optax():
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(_schedule(), weight_decay=0.01)
    )


def _compiled(tx, leaves=LEAVES, n=N):
    params = {f"p{i}": jnp.full((n,), 0.5, jnp.float32) for i in range(leaves)}
    grads = {k: jnp.full((n,), 0.1, jnp.float32) for k in params}
    state = tx.init(params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()


_INSTR = re.compile(
    r"^\s*(?:ROOT )?%(\S+) = (\([^)]*\)|\S+?)(?:\{[^}]*\})? (\S+?)\((.*)$"
)
_PASSIVE = {"parameter", "tuple", "get-tuple-element", "bitcast", "copy-start"}


def passes_over_params(hlo: str, n: int = N) -> int:
    """Instructions of the entry computation that read an ``f32[n]`` array.

    Each is a loop over parameter-sized memory (a fusion, a reduction, a copy);
    reading through a bitcast or a tuple moves no data and is not counted.
    """
    entry = hlo[hlo.index("\nENTRY") :]
    shapes: dict[str, str] = {}
    count = 0
    for line in entry.splitlines()[1:]:
        m = _INSTR.match(line)
        if not m:
            continue
        name, shape, op, rest = m.groups()
        shapes[name] = shape
        operands = re.findall(r"%([\w.\-]+)", rest.split("), ")[0])
        reads = any(shapes.get(o) == f"f32[{n}]" for o in operands)
        if op == "bitcast" and reads:
            shapes[name] = f"f32[{n}]"  # the same memory, viewed as another shape
        elif reads and op not in _PASSIVE:
            count += 1
    return count


def test_chained_step_makes_few_passes_per_leaf():
    hlo = _compiled(_adam_tx()).as_text()
    # Per leaf, XLA:CPU emits 4 loops: the global-norm reduction reads g; then,
    # since XLA:CPU does not fuse sibling loops into one multi-output loop, the
    # new m (reads g, m), the new v (reads g, v) and the new parameter (reads
    # p, m, v, and recomputes nothing else). No clipped or bias-corrected tree
    # is materialised. 4 passes = 44 B/param against the 32 B/param floor.
    assert passes_over_params(hlo) == 4 * LEAVES, hlo[hlo.index("\nENTRY") :]


def test_step_statistics_add_one_read_only_pass():
    """``track_stats`` costs one reduction per leaf and no copy or temporary."""
    tx = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(_schedule(), weight_decay=0.01),
        adam_tx.track_stats(),
    )
    compiled = _compiled(tx)
    # The 4 loops of the plain step, plus one reduction per leaf that reads g,
    # m, v and p (recomputing the update) and writes nothing: no stored update,
    # no copy of the donated parameters or moments.
    assert passes_over_params(compiled.as_text()) == 5 * LEAVES
    analysis = compiled.memory_analysis()
    if analysis is not None:
        assert analysis.alias_size_in_bytes >= 3 * LEAVES * N * 4
        assert analysis.temp_size_in_bytes < N * 4


N8 = 12288  # a multiple of 8: track_stats sums rows of 8 (a bitcast view)


@pytest.mark.parametrize("leaves", [1, 4])
def test_step_statistics_in_rows_of_8_add_one_pass_and_a_small_temporary(leaves):
    tx = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(_schedule(), weight_decay=0.01),
        adam_tx.track_stats(),
    )
    compiled = _compiled(tx, leaves, N8)
    assert passes_over_params(compiled.as_text(), N8) == 5 * leaves
    analysis = compiled.memory_analysis()
    if analysis is not None:
        assert analysis.alias_size_in_bytes >= 3 * leaves * N8 * 4
        # One leaf's row sums (two outputs, an eighth of the leaf each) at a
        # time: the leaves' reductions run one after another.
        assert analysis.temp_size_in_bytes < 0.3 * N8 * 4


def test_sparse_step_statistics_keep_the_plain_passes():
    """``track_stats(every=10)``: the reduction sits in a conditional; the
    entry computation makes the plain step's 4 passes per leaf and no copy."""
    tx = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(_schedule(), weight_decay=0.01),
        adam_tx.track_stats(every=10),
    )
    compiled = _compiled(tx, LEAVES, N8)
    text = compiled.as_text()
    entry = text[text.index("\nENTRY") :]
    assert " conditional(" in entry
    # The conditional takes the leaves in a tuple and is not counted: these are
    # the loops that run on every step.
    assert passes_over_params(text, N8) == 4 * LEAVES
    assert not re.search(rf"f32\[{N8}\]\S* copy\(", entry)
    analysis = compiled.memory_analysis()
    if analysis is not None:
        assert analysis.alias_size_in_bytes >= 3 * LEAVES * N8 * 4
        assert analysis.temp_size_in_bytes < 0.3 * N8 * 4


_GUARDS = {
    "skip_nonfinite": adam_tx.skip_nonfinite,
    "loss_scaling": adam_tx.loss_scaling,
    "both": lambda tx: adam_tx.loss_scaling(adam_tx.skip_nonfinite(tx)),
}


@pytest.mark.parametrize("n", [N, N8])
@pytest.mark.parametrize("guard", list(_GUARDS))
def test_guards_keep_the_plain_passes(guard, n):
    """The guards' finiteness tests and the loss scale's unscaling add no pass:
    their sums of squares are the clipping norm's, read once from the raw
    gradient (``Piece.scales_by``/``squares_factor``); the moments are updated
    in place without a copy (``Piece.guarded_leaf``)."""
    compiled = _compiled(_GUARDS[guard](_adam_tx()), LEAVES, n)
    text = compiled.as_text()
    entry = text[text.index("\nENTRY") :]
    assert passes_over_params(text, n) == 4 * LEAVES, entry
    assert not re.search(rf"f32\[{n}\]\S* copy\(", entry)
    analysis = compiled.memory_analysis()
    if analysis is not None:
        assert analysis.alias_size_in_bytes >= 3 * LEAVES * n * 4
        assert analysis.temp_size_in_bytes < n * 4


@pytest.mark.parametrize("guard", list(_GUARDS))
def test_guards_do_not_grow_the_program_with_the_leaf_count(guard):
    """Every leaf's loop reads the finiteness flag; computed as a chain of
    scalar additions over all leaves it was copied into each loop, and a
    guarded 200-leaf step compiled in 134 s against 1 s unguarded. The size
    of the compiled program stands in for the compile time here."""
    leaves, n = 50, 64
    plain = _compiled(_adam_tx(), leaves, n).as_text()
    guarded = _compiled(_GUARDS[guard](_adam_tx()), leaves, n).as_text()
    assert len(guarded) < 2.5 * len(plain)  # 1.6-1.9x now; 4.7-5.1x before


def test_optax_chain_makes_more_passes():
    """The counter sees the difference it is meant to guard."""
    ours = passes_over_params(_compiled(_adam_tx()).as_text())
    theirs = passes_over_params(_compiled(_optax()).as_text())
    assert theirs > ours


def test_donated_state_is_updated_in_place():
    compiled = _compiled(_adam_tx())
    analysis = compiled.memory_analysis()
    if analysis is None:
        pytest.skip("this backend reports no memory analysis")
    donated = 3 * LEAVES * N * 4  # params, mu, nu
    assert analysis.alias_size_in_bytes >= donated
    # No parameter-sized temporary: intermediates live in registers.
    assert analysis.temp_size_in_bytes < N * 4


def test_grouped_step_is_one_loop_for_many_leaves():
    leaves, n = 40, 64
    tx = adam_tx.group_small_leaves(_adam_tx())
    hlo = _compiled(tx, leaves, n).as_text()
    entry = hlo[hlo.index("\nENTRY") :]
    grouped = f"f32[{leaves * n}]"
    # One flat vector for all 40 leaves: the moment updates run over it.
    assert grouped in entry
    plain_hlo = _compiled(_adam_tx(), leaves, n).as_text()
    assert entry.count(" fusion(") < plain_hlo.count(" fusion(")


@pytest.mark.parametrize("max_leaf_size", [0, 50, 1 << 16])
def test_grouping_gives_the_same_steps(max_leaf_size):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (50,), (7,), (2, 2, 2), (60,)]
    params = {
        f"p{i}": jnp.asarray(rng.standard_normal(s)) for i, s in enumerate(shapes)
    }
    params["h"] = jnp.asarray(rng.standard_normal(5), jnp.bfloat16)
    plain = _adam_tx()
    grouped = adam_tx.group_small_leaves(_adam_tx(), max_leaf_size)
    p1, p2 = params, params
    s1, s2 = plain.init(p1), grouped.init(p2)
    for _ in range(3):
        g = jax.tree.map(
            lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), params
        )
        u1, s1 = plain.update(g, s1, p1)
        u2, s2 = grouped.update(g, s2, p2)
        assert jax.tree.structure(u1) == jax.tree.structure(u2)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            assert a.shape == b.shape and a.dtype == b.dtype
            # Only the global norm's summation order differs.
            np.testing.assert_allclose(
                np.asarray(a, np.float32),
                np.asarray(b, np.float32),
                rtol=1e-5,
                atol=1e-7,
            )
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    norm1 = s1[0].global_norm
    norm2 = s2.inner[0].global_norm
    np.testing.assert_allclose(norm1, norm2, rtol=1e-6)


def test_grouping_rejects_bad_max_leaf_size():
    with pytest.raises(ValueError, match="max_leaf_size must be >= 0, got -1"):
        adam_tx.group_small_leaves(adam_tx.adam(), -1)
    with pytest.raises(TypeError, match="max_leaf_size"):
        adam_tx.group_small_leaves(adam_tx.adam(), 2.5)


_BF16_STATES = {
    "bf16": {"mu_dtype": jnp.bfloat16, "nu_dtype": jnp.bfloat16},
    "bf16+SR": {"state_format": "stochastic"},
}


@pytest.mark.parametrize("guard", [None, "skip_nonfinite"])
@pytest.mark.parametrize("fmt", list(_BF16_STATES))
def test_bfloat16_state_keeps_the_fp32_passes_and_no_temporary(fmt, guard):
    """bfloat16 moments (rounded to nearest or stochastically) make the fp32
    step's loops and nothing more: the update reads the stored bfloat16
    moments (``state_format.reads_stored``), so the unrounded float32 moments
    are never kept, and the old moments are not copied before their loops
    overwrite them. Before, the update recomputed the rounding from the old
    moments: a copy of both per leaf (61 MiB at 16M parameters) and 1.9-3.5x
    the fp32 step time."""
    tx = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(_schedule(), weight_decay=0.01, **_BF16_STATES[fmt]),
    )
    if guard:
        tx = _GUARDS[guard](tx)
    compiled = _compiled(tx)
    text = compiled.as_text()
    entry = text[text.index("\nENTRY") :]
    # The f32 reads per leaf: the norm (g), the new m (g), the new v (g), the
    # update (p, g); each bfloat16 moment is read by its own loop and the update.
    assert passes_over_params(text) == 4 * LEAVES, entry
    assert not re.search(rf"bf16\[{N}\]\S* copy\(", entry), entry
    analysis = compiled.memory_analysis()
    if analysis is not None:
        assert analysis.alias_size_in_bytes >= LEAVES * N * (4 + 2 + 2)
        # Well under one leaf: only scalars and the rounding keys.
        assert analysis.temp_size_in_bytes < N * 4 / 8


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_quantized_state_stores_no_float32_moment(fmt):
    """int8 / int4 moments: per leaf, one reduction for both moments' block
    scales, one encoding loop per moment and the update, each recomputing the
    new moments from the old codes (decoded by table lookups fused into the
    loop). No float32 moment is ever stored: the only leaf-sized temporaries
    are copies of the old codes, which the update reads after the encoding
    loops overwrite them. Before, both new
    moments were stored in float32 (130 MiB at 16M parameters) and the step
    took 7x the fp32 step."""
    shape, leaves = (96, 1024), 2
    n = shape[0] * shape[1]
    tx = adam_tx.adamw(1e-3, weight_decay=0.01, state_format=fmt)
    params = {f"p{i}": jnp.full(shape, 0.5, jnp.float32) for i in range(leaves)}
    grads = {k: jnp.full(shape, 0.1, jnp.float32) for k in params}

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    compiled = (
        jax.jit(step, donate_argnums=(0, 1))
        .lower(params, tx.init(params), grads)
        .compile()
    )
    text = compiled.as_text()
    entry = text[text.index("\nENTRY") :]
    # Loops reading the gradient or the parameters: the scales' reduction,
    # the two encoding loops and the update.
    assert passes_over_params(text, "96,1024") == 4 * leaves, entry
    assert not re.search(r"f32\[96,1024\]\S* copy\(", entry), entry
    analysis = compiled.memory_analysis()
    if analysis is not None:
        # At most the two copies of the old codes per leaf (int4: half a byte
        # per element each).
        per_element = 2 if fmt == "int8" else 1
        assert analysis.temp_size_in_bytes <= per_element * leaves * n + 2**16, entry
