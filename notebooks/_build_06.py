"""Write ``06_diagnostics.ipynb`` (outputs cleared) with nbformat.

The notebook is committed; this script is its source. Edit a cell here, run
``python notebooks/_build_06.py`` and commit both.
"""

from __future__ import annotations

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).parent


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


CELLS = [
    md("""
# 06 - Diagnostics: see every step, survive NaNs, train in float16

The symptoms to watch for are divergence, NaNs and instability, and a
training setup should include clipping and mixed precision with dynamic loss
scaling. This notebook makes them visible with `adam_tx.stats(opt_state)`,
which reads named float32 figures from anywhere in the optimizer state:

| key | supplied by |
|---|---|
| `step`, `learning_rate`, `b1` | the adam_tx transforms' counts and hyperparameters |
| `grad_norm`, `clip_factor` | `clip_by_global_norm` (norm *before* clipping) |
| `update_norm`, `param_norm`, `update_param_ratio`, `norms_step` | `track_stats()` |
| `skipped_steps`, `nonfinite_failed` | `skip_nonfinite(...)` |
| `loss_scale` | `loss_scaling(...)` |

Every training loop below is a `jax.lax.scan` that returns the statistics of
each step, so logging costs nothing outside the compiled loop. The norms of
`track_stats` are sums over every parameter: on GPU/TPU they are extra outputs
of the update loop, on CPU one extra read of the parameters and state per
measured step, so a large model on CPU measures them every k steps with
`track_stats(every=k)` (`norms_step` says which step they are from).
"""),
    code("""
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import adam_tx

rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(256, 16)), jnp.float32)
Y = jnp.sin(X @ jnp.asarray(rng.normal(size=16) / 4, jnp.float32))


def init_mlp(key, width=64):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (16, width)) / 4.0,
        "b1": jnp.zeros(width),
        "w2": jax.random.normal(k2, (width,)) / 8.0,
    }


def loss_fn(p, x=X, y=Y):
    return jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2)


def train(opt, steps=200, poison=None, grad_scale=None):
    \"\"\"Full-batch training; poison[t] is added to one gradient entry,
    grad_scale[t] multiplies the gradients (a spike).\"\"\"
    p0 = init_mlp(jax.random.PRNGKey(0))
    poison = jnp.zeros(steps) if poison is None else poison
    grad_scale = jnp.ones(steps) if grad_scale is None else grad_scale

    def step(carry, inputs):
        p, s = carry
        bad, spike = inputs
        loss, g = jax.value_and_grad(loss_fn)(p)
        g = jax.tree.map(lambda x: x * spike, g)
        g["w2"] = g["w2"].at[0].add(bad)
        u, s = opt.update(g, s, p)
        return (adam_tx.apply_updates(p, u), s), (loss, adam_tx.stats(s))

    (p, s), (losses, logged) = jax.jit(
        lambda: jax.lax.scan(step, (p0, opt.init(p0)), (poison, grad_scale))
    )()
    return losses, {k: np.asarray(v) for k, v in logged.items()}
"""),
    md("""
## 1. A run that diverges, and how the statistics show it

Plain SGD with a learning rate far above the stable range: the loss explodes.
Before it does, the statistics already say so: the gradient norm grows
geometrically and the update/parameter ratio (healthy runs sit around 1e-3 to
1e-2 per step) climbs towards 1, i.e. each step rewrites the weights.
"""),
    code("""
runs = {}
for lr in (0.1, 3.0):
    opt = adam_tx.chain(adam_tx.sgd(lr), adam_tx.track_stats())
    runs[lr] = train(opt, steps=60)

fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
for lr, (losses, st) in runs.items():
    axes[0].semilogy(np.asarray(losses), label=f"lr={lr}")
    axes[1].semilogy(st["update_norm"] / np.asarray(jnp.asarray(lr)), label=f"lr={lr}")
    axes[2].semilogy(st["update_param_ratio"], label=f"lr={lr}")
axes[0].set_title("loss")
axes[1].set_title("gradient norm (update norm / lr)")
axes[2].set_title("update / parameter norm")
for ax in axes:
    ax.set_xlabel("step")
    ax.legend()
plt.tight_layout()
print({lr: float(st["update_param_ratio"][10]) for lr, (_, st) in runs.items()})
"""),
    md("""
## 2. NaN injection and the non-finite guard

Every 15th step a NaN (or an Inf) enters one gradient entry, as a bad batch or
an overflow would. Unguarded, the first one poisons Adam's moments and every
parameter for good. `skip_nonfinite` drops those steps: the parameters and the
inner state (step count included, so bias correction and schedules are not
disturbed) stay as they were, and `skipped_steps` counts them.
`max_consecutive=k` raises `nonfinite_failed` once k steps in a row were
skipped, so a training loop can stop instead of spinning.
"""),
    code("""
steps = 150
t = np.arange(steps)
poison = jnp.asarray(np.where(t % 15 == 7, np.where(t % 2, np.nan, np.inf), 0.0))

plain = adam_tx.chain(adam_tx.adam(1e-2), adam_tx.track_stats())
guarded = adam_tx.skip_nonfinite(
    adam_tx.chain(adam_tx.adam(1e-2), adam_tx.track_stats()), max_consecutive=3
)
clean_losses, _ = train(plain, steps)
bad_losses, _ = train(plain, steps, poison=poison)
guard_losses, guard_st = train(guarded, steps, poison=poison)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].semilogy(np.asarray(clean_losses), label="no NaNs")
axes[0].semilogy(np.asarray(guard_losses), "--", label="NaNs, guarded")
shown = np.nan_to_num(np.asarray(bad_losses), nan=1e3)
axes[0].semilogy(shown, label="NaNs, unguarded")
axes[0].set_title("loss (unguarded run: NaN shown as 1e3)")
axes[1].step(t, guard_st["skipped_steps"], where="post", label="skipped_steps")
axes[1].step(t, guard_st["step"], where="post", label="step (applied)")
axes[1].set_title("guard counters")
for ax in axes:
    ax.set_xlabel("step")
    ax.legend()
plt.tight_layout()
print("skipped:", int(guard_st["skipped_steps"][-1]),
      "failed flag ever set:", bool(guard_st["nonfinite_failed"].any()))
"""),
    md("""
## 3. Clipping at work

Gradient spikes (x100 on a few random steps) hit AdamW. `clip_by_global_norm`
records the norm *before* clipping and the factor it applied
(`min(1, max_norm / norm)`; 1.0 on ordinary steps), so the spikes are visible in
the log while the update norm stays bounded.
"""),
    code("""
steps = 150
spikes = np.ones(steps)
spikes[np.random.default_rng(3).choice(steps, 8, replace=False)] = 100.0
opt = adam_tx.chain(
    adam_tx.clip_by_global_norm(0.5), adam_tx.adamw(1e-2), adam_tx.track_stats()
)
losses, st = train(opt, steps, grad_scale=jnp.asarray(spikes))

fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
axes[0].semilogy(st["grad_norm"])
axes[0].axhline(0.5, color="k", ls=":", label="max_norm")
axes[0].set_title("gradient norm before clipping")
axes[0].legend()
axes[1].plot(st["clip_factor"])
axes[1].set_title("clip factor applied")
axes[2].semilogy(np.asarray(losses))
axes[2].set_title("loss")
for ax in axes:
    ax.set_xlabel("step")
plt.tight_layout()
print("clipped steps:", int((st["clip_factor"] < 1).sum()), "of", steps)
"""),
    md("""
## 4. float16 with and without dynamic loss scaling

A small Flax MLP with float32 master weights computes in float16. Its loss is
tiny (`1e-7 x MSE`, as when a loss is averaged over a huge batch), so the
gradient reaching the float16 activations (~1e-9) is below float16's smallest
subnormal (6e-8) and rounds to zero: the unscaled float16 run never moves.
`loss_scaling` multiplies the loss by `S` (`scale_loss`), divides the
gradients by `S` in the optimizer (fused with the norm and finiteness test),
skips steps that overflow and adapts `S` as torch's `GradScaler` does. Started
at a needlessly large `S = 2**48` with a short growth interval (20), the scale
first halves on each overflowing step until the gradients fit, then doubles
after every 20 finite steps, probing for the largest scale that fits (the next
overflow would halve it again). Apart from the few skipped first steps, the
scaled run follows the float32 run.
"""),
    code("""
import flax.linen as nn


class MLP(nn.Module):
    dtype: type = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(32, dtype=self.dtype)(x))
        return nn.Dense(1, dtype=self.dtype)(x)[:, 0]


xs = jnp.asarray(rng.normal(size=(128, 8)), jnp.float32)
ys = jnp.sin(xs @ jnp.asarray(rng.normal(size=8), jnp.float32))


def train_fp(dtype, scaling, steps=120):
    model = MLP(dtype)
    params = model.init(jax.random.PRNGKey(0), xs)  # float32 master weights
    inner = adam_tx.adam(1e-2, eps=1e-15)  # eps below the tiny gradients
    opt = scaling(inner) if scaling else inner

    def loss(p):
        err = model.apply(p, xs.astype(dtype)).astype(jnp.float32) - ys
        return 1e-7 * jnp.mean(err**2)

    def step(carry, _):
        p, s = carry
        objective = (lambda p: adam_tx.scale_loss(loss(p), s)) if scaling else loss
        g = jax.grad(objective)(p)
        u, s = opt.update(g, s, p)
        return (adam_tx.apply_updates(p, u), s), (loss(p), adam_tx.stats(s))

    _, (losses, st) = jax.jit(
        lambda: jax.lax.scan(step, (params, opt.init(params)), None, steps)
    )()
    return np.asarray(losses), st


scaler = lambda inner: adam_tx.loss_scaling(
    inner, init_scale=2.0**48, growth_interval=20
)
l32, _ = train_fp(jnp.float32, None)
l16, _ = train_fp(jnp.float16, None)
l16s, st16 = train_fp(jnp.float16, scaler)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].semilogy(l32, label="float32")
axes[0].semilogy(l16, label="float16, no scaling")
axes[0].semilogy(l16s, "--", label="float16, loss scaling")
axes[0].set_title("loss")
axes[0].legend()
axes[1].semilogy(np.asarray(st16["loss_scale"]), base=2)
axes[1].set_title("loss scale S")
for ax in axes:
    ax.set_xlabel("step")
plt.tight_layout()
print(f"final loss: fp32 {l32[-1]:.3e}, fp16 {l16[-1]:.3e}, ", end="")
print(f"fp16 + scaling {l16s[-1]:.3e}")
print("overflow steps skipped:", int(st16["skipped_steps"][-1]))
"""),
    md("""
## 5. Paying for the norms on CPU: `track_stats(every=k)`

The update and parameter norms are sums over every parameter. On GPU/TPU they
are extra outputs of the update loop; XLA:CPU cannot do that, so on CPU they
cost one more read of the parameters and state on each step that measures them
(about +50% step time at 16M parameters, `BENCHMARKS.md`). `every=k` measures
them on steps 1, 1 + k, 1 + 2k, ... and keeps them in between (+0 to +3% at
k = 10); `norms_step` says which step the figures come from, and on those
steps they are exactly the every-step figures.
"""),
    code("""
dense_opt = adam_tx.chain(adam_tx.adam(1e-2), adam_tx.track_stats())
sparse_opt = adam_tx.chain(adam_tx.adam(1e-2), adam_tx.track_stats(every=10))
every_step = train(dense_opt, steps=40)[1]
sparse = train(sparse_opt, steps=40)[1]
measured = sparse["norms_step"].astype(int) - 1  # the step index each figure is from
assert np.array_equal(sparse["update_norm"], every_step["update_norm"][measured])

plt.figure(figsize=(6, 3))
plt.plot(every_step["update_norm"], label="every step")
plt.step(np.arange(40), sparse["update_norm"], where="post", label="every=10")
plt.xlabel("step")
plt.ylabel("update norm")
plt.legend()
plt.tight_layout()
print("norms_step, steps 1-12:", sparse["norms_step"][:12].astype(int).tolist())
"""),
    md("""
## What to look for

* **Divergence**: `grad_norm` growing step over step and `update_param_ratio`
  approaching 1 come before the loss blows up: lower the learning rate, add
  warmup or clipping.
* **NaNs**: `skipped_steps` rising now and then is a bad batch; rising every
  step (`nonfinite_failed`) is a broken run.
* **Clipping**: a `clip_factor` below 1 on most steps means `max_norm` is set
  too low and clipping has become a learning-rate cut.
* **float16**: a loss that does not move while float32 trains is underflow;
  dynamic loss scaling fixes it, and `loss_scale` shows it adapting.
"""),
]


def main() -> None:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, HERE / "06_diagnostics.ipynb")


if __name__ == "__main__":
    main()
