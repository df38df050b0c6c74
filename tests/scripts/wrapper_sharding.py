"""Child of tests/test_sharding.py: wrapper states under state_sharding.

On a 4x2 data x model mesh of 8 host devices, with Auto and with Explicit
axes, with and without ZeRO-1, each case initialises its state with
``jit(tx.init, out_shardings=state_sharding(...))`` and takes 3 jitted steps.
Every state leaf must keep the sharding ``state_sharding`` gives it; a large
leaf's moments (``group_small_leaves`` passes them through) must have the
parameter's spec (its ZeRO spec with ``zero_axis``), and the parameters must
equal a single-device run.

With ``--sgd-momentum`` it instead runs ``sgd(momentum)`` with
``zero_axis="data"`` on the Explicit mesh and prints OK if the step runs.
"""

import sys


def main(sgd_momentum: bool) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import adam_tx
    from adam_tx.sharding import state_sharding

    assert jax.device_count() == 8, jax.devices()
    shapes = {"w": (128, 64), "b": (64,), "s": (64,), "k": (8, 8)}
    specs = {"w": P(None, "model"), "b": P(), "s": P(), "k": P()}
    params = {
        k: jax.random.normal(jax.random.key(i), s) * 0.3
        for i, (k, s) in enumerate(sorted(shapes.items()))
    }

    def loss(p):  # elementwise: the gradients take the parameters' shardings
        return sum(jnp.sum(jnp.sin(3 * v) * v) for v in p.values())

    def grouped(tx):
        return adam_tx.group_small_leaves(tx, max_leaf_size=1000)

    txs = {
        "group_small_leaves(adamw(mask))": grouped(
            adam_tx.adamw(1e-2, weight_decay=0.1, mask=adam_tx.decay_mask)
        ),
        "group_small_leaves(clip+adamw+track_stats)": grouped(
            adam_tx.chain(
                adam_tx.clip_by_global_norm(1.0),
                adam_tx.adamw(1e-2),
                adam_tx.track_stats(),
            )
        ),
        "skip_nonfinite(loss_scaling(adamw))": adam_tx.skip_nonfinite(
            adam_tx.loss_scaling(adam_tx.adamw(1e-2), init_scale=1.0)
        ),
        "switch(adamw, sgd)": adam_tx.switch(
            adam_tx.adamw(1e-2), adam_tx.sgd(1e-2), at_step=2
        ),
    }
    if sgd_momentum:
        txs = {"sgd(momentum)": adam_tx.sgd(1e-2, momentum=0.9)}

    def make_step(tx):
        def step(p, s):
            u, s = tx.update(jax.grad(loss)(p), s, p)
            return optax.apply_updates(p, u), s

        return step

    for axis_type in (AxisType.Explicit,) if sgd_momentum else tuple(AxisType)[:2]:
        mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(axis_type,) * 2)
        p_sh = {k: NamedSharding(mesh, s) for k, s in specs.items()}
        for name, tx in txs.items():
            ref_p, ref_s = params, tx.init(params)
            for _ in range(3):
                ref_p, ref_s = jax.jit(make_step(tx))(ref_p, ref_s)
            for zero in ("data",) if sgd_momentum else (None, "data"):
                where = f"{axis_type.name} {name} zero_axis={zero}"
                with jax.set_mesh(mesh):
                    s_sh = state_sharding(tx, params, p_sh, zero_axis=zero)
                    p = jax.device_put(params, p_sh)
                    s = jax.jit(tx.init, out_shardings=s_sh)(p)
                    step = jax.jit(make_step(tx), out_shardings=(p_sh, s_sh))
                    for _ in range(3):
                        p, s = step(p, s)
                for leaf, want in zip(jax.tree.leaves(s), jax.tree.leaves(s_sh)):
                    assert leaf.sharding.is_equivalent_to(want, leaf.ndim), where
                big = P("data", "model") if zero else P(None, "model")
                for node in jax.tree.leaves(
                    s_sh, is_leaf=lambda n: isinstance(n, dict) and "w" in n
                ):
                    if isinstance(node, dict) and "w" in node:
                        assert node["w"].spec == big, (where, node["w"].spec)
                for k in shapes:
                    np.testing.assert_allclose(
                        p[k], ref_p[k], rtol=2e-6, atol=2e-6, err_msg=f"{where} {k}"
                    )
                print(f"{where}: OK")
    print("OK")


if __name__ == "__main__":
    main("--sgd-momentum" in sys.argv[1:])
    sys.exit(0)
