"""Hypothesis: over random tree structures and shapes, the state keeps its
structure, shapes and dtypes through 5 steps of ``lax.scan``."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adam_tx

SHAPES = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)
DTYPES = st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16])


class Leaf:
    """A leaf spec (not a pytree node, so containers of them are unambiguous)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype

    def __repr__(self):
        return f"Leaf({self.shape}, {jnp.dtype(self.dtype).name})"


LEAVES = st.builds(Leaf, SHAPES, DTYPES)
TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=2).map(tuple),
        st.dictionaries(st.sampled_from("abcd"), children, min_size=1, max_size=3),
    ),
    max_leaves=5,
)
OPTIMIZERS = {
    "adamw_clip": lambda: adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(1e-2, mu_dtype=jnp.bfloat16, nu_dtype=jnp.float32),
    ),
    "amsgrad": lambda: adam_tx.amsgrad(1e-2, max_of="nu"),
    "nadam_agc": lambda: adam_tx.chain(
        adam_tx.adaptive_grad_clip(0.1), adam_tx.nadam(1e-2)
    ),
    "rmsprop": lambda: adam_tx.rmsprop(1e-2, centered=True, momentum=0.9),
}


def _signature(tree):
    return jax.tree.structure(tree), [
        (jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)
    ]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=TREES, name=st.sampled_from(sorted(OPTIMIZERS)), seed=st.integers(0, 99))
def test_state_is_stable_through_scan(spec, name, seed):
    rng = np.random.default_rng(seed)
    params = jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype),
        spec,
        is_leaf=lambda x: isinstance(x, Leaf),
    )
    opt = OPTIMIZERS[name]()
    state0 = opt.init(params)

    def body(carry, _):
        p, s = carry
        g = jax.tree.map(lambda x: (x * x - 0.5).astype(x.dtype), p)
        u, s = opt.update(g, s, p)
        assert _signature(u) == _signature(p)
        return (adam_tx.apply_updates(p, u), s), None

    (p, state), _ = jax.lax.scan(body, (params, state0), None, length=5)
    assert _signature(state) == _signature(state0)
    assert _signature(p) == _signature(params)
    for x in jax.tree.leaves(p):
        assert np.all(np.isfinite(np.asarray(x, np.float32)))
