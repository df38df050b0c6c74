"""Child of tests/test_checkpoint.py: train, checkpoint, resume elsewhere.

``full DIR``: 30 steps, write DIR/full.npz. ``first DIR``: 13 steps, then
checkpoint params, optimizer state and the data PRNG key in DIR/ckpt.
``resume DIR`` (a fresh process): restore, 17 more steps, write
DIR/resume.npz. Both .npz hold every leaf of the final train state.
"""

import pathlib
import sys


def main(mode: str, out: pathlib.Path) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import orbax.checkpoint as ocp

    import adam_tx
    from adam_tx import checkpoint
    from adam_tx._engine.tree import path_str

    tx = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0),
        adam_tx.adamw(lambda t: 3e-2 * 0.97**t, weight_decay=0.01),
    )
    init_params = {
        "w1": jax.random.normal(jax.random.key(0), (8, 16)) * 0.3,
        "b1": jnp.zeros(16),
        "w2": jax.random.normal(jax.random.key(1), (16, 1)) * 0.3,
    }

    def loss(p, x, y, key):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        keep = jax.random.bernoulli(key, 0.9, h.shape)  # dropout
        return jnp.mean((jnp.where(keep, h / 0.9, 0) @ p["w2"] - y) ** 2)

    @jax.jit
    def step(train):
        key, data_key, drop_key = jax.random.split(train["key"], 3)
        x = jax.random.normal(data_key, (32, 8))
        y = jnp.sin(x.sum(axis=1, keepdims=True))
        g = jax.grad(loss)(train["params"], x, y, drop_key)
        u, opt = tx.update(g, train["opt"], train["params"])
        return {
            "params": optax.apply_updates(train["params"], u),
            "opt": opt,
            "key": key,
        }

    train = {
        "params": init_params,
        "opt": tx.init(init_params),
        "key": jax.random.key(42),
    }
    if mode == "resume":
        with ocp.CheckpointManager(out / "ckpt") as manager:
            train = checkpoint.restore(manager, 13, train)
        steps = 17
    else:
        steps = {"full": 30, "first": 13}[mode]
    for _ in range(steps):
        train = step(train)
    if mode == "first":
        with ocp.CheckpointManager(out / "ckpt") as manager:
            checkpoint.save(manager, 13, train)
        return
    train["key"] = jax.random.key_data(train["key"])
    leaves = jax.tree_util.tree_flatten_with_path(train)[0]
    np.savez(out / f"{mode}.npz", **{path_str(p): np.asarray(x) for p, x in leaves})


if __name__ == "__main__":
    main(sys.argv[1], pathlib.Path(sys.argv[2]))
