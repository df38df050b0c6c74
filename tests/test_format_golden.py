"""The int8 / int4 steps write the codes they wrote before they were made fast.

``tests/golden/int_formats.npz`` holds the parameters and state after three
jitted, donated AdamW steps on the leaves below, written by the implementation
of commit b735c67 (decoding by selects, the new moments stored in float32
temporaries). The fast step (decoding by table, block scales from a reduction
that recomputes the moments, no moment temporaries) gives the same codes bit
for bit. Scales and parameters agree to the last bits only: XLA:CPU contracts
``b m + (1 - b) g`` into a fused multiply-add, and which of the two products
it contracts depends on the loop the expression lands in (jax 0.10.2), so a
moment recomputed in another loop may differ from the stored one in its last
bit (the old step already recomputed the second moment in the update's loop).
Measured: scales of padded blocks and parameters within 2.4e-7 absolute.
Regenerate only for an intended change: ``python tests/test_format_golden.py``.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adam_tx

GOLDEN = pathlib.Path(__file__).parent / "golden" / "int_formats.npz"

SHAPES = {
    "padded": (12, 1001),  # int8 blocks of 251, padded; int4: odd axis, 8-bit codes
    "padded_even": (6, 1002),  # int4 blocks of 126, padded, packed
    "odd_1d": (4097,),  # 1-D and odd: int4 stores 8-bit codes
    "odd_cols": (32, 130),  # int4 blocks of 65: a byte's two codes straddle blocks
    "rows": (32, 8, 24),  # blocks of whole rows along the second-last axis
    "small": (1000,),  # under 4096 elements: kept in float32
    "tiny_values": (16, 256),  # zeros, denormals, all-zero blocks
}
STEPS = 3


def _inputs():
    rng = np.random.default_rng(14)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    grads = []
    for _ in range(STEPS):
        g = {
            k: (rng.normal(size=s) * 10.0 ** rng.uniform(-4, 0, size=s)).astype(
                np.float32
            )
            for k, s in SHAPES.items()
        }
        tv = g["tiny_values"]
        tv[:, :128] = 0.0
        tv[::2, 128:] = np.float32(1e-40) * rng.integers(
            -3, 4, size=tv[::2, 128:].shape
        )
        tv[1::4, 200:] = np.float32(3e-39)
        grads.append(g)
    return params, grads


def _run(fmt: str) -> dict[str, np.ndarray]:
    tx = adam_tx.adamw(1e-2, weight_decay=0.1, state_format=fmt)
    params, grads = _inputs()
    p = jax.tree.map(jnp.asarray, params)
    s = tx.init(p)

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return jax.tree.map(lambda a, b: a + b, p, u), s

    f = jax.jit(step, donate_argnums=(0, 1))
    for g in grads:
        p, s = f(p, s, jax.tree.map(jnp.asarray, g))
    flat = jax.tree_util.tree_flatten_with_path((p, s))[0]
    return {fmt + jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_quantized_steps_write_the_golden_bits(fmt):
    golden = np.load(GOLDEN)
    got = _run(fmt)
    want = {k: golden[k] for k in golden.files if k.startswith(fmt + "[")}
    assert sorted(got) == sorted(want)
    for key, value in got.items():
        assert value.dtype == want[key].dtype and value.shape == want[key].shape, key
        if value.dtype.kind == "f":  # scales, parameters, float32 moments
            np.testing.assert_allclose(
                value, want[key], rtol=1e-6, atol=1e-6, err_msg=key
            )
        else:  # codes, nibble pairs, counts: bit for bit
            np.testing.assert_array_equal(value, want[key], err_msg=key)


if __name__ == "__main__":  # pragma: no cover
    out: dict[str, np.ndarray] = {}
    for fmt in ("int8", "int4"):
        out.update(_run(fmt))
    np.savez_compressed(GOLDEN, **out)
