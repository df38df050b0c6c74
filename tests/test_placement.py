"""State is born with the parameters' sharding (adam_tx/placement.py).

The multi-device checks run in child processes on 8 host devices
(tests/scripts/born_sharded.py): one per mesh, so that xdist spreads them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import subprocesses

from adam_tx._engine import placement

MESHES = ["8/Auto", "8/Explicit", "4x2/Auto", "4x2/Explicit"]


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_every_state_leaf_is_born_sharded(mesh):
    out = subprocesses.run("born_sharded.py", mesh, devices=8, timeout=400)
    assert "cases passed" in out, out


def test_the_xla_behaviour_zeros_like_relies_on():
    """A float ``|p| * 0`` keeps the parameter's sharding through jit on an
    Auto mesh; a broadcast zero and an integer ``and(x, 0)`` do not (they are
    folded before sharding propagation). If the first line turns False after a
    jax upgrade, ``placement.zeros_like`` needs a new form."""
    out = subprocesses.run("born_sharded.py", "--micro", devices=8, timeout=120)
    got = dict(line.split() for line in out.strip().splitlines()[-3:])
    assert got == {"float_mul": "True", "int_and": "False", "broadcast": "False"}


@pytest.mark.parametrize("value", [1.5, -2.0, np.inf, -np.inf, np.nan, 0.0, -0.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_zeros_like_is_positive_zero_for_every_input(value, dtype):
    p = jnp.full((3,), value, jnp.float32)
    for z in (
        placement.zeros_like(p, dtype),
        jax.jit(placement.zeros_like, static_argnums=1)(p, dtype),
    ):
        assert z.dtype == dtype and z.shape == (3,)
        bits = np.asarray(z.astype(jnp.float32)).view(np.uint32)
        assert (bits == 0).all(), bits


def test_zeros_like_of_non_arrays():
    assert placement.zeros_like(np.ones((2, 3)), jnp.float32).shape == (2, 3)
    assert placement.zeros_like(1.0).dtype == jnp.float32


def test_scalars_stay_put_without_a_mesh():
    state = {"count": jnp.zeros([], jnp.int32)}
    assert placement.replicate_scalars(state, {"w": jnp.ones(2)}) is state
