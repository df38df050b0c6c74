"""The ``adam-tx`` commands that train: demo, lr-find and compare.

Each takes its parser (for argument errors), the parsed arguments and a
function opening the locked output folder (:class:`adam_tx._app.outdir.RunDir`).
A run's body is the ``try`` block; Ctrl-C anywhere in it ends the body, and
the summary (marked interrupted) and the metrics so far are written with
Ctrl-C ignored, so the folder is never left half-written. Exit code 130 then.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from adam_tx import charlm
from adam_tx._app import outdir as _outdir
from adam_tx._app import runs as _runs
from adam_tx.lr_finder import RangeTestResult, exponential_lrs, lr_range_test

Parser = argparse.ArgumentParser
Args = argparse.Namespace
OpenOut = Callable[[Args], _outdir.RunDir]

# Options of the model and data that a printed demo command line repeats.
_TASK_OPTIONS = ("seed", "batch", "seq_len", "d_model", "heads", "layers", "max_chars")


def _setup(
    args: Args,
) -> tuple[Any, Any, np.ndarray, Callable[[], Callable[[], np.ndarray]]]:
    """``(graphdef, params, eval_set, batch_stream)`` of the character LM task;
    each ``batch_stream()`` is a new ``next_batch()``, seeded by ``--seed`` (so
    every run of a comparison sees the same batches)."""
    cfg = charlm.ModelConfig(
        seq_len=args.seq_len,
        d_model=args.d_model,
        n_heads=args.heads,
        n_layers=args.layers,
        d_ff=4 * args.d_model,
    )
    corpus = charlm.load_corpus(args.max_chars)
    graphdef, params = charlm.make_model(cfg, args.seed)
    eval_set = charlm.eval_batches(
        corpus.heldout, args.eval_batches, args.batch, args.seq_len
    )

    def batch_stream() -> Callable[[], np.ndarray]:
        rng = np.random.default_rng(args.seed)
        return lambda: charlm.sample_batch(corpus.train, rng, args.batch, args.seq_len)

    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    print(
        f"corpus: {corpus.train.size:,} train / {corpus.heldout.size:,} held-out "
        f"chars ({corpus.n_train_files} + {corpus.n_heldout_files} stdlib files); "
        f"model: {n_params:,} parameters",
        flush=True,
    )
    return graphdef, params, eval_set, batch_stream


def _json(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


def demo(parser: Parser, args: Args, open_out: OpenOut) -> int:
    """Train the character LM; write metrics.jsonl, plot.png, summary.json."""
    lr = args.lr or _runs.OPTIMIZERS[args.optimizer][1]
    momentum = _runs.momentum_schedule(args.schedule, args.steps)

    def build(state: str) -> Any:
        schedule = _runs.lr_schedule(args.schedule, lr, args.steps)
        return _runs.make_optimizer(
            args.optimizer, schedule, state=state, momentum=momentum
        )

    try:
        tx = build(args.state)
    except ValueError as err:
        parser.error(str(err))
    with open_out(args) as run:
        summary: dict[str, Any] = {
            "optimizer": args.optimizer,
            "schedule": args.schedule,
            "peak_lr": lr,
            "momentum_cycled": momentum is not None
            and _runs.momentum_name(args.optimizer) is not None,
            "state": args.state,
            "steps": args.steps,
            "interrupted": False,
            "final_eval_loss": None,
        }
        writer = _runs.MetricsWriter(run.open_stream("metrics.jsonl"))
        timer = _runs.Timer()
        try:
            _train_demo(args, tx, build("fp32"), writer, summary, timer)
        except KeyboardInterrupt:
            summary["interrupted"] = True
        with _outdir.sigint_ignored():
            writer.close()
            return _demo_finish(run, summary, writer.rows, timer())


def _train_demo(
    args: Args,
    tx: Any,
    fp32_tx: Any,
    writer: _runs.MetricsWriter,
    summary: dict[str, Any],
    timer: _runs.Timer,
) -> None:
    graphdef, params, eval_set, batch_stream = _setup(args)
    next_batch = batch_stream()
    opt_state = tx.init(params)
    fp32 = jax.eval_shape(fp32_tx.init, params)
    line, figures = _runs.memory_line(opt_state, params, fp32)
    summary.update(figures)
    print(line, flush=True)
    step = _runs.make_step(graphdef, tx)
    evaluate = _runs.make_eval(graphdef, eval_set)
    with tqdm(range(1, args.steps + 1), desc=args.optimizer, unit="step") as bar:
        for i in bar:
            params, opt_state, loss, stats = step(params, opt_state, next_batch(), 0.0)
            row = {"step": i, "loss": loss, **stats, "time_s": timer()}
            writer.write(row)
            keys = ("loss", "lr", "b1", "grad_norm", "clip_factor")
            shown = {k: row[k] for k in keys if k in row}
            bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()})
            if i % args.eval_every == 0 or i == args.steps:
                eval_loss = float(evaluate(params))
                summary["final_eval_loss"] = eval_loss
                writer.write({"step": i, "eval_loss": eval_loss, "time_s": timer()})


def _demo_finish(
    run: _outdir.RunDir,
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    seconds: float,
) -> int:
    train = [r for r in rows if "loss" in r]
    title = (
        f"adam-tx demo: {summary['optimizer']}, {summary['schedule']}, "
        f"state {summary['state']}"
    )
    written = [run.file("metrics.jsonl")]
    if train:
        plot = lambda path: _runs.plot_training(rows, path, title)
        written.append(run.write_with("plot.png", plot))
    final_train = train[-1]["loss"] if train else None
    summary.update(steps_done=len(train), final_train_loss=final_train, seconds=seconds)
    written.append(run.write_text("summary.json", _json(summary)))
    status = "interrupted" if summary["interrupted"] else "done"
    eval_loss = summary["final_eval_loss"]
    print(
        f"{status}: {len(train)} steps in {seconds:.1f} s; final train loss "
        f"{math.nan if final_train is None else final_train:.3f}, held-out "
        f"loss {math.nan if eval_loss is None else eval_loss:.3f} nats/char"
    )
    print("wrote " + ", ".join(map(str, written)))
    return 130 if summary["interrupted"] else 0


def demo_command(args: Args, lr: float, parser: Parser) -> str:
    """The ``adam-tx demo`` line training ``args``' task at peak rate ``lr``
    (the task options that differ from ``parser``'s defaults are repeated)."""
    parts = ["adam-tx demo"]
    if args.optimizer != "adamw":
        parts.append(f"--optimizer {args.optimizer}")
    parts.append(f"--lr {lr:.1e}")
    for name in _TASK_OPTIONS:
        value = getattr(args, name)
        if value != parser.get_default(name):
            parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def lr_find(parser: Parser, args: Args, open_out: OpenOut) -> int:
    """The range test; write lr_find.json and lr_find.png, print the demo line."""
    if args.max_lr <= args.min_lr:
        parser.error(f"--max-lr must be > --min-lr={args.min_lr}, got {args.max_lr}")
    if args.steps < 3:
        parser.error(f"--steps must be >= 3 for a range test, got {args.steps}")
    if not 0 <= args.smoothing < 1:
        parser.error(f"--smoothing must be in [0, 1), got {args.smoothing}")
    record: dict[str, Any] = {
        "optimizer": args.optimizer,
        "min_lr": args.min_lr,
        "max_lr": args.max_lr,
        "steps": args.steps,
        "smoothing": args.smoothing,
        "interrupted": False,
    }
    with open_out(args) as run:
        timer, done, result = _runs.Timer(), [0], None
        try:
            result = _range_test(args, done)
        except KeyboardInterrupt:
            record["interrupted"] = True
        with _outdir.sigint_ignored():
            record["seconds"] = timer()
            return _lr_find_finish(run, parser, args, record, result, done[0])


def _range_test(args: Args, done: list[int]) -> RangeTestResult:
    """The range test with a progress bar; ``done[0]``: the steps run so far."""
    graphdef, params, _, batch_stream = _setup(args)
    next_batch = batch_stream()
    tx = _runs.make_optimizer(args.optimizer, args.min_lr)
    lrs = exponential_lrs(args.min_lr, args.max_lr, args.steps)
    with tqdm(total=args.steps, desc=f"lr-find {args.optimizer}", unit="step") as bar:

        def batches(i: int) -> np.ndarray:  # called before step i runs
            done[0] = i
            bar.update(i - bar.n)
            bar.set_postfix(lr=f"{lrs[i]:.1e}")
            return next_batch()

        result = lr_range_test(
            charlm.functional_loss(graphdef),
            params,
            tx,
            batches,
            min_lr=args.min_lr,
            max_lr=args.max_lr,
            num_steps=args.steps,
            beta=args.smoothing,
        )
        done[0] = len(result.lrs)
        bar.update(done[0] - bar.n)
    return result


def _lr_find_finish(
    run: _outdir.RunDir,
    parser: Parser,
    args: Args,
    record: dict[str, Any],
    result: RangeTestResult | None,
    done: int,
) -> int:
    if result is None:  # interrupted: the steps done so far, no losses yet
        lrs = exponential_lrs(args.min_lr, args.max_lr, args.steps)
        record.update(steps_done=done, lrs=lrs[:done].tolist())
        path = run.write_text("lr_find.json", _json(record))
        print(f"interrupted after {done} steps; wrote {path}")
        return 130
    suggested, rule = _runs.suggest_peak_lr(
        result.lrs, result.smoothed, result.diverged_at
    )
    command = demo_command(args, suggested, parser)
    record.update(
        steps_done=len(result.lrs),
        lrs=result.lrs.tolist(),
        losses=result.losses.tolist(),
        smoothed=result.smoothed.tolist(),
        suggested_lr=suggested,
        rule=rule,
        command=command,
        steepest=result.steepest,
        min_div_10=result.min_div_10,
        diverged_at=result.diverged_at,
    )
    png = run.write_with(
        "lr_find.png", lambda path: _runs.plot_range_test(result, suggested, path)
    )
    path = run.write_text("lr_find.json", _json(record))
    stop = (
        f"diverged at {result.diverged_at:.1e}" if result.diverged_at else "no blow-up"
    )
    print(
        f"{args.optimizer}: loss falls fastest at lr {result.steepest:.1e}, is "
        f"lowest at {10 * result.min_div_10:.1e}; {stop}"
    )
    print(f"suggested peak lr {suggested:.1e} ({rule}); to train with it:")
    print(f"  {command}")
    print(f"wrote {png}, {path}")
    return 0
