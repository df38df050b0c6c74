"""Sums of squares: accurate, one loop, and the right formulation per backend."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adam_tx._engine import reduce


@pytest.mark.parametrize(
    "shape",
    [(2048,), (40, 24), (6, 10, 12), (3, 5, 7), (100_003,), (1, 9), (), (0,), (2, 0)],
)
@pytest.mark.parametrize("form", ["platform", "cpu", "plain"])
def test_sums_are_accurate(shape, form):
    """Rows of 8 or 4, the compensated sum along an odd last axis, or a plain
    sum: all within a few float32 roundings of the float64 sums."""
    rng = np.random.default_rng(0)
    u = rng.standard_normal(shape).astype(np.float32)
    p = (rng.standard_normal(shape) + 1).astype(np.float32)
    fn = {
        "platform": reduce.sums_of_squares,
        "cpu": reduce._cpu_sums,
        "plain": reduce.plain_sums_of_squares,
    }[form]
    got = jax.jit(fn)(jnp.asarray(u), jnp.asarray(p))
    assert len(got) == 2 and all(g.dtype == jnp.float32 for g in got)
    for g, x in zip(got, (u, p)):
        want = np.sum(np.square(x.astype(np.float64)))
        # A plain float32 sum (the GPU form, run here on CPU) rounds more.
        np.testing.assert_allclose(
            float(g), want, rtol=1e-6 if form == "plain" else 3e-7
        )


def test_long_odd_vector_keeps_its_digits():
    """A float32 running total over 2M terms is off by ~1e-3; TwoSum is not."""
    rng = np.random.default_rng(1)
    x, y = (rng.standard_normal(2_000_001).astype(np.float32) for _ in range(2))
    got = jax.jit(reduce._cpu_sums)(jnp.asarray(x), jnp.asarray(y))
    for g, a in zip(got, (x, y)):
        want = np.sum(np.square(a.astype(np.float64)))
        np.testing.assert_allclose(float(g), want, rtol=3e-7)


def test_low_precision_leaves_sum_in_float32():
    x = jnp.full((64,), 300.0, jnp.float16)  # 300^2 overflows float16
    (got,) = reduce.sums_of_squares(x)
    assert got.dtype == jnp.float32 and float(got) == 64 * 300.0**2


def test_each_backend_gets_its_formulation():
    x = jnp.ones((64, 24))  # rows of 8: 64 x 3 x 8
    traced = jax.jit(lambda x: reduce.sums_of_squares(x, 2 * x)).trace(x)
    text = {p: traced.lower(lowering_platforms=(p,)).as_text() for p in ("cpu", "cuda")}
    assert "64x3x8xf32" in text["cpu"] and "64x3x8xf32" not in text["cuda"]
    compiled = jax.jit(lambda x: reduce.sums_of_squares(x, 2 * x)).lower(x).compile()
    assert " conditional(" not in compiled.as_text()  # the choice is made, not run
