"""benchmarks/state_precision.py runs end to end in --quick mode."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks/state_precision.py"


@pytest.mark.slow
def test_quick_run_reports_every_format(tmp_path):
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("state_precision", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # flax's dataclasses look the module up
    spec.loader.exec_module(module)
    out = tmp_path / "r.json"
    results = module.main(["--quick", "--json", str(out)])
    assert json.loads(out.read_text()).keys() == results.keys()
    for rows in results.values():
        assert list(rows) == ["fp32", "bf16", "bf16+SR", "int8"]
        assert rows["fp32"]["bytes_per_param"] > 8.0  # + count and hyperparams
        assert rows["bf16"]["large_bytes_per_param"] in (0.0, 4.0)
    # The quick LM's embedding (256 x 16) is large enough to quantize.
    assert results["char LM"]["int8"]["large_bytes_per_param"] == pytest.approx(2.03125)
    assert "| char LM | int8 |" in module.table(results)
