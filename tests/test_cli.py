"""The adam-tx command: each subcommand with a tiny model, and its files."""

import json
import subprocess
import sys

import pytest

from adam_tx import charlm, cli

TINY = [
    "--steps", "4", "--d-model", "16", "--layers", "1", "--heads", "2",
    "--seq-len", "8", "--batch", "2", "--max-chars", "20000",
    "--eval-batches", "1",
]  # fmt: skip


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_demo_writes_metrics_plot_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["demo", *TINY, "--eval-every", "2", "--out", str(out)])
    assert rc == 0
    rows = _rows(out / "metrics.jsonl")
    train = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert {"lr", "grad_norm", "clip_factor", "loss"} <= set(train[0])
    assert train[0]["lr"] == 0.0 and train[1]["lr"] > 0  # warmup from 0
    assert all(0 < r["clip_factor"] <= 1 for r in train)
    assert [r["step"] for r in rows if "eval_loss" in r] == [2, 4]
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_done"] == 4 and not summary["interrupted"]
    assert str(out / "metrics.jsonl") in capsys.readouterr().out
    # An existing non-empty folder is not overwritten without --overwrite.
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", *TINY, "--out", str(out)])
    assert exc.value.code == 2
    assert "not empty" in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_keeping_metrics(tmp_path, monkeypatch):
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
    assert (out / "plot.png").exists()


def test_lr_find_writes_plot_and_suggestion(tmp_path, capsys):
    out = tmp_path / "find"
    rc = cli.main(["lr-find", *TINY, "--steps", "6", "--out", str(out)])
    assert rc == 0
    record = json.loads((out / "lr_find.json").read_text())
    assert 3 <= len(record["lrs"]) <= 6
    assert record["lrs"][0] == pytest.approx(1e-6)
    assert 1e-6 <= record["steepest"] <= 1.0
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert "steepest descent at lr" in capsys.readouterr().out


def test_compare_writes_table_and_bar_chart(tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", *TINY, "--optimizers", "sgd,adamw", "--lr-factors", "1,3"]
    rc = cli.main([*argv, "--eval-every", "2", "--out", str(out)])
    assert rc == 0
    runs = _rows(out / "compare.jsonl")
    assert [(r["optimizer"], len(r["curve"])) for r in runs] == [
        ("sgd", 2), ("sgd", 2), ("adamw", 2), ("adamw", 2)
    ]  # fmt: skip
    table = (out / "compare.md").read_text()
    assert "| sgd |" in table and "| adamw |" in table
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_runs_the_script_or_says_it_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "BENCH_SCRIPT", tmp_path / "missing.py")
    assert cli.main(["bench"]) == 1
    assert "not available" in capsys.readouterr().err
    script = tmp_path / "step_speed.py"
    script.write_text("def main(argv=None):\n    print('bench', argv)\n    return []\n")
    monkeypatch.setattr(cli, "BENCH_SCRIPT", script)
    assert cli.main(["bench", "--quick"]) == 0
    assert "bench ['--quick']" in capsys.readouterr().out


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
        ([], "required"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path / "x")] if argv else argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "adam_tx", "demo", "--schedule", "linear"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
