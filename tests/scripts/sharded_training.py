"""Child of tests/test_sharding.py: sharded and ZeRO-1 state on 8 host devices.

For a 1D data mesh and a 4x2 data x model mesh, with and without ZeRO-1, and
for several optimizers: the state's shardings equal the expected ones after
init, after one jitted step and after 10; ZeRO-1 moments take about 1/8 of
their bytes per device; parameters equal a single-device run; the sharded
state comes back from a checkpoint bit for bit with its shardings.
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

    AUTO = AxisType.Auto
    assert jax.device_count() == 8, jax.devices()
    shapes = {"w1": (64, 32), "b1": (32,), "w2": (32, 8), "b2": (8,)}
    params = {
        k: jax.random.normal(jax.random.key(i), s) * 0.3
        for i, (k, s) in enumerate(sorted(shapes.items()))
    }
    x = jax.random.normal(jax.random.key(10), (32, 64))
    y = jax.random.normal(jax.random.key(11), (32, 8))

    def loss(p, x, y):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

    def make_step(tx):
        def step(p, s, x, y):
            g = jax.grad(loss)(p, x, y)
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        return step

    txs = {
        "adamw": (adam_tx.adamw(1e-2, weight_decay=0.1), 1e-6),
        # bf16 moments: one rounding flipped by a reordered sum moves a step by
        # ~2^-8 of the learning rate, hence the looser tolerance.
        "clip+adam(mu bf16)": (
            adam_tx.chain(
                adam_tx.clip_by_global_norm(1.0),
                adam_tx.adam(1e-2, mu_dtype=jnp.bfloat16),
            ),
            1e-3,
        ),
        "optax.clip+amsgrad": (
            adam_tx.chain(optax.clip(1.0), adam_tx.amsgrad(1e-2)),
            1e-6,
        ),
    }
    meshes = {
        "data(8)": (
            jax.make_mesh((8,), ("data",), axis_types=(AUTO,)),
            {k: P() for k in shapes},
            # expected ZeRO specs of the moments
            {k: P("data") for k in shapes},
        ),
        "data(4)xmodel(2)": (
            jax.make_mesh((4, 2), ("data", "model"), axis_types=(AUTO, AUTO)),
            {"w1": P(None, "model"), "b1": P("model"), "w2": P("model"), "b2": P()},
            {
                "w1": P("data", "model"),
                "b1": P("model"),
                "w2": P("model", "data"),
                "b2": P("data"),
            },
        ),
    }

    def check_shardings(state, expected, where):
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            want = jax.tree_util.tree_flatten_with_path(expected)[0]
            want = dict((jax.tree_util.keystr(p), s) for p, s in want)
            key = jax.tree_util.keystr(path)
            assert leaf.sharding.is_equivalent_to(want[key], leaf.ndim), (
                f"{where}: {key} has {leaf.sharding}, expected {want[key]}"
            )

    def check_checkpoint(tx, state, s_sh, where):
        """Sharded state (plus a one-device PRNG key) round-trips exactly."""
        import tempfile

        import orbax.checkpoint as ocp

        from adam_tx import checkpoint

        tree = {"opt": state, "key": jax.random.key(5)}
        target = {
            "opt": checkpoint.abstract_state(tx, params, s_sh),
            "key": jax.ShapeDtypeStruct((), tree["key"].dtype),
        }
        with ocp.CheckpointManager(tempfile.mkdtemp()) as manager:
            checkpoint.save(manager, 10, tree)
            back = checkpoint.restore(manager, 10, target)
        assert jax.tree.structure(back) == jax.tree.structure(tree), where
        check_shardings(back["opt"], s_sh, where + " restored")
        for a, b in zip(jax.tree.leaves(back["opt"]), jax.tree.leaves(state)):
            assert a.dtype == b.dtype, where
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), where)

    for tx_name, (tx, tol) in txs.items():
        step = make_step(tx)
        ref_p, ref_s = params, tx.init(params)
        single = jax.jit(step)
        for _ in range(10):
            ref_p, ref_s = single(ref_p, ref_s, x, y)
        for mesh_name, (mesh, specs, zero_specs) in meshes.items():
            if tx_name != "adamw" and mesh_name == "data(8)":
                continue  # the 1D mesh is covered by adamw; keeps the test short
            p_sh = {k: NamedSharding(mesh, s) for k, s in specs.items()}
            b_sh = NamedSharding(mesh, P("data"))
            # every layout for adamw; ZeRO-1 (the harder case) for the others
            for zero in (None, "data") if tx_name == "adamw" else ("data",):
                where = f"{tx_name} on {mesh_name} zero_axis={zero}"
                s_sh = state_sharding(tx, params, p_sh, zero_axis=zero)
                mu = next(
                    s.mu
                    for s in jax.tree.leaves(s_sh, is_leaf=lambda n: hasattr(n, "mu"))
                    if hasattr(s, "mu")
                )
                for k in shapes:
                    want = zero_specs[k] if zero else specs[k]
                    assert mu[k].spec == want, f"{where}: mu[{k}] {mu[k].spec}"
                p = jax.device_put(params, p_sh)
                s = jax.jit(tx.init, out_shardings=s_sh)(p)
                check_shardings(s, s_sh, where + " after init")
                sharded = jax.jit(
                    step,
                    in_shardings=(p_sh, s_sh, b_sh, b_sh),
                    out_shardings=(p_sh, s_sh),
                )
                xs, ys = jax.device_put(x, b_sh), jax.device_put(y, b_sh)
                for i in range(10):
                    p, s = sharded(p, s, xs, ys)
                    if i in (0, 9):
                        check_shardings(s, s_sh, f"{where} after {i + 1} steps")
                check_shardings(p, p_sh, where + " params")
                for k in shapes:
                    np.testing.assert_allclose(
                        p[k], ref_p[k], rtol=tol, atol=tol, err_msg=where + " " + k
                    )
                if zero:
                    moments = [
                        n.mu
                        for n in jax.tree.leaves(s, is_leaf=lambda n: hasattr(n, "mu"))
                        if hasattr(n, "mu")
                    ]
                    total = sum(a.nbytes for a in jax.tree.leaves(moments))
                    per_device = {}
                    for a in jax.tree.leaves(moments):
                        for shard in a.addressable_shards:
                            d = shard.device
                            per_device[d] = per_device.get(d, 0) + shard.data.nbytes
                    ratio = max(per_device.values()) / total
                    assert ratio < 1.06 / 8, f"{where}: per-device share {ratio:.4f}"
                    print(f"{where}: per-device moment bytes {ratio:.4f} of total")
                if zero and mesh_name.startswith("data(4)"):
                    check_checkpoint(tx, s, s_sh, where)
    print("OK")


if __name__ == "__main__":
    main()
    sys.exit(0)
