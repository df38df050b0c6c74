"""The benchmark scripts run end to end at tiny sizes (so they are ready when a
GPU or a quiet machine is at hand) and write what they promise."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_leaf_sizes_sum_to_the_size():
    step_speed = _load("step_speed")
    assert step_speed.leaf_sizes(10, 3) == [4, 3, 3]
    assert step_speed.parse_size("16M") == 16_000_000


def test_a_jax_step_blocked_on_one_output_has_all_its_outputs_ready():
    """The step-speed contenders block on their first parameter only: this
    pins the PJRT behaviour that makes that time the whole step (the outputs
    of one execution become ready together). The first leaf is tiny and the
    others large, so outputs readied one by one would show up here."""
    import jax

    import adam_tx
    from adam_tx._app import bench

    tx = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(1e-3))
    contender = bench.JaxContender(tx, [8, (512, 512), (512, 512), (512, 512)])
    assert contender.first_output().shape == (8,)
    for _ in range(5):
        contender.step()
        outputs = jax.tree.leaves((contender.params, contender.state))
        assert all(x.is_ready() for x in outputs)


@pytest.mark.slow
def test_step_speed_tiny_run_writes_json_and_markdown(tmp_path):
    step_speed = _load("step_speed")
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    out = tmp_path / "r.json"
    args = ["--cases", "4K:3", "--steps", "2", "--warmup", "0", "--no-torch"]
    cases = step_speed.main([*args, "--json", str(out), "--markdown", str(bench)])
    assert json.loads(out.read_text())[0]["leaves"] == 3
    assert set(cases[0]["results"]) == {"adam_tx", "adam_tx_grouped", "optax"}
    text = bench.read_text()
    assert "kept" in text and "| 0.004M | 3 |" in text
    step_speed.main([*args, "--markdown", str(bench)])  # replaces, not appends
    assert bench.read_text().count(step_speed.BEGIN) == 1


@pytest.mark.slow
def test_step_speed_formats_tiny_run(tmp_path):
    step_speed = _load("step_speed")
    assert step_speed.format_shapes(16_000_000) == [(2000, 1000)] * 8
    assert step_speed.format_shapes(64_000_000) == [(4000, 2000)] * 8
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    args = ["--formats", "40K", "--steps", "2", "--warmup", "0"]
    out = tmp_path / "f.json"
    cases = step_speed.main([*args, "--json", str(out), "--markdown", str(bench)])
    assert len(json.loads(out.read_text())) == 1
    (case,) = cases
    assert case["shapes"] == [(100, 50)] * 8 and case["size"] == 40_000
    results = case["results"]
    assert set(results) == set(step_speed.format_optimizers())
    assert results["adam_tx fp32"]["vs_adam_tx_fp32"] == 1.0
    per_param = {k: r["state_bytes_per_param"] for k, r in results.items()}
    assert per_param["adam_tx fp32"] == pytest.approx(8.0, abs=0.01)
    assert per_param["adam_tx bf16"] == pytest.approx(4.0, abs=0.01)
    assert per_param["adam_tx bf16+SR"] == pytest.approx(4.0, abs=0.01)
    assert per_param["adam_tx int8"] < 2.2 and per_param["adam_tx int4"] < 1.2
    assert all(r["step_ms"] > 0 and r["compile_s"] > 0 for r in results.values())
    text = bench.read_text()  # its own section, not the step-speed one
    assert "kept" in text and text.count(step_speed.FORMATS_BEGIN) == 1
    assert step_speed.FORMATS_SECTION in text and step_speed.BEGIN not in text
    assert "| 0.04M (8 x 100x50) | adam_tx int4 |" in text
    formats = dict(
        section=step_speed.FORMATS_SECTION,
        begin=step_speed.FORMATS_BEGIN,
        end=step_speed.FORMATS_END,
    )
    step_speed.write_markdown(bench, "| new |", "cmd", **formats)  # a rerun
    text = bench.read_text()
    assert text.count(step_speed.FORMATS_BEGIN) == 1 and "| new |" in text
    assert "adam_tx int4" not in text and "kept" in text


@pytest.mark.slow
def test_gpu_step_tiny_runs_on_cpu(tmp_path):
    gpu_step = _load("gpu_step")
    rows = gpu_step.main(["--tiny", "--steps", "1", "--out", str(tmp_path)])
    assert {r["contender"] for r in rows} >= {"adam_tx", "optax"}
    assert {r["contender"] for r in rows} >= {"+track_stats", "+track_stats pre-pass"}
    assert {r["dtype"] for r in rows} == {"float32", "bfloat16"}
    names = {r["contender"] for r in rows}
    assert {"adam_tx clip", "optax clip", "adam_tx int8 state"} <= names
    assert {r["case"] for r in rows} >= {"gpt 2x8 (tiny)", "flat (tiny)"}
    # Bytes moved are counted from the arrays: bf16 moments move less.
    by = {(r["case"], r["dtype"], r["contender"]): r["bytes_per_param"] for r in rows}
    flat = ("flat (tiny)", "float32")
    assert by[(*flat, "adam_tx")] == pytest.approx(28.0, abs=0.01)  # + scalars
    assert by[(*flat, "adam_tx bf16 state")] == pytest.approx(20.0, abs=0.01)
    table = (tmp_path / "gpu_step.md").read_text()
    assert "| B/param moved |" in table and table.count("\n|") == len(rows) + 2
    assert all(r["step_ms"] > 0 and r["fraction_of_copy"] > 0 for r in rows)
    assert "| contender |" in (tmp_path / "gpu_step.md").read_text()


def test_gpt2_shapes_count_124m_parameters():
    gpu_step = _load("gpu_step")
    n = sum(
        a * (b if len(s) > 1 else 1)
        for s in gpu_step.gpt2_shapes()
        for a, b in [(s[0], s[-1])]
    )
    assert 124_000_000 < n < 124_500_000


def test_stats_cost_runs_small():
    stats_cost = _load("stats_cost")
    res = stats_cost.run(
        size=16_000,
        leaves=2,
        steps=4,
        warmup=0,
        everies=[1, 2],
        in_pass=True,
        guards=True,
    )
    assert set(res) == {"off", "every=1", "every=2", "in-pass"} | set(stats_cost.GUARDS)
    for measure, skip, per_step in res.values():
        assert measure > 0 and skip > 0 and per_step > 0
    # every=2 measures on steps 0 and 2: the per-step figure averages the two.
    measure, skip, per_step = res["every=2"]
    assert per_step == pytest.approx((measure + skip) / 2)


def test_compile_time_runs_small():
    compile_time = _load("compile_time")
    out = compile_time.main(["--leaves", "2", "3", "--shape", "4", "2"])
    assert set(out) == {2, 3}
    assert set(out[3]) == {"plain", "stats", "guards", "grouped", "optax"}
    phases = ("init", "trace", "lower", "compile")
    assert all(t[k] > 0 for r in out.values() for t in r.values() for k in phases)
    only = compile_time.main(["--leaves", "2", "--only", "optax"])
    assert set(only[2]) == {"optax"}


@pytest.mark.slow
def test_model_step_tiny_run(tmp_path):
    model_step = _load("model_step")
    out = tmp_path / "m.json"
    rows = model_step.main(["--tiny", "--steps", "1", "--no-torch", "--json", str(out)])
    whats = {(r["tree"].split(" (")[0], r["what"], r["contender"]) for r in rows}
    assert ("gpt 2x16", "optimizer step", "adam_tx") in whats
    assert ("resnet", "optimizer step", "optax") in whats
    assert ("gpt 2x16", "flax train step", "adam_tx") in whats
    assert all(r["compile_s"] > 0 for r in rows)
    assert json.loads(out.read_text()) == rows


@pytest.mark.slow
def test_variants_charlm_quick_run_writes_a_row_per_optimizer(tmp_path):
    variants_charlm = _load("variants_charlm")
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    out = tmp_path / "v.json"
    record = variants_charlm.main(
        ["--quick", "--json", str(out), "--markdown", str(bench)]
    )
    names = [r["optimizer"] for r in record["table"]]
    assert names == [*variants_charlm.optimizers(1, 0.0)]  # the int4 row last
    assert {"AdamW", "RAdam", "ADOPT", "AdEMAMix", "C-AdamW", "StableAdamW"} < set(
        names
    )
    assert "schedule-free AdamW" in names and variants_charlm.INT4 in names
    for row in record["table"]:
        assert len(row["losses"]) == 1 and all(map(math.isfinite, row["losses"]))
        assert row["step_time_ratio"] > 0
    saved = json.loads(out.read_text())
    assert len(saved["runs"]) == len(names) and saved["load_end"]
    text = bench.read_text()
    assert "kept" in text and variants_charlm.SECTION in text
    assert text.count("\n| ") == len(names) + 1  # header and one row each
    variants_charlm.write_markdown(str(bench), "| new |", record)  # a rerun
    text = bench.read_text()
    assert text.count(variants_charlm.BEGIN) == 1 and "| new |" in text
    assert text.count(variants_charlm.SECTION) == 1
    assert "| AdamW |" not in text and "kept" in text
