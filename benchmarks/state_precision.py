"""Does low-memory Adam state cost final quality? fp32 vs bf16 vs bf16+SR vs int8.

Two real tasks, no downloads:
  (a) an MLP classifier on scikit-learn's bundled handwritten digits (8x8 images,
      1797 samples, 20% held out);
  (b) a character-level Transformer LM (Flax) on the source code of Python's
      standard library (the last 10% of the text held out).

Every format runs from the same initialisation and batch order; only the
storage of Adam's moments differs. Reported: final held-out loss, its gap to
fp32, state bytes per parameter (all leaves, and leaves >= 4096 elements), and
the train-step time relative to fp32.

    python benchmarks/state_precision.py            # full run (see BENCHMARKS.md)
    python benchmarks/state_precision.py --quick    # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import adam_tx

FORMATS = {
    "fp32": {},
    "bf16": {"mu_dtype": jnp.bfloat16, "nu_dtype": jnp.bfloat16},
    "bf16+SR": {
        "mu_dtype": jnp.bfloat16,
        "nu_dtype": jnp.bfloat16,
        "state_format": "stochastic",
    },
    "int8": {"state_format": "int8"},
}


# ----------------------------------------------------------------- data


def digits_data(seed: int = 0):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order].astype(np.int32)
    n_eval = len(x) // 5
    return (x[n_eval:], y[n_eval:]), (x[:n_eval], y[:n_eval])


def stdlib_text(max_bytes: int) -> np.ndarray:
    """Bytes of the standard library's top-level .py files, in sorted order."""
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    chunks, total = [], 0
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        chunks.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return np.frombuffer(b"".join(chunks)[:max_bytes], dtype=np.uint8)


# ---------------------------------------------------------------- models


class MLP(nn.Module):
    width: int = 256

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width)(x))
        x = nn.relu(nn.Dense(self.width)(x))
        return nn.Dense(10)(x)


class Block(nn.Module):
    d: int
    heads: int

    @nn.compact
    def __call__(self, x):
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(self.heads)(h, h, mask=mask)
        h = nn.LayerNorm()(x)
        return x + nn.Dense(self.d)(nn.gelu(nn.Dense(4 * self.d)(h)))


class CharLM(nn.Module):
    d: int = 64
    layers: int = 2
    heads: int = 4
    seq: int = 64

    @nn.compact
    def __call__(self, tokens):
        pos = self.param("pos", nn.initializers.normal(0.02), (self.seq, self.d))
        x = nn.Embed(256, self.d)(tokens) + pos[: tokens.shape[1]]
        for _ in range(self.layers):
            x = Block(self.d, self.heads)(x)
        return nn.Dense(256)(nn.LayerNorm()(x))


def xent(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# ------------------------------------------------------------- training


def train(model, params, opt, batches, eval_fn, steps):
    """Train for ``steps``; return final eval loss, state report, s/step."""
    state = opt.init(params)

    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(lambda p: model_loss(model, p, batch))(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params, state, _ = step(params, state, batches(0))  # compile
    jax.block_until_ready(params)
    start = time.perf_counter()
    for i in range(1, steps):
        params, state, _ = step(params, state, batches(i))
    jax.block_until_ready(params)
    per_step = (time.perf_counter() - start) / max(steps - 1, 1)
    return float(eval_fn(params)), adam_tx.state_report(state, params), per_step


def model_loss(model, params, batch):
    x, y = batch
    return xent(model.apply(params, x), y)


def run_task(name, model, params, make_opt, batches, eval_fn, steps):
    rows = {}
    for fmt, kwargs in FORMATS.items():
        loss, report, per_step = train(
            model, params, make_opt(**kwargs), batches, eval_fn, steps
        )
        rows[fmt] = {
            "eval_loss": loss,
            "bytes_per_param": report.bytes_per_param,
            "large_bytes_per_param": report.large_bytes_per_param,
            "step_s": per_step,
        }
        print(f"  {name} {fmt:8s} eval {loss:.4f}  {report}  {per_step * 1e3:.1f} ms")
    return rows


def digits_task(steps: int, batch: int = 64, width: int = 256):
    (xt, yt), (xe, ye) = digits_data()
    model = MLP(width)
    params = model.init(jax.random.PRNGKey(0), xt[:1])
    rng = np.random.default_rng(1)
    order = [rng.integers(0, len(xt), batch) for _ in range(steps)]

    def batches(i):
        return xt[order[i]], yt[order[i]]

    def eval_fn(p):
        return xent(model.apply(p, xe), ye)

    def make_opt(**kw):
        return adam_tx.adam(1e-3, **kw)

    return run_task("digits", model, params, make_opt, batches, eval_fn, steps)


def charlm_task(steps, batch=16, seq=64, eval_batches=64, d=64, layers=2):
    text = stdlib_text(1_500_000)
    split = int(len(text) * 0.9)
    train_text, eval_text = text[:split], text[split:]
    model = CharLM(d, layers, seq=seq)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, seq), jnp.int32))
    rng = np.random.default_rng(2)
    starts = rng.integers(0, len(train_text) - seq - 1, (steps, batch))

    def windows(data, idx):
        w = np.stack([data[i : i + seq + 1] for i in idx]).astype(np.int32)
        return w[:, :-1], w[:, 1:]

    def batches(i):
        return windows(train_text, starts[i])

    eval_starts = np.linspace(0, len(eval_text) - seq - 1, eval_batches * batch)
    eval_x, eval_y = windows(eval_text, eval_starts.astype(np.int64))
    eval_loss = jax.jit(lambda p: model_loss(model, p, (eval_x, eval_y)))

    def make_opt(**kw):
        lr = optax.warmup_cosine_decay_schedule(0.0, 3e-3, steps // 20, steps, 3e-4)
        return adam_tx.adamw(lr, weight_decay=0.01, **kw)

    return run_task("charlm", model, params, make_opt, batches, eval_loss, steps)


def table(results) -> str:
    lines = [
        "| task | format | final eval loss | vs fp32 | state bytes/param "
        "(all / leaves >= 4096) | step time vs fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for task, rows in results.items():
        base = rows["fp32"]
        for fmt, r in rows.items():
            gap = 100 * (r["eval_loss"] / base["eval_loss"] - 1)
            lines.append(
                f"| {task} | {fmt} | {r['eval_loss']:.4f} | {gap:+.2f}% | "
                f"{r['bytes_per_param']:.3f} / {r['large_bytes_per_param']:.3f} | "
                f"{r['step_s'] / base['step_s']:.2f}x |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps each")
    parser.add_argument("--digits-steps", type=int, default=1500)
    parser.add_argument("--lm-steps", type=int, default=2000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    # --quick: tiny models and a few steps, to check the script runs end to end.
    small = {"batch": 8, "seq": 16, "eval_batches": 1, "d": 16, "layers": 1}
    if args.quick:
        args.digits_steps, args.lm_steps = 3, 3
    results = {
        "digits MLP": digits_task(args.digits_steps, width=32 if args.quick else 256),
        "char LM": charlm_task(args.lm_steps, **(small if args.quick else {})),
    }
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
