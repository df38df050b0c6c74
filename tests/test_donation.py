"""Every optimizer state can be donated to a jitted step.

XLA refuses to donate one buffer twice, so an ``init`` that puts the same array
in two fields (a shared ``zero``) breaks ``jax.jit(step, donate_argnums=...)``
for every user who donates their state, as the speed notes tell them to.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import adam_tx

OPTIMIZERS = {
    "adam": lambda: adam_tx.adam(1e-3),
    "adamw": lambda: adam_tx.adamw(1e-3),
    "amsgrad": lambda: adam_tx.amsgrad(1e-3, max_of="nu"),
    "adabelief": lambda: adam_tx.adabelief(1e-3),
    "adamax": lambda: adam_tx.adamax(1e-3),
    "nadamw": lambda: adam_tx.nadamw(1e-3),
    "rmsprop": lambda: adam_tx.rmsprop(1e-3, momentum=0.9, centered=True),
    "adagrad": lambda: adam_tx.adagrad(1e-3),
    "sgd": lambda: adam_tx.sgd(1e-3, momentum=0.9),
    "clip+stats": lambda: adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3), adam_tx.track_stats()
    ),
    "skip_nonfinite": lambda: adam_tx.skip_nonfinite(adam_tx.adamw(1e-3)),
    "loss_scaling": lambda: adam_tx.loss_scaling(adam_tx.adamw(1e-3)),
    "bf16_stochastic": lambda: adam_tx.adam(
        1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16, state_format="stochastic"
    ),
}


def _buffer_ids(tree):
    return [leaf.unsafe_buffer_pointer() for leaf in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fresh_state_has_no_shared_buffers_and_can_be_donated(name):
    tx = OPTIMIZERS[name]()
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    state = tx.init(params)
    ids = _buffer_ids(state)
    assert len(ids) == len(set(ids)), f"{name}: init shares a buffer between fields"

    @jax.jit
    def step(params, state):
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    donated = jax.jit(step, donate_argnums=(0, 1))
    new_params, new_state = donated(params, state)
    ref_params, _ = step({k: jnp.array(v) for k, v in new_params.items()}, new_state)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(ref_params))
