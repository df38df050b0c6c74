"""Child of tests/test_multiprocess.py: data-parallel training over processes.

``worker I N PORT OUT``: process I of N joins a ``jax.distributed`` cluster on
127.0.0.1:PORT (CPU, one device each), feeds its 1/N of every batch to a small
Flax model and trains it for 20 steps with ZeRO-1 sharded adam_tx state;
process 0 writes the final parameters to OUT/multi.npz. The sharded state is
then checkpointed and restored across the processes, bit for bit.
``single OUT``: the same training in one process on the whole batch, written
to OUT/single.npz.
"""

import pathlib
import sys

STEPS, BATCH = 20, 32


def main(argv: list[str]) -> None:
    import jax

    if argv[0] == "worker":
        index, count, port, out = int(argv[1]), int(argv[2]), argv[3], argv[4]
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}",
            num_processes=count,
            process_id=index,
            initialization_timeout=60,
        )
        assert jax.process_count() == count and jax.device_count() == count
    else:
        index, count, out = 0, 1, argv[1]

    import flax.linen as nn
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import adam_tx
    from adam_tx.sharding import state_sharding

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.tanh(nn.Dense(32)(x))
            return nn.Dense(4)(x)

    model = MLP()
    tx = adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-2, weight_decay=1e-3)
    )
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))

    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16)))
    p_sh = jax.tree.map(lambda _: replicated, abstract)
    s_sh = state_sharding(tx, abstract, p_sh, zero_axis="data")
    params = jax.jit(model.init, out_shardings=p_sh)(
        jax.random.key(0), jnp.zeros((1, 16))
    )
    state = jax.jit(tx.init, out_shardings=s_sh)(params)

    def loss(p, x, y):
        return jnp.mean((model.apply(p, x) - y) ** 2)

    def train_step(p, s, x, y):
        g = jax.grad(loss)(p, x, y)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(
        train_step,
        in_shardings=(p_sh, s_sh, batch_sharding, batch_sharding),
        out_shardings=(p_sh, s_sh),
    )
    rows = slice(index * BATCH // count, (index + 1) * BATCH // count)
    for t in range(STEPS):
        kx = jax.random.fold_in(jax.random.key(1), t)
        x = np.asarray(jax.random.normal(kx, (BATCH, 16)))
        y = np.sin(x[:, :4] * 2.0)
        local_x, local_y = x[rows], y[rows]  # this process's share only
        gx = jax.make_array_from_process_local_data(batch_sharding, local_x)
        gy = jax.make_array_from_process_local_data(batch_sharding, local_y)
        params, state = step(params, state, gx, gy)

    mu = state[1][0].mu
    for leaf in jax.tree.leaves(mu):
        local = sum(s.data.size for s in leaf.addressable_shards)
        assert local * count == leaf.size, (leaf.shape, local)  # ZeRO-1 split
    # every process writes its slices, restores them, and checks the bits
    import orbax.checkpoint as ocp

    from adam_tx import checkpoint

    with ocp.CheckpointManager(pathlib.Path(out) / f"ckpt{count}") as manager:
        checkpoint.save(manager, STEPS, state)
        back = checkpoint.restore(
            manager, STEPS, checkpoint.abstract_state(tx, abstract, s_sh)
        )
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        assert a.sharding == b.sharding
        for sa, sb in zip(a.addressable_shards, b.addressable_shards):
            np.testing.assert_array_equal(np.asarray(sa.data), np.asarray(sb.data))
    if index == 0:
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        np.savez(
            pathlib.Path(out) / ("multi.npz" if count > 1 else "single.npz"),
            **{
                jax.tree_util.keystr(k): np.asarray(v.addressable_data(0))
                for k, v in flat
            },
        )
    if count > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
