"""The ``adam-tx`` command (also ``python -m adam_tx``).

``adam-tx demo``      train a character-level Transformer LM on the standard
                      library's source with AdamW + warmup-cosine + clipping;
                      progress bar, held-out loss, metrics.jsonl, plot.png.
``adam-tx lr-find``   the learning-rate range test on the same model.
``adam-tx compare``   SGD+momentum, RMSProp, AdamW and variants on the same task,
                      a small lr sweep each: steps to reach a target held-out loss.
``adam-tx bench``     the step-speed benchmark (benchmarks/step_speed.py).

Every command writes into ``--out`` (default: a fresh timestamped folder under
``./adam_tx_runs``) and refuses a non-empty existing folder unless
``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import inspect
import json
import math
import pathlib
import sys

import jax
import numpy as np

from adam_tx import _runs, charlm
from adam_tx.lr_finder import lr_range_test
from adam_tx.lr_finder import plot as plot_range_test


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _common(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--steps", type=_positive_int, default=steps, help="train steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out")
    p.add_argument("--batch", type=_positive_int, default=32, help="sequences/step")
    p.add_argument("--seq-len", type=_positive_int, default=64)
    p.add_argument("--d-model", type=_positive_int, default=128)
    p.add_argument("--heads", type=_positive_int, default=4)
    p.add_argument("--layers", type=_positive_int, default=2)
    p.add_argument(
        "--max-chars",
        type=_positive_int,
        default=2_000_000,
        help="characters of stdlib source read",
    )
    p.add_argument("--eval-batches", type=_positive_int, default=8)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adam-tx", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train a small Transformer LM (~3 min, CPU)")
    _common(demo, steps=400)
    demo.add_argument("--optimizer", choices=tuple(_runs.OPTIMIZERS), default="adamw")
    demo.add_argument("--schedule", choices=_runs.SCHEDULES, default="warmup-cosine")
    demo.add_argument("--lr", type=_positive_float, default=None, help="peak lr")
    demo.add_argument("--state", choices=_runs.STATES, default="fp32")
    demo.add_argument("--eval-every", type=_positive_int, default=50)

    find = sub.add_parser("lr-find", help="learning-rate range test")
    _common(find, steps=150)
    find.add_argument("--optimizer", choices=tuple(_runs.OPTIMIZERS), default="adamw")
    find.add_argument("--min-lr", type=_positive_float, default=1e-6)
    find.add_argument("--max-lr", type=_positive_float, default=1.0)
    find.add_argument(
        "--smoothing",
        type=float,
        default=0.9,
        help="EMA factor of the loss, in [0, 1) (0.98 lags ~50 steps behind)",
    )

    comp = sub.add_parser("compare", help="optimizers head to head")
    _common(comp, steps=150)
    comp.add_argument(
        "--optimizers",
        default="sgd,rmsprop,adam,adamw,amsgrad,adabelief,adamax,nadam",
        help="comma-separated names from: " + ", ".join(_runs.OPTIMIZERS),
    )
    comp.add_argument(
        "--lr-factors",
        default="0.3,1,3",
        help="multiples of each optimizer's default lr to try",
    )
    comp.add_argument("--eval-every", type=_positive_int, default=10)
    comp.add_argument(
        "--target",
        type=_positive_float,
        default=None,
        help="held-out loss to reach (default: 1.1 x the best any run reached)",
    )

    bench = sub.add_parser("bench", help="optimizer step speed benchmark")
    bench.add_argument("args", nargs="*", help="passed on to step_speed.py")
    return parser


def _out_dir(parser, args) -> pathlib.Path:
    out = args.out
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out = pathlib.Path("adam_tx_runs") / f"{args.command}-{stamp}"
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        parser.error(f"--out {out} exists and is not empty (add --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _setup(args):
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
    rng = np.random.default_rng(args.seed)

    def batches(_step=None):
        return charlm.sample_batch(corpus.train, rng, args.batch, args.seq_len)

    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    print(
        f"corpus: {corpus.train.size:,} train / {corpus.heldout.size:,} held-out "
        f"chars ({corpus.n_train_files} + {corpus.n_heldout_files} stdlib files); "
        f"model: {n_params:,} parameters"
    )
    return cfg, graphdef, params, eval_set, batches


def cmd_demo(parser, args) -> int:
    lr = args.lr or _runs.OPTIMIZERS[args.optimizer][1]
    try:
        tx = _runs.make_optimizer(
            args.optimizer,
            _runs.lr_schedule(args.schedule, lr, args.steps),
            state=args.state,
        )
    except ValueError as err:
        parser.error(str(err))
    out = _out_dir(parser, args).resolve()
    _, graphdef, params, eval_set, batches = _setup(args)
    opt_state = tx.init(params)
    step = _runs.make_step(graphdef, tx)
    evaluate = _runs.make_eval(graphdef, eval_set)
    writer = _runs.MetricsWriter(out / "metrics.jsonl")
    timer, interrupted, eval_loss = _runs.Timer(), False, float("nan")
    from tqdm import tqdm

    bar = tqdm(range(1, args.steps + 1), desc=f"{args.optimizer}", unit="step")
    try:
        for i in bar:
            params, opt_state, loss, stats = step(params, opt_state, batches(), 0.0)
            row = {"step": i, "loss": loss, **stats, "time_s": timer()}
            writer.write(row)
            bar.set_postfix(
                loss=f"{row['loss']:.3f}",
                lr=f"{row['lr']:.2e}",
                gnorm=f"{row['grad_norm']:.2f}",
                clip=f"{row['clip_factor']:.2f}",
            )
            if i % args.eval_every == 0 or i == args.steps:
                eval_loss = float(evaluate(params))
                writer.write({"step": i, "eval_loss": eval_loss, "time_s": timer()})
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        writer.close()
    rows = writer.rows
    title = f"adam-tx demo: {args.optimizer}, {args.schedule}, state {args.state}"
    if rows:
        _runs.plot_training(rows, out / "plot.png", title)
    train = [r for r in rows if "loss" in r]
    summary = {
        "optimizer": args.optimizer,
        "schedule": args.schedule,
        "peak_lr": lr,
        "state": args.state,
        "steps_done": len(train),
        "interrupted": interrupted,
        "final_train_loss": train[-1]["loss"] if train else None,
        "final_eval_loss": eval_loss,
        "seconds": timer(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    status = "interrupted" if interrupted else "done"
    print(
        f"{status}: {len(train)} steps in {timer():.1f} s; final train loss "
        f"{summary['final_train_loss'] or float('nan'):.3f}, held-out loss "
        f"{eval_loss:.3f} nats/char"
    )
    print(f"wrote {out / 'metrics.jsonl'}, {out / 'plot.png'}, {out / 'summary.json'}")
    return 130 if interrupted else 0


def cmd_lr_find(parser, args) -> int:
    if args.max_lr <= args.min_lr:
        parser.error(f"--max-lr must be > --min-lr={args.min_lr}, got {args.max_lr}")
    if args.steps < 3:
        parser.error(f"--steps must be >= 3 for a range test, got {args.steps}")
    if not 0 <= args.smoothing < 1:
        parser.error(f"--smoothing must be in [0, 1), got {args.smoothing}")
    out = _out_dir(parser, args).resolve()
    _, graphdef, params, _, batches = _setup(args)
    tx = _runs.make_optimizer(args.optimizer, args.min_lr)
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
    plot_range_test(result, str(out / "lr_find.png"))
    record = {
        "optimizer": args.optimizer,
        "lrs": result.lrs.tolist(),
        "losses": result.losses.tolist(),
        "smoothed": result.smoothed.tolist(),
        "steepest": result.steepest,
        "min_div_10": result.min_div_10,
        "diverged_at": result.diverged_at,
    }
    (out / "lr_find.json").write_text(json.dumps(record) + "\n")
    stop = f"{result.diverged_at:.2e}" if result.diverged_at else "never"
    print(
        f"{args.optimizer}: steepest descent at lr {result.steepest:.2e}, "
        f"min/10 rule {result.min_div_10:.2e}, diverged at {stop}"
    )
    print(f"wrote {out / 'lr_find.png'}, {out / 'lr_find.json'}")
    return 0


def _compare_run(step, evaluate, params, tx, lr, args, batches):
    sched = _runs.lr_schedule("warmup-cosine", lr, args.steps)
    opt_state, curve = tx.init(params), []
    for i in range(1, args.steps + 1):
        params, opt_state, loss, _ = step(params, opt_state, batches(), sched(i - 1))
        if not math.isfinite(float(loss)):
            break
        if i % args.eval_every == 0 or i == args.steps:
            curve.append((i, float(evaluate(params))))
    return curve


def _steps_to(curve, target):
    return next((s for s, v in curve if v <= target), float("nan"))


def _best_of(name, runs, target):
    """``(name, lr, steps to target, final loss)`` of ``name``'s best lr: fewest
    steps to the target, then lowest held-out loss."""
    mine = [r for r in runs if r["optimizer"] == name and r["curve"]]
    if not mine:
        return name, float("nan"), float("nan"), float("nan")

    def key(run):
        steps = _steps_to(run["curve"], target)
        return (math.inf if math.isnan(steps) else steps, run["curve"][-1][1])

    best = min(mine, key=key)
    return name, best["lr"], _steps_to(best["curve"], target), best["curve"][-1][1]


def cmd_compare(parser, args) -> int:
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    bad = [n for n in names if n not in _runs.OPTIMIZERS]
    if bad or not names:
        parser.error(
            f"--optimizers: unknown {bad}; choose from {list(_runs.OPTIMIZERS)}"
        )
    try:
        factors = [float(f) for f in args.lr_factors.split(",")]
    except ValueError:
        parser.error(f"--lr-factors must be comma-separated numbers: {args.lr_factors}")
    if not factors or min(factors) <= 0:
        parser.error(f"--lr-factors must be > 0, got {args.lr_factors}")
    out = _out_dir(parser, args).resolve()
    _, graphdef, params, eval_set, batches = _setup(args)
    evaluate = _runs.make_eval(graphdef, eval_set)
    runs = []
    with open(out / "compare.jsonl", "w") as f:
        for name in names:
            tx = _runs.make_optimizer(name, 1.0)
            step = _runs.make_step(graphdef, tx, feed_lr=True)  # one compile per name
            for factor in factors:
                lr = factor * _runs.OPTIMIZERS[name][1]
                curve = _compare_run(step, evaluate, params, tx, lr, args, batches)
                run = {"optimizer": name, "lr": lr, "curve": curve}
                best = min((v for _, v in curve), default=float("nan"))
                print(f"  {name:10s} lr {lr:.2e}: best held-out loss {best:.3f}")
                f.write(json.dumps(run) + "\n")
                f.flush()
                runs.append(run)
    bests = [v for r in runs for _, v in r["curve"]]
    target = args.target or 1.1 * min(bests, default=float("nan"))
    table = [_best_of(name, runs, target) for name in names]
    lines = [
        f"target held-out loss {target:.3f} nats/char",
        "",
        "| optimizer | best lr | steps to target | final held-out loss |",
        "|---|---|---|---|",
    ]
    for name, lr, steps, final in table:
        shown = "not reached" if math.isnan(steps) else f"{steps:.0f}"
        lines.append(f"| {name} | {lr:.2e} | {shown} | {final:.3f} |")
    text = "\n".join(lines)
    (out / "compare.md").write_text(text + "\n")
    _runs.plot_bars(
        [t[0] for t in table],
        [t[2] for t in table],
        out / "compare.png",
        f"steps to held-out loss {target:.3f} (best lr of each)",
    )
    print(text)
    print(f"wrote {out / 'compare.md'}, {out / 'compare.png'}, {out / 'compare.jsonl'}")
    return 0


BENCH_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks/step_speed.py"


def cmd_bench(parser, args) -> int:
    path = BENCH_SCRIPT
    if not path.is_file():
        print(
            f"adam-tx bench: the speed benchmark is not available here ({path} "
            "not found; it ships with the source repository)",
            file=sys.stderr,
        )
        return 1
    spec = importlib.util.spec_from_file_location("adam_tx_step_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "main"):
        print(f"adam-tx bench: {path} has no main()", file=sys.stderr)
        return 1
    rest = [a for a in args.args if a != "--"]
    if inspect.signature(module.main).parameters:
        result = module.main(rest)
    else:
        sys.argv = [str(path), *rest]
        result = module.main()
    return result if isinstance(result, int) else 0


COMMANDS = {
    "demo": cmd_demo,
    "lr-find": cmd_lr_find,
    "compare": cmd_compare,
    "bench": cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "bench":
        args.args = [*args.args, *extra]
    sub = parser._subparsers._group_actions[0].choices[args.command]
    return COMMANDS[args.command](sub, args)


if __name__ == "__main__":
    sys.exit(main())
