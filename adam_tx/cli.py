"""The ``adam-tx`` command (also ``python -m adam_tx``).

  adam-tx demo      train a character-level Transformer LM on the standard
                    library's source with AdamW + warmup-cosine + clipping;
                    progress bar, held-out loss, metrics.jsonl, plot.png
  adam-tx lr-find   the learning-rate range test on the same model, and the
                    demo command line that uses its suggestion
  adam-tx compare   SGD+momentum, RMSProp, Adam, AdamW and variants on the same
                    task, a small lr sweep each: steps to a target held-out loss
  adam-tx bench     the optimizer step-speed benchmark (adam_tx._app.bench)

demo, lr-find and compare need the demo extra (pip install 'adam_tx[demo]').
Each writes into --out (default: a new folder under ./adam_tx_runs), which is
locked while it runs; a non-empty folder is refused unless --overwrite is
given, and then only the command's own files are replaced. Ctrl-C stops a run
with exit code 130 and keeps the metrics so far and a summary marked
interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import math
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from adam_tx._app import outdir as _outdir
from adam_tx._app import runs as _runs

EXTRA_MODULES = ("flax", "tqdm", "matplotlib")  # the demo extra
OWNED = {
    "demo": ("metrics.jsonl", "plot.png", "summary.json"),
    "lr-find": ("lr_find.json", "lr_find.png"),
    "compare": ("compare.jsonl", "compare.json", "compare.md", "compare.png"),
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default (unless its text says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default is None:
            return text
        if action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


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


def _lr_defaults() -> str:
    return ", ".join(f"{n} {_runs.OPTIMIZERS[n][1]:g}" for n in _runs.OPTIMIZERS)


def _common(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--steps", type=_positive_int, default=steps, help="train steps")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the initialisation and batches"
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="output folder (default: a new adam_tx_runs/<command>-<time>)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="use a non-empty --out, replacing only the files this command writes",
    )
    p.add_argument("--batch", type=_positive_int, default=32, help="sequences per step")
    p.add_argument(
        "--seq-len", type=_positive_int, default=64, help="characters per sequence"
    )
    p.add_argument("--d-model", type=_positive_int, default=128, help="model width")
    p.add_argument("--heads", type=_positive_int, default=4, help="attention heads")
    p.add_argument("--layers", type=_positive_int, default=2, help="Transformer blocks")
    p.add_argument(
        "--max-chars",
        type=_positive_int,
        default=2_000_000,
        help="characters of standard-library source read",
    )
    p.add_argument(
        "--eval-batches",
        type=_positive_int,
        default=8,
        help="held-out batches in each evaluation",
    )


def _optimizer(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--optimizer",
        choices=tuple(_runs.OPTIMIZERS),
        default="adamw",
        help="optimizer, after global-norm clipping at 1.0",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``adam-tx`` parser and its four subcommands."""
    parser = argparse.ArgumentParser(
        prog="adam-tx", description=__doc__, formatter_class=_Formatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kw: dict[str, Any] = {"formatter_class": _Formatter}

    demo = sub.add_parser("demo", help="train a small Transformer LM (CPU)", **kw)
    _common(demo, steps=400)
    _optimizer(demo)
    demo.add_argument(
        "--schedule",
        choices=_runs.SCHEDULES,
        default="warmup-cosine",
        help="learning-rate schedule; one-cycle also cycles the momentum (b1) "
        "0.95 -> 0.85 -> 0.95, as torch's OneCycleLR",
    )
    demo.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"peak learning rate (default: the optimizer's: {_lr_defaults()})",
    )
    demo.add_argument(
        "--state",
        choices=_runs.STATES,
        default="fp32",
        help="storage of the optimizer's moments (its bytes are printed)",
    )
    demo.add_argument(
        "--eval-every",
        type=_positive_int,
        default=50,
        help="steps between held-out evaluations",
    )

    find = sub.add_parser("lr-find", help="learning-rate range test", **kw)
    _common(find, steps=150)
    _optimizer(find)
    find.add_argument(
        "--min-lr", type=_positive_float, default=1e-6, help="first lr of the sweep"
    )
    find.add_argument(
        "--max-lr", type=_positive_float, default=1.0, help="last lr of the sweep"
    )
    find.add_argument(
        "--smoothing",
        type=float,
        default=0.9,
        help="EMA factor of the loss, in [0, 1) (0.98 lags ~50 steps behind)",
    )

    comp = sub.add_parser("compare", help="optimizers head to head", **kw)
    _common(comp, steps=150)
    comp.add_argument(
        "--optimizers",
        default="sgd,rmsprop,adam,adamw,adabelief",
        help="comma-separated names from: " + ", ".join(_runs.OPTIMIZERS),
    )
    comp.add_argument(
        "--lr-factors",
        default="0.3,1,3",
        help="multiples of each optimizer's default lr to try "
        f"(defaults: {_lr_defaults()})",
    )
    comp.add_argument(
        "--eval-every",
        type=_positive_int,
        default=10,
        help="steps between held-out evaluations (steps to target are "
        "interpolated between them)",
    )
    comp.add_argument(
        "--target",
        type=_positive_float,
        default=None,
        help="held-out loss to reach (default: 1.1 x the best any run reached)",
    )

    sub.add_parser(
        "bench",
        help="optimizer step-speed benchmark (adam-tx bench --help for options)",
        add_help=False,
    )
    return parser


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers of ``build_parser()``, by name."""
    (action,) = (
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    return dict(action.choices)


def _missing_extra(command: str) -> str | None:
    """The one-line error for a missing demo extra, or None if installed."""
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return (
                f"adam-tx {command} needs the demo extra: pip install 'adam_tx[demo]'"
            )
    return None


def _open_out(args: argparse.Namespace) -> _outdir.RunDir:
    out = args.out
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out = pathlib.Path("adam_tx_runs") / f"{args.command}-{stamp}"
    return _outdir.RunDir(out.absolute(), OWNED[args.command], args.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # before a run folder exists: nothing to keep
        print("adam-tx: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    if argv[:1] == ["bench"]:
        from adam_tx._app import bench as _bench

        _bench.main(argv[1:])
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = _missing_extra(args.command)
    if missing:
        print(missing, file=sys.stderr)
        return 1
    from adam_tx._app import commands as _commands
    from adam_tx._app import compare as _compare

    commands = {
        "demo": _commands.demo,
        "lr-find": _commands.lr_find,
        "compare": _compare.compare,
    }
    sub = subparsers(parser)[args.command]
    command = commands[args.command]
    try:
        return command(sub, args, _open_out)
    except _outdir.OutDirError as err:
        print(f"adam-tx {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
