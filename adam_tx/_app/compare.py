"""``adam-tx compare``: optimizers head to head on the character LM.

Every optimizer trains from the same initial parameters on the same batches,
once per learning rate (``--lr-factors`` times its default), with clipping
and a warmup-cosine schedule. The held-out loss is evaluated at step 0 and
every ``--eval-every`` steps; the step at which a run first reaches the target
is interpolated linearly between the two evaluations around the crossing.
Each optimizer is shown at its best learning rate (fewest steps to the
target, then lowest final loss), flagged when that rate is the smallest or
largest of the sweep: the best may then lie outside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import IO, Any

from tqdm import tqdm

from adam_tx._app import outdir as _outdir
from adam_tx._app import runs as _runs
from adam_tx._app.commands import Args, OpenOut, Parser, _json, _setup

Curve = list[list[float]]  # [step, held-out loss] pairs


def steps_to_target(curve: Curve, target: float) -> float:
    """The step at which ``curve`` first reaches ``target``, interpolated
    linearly between the evaluations around the crossing (nan if never).

    >>> steps_to_target([[0, 4.0], [10, 3.0], [20, 2.0]], 2.5)
    15.0
    """
    for (s0, v0), (s1, v1) in zip(curve, curve[1:]):
        if v1 <= target < v0:
            return s0 + (s1 - s0) * (v0 - target) / (v0 - v1)
    if curve and curve[0][1] <= target:
        return float(curve[0][0])
    return math.nan


def _parse(parser: Parser, args: Args) -> tuple[list[str], list[float]]:
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
    if not factors or not all(math.isfinite(f) and f > 0 for f in factors):
        parser.error(f"--lr-factors must be finite and > 0, got {args.lr_factors}")
    return names, factors


def _train(
    run: dict[str, Any],
    step: Callable,
    evaluate: Callable,
    params: Any,
    tx: Any,
    args: Args,
    next_batch: Callable,
    bar: Any,
) -> None:
    """Train one run, appending its evaluations to ``run["curve"]``."""
    sched = _runs.lr_schedule("warmup-cosine", run["lr"], args.steps)
    opt_state = tx.init(params)
    for i in range(1, args.steps + 1):
        params, opt_state, loss, _ = step(params, opt_state, next_batch(), sched(i - 1))
        bar.update(1)
        if not math.isfinite(float(loss)):
            run["diverged_at_step"] = i
            bar.update(args.steps - i)
            return
        if i % args.eval_every == 0 or i == args.steps:
            run["curve"].append([i, float(evaluate(params))])


def compare(parser: Parser, args: Args, open_out: OpenOut) -> int:
    """Train every optimizer at every lr; write the table, bar chart and JSON."""
    names, factors = _parse(parser, args)
    total = len(names) * len(factors)
    print(
        f"compare: {len(names)} optimizers x {len(factors)} learning rates = "
        f"{total} runs of {args.steps} steps, held-out loss every "
        f"{args.eval_every} steps",
        flush=True,
    )
    record: dict[str, Any] = {
        "optimizers": names,
        "lr_factors": factors,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "interrupted": False,
    }
    with open_out(args) as out:
        runs: list[dict[str, Any]] = []
        stream = out.open_stream("compare.jsonl")
        timer = _runs.Timer()
        try:
            _run_all(args, names, factors, runs, stream, timer)
        except KeyboardInterrupt:
            record["interrupted"] = True
        with _outdir.sigint_ignored():
            if runs and not runs[-1]["complete"]:
                stream.write(json.dumps(runs[-1]) + "\n")  # the run cut short
            stream.close()
            record["seconds"] = timer()
            return _finish(out, args, record, names, factors, runs)


def _run_all(
    args: Args,
    names: list[str],
    factors: list[float],
    runs: list[dict[str, Any]],
    stream: IO[str],
    timer: _runs.Timer,
) -> None:
    """Train every run in turn, appending each to ``runs`` as it starts and
    writing it to ``stream`` once complete."""
    graphdef, params, eval_set, batch_stream = _setup(args)
    evaluate = _runs.make_eval(graphdef, eval_set)
    start_loss = float(evaluate(params))
    total = len(names) * len(factors)
    with tqdm(total=total * args.steps, desc="compare", unit="step") as bar:
        for name in names:
            tx = _runs.make_optimizer(name, 1.0)
            step = _runs.make_step(graphdef, tx, feed_lr=True)  # one compile
            for factor in factors:
                lr = factor * _runs.OPTIMIZERS[name][1]
                run = {"optimizer": name, "lr": lr, "factor": factor}
                run.update(curve=[[0, start_loss]], complete=False)
                runs.append(run)
                _train(run, step, evaluate, params, tx, args, batch_stream(), bar)
                run["complete"] = True
                stream.write(json.dumps(run) + "\n")
                _report(bar, run, len(runs), total, timer())


def _report(bar: Any, run: dict[str, Any], done: int, total: int, secs: float) -> None:
    best = min(v for _, v in run["curve"])
    bar.write(
        f"  [{done}/{total}] {run['optimizer']:10s} lr {run['lr']:.2e}: "
        f"best held-out loss {best:.3f}"
    )
    if done == 1 and total > 1:
        bar.write(f"  first run took {secs:.0f} s: about {secs * total / 60:.1f} min")


def _best(mine: list[dict[str, Any]], target: float) -> dict[str, Any]:
    def key(run: dict[str, Any]) -> tuple[float, float]:
        steps = steps_to_target(run["curve"], target)
        return (math.inf if math.isnan(steps) else steps, run["curve"][-1][1])

    return min(mine, key=key)


def table(
    names: list[str], factors: list[float], runs: list[dict[str, Any]], target: float
) -> list[dict[str, Any]]:
    """One row per optimizer with complete runs: its best run and the flags."""
    rows = []
    for name in names:
        mine = [r for r in runs if r["optimizer"] == name and r["complete"]]
        if not mine:
            continue
        best = _best(mine, target)
        steps = steps_to_target(best["curve"], target)
        edge = None
        if len(factors) > 1 and best["factor"] == min(factors):
            edge = "low"
        elif len(factors) > 1 and best["factor"] == max(factors):
            edge = "high"
        rows.append(
            {
                "optimizer": name,
                "best_lr": best["lr"],
                "steps_to_target": None if math.isnan(steps) else steps,
                "final_eval_loss": best["curve"][-1][1],
                "edge": edge,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| optimizer | best lr | steps to target | final held-out loss | note |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        steps = r["steps_to_target"]
        shown = "not reached" if steps is None else f"{steps:.0f}"
        note = {
            None: "",
            "low": "best lr is the sweep's lowest: try smaller --lr-factors",
            "high": "best lr is the sweep's highest: try larger --lr-factors",
        }[r["edge"]]
        lines.append(
            f"| {r['optimizer']} | {r['best_lr']:.2e} | {shown} | "
            f"{r['final_eval_loss']:.3f} | {note} |"
        )
    return "\n".join(lines)


def _finish(
    out: _outdir.RunDir,
    args: Args,
    record: dict[str, Any],
    names: list[str],
    factors: list[float],
    runs: list[dict[str, Any]],
) -> int:
    done = [r for r in runs if r["complete"]]
    losses = [v for r in done for _, v in r["curve"]]
    target = args.target or (1.1 * min(losses) if losses else math.nan)
    rows = table(names, factors, runs, target)
    how = "given" if args.target else "1.1 x the best any run reached"
    header = (
        f"target held-out loss {target:.3f} nats/char ({how}); steps to target "
        f"interpolated linearly between held-out evaluations every "
        f"{args.eval_every} steps; {len(done)} runs of {args.steps} steps"
        + (" (interrupted)" if record["interrupted"] else "")
    )
    text = markdown(rows, header)
    record.update(target=target, target_rule=how, table=rows, runs=runs)
    written = [out.file("compare.jsonl")]
    written.append(out.write_text("compare.md", text + "\n"))
    if rows:
        labels = [r["optimizer"] + ("*" if r["edge"] else "") for r in rows]
        values = [
            math.nan if r["steps_to_target"] is None else r["steps_to_target"]
            for r in rows
        ]
        title = f"steps to held-out loss {target:.3f} (* best lr at the sweep's edge)"
        plot = lambda path: _runs.plot_bars(labels, values, path, title)
        written.append(out.write_with("compare.png", plot))
    written.append(out.write_text("compare.json", _json(record)))
    print(text)
    print("wrote " + ", ".join(map(str, written)))
    return 130 if record["interrupted"] else 0
