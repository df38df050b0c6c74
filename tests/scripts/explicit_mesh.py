"""Child of tests/test_sharding.py: optimizers on an explicit-axis mesh.

jax.make_mesh gives Explicit axes by default: shardings are part of the
array types, and an operation whose output sharding is ambiguous is an error
at trace time. On a 4x2 data x model mesh of 8 host devices, with and without
ZeRO-1, each optimizer takes 4 jitted steps; the state keeps the shardings
`state_sharding` gives it, parameters and `stats` equal a single-device run,
and int8 state (blocks of the flattened leaf) raises a clear error.
"""

import sys


def main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import adam_tx
    from adam_tx.sharding import state_sharding

    assert jax.device_count() == 8, jax.devices()
    explicit = (AxisType.Explicit, AxisType.Explicit)
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=explicit)
    shapes = {"w1": (128, 64), "b1": (64,), "w2": (64, 8), "b2": (8,), "w3": (64, 40)}
    specs = {
        "w1": P(None, "model"),
        "b1": P("model"),
        "w2": P("model"),
        "b2": P(),
        "w3": P("data"),
    }
    params = {
        k: jax.random.normal(jax.random.key(i), s) * 0.3
        for i, (k, s) in enumerate(sorted(shapes.items()))
    }

    def loss(p):  # elementwise: the gradients take the parameters' shardings
        return sum(jnp.sum(jnp.sin(3 * v) * v) for v in p.values())

    def clipped(*extra):
        return adam_tx.chain(
            adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-2), *extra
        )

    txs = {
        "adamw": adam_tx.adamw(1e-2, weight_decay=0.1),
        "clip+adamw+track_stats(every=2)": clipped(adam_tx.track_stats(every=2)),
        "loss_scaling(skip_nonfinite(clip+adamw))": adam_tx.loss_scaling(
            adam_tx.skip_nonfinite(clipped()), init_scale=2.0**10
        ),
        "adam(state_format=stochastic)": adam_tx.adam(1e-2, state_format="stochastic"),
        "amsgrad": adam_tx.amsgrad(1e-2),
    }
    p_sh = {k: NamedSharding(mesh, s) for k, s in specs.items()}

    def make_step(tx):
        def step(p, s):
            g = jax.grad(loss)(p)
            if isinstance(s, adam_tx.LossScaleState):
                g = jax.tree.map(lambda x: x * s.scale, g)
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s, adam_tx.stats(s)

        return step

    for name, tx in txs.items():
        ref_p, ref_s = params, tx.init(params)
        single = jax.jit(make_step(tx))
        for _ in range(4):
            ref_p, ref_s, ref_stats = single(ref_p, ref_s)
        for zero in (None, "data"):
            where = f"{name} zero_axis={zero}"
            with jax.set_mesh(mesh):
                s_sh = state_sharding(tx, params, p_sh, zero_axis=zero)
                p = jax.device_put(params, p_sh)
                s = jax.jit(tx.init, out_shardings=s_sh)(p)
                step = jax.jit(make_step(tx), out_shardings=(p_sh, s_sh, None))
                for _ in range(4):
                    p, s, got_stats = step(p, s)
            for leaf, want in zip(jax.tree.leaves(s), jax.tree.leaves(s_sh)):
                assert leaf.sharding.is_equivalent_to(want, leaf.ndim), where
            for k in shapes:
                np.testing.assert_allclose(
                    p[k], ref_p[k], rtol=1e-6, atol=1e-6, err_msg=f"{where} {k}"
                )
            assert set(got_stats) == set(ref_stats), where
            for k in ref_stats:
                np.testing.assert_allclose(
                    got_stats[k], ref_stats[k], rtol=1e-5, err_msg=f"{where} {k}"
                )
            print(f"{where}: OK")

    tx = adam_tx.adam(1e-2, state_format="int8")
    with jax.set_mesh(mesh):
        s_sh = state_sharding(tx, params, p_sh)
        p = jax.device_put(params, p_sh)
        s = jax.jit(tx.init, out_shardings=s_sh)(p)
        # int8 codes have the parameter's shape and sharding (blocks run
        # along the last axis), so an explicit mesh takes them as it is.
        p2, s2, _ = jax.jit(make_step(tx))(p, s)
        for leaf, ref in zip(jax.tree.leaves(s2), jax.tree.leaves(s)):
            same = leaf.sharding.is_equivalent_to(ref.sharding, leaf.ndim)
            assert same, (leaf.sharding, ref.sharding)
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(p2))
        print("int8: trains, state keeps its sharding")
    print("OK")


if __name__ == "__main__":
    main()
    sys.exit(0)
