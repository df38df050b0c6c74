"""Micro-HLO tests of the XLA behaviours adam_tx's fast path relies on.

One test per module of ``adam_tx._engine.xla`` (and ``adam_tx._engine.reduce``). Each
compiles a few-line program with and without the trick and checks what XLA
made of it. They fail when a jax upgrade changes the behaviour: then the
trick is no longer needed or no longer works, and its module says what it
was for. Measured with jax 0.10.2 on XLA:CPU.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adam_tx._engine.reduce import sums_of_squares
from adam_tx._engine.xla.once import finite_flag, root
from adam_tx._engine.xla.ordering import after, entry_after, ordered_after, shadow

N = 4096
COPY = rf"f32\[{N}\]\S* copy\("

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="the rules are measured on XLA:CPU"
)


def _compiled(f, n, donate=()):
    xs = [jnp.full((N,), 0.5 + i, jnp.float32) for i in range(n)]
    return jax.jit(f, donate_argnums=donate).lower(*xs).compile()


def test_ordered_after_removes_the_copy_of_an_overwritten_moment():
    """A loop reading a buffer that a sibling loop overwrites in place makes
    XLA copy that buffer; a bitwise no-op dependency orders the loops instead
    (ADOPT's momentum reads the old second moment)."""

    def step(order):
        def f(p, m, v, g):
            x = jnp.clip(g / jnp.maximum(jnp.sqrt(v), 1e-6), -1.0, 1.0)
            m = 0.9 * m + 0.1 * x  # reads the old v
            v = 0.99 * v + 0.01 * g * g
            return p - 0.01 * m, m, ordered_after(v, m[0]) if order else v

        return f

    assert re.search(COPY, _compiled(step(False), 4, (0, 1, 2)).as_text())
    assert not re.search(COPY, _compiled(step(True), 4, (0, 1, 2)).as_text())


def test_after_orders_the_update_after_a_reduction_of_the_parameters():
    """A reduction reading the parameters (``track_stats``' norm) and an
    update overwriting them in place: XLA copies the parameters unless the
    update's scalars depend on the reduction (the engine's pass after its
    ``reduce_params`` reductions)."""

    def step(order):
        def f(p, g):
            s = jnp.sum(jnp.sqrt(jnp.abs(p)) * g)
            lr = jnp.float32(0.1)
            lr = after([s])(lr) if order else lr
            return p - lr * g, s

        return f

    without = _compiled(step(False), 2, (0,))
    with_order = _compiled(step(True), 2, (0,))
    assert re.search(COPY, without.as_text())
    assert not re.search(COPY, with_order.as_text())
    assert with_order.memory_analysis().temp_size_in_bytes < N


def test_ordering_changes_no_bit_and_keeps_derivatives():
    x = jnp.array([1.5, -0.0, jnp.inf, jnp.nan, 1e-45], jnp.float32)
    for y in (jnp.float32(7.0), jnp.float32(jnp.nan), jnp.bfloat16(-3.0)):
        np.testing.assert_array_equal(ordered_after(x, y), x)
    np.testing.assert_array_equal(after([jnp.float32(2.0)], arrays=True)(x), x)
    codes = {"codes": jnp.arange(4, dtype=jnp.int8), "scale": jnp.ones(2)}
    kept = entry_after(codes, jnp.full((3,), 2.0))
    assert jax.tree.map(lambda a, b: bool((a == b).all()), kept, codes)
    grad = jax.grad(lambda t: after([jnp.float32(3.0)])(t) ** 2)(jnp.float32(2.0))
    assert float(grad) == 4.0


def _adds(text: str) -> int:
    return len(re.findall(r"= f32\[\] add\(", text))


def test_a_square_root_is_computed_once_a_sum_over_leaves_is_not():
    """A flag read by every leaf's loop: ``isfinite`` of the sum over leaves
    copies the leaves' additions into every loop (quadratic in the leaf
    count); through a square root the sum is computed once."""
    leaves = 40

    def guard(once):
        def f(*gs):
            total = sum(jnp.sum(g * g) for g in gs)
            ok = finite_flag(total) if once else jnp.isfinite(total)
            return tuple(jnp.where(ok, 0.5 * g, 0.0) for g in gs)

        return f

    xs = [jnp.ones((64,), jnp.float32)] * leaves
    plain = jax.jit(guard(False)).lower(*xs).compile().as_text()
    once = jax.jit(guard(True)).lower(*xs).compile().as_text()
    assert _adds(plain) > 10 * leaves  # every loop re-adds the leaves' sums
    assert _adds(once) < 4 * leaves
    for s in (4.0, 0.0, jnp.inf, jnp.nan, -jnp.inf):
        assert bool(finite_flag(jnp.float32(s))) == bool(jnp.isfinite(s))
    assert float(root(jnp.float32(-4.0))) == 2.0


def test_lone_sums_go_to_the_library_kernel_variadic_sums_stay_loops():
    """:mod:`adam_tx._engine.reduce`: on XLA:CPU a lone ``jnp.sum`` becomes a library
    (YNNPACK) fusion; two sums over one expression are a variadic reduce over
    rows of 8 that XLA keeps as its own loop, with only the row sums (an
    eighth of the leaf each) as temporaries."""
    shape = (N // 64, 64)
    p, g = jnp.full(shape, 2.0), jnp.full(shape, 0.5)

    def lone(p, g):
        return jnp.sum(g * g)

    def two(p, g):
        u = g / (jnp.sqrt(p) + 1.0)
        return sums_of_squares(u, g)

    lone_c = jax.jit(lone).lower(p, g).compile()
    two_c = jax.jit(two).lower(p, g).compile()
    assert "__ynn_fusion" in lone_c.as_text()
    assert "__ynn_fusion" not in two_c.as_text()
    # The row sums (2 x N/8 floats) and scalars; the expression itself (N
    # floats) is never stored.
    assert two_c.memory_analysis().temp_size_in_bytes < N * 4 // 2


def test_a_reduction_of_a_shadow_keeps_the_encoded_moment_in_registers():
    """A new moment read by an encoding loop that also reads the moment's
    block maxima is stored first (a leaf-sized temporary); with the maxima
    computed from shadows of the moment's inputs, nothing is stored."""
    table = np.linspace(0.0, 1.0, 256, dtype=np.float32)

    def step(g, codes, use_shadow):
        def moment(g, codes):
            decoded = jnp.asarray(table)[codes.astype(jnp.uint32)]
            return 0.9 * decoded + 0.1 * g

        m = moment(g, codes)
        src = shadow((g, codes), g[0], salt=0) if use_shadow else (g, codes)
        r = moment(*src).reshape(-1, 128)
        maxima = jax.lax.reduce(
            (jnp.abs(r), -r),
            (np.float32(0),) * 2,
            lambda a, b: (jnp.maximum(a[0], b[0]), jnp.maximum(a[1], b[1])),
            (1,),
        )
        scale = jnp.maximum(*maxima)
        return (m.reshape(-1, 128) / scale[:, None] * 100).astype(jnp.uint8), scale

    g = jnp.full((N,), 0.5, jnp.float32)
    codes = jnp.full((N,), 7, jnp.uint8)
    plain, shadowed = (
        jax.jit(lambda g, c, s=s: step(g, c, s)).lower(g, codes).compile()
        for s in (False, True)
    )
    assert plain.memory_analysis().temp_size_in_bytes >= N * 4
    assert shadowed.memory_analysis().temp_size_in_bytes < N
    np.testing.assert_array_equal(
        jax.jit(lambda g, c: step(g, c, True))(g, codes)[0],
        jax.jit(lambda g, c: step(g, c, False))(g, codes)[0],
    )


def test_a_gather_read_by_two_loops_is_stored_one_loop_fuses_it():
    """Decoding by table: XLA:CPU fuses a gather into the loop reading it,
    but stores it when two loops read it (why the update decodes its own
    shadow of the old codes)."""
    table = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    take = lambda c: jnp.asarray(table)[c.astype(jnp.uint32)]
    codes = jnp.full((N,), 7, jnp.uint8)
    g = jnp.full((N,), 0.5, jnp.float32)
    one = jax.jit(lambda c, g: take(c) * g).lower(codes, g).compile()
    two = jax.jit(lambda c, g: (take(c) * g, (take(c) * 3).astype(jnp.uint8)))
    two = two.lower(codes, g).compile()
    assert one.memory_analysis().temp_size_in_bytes < N
    assert two.memory_analysis().temp_size_in_bytes >= N * 4


def test_a_constant_added_after_a_moment_sum_makes_xla_copy_the_moment():
    """AdaBelief's ``s = b s + (1 - b) d^2 + eps_root``: with the constant added
    last, XLA recomputes the new ``s`` in the parameter's loop from the old
    one, which the moment's loop overwrites in place, so it copies the donated
    moment; joined to the new term first (``adam_tx.moments.ema_plus``) the
    parameter's loop reads the stored moment."""
    from adam_tx.moments import ema_plus

    def step(joined):
        def f(p, m, s, g):
            m = 0.9 * m + 0.1 * g
            d2 = (g - m) * (g - m)
            if joined:
                s = ema_plus(s, d2, 0.999, 0.001, 1e-16)
            else:
                s = 0.999 * s + 0.001 * d2 + 1e-16
            return p - 1e-3 * m / (jnp.sqrt(s) + 1e-8), m, s

        return f

    assert re.search(COPY, _compiled(step(False), 4, (0, 1, 2)).as_text())
    assert not re.search(COPY, _compiled(step(True), 4, (0, 1, 2)).as_text())
