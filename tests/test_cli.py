"""The adam-tx command: each subcommand with a tiny model, its files, its help,
and its output folder (lock, --overwrite, symlinks, Ctrl-C, unwritable)."""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from adam_tx import charlm, cli
from adam_tx._app import compare as _compare
from adam_tx._app import outdir as _outdir
from adam_tx._app import runs as _runs

TINY = [
    "--steps", "4", "--d-model", "16", "--layers", "1", "--heads", "2",
    "--seq-len", "8", "--batch", "2", "--max-chars", "20000",
    "--eval-batches", "1",
]  # fmt: skip


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_cli(*argv, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "adam_tx", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_writes_metrics_plot_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["demo", *TINY, "--steps", "10", "--eval-every", "5"]
    rc = cli.main(
        [*argv, "--schedule", "one-cycle", "--state", "bf16", "--out", str(out)]
    )
    assert rc == 0
    rows = _rows(out / "metrics.jsonl")
    train = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 11))
    assert {"lr", "b1", "grad_norm", "clip_factor", "loss"} <= set(train[0])
    assert all(0 < r["clip_factor"] <= 1 for r in train)
    assert [r["step"] for r in rows if "eval_loss" in r] == [5, 10]
    # one-cycle: b1 0.95 -> 0.85 -> 0.95, lowest where the lr peaks.
    lr, b1 = [r["lr"] for r in train], [r["b1"] for r in train]
    assert b1[0] == pytest.approx(0.95) and b1[-1] == pytest.approx(0.95)
    assert min(b1) == pytest.approx(0.85) and lr.index(max(lr)) == b1.index(min(b1))
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_done"] == 10 and not summary["interrupted"]
    assert summary["momentum_cycled"]
    # bf16 moments: half of the fp32 state's bytes (plus the scalars).
    assert summary["state_bytes"] < 0.5 * summary["state_bytes_fp32"] + 1024
    assert summary["bytes_per_param_fp32"] == pytest.approx(8.0, abs=0.1)
    printed = capsys.readouterr().out
    assert str(out / "metrics.jsonl") in printed
    line = next(s for s in printed.splitlines() if s.startswith("optimizer state:"))
    assert "fp32 state" in line and "saved" in line
    assert sorted(os.listdir(out)) == ["metrics.jsonl", "plot.png", "summary.json"]


def test_ctrl_c_in_process_stops_cleanly_keeping_metrics(tmp_path, monkeypatch):
    calls = []
    real = charlm.sample_batch

    def interrupting(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(charlm, "sample_batch", interrupting)
    out = tmp_path / "run"
    rc = cli.main(["demo", *TINY, "--optimizer", "sgd", "--out", str(out)])
    assert rc == 130
    assert len(_rows(out / "metrics.jsonl")) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["steps_done"] == 2
    assert (out / "plot.png").exists() and not (out / _outdir.LOCK).exists()


def _wait_for(predicate, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _sigint_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT unblocked and at its default action,
    as a shell starts a command. A child inherits its parent's ignored
    signals and signal mask, and Python installs no KeyboardInterrupt handler
    when SIGINT starts ignored: under pytest-xdist (CI) the children of one
    worker ignored SIGINT and ran on for the whole timeout."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("moment", ["startup", "training"])
def test_ctrl_c_exits_130_without_traceback(tmp_path, moment):
    """SIGINT to a real process: once the corpus is read (the model's
    initialisation and the compile still ahead), or once steps are running."""
    out = tmp_path / "run"
    argv = ["demo", *TINY, "--steps", "100000", "--eval-every", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "adam_tx", *argv, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_in_a_terminal,
    )
    try:
        metrics = out / "metrics.jsonl"
        if moment == "startup":
            assert proc.stdout.readline().startswith("corpus:")
        else:
            _wait_for(lambda: metrics.exists() and len(_rows(metrics)) >= 3, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"]
    rows = _rows(metrics)  # every line complete
    assert summary["steps_done"] == len([r for r in rows if "loss" in r])
    if moment == "training":
        assert summary["steps_done"] >= 2 and (out / "plot.png").exists()
    assert not (out / _outdir.LOCK).exists()


def test_ctrl_c_in_lr_find_and_compare_keeps_what_is_done(tmp_path, monkeypatch):
    calls = []
    real = charlm.sample_batch

    def interrupting(*args):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(charlm, "sample_batch", interrupting)
    find = tmp_path / "find"
    assert cli.main(["lr-find", *TINY, "--steps", "20", "--out", str(find)]) == 130
    record = json.loads((find / "lr_find.json").read_text())
    assert record["interrupted"] and record["steps_done"] == 6
    assert len(record["lrs"]) == 6

    calls.clear()
    cmp = tmp_path / "cmp"
    argv = ["compare", *TINY, "--optimizers", "sgd", "--lr-factors", "1,3"]
    assert cli.main([*argv, "--eval-every", "2", "--out", str(cmp)]) == 130
    runs = _rows(cmp / "compare.jsonl")
    assert [r["complete"] for r in runs] == [True, False]  # 4 steps + 2 steps
    assert runs[1]["curve"][-1][0] == 2
    summary = json.loads((cmp / "compare.json").read_text())
    assert summary["interrupted"] and len(summary["table"]) == 1
    assert "(interrupted)" in (cmp / "compare.md").read_text()


def test_a_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    with _outdir.RunDir(out, ("summary.json",), overwrite=False):  # another run
        rc = cli.main(["demo", *TINY, "--out", str(out), "--overwrite"])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"in use by another adam-tx run (pid {os.getpid()})" in err
    assert err.count("\n") == 1
    # Released: a lock file left by a killed run does not block the next one.
    (out / _outdir.LOCK).write_text("12345\n")
    with _outdir.RunDir(out, ("summary.json",), overwrite=False) as run:
        assert (out / _outdir.LOCK).read_text() == f"{os.getpid()}\n"
        run.write_text("summary.json", "{}")
    assert os.listdir(out) == ["summary.json"]


def test_a_non_empty_folder_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(["demo", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not empty (add --overwrite" in err and err.count("\n") == 1
    assert sorted(os.listdir(out)) == ["notes.txt"]  # no lock file left behind


def test_overwrite_replaces_only_own_files_and_never_follows_symlinks(tmp_path):
    out, outside = tmp_path / "run", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    for name in ("metrics.jsonl", "plot.png", "summary.json"):
        (outside / name).write_text("victim")
        (out / name).symlink_to(outside / name)
    (out / "notes.txt").write_text("mine")
    assert cli.main(["demo", *TINY, "--out", str(out), "--overwrite"]) == 0
    for name in ("metrics.jsonl", "plot.png", "summary.json"):
        assert (outside / name).read_text() == "victim"
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 6
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporaries


def test_overwrite_refuses_to_replace_a_folder(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "summary.json").mkdir(parents=True)
    assert cli.main(["demo", *TINY, "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "summary.json is not a file" in err and err.count("\n") == 1


def test_a_symlink_planted_while_running_is_not_followed(tmp_path):
    out = _outdir.RunDir(tmp_path / "run", ("a.json", "s.jsonl"), overwrite=False)
    victim = tmp_path / "victim"
    victim.write_text("victim")
    with out:
        (out.path / "a.json").symlink_to(victim)
        (out.path / "s.jsonl").symlink_to(victim)
        out.write_text("a.json", "{}")
        with pytest.raises(_outdir.OutDirError, match="cannot write"):
            out.open_stream("s.jsonl")
    assert victim.read_text() == "victim"
    assert (out.path / "a.json").read_text() == "{}"


def test_unwritable_out_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["demo", *TINY, "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adam-tx demo: error: cannot create --out")
    assert err.count("\n") == 1
    assert cli.main(["demo", *TINY, "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_read_only_out_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    if os.access(out, os.W_OK):  # root ignores modes: make the OS say no
        real_open = os.open

        def refusing(path, flags, *args, **kwargs):
            if str(path).startswith(str(out)) and flags & os.O_CREAT:
                raise PermissionError(13, "Permission denied")
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(_outdir.os, "open", refusing)
    try:
        assert cli.main(["demo", *TINY, "--out", str(out)]) == 2
    finally:
        out.chmod(0o700)
    err = capsys.readouterr().err
    assert (
        err == f"adam-tx demo: error: cannot write in --out {out}: Permission denied\n"
    )


def _options(parser):
    sub = cli.subparsers(parser)
    for name in ("demo", "lr-find", "compare"):
        for action in sub[name]._actions:
            if not isinstance(action, argparse._HelpAction):
                yield name, sub[name], action


def test_help_shows_every_default_and_the_lr_of_each_optimizer():
    parser = cli.build_parser()
    for name, sub, action in _options(parser):
        assert action.help, f"{name} {action.option_strings} has no help"
        if action.nargs != 0:
            shown = sub._get_formatter()._get_help_string(action)
            assert "default" in shown, f"{name} {action.option_strings}"
    demo = cli.subparsers(parser)["demo"].format_help()
    assert "None" not in demo
    for opt, (_, lr, _) in _runs.OPTIMIZERS.items():
        assert f"{opt} {lr:g}" in " ".join(demo.split())
    assert "(default: 400)" in demo and "(default: warmup-cosine)" in demo


def test_lr_find_shows_progress_and_the_command_to_use(tmp_path, capsys):
    out = tmp_path / "find"
    rc = cli.main(["lr-find", *TINY, "--steps", "6", "--out", str(out)])
    assert rc == 0
    record = json.loads((out / "lr_find.json").read_text())
    assert 3 <= len(record["lrs"]) <= 6 and not record["interrupted"]
    assert record["lrs"][0] == pytest.approx(1e-6)
    assert 1e-6 <= record["suggested_lr"] <= 1.0
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    captured = capsys.readouterr()
    assert "lr-find adamw" in captured.err and "step" in captured.err  # tqdm
    lr = f"{record['suggested_lr']:.1e}"
    command = f"adam-tx demo --lr {lr} --batch 2 --seq-len 8 --d-model 16"
    assert command in captured.out and record["command"].startswith(command)


def test_peak_lr_rule_ends_the_steep_descent():
    lrs = 10.0 ** (0.1 * np.arange(61) - 6)
    fall = 1 / (1 + (lrs / 1e-3) ** -1.5)  # a sigmoid in log lr, centred 1e-3
    smoothed = 5 - 2.5 * fall + (lrs > 0.1) * 10 * (lrs - 0.1)
    lr, rule = _runs.suggest_peak_lr(lrs, smoothed)
    # 90% of the fall at 1e-3 * 9 ** (1 / 1.5) = 4.3e-3; the next grid point
    assert lr == pytest.approx(10**-2.3) and "90%" in rule
    assert _runs.suggest_peak_lr(lrs, smoothed, diverged_at=1.0)[0] == lr


def test_compare_says_the_runs_and_writes_table_chart_and_json(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", *TINY, "--optimizers", "sgd,adamw", "--lr-factors", "1,3"]
    rc = cli.main([*argv, "--eval-every", "2", "--out", str(out)])
    assert rc == 0
    assert "2 optimizers x 2 learning rates = 4 runs" in capsys.readouterr().out
    runs = _rows(out / "compare.jsonl")
    assert [(r["optimizer"], len(r["curve"])) for r in runs] == [
        ("sgd", 3), ("sgd", 3), ("adamw", 3), ("adamw", 3)
    ]  # fmt: skip
    assert len({r["curve"][0][1] for r in runs}) == 1  # same start, step 0
    table = (out / "compare.md").read_text()
    assert "| sgd |" in table and "| adamw |" in table and "interpolated" in table
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "compare.json").read_text())
    assert [r["optimizer"] for r in summary["table"]] == ["sgd", "adamw"]
    assert all(r["edge"] in ("low", "high") for r in summary["table"])  # 2 lrs


def test_steps_to_target_interpolates_and_edges_are_flagged():
    curve = [[0, 5.0], [10, 4.0], [20, 3.0], [30, 2.5]]
    assert _compare.steps_to_target(curve, 3.5) == 15.0
    assert _compare.steps_to_target(curve, 4.0) == 10.0
    assert _compare.steps_to_target(curve, 6.0) == 0.0
    assert math.isnan(_compare.steps_to_target(curve, 2.0))
    runs = [
        {"optimizer": "a", "lr": f, "factor": f, "complete": True, "curve": c}
        for f, c in [(1, curve), (3, [[0, 5.0], [10, 3.0]]), (9, [[0, 5.0]])]
    ]
    (row,) = _compare.table(["a"], [1, 3, 9], runs, target=3.5)
    assert row["best_lr"] == 3 and row["edge"] is None and row["steps_to_target"] == 7.5
    (row,) = _compare.table(["a"], [1, 3], runs[:2], target=3.5)
    assert row["edge"] == "high"
    assert "sweep's highest" in _compare.markdown([row], "")


def test_bench_runs_the_module_in_the_package(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "--cases", "4K:1", "--steps", "1", "--warmup", "0", "--no-torch"]
    assert cli.main(argv) == 0
    assert "| 0.004M | 1 |" in capsys.readouterr().out
    assert os.listdir(tmp_path) == []  # nothing written unless asked
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--markdown"])  # a path is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0
    assert "adam-tx bench" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--optimizer", "lion"], "invalid choice"),
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--lr", "-1"], "--lr"),
        (["demo", "--optimizer", "sgd", "--state", "bf16"], "not available"),
        (["lr-find", "--min-lr", "1", "--max-lr", "0.1"], "--max-lr"),
        (["lr-find", "--smoothing", "1"], "--smoothing"),
        (["compare", "--optimizers", "adamw,lion"], "lion"),
        (["compare", "--lr-factors", "1,nan"], "--lr-factors"),
        ([], "required"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path / "x")] if argv else argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_python_dash_m_entry_point():
    proc = _run_cli("demo", "--schedule", "linear", timeout=120)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


# The demo task, smaller (about 4x fewer FLOPs per step than the default).
SMALL = ["--d-model", "64", "--heads", "2", "--batch", "16", "--eval-batches", "4"]


@pytest.mark.slow
def test_lr_find_suggestion_trains_within_5_percent_of_a_sweeps_best(tmp_path):
    """Train at the suggested peak lr and at 5 half-decade points around the
    default (3e-4 ... 3e-2), on the same batches; the suggestion must reach a
    held-out loss within 5% of the best point's."""
    find = tmp_path / "find"
    assert cli.main(["lr-find", *SMALL, "--out", str(find)]) == 0
    suggested = json.loads((find / "lr_find.json").read_text())["suggested_lr"]
    default = _runs.OPTIMIZERS["adamw"][1]
    sweep = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    factors = ",".join(f"{lr / default:.6g}" for lr in [*sweep, suggested])
    cmp = tmp_path / "cmp"
    argv = ["compare", *SMALL, "--steps", "200", "--eval-every", "200"]
    argv += ["--optimizers", "adamw", "--lr-factors", factors, "--out", str(cmp)]
    assert cli.main(argv) == 0
    final = [r["curve"][-1][1] for r in _rows(cmp / "compare.jsonl")]
    best = min(final[:5])
    assert final.index(best) not in (0, 4), f"sweep best at its edge: {final}"
    assert final[5] <= 1.05 * best, f"suggested {suggested:.2e}: {final}"
