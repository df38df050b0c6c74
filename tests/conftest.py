"""Shared fixtures; the float64 references and drivers live in ``reference.py``."""

import numpy as np
import pytest
from reference import MODES, SHAPES, random_tree


@pytest.fixture(params=MODES)
def mode(request):
    """float32 and float64 (x64), jitted; each module adds one eager run."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tree(rng):
    """A random float32 pytree mixing scalars, vectors, matrices and nested
    dict/list/tuple containers."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), random_tree(rng, SHAPES))
