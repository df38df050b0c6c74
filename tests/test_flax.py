"""adam_tx inside Flax: nnx.Optimizer, linen TrainState, parameter groups and
gradient accumulation with optax.MultiSteps.

Parameter groups, as users write them:

- no weight decay on biases, norm scales and embeddings:
  ``adam_tx.adamw(lr, mask=adam_tx.decay_mask)``;
- another learning rate for the embeddings: ``optax.partition`` with one
  adam_tx optimizer per label, the labels a pytree like the params
  (see ``test_embedding_group_gets_its_own_learning_rate``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.training import train_state
from sklearn.datasets import load_digits

import adam_tx


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return jnp.asarray(x[:512] / 16.0, jnp.float32), jnp.asarray(y[:512])


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 32, rngs=rngs)
        self.norm = nnx.LayerNorm(32, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.norm(self.hidden(x))))


def _xent(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def test_nnx_optimizer_trains_mlp_on_digits(digits):
    x, y = digits
    model = NnxMLP(nnx.Rngs(0))
    tx = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(1e-2, weight_decay=1e-4, mask=adam_tx.decay_mask),
    )
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: _xent(m(x), y))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer, x, y)) for _ in range(60)]
    assert losses[-1] < 0.25 * losses[0]
    assert float((model(x).argmax(-1) == y).mean()) > 0.9


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = linen.relu(linen.Dense(32)(x))
        return linen.Dense(10)(x)


def test_linen_train_state_trains_mlp_on_digits(digits):
    x, y = digits
    model = LinenMLP()
    params = model.init(jax.random.key(0), x[:1])["params"]
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=adam_tx.recipes.general(60, 2e-2)
    )

    @jax.jit
    def step(state):
        def loss_fn(p):
            return _xent(state.apply_fn({"params": p}, x), y)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(60):
        state, loss = step(state)
        losses.append(float(loss))
    assert losses[-1] < 0.25 * losses[0]
    assert int(state.step) == 60


PARAMS = {
    "embed": {"embedding": jnp.ones((4, 3))},
    "dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)},
    "norm": {"scale": jnp.ones(2)},
}


def test_decay_mask_spares_biases_norms_and_embeddings():
    tx = adam_tx.adamw(0.1, weight_decay=0.5, mask=adam_tx.decay_mask)
    zeros = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, _ = tx.update(zeros, tx.init(PARAMS), PARAMS)
    # Zero gradient: only the decayed leaf moves, by -lr * wd * p.
    np.testing.assert_allclose(updates["dense"]["kernel"], -0.05)
    for path in (("dense", "bias"), ("norm", "scale"), ("embed", "embedding")):
        np.testing.assert_array_equal(updates[path[0]][path[1]], 0.0)


def test_embedding_group_gets_its_own_learning_rate():
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "embed" if "embed" in jax.tree_util.keystr(path) else "rest",
        PARAMS,
    )
    tx = optax.partition(
        {
            "embed": adam_tx.adam(1e-1),
            "rest": adam_tx.adamw(1e-2, mask=adam_tx.decay_mask),
        },
        labels,
    )
    grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), PARAMS)
    updates, state = jax.jit(tx.update)(grads, tx.init(PARAMS), PARAMS)
    # First Adam step moves each coordinate by about lr (m_hat / sqrt(v_hat) = 1).
    np.testing.assert_allclose(updates["embed"]["embedding"], -0.1, rtol=1e-5)
    np.testing.assert_allclose(updates["dense"]["bias"], -0.01, rtol=1e-5)
    np.testing.assert_allclose(
        updates["dense"]["kernel"], -0.01 * (1 + 1e-4), rtol=1e-5
    )
    # Each group's hyperparameters stay reachable in the state.
    inner = state.inner_states
    assert float(adam_tx.get_hyperparams(inner["embed"])["learning_rate"]) == (
        pytest.approx(0.1)
    )


@pytest.mark.parametrize(
    "make",
    [lambda: adam_tx.adamw(1e-2), lambda: adam_tx.recipes.general(10, 1e-2)],
)
def test_multisteps_accumulation_equals_large_batch_step(make):
    keys = jax.random.split(jax.random.key(1), 8)
    micro = [jax.tree.map(lambda p, k=k: jax.random.normal(k, p.shape), PARAMS)
             for k in keys]  # fmt: skip
    big = jax.tree.map(lambda *g: sum(g) / 4, *micro[:4])
    big2 = jax.tree.map(lambda *g: sum(g) / 4, *micro[4:])

    acc = optax.MultiSteps(make(), every_k_schedule=4)
    p, s = PARAMS, acc.init(PARAMS)
    update = jax.jit(acc.update)
    for g in micro:
        u, s = update(g, s, p)
        p = optax.apply_updates(p, u)

    ref_tx = make()
    q, r = PARAMS, ref_tx.init(PARAMS)
    for g in (big, big2):
        u, r = ref_tx.update(g, r, q)
        q = optax.apply_updates(q, u)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
