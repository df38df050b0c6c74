"""Model-shaped step benchmark: adam_tx vs optax vs torch on real trees.

For the parameter trees of a 12-layer d=384 GPT (148 leaves) and a
ResNet-18-ish CNN (62 leaves), ``benchmarks/shapes.py``, every contender takes
``clip_by_global_norm(1.0)`` + AdamW (weight decay 0.01) + warmup-cosine:

* **optimizer step alone**, jitted with parameters and state donated, median
  over ``--steps`` interleaved steps, against optax and torch's AdamW
  (``fused=True`` and ``foreach=True``, with ``clip_grad_norm_``);
* **compile time** of that step (lower + compile);
* **peak temporary memory** of the compiled step (``memory_analysis``);
* **the whole Flax train step** (forward, backward, optimizer) of a linen GPT
  with exactly those parameters, at a small batch, adam_tx against optax.

Usage::

    python benchmarks/model_step.py                 # full sizes
    python benchmarks/model_step.py --tiny          # seconds, any machine
    python benchmarks/model_step.py --json out.json --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adam_tx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import shapes as model_shapes  # noqa: E402

LR, WD, WARMUP, TOTAL = 1e-3, 0.01, 100, 10_000


def schedule():
    return optax.warmup_cosine_decay_schedule(0.0, LR, WARMUP, TOTAL)


def jax_contenders():
    return {
        "adam_tx": lambda: adam_tx.chain(
            adam_tx.clip_by_global_norm(1.0),
            adam_tx.adamw(schedule(), weight_decay=WD),
        ),
        "optax": lambda: optax.chain(
            optax.clip_by_global_norm(1.0), optax.adamw(schedule(), weight_decay=WD)
        ),
    }


class JaxStep:
    def __init__(self, tx, tree):
        key = jax.random.PRNGKey(0)
        self.params = {
            k: 0.02 * jax.random.normal(jax.random.fold_in(key, i), s)
            for i, (k, s) in enumerate(tree.items())
        }
        self.grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), self.params)
        self.state = tx.init(self.params)

        def step(p, s, g):
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        start = time.perf_counter()
        lowered = jax.jit(step, donate_argnums=(0, 1)).lower(
            self.params, self.state, self.grads
        )
        self.fn = lowered.compile()
        self.compile_s = time.perf_counter() - start
        analysis = self.fn.memory_analysis()
        self.temp_bytes = None if analysis is None else analysis.temp_size_in_bytes

    def __call__(self):
        self.params, self.state = self.fn(self.params, self.state, self.grads)
        jax.block_until_ready(self.params)


class TorchStep:
    def __init__(self, torch, tree, mode):
        self.torch = torch
        torch.manual_seed(0)
        self.params = [torch.randn(s) * 0.02 for s in tree.values()]
        for p in self.params:
            p.grad = 1e-3 * torch.ones_like(p)
        kw = {"fused": True} if mode == "fused" else {"foreach": True}
        self.opt = torch.optim.AdamW(self.params, lr=LR, weight_decay=WD, **kw)
        self.compile_s = 0.0
        self.temp_bytes = None

    def __call__(self):
        self.torch.nn.utils.clip_grad_norm_(self.params, 1.0, foreach=True)
        self.opt.step()


def optimizer_rows(name, tree, steps, torch) -> list[dict]:
    contenders = {k: JaxStep(make(), tree) for k, make in jax_contenders().items()}
    if torch is not None:
        for mode in ("fused", "foreach"):
            contenders[f"torch {mode}"] = TorchStep(torch, tree, mode)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for c in contenders.values():
        c()
    for _ in range(steps):  # interleaved: machine noise hits every contender
        for k, c in contenders.items():
            start = time.perf_counter()
            c()
            times[k].append(time.perf_counter() - start)
    base = statistics.median(times["adam_tx"])
    rows = []
    for k, c in contenders.items():
        med = statistics.median(times[k])
        rows.append(
            {
                "tree": name,
                "params": model_shapes.size(tree),
                "leaves": len(tree),
                "what": "optimizer step",
                "contender": k,
                "step_ms": 1e3 * med,
                "adam_tx_over_this": base / med,
                "compile_s": c.compile_s,
                "temp_mb": None if c.temp_bytes is None else c.temp_bytes / 2**20,
            }
        )
    return rows


def gpt_train_rows(layers, d, vocab, ctx, batch, seq, steps) -> list[dict]:
    """Forward + backward + optimizer of a linen GPT with the tree's shapes."""
    from flax import linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm(name="ln1")(x)
            qkv = nn.Dense(3 * d, name="qkv")(h)
            q, k, v = jnp.split(qkv, 3, axis=-1)
            att = jnp.einsum("btd,bsd->bts", q, k) / np.sqrt(d)
            mask = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
            att = jax.nn.softmax(jnp.where(mask, att, -1e9), axis=-1)
            x = x + nn.Dense(d, name="out")(jnp.einsum("bts,bsd->btd", att, v))
            h = nn.LayerNorm(name="ln2")(x)
            h = nn.Dense(d, name="proj")(nn.gelu(nn.Dense(4 * d, name="fc")(h)))
            return x + h

    class GPT(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            wte = nn.Embed(vocab, d, name="wte")
            x = wte(tokens) + nn.Embed(ctx, d, name="wpe")(jnp.arange(tokens.shape[1]))
            for i in range(layers):
                x = Block(name=f"h{i}")(x)
            return wte.attend(nn.LayerNorm(name="ln_f")(x))

    model = GPT()
    tokens = jax.random.randint(jax.random.PRNGKey(1), (batch, seq + 1), 0, vocab)
    params = model.init(jax.random.PRNGKey(0), tokens[:, :-1])["params"]

    def loss_fn(p):
        logits = model.apply({"params": p}, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(
            logits, tokens[:, 1:]
        ).mean()

    rows, times = [], {}
    steps_fns = {}
    for k, make in jax_contenders().items():
        tx = make()

        def train(p, s, tx=tx):
            loss, g = jax.value_and_grad(loss_fn)(p)
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s, loss

        start = time.perf_counter()
        p0 = jax.tree.map(jnp.copy, params)
        s0 = tx.init(p0)
        fn = jax.jit(train, donate_argnums=(0, 1)).lower(p0, s0).compile()
        steps_fns[k] = [fn, p0, s0, time.perf_counter() - start]
        times[k] = []
    for _ in range(steps + 1):
        for k, box in steps_fns.items():
            start = time.perf_counter()
            box[1], box[2], loss = box[0](box[1], box[2])
            jax.block_until_ready(loss)
            times[k].append(time.perf_counter() - start)
    base = statistics.median(times["adam_tx"][1:])
    n = sum(x.size for x in jax.tree.leaves(params))
    for k, box in steps_fns.items():
        med = statistics.median(times[k][1:])
        rows.append(
            {
                "tree": f"gpt {layers}x{d} (b={batch}, t={seq})",
                "params": int(n),
                "leaves": len(jax.tree.leaves(params)),
                "what": "flax train step",
                "contender": k,
                "step_ms": 1e3 * med,
                "adam_tx_over_this": base / med,
                "compile_s": box[3],
                "temp_mb": None,
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    out = [
        "| tree | params | leaves | what | contender | step ms | adam_tx / this "
        "| compile s | temp MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        temp = "" if r["temp_mb"] is None else f"{r['temp_mb']:.1f}"
        out.append(
            f"| {r['tree']} | {r['params'] / 1e6:.1f}M | {r['leaves']} | {r['what']} "
            f"| {r['contender']} | {r['step_ms']:.2f} | {r['adam_tx_over_this']:.2f} "
            f"| {r['compile_s']:.2f} | {temp} |"
        )
    return "\n".join(out) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-sized run")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-train", action="store_true", help="skip Flax steps")
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--markdown", type=pathlib.Path)
    args = parser.parse_args(argv)
    steps = args.steps or (2 if args.tiny else 20)
    if args.tiny:
        trees = {
            "gpt 2x16": model_shapes.gpt(2, 16, 64, 16),
            "resnet (tiny)": model_shapes.resnet((4, 8), 1, 10),
        }
        gpt = dict(layers=2, d=16, vocab=64, ctx=16, batch=2, seq=8)
    else:
        trees = {"gpt 12x384": model_shapes.gpt(), "resnet18": model_shapes.resnet()}
        gpt = dict(layers=12, d=384, vocab=50304, ctx=1024, batch=4, seq=64)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    rows = []
    for name, tree in trees.items():
        rows += optimizer_rows(name, tree, steps, torch)
    if not args.no_train:
        rows += gpt_train_rows(**gpt, steps=max(steps // 4, 2))
    table = markdown(rows)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.markdown:
        args.markdown.write_text(table)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
