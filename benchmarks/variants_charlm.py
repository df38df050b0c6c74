"""Do the Adam variants work? AdamW vs RAdam, ADOPT, AdEMAMix, C-AdamW,
StableAdamW and schedule-free AdamW on the character LM, plus int4 state.

The task is the package's own (:mod:`adam_tx.charlm`): a small pre-LayerNorm
Transformer predicting the next byte of the standard library's ``.py`` files,
every tenth file held out. For each optimizer:

1. a learning-rate sweep on seed 0 (``--lrs``, the same grid for all); the
   rate with the lowest final held-out loss is chosen (a diverged run counts as
   infinitely bad; the choice is flagged when it is the grid's edge);
2. ``--seeds`` seeds at the chosen rate (seed 0 is the sweep's run); a seed
   sets both the initialisation and the batch order, the same for every
   optimizer;
3. the step time: after training, one step of every optimizer in turn,
   ``--time-rounds`` rounds, so that the machine's load hits all alike; the
   median, relative to AdamW's.

Every optimizer is ``chain(clip_by_global_norm(1), <alias>)`` with decoupled
weight decay ``--wd`` on the weight matrices (``adam_tx.decay_mask``) and the
same warmup (5%) + cosine schedule down to 10% of the peak (as
``benchmarks/state_precision.py``), except schedule-free AdamW, which takes
the warmup only (as its authors do) and is evaluated at
``adam_tx.variants.schedule_free_eval_params``. AdEMAMix warms ``alpha`` (5)
and ``b3`` (0.999) up over the whole run (its paper's schedulers; 0.9999 has
a half-life longer than the run). A last row trains AdamW with int4 moments
(``state_format="int4"``) at AdamW's chosen rate on the same seeds.

    python benchmarks/variants_charlm.py --json /tmp/variants.json
    python benchmarks/variants_charlm.py --quick          # seconds: a smoke test
    python benchmarks/variants_charlm.py --markdown BENCHMARKS.md

Progress rows are printed as runs finish and ``--json`` is rewritten after
every run, so a run cut short leaves its results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adam_tx
from adam_tx import charlm
from adam_tx import variants as V
from adam_tx._app.bench import load_average, replace_block

SECTION = "## Adam variants on the char LM (issue 12)"
BEGIN = "<!-- variants_charlm:begin -->"
END = "<!-- variants_charlm:end -->"

BASELINE = "AdamW"
INT4 = "AdamW int4 state"


def optimizers(steps: int, wd: float) -> dict[str, Callable[[Any], Any]]:
    """name -> ``lr_schedule -> GradientTransformation`` (before clipping)."""
    mask = adam_tx.decay_mask
    alpha, b3 = V.alpha_scheduler(5.0, steps), V.b3_scheduler(0.999, steps)
    return {
        "AdamW": lambda lr: adam_tx.adamw(lr, weight_decay=wd, mask=mask),
        "RAdam": lambda lr: V.radam(
            lr, weight_decay=wd, decoupled_weight_decay=True, mask=mask
        ),
        "ADOPT": lambda lr: V.adopt(lr, weight_decay=wd, mask=mask),
        "AdEMAMix": lambda lr: V.ademamix(
            lr, b3=b3, alpha=alpha, weight_decay=wd, mask=mask
        ),
        "C-AdamW": lambda lr: V.cautious_adamw(lr, weight_decay=wd, mask=mask),
        "StableAdamW": lambda lr: V.stable_adamw(lr, weight_decay=wd, mask=mask),
        "schedule-free AdamW": lambda lr: V.schedule_free_adamw(
            lr, weight_decay=wd, mask=mask
        ),  # its warmup is in make_tx's schedule
        INT4: lambda lr: adam_tx.adamw(
            lr, weight_decay=wd, mask=mask, state_format="int4"
        ),
    }


SCHEDULE_FREE = "schedule-free AdamW"


def make_tx(name: str, peak: float, steps: int, wd: float):
    """``chain(clip_by_global_norm(1), <name>)`` at peak learning rate ``peak``."""
    warmup = max(1, steps // 20)
    if name == SCHEDULE_FREE:  # warmup, then constant: the alias's warmup_steps
        shape = adam_tx.schedules.linear(0.0, 1.0, warmup)
    else:
        shape = adam_tx.schedules.warmup_cosine_decay(
            0.0, 1.0, warmup, max(steps, warmup + 1), 0.1
        )

    def lr(count):  # peak * shape: peak may be traced (one compile for all)
        return peak * shape(count)

    return adam_tx.chain(
        adam_tx.clip_by_global_norm(1.0), optimizers(steps, wd)[name](lr)
    )


class Task:
    """The character LM: model graph, corpus, fixed held-out batches."""

    def __init__(self, cfg: charlm.ModelConfig, batch: int, n_eval: int, chars: int):
        self.cfg, self.batch = cfg, batch
        self.corpus = charlm.load_corpus(chars)
        self.graphdef, params = charlm.make_model(cfg, 0)
        self.n_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
        self.eval_set = jnp.asarray(
            charlm.eval_batches(self.corpus.heldout, n_eval, batch, cfg.seq_len)
        )
        self.loss = charlm.functional_loss(self.graphdef)
        self.grad = jax.jit(jax.value_and_grad(self.loss))
        loss = self.loss
        self.evaluate = jax.jit(
            lambda p, s: jnp.mean(jax.lax.map(lambda b: loss(p, b), s))
        )

    def params(self, seed: int):
        return charlm.make_model(self.cfg, seed)[1]

    def batches(self, seed: int):
        rng = np.random.default_rng(seed)
        train = self.corpus.train
        return lambda: charlm.sample_batch(train, rng, self.batch, self.cfg.seq_len)

    def make_step(self, name: str, steps: int, wd: float, fused: bool = True):
        """The jitted ``init(params)`` and ``step(params, state, batch,
        peak_lr) -> (params, state, loss)`` of ``name``: the peak rate is an
        argument, so that one compile serves every rate and seed.

        ``fused=False`` (``--quick``): the gradient and the update in two
        jitted calls, the gradient's compiled once for all optimizers."""
        init = jax.jit(make_tx(name, 1.0, steps, wd).init)  # no lr in the state

        def update(grads, state, params, peak):
            tx = make_tx(name, peak, steps, wd)
            updates, state = tx.update(grads, state, params)
            return adam_tx.apply_updates(params, updates), state

        if fused:

            @jax.jit
            def step(params, state, batch, peak):
                loss, grads = jax.value_and_grad(self.loss)(params, batch)
                return (*update(grads, state, params, peak), loss)

        else:
            jit_update = jax.jit(update)

            def step(params, state, batch, peak):
                loss, grads = self.grad(params, batch)
                return (*jit_update(grads, state, params, peak), loss)

        return init, step


def train(task: Task, compiled, name: str, lr: float, seed: int, steps: int):
    """One run: final held-out loss (nan if diverged), median step seconds."""
    init, step = compiled
    params = task.params(seed)
    state = init(params)
    peak = jnp.float32(lr)
    next_batch = task.batches(seed)
    times, losses = [], []
    start = time.perf_counter()
    diverged_at = None
    for i in range(steps):
        batch = next_batch()
        t0 = time.perf_counter()
        params, state, loss = step(params, state, batch, peak)
        loss = float(loss)  # waits for the step
        if i:  # the first step may compile
            times.append(time.perf_counter() - t0)
        losses.append(loss)
        if not math.isfinite(loss):
            diverged_at = i + 1
            break
    if name == SCHEDULE_FREE:
        params = V.schedule_free_eval_params(state, params)
    held_out = math.nan if diverged_at else float(task.evaluate(params, task.eval_set))
    return {
        "optimizer": name,
        "lr": lr,
        "seed": seed,
        "steps": steps,
        "eval_loss": held_out,
        "train_loss_last100": float(np.mean(losses[-100:])),
        "diverged_at_step": diverged_at,
        "median_step_s": statistics.median(times) if times else math.nan,
        "wall_s": time.perf_counter() - start,
    }


def time_interleaved(task: Task, steps_of, chosen: dict[str, float], rounds: int):
    """Median seconds per step of every optimizer, one step of each in turn."""
    runners = {}
    for name, lr in chosen.items():
        init, step = steps_of(name)
        params = task.params(0)
        runners[name] = [step, params, init(params), jnp.float32(lr)]
    next_batch = task.batches(12345)
    batches = [next_batch() for _ in range(8)]
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds + 1):
        for name, run in runners.items():
            t0 = time.perf_counter()
            out = run[0](run[1], run[2], batches[r % len(batches)], run[3])
            jax.block_until_ready(out)
            run[1], run[2] = out[0], out[1]
            if r:  # round 0 may compile
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def summarise(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per optimizer with any finished run (and the int4 row)."""
    runs, lrs = record["runs"], record["lrs"]
    base_loss = None
    rows = []
    for name in [*record["optimizers"], INT4]:
        mine = [r for r in runs if r["optimizer"] == name]
        if not mine:
            continue
        chosen = record["chosen_lr"].get(name)
        if chosen is None:  # the sweep is not finished
            continue
        seeds = [r for r in mine if r["lr"] == chosen]
        losses = [r["eval_loss"] for r in seeds]
        finite = [x for x in losses if math.isfinite(x)]
        sweep = {
            r["lr"]: r["eval_loss"] for r in mine if r["seed"] == 0 and name != INT4
        }
        row = {
            "optimizer": name,
            "chosen_lr": chosen,
            "edge": len(lrs) > 1
            and name != INT4
            and chosen in (min(lrs), max(lrs))
            and len(sweep) == len(lrs),
            "sweep": sweep,
            "seeds": [r["seed"] for r in seeds],
            "losses": losses,
            "mean": statistics.mean(finite) if finite else math.nan,
            "min": min(finite) if finite else math.nan,
            "max": max(finite) if finite else math.nan,
            "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
            "diverged": len(losses) - len(finite),
            "step_time_ratio": record["step_time_ratio"].get(name),
        }
        if name == BASELINE:
            base_loss = row["mean"]
        row["vs_adamw"] = 100 * (row["mean"] / base_loss - 1) if base_loss else math.nan
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], record: dict[str, Any]) -> str:
    lines = [
        "| optimizer | chosen lr | seed-0 held-out loss per lr "
        f"({', '.join(f'{x:g}' for x in record['lrs'])}) | final held-out loss, "
        "mean of seeds | min - max | vs AdamW | step time vs AdamW |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sweep = " / ".join(
            f"{r['sweep'][lr]:.3f}" if lr in r["sweep"] else "-" for lr in record["lrs"]
        )
        if r["optimizer"] == INT4:
            sweep = "(AdamW's lr)"
        lr = f"{r['chosen_lr']:g}" + (" (edge)" if r["edge"] else "")
        n = len(r["losses"])
        mean = f"{r['mean']:.4f} ({n} seed{'s' if n != 1 else ''})"
        if r["diverged"]:
            mean += f", {r['diverged']} diverged"
        ratio = r["step_time_ratio"]
        lines.append(
            f"| {r['optimizer']} | {lr} | {sweep} | {mean} | "
            f"{r['min']:.4f} - {r['max']:.4f} | {r['vs_adamw']:+.2f}% | "
            + (f"{ratio:.2f}x |" if ratio else "- |")
        )
    return "\n".join(lines)


def write_markdown(path: str, table: str, record: dict[str, Any]) -> None:
    """Replace this benchmark's block in ``path`` (under :data:`SECTION`),
    leaving every other section as it is."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"{BEGIN}\nCommand: `{record['command']}`; {stamp}; {platform.machine()}, "
        f"{os.cpu_count()} cores, jax {jax.__version__}, optax {optax.__version__}; "
        f"load average {record['load_start']} at the start, {load_average()} at "
        f"the end; {record['seconds']:.0f} s.\n\n{table}\n{END}"
    )
    replace_block(pathlib.Path(path), block, SECTION, BEGIN, END)


def _dump(path: str | None, record: dict[str, Any]) -> None:
    if not path:
        return
    record["table"] = summarise(record)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, default=float)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lrs", default="3e-3,1e-2,3e-2", help="the sweep's grid")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--wd", type=float, default=0.01)
    parser.add_argument("--d-model", type=int, default=48)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-batches", type=int, default=32)
    parser.add_argument("--chars", type=int, default=2_000_000)
    parser.add_argument("--time-rounds", type=int, default=200)
    parser.add_argument("--only", help="comma-separated optimizer names (default all)")
    parser.add_argument("--json", help="write the results here (after every run)")
    parser.add_argument("--markdown", help="write the table into this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.lrs, args.seeds, args.time_rounds = 20, "3e-3", 1, 3
        args.d_model, args.layers, args.seq_len, args.batch = 16, 1, 16, 4
        args.heads, args.eval_batches, args.chars = 2, 2, 200_000
    lrs = [float(x) for x in args.lrs.split(",")]
    names = [n for n in optimizers(1, 0.0) if n != INT4]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    cfg = charlm.ModelConfig(
        seq_len=args.seq_len,
        d_model=args.d_model,
        n_heads=args.heads,
        n_layers=args.layers,
        d_ff=4 * args.d_model,
    )
    task = Task(cfg, args.batch, args.eval_batches, args.chars)
    record: dict[str, Any] = {
        "command": " ".join(["python benchmarks/variants_charlm.py", *sys.argv[1:]])
        if argv is None
        else " ".join(["python benchmarks/variants_charlm.py", *argv]),
        "model": {**cfg.__dict__, "n_params": task.n_params},
        "batch": args.batch,
        "steps": args.steps,
        "lrs": lrs,
        "seeds": args.seeds,
        "weight_decay": args.wd,
        "eval_chars": int(task.eval_set.size),
        "train_chars": int(task.corpus.train.size),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "load_start": load_average(),
        "optimizers": names,
        "runs": [],
        "chosen_lr": {},
        "step_time_ratio": {},
        "step_time_s": {},
    }
    print(
        f"char LM: {task.n_params:,} parameters ({cfg}), batch {args.batch}, "
        f"{args.steps} steps; {task.corpus.train.size:,} train / "
        f"{task.eval_set.size:,} held-out chars evaluated",
        flush=True,
    )
    t_start = time.perf_counter()

    compiled: dict[str, tuple[Callable, Callable]] = {}

    def steps_of(name: str) -> tuple[Callable, Callable]:
        if name not in compiled:
            fused = not args.quick
            compiled[name] = task.make_step(name, args.steps, args.wd, fused)
        return compiled[name]

    def run(name: str, lr: float, seed: int) -> dict[str, Any]:
        r = train(task, steps_of(name), name, lr, seed, args.steps)
        record["runs"].append(r)
        record["seconds"] = time.perf_counter() - t_start
        _dump(args.json, record)
        print(
            f"  [{record['seconds']:6.0f} s] {name:20s} lr {lr:g} seed {seed}: "
            f"held-out {r['eval_loss']:.4f} (train {r['train_loss_last100']:.4f}), "
            f"{1e3 * r['median_step_s']:.1f} ms/step"
            + (f", diverged at step {bad}" if (bad := r["diverged_at_step"]) else ""),
            flush=True,
        )
        return r

    # 1. The sweep on seed 0.
    for name in names:
        sweep = [run(name, lr, 0) for lr in lrs]
        best = min(sweep, key=lambda r: _finite(r["eval_loss"]))
        record["chosen_lr"][name] = best["lr"]
    # 2. The other seeds at the chosen rates, and AdamW's int4 state.
    for seed in range(1, args.seeds):
        for name in names:
            run(name, record["chosen_lr"][name], seed)
    if BASELINE in names:
        record["chosen_lr"][INT4] = record["chosen_lr"][BASELINE]
        for seed in range(args.seeds):
            run(INT4, record["chosen_lr"][INT4], seed)
    # 3. Step time, interleaved.
    medians = time_interleaved(task, steps_of, record["chosen_lr"], args.time_rounds)
    record["step_time_s"] = medians
    base = medians.get(BASELINE)
    ratios = {n: t / base for n, t in medians.items()} if base else {}
    record["step_time_ratio"] = ratios
    record["seconds"] = time.perf_counter() - t_start
    record["load_end"] = load_average()
    _dump(args.json, record)
    rows = summarise(record)
    record["table"] = rows
    table = markdown(rows, record)
    print(table)
    print(f"{record['seconds']:.0f} s; load average {record['load_end']}", flush=True)
    if args.markdown:
        write_markdown(args.markdown, table, record)
    return record


if __name__ == "__main__":
    main()
