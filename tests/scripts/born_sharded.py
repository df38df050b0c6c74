"""Child of tests/test_placement.py: optimizer state is born sharded.

On 8 host devices, for a 1-D (8,) and a (4, 2) mesh, each with Auto and with
Explicit axes, every case below initialises its state eagerly and under
``jax.jit`` and checks, leaf by leaf:

* a state leaf of a parameter's shape has that parameter's sharding (its
  ZeRO sharding under ``state_sharding(zero_axis=...)``), every scalar is
  replicated on the mesh, and the bytes each device holds after init are what
  those shardings give;
* the shardings are the same after init, after one jitted step and after a
  5-step ``lax.scan`` (whose carry must keep its type on Explicit meshes).

With ``--micro`` it instead lowers the three forms of a zero computed from a
parameter (see ``adam_tx/placement.py``) and prints which keep the sharding.

Prints one line per failing case and a summary; exits 1 if any case failed.
"""

from __future__ import annotations

import sys


def micro() -> None:
    import jax
    import jax.numpy as jnp
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    from adam_tx._engine import placement

    mesh = jax.make_mesh((4, 2), ("a", "b"), axis_types=(AxisType.Auto,) * 2)
    p = jax.device_put(jnp.ones((8, 4)), NamedSharding(mesh, P("a", "b")))

    def bits_and(p):
        bits = jax.lax.bitcast_convert_type(p, jnp.uint32) & jnp.uint32(0)
        return jax.lax.bitcast_convert_type(bits, jnp.float32)

    forms = {
        "float_mul": lambda p: placement.zeros_like(p, jnp.float32),
        "int_and": bits_and,
        "broadcast": lambda p: jnp.zeros(p.shape, p.dtype),
    }
    for name, f in forms.items():
        out = jax.jit(f)(p)
        assert float(jnp.abs(out).max()) == 0.0
        print(f"{name} {getattr(out.sharding, 'spec', None) == P('a', 'b')}")


def main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import adam_tx

    assert jax.device_count() == 8, jax.devices()

    def params_on(mesh, two_d):
        specs = {
            "w": P("a", "b") if two_d else P("a"),
            "b": P("b") if two_d else P(),
            "e": P("a", "b") if two_d else P(None, "a"),
        }
        shapes = {"w": (16, 8), "b": (8,), "e": (64, 128)}
        key = jax.random.PRNGKey(0)
        out = {}
        for i, (k, shape) in enumerate(shapes.items()):
            x = jax.random.normal(jax.random.fold_in(key, i), shape) * 0.1
            out[k] = jax.device_put(x, NamedSharding(mesh, specs[k]))
        return out

    def grads_like(params, t):
        return jax.tree.map(lambda p: jnp.cos(p * (t + 1.0)), params)

    adam_family = ["adam", "adamw", "nadam", "nadamw", "amsgrad", "adabelief"]
    cases: dict[str, object] = {}
    for name in [*adam_family, "adamax", "rmsprop", "adagrad"]:
        cases[name] = lambda name=name: getattr(adam_tx, name)(1e-3)
    cases["sgd_momentum"] = lambda: adam_tx.sgd(1e-2, momentum=0.9)
    variants = ["radam", "lamb", "adopt", "ademamix", "cautious_adamw"]
    variants += ["adam_atan2", "stable_adamw", "schedule_free_adamw"]
    for name in variants:
        cases[name] = lambda name=name: getattr(adam_tx, name)(1e-3)
    cases["adamw[int4]"] = lambda: adam_tx.adamw(1e-3, state_format="int4")
    for fmt, kw in {
        "bf16": dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
        "stochastic": dict(
            state_format="stochastic", mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16
        ),
        "int8": dict(state_format="int8"),
    }.items():
        for name in ("adam", "adamw", "amsgrad"):
            cases[f"{name}[{fmt}]"] = lambda name=name, kw=kw: getattr(adam_tx, name)(
                1e-3, **kw
            )
    cases["clip+adamw"] = lambda: adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3)
    )
    cases["skip_nonfinite"] = lambda: adam_tx.skip_nonfinite(adam_tx.adamw(1e-3))
    cases["loss_scaling"] = lambda: adam_tx.loss_scaling(adam_tx.adamw(1e-3))
    cases["skip(loss_scaling)"] = lambda: adam_tx.skip_nonfinite(
        adam_tx.loss_scaling(adam_tx.adamw(1e-3))
    )
    cases["track_stats"] = lambda: adam_tx.chain(
        adam_tx.adamw(1e-3), adam_tx.track_stats()
    )
    cases["switch"] = lambda: adam_tx.switch(
        adam_tx.adamw(1e-3), adam_tx.sgd(1e-2, momentum=0.9), at_step=2
    )
    cases["group_small_leaves"] = lambda: adam_tx.group_small_leaves(
        adam_tx.adamw(1e-3)
    )
    cases["MultiSteps"] = lambda: optax.MultiSteps(adam_tx.adamw(1e-3), 2)
    cases["int8+skip_nonfinite"] = lambda: adam_tx.skip_nonfinite(
        adam_tx.adamw(1e-3, state_format="int8")
    )

    # argv: a mesh such as "4x2/Explicit", then optionally case names.
    want_mesh, *only_cases = sys.argv[1:]
    only = set(only_cases)
    failures: list[str] = []
    checked = 0

    def norm(spec, ndim):
        spec = tuple(spec) + (None,) * (ndim - len(tuple(spec)))
        return tuple(None if s in ((), None) else s for s in spec)

    for two_d in (False, True):
        for axis_type in (AxisType.Auto, AxisType.Explicit):
            shape = (4, 2) if two_d else (8,)
            names = ("a", "b") if two_d else ("a",)
            mesh = jax.make_mesh(shape, names, axis_types=(axis_type,) * len(names))
            mesh_name = f"{'x'.join(map(str, shape))}/{axis_type.name}"
            if mesh_name != want_mesh:
                continue
            with jax.set_mesh(mesh):
                params = params_on(mesh, two_d)
                by_shape = {p.shape: p.sharding for p in jax.tree.leaves(params)}
                for case, make in cases.items():
                    if only and case not in only:
                        continue
                    checked += 1
                    label = f"{mesh_name} {case}"
                    try:
                        msg = check_case(
                            make(), params, by_shape, norm, mesh, P, NamedSharding, np
                        )
                    except Exception as err:  # report every case, then fail
                        msg = f"raised {type(err).__name__}: {str(err)[:300]}"
                    if msg:
                        failures.append(f"{label}: {msg}")
    for line in failures:
        print("FAIL", line)
    print(f"born_sharded: {checked - len(failures)} of {checked} cases passed")
    sys.exit(1 if failures else 0)


def check_case(tx, params, by_shape, norm, mesh, P, NamedSharding, np) -> str:
    import jax
    import jax.numpy as jnp

    grads = jax.tree.map(lambda p: jnp.cos(p), params)
    eager = tx.init(params)
    jitted = jax.jit(tx.init)(params)

    def step(state, _):
        u, state = tx.update(grads, state, params)
        return state, None

    one = jax.jit(lambda s: tx.update(grads, s, params)[1])(eager)
    scanned = jax.jit(lambda s: jax.lax.scan(step, s, None, length=5)[0])(eager)

    def layout(state):
        out = []
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            if not isinstance(leaf, jax.Array):
                continue
            out.append((jax.tree_util.keystr(path), leaf.shape, leaf.sharding, leaf))
        return out

    base = layout(eager)
    for name, other in (
        ("jit(init)", jitted),
        ("1 step", one),
        ("5-step scan", scanned),
    ):
        for (path, shape, sh, _), (_, _, sh2, _) in zip(base, layout(other)):
            if name == "jit(init)" and path.startswith(".acc_grads"):
                # optax.MultiSteps' own accumulator: optax builds it from a
                # broadcast zero, which jit replicates (adam_tx's inner state,
                # checked here, is born sharded).
                continue
            if not sh.is_equivalent_to(sh2, len(shape)):
                return f"{path}{shape}: {sh.spec} after init, {sh2.spec} after {name}"
    expected_bytes = actual_bytes = 0
    for path, shape, sh, leaf in base:
        if shape == ():
            if not (isinstance(sh, NamedSharding) and sh.mesh.size == mesh.size):
                return f"{path}: scalar not replicated on the mesh ({sh})"
            want = NamedSharding(mesh, P())
        elif shape in by_shape:
            want = by_shape[shape]
        else:  # e.g. a quantized leaf's scales: consistent, checked above
            want = sh
        if norm(sh.spec, len(shape)) != norm(want.spec, len(shape)):
            return f"{path}{shape}: born {sh.spec}, expected {want.spec}"
        shard = want.shard_shape(shape)
        expected_bytes += int(np.prod(shard)) * leaf.dtype.itemsize
        actual_bytes += leaf.addressable_shards[0].data.nbytes
    if expected_bytes != actual_bytes:
        return (
            f"device 0 holds {actual_bytes} bytes of state, expected {expected_bytes}"
        )
    return ""


if __name__ == "__main__":
    if sys.argv[1:] == ["--micro"]:
        micro()
    else:
        main()
